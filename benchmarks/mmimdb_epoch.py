"""Time one MM-IMDB training epoch per fusion method, on a generated file of the real per-sample size.

The file has the real layout and row count (25,959 rows of 300 text + 4,096 image features and 23 labels), so
that the training split has the real 15,552 rows. Each method runs in its own process (so that the CPU peak
memory is its own): it loads the training split, builds the model of ``deqfusion mmimdb`` (hidden 512,
AdamW with the fusion at its own learning rate, batch 256, BCE + 0.1 * Jacobian loss), runs a few untimed
warm-up batches, then times one shuffled pass over the training split: forward, backward and optimiser step
of every batch. Results go to a JSON file and a markdown table on stdout.

    python benchmarks/mmimdb_epoch.py --out benchmarks/results/mmimdb_epoch_cpu.json
    python benchmarks/mmimdb_epoch.py --device cuda --out mmimdb_epoch_cuda.json

Wall time is what counts on a dedicated machine; the process CPU time (all threads) is reported beside it,
since on a shared, overloaded CPU the wall time of a run depends on what else runs. ``--file`` reuses a file
(``--keep-file PATH`` writes the generated one there). ``--interleave ROUNDS`` times all methods in one
process instead, one batch each in turn with the same batch indices (fair ratios under a drifting background
load; no per-method memory). ``--max-seconds S`` stops a method's epoch after S seconds and extrapolates its
epoch time from the batches done (marked ``extrapolated`` in the JSON and the table). The target of the issue:
DEQ fusion with the phantom gradient should cost no more than 3x late fusion (``concat``) per epoch; the exact
(implicit) gradient is timed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_METHODS = ["concat", "early", "sum", "lowrank", "tensor", "mi_matrix", "unrolled",
                   "deq:b_mode=phantom", "deq"]


def generate_file(path: Path, n_rows: int, seed: int = 0, chunk: int = 2048) -> Path:
    """Random features of the real sizes with labels that depend on them, written in chunks."""
    import h5py

    from deqfusion.data.mmimdb import IMAGE_DIM, NUM_LABELS, TEXT_DIM

    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(TEXT_DIM, NUM_LABELS)) / np.sqrt(TEXT_DIM)
    wi = rng.normal(size=(IMAGE_DIM, NUM_LABELS)) / np.sqrt(IMAGE_DIM)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with h5py.File(tmp, "w") as h5:
        text = h5.create_dataset("features", (n_rows, TEXT_DIM), dtype=np.float32)
        image = h5.create_dataset("vgg_features", (n_rows, IMAGE_DIM), dtype=np.float32)
        genres = h5.create_dataset("genres", (n_rows, NUM_LABELS), dtype=np.int8)
        for lo in range(0, n_rows, chunk):
            m = min(chunk, n_rows - lo)
            t = rng.normal(size=(m, TEXT_DIM)).astype(np.float32)
            im = np.abs(rng.normal(size=(m, IMAGE_DIM))).astype(np.float32)
            score = t @ wt + (im - 0.8) @ wi
            text[lo : lo + m], image[lo : lo + m] = t, im
            genres[lo : lo + m] = (score > 0.5).astype(np.int8)
    os.replace(tmp, path)
    return path


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(spec: str, train: dict, dev: torch.device, lambda_jac: float, seed: int):
    """Model, optimiser and a one-batch training function of the ``deqfusion mmimdb`` harness."""
    from deqfusion.experiments.fusion_spec import resolve_fusion_spec
    from deqfusion.experiments.mmimdb import OTHERS, PRESETS, mmimdb_step_fn
    from deqfusion.fusion.registry import FusionFactory
    from deqfusion.models.mmimdb import EARLY, build_mmimdb_model
    from deqfusion.training.optim import param_groups
    from deqfusion.training.seed import seed_everything

    resolved = resolve_fusion_spec(spec, PRESETS, OTHERS)
    label, name, options = resolved["label"], resolved["fusion"], resolved["options"]
    seed_everything(seed, deterministic=False)
    model = build_mmimdb_model(FusionFactory(name, **options) if name != EARLY else name).to(dev)
    groups = param_groups(model, 1e-3, 1e-2, {"fusion": 1e-4} if name != EARLY else {})
    opt = torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-2)
    step = mmimdb_step_fn(lambda_jac)
    model.train()

    def one(idx):
        out = step(model, {k: v[idx] for k, v in train.items()}, True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return out

    info = {"method": label, "fusion": name, "options": options,
            "n_params": sum(p.numel() for p in model.parameters())}
    return one, info


def time_interleaved(specs: list[str], data: Path, device: str, batch_size: int, rounds: int, lambda_jac: float,
                     seed: int) -> list[dict]:
    """All methods in one process, one batch each in turn for ``rounds`` rounds (the same batch indices for
    every method): on a shared machine every method then meets the same background load, so the ratios hold
    even where the absolute times drift."""
    from deqfusion.data.mmimdb import load_split

    dev = torch.device(device)
    train = load_split(data, "train").tensors(dev)
    n = train["labels"].shape[0]
    runs = [_setup(spec, train, dev, lambda_jac, seed) for spec in specs]
    g = torch.Generator().manual_seed(seed)
    wall = [0.0] * len(runs)
    cpu = [0.0] * len(runs)
    steps: list[list[float]] = [[] for _ in runs]
    for r in range(rounds + 1):  # round 0 is an untimed warm-up
        idx = torch.randperm(n, generator=g)[:batch_size].to(dev)
        for i, (one, _) in enumerate(runs):
            _sync(dev)
            t0, c0 = time.perf_counter(), time.process_time()
            out = one(idx)
            _sync(dev)
            if r > 0:
                wall[i] += time.perf_counter() - t0
                cpu[i] += time.process_time() - c0
                if "solver_steps" in out.logs:
                    steps[i].append(float(out.logs["solver_steps"]))
    n_batches = (n + batch_size - 1) // batch_size
    rows = []
    for i, (_, info) in enumerate(runs):
        per_batch = wall[i] / rounds
        rows.append({**info, "mode": "interleaved", "rounds": rounds, "batch_size": batch_size, "train_rows": n,
                     "samples_per_s": batch_size / per_batch, "epoch_seconds": per_batch * n_batches,
                     "epoch_cpu_seconds": cpu[i] / rounds * n_batches, "extrapolated": True,
                     "mean_forward_steps": float(np.mean(steps[i])) if steps[i] else None,
                     "peak_memory_mb": None})
    return rows


def time_method(spec: str, data: Path, device: str, batch_size: int, warmup: int, max_seconds: float | None,
                lambda_jac: float, seed: int) -> dict:
    """One method's epoch (runs in the worker process)."""
    from deqfusion.data.mmimdb import load_split

    dev = torch.device(device)
    train = load_split(data, "train").tensors(dev)
    n = train["labels"].shape[0]
    one, info = _setup(spec, train, dev, lambda_jac, seed)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    g = torch.Generator().manual_seed(seed)
    for _ in range(warmup):
        one(torch.randperm(n, generator=g)[:batch_size].to(dev))
    order = torch.randperm(n, generator=g).to(dev)
    n_batches = (n + batch_size - 1) // batch_size
    fwd_steps, done_samples, done_batches = [], 0, 0
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in range(n_batches):
        idx = order[b * batch_size : (b + 1) * batch_size]
        out = one(idx)
        done_samples += idx.numel()
        done_batches += 1
        if "solver_steps" in out.logs:
            fwd_steps.append(float(out.logs["solver_steps"]))
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    _sync(dev)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    peak, kind = _peak_memory_mb(dev)
    return {
        **info,
        "mode": "separate",
        "train_rows": n,
        "batch_size": batch_size,
        "batches_timed": done_batches,
        "batches_per_epoch": n_batches,
        "extrapolated": done_batches < n_batches,
        "timed_seconds": seconds,
        "samples_per_s": done_samples / seconds,
        "epoch_seconds": seconds * n / done_samples,
        "cpu_seconds": cpu_seconds,
        "epoch_cpu_seconds": cpu_seconds * n / done_samples,
        "peak_memory_mb": peak,
        "memory_kind": kind,
        "mean_forward_steps": float(np.mean(fwd_steps)) if fwd_steps else None,
        "final_loss": float(out.loss.detach()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="fusion specs as in deqfusion mmimdb")
    p.add_argument("--file", type=Path, default=None,
                   help="an MM-IMDB-layout file to time on (default: generate one in a temporary folder)")
    p.add_argument("--keep-file", type=Path, default=None, help="write the generated file here and keep it")
    p.add_argument("--rows", type=int, default=25959, help="rows of the generated file (25959: 15552 train)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup-batches", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=None, help="stop each epoch after this and extrapolate")
    p.add_argument("--interleave", type=int, default=None, metavar="ROUNDS",
                   help="time all methods in one process, one batch each in turn, for ROUNDS rounds")
    p.add_argument("--lambda-jac", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("mmimdb_epoch.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker is not None:
        res = time_method(args.worker, args.file, args.device, args.batch_size, args.warmup_batches,
                          args.max_seconds, args.lambda_jac, args.seed)
        args.worker_out.write_text(json.dumps(res))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        data = args.file
        if data is None:
            t0 = time.perf_counter()
            data = generate_file(args.keep_file or Path(tmp) / "mmimdb_generated.hdf5", args.rows, seed=args.seed)
            print(f"generated {data} ({args.rows} rows) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        rows = []
        if args.interleave:
            rows = time_interleaved(args.methods, data, args.device, args.batch_size, args.interleave,
                                    args.lambda_jac, args.seed)
        for spec in args.methods if not args.interleave else []:
            res_path = Path(tmp) / "worker.json"
            cmd = [sys.executable, __file__, "--worker", spec, "--worker-out", str(res_path), "--file", str(data),
                   "--device", args.device, "--batch-size", str(args.batch_size), "--warmup-batches",
                   str(args.warmup_batches), "--lambda-jac", str(args.lambda_jac), "--seed", str(args.seed)]
            if args.max_seconds is not None:
                cmd += ["--max-seconds", str(args.max_seconds)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            load_before = os.getloadavg()[0]
            proc = subprocess.run(cmd)
            if proc.returncode != 0:
                rows.append({"method": spec, "error": f"worker exited with status {proc.returncode}"})
                continue
            res = json.loads(res_path.read_text())
            res["load_average_before"] = load_before
            rows.append(res)
            print(f"{res['method']}: {res['samples_per_s']:.0f} samples/s, epoch {res['epoch_seconds']:.1f}s"
                  f"{' (extrapolated)' if res['extrapolated'] else ''}", file=sys.stderr)

    late = next((r for r in rows if r.get("method") == "concat" and "error" not in r), None)
    for r in rows:
        if late is not None and "error" not in r:
            r["epoch_time_vs_late_fusion"] = r["epoch_seconds"] / late["epoch_seconds"]
            r["epoch_cpu_time_vs_late_fusion"] = r["epoch_cpu_seconds"] / late["epoch_cpu_seconds"]
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"CPU, {torch.get_num_threads() if not args.threads else args.threads} torch threads")
    report = {"device": args.device, "device_name": device_name, "load_average": os.getloadavg(),
              "mode": "interleaved" if args.interleave else "separate", "torch": torch.__version__,
              "rows": args.rows, "batch_size": args.batch_size, "results": rows,
              "target": "DEQ (phantom gradient) epoch time <= 3x late fusion (concat)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


def _fmt(x) -> str:
    return "" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    rows = next((r["train_rows"] for r in report["results"] if "train_rows" in r), "?")
    lines = [f"Device: {report['device_name']}; batch {report['batch_size']}; one epoch over {rows} "
             f"training rows; {report['mode']} timing.", "",
             "| method | samples/s | epoch s | x late fusion | epoch CPU s | x late fusion (CPU) | peak MB | "
             "params | mean fwd steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['error']} | | | | | | | |")
            continue
        ext = "*" if r["extrapolated"] else ""
        steps = f"{r['mean_forward_steps']:.1f}" if r["mean_forward_steps"] is not None else ""
        ratio = r.get("epoch_time_vs_late_fusion")
        cpu_ratio = r.get("epoch_cpu_time_vs_late_fusion")
        peak = "" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(f"| {r['method']} | {r['samples_per_s']:.0f}{ext} | {r['epoch_seconds']:.1f}{ext} | "
                     f"{_fmt(ratio)} | {r['epoch_cpu_seconds']:.1f}{ext} | {_fmt(cpu_ratio)} | "
                     f"{peak} | {r['n_params']:,} | {steps} |")
    if report["mode"] == "interleaved":
        lines += ["", "\\* epoch time extrapolated from interleaved batches (one process; no per-method memory)."]
    elif any(r.get("extrapolated") for r in report["results"]):
        lines += ["", "\\* extrapolated from the batches timed within --max-seconds."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
