"""Figures for the benchmark and convergence commands. matplotlib is an optional extra (``pip install
deqfusion[plot]``): it is imported only when a figure is drawn, with a clear error when it is missing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UserError

__all__ = ["import_pyplot", "bench_figure", "convergence_figure"]


def import_pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend; :class:`UserError` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise UserError(
            "drawing figures needs matplotlib, an optional extra: pip install 'deqfusion[plot]' (or matplotlib)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bench_figure(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Horizontal bars of the median step time and the peak tensor memory of every configuration, one row of
    panels per input shape, training and inference side by side. Rows with an ``error`` are left out."""
    plt = import_pyplot()
    ok = [r for r in rows if not r.get("error")]
    shapes = list(dict.fromkeys(r["shape"] for r in ok))
    if not shapes:
        raise ValueError("no successful benchmark rows to plot")
    labels = list(dict.fromkeys(r["label"] for r in ok))
    modes = [m for m in ("train", "inference") if any(r["mode"] == m for r in ok)]
    has_mem = any(r.get("tensor_peak_mb") is not None for r in ok)
    ncols = 1 + int(has_mem)
    fig, axes = plt.subplots(len(shapes), ncols, figsize=(6.0 * ncols, 0.45 * len(labels) * len(shapes) + 1.5),
                             squeeze=False)
    height = 0.8 / len(modes)
    colors = {"train": "tab:blue", "inference": "tab:orange"}
    for i, shape in enumerate(shapes):
        for j, (key, xlabel) in enumerate([("median_s", "median time per step (ms)"),
                                           ("tensor_peak_mb", "peak tensor memory (MiB)")][:ncols]):
            ax = axes[i][j]
            for k, mode in enumerate(modes):
                vals = []
                for lab in labels:
                    r = next((r for r in ok if r["shape"] == shape and r["label"] == lab and r["mode"] == mode), None)
                    v = None if r is None else r.get(key)
                    vals.append(math.nan if v is None else (v * 1e3 if key == "median_s" else v))
                pos = [y + (k - (len(modes) - 1) / 2) * height for y in range(len(labels))]
                ax.barh(pos, vals, height=height, color=colors[mode], label=mode)
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(shape, fontsize=9)
            ax.grid(axis="x", alpha=0.3, which="both")
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def convergence_figure(curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], paths: Sequence[str | Path],
                       title: str = "") -> list[Path]:
    """Relative residual against solver step, one panel per component, one line (mean) and band per method.

    ``curves[method][component]`` holds equal-length sequences ``"mean"``, ``"lo"``, ``"hi"`` (the band) indexed
    by step (step 1 first). Saved to every path in ``paths`` (format from the suffix: .png, .pdf, ...).
    """
    plt = import_pyplot()
    components = list(dict.fromkeys(c for per in curves.values() for c in per))
    if not components:
        raise ValueError("no convergence curves to plot")
    ncols = min(len(components), 3)
    nrows = math.ceil(len(components) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    styles = ["-", "--", ":", "-."]
    for idx, comp in enumerate(components):
        ax = axes[idx // ncols][idx % ncols]
        for m, (method, per) in enumerate(curves.items()):
            if comp not in per:
                continue
            c = per[comp]
            steps = list(range(1, len(c["mean"]) + 1))
            line, = ax.plot(steps, c["mean"], styles[m % len(styles)], label=method, lw=1.5)
            ax.fill_between(steps, c["lo"], c["hi"], color=line.get_color(), alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_title(comp, fontsize=10)
        ax.set_xlabel("solver step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
        if idx % ncols == 0:
            ax.set_ylabel("relative residual")
    for idx in range(len(components), nrows * ncols):
        axes[idx // ncols][idx % ncols].axis("off")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = []
    for p in paths:
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=130)
        out.append(p)
    plt.close(fig)
    return out
