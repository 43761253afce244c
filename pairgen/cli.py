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
import statistics
import sys
from pathlib import Path

from manifests import DatasetError, SyntheticOptions, discover, parse_dataset_list
from manifests.io import OutputError
from pairgen import __version__
from renderers.backends import BackendUnavailable, available_backends
from renderers.scene import SceneFormatError
from renderers.viewpoints import ViewConfig

__all__ = ["build_parser", "main"]

log = logging.getLogger("pairgen")

DEFAULT_DATA_ROOT = "data/scene_datasets"
DEFAULT_OUT = "data/pairgen"
EXIT_OK, EXIT_FAILED = 0, 1


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, keeps the epilog's examples as written."""


def _subcommand(sub, name: str, *, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand whose help shows every default and ends with example command lines."""
    epilog = "examples:\n" + "\n".join("  " + e for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=_Formatter)


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenes", default="synthetic", metavar="LIST",
                   help="datasets, one or a comma list: hm3d, scannet, replica, mp3d, gibson, synthetic")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, type=Path,
                   help="folder holding one folder per dataset (DATA_ROOT/hm3d, DATA_ROOT/scannet, ...)")
    p.add_argument("--split", default=None, help="only this split, for datasets that have splits (hm3d: train, val, minival)")
    p.add_argument("--synthetic-count", type=int, default=4, metavar="N", help="how many procedural apartments 'synthetic' holds")
    p.add_argument("--synthetic-preset", default="medium", choices=("small", "medium", "large"),
                   help="size of the procedural apartments (large: about 1 M triangles)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the first procedural apartment (and, for render, of the viewpoint sampling)")


def _pair(text: str, what: str) -> tuple[float, float]:
    """'1.2,1.8' -> (1.2, 1.8)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} takes MIN,MAX (two numbers), got {text!r}") from None
    return lo, hi


