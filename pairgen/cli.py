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
from manifests import store
from manifests.store import location
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
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=location,
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
    p.add_argument("--out", default=DEFAULT_OUT, type=location, help="working folder: views go to OUT/views")
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
    p.add_argument("--out", default=DEFAULT_OUT, type=location,
                   help="working folder: reads OUT/views, writes OUT/pairs (samples: OUT/<shape><N>)")
    add_options(p, FilterConfig)
    add_options(p.add_argument_group("samples of N views"), SampleOptions)
    p.add_argument("--overwrite", action="store_true", help="replace pairs of another config instead of refusing")
    add_options(p, ClusterOptions)
    p.set_defaults(func=cmd_filter)

    p = _subcommand(
        sub,
        "inspect",
        help="statistics of OUT/pairs (or of samples, OUT/<shape><N>) and a PNG contact sheet of random rows",
        description="Print the statistics of a pairs folder (pairs, scenes, datasets, covisibility histogram, "
        "shard sizes), checked against the shards' footers, and write a PNG contact sheet of random pairs: "
        "view 1, view 2, and view 1 with its pixels covisible in view 2 tinted green. With --samples FOLDER, "
        "the same for a folder of samples of N views (OUT/star5, OUT/tree12, written by filter --views N "
        "--shape S): samples a scene, the histogram of the edges' covisibility, every views file the samples "
        "name checked against the SHA-256 they recorded; the sheet shows a row of N views a sample, each "
        "captioned with its parent and the edge's covisibility, and the sample's N x N covisibility matrix. "
        "Exits with status 1 when a shard is missing, unreadable or disagrees with the manifest (or a views "
        "file that samples name is missing or changed).",
        examples=[
            "pairgen inspect",
            "pairgen inspect --out /tmp/pg --pairs 16 --seed 3 --sheet /tmp/pg/sheet.png",
            "pairgen inspect --json > pairs-stats.json",
            "pairgen inspect --samples star5 --pairs 6     # OUT/star5; sheet OUT/contact_sheet_star5.png",
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, type=location, help="working folder: reads OUT/pairs")
    p.add_argument("--samples", default=None, metavar="FOLDER",
                   help="inspect the samples folder OUT/FOLDER (star5, chain8, tree12, pair2: what filter --views N "
                        "--shape S wrote) instead of OUT/pairs")  # fmt: skip
    p.add_argument("--sheet", default=None, type=location, metavar="PATH",
                   help="the contact sheet's file: .png, .jpg or .jpeg, the suffix names the format (None: "
                        "OUT/contact_sheet.png; with --samples FOLDER, OUT/contact_sheet_FOLDER.png)")  # fmt: skip
    add_options(p, SheetOptions)
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object instead of a table")
    p.set_defaults(func=cmd_inspect)
    _add_interchange(sub)
    return parser


def _add_interchange(sub) -> None:
    """``import croco`` and ``export --format croco|dust3r`` (:mod:`pairgen.interchange.croco`, ``.dust3r``)."""
    from pairgen.interchange.croco import CrocoPairsConfig, ImportConfig, ImportLimits
    from pairgen.interchange.dust3r import Dust3rOptions

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
    p.add_argument("metadata_dir", type=location, metavar="METADATA_DIR",
                   help="folder searched for metadata.json files (or one metadata.json)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=location,
                   help="folder holding one folder per CroCo dataset label (DATA_ROOT/hm3d, DATA_ROOT/scannet, ...)")
    p.add_argument("--dataset-map", action="append", default=[], metavar="LABEL=FOLDER",
                   help="find CroCo's LABEL/... paths under FOLDER (relative to DATA_ROOT, or absolute); repeatable")
    p.add_argument("--out", default=DEFAULT_OUT, type=location, help="working folder: writes OUT/views and OUT/pairs")
    add_options(p, ImportConfig)
    add_options(p, ImportLimits)
    add_options(p, CrocoPairsConfig)
    p.add_argument("--overwrite", action="store_true", help="replace outputs of another config instead of refusing")
    add_options(p, ClusterOptions)
    p.set_defaults(func=cmd_import)

    p = _subcommand(
        sub,
        "export",
        help="write OUT/pairs (CroCo's habitat_release) or 5-view stars (DUSt3R's Habitat) in another tool's "
        "layout into DEST",
        description="--format croco: write the pairs of OUT/pairs as CroCo's habitat_release folder DEST: per "
        "scene <label>_1.jpeg, <label>_2.jpeg, <label>_{1,2}_depth.exr (half float), "
        "<label>_{1,2}_camera_params.json and a metadata.json in CroCo's format (which `pairgen import croco` "
        "reads back), and DEST/pairs.txt, the cache naver/croco's datasets/pairs_dataset.py reads for --dataset "
        "habitat_release (DEST is its data/habitat_release). --format dust3r: write the stars of 5 views of "
        "OUT/star5 (`pairgen filter --views 5 --shape star`) as the processed Habitat folder naver/dust3r's "
        "dust3r/datasets/habitat.py reads: per scene <key>_{1..5}.jpeg, <key>_{1..5}_depth.exr (half float), "
        "<key>_{1..5}_camera_params.json, view 1 the reference, and the scene lists "
        "DEST/Habitat_<n>_scenes_{train,val}.txt (load with Habitat(<n>, split='train', ROOT=DEST, ...)). "
        "Resumable; the same command again does nothing.",
        examples=[
            "pairgen export --format croco data/habitat_release",
            "pairgen export --format croco /tmp/habitat_release --out /tmp/pg",
            "pairgen export --format dust3r data/habitat_processed                  # OUT/star5, all in train",
            "pairgen export --format dust3r /tmp/habitat_processed --val-share 0.1 --out /tmp/pg",
        ],
    )
    p.add_argument("dest", type=location, metavar="DEST",
                   help="the folder written (CroCo's data/habitat_release, DUSt3R's data/habitat_processed)")
    p.add_argument("--format", default="croco", choices=["croco", "dust3r"], help="the layout written")
    p.add_argument("--out", default=DEFAULT_OUT, type=location,
                   help="working folder: reads OUT/pairs (croco) or OUT/star5 (dust3r), and OUT/views")
    add_options(p, Dust3rOptions)
    p.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from pairgen.interchange.croco import (CrocoPairsConfig, CrocoPairsStage, ImportConfig, ImportLimits, ImportStage,
                                           find_metadata, import_tasks, parse_dataset_map)  # fmt: skip

    config = from_args(ImportConfig, args)
    limits = from_args(ImportLimits, args)
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
    tasks = import_tasks(files, args.data_root, dataset_map, progress=bar,
                         max_views=limits.max_views_per_entry)  # every file checked before any work
    if bar is not None:
        bar.close()
    stage = ImportStage(tasks, args.out, config, min_valid=limits.min_valid, distributor=cluster.distributor(),
                        overwrite=args.overwrite, progress=Progress)  # fmt: skip
    status = report(stage, stage.run(), sys.stderr)
    if not stage.manifest.ok_scenes():
        return status or EXIT_FAILED
    pairs = CrocoPairsStage(args.out, pairs_config, distributor=cluster.distributor(), overwrite=args.overwrite,
                            progress=Progress)  # fmt: skip
    return max(status, report(pairs, pairs.run(), sys.stderr))


def cmd_export(args: argparse.Namespace) -> int:
    from manifests.options import flag_of
    from pairgen.interchange.croco import export_croco
    from pairgen.interchange.dust3r import Dust3rOptions, export_dust3r

    options = from_args(Dust3rOptions, args)
    if args.format == "dust3r":
        summary = export_dust3r(args.out, args.dest, options, progress=Progress)
    else:
        given = [name for name, value in vars(options).items() if value != getattr(Dust3rOptions(), name)]
        if given:  # dust3r's options mean nothing to croco's export
            print(f"pairgen export: error: argument {flag_of(Dust3rOptions, given[0])}: only with --format dust3r",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        summary = export_croco(args.out, args.dest, progress=Progress)
    print(store.shown(summary.line()), file=sys.stderr)
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
            print(store.shown(json.dumps(row)))
    else:
        _print_table(json.loads(store.shown(json.dumps(rows))), store.shown(str(args.data_root)), args.triangles)
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
    from manifests.card import samples_folders
    from manifests.layout import MANIFEST_SUFFIX, name_problem
    from pairgen.inspect import (contact_sheet, pairs_statistics, samples_contact_sheet, samples_sheet_path,
                                 samples_statistics, sheet_path)  # fmt: skip

    options = from_args(SheetOptions, args)
    default = samples_sheet_path(args.out, args.samples) if args.samples is not None else args.out / CONTACT_SHEET
    try:
        sheet = sheet_path(args.sheet, default)  # a file (not a folder) whose suffix names the format
    except ConfigError as e:
        e.flags["sheet"] = "--sheet"
        raise
    others = samples_folders(args.out)
    if args.samples is not None:  # a samples folder: OUT/<shape><N>
        samples_dir = args.out / args.samples
        if args.samples not in others:
            known = f" (samples folders here: {', '.join(others)})" if others else ""
            if (problem := name_problem(args.samples, "--samples")) is not None:
                raise OutputError(f"{problem}: not a folder name; it names a samples folder of {args.out}{known}")
            raise OutputError(f"{args.out / (args.samples + MANIFEST_SUFFIX)}: not found, no samples folder "
                              f"{args.samples!r}{known}; run `pairgen filter --views N --shape S --out {args.out}` "
                              "first")  # fmt: skip
        stats = samples_statistics(samples_dir)
        _with_sheet(stats, lambda: samples_contact_sheet(samples_dir, sheet, n=options.pairs, seed=options.seed)
                    if stats["totals"]["samples"] else None,
                    lambda sheet: {"path": sheet["path"], "samples": len(sheet["samples"]), "seed": options.seed,
                                   "skipped": sheet["skipped"]})  # fmt: skip
        return _report(stats, samples_dir, args.json)
    pairs_dir = args.out / "pairs"
    try:
        stats = pairs_statistics(pairs_dir)
    except OutputError as e:
        if others and not pairs_dir.exists():  # samples only: say how to inspect them
            raise OutputError(f"{e} (samples folders here: {', '.join(others)}; inspect one with "
                              f"`pairgen inspect --samples {others[0]}`)") from None  # fmt: skip
        raise
    _with_sheet(stats, lambda: contact_sheet(pairs_dir, sheet, n=options.pairs, seed=options.seed)  # beside pairs/
                if stats["totals"]["pairs"] else None,
                lambda sheet: {"path": sheet["path"], "pairs": len(sheet["pairs"]), "seed": options.seed})  # fmt: skip
    status = _report(stats, pairs_dir, args.json)
    if others:
        print(f"samples here too: {', '.join(others)} (pairgen inspect --samples {others[0]})", file=sys.stderr)
    return status


def _with_sheet(stats: dict, draw, describe) -> None:
    """The contact sheet, the last and optional step: when it cannot be drawn (no clean shard left), that is the last
    problem, after every other was found and listed; ``stats["contact_sheet"]`` says what was drawn."""
    try:
        sheet = draw()
    except OutputError as e:
        stats["contact_sheet"] = None
        stats["problems"].append(f"contact sheet not drawn: {e}")
        return
    stats["contact_sheet"] = None if sheet is None else describe(sheet)


def _report(stats: dict, folder: Path, as_json: bool) -> int:
    """Print a folder's statistics (as JSON, or as lines) and its problems; the exit status."""
    stats = json.loads(store.shown(json.dumps(stats)))  # a store's folder: its paths as URIs, not the mirror's
    folder = store.shown(str(folder))
    if as_json:
        print(json.dumps(stats))
    else:
        _print_statistics(stats)
    for problem in stats["problems"]:
        print(f"  PROBLEM {problem}", file=sys.stderr)
    if stats["problems"]:
        print(f"{len(stats['problems'])} problem(s) in {folder}", file=sys.stderr)
    return EXIT_FAILED if stats["problems"] else EXIT_OK


def _print_statistics(stats: dict, bar_width: int = 40) -> None:
    """The statistics of a pairs folder (:func:`pairgen.inspect.pairs_statistics`) or of a samples folder
    (:func:`pairgen.inspect.samples_statistics`, which has ``samples_dir``) as a few lines and a histogram."""
    t = stats["totals"]
    what = "samples" if "samples_dir" in stats else "pairs"
    if what == "samples":
        kind = "embedded" if stats["embedded"] else "referenced"
        print(f"{stats['samples_dir']}  (config {stats['config_hash']}; {stats['shape']} of "
              f"{stats['views_per_sample']} views a sample, {kind})")  # fmt: skip
        print(f"  {t['samples']:,} samples, {t['scenes']:,} scenes, {t['datasets']} dataset(s), "
              f"{t['shards']} shard(s), {t['mib']:.1f} MiB; {t['edges']:,} edges")  # fmt: skip
    else:
        print(f"{stats['pairs_dir']}  (config {stats['config_hash']})")
        print(f"  {t['pairs']:,} pairs, {t['scenes']:,} scenes, {t['datasets']} dataset(s), "
              f"{t['shards']} shard(s), {t['mib']:.1f} MiB")  # fmt: skip
    per_scene = list(stats["scenes"].values())
    for name, d in stats["datasets"].items():
        print(f"  {name}: {d[what]:,} {what} from {d['scenes']:,} scenes")
    if per_scene:
        print(f"  {what} a scene: min {min(per_scene):,}, median {statistics.median(per_scene):,g}, "
              f"max {max(per_scene):,}")  # fmt: skip
    if what == "samples":
        views = stats["views"]
        if not views["referenced"]:
            print("  views: embedded in the rows (images, depths, K, cam2world)")
        elif views["missing"] or views["changed"]:
            print(f"  views files named: {views['files']:,}, {len(views['missing'])} missing, "
                  f"{len(views['changed'])} changed")  # fmt: skip
        else:
            print(f"  views files named: {views['files']:,}, all present and unchanged")
        e, (lo, hi) = stats["edges"], stats["band"]
        print(f"covisibility of the edges (each view with its parent; rule {stats['rule']}, band {lo:g}-{hi:g}): "
              f"min {e['min']:.3f}, median {e['median']:.3f}, max {e['max']:.3f}")  # fmt: skip
    else:
        print("covisibility")
    bins, counts = stats["histogram"]["bins"], stats["histogram"]["counts"]
    used = [i for i, c in enumerate(counts) if c]
    if used:
        top = max(counts)
        for i in range(used[0], used[-1] + 1):
            bar = "#" * round(bar_width * counts[i] / top)
            print(f"  {bins[i]:.2f}-{bins[i + 1]:.2f}  {bar:<{bar_width}}  {counts[i]:,}")
    if what == "samples" and stats["others"]["count"]:
        o = stats["others"]
        print(f"  the other pairs of a sample ({o['count']:,}): min {o['min']:.3f}, median {o['median']:.3f}, "
              f"max {o['max']:.3f}")  # fmt: skip
    s = stats["shard_sizes"]
    print(f"shards  {what}: min {s[what]['min']:,}, median {s[what]['median']:,g}, max {s[what]['max']:,};  "
          f"MiB: min {s['mib']['min']:.2f}, median {s['mib']['median']:.2f}, max {s['mib']['max']:.2f}")  # fmt: skip
    sheet = stats.get("contact_sheet")
    skipped = len(sheet.get("skipped", [])) if sheet else 0
    print(f"contact sheet: {sheet['path']} ({sheet[what]} {what}, seed {sheet['seed']}"
          f"{f'; {skipped} left out, their views unusable' if skipped else ''})" if sheet
          else f"contact sheet: none (no {what})" if not stats["totals"][what]
          else "contact sheet: not drawn (the last problem below says why)")  # fmt: skip


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
