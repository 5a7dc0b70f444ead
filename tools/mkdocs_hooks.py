"""MkDocs hook: a line ``<!-- cli-help: NAME -->`` in a page becomes the ``--help`` text of ``deqfusion NAME``,
built from the command's own argument parser, so the options listed in the reference are always the real ones."""

from __future__ import annotations

import argparse
import importlib
import os
import re

LINE = re.compile(r"^<!--\s*cli-help:\s*(?P<name>[\w-]+)\s*-->\s*$", re.MULTILINE)


def _help_texts(parser: argparse.ArgumentParser) -> list[str]:
    parser.description = None  # the module's docstring stands above it on the page
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += _help_texts(sub)
    return texts


def cli_help(name: str) -> str:
    from deqfusion.cli import COMMAND_MODULES

    os.environ["COLUMNS"] = "92"  # argparse wraps to the terminal's width
    for modname in COMMAND_MODULES:
        mod = importlib.import_module(modname)
        if mod.NAME == name:
            parser = argparse.ArgumentParser(prog=f"deqfusion {name}")
            mod.add_arguments(parser)
            return "\n".join(_help_texts(parser)).rstrip()
    raise ValueError(f"cli-help: no deqfusion command {name!r}")


def on_page_markdown(markdown: str, page, config, files) -> str:
    return LINE.sub(lambda m: "```text\n" + cli_help(m["name"]) + "\n```", markdown)
