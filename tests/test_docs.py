"""The documentation stays true: every results table kept between ``<!-- report: ... -->`` markers in the README
and the docs equals what ``deqfusion report`` renders from its committed result files, and the options table of
the usage page matches the signature of ``DEQFusion``."""

import inspect
import re
from pathlib import Path

import pytest

from deqfusion import DEQFusion
from deqfusion.commands.report import START, fill_file

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
