"""The ``pairgen`` command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in
:func:`build_parser`. Its options come from the config dataclasses
(:mod:`manifests.options`: each field declares its flag, help, default and
bounds once). Bad arguments and bad inputs end in one clear message on
stderr, never a traceback (``--debug`` shows it): exit status 2 for an option
value out of its bounds (as argparse's own errors) and for an output folder
another run holds, 1 for bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
from pathlib import Path

from manifests import DATASETS, DatasetError, SyntheticOptions, discover, parse_dataset_list
from manifests.io import OutputError
from manifests.layout import CONTACT_SHEET
from manifests.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run_command
from manifests.options import ConfigError, add_options, from_args, with_flags
from pairgen import __version__
from pairgen.distribute import ClusterOptions
from pairgen.filter import FilterConfig
from pairgen.samples import SampleOptions
from pairgen.inspect import SheetOptions
from manifests.progress import Progress
from pairgen.render import RenderConfig
from pairgen.stage import report
from renderers.backends import BackendUnavailable, get_backend
from renderers.scene import SceneFormatError

__all__ = ["build_parser", "main"]

log = logging.getLogger("pairgen")

DEFAULT_DATA_ROOT = "data/scene_datasets"
DEFAULT_OUT = "data/pairgen"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, keeps the epilog's examples as written."""


