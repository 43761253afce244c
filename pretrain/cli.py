"""The ``pretrain`` command line.

The CroCo trainer (``pretrain run``, ``pretrain export``) is not built yet
(issue 5); until then the command says so plainly rather than pretending.
"""

from __future__ import annotations

import argparse
import sys

from pairgen import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretrain",
        description="Pre-train CroCo on pairgen's Parquet pair shards.",
    )
    parser.add_argument("--version", action="version", version=f"pretrain {__version__}")
    parser.add_argument("command", nargs="?", help="subcommand (run, export: not available in this version)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(
        f"pretrain: error: {'no subcommand given' if args.command is None else repr(args.command) + ' is not available'}; "
        "the CroCo trainer is not part of this version of pairgen yet",
        file=sys.stderr,
    )
    return 2
