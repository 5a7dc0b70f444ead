"""The documentation stays true: every results table kept between ``<!-- report: ... -->`` markers in the README
and the docs equals what ``deqfusion report`` renders from its committed result files, and the options tables of
the usage page and the README match the signature of ``DEQFusion``."""

import inspect
import re
import shutil
from pathlib import Path

import pytest

from deqfusion import DEQFusion
from deqfusion.experiments.report import START, fill_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
WITH_REPORTS = [p for p in DOCS if any(START.match(line) for line in p.read_text().splitlines())]


def test_some_documents_hold_generated_tables():
    assert len(WITH_REPORTS) >= 2, [str(p) for p in WITH_REPORTS]


@pytest.mark.parametrize("path", WITH_REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_report_tables_match_their_result_files(path):
    stale = fill_file(path, check=True)
    assert not stale, (f"{path.relative_to(ROOT)}: these tables differ from their result files; run "
                       f"`deqfusion report --fill {path.relative_to(ROOT)}` and review the change: {stale}")


def _options_table(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `(\w+)` \| `([^`]*)` \|", line)
        if m:
            rows[m[1]] = m[2]
    return rows


def test_usage_options_table_matches_the_signature():
    table = _options_table((ROOT / "docs" / "usage.md").read_text())
    params = {name: p for name, p in inspect.signature(DEQFusion.__init__).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(table) == set(params), (f"docs/usage.md options table: missing {sorted(set(params) - set(table))}, "
                                       f"unknown {sorted(set(table) - set(params))}")
    for name, shown in table.items():
        assert shown == repr(params[name].default).replace("'", '"'), (
            f"docs/usage.md says {name} defaults to {shown}, DEQFusion has {params[name].default!r}")


def _readme_options() -> list[tuple[list[str], list[str]]]:
    """Rows of the README's options table: (argument names, default cells), several names per row allowed."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Options"):]
    section = section[:section.index("\n\n", section.index("|"))]
    rows = []
    for line in section.splitlines()[3:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")]
        rows.append((names, defaults))
    return rows


def test_readme_options_table_matches_the_signature():
    import ast

    params = inspect.signature(DEQFusion.__init__).parameters
    rows = _readme_options()
    assert len(rows) >= 8
    for names, defaults in rows:
        assert len(defaults) in (1, len(names)), (names, defaults)
        for name, cell in zip(names, defaults * len(names) if len(defaults) == 1 else defaults):
            assert name in params and params[name].kind is inspect.Parameter.KEYWORD_ONLY, f"README: no option {name}"
            cell = cell.strip("`")
            # a default written as another argument's name means "None: take that argument's value"
            value = None if cell in params else ast.literal_eval(cell)
            assert value == params[name].default, f"README says {name} defaults to {cell}, DEQFusion has " \
                                                  f"{params[name].default!r}"


def test_commands_reference_lists_every_command_with_its_options():
    import importlib
    import sys

    from deqfusion.cli import COMMAND_MODULES

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        hooks = importlib.import_module("mkdocs_hooks")
    finally:
        sys.path.remove(str(ROOT / "tools"))
    page = (ROOT / "docs" / "reference" / "commands.md").read_text()
    listed = hooks.LINE.findall(page)
    names = [importlib.import_module(m).NAME for m in COMMAND_MODULES]
    assert sorted(listed) == sorted(names)
    rendered = hooks.on_page_markdown(page, None, None, None)
    for name in names:
        assert f"usage: deqfusion {name}" in rendered
    assert "cli-help:" not in rendered
    with pytest.raises(ValueError, match="no deqfusion command 'nope'"):
        hooks.cli_help("nope")


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def _example_namespace() -> dict:
    """Inputs of the shapes the documents' examples state: three omics (B, d_i), a contractive map with a
    trainable weight, a head, labels and a loss."""
    import torch

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(16, 16) * 0.1)
    xs = [torch.randn(2, 1000), torch.randn(2, 1000), torch.randn(2, 503)]
    return {"x_mrna": xs[0], "x_methylation": xs[1], "x_mirna": xs[2], "x1": xs[0], "x2": xs[1], "x3": xs[2],
            "head": torch.nn.Linear(500, 2), "y": torch.tensor([0, 1]), "criterion": torch.nn.CrossEntropyLoss(),
            "w": w, "f": lambda z: torch.tanh(z @ w + 1.0), "z0": torch.zeros(3, 16)}