def _subcommand(sub, name: str, *, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose help shows every default and ends with example command lines."""
    epilog = "examples:\n" + "\n".join("  " + e for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=_Formatter)


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenes", default="synthetic", metavar="LIST",
                   help="datasets, one or a comma list: " + ", ".join(DATASETS))
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=Path,
                   help="folder holding one folder per dataset (DATA_ROOT/hm3d, DATA_ROOT/scannet, ...)")
    p.add_argument("--split", default=None,
                   help="only this split, for datasets that have splits ("
                   + "; ".join(f"{d.name}: {', '.join(d.splits)}" for d in DATASETS.values() if d.splits) + ")")
    add_options(p, SyntheticOptions)


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

    p = _subcommand(
        sub,
        "scenes",
        help="list the scenes found under a data root, with their problems",
        description="List the scenes of one or more datasets found under --data-root, and every problem "
        "(missing mesh, unreadable file) per scene, without stopping at the first.",
        examples=[
            "pairgen scenes --scenes synthetic --triangles",
            "pairgen scenes --scenes hm3d,scannet --data-root data/scene_datasets --split val",
            "pairgen scenes --scenes replica --json > replica.json",
        ],
    )
    _add_dataset_options(p)
    p.add_argument("--triangles", action="store_true",
                   help="load every scene to count its triangles (and navmesh area); reports unreadable files")
    p.add_argument("--json", action="store_true", help="print one JSON object per scene instead of a table")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any scene has a problem")
    p.set_defaults(func=cmd_scenes)

    p = _subcommand(
        sub,
        "render",
        help="render views (RGB, depth, pose) of every scene into OUT/views",
        description="Render views of every scene into OUT/views/<dataset>/<scene_id>.parquet, one Ray task a "
        "scene. Cameras stand on the navmesh or on the floor found in the geometry, in walks whose views "
        "overlap at every level. A rerun skips finished scenes; a scene that fails is recorded in "
        "OUT/views.manifest.json with its reason and the others go on.",
        examples=[
            "pairgen render --scenes hm3d",
            "pairgen render --scenes synthetic --views-per-scene 100 --out /tmp/pg",
            "pairgen render --scenes scannet,replica --resolution 320x240 --hfov 75 --ray-address auto",
        ],
    )
    _add_dataset_options(p)
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: views go to OUT/views")
    add_options(p, RenderConfig)
    p.add_argument("--overwrite", action="store_true",
                   help="replace views rendered with another config instead of refusing")
    add_options(p, ClusterOptions)
    p.set_defaults(func=cmd_render)

    p = _subcommand(
        sub,
        "filter",
        help="keep view pairs that overlap about half (OUT/pairs), or samples of N views (OUT/<shape><N>)",
        description="Compute the covisibility of view pairs by depth reprojection, keep pairs with "
        "MIN_COVIS <= covisibility <= MAX_COVIS (up to --pairs-per-scene a scene), and write them as Parquet "
        "shards with a manifest in OUT/pairs. With --views N --shape star|chain|tree, keep samples of N views "
        "whose edges lie in that band instead (up to --pairs-per-scene samples a scene, a view in at most "
        "--max-pairs-per-view), each with its N x N covisibility matrix, in OUT/<shape><N> (star5, tree12): "
        "rows that name their views, or carry them with --embed. A rerun with the same config does nothing.",
        examples=[
            "pairgen filter --min-covis 0.5",
            "pairgen filter --out /tmp/pg --min-covis 0.4 --max-covis 0.9 --pairs-per-scene 500",
            "pairgen filter --measure croco --search exhaustive    # CroCo's k-d-tree overlap (slow)",
            "pairgen filter --views 5 --shape star --pairs-per-scene 200        # DUSt3R's stars: OUT/star5",
            "pairgen filter --views 12 --shape tree --min-covis 0.3 --max-covis 0.7   # MV-DUSt3R+'s trees: OUT/tree12",
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, type=Path,
                   help="working folder: reads OUT/views, writes OUT/pairs (samples: OUT/<shape><N>)")
    add_options(p, FilterConfig)
    add_options(p.add_argument_group("samples of N views"), SampleOptions)
    p.add_argument("--overwrite", action="store_true", help="replace pairs of another config instead of refusing")
    add_options(p, ClusterOptions)
    p.set_defaults(func=cmd_filter)

    p = _subcommand(
        sub,
        "inspect",
        help="statistics of OUT/pairs and a PNG contact sheet of random pairs",
        description="Print the statistics of a pairs folder (pairs, scenes, datasets, covisibility histogram, "
        "shard sizes), checked against the shards' footers, and write a PNG contact sheet of random pairs: "
        "view 1, view 2, and view 1 with its pixels covisible in view 2 tinted green. Exits with status 1 "
        "when a shard is missing, unreadable or disagrees with the manifest.",
        examples=[
            "pairgen inspect",
            "pairgen inspect --out /tmp/pg --pairs 16 --seed 3 --sheet /tmp/pg/sheet.png",
            "pairgen inspect --json > pairs-stats.json",
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: reads OUT/pairs")
    p.add_argument("--sheet", default=None, type=Path, metavar="PATH",
                   help="where the contact sheet PNG goes (None: OUT/contact_sheet.png)")
    add_options(p, SheetOptions)
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object instead of a table")
    p.set_defaults(func=cmd_inspect)
    _add_interchange(sub)
    return parser


def _add_interchange(sub) -> None:
    """``import croco`` and ``export --format croco`` (:mod:`pairgen.interchange.croco`)."""
    from pairgen.interchange.croco import CrocoPairsConfig, ImportConfig

    p = _subcommand(
        sub,
        "import",
        help="render the cameras of CroCo's released pairs (its metadata.json files) into OUT/views and OUT/pairs",
        description="Read CroCo's per-scene metadata.json files (naver/croco datasets/habitat_sim format) under "
        "METADATA_DIR, render exactly their cameras with our backend (no habitat-sim needed), and write "
        "OUT/views and OUT/pairs in pairgen's layout, so `pretrain run --shards OUT/pairs` trains on CroCo's "
        "pairs. Scene paths start with a CroCo dataset label (hm3d/, scannet/, habitat-test-scenes/, "
        "replica_cad_baked_lighting/, ...), found as DATA_ROOT/<label> unless --dataset-map says otherwise. "
        "Every pair is kept, with its covisibility by our measure, unless --min-covis/--max-covis are given. "
        "A scene missing under the data root is recorded with its reason and the others go on; the same "
        "command again does nothing.",
        examples=[
            "pairgen import croco data/habitat_release_metadata/multiview_habitat_metadata",
            "pairgen import croco META --data-root /data/scene_datasets --dataset-map hm3d=hm3d_v0.2 --out /tmp/cc",
            "pairgen import croco META --min-covis 0.4 --max-covis 0.9 --no-ray",
        ],
    )
    p.add_argument("format", choices=["croco"], help="the format of METADATA_DIR")
    p.add_argument("metadata_dir", type=Path, metavar="METADATA_DIR",
                   help="folder searched for metadata.json files (or one metadata.json)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=Path,
                   help="folder holding one folder per CroCo dataset label (DATA_ROOT/hm3d, DATA_ROOT/scannet, ...)")
    p.add_argument("--dataset-map", action="append", default=[], metavar="LABEL=FOLDER",
                   help="find CroCo's LABEL/... paths under FOLDER (relative to DATA_ROOT, or absolute); repeatable")
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: writes OUT/views and OUT/pairs")
    add_options(p, ImportConfig)
    add_options(p, CrocoPairsConfig)
    p.add_argument("--overwrite", action="store_true", help="replace outputs of another config instead of refusing")
    add_options(p, ClusterOptions)
    p.set_defaults(func=cmd_import)

    p = _subcommand(
        sub,
        "export",
        help="write OUT/pairs in another tool's layout (CroCo's habitat_release) into DEST",
        description="Write the pairs of OUT/pairs as CroCo's habitat_release folder DEST: per scene "
        "<label>_1.jpeg, <label>_2.jpeg, <label>_{1,2}_depth.exr (half float), <label>_{1,2}_camera_params.json "
        "and a metadata.json in CroCo's format (which `pairgen import croco` reads back), and DEST/pairs.txt, "
        "the cache naver/croco's datasets/pairs_dataset.py reads for --dataset habitat_release "
        "(DEST is its data/habitat_release). Resumable; the same command again does nothing.",
        examples=[
            "pairgen export --format croco data/habitat_release",
            "pairgen export --format croco /tmp/habitat_release --out /tmp/pg",
        ],
    )
    p.add_argument("dest", type=Path, metavar="DEST", help="the folder written (CroCo's data/habitat_release)")
    p.add_argument("--format", default="croco", choices=["croco"], help="the layout written")
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: reads OUT/pairs (and OUT/views)")
    p.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from pairgen.interchange.croco import (CrocoPairsConfig, CrocoPairsStage, ImportConfig, ImportStage,
                                           find_metadata, import_tasks, parse_dataset_map)  # fmt: skip

    config = from_args(ImportConfig, args)
    pairs_config = from_args(CrocoPairsConfig, args)
    cluster = from_args(ClusterOptions, args)
    try:
        dataset_map = parse_dataset_map(args.dataset_map)
    except ValueError as e:
        print(f"pairgen import: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    get_backend(config.backend).check_available()
    files = find_metadata(args.metadata_dir)
    bar = Progress(len(files), "reading metadata", "file") if len(files) >= 100 else None  # closed on success only
    tasks = import_tasks(files, args.data_root, dataset_map, progress=bar)  # every file checked before any work
    if bar is not None:
        bar.close()
    stage = ImportStage(tasks, args.out, config, distributor=cluster.distributor(), overwrite=args.overwrite,
                        progress=Progress)  # fmt: skip
    status = report(stage, stage.run(), sys.stderr)
    if not stage.manifest.ok_scenes():
        return status or EXIT_FAILED
    pairs = CrocoPairsStage(args.out, pairs_config, distributor=cluster.distributor(), overwrite=args.overwrite,
                            progress=Progress)  # fmt: skip
    return max(status, report(pairs, pairs.run(), sys.stderr))


def cmd_export(args: argparse.Namespace) -> int:
    from pairgen.interchange.croco import export_croco

    summary = export_croco(args.out, args.dest, progress=Progress)
    print(summary.line(), file=sys.stderr)
    return EXIT_OK


def _discover(args: argparse.Namespace) -> list:
    specs = parse_dataset_list(args.scenes)
    synthetic = from_args(SyntheticOptions, args)
    records = []
    for spec in specs:
        records.extend(discover(spec, args.data_root, args.split, synthetic))
    return records


def cmd_scenes(args: argparse.Namespace) -> int:
    from pairgen.scenes import describe

    records = _discover(args)
    with Progress(len(records), "loading scenes", "scene") if args.triangles else contextlib.nullcontext() as bar:
        rows = describe(records, triangles=args.triangles, progress=bar)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(rows, args.data_root, args.triangles)
    bad = sum(1 for r in rows if r["problems"])
    print(f"{len(rows)} scenes, {len(rows) - bad} usable, {bad} with problems", file=sys.stderr)
    return EXIT_FAILED if (args.strict and bad) else EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from pairgen.render import RenderStage

    config = from_args(RenderConfig, args, seed=args.seed)
    cluster = from_args(ClusterOptions, args)
    get_backend(config.backend).check_available()  # before any work: one message, the install route
    records = _discover(args)
    stage = RenderStage(records, args.out, config, distributor=cluster.distributor(), overwrite=args.overwrite,
                        progress=Progress)  # fmt: skip
    log.info("rendering %d scene(s) into %s", len(records), stage.folder)
    return report(stage, stage.run(), sys.stderr)


def cmd_filter(args: argparse.Namespace) -> int:
    from pairgen.filter import FilterStage

    config = from_args(FilterConfig, args)
    options = from_args(SampleOptions, args)
    cluster = from_args(ClusterOptions, args)
    common = dict(distributor=cluster.distributor(), overwrite=args.overwrite, progress=Progress)
    if options.is_pairs:
        stage = FilterStage(args.out, config, **common)
    else:
        from pairgen.samples import SamplesConfig, SamplesStage

        if config.search != "index":
            raise with_flags(ConfigError("search", "applies to pairs: samples grow on the index's candidate edges"),
                             FilterConfig)  # fmt: skip
        stage = SamplesStage(args.out, SamplesConfig.of(config, options), **common)
    return report(stage, stage.run(), sys.stderr)


def cmd_inspect(args: argparse.Namespace) -> int:
    from pairgen.inspect import contact_sheet, pairs_statistics

    options = from_args(SheetOptions, args)
    pairs_dir = args.out / "pairs"
    stats = pairs_statistics(pairs_dir)
    sheet_path = args.sheet if args.sheet is not None else args.out / CONTACT_SHEET  # beside pairs/: Parquet only there
    sheet = (contact_sheet(pairs_dir, sheet_path, n=options.pairs, seed=options.seed)
             if stats["totals"]["pairs"] else None)  # fmt: skip
    stats["contact_sheet"] = None if sheet is None else {"path": sheet["path"], "pairs": len(sheet["pairs"]),
                                                         "seed": options.seed}  # fmt: skip
    if args.json:
        print(json.dumps(stats))
    else:
        _print_statistics(stats)
    for problem in stats["problems"]:
        print(f"  PROBLEM {problem}", file=sys.stderr)
    if stats["problems"]:
        print(f"{len(stats['problems'])} problem(s) in {pairs_dir}", file=sys.stderr)
    return EXIT_FAILED if stats["problems"] else EXIT_OK


def _print_statistics(stats: dict, bar_width: int = 40) -> None:
    t = stats["totals"]
    print(f"{stats['pairs_dir']}  (config {stats['config_hash']})")
    print(f"  {t['pairs']:,} pairs, {t['scenes']:,} scenes, {t['datasets']} dataset(s), "
          f"{t['shards']} shard(s), {t['mib']:.1f} MiB")  # fmt: skip
    per_scene = list(stats["scenes"].values())
    for name, d in stats["datasets"].items():
        print(f"  {name}: {d['pairs']:,} pairs from {d['scenes']:,} scenes")
    if per_scene:
        print(f"  pairs a scene: min {min(per_scene):,}, median {statistics.median(per_scene):,g}, "
              f"max {max(per_scene):,}")  # fmt: skip
    bins, counts = stats["histogram"]["bins"], stats["histogram"]["counts"]
    used = [i for i, c in enumerate(counts) if c]
    print("covisibility")
    if used:
        top = max(counts)
        for i in range(used[0], used[-1] + 1):
            bar = "#" * round(bar_width * counts[i] / top)
            print(f"  {bins[i]:.2f}-{bins[i + 1]:.2f}  {bar:<{bar_width}}  {counts[i]:,}")
    s = stats["shard_sizes"]
    print(f"shards  pairs: min {s['pairs']['min']:,}, median {s['pairs']['median']:,g}, max {s['pairs']['max']:,};  "
          f"MiB: min {s['mib']['min']:.2f}, median {s['mib']['median']:.2f}, max {s['mib']['max']:.2f}")  # fmt: skip
    sheet = stats.get("contact_sheet")
    print(f"contact sheet: {sheet['path']} ({sheet['pairs']} pairs, seed {sheet['seed']})" if sheet
          else "contact sheet: none (no pairs)")  # fmt: skip


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
    return run_command("pairgen", args, args.func,
                       failures=(DatasetError, SceneFormatError, OutputError, BackendUnavailable, ValueError))
