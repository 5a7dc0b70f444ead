"""Results tables (mean +- sd over seeds) from experiment output folders, and the tables kept in documents.

The library part of ``deqfusion report`` (see that command for the column syntax and the options):
:func:`read_folder` reads a runner folder (or an older one with a ``per_seed.csv``), :func:`build_report` makes
one :class:`Report` over several folders, and :func:`fill_file` re-renders the ``<!-- report: ARGS -->`` blocks
of a markdown file (or, with ``check``, says which differ from their result files).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import logging
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..training.results import markdown_table
from .runner import LoadedRun, get_experiment, load_run, summarize_rows

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "json")

#: per-seed keys shown as the timing columns, in order of preference (older folders name them differently)
EPOCH_KEYS = ("epochs_run",)
SECONDS_KEYS = ("train_seconds", "train_time_s")

#: text columns of an older ``per_seed.csv`` that never name a variant
_NOT_VARIANT = {"seed", "options", "same_as", "dir"}

START = re.compile(r"^<!--\s*report:\s*(?P<args>.*?)\s*-->\s*$")
END = re.compile(r"^<!--\s*/report\s*-->\s*$")


@dataclass(frozen=True)
class ColumnSpec:
    """One metric column: per-seed ``key``, its ``title``, and ``value * scale`` printed with ``digits``."""

    key: str
    title: str
    scale: float = 1.0
    digits: int = 3


def parse_column(text: str) -> ColumnSpec:
    """``KEY[:TITLE[:SCALE[:DIGITS]]]`` -> :class:`ColumnSpec`; raises :class:`UserError` on a malformed spec."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 4:
        raise UserError(f"column {text!r}: expected KEY[:TITLE[:SCALE[:DIGITS]]]")
    key = parts[0]
    title = parts[1] if len(parts) > 1 and parts[1] else key
    try:
        scale = float(parts[2]) if len(parts) > 2 and parts[2] else 1.0
        digits = int(parts[3]) if len(parts) > 3 and parts[3] else 3
    except ValueError:
        raise UserError(f"column {text!r}: SCALE must be a number and DIGITS an integer") from None
    if digits < 0:
        raise UserError(f"column {text!r}: DIGITS must be >= 0")
    return ColumnSpec(key, title, scale, digits)


# ----------------------------------------------------------------------------------------------------- reading


@dataclass
class Source:
    """The per-seed rows of one folder, each with a ``label``, and the folder's default columns (if any)."""

    path: Path
    rows: list[dict]
    labels: list[str]
    columns: list[ColumnSpec] | None
    measured: str | None = None


def _number(text: str):
    try:
        v = float(text)
    except ValueError:
        return text
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def _experiment_columns(run: LoadedRun) -> list[ColumnSpec] | None:
    """The first table of the run's experiment, when its module can be imported."""
    name = run.experiment
    try:
        importlib.import_module(f"deqfusion.experiments.{name}")
    except ImportError:
        pass  # registered elsewhere, or unknown here: the registry decides
    try:
        tables = get_experiment(name).tables(run.config)
    except UserError:
        log.debug("experiment %r is not registered; default columns", name)
        return None
    if not tables:
        return None
    return [ColumnSpec(c.key, c.title, c.scale, c.digits) for c in tables[0].columns]


def _read_runner_folder(path: Path) -> Source:
    run = load_run(path)
    rows = run.rows()
    labels = [v["label"] for v in run.variants if any(r["label"] == v["label"] for r in rows)]
    return Source(path, rows, labels, _experiment_columns(run))