def _resolution(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '320x240' -> (320, 240)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"resolution takes SIZE or WIDTHxHEIGHT (at least 8), got {text!r}")
    return parts[0], parts[1]


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray started when --ray-address is not given (None: all of them)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join this Ray cluster ('auto' for the one `ray start` began here) instead of starting one")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a scene is retried when its worker process dies")
    p.add_argument("--no-ray", action="store_true", help="run every scene in this process, one after the other (debugging)")


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

    d = ViewConfig()
    p = _subcommand(
        sub,
        "render",
        help="render views (RGB, depth, pose) of every scene into OUT/views",
        description="Render views of every scene into OUT/views/<dataset>/<scene_id>.parquet, one Ray task a "
        "scene. Cameras stand on the navmesh or on the floor found in the geometry, in walks whose views "
        "overlap at every level. A rerun skips finished scenes; a scene that fails is recorded in "
        "OUT/views/manifest.json with its reason and the others go on.",
        examples=[
            "pairgen render --scenes hm3d",
            "pairgen render --scenes synthetic --views-per-scene 100 --out /tmp/pg",
            "pairgen render --scenes scannet,replica --resolution 320x240 --hfov 75 --ray-address auto",
        ],
    )
    _add_dataset_options(p)
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: views go to OUT/views")
    p.add_argument("--backend", default="raycast", choices=available_backends(),
                   help="renderer: raycast (Open3D/Embree, CPU, default) or habitat (needs habitat-sim from conda)")
    p.add_argument("--views-per-scene", type=int, default=d.views, metavar="N", help="views kept per scene")
    p.add_argument("--resolution", type=_resolution, default=f"{d.width}x{d.height}", metavar="WxH",
                   help="image size: SIZE or WIDTHxHEIGHT")
    p.add_argument("--hfov", type=float, default=d.hfov, help="horizontal field of view, degrees")
    p.add_argument("--camera-height", type=lambda t: _pair(t, "--camera-height"), default="{},{}".format(*d.camera_height),
                   metavar="MIN,MAX", help="camera height above the floor, metres")
    p.add_argument("--tilt", type=float, default=d.tilt, help="largest pitch up or down, degrees")
    p.add_argument("--roll", type=float, default=d.roll, help="largest roll, degrees")
    p.add_argument("--min-valid", type=float, default=d.min_valid,
                   help="least share of pixels with valid depth for a view to be kept")
    p.add_argument("--min-distance", type=float, default=d.near, metavar="M",
                   help="surfaces nearer than this (metres) may fill at most --max-near of a kept view")
    p.add_argument("--max-near", type=float, default=d.max_near, metavar="FRACTION",
                   help="largest share of a kept view nearer than --min-distance")
    p.add_argument("--walk-length", type=int, default=d.walk, metavar="N", help="views per walk")
    p.add_argument("--step", type=lambda t: _pair(t, "--step"), default="{},{}".format(*d.step), metavar="MIN,MAX",
                   help="metres between a view and the one it branches from")
    p.add_argument("--turn", type=float, default=d.turn, help="largest yaw change from that view, degrees")
    p.add_argument("--image-format", default="jpeg", choices=("jpeg", "png"), help="encoding of the RGB images")
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality, 1-100")
    p.add_argument("--overwrite", action="store_true",
                   help="replace views rendered with another config instead of refusing")
    _add_cluster_options(p)
    p.set_defaults(func=cmd_render)

    from pairgen.filter import MEASURES, FilterConfig

    f = FilterConfig()
    p = _subcommand(
        sub,
        "filter",
        help="keep view pairs that overlap about half, as Parquet shards in OUT/pairs",
        description="Compute the covisibility of view pairs by depth reprojection, keep pairs with "
        "MIN_COVIS <= covisibility <= MAX_COVIS (up to --pairs-per-scene a scene), and write them as Parquet "
        "shards with a manifest in OUT/pairs. A rerun with the same config does nothing.",
        examples=[
            "pairgen filter --min-covis 0.5",
            "pairgen filter --out /tmp/pg --min-covis 0.4 --max-covis 0.9 --pairs-per-scene 500",
            "pairgen filter --measure croco    # CroCo's k-d-tree overlap (slow)",
        ],
    )
    p.add_argument("--out", default=DEFAULT_OUT, type=Path, help="working folder: reads OUT/views, writes OUT/pairs")
    p.add_argument("--min-covis", type=float, default=f.min_covis, help="least covisibility of a kept pair")
    p.add_argument("--max-covis", type=float, default=f.max_covis,
                   help="greatest covisibility of a kept pair (drops near-duplicate views)")
    p.add_argument("--pairs-per-scene", type=int, default=f.pairs_per_scene, metavar="N", help="pairs kept per scene, at most")
    p.add_argument("--max-pairs-per-view", type=int, default=f.max_pairs_per_view, metavar="N",
                   help="pairs one view may join, at most")
    p.add_argument("--measure", default=f.measure, choices=MEASURES,
                   help="reprojection (DESIGN.md, pruned, fast) or croco (k-d tree, 5 cm, as CroCo's generator)")
    p.add_argument("--seed", type=int, default=f.seed, help="seed of the pair choice and the shard order")
    p.add_argument("--shard-size", type=int, default=f.shard_size, metavar="PAIRS", help="pairs a shard")
    p.add_argument("--overwrite", action="store_true", help="replace pairs of another config instead of refusing")
    _add_cluster_options(p)
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
                   help="where the contact sheet PNG goes (None: OUT/pairs/contact_sheet.png)")
    p.add_argument("--pairs", type=int, default=8, metavar="N", help="pairs (rows) on the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs drawn for the sheet")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object instead of a table")
    p.set_defaults(func=cmd_inspect)
    return parser


def _progress(total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)


def _discover(args: argparse.Namespace) -> list:
    specs = parse_dataset_list(args.scenes)
    synthetic = SyntheticOptions(count=args.synthetic_count, preset=args.synthetic_preset, seed=args.seed)
    records = []
    for spec in specs:
        records.extend(discover(spec, args.data_root, args.split, synthetic))
    return records


