"""The one experiment runner: every (variant, seed) of an experiment, one output layout, one resume rule.

An :class:`Experiment` says how to load its data, how to train and score one variant for one seed, and which
columns its tables show. :func:`run_experiment` does the rest, the same way for every experiment::

    OUT/config.json                  the resolved settings, variants, seeds, environment and ONE fingerprint
    OUT/<label>/seed<k>/result.json  one run: scores per part (``test``, ``val``, ...), timing, solver steps,
                                     divergence-guard counts, the run's fingerprint
    OUT/<label>/seed<k>/history.csv  the run's training history (one row per epoch or evaluation)
    OUT/<label>/seed<k>/checkpoint.pt  written by the trainer; ``resume`` continues from it
    OUT/per_seed.csv                 one row per run
    OUT/summary.json, summary.csv    mean and sample standard deviation over seeds, per variant
    OUT/summary.md                   the tables (mean +- sd)

The resume rule: an output folder that holds a ``config.json`` is refused unless ``resume`` is set, and with
``resume`` its fingerprint (the settings, the data description and the numerics-relevant environment: torch
threads, world size, dtype, device type) must equal the new one, a variant label must keep its definition, and
every finished run's ``result.json`` must carry the fingerprint it would get now. All of this is checked before
anything is written or trained; a refused resume writes nothing. Variants and seeds may be added on resume.

:func:`load_run` reads such a folder back as data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import RunFailed, UserError
from ..training import distributed as ddp
from ..training.checkpoint import model_code_version
from ..training.results import markdown_table, mean_std, write_csv, write_json

log = logging.getLogger(__name__)

__all__ = ["Column", "Table", "Experiment", "Run", "LoadedRun", "register_experiment", "get_experiment",
           "available_experiments", "run_experiment", "add_run_arguments",
           "run_from_args", "load_run", "environment", "numerics", "fingerprint_of",
           "RESULT_KEYS"]

#: keys every ``result.json`` holds (``None`` where an experiment has no such thing)
RESULT_KEYS = ("label", "seed", "test", "val", "best_epoch", "epochs_run", "train_seconds", "solver_steps",
               "guard", "health", "fingerprint")


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` in the per-seed rows, its title, and how to print it (``value * scale`` with
    ``digits`` decimals, as mean +- sd over seeds)."""

    key: str
    title: str
    scale: float = 1.0
    digits: int = 3


@dataclass(frozen=True)
class Table:
    """A summary table: a heading and its metric columns (the runner adds the variant, seed count, epochs and
    seconds per run)."""

    heading: str
    columns: Sequence[Column]
    timing: bool = True


@dataclass
class Experiment:
    """What one experiment provides to the runner.

    Attributes:
        name: the experiment's name (recorded in ``config.json``; :func:`load_run` finds the experiment by it).
        load: ``settings -> data`` (anything the experiment's ``train`` understands).
        train: ``Run -> result dict`` for one variant and seed. The dict holds scoring parts as dicts of
            floats (at least ``test`` and ``val``), ``best_epoch``, ``epochs_run``, ``train_seconds`` and may hold
            ``history`` (a list of rows, written to ``history.csv`` and left out of ``result.json``),
            ``solver_steps`` and ``guard`` (counts), and anything else JSON can hold.
        tables: ``config -> [Table, ...]`` for ``summary.md``; the first table's heading is the title.
        describe: ``data -> dict`` describing the data (sizes, dimensions); part of the fingerprint.
        parts: the result's scoring parts copied into the per-seed rows as ``<part>_<metric>``.
        extra_row: ``result -> dict`` of further per-seed columns.
        restore: ``(loaded_run, label, seed, data_dir) -> dict`` rebuilding a trained run's selected model and
            its test inputs (for figures): ``{"model", "forward" (runs the model on the test inputs), "names"
            (modality names), "title", "checkpoint", "n_samples"}``; None when the experiment has none.
    """

    name: str
    load: Callable[[dict], Any]
    train: Callable[[Run], dict]
    tables: Callable[[dict], list[Table]]
    describe: Callable[[Any], dict] = lambda data: {}
    parts: Sequence[str] = ("test", "val")
    extra_row: Callable[[dict], dict] | None = None
    restore: Callable[..., dict] | None = None


