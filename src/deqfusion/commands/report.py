"""``deqfusion report``: results tables (mean +- sd over seeds) from experiment output folders.

Reads one or more output folders and prints one table with a row per variant: the number of seeds, the chosen
metrics as mean +- sample standard deviation over seeds, and the timing columns (epochs and seconds per run)::

    deqfusion report runs/rosmap                       # markdown, the experiment's own columns
    deqfusion report runs/a runs/b --format csv        # rows of both folders, as CSV
    deqfusion report runs/mosi --columns test_mae:MAE test_acc2_neg_pos:Acc-2:100:1

A folder is either one written by the experiment runner (``config.json`` plus ``<label>/seed<k>/result.json``,
read with :func:`deqfusion.experiments.load_run`) or an older folder with a ``per_seed.csv`` (one row per run)
beside its ``config.json``; there a row's variant is made of the text columns that differ between rows (or the
``--group-by`` columns).

A column is ``KEY[:TITLE[:SCALE[:DIGITS]]]``: ``KEY`` names a per-seed value (``test_acc``, ``train_seconds``,
...), the cell shows ``mean * SCALE +- sd * SCALE`` with ``DIGITS`` decimals (default 1 and 3). Without
``--columns`` the experiment's first table is used when the experiment is known, else every ``test_*`` value.
``--long`` prints one row per variant and metric instead, leaving out the metrics a variant's runs do not hold,
so that folders of different experiments (an accuracy here, an error there) share one table. ``--pool`` makes a
variant found in several folders (one run split into seed ranges) one row over all their seeds. ``--measured`` adds a
column with the date and the commit of the code a variant was measured with, read from the ``provenance.json``
(``{"date": "2026-11-28", "commit": "eaf65f2"}``) kept beside the ``config.json`` of a committed result folder.

**Tables kept in documents.** ``--fill FILE...`` rewrites, in markdown files, every block between a line
``<!-- report: ARGS -->`` and the next ``<!-- /report -->`` with the table ``deqfusion report ARGS`` prints (folder
paths in ``ARGS`` are relative to the markdown file's own folder). ``--check`` with ``--fill`` writes nothing and
fails, naming the blocks, when a file's tables differ from what their folders give; the test suite runs it over
the README and the documentation so that no quoted table drifts from its result files.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..experiments.report import add_report_arguments, build_report, fill_file

NAME = "report"
HELP = "results tables (mean +- sd over seeds) from experiment output folders"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_report_arguments(p)

def run(args: argparse.Namespace) -> int:
    if args.fill:
        if args.folders:
            raise UserError("--fill takes markdown files; give the folders inside the files' report blocks")
        stale = []
        for f in args.fill:
            for block in fill_file(f, check=args.check):
                stale.append(f"{f}: {block}")
        if args.check and stale:
            print("tables that differ from their result files (run deqfusion report --fill to update):\n  "
                  + "\n  ".join(stale), file=sys.stderr)
            return 1
        return 0
    if args.check:
        raise UserError("--check needs --fill FILE...")
    rep = build_report(args.folders, args.columns, not args.no_timing, args.group_by, args.rename, args.variants,
                       args.measured, args.pool)
    sys.stdout.write(rep.render(args.format, args.long).rstrip("\n") + "\n")
    return 0
