"""Navmesh parse time against file size: the reader must stay linear in its input.

A crafted version-2 navmesh of many minimal tiles (``write_tile_chain`` in
``tests/writers/navmesh.py``: every tile a candidate of the search for the
first tile) once took 55 s at 240 KB and 2.2 s at 48 KB, because each
candidate's tile chain was walked on its own. This script times the working
tree's parser on such files at two sizes five times apart, and on a valid
navmesh of many polygons and tiles for scale; ``--baseline REV`` also times
the parser of a git revision (e.g. ``HEAD`` before a fix) in the same run.

    python benchmarks/navmesh.py                          # 48 KB and 240 KB
    python benchmarks/navmesh.py --baseline HEAD          # and HEAD's parser, same files
    python benchmarks/navmesh.py --kib 16 80 --repeat 5

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from renderers.scene import SceneFormatError
from renderers.sources import navmesh as current
from tests.writers.navmesh import write_navmesh, write_tile_chain

TILE_BYTES = 12  # one minimal tile of write_tile_chain


def _baseline(rev: str):
    """The navmesh module as it is at git revision ``rev``, imported under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:renderers/sources/navmesh.py"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader(f"navmesh_at_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    code = compile(source, f"{rev}:renderers/sources/navmesh.py", "exec")
    exec(code, module.__dict__)  # noqa: S102 -- this repository's own history
    return module


def _time(parse, data: bytes, repeat: int) -> tuple[float, str]:
    """Best wall time of ``repeat`` parses, and the outcome (``ok`` or the error)."""
    best, outcome = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            parse(data, "bench.navmesh")
            outcome = "ok"
        except SceneFormatError as e:
            outcome = e.problem
        best = min(best, time.perf_counter() - t0)
    return best, outcome


def _valid(polygons: int, tiles: int) -> bytes:
    """A valid version-2 navmesh: a grid of unit squares in ``tiles`` tiles."""
    side = int(np.ceil(np.sqrt(polygons)))
    squares = [np.array([[x, 0, z], [x, 0, z + 1], [x + 1, 0, z + 1], [x + 1, 0, z]], np.float32)
               for x, z in ((i % side, i // side) for i in range(polygons))]  # fmt: skip
    return write_navmesh(squares, version=2, tiles=tiles, detail="centre")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kib", type=int, nargs="+", default=[48, 240], help="sizes of the crafted files (KiB)")
    parser.add_argument("--repeat", type=int, default=3, help="parses per file; the best time is reported")
    parser.add_argument("--baseline", metavar="REV", help="also time the parser of this git revision")
    args = parser.parse_args(argv)

    parsers = {"current": current.parse_navmesh}
    if args.baseline:
        parsers[f"baseline {args.baseline}"] = _baseline(args.baseline).parse_navmesh
    files = {f"tile-chain {kib} KiB": write_tile_chain(kib * 1024 // TILE_BYTES) for kib in args.kib}
    files["valid 4000 polygons, 64 tiles"] = _valid(4000, 64)

    rows = []
    for name, data in files.items():
        row = {"file": name, "bytes": len(data), "seconds": {}, "outcome": {}}
        for label, parse in parsers.items():
            row["seconds"][label], row["outcome"][label] = _time(parse, data, 1 if label != "current" else args.repeat)
        rows.append(row)
        times = "  ".join(f"{label} {s:8.4f} s" for label, s in row["seconds"].items())
        print(f"{name:32s} {len(data):>9,} bytes  {times}  ({row['outcome']['current'][:50]})")

    chains = [r for r in rows if r["file"].startswith("tile-chain")]
    growth = {}
    if len(chains) >= 2:
        small, large = chains[0], chains[-1]
        size_ratio = large["bytes"] / small["bytes"]
        for label in parsers:
            growth[label] = large["seconds"][label] / max(small["seconds"][label], 1e-9)
            print(f"{label}: {size_ratio:.1f}x the bytes takes {growth[label]:.1f}x the time")
    print(json.dumps({"files": rows, "time_growth": growth, "size_growth": chains[-1]["bytes"] / chains[0]["bytes"]
                      if len(chains) >= 2 else None}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
