"""The DEQ fusion ablations (``deqfusion ablate``): the variants, their resolution against an experiment's
defaults, and the combined table over ROSMAP and the CMU-MOSI features."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..training.checkpoint import atomic_write_json
from ..training.results import markdown_table, summarize, write_csv, write_json
from .fusion_spec import parse_fusion_spec
from .runner import run_experiment

#: variant -> (registered fusion, options added to the experiment's defaults for that fusion)
VARIANTS: dict[str, tuple[str, dict]] = {
    "full": ("deq", {}),
    "no-purify": ("deq", {"purify": False}),
    "fuse-only": ("deq", {"unimodal": False}),
    "no-jac": ("deq", {"jac_n_probes": 0}),
    "unrolled-k1": ("unrolled", {"unrolled_steps": 1}),
    "unrolled-k2": ("unrolled", {"unrolled_steps": 2}),
    "unrolled-k4": ("unrolled", {"unrolled_steps": 4}),
    "unrolled-k8": ("unrolled", {"unrolled_steps": 8}),
    "broyden": ("deq", {"f_solver": "broyden", "b_solver": "broyden"}),
    "implicit": ("deq", {"b_mode": "implicit", "b_max_iter": 30, "b_tol": 1e-3}),
    "phantom": ("deq", {"b_mode": "phantom", "phantom_steps": 5}),
}

DATASETS = ("rosmap", "mosi")

#: (key in the per-seed rows, column title, scale, digits) of the summary table, per dataset
TABLE = {
    "rosmap": [("acc", "ACC %", 100, 1), ("f1", "F1 %", 100, 1), ("auc", "AUC %", 100, 1)],
    "mosi": [("mae", "MAE", 1, 3), ("corr", "Corr", 1, 3), ("acc2_neg_pos", "Acc-2 %", 100, 1)],
}
TITLES = {"rosmap": "ROSMAP", "mosi": "MOSI T+A+V"}


def resolve_variants(names, base_options) -> list[dict]:
    """``[{"variant", "fusion", "options", "same_as"}]``: ``options`` = ``base_options(fusion)`` updated by the
    variant's; ``same_as`` names an earlier variant with identical fusion and options (then it is not rerun)."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--variants lists a variant twice: {names}")
    out = []
    for name in names:
        fusion, opts = VARIANTS[name]
        resolved = dict(base_options(fusion))
        resolved.update(opts)
        same = next((v["variant"] for v in out if v["fusion"] == fusion and v["options"] == resolved), None)
        out.append({"variant": name, "fusion": fusion, "options": resolved, "same_as": same})
    return out


def summarize_rows(rows: list[dict]) -> dict:
    """``{dataset: {variant: {metric: {mean, std, values}}}}`` over seeds."""
    out: dict = {}
    for ds in DATASETS:
        mine = [r for r in rows if r["dataset"] == ds]
        for variant in dict.fromkeys(r["variant"] for r in mine):
            per = [r for r in mine if r["variant"] == variant]
            keys = [k for k, *_ in TABLE[ds]] + ["train_seconds", "epochs_run"]
            s = summarize(per, keys)
            s["same_as"] = per[0]["same_as"]
            s["n_seeds"] = len(per)
            out.setdefault(ds, {})[variant] = s
    return out


def summary_table(summary: dict, variants: list[str]) -> str:
    datasets = [ds for ds in DATASETS if ds in summary]
    header = ["variant"]
    for ds in datasets:
        header += [f"{TITLES[ds]} {title}" for _, title, *_ in TABLE[ds]] + [f"{TITLES[ds]} s / run"]
    table = []
    for v in variants:
        row = [v]
        for ds in datasets:
            s = summary[ds].get(v)
            if s is None:
                row += [""] * (len(TABLE[ds]) + 1)
                continue
            row += [f"{s[k]['mean'] * sc:.{d}f} +- {s[k]['std'] * sc:.{d}f}" for k, _, sc, d in TABLE[ds]]
            row.append(f"{s['train_seconds']['mean']:.0f}")
        same = {summary[ds][v]["same_as"] for ds in datasets if v in summary[ds] and summary[ds][v]["same_as"]}
        if same:
            row[0] += " (" + ", ".join(f"= {x}" for x in sorted(same)) + (
                f" on {', '.join(TITLES[ds] for ds in datasets if summary[ds].get(v, {}).get('same_as'))})"
                if len(datasets) > 1 else ")")
        table.append(row)
    return markdown_table(header, table)