@pytest.mark.parametrize("page", ["README.md", "docs/usage.md", "docs/deq.md", "docs/adding-a-dataset.md"])
def test_page_code_runs(page):
    """A page's Python blocks run in order as written, given inputs of the shapes they state."""
    import torch

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert len(blocks) >= (1 if page == "docs/adding-a-dataset.md" else 2)
    ns = _example_namespace()
    if page == "docs/deq.md":
        ns["criterion"] = lambda z: z.square().sum()
    for block in blocks:
        exec(compile(block, page, "exec"), ns)
    if "fused" in ns:
        assert ns["fused"].shape == (2, 500) and ns["head"].weight.grad is not None
    if page == "docs/deq.md":
        assert ns["w"].grad is not None and torch.isfinite(ns["w"].grad).all()
        assert ns["reg"].requires_grad and ns["rho"].shape == (3,) and bool((ns["rho"] < 1).all())
    if page == "docs/adding-a-dataset.md":
        out = Path(ns["out"])
        assert (out / "config.json").is_file() and len(list(out.rglob("result.json"))) == 6
        assert "points: test accuracy" in ns["result"]["tables"]
        shutil.rmtree(out)
    if page == "README.md":
        assert bool(ns["res"].converged.all()) and ns["out"].z.shape == (3, 16)


def test_reference_shows_roles_as_code_and_defaults_as_values():
    import importlib
    import sys

    from deqfusion.deq import defaults

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        ext = importlib.import_module("griffe_roles")
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert ext.ROLE.sub(ext._code, "see :func:`~deqfusion.deq.solvers.solve` and :mod:`deqfusion.deq`") == (
        "see `solve` and `deqfusion.deq`")
    values = ext._library_defaults()
    assert values["F_MAX_ITER"] == defaults.F_MAX_ITER and values["B_MODE"] == defaults.B_MODE
    assert ext.DEFAULT_NAME.match("D.F_TOL")["name"] == "F_TOL" and not ext.DEFAULT_NAME.match("None")


def _bench_script(name: str):
    import importlib.util
    import sys

    bench = ROOT / "benchmarks"
    sys.path.insert(0, str(bench))  # the script imports its sibling _report.py
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    return mod


def test_cost_tables_are_rendered_from_the_benchmark_result():
    import json

    mod = _bench_script("user_model")
    result = json.loads((ROOT / "docs" / "results" / "benchmarks" / "user_model.json").read_text())
    assert mod.markdown_table(result, compact=True) in (ROOT / "README.md").read_text(), (
        "README's cost table differs from `python benchmarks/user_model.py --table "
        "docs/results/benchmarks/user_model.json --compact`")
    assert mod.markdown_table(result) in (ROOT / "docs" / "defaults.md").read_text(), (
        "docs/defaults.md's cost table differs from `python benchmarks/user_model.py --table "
        "docs/results/benchmarks/user_model.json`")


def test_solver_trace_table_is_rendered_from_its_result_file():
    import json

    mod = _bench_script("solver_over_training")
    result = json.loads((ROOT / "docs" / "results" / "benchmarks" / "solver_over_training.json").read_text())
    assert mod.markdown_table(result) in (ROOT / "docs" / "defaults.md").read_text(), (
        "docs/defaults.md's solver-over-training table differs from `python benchmarks/solver_over_training.py "
        "--table docs/results/benchmarks/solver_over_training.json`")