@dataclass
class Run:
    """One (variant, seed) as the experiment's ``train`` sees it."""

    experiment: Experiment
    settings: dict
    data: Any
    variant: dict
    seed: int
    dir: Path
    resume: bool
    progress: bool
    fingerprint: dict
    main: bool = True

    @property
    def label(self) -> str:
        return self.variant["label"]

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    """Make ``exp`` known by name (to :func:`load_run` and the commands); re-registering a name replaces it."""
    _EXPERIMENTS[exp.name] = exp
    return exp


def get_experiment(name: str) -> Experiment:
    if name not in _EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; known: {available_experiments()}")
    return _EXPERIMENTS[name]


def available_experiments() -> list[str]:
    return sorted(_EXPERIMENTS)


# ------------------------------------------------------------------------------------- config and fingerprint


def environment(settings: dict) -> dict:
    """The run environment; the first five keys change numerics and enter the fingerprint (``model_code``: a
    hash of the solver's, fusions' and models' code, :func:`~deqfusion.training.checkpoint.model_code_version`)."""
    device = settings.get("device") or (settings.get("sources") or {}).get("device") or "cpu"
    return {
        "torch_threads": torch.get_num_threads(),
        "world_size": ddp.world_size(),
        "dtype": str(settings.get("dtype") or torch.get_default_dtype()).replace("torch.", ""),
        "device_type": torch.device(device).type,
        "model_code": model_code_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


_FINGERPRINT_ENV = ("torch_threads", "world_size", "dtype", "device_type", "model_code")


def numerics(settings: dict) -> dict:
    """The part of :func:`environment` that changes the arithmetic (and enters the fingerprint): for commands that
    keep their own config, to record and compare on resume."""
    env = environment(settings)
    return {k: env[k] for k in _FINGERPRINT_ENV}


def _jsonable(obj):
    """``obj`` as it reads back from a JSON file (keys sorted, as the result files are written)."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def _fingerprinted(config: dict) -> dict:
    """The parts of a config the fingerprint covers: settings without ``sources`` (where the data and the
    device come from), the data description without its ``folder``, the experiment's name."""
    return {"experiment": config["experiment"],
            "settings": {k: v for k, v in config["settings"].items() if k != "sources"},
            "data": {k: v for k, v in config["data"].items() if k != "folder"}}


def fingerprint_of(config: dict) -> str:
    """The one fingerprint of a run folder: a hash of the settings (not their ``sources``: data folders,
    download options, the device's index), the data description and the numerics-relevant environment (not of
    the variant list or the seeds, which may grow on resume)."""
    basis = {**_fingerprinted(config),
             "environment": {k: config["environment"][k] for k in _FINGERPRINT_ENV}}
    text = json.dumps(_jsonable(basis), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_variants(variants: Sequence[dict], seeds: Sequence[int]) -> None:
    labels = [v["label"] for v in variants]
    if not labels:
        raise UserError("no variant to run")
    if len(set(labels)) != len(labels):
        raise UserError(f"the same variant is named twice: {labels}")
    if not seeds:
        raise UserError("no seed to run")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds repeats a seed: {list(seeds)}")


def check_output_folder(out: Path, resume: bool) -> None:
    """Refuse a folder that is a file, or holds a run while ``resume`` is off (before any data is read)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if (out / "config.json").is_file() and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(prefix + k)
    return out


def _run_fingerprint(config: dict, variant: dict, seed: int) -> dict:
    return {"config": config["fingerprint"], "variant": _jsonable(variant), "seed": int(seed)}


def _merge_with_stored(out: Path, config: dict) -> dict:
    """On resume: the stored config must have the same fingerprint and variant definitions; the variants and
    seeds of both are kept (stored ones first). Returns the config to write."""
    old = json.loads((out / "config.json").read_text())
    if old.get("fingerprint") != config["fingerprint"]:
        changed = _diff(_fingerprinted({k: old.get(k) or {} for k in ("experiment", "settings", "data")}),
                        _fingerprinted(config))
        changed += [f"environment.{k}" for k in _FINGERPRINT_ENV
                    if (old.get("environment") or {}).get(k) != config["environment"][k]]
        raise UserError(f"{out}/config.json was written with other settings ({', '.join(changed) or 'fingerprint'})"
                        "; use the original settings or another --out")
    stored = {v["label"]: v for v in old.get("variants", [])}
    for v in config["variants"]:
        if v["label"] in stored and stored[v["label"]] != v:
            raise UserError(f"{out}: variant {v['label']!r} was run with other options ({stored[v['label']]}); "
                            "use another --out")
    merged = dict(config)
    merged["variants"] = list(stored.values()) + [v for v in config["variants"] if v["label"] not in stored]
    merged["seeds"] = list(dict.fromkeys([*old.get("seeds", []), *config["seeds"]]))
    return merged


def _check_finished_runs(out: Path, config: dict) -> None:
    """Every existing ``result.json`` of a run about to be resumed must carry the fingerprint it would get now."""
    for v in config["variants"]:
        for seed in config["seeds"]:
            path = out / v["label"] / f"seed{seed}" / "result.json"
            if path.is_file() and json.loads(path.read_text()).get("fingerprint") != _run_fingerprint(
                    config, v, seed):
                raise UserError(f"{path} was written with other settings; use another --out")


# ----------------------------------------------------------------------------------------------------- runs


def _flatten(result: dict, parts: Sequence[str]) -> dict:
    row: dict = {"label": result["label"], "seed": result["seed"]}
    for part in parts:
        for k, v in (result.get(part) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f"{part}_{k}"] = v
    for k in ("best_epoch", "epochs_run", "train_seconds", "solver_steps"):
        if result.get(k) is not None:
            row[k] = result[k]
    guard = result.get("guard") or {}
    for k, v in guard.items():
        if isinstance(v, int) and not isinstance(v, bool):
            row[f"guard_{k}"] = v
    if result.get("health") is not None:
        row["degenerate"] = int(bool(result["health"].get("degenerate")))
    return row


def _finish_result(result: dict, run: Run) -> dict:
    out = {"label": run.label, "seed": run.seed}
    out.update(result)
    for k in RESULT_KEYS:
        out.setdefault(k, None)
    out["fingerprint"] = run.fingerprint
    return out


def _one(run: Run) -> dict:
    path = run.dir / "result.json"
    if run.resume and path.is_file():
        log.info("%s: finished before, not trained again", run.dir)
        return json.loads(path.read_text())
    result = _finish_result(run.experiment.train(run), run)
    history = result.pop("history", None)
    if run.main:
        if history:
            write_csv(run.dir / "history.csv", history)
        write_json(path, result)
    return _jsonable(result)


def _prepare(exp: Experiment, settings: dict, variants: list[dict], seeds: list[int], out: Path,
             resume: bool) -> tuple[Any, dict]:
    """Check everything, load the data and return ``(data, config)``; writes nothing."""
    _check_variants(variants, seeds)
    check_output_folder(out, resume)
    data = exp.load(settings)
    config = {"experiment": exp.name, "settings": _jsonable(settings), "data": _jsonable(exp.describe(data)),
              "variants": _jsonable(variants), "seeds": [int(s) for s in seeds],
              "environment": environment(settings)}
    config["fingerprint"] = fingerprint_of(config)
    if (out / "config.json").is_file():
        config = _merge_with_stored(out, config)
    if resume:
        _check_finished_runs(out, config)
    return data, config


def add_run_arguments(parser, seeds: Sequence[int] = (0, 1, 2, 3, 4), threads: int | None = None) -> None:
    """The options every experiment command shares: ``--out``, ``--seeds``, ``--resume``, ``--threads`` and
    ``--no-progress`` (``parser``: an argument parser or group)."""
    parser.add_argument("--out", required=True, help="output folder (created; reused with --resume)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds),
                        help=f"seeds, one run each (default {' '.join(map(str, seeds))})")
    parser.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    default = f"default {threads}" if threads else "default: torch's choice"
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"torch CPU threads ({default}; 0: torch's choice)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run_from_args(exp: Experiment, configure: Callable, args, distributed: bool = False) -> dict | None:
    """An experiment command's run: ``configure(args) -> (settings, variants)``, then :func:`run_experiment` with
    the options of :func:`add_run_arguments`. ``distributed``: join the process group a launcher such as
    ``torchrun`` describes in the environment first (``args.device`` becomes this process's device) and leave it
    after. Returns :func:`run_experiment`'s result on the main process, None on the others."""
    if distributed:
        args.device = ddp.setup_from_env(args.device)
    try:
        settings, variants = configure(args)
        res = run_experiment(exp, settings, variants, args.seeds, args.out, resume=args.resume,
                             progress=args.progress, threads=args.threads)
        return res if ddp.is_main() else None
    finally:
        if distributed:
            ddp.cleanup()


def run_experiment(exp: Experiment, settings: dict, variants: list[dict], seeds: Sequence[int], out: str | Path,
                   *, resume: bool = False, progress: bool = True, threads: int | None = None) -> dict:
    """Train and score every variant for every seed; write the layout of the module docstring.

    ``settings``: the experiment's resolved settings (JSON-like); its ``sources`` entry (data folders, download
    options, device) is recorded but not fingerprinted, so a moved data folder can still be resumed.
    ``variants``: dicts with a unique ``label`` (the run folder's name) and whatever the experiment's ``train``
    reads (fusion name and options, ...).
    ``threads``: torch CPU threads for the runs (None or 0: leave as is). Returns ``{"config", "rows",
    "summary", "tables"}``.
    """
    out = Path(out)
    if threads:
        torch.set_num_threads(int(threads))
    variants = [dict(v) for v in variants]
    seeds = [int(s) for s in seeds]
    data, config = _prepare(exp, settings, variants, seeds, out, resume)
    main = ddp.is_main()
    ddp.barrier()  # every process has checked the folder before rank 0 writes into it
    created = not (out / "config.json").is_file()
    if main:
        write_json(out / "config.json", config)
    try:
        return _run_all(exp, config, data, variants, seeds, out, resume, progress, main)
    except UserError:
        # a refusal (a selection score the data lacks, a checkpoint written with other settings) comes before
        # its run trains: a config.json this call wrote goes again, so that the refused call leaves nothing
        if created and main:
            (out / "config.json").unlink(missing_ok=True)
            for d in sorted((p for p in [out, *out.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
                if not any(d.iterdir()):
                    d.rmdir()
        raise


def _run_all(exp: Experiment, config: dict, data: Any, variants: list[dict], seeds: list[int], out: Path,
             resume: bool, progress: bool, main: bool) -> dict:
    jobs = [(v, s) for v in variants for s in seeds]
    rows, results, t0 = [], [], time.perf_counter()
    bar = None
    if progress and main and len(jobs) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"{exp.name} runs", dynamic_ncols=True)
    for variant, seed in jobs:
        run = Run(exp, config["settings"], data, variant, seed, out / variant["label"] / f"seed{seed}", resume,
                  progress, _run_fingerprint(config, variant, seed), main)
        result = _one(run)
        results.append(result)
        row = _flatten(result, exp.parts)
        if exp.extra_row is not None:
            row.update(exp.extra_row(result))
        rows.append(row)
        if main:
            write_csv(out / "per_seed.csv", rows)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    summary = summarize_rows(rows, [v["label"] for v in variants])
    tables = render_tables(exp.tables(config), summary, len(seeds))
    bad = degenerate_runs(results)
    if bad:
        tables += ("\n\n**Degenerate runs** (final model no better than the constant predictor on validation, or "
                   "a non-finite loss; see docs/robustness.md): " + "; ".join(bad))
    if main:
        write_summary(out, config, summary, tables, time.perf_counter() - t0)
    if bad:
        raise DegenerateRuns(f"{len(bad)} of {len(results)} run(s) ended with a degenerate model ({bad[0]}"
                             f"{'; ...' if len(bad) > 1 else ''}); the results are written to {out} and flagged "
                             "in summary.md")
    return {"config": config, "rows": rows, "summary": summary, "tables": tables}


class DegenerateRuns(RunFailed):
    """Every run finished and was written, but at least one final model is degenerate (see
    :mod:`deqfusion.training.health`)."""

    hint = "a smaller --lr may help"


def degenerate_runs(results: Sequence[dict]) -> list[str]:
    """``"<label> seed <k>: <reason>"`` for every result whose ``health`` flags a degenerate model."""
    return [f"{r['label']} seed {r['seed']}: {r['health']['degenerate']}" for r in results
            if (r.get("health") or {}).get("degenerate")]


# ---------------------------------------------------------------------------------------------------- tables


def summarize_rows(rows: Sequence[dict], labels: Sequence[str]) -> dict:
    """``{label: {key: {"mean", "std", "values"}}}`` over the seeds of each label, for every numeric key."""
    out: dict = {}
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        keys = [k for r in mine for k, v in r.items()
                if k != "seed" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        stats = {}
        for k in dict.fromkeys(keys):
            vals = [float(r[k]) for r in mine if k in r and r[k] is not None]
            m, s = mean_std(vals)
            stats[k] = {"mean": m, "std": s, "values": vals}
        out[label] = {"n_seeds": len(mine), "seeds": [r["seed"] for r in mine], **stats}
    return out


def _cell(stats: dict | None, col: Column) -> str:
    if not stats or not stats["values"] or any(math.isnan(v) for v in stats["values"]):
        return "-"
    return f"{stats['mean'] * col.scale:.{col.digits}f} +- {stats['std'] * col.scale:.{col.digits}f}"


def render_tables(tables: Sequence[Table], summary: dict, n_seeds: int) -> str:
    """The markdown of ``summary.md``: every table, mean +- sd over seeds."""
    parts = []
    for i, table in enumerate(tables):
        header = ["variant", "seeds"] + [c.title for c in table.columns]
        if table.timing:
            header += ["epochs", "s / run"]
        body = []
        for label, s in summary.items():
            row = [label, s["n_seeds"]] + [_cell(s.get(c.key), c) for c in table.columns]
            if table.timing:
                row += [_cell(s.get("epochs_run"), Column("epochs_run", "", 1, 0)),
                        _cell(s.get("train_seconds"), Column("train_seconds", "", 1, 1))]
            body.append(row)
        heading = table.heading if i else f"{table.heading} (mean +- sd over {n_seeds} seed(s))"
        parts.append(heading + "\n\n" + markdown_table(header, body))
    return "\n\n".join(parts)


def write_summary(out: Path, config: dict, summary: dict, tables: str, seconds: float) -> None:
    write_json(out / "summary.json", {"experiment": config["experiment"], "fingerprint": config["fingerprint"],
                                      "summary": summary, "wall_seconds": seconds})
    flat = []
    for label, s in summary.items():
        row = {"label": label, "n_seeds": s["n_seeds"]}
        for k, v in s.items():
            if isinstance(v, dict):
                row[f"{k}_mean"], row[f"{k}_std"] = v["mean"], v["std"]
        flat.append(row)
    write_csv(out / "summary.csv", flat)
    (out / "summary.md").write_text(tables + "\n")


# -------------------------------------------------------------------------------------------------- reading


@dataclass
class LoadedRun:
    """An output folder read back: its config, and one dict per finished run (``result.json`` plus ``dir``)."""

    path: Path
    config: dict
    runs: list[dict] = field(default_factory=list)

    @property
    def experiment(self) -> str:
        return self.config["experiment"]

    @property
    def settings(self) -> dict:
        return self.config["settings"]

    def variant(self, label: str) -> dict:
        for v in self.config["variants"]:
            if v["label"] == label:
                return v
        raise UserError(f"{self.path}: no variant {label!r}; the run has {[v['label'] for v in self.variants]}")

    @property
    def variants(self) -> list[dict]:
        return list(self.config["variants"])

    def run(self, label: str, seed: int) -> dict:
        for r in self.runs:
            if r["label"] == label and r["seed"] == seed:
                return r
        raise UserError(f"{self.path}: no finished run {label!r} seed {seed}")

    def rows(self) -> list[dict]:
        """The per-seed rows (as in ``per_seed.csv``) of the finished runs."""
        exp = _EXPERIMENTS.get(self.experiment)
        parts = exp.parts if exp is not None else ("test", "val")
        return [_flatten(r, parts) for r in self.runs]


def load_run(path: str | Path) -> LoadedRun:
    """Read an output folder of :func:`run_experiment`: ``config.json`` and every finished run's
    ``result.json`` (in the config's variant and seed order); unfinished runs are left out."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{path} holds no config.json: not an experiment output folder")
    config = json.loads(cfg_path.read_text())
    if "experiment" not in config or "variants" not in config:
        raise UserError(f"{cfg_path} was not written by the experiment runner")
    runs = []
    for v in config["variants"]:
        for seed in config["seeds"]:
            d = path / v["label"] / f"seed{seed}"
            if (d / "result.json").is_file():
                runs.append({**json.loads((d / "result.json").read_text()), "dir": str(d)})
    return LoadedRun(path, config, runs)