def _read_per_seed_csv(path: Path, group_by: list[str] | None) -> Source:
    csv_path = path / "per_seed.csv"
    with open(csv_path, newline="") as fh:
        rows = [{k: _number(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    if not rows:
        raise UserError(f"{csv_path} holds no runs")
    if group_by is None:
        text_cols = [k for k in rows[0] if k not in _NOT_VARIANT and isinstance(rows[0][k], str)]
        group_by = [k for k in text_cols if len({r.get(k) for r in rows}) > 1] or text_cols[:1]
    missing = [k for k in group_by if k not in rows[0]]
    if missing:
        raise UserError(f"{csv_path} has no column {missing[0]!r} to group by; it has {list(rows[0])}")
    labels: list[str] = []
    for r in rows:
        r["label"] = " ".join(str(r.get(k, "-")) for k in group_by) if group_by else path.name
        if r["label"] not in labels:
            labels.append(r["label"])
    return Source(path, rows, labels, None)


def read_provenance(path: str | Path) -> str | None:
    """``"DATE, COMMIT"`` from the folder's ``provenance.json``, or None when it has none.

    Raises:
        UserError: the file is not JSON or lacks a ``date`` or a ``commit``.
    """
    file = Path(path) / "provenance.json"
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data.get("date") or not data.get("commit"):
        raise UserError(f"{file} must hold a 'date' and a 'commit', e.g. {{\"date\": \"2026-11-28\", "
                        f"\"commit\": \"eaf65f2\"}}")
    return f"{data['date']}, {data['commit']}"


def read_folder(path: str | Path, group_by: list[str] | None = None) -> Source:
    """Read an output folder: the runner's layout if it has one, else its ``per_seed.csv``.

    Raises:
        UserError: ``path`` is not a folder, its ``config.json`` is not JSON, or it is neither layout.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder")
    source = _read_folder(path, group_by)
    source.measured = read_provenance(path)
    return source


def _read_folder(path: Path, group_by: list[str] | None) -> Source:
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            config = json.loads(cfg.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{cfg} is not valid JSON: {exc}") from None
        if isinstance(config, dict) and "experiment" in config and "variants" in config:
            return _read_runner_folder(path)
    if (path / "per_seed.csv").is_file():
        return _read_per_seed_csv(path, group_by)
    raise UserError(f"{path} is not an experiment output folder (no config.json of the runner, no per_seed.csv)")


# ---------------------------------------------------------------------------------------------------- tables


def _default_columns(rows: list[dict]) -> list[ColumnSpec]:
    keys = [k for r in rows for k, v in r.items() if k.startswith("test_") and _is_number(v)]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise UserError("the runs hold no test_* values; name the columns with --columns")
    return [ColumnSpec(k, k[len("test_"):]) for k in keys]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(stats: dict | None, scale: float, digits: int) -> str:
    if not stats or not stats["values"] or any(math.isnan(v) for v in stats["values"]):
        return "-"
    return f"{stats['mean'] * scale:.{digits}f} +- {stats['std'] * scale:.{digits}f}"


@dataclass
class Report:
    """The rendered material: the variants in order, their summaries, and the columns shown."""

    labels: list[str]
    summary: dict
    columns: list[ColumnSpec]
    timing: list[ColumnSpec]
    measured: dict[str, str] | None = None

    def _measured(self, label: str) -> list[str]:
        return [] if self.measured is None else [self.measured.get(label) or "-"]

    def header(self) -> list[str]:
        return (["variant", "seeds"] + [c.title for c in self.columns] + [c.title for c in self.timing]
                + ([] if self.measured is None else ["measured"]))

    def body(self) -> list[list]:
        out = []
        for label in self.labels:
            s = self.summary[label]
            out.append([label, s["n_seeds"]] + [_cell(s.get(c.key), c.scale, c.digits)
                                                  for c in self.columns + self.timing] + self._measured(label))
        return out

    def markdown(self) -> str:
        return markdown_table(self.header(), self.body())

    def long_markdown(self) -> str:
        """One row per variant and metric that the variant's runs hold (for tables across experiments)."""
        body = []
        for label in self.labels:
            s = self.summary[label]
            for c in self.columns:
                if s.get(c.key) and s[c.key]["values"]:
                    body.append([label, s["n_seeds"], c.title, _cell(s[c.key], c.scale, c.digits)]
                                + self._measured(label))
        return markdown_table(["variant", "seeds", "metric", "mean +- sd"]
                              + ([] if self.measured is None else ["measured"]), body)

    def csv(self) -> str:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        keys = [c.key for c in self.columns + self.timing]
        w.writerow(["variant", "n_seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
                   + ([] if self.measured is None else ["measured"]))
        for label in self.labels:
            s = self.summary[label]
            row = [label, s["n_seeds"]]
            for k in keys:
                st = s.get(k)
                row += [st["mean"], st["std"]] if st else ["", ""]
            w.writerow(row + self._measured(label))
        return buf.getvalue()

    def json(self) -> str:
        keys = [c.key for c in self.columns + self.timing]
        out = {label: {"n_seeds": self.summary[label]["n_seeds"], "seeds": self.summary[label]["seeds"],
                       **{k: self.summary[label][k] for k in keys if k in self.summary[label]},
                       **({} if self.measured is None else {"measured": self.measured.get(label)})}
               for label in self.labels}
        return json.dumps(out, indent=1, sort_keys=False)

    def render(self, fmt: str, long: bool = False) -> str:
        if fmt not in FORMATS:
            raise UserError(f"unknown format {fmt!r}; choose one of {FORMATS}")
        if long:
            if fmt != "md":
                raise UserError("--long is a markdown layout; csv and json already hold every value")
            return self.long_markdown()
        return {"md": self.markdown, "csv": self.csv, "json": self.json}[fmt]()


def _parse_renames(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--rename {item!r}: expected OLD=NEW")
        old, new = item.split("=", 1)
        out[old] = new
    return out


def _merge_sources(sources: list[Source], renames: dict[str, str], pool: bool):
    """The rows of all ``sources`` under their final labels: ``(rows, labels, label -> name before renaming,
    label -> provenance)``; refuses two variants of one name and, when pooling, a seed found twice."""
    seen: dict[str, int] = {}
    for src in sources:
        for label in src.labels:
            seen[label] = seen.get(label, 0) + 1
    rows, labels, before, when = [], [], {}, {}
    pooled: set[str] = set()
    for src in sources:
        for label in src.labels:
            new = f"{src.path.name}/{label}" if seen[label] > 1 and not pool else label
            before[renames.get(new, new)] = new
            new = renames.get(new, new)
            mine = [{**r, "label": new} for r in src.rows if r["label"] == label]
            if new in labels and not (pool and new in pooled):
                raise UserError(f"two variants are both called {new!r}; use --rename")
            if new in labels:
                repeated = sorted({r.get("seed") for r in mine} & {r.get("seed") for r in rows if r["label"] == new})
                if repeated:
                    raise UserError(f"variant {new!r}: seed(s) {repeated} occur in more than one of the pooled "
                                    f"folders")
                if src.measured and src.measured not in (when[new] or ""):
                    when[new] = "; ".join(filter(None, [when[new], src.measured]))
            else:
                labels.append(new)
                when[new] = src.measured
                if pool:
                    pooled.add(new)
            rows += mine
    unknown = sorted(set(renames) - {lab for src in sources for lab in src.labels}
                     - {f"{s.path.name}/{lab}" for s in sources for lab in s.labels})
    if unknown:
        raise UserError(f"--rename names no variant: {unknown}; the variants are {labels}")
    return rows, labels, before, when


def _timing_columns(present: set[str]) -> list[ColumnSpec]:
    """The epochs and seconds-per-run columns the runs hold (under their first known names)."""
    cols = []
    ek = next((k for k in EPOCH_KEYS if k in present), None)
    sk = next((k for k in SECONDS_KEYS if k in present), None)
    if ek:
        cols.append(ColumnSpec(ek, "epochs", 1.0, 0))
    if sk:
        cols.append(ColumnSpec(sk, "s / run", 1.0, 0))
    return cols


def build_report(folders: list[str | Path], columns: list[str] | None = None, timing: bool = True,
                 group_by: list[str] | None = None, rename: list[str] | None = None,
                 variants: list[str] | None = None, measured: bool = False, pool: bool = False) -> Report:
    """Read ``folders`` and summarise their rows per variant.

    Args:
        folders: experiment output folders (the runner's layout or an older ``per_seed.csv`` folder).
        columns: ``KEY[:TITLE[:SCALE[:DIGITS]]]`` specs; None: the experiment's first table, else every
            ``test_*`` value.
        timing: add the epochs and seconds-per-run columns when the runs hold them.
        group_by: for ``per_seed.csv`` folders, the text columns that make a variant's name.
        rename: ``OLD=NEW`` items; a label that occurs in two folders is first prefixed by its folder's name.
        variants: keep only these variants (named before or after ``rename``), in this order.
        measured: add each variant's ``provenance.json`` (date, commit) as a column.
        pool: a label found in several folders is one variant over all their seeds (a run split into seed
            ranges); otherwise each is a variant of its own, prefixed by its folder's name.

    Returns:
        The :class:`Report`; ``report.render("md" | "csv" | "json", long=False)`` gives the text.

    Raises:
        UserError: a folder cannot be read, a rename, variant or column names nothing the runs hold, two
            variants end up with one name, or pooled folders hold the same seed of a variant twice.

    Example:
        ```python
        rep = build_report(["runs/rosmap"], columns=["test_acc:ACC:100:1", "test_auc:AUC:100:1"])
        print(rep.render("md"))   # | variant | seeds | ACC | AUC | epochs | s / run |, one row per fusion
        ```
    """
    if not folders:
        raise UserError("name at least one output folder")
    sources = [read_folder(f, group_by) for f in folders]
    renames = _parse_renames(rename)
    rows, labels, before, when = _merge_sources(sources, renames, pool)
    if variants:
        by_name = {**{before[lab]: lab for lab in labels}, **{lab: lab for lab in labels}}
        missing = [v for v in variants if v not in by_name]
        if missing:
            raise UserError(f"no variant {missing[0]!r}; the variants are {labels}")
        labels = [by_name[v] for v in variants]
        rows = [r for r in rows if r["label"] in labels]
    if columns:
        cols = [parse_column(c) for c in columns]
    else:
        cols = next((s.columns for s in sources if s.columns), None) or _default_columns(rows)
    present = {k for r in rows for k in r}
    absent = [c.key for c in cols if c.key not in present]
    if absent:
        have = sorted(k for r in rows for k, v in r.items() if _is_number(v))
        raise UserError(f"no run holds {absent[0]!r}; the runs hold {sorted(set(have))}")
    time_cols = _timing_columns(present) if timing else []
    return Report(labels, summarize_rows(rows, labels), cols, time_cols,
                  {lab: when[lab] for lab in labels} if measured else None)


# ------------------------------------------------------------------------------------------- tables in files


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deqfusion report")
    add_report_arguments(p)
    return p


def _render_block(args_text: str, base: Path) -> str:
    try:
        argv = shlex.split(args_text)
    except ValueError as exc:
        raise UserError(f"cannot read the report arguments {args_text!r}: {exc}") from None
    parser = _arg_parser()
    parser.exit_on_error = False
    try:
        ns = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UserError(f"bad report arguments {args_text!r}: {exc}") from None
    if ns.fill:
        raise UserError(f"a report block cannot itself --fill: {args_text!r}")
    folders = [p if Path(p).is_absolute() else base / p for p in ns.folders]
    rep = build_report(folders, ns.columns, not ns.no_timing, ns.group_by, ns.rename, ns.variants, ns.measured,
                       ns.pool)
    return rep.render(ns.format, ns.long)


def fill_text(text: str, base: Path) -> tuple[str, list[str]]:
    """Re-render every report block of a markdown ``text`` (folders relative to ``base``).

    Returns the new text and the argument strings of the blocks whose table changed.
    """
    lines = text.split("\n")
    out: list[str] = []
    changed: list[str] = []
    i = 0
    while i < len(lines):
        m = START.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        j = i
        while j < len(lines) and not END.match(lines[j]) and not START.match(lines[j]):
            j += 1
        if j == len(lines) or START.match(lines[j]):
            raise UserError(f"the report block {m['args']!r} has no closing <!-- /report --> line")
        old = "\n".join(lines[i:j]).strip("\n")
        new = _render_block(m["args"], base)
        if old != new:
            changed.append(m["args"])
        out += ["", new, ""]
        out.append(lines[j])
        i = j + 1
    return "\n".join(out), changed


def fill_file(path: str | Path, check: bool = False) -> list[str]:
    """Re-render the report blocks of the markdown file ``path`` in place (or, with ``check``, only compare).

    Returns the argument strings of the blocks that differed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    text = path.read_text()
    new, changed = fill_text(text, path.parent)
    if not check and new != text:
        path.write_text(new)
    return changed


# ------------------------------------------------------------------------------------------------- options


#: the on/off options of ``deqfusion report``
_SWITCHES = {
    "--no-timing": "leave out the epochs and seconds columns",
    "--long": "markdown with one row per variant and metric (variants of different experiments in one table; a "
              "metric a variant's runs do not hold is left out)",
    "--pool": "a variant found in several folders (a run split into seed ranges) is one row over all their seeds",
    "--measured": "add a column with the date and commit each variant was measured at (the folder's "
                  "provenance.json)",
    "--check": "with --fill: write nothing, fail if a table differs",
}

#: the options of ``deqfusion report`` that take several values: (metavar, help)
_LISTS = {
    "--columns": ("KEY[:TITLE[:SCALE[:DIGITS]]]",
                  "metric columns (default: the experiment's own, else every test_* value)"),
    "--group-by": ("COLUMN", "per_seed.csv folders: the text columns that make a variant's name"),
    "--rename": ("OLD=NEW", "show variant OLD as NEW"),
    "--variants": ("LABEL", "show only these variants, in this order"),
    "--fill": ("FILE", "re-render the <!-- report: ARGS --> blocks of these markdown files in place"),
}


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``deqfusion report`` (also the syntax of a ``<!-- report: ARGS -->`` block)."""
    p.add_argument("folders", nargs="*", metavar="RUN_DIR", help="experiment output folders")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: md)")
    for flag, (metavar, text) in _LISTS.items():
        p.add_argument(flag, nargs="+", metavar=metavar, help=text)
    for flag, text in _SWITCHES.items():
        p.add_argument(flag, action="store_true", help=text)
