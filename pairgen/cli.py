"""The ``pairgen`` command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in
:func:`build_parser`; bad arguments and bad inputs end in one clear message on
stderr and a non-zero exit, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from manifests import DatasetError, SyntheticOptions, discover, parse_dataset_list
from pairgen import __version__
from renderers.scene import SceneFormatError

__all__ = ["build_parser", "main"]

log = logging.getLogger("pairgen")

DEFAULT_DATA_ROOT = "data/scene_datasets"
EXIT_OK, EXIT_FAILED = 0, 1


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, keeps the epilog's examples as written."""


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenes", default="synthetic", metavar="LIST",
                   help="datasets, one or a comma list: hm3d, scannet, replica, mp3d, gibson, synthetic")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=Path,
                   help="folder holding one folder per dataset (DATA_ROOT/hm3d, DATA_ROOT/scannet, ...)")
    p.add_argument("--split", default=None, help="only this split, for datasets that have splits (hm3d: train, val, minival)")
    p.add_argument("--synthetic-count", type=int, default=4, metavar="N", help="how many procedural apartments 'synthetic' holds")
    p.add_argument("--synthetic-preset", default="medium", choices=("small", "medium", "large"),
                   help="size of the procedural apartments (large: about 1 M triangles)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first procedural apartment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairgen",
        description="Build cross-view (CroCo) pre-training pairs from indoor scene datasets.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"pairgen {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "scenes",
        help="list the scenes found under a data root, with their problems",
        description="List the scenes of one or more datasets found under --data-root, and every problem "
        "(missing mesh, unreadable file) per scene, without stopping at the first.",
        epilog="examples:\n"
        "  pairgen scenes --scenes synthetic --triangles\n"
        "  pairgen scenes --scenes hm3d,scannet --data-root data/scene_datasets --split val\n"
        "  pairgen scenes --scenes replica --json > replica.json",
        formatter_class=_Formatter,
    )
    _add_dataset_options(p)
    p.add_argument("--triangles", action="store_true",
                   help="load every scene to count its triangles (and navmesh area); reports unreadable files")
    p.add_argument("--json", action="store_true", help="print one JSON object per scene instead of a table")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any scene has a problem")
    p.set_defaults(func=cmd_scenes)
    return parser


def _progress(total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)


def cmd_scenes(args: argparse.Namespace) -> int:
    from pairgen.scenes import describe

    specs = parse_dataset_list(args.scenes)
    synthetic = SyntheticOptions(count=args.synthetic_count, preset=args.synthetic_preset, seed=args.seed)
    records = []
    for spec in specs:
        records.extend(discover(spec, args.data_root, args.split, synthetic))
    with _progress(len(records), "loading scenes", "scene") if args.triangles else contextlib.nullcontext() as bar:
        rows = describe(records, triangles=args.triangles, progress=bar)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(rows, args.data_root, args.triangles)
    bad = sum(1 for r in rows if r["problems"])
    print(f"{len(rows)} scenes, {len(rows) - bad} usable, {bad} with problems", file=sys.stderr)
    return EXIT_FAILED if (args.strict and bad) else EXIT_OK


def _print_table(rows: list[dict], data_root: Path, triangles: bool) -> None:
    def rel(path: str | None) -> str:
        if path is None:
            return "-"
        try:
            return str(Path(path).relative_to(data_root))
        except ValueError:
            return path

    header = ["dataset", "split", "scene", "mesh", "navmesh"] + (["triangles"] if triangles else []) + ["status"]
    table = [header]
    for r in rows:
        line = [r["dataset"], r["split"] or "-", r["scene_id"], rel(r["mesh"]), "yes" if r["navmesh"] else "no"]
        if triangles:
            line.append(f"{r['triangles']:,}" if "triangles" in r else "-")
        line.append("ok" if not r["problems"] else "PROBLEM: " + "; ".join(r["problems"]))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (DatasetError, SceneFormatError) as e:
        if args.debug:
            raise
        print(f"pairgen: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("pairgen: interrupted", file=sys.stderr)
        return 130