def write_results(out: Path, rows: list[dict], seeds: list[int], variants: list[str], seconds: float) -> str:
    """``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md`` of an ablation; returns the table."""
    write_csv(out / "per_seed.csv", rows)
    summary = summarize_rows(rows)
    write_json(out / "summary.json", {"summary": summary, "seeds": seeds,
                                      "wall_seconds": seconds})
    flat = []
    for ds, per in summary.items():
        for v, s in per.items():
            row = {"dataset": ds, "variant": v, "same_as": s["same_as"], "n_seeds": s["n_seeds"]}
            for k, *_ in TABLE[ds]:
                row[f"{k}_mean"], row[f"{k}_std"] = s[k]["mean"], s[k]["std"]
            row["train_seconds_mean"] = s["train_seconds"]["mean"]
            flat.append(row)
    write_csv(out / "summary.csv", flat)
    title = (f"Ablations, test metrics, mean +- std over {len(seeds)} seed(s) {seeds}; ROSMAP selected "
             "on a stratified validation split of the training files, MOSI on the dev split")
    table = summary_table(summary, variants)
    (out / "summary.md").write_text(title + "\n\n" + table + "\n")
    return title + "\n\n" + table


def rosmap_specs(variants: list[dict]) -> tuple[list[str], dict[str, str]]:
    """The omics fusion specs of the variants trained (the variant's own options: the omics experiment adds its
    defaults back) and each variant's run label."""
    specs, label_of = [], {}
    for v in variants:
        if v["same_as"]:
            continue
        opts = VARIANTS[v["variant"]][1]
        spec = v["fusion"] + (":" + ",".join(f"{k}={val}" for k, val in opts.items()) if opts else "")
        specs.append(spec)
        label_of[v["variant"]] = parse_fusion_spec(spec).label
    return specs, label_of


def run_rosmap(ns, variants: list[dict], label_of: dict[str, str], out: Path, resume: bool) -> list[dict]:
    """The ROSMAP variants through the omics experiment; ``ns``: the omics command's options, ``--fusion`` the
    variants' specs."""
    from . import omics

    settings, runs = omics.configure(ns)
    res = run_experiment(omics.OMICS, settings, runs, ns.seeds, out, resume=resume, progress=ns.progress,
                         threads=ns.threads)
    return _rows("rosmap", variants, ns.seeds, res["rows"], label_of)


def run_mosi(ms, variants: list[dict], seeds: list[int], out: Path, resume: bool, progress: bool,
             threads: int | None) -> list[dict]:
    """The MOSI variants as runner variants of the mosi-features experiment (its model, trainer and settings,
    subset T+A+V, the variant's fusion options); ``ms``: the mosi-features command's options."""
    from . import mosi_features
    from .mosi_objective import parse_subset

    ms.fusion, ms.subsets = ["deq"], ["T+A+V"]
    settings, _ = mosi_features.configure(ms)
    runs = [{"label": v["variant"], "subset": "T+A+V", "modalities": parse_subset("T+A+V"),
             "fusion": v["fusion"], "options": v["options"]} for v in variants if not v["same_as"]]
    res = run_experiment(mosi_features.MOSI_FEATURES, settings, runs, seeds, out, resume=resume, progress=progress,
                         threads=threads)
    return _rows("mosi", variants, seeds, res["rows"], {v["variant"]: v["variant"] for v in variants})


def _rows(dataset: str, variants: list[dict], seeds, run_rows: list[dict], label_of: dict[str, str]) -> list[dict]:
    """One ablation row per variant and seed (a variant equal to an earlier one reports that one's runs)."""
    by_run = {(r["label"], r["seed"]): r for r in run_rows}
    rows = []
    for v in variants:
        for seed in seeds:
            r = by_run[(label_of[v["same_as"] or v["variant"]], seed)]
            row = {"dataset": dataset, "variant": v["variant"], "same_as": v["same_as"] or "", "seed": seed,
                   "fusion": v["fusion"], "options": json.dumps(v["options"], sort_keys=True),
                   **{k: r[f"test_{k}"] for k, *_ in TABLE[dataset]},
                   "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                   "train_seconds": round(r["train_seconds"], 2)}
            if dataset == "rosmap" and "test_solver_steps" in r:
                row["test_solver_steps"] = r["test_solver_steps"]
            rows.append(row)
    return rows


def rosmap_variants(names: list[str], reference_settings: bool) -> list[dict]:
    """The variants resolved against the omics experiment's fusion presets."""
    from . import omics

    return resolve_variants(names, lambda fusion: omics.presets(reference_settings)[fusion][1])


def write_config(out: Path, cfg: dict, variants: list[str], resume: bool) -> None:
    """Write the ablation's ``config.json`` (``cfg`` plus the variants' definitions); a folder holding another
    ablation is refused, and one holding this ablation only with ``resume``."""
    path = out / "config.json"
    if path.is_file() and not resume:
        raise UserError(f"{out} already holds an ablation; pass --resume to continue it or choose another --out")
    cfg = {**cfg, "out": str(out.resolve()),
           "variant_definitions": {v: {"fusion": VARIANTS[v][0], "options": VARIANTS[v][1]} for v in variants}}
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in ("omics_args", "mosi_args", "variant_definitions")
                   if old.get(k) != json.loads(json.dumps(cfg[k]))]
        if changed:
            raise UserError(f"{out}/config.json differs from these settings in {changed}; use another --out")
    atomic_write_json(path, cfg)
