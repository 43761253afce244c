"""CroCo interchange throughput: ``pairgen import croco`` and ``pairgen export --format croco``.

Builds a fake data root of box rooms (Z-up PLY files under CroCo's
``habitat-test-scenes`` label) and one CroCo-format ``metadata.json`` a room
with ``--entries`` two-view entries (cameras 1.2-1.8 m high, random yaw,
tilt within 10 degrees, the second view near the first), then in one process:

* **import**: ``pairgen import croco`` in process (``--no-ray``): views
  rendered per second and pairs measured per second;
* **export**: ``pairgen export --format croco`` of those pairs, pairs written
  per second, as shipped (a shard's files synced together, ``os.sync``,
  before the shard is recorded) and, as the baseline, with every file written
  through ``manifests.io.atomic_path`` with its fsyncs (an fsync a file and one
  of its folder: ``export_croco(..., sync_each_file=True)``), alternating
  ``--reps`` times; medians.

    python benchmarks/croco_interchange.py                       # 4 rooms x 100 entries, 256x256
    python benchmarks/croco_interchange.py --rooms 2 --entries 50 --resolution 128

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairgen.cli import main  # noqa: E402
from pairgen.interchange.croco import export_croco  # noqa: E402
from tests.rooms import write_room_ply  # noqa: E402
from tests.writers.croco import write_metadata  # noqa: E402


def quaternion(yaw: float, pitch: float) -> list[float]:
    """w-first quaternion of a yaw about +Y followed by a pitch about +X (radians)."""
    cy, sy, cp, sp = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    return [cy * cp, cy * sp, sy * cp, -sy * sp]


def build(root: Path, rooms: int, entries: int, size: int, rng: np.random.Generator) -> Path:
    meta = root / "metadata"
    for r in range(rooms):
        dims = (4.0 + r % 3, 2.6, 3.5 + r % 2)
        write_room_ply(root / "scene_datasets" / "habitat-test-scenes" / f"room_{r}.ply", size=dims)
        multiviews = {}
        for e in range(entries):
            p1 = [rng.uniform(0.6, dims[0] - 0.6), rng.uniform(1.2, 1.8), rng.uniform(0.6, dims[2] - 0.6)]
            p2 = [float(np.clip(p1[0] + rng.normal(0, 0.3), 0.5, dims[0] - 0.5)), rng.uniform(1.2, 1.8),
                  float(np.clip(p1[2] + rng.normal(0, 0.3), 0.5, dims[2] - 0.5))]  # fmt: skip
            yaw = rng.uniform(0, 2 * math.pi)
            multiviews[f"{e:08d}"] = {
                "positions": [p1, p2],
                "orientations": [quaternion(yaw, math.radians(rng.uniform(-10, 10))),
                                 quaternion(yaw + rng.normal(0, 0.3), math.radians(rng.uniform(-10, 10)))],
            }  # fmt: skip
        write_metadata(meta / "habitat-test-scenes" / f"room_{r}" / "metadata.json", {
            "scene_dataset_config_file": "", "scene": f"habitat-test-scenes/room_{r}.ply", "navmesh": "",
            "resolution": [size, size], "hfov": 60, "views_count": 2, "size": entries, "generate_depth": True,
            "multiviews": multiviews})  # fmt: skip
    return meta


def quiet(argv: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    return status, time.perf_counter() - start


def timed_export(out: Path, dest: Path, sync_each_file: bool) -> float:
    start = time.perf_counter()
    export_croco(out, dest, sync_each_file=sync_each_file)
    return time.perf_counter() - start


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--entries", type=int, default=100, help="two-view entries a room")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="croco-bench-"))
    try:
        meta = build(root, args.rooms, args.entries, args.resolution, np.random.default_rng(0))
        out = root / "out"
        status, imported = quiet(["import", "croco", str(meta), "--data-root", str(root / "scene_datasets"),
                                  "--out", str(out), "--no-ray"])  # fmt: skip
        assert status == 0, status
        views, pairs = 2 * args.rooms * args.entries, args.rooms * args.entries
        print(f"import: {views} views and {pairs} pairs at {args.resolution}px in {imported:.1f} s "
              f"({views / imported:.1f} views/s, rendering, encoding and measuring included)")  # fmt: skip
        shipped, baseline = [], []
        for rep in range(args.reps):
            for name, times in (("shipped", shipped), ("baseline", baseline)):
                dest = root / f"export-{name}-{rep}"
                times.append(timed_export(out, dest, sync_each_file=name == "baseline"))
                shutil.rmtree(dest)
        s, b = statistics.median(shipped), statistics.median(baseline)
        print(f"export: {pairs / s:.0f} pairs/s shipped (a shard synced at once), "
              f"{pairs / b:.0f} pairs/s with an fsync a file (baseline); median of {args.reps}")  # fmt: skip
        print(json.dumps({"rooms": args.rooms, "entries": args.entries, "resolution": args.resolution,
                          "import_seconds": round(imported, 2), "import_views_per_s": round(views / imported, 1),
                          "export_pairs_per_s": round(pairs / s, 1), "export_pairs_per_s_fsync_each": round(pairs / b, 1),
                          "export_seconds": shipped, "export_seconds_fsync_each": baseline}))  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main_()