def _distributor(args: argparse.Namespace):
    """run_local or run_ray with the cluster options bound."""
    from functools import partial

    from pairgen.distribute import run_local, run_ray

    if args.no_ray:
        return run_local
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    return partial(run_ray, address=args.ray_address, workers=args.workers, retries=args.retries)


def cmd_scenes(args: argparse.Namespace) -> int:
    from pairgen.scenes import describe

    records = _discover(args)
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


def cmd_render(args: argparse.Namespace) -> int:
    from pairgen.render import RenderConfig, run_render

    views = ViewConfig(
        views=args.views_per_scene, width=args.resolution[0], height=args.resolution[1], hfov=args.hfov,
        camera_height=args.camera_height, tilt=args.tilt, roll=args.roll, min_valid=args.min_valid,
        near=args.min_distance, max_near=args.max_near, walk=args.walk_length, step=args.step, turn=args.turn,
    )  # fmt: skip
    config = RenderConfig(backend=args.backend, seed=args.seed, image_format=args.image_format,
                          jpeg_quality=args.jpeg_quality, views=views)  # fmt: skip
    _check_backend(args.backend)
    records = _discover(args)
    distributor = _distributor(args)
    log.info("rendering %d scene(s) into %s (config %s)", len(records), args.out / "views", config.hash)
    with _progress(len(records), "rendering", "scene") as bar:
        summary = run_render(records, args.out, config, distributor=distributor, overwrite=args.overwrite,
                             progress=bar)  # fmt: skip
    for key, reason in list(summary.failures.items())[:10]:
        print(f"  FAILED {key}: {reason}", file=sys.stderr)
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see {args.out / 'views' / 'manifest.json'})",
              file=sys.stderr)  # fmt: skip
    print(summary.line(), file=sys.stderr)
    print(f"views: {args.out / 'views'}  (manifest: {args.out / 'views' / 'manifest.json'})", file=sys.stderr)
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_filter(args: argparse.Namespace) -> int:
    from pairgen.filter import FilterConfig, run_filter

    config = FilterConfig(min_covis=args.min_covis, max_covis=args.max_covis, pairs_per_scene=args.pairs_per_scene,
                          max_pairs_per_view=args.max_pairs_per_view, measure=args.measure, seed=args.seed,
                          shard_size=args.shard_size)  # fmt: skip
    summary = run_filter(args.out, config, distributor=_distributor(args), overwrite=args.overwrite,
                         progress_factory=_progress)  # fmt: skip
    for key, reason in list(summary.failures.items())[:10]:
        print(f"  FAILED {key}: {reason}", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    print(f"pairs: {args.out / 'pairs'}  (manifest: {args.out / 'pairs' / 'manifest.json'})", file=sys.stderr)
    return EXIT_FAILED if summary.scenes_failed else EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from pairgen.inspect import contact_sheet, pairs_statistics

    if args.pairs < 1:
        raise ValueError(f"--pairs must be at least 1, got {args.pairs}")
    pairs_dir = args.out / "pairs"
    stats = pairs_statistics(pairs_dir)
    sheet_path = args.sheet if args.sheet is not None else pairs_dir / "contact_sheet.png"
    sheet = contact_sheet(pairs_dir, sheet_path, n=args.pairs, seed=args.seed) if stats["totals"]["pairs"] else None
    stats["contact_sheet"] = None if sheet is None else {"path": sheet["path"], "pairs": len(sheet["pairs"]),
                                                         "seed": args.seed}  # fmt: skip
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


def _check_backend(name: str) -> None:
    """Fail before any work (one message, the install route) when the backend's engine is missing."""
    from renderers.backends import get_backend

    get_backend(name).check_available()


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
    except (DatasetError, SceneFormatError, OutputError, BackendUnavailable, ValueError) as e:
        if args.debug:
            raise
        print(f"pairgen: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("pairgen: interrupted", file=sys.stderr)
        return 130
