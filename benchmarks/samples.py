"""Samples of N views: their rate as a scene's views double, and their bytes by reference against embedded.

1. **Rate.** For each ``N`` of ``--views`` (default 500, 1000): ``pairgen
   render --scenes synthetic --synthetic-count 1 --synthetic-preset medium
   --views-per-scene N --no-ray`` (one medium apartment, 256 px), then in
   this process, ``--repeat`` times (the fastest kept, the machine being
   shared): the scene's views read and its depth kept as millimetres, as
   ``pairgen filter`` does, then :func:`covisibility.samples.grow_samples`
   for 5-view stars (band [0.5, 0.8]) and 12-view trees (band [0.3, 0.7],
   cap 0.3), ``--samples`` each, a view in at most 10; the baseline in the
   same run is the index pair search (:class:`covisibility.search.IndexSearch`,
   band [0.5, 0.8], ``--samples`` pairs) on the same views. Printed: samples
   a second, exact directed computations per kept sample, and the growth of
   the time per doubling of N (target: at most 2.2).
2. **Bytes.** On the largest ``N``'s views, ``pairgen filter`` writes pairs
   (embedded, today's ``OUT/pairs``; ``--reference``: ``OUT/pair2``), stars
   and trees (referenced; ``--embed``), ``--samples`` a scene; printed: the
   shard bytes per sample of each, and referenced / embedded (target for
   pairs: at most 2 %).

    python benchmarks/samples.py                     # 500 and 1000 views, 200 samples
    python benchmarks/samples.py --views 250,500 --samples 50 --repeat 1
    python benchmarks/samples.py --no-bytes          # the rates only

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covisibility import MillimetreDepths, get_search  # noqa: E402
from covisibility.samples import grow_samples  # noqa: E402
from manifests.codecs import decode_depth_mm  # noqa: E402
from manifests.views import read_views  # noqa: E402

PAIRGEN = [sys.executable, "-m", "pairgen"]
SHAPES = {"star5": dict(shape="star", views=5, min_covis=0.5, max_covis=0.8),
          "tree12": dict(shape="tree", views=12, min_covis=0.3, max_covis=0.7, cap=0.3)}  # fmt: skip


def render(out: Path, views: int) -> float:
    start = time.perf_counter()
    subprocess.run([*PAIRGEN, "render", "--scenes", "synthetic", "--synthetic-count", "1", "--synthetic-preset",
                    "medium", "--views-per-scene", str(views), "--no-ray", "--out", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def scene_arrays(out: Path):
    path = next((out / "views").rglob("*.parquet"))
    table, _ = read_views(path, columns=["view_id", "depth", "K", "cam2world"])
    mm = np.stack([decode_depth_mm(d["bytes"]) for d in table.column("depth").to_pylist()])
    K = np.asarray(table.column("K").to_pylist(), np.float64).reshape(-1, 3, 3)
    poses = np.asarray(table.column("cam2world").to_pylist(), np.float64).reshape(-1, 4, 4)
    return MillimetreDepths(mm), K, poses


def rate(out: Path, samples: int, repeat: int) -> dict:
    depths, K, poses = scene_arrays(out)
    figures = {}
    for name, spec in SHAPES.items():
        best = None
        for _ in range(repeat):
            start = time.perf_counter()
            grown = grow_samples(depths, K, poses, target=samples, max_per_view=10, rng=np.random.default_rng(0),
                                 **spec)  # fmt: skip
            seconds = time.perf_counter() - start
            if best is None or seconds < best[0]:
                best = (seconds, grown)
        seconds, grown = best
        kept = len(grown.samples)
        figures[name] = {"seconds": round(seconds, 2), "samples": kept, "per_s": round(kept / seconds, 2),
                         "exact_per_sample": round(grown.exact / max(kept, 1), 1), "candidates": grown.candidates}
    best = None
    for _ in range(repeat):  # the baseline: pairs by the index search, same views, same run
        start = time.perf_counter()
        choice = get_search("index").choose(depths, K, poses, measure="reprojection", min_covis=0.5, max_covis=0.8,
                                            target=samples, max_per_view=10, rng=np.random.default_rng(0))  # fmt: skip
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    figures["pairs_index"] = {"seconds": round(best, 2), "samples": len(choice.chosen),
                              "per_s": round(len(choice.chosen) / best, 2)}  # fmt: skip
    return figures


def shard_bytes(out: Path, folder: str) -> tuple[int, int]:
    manifest = json.loads((out / f"{folder}.manifest.json").read_text())
    rows = manifest["totals"].get("samples", manifest["totals"].get("pairs", 0))
    return sum(s["bytes"] for s in manifest["shards"]), rows


def sizes(out: Path, samples: int) -> dict:
    common = [*PAIRGEN, "filter", "--no-ray", "--out", str(out), "--pairs-per-scene", str(samples)]
    runs = {
        "pairs": [], "pair2": ["--reference"],
        "star5": ["--views", "5", "--shape", "star"], "star5-embedded": ["--views", "5", "--shape", "star", "--embed"],
        "tree12": ["--views", "12", "--shape", "tree", "--min-covis", "0.3", "--max-covis", "0.7", "--cap", "0.3"],
        "tree12-embedded": ["--views", "12", "--shape", "tree", "--min-covis", "0.3", "--max-covis", "0.7", "--cap",
                            "0.3", "--embed"],
    }  # fmt: skip
    figures = {}
    for name, args in runs.items():
        if name.endswith("-embedded"):  # the same folder name as the referenced run: moved aside first
            (out / name.removesuffix("-embedded")).rename(out / f"{name}-ref")
            (out / f"{name.removesuffix('-embedded')}.manifest.json").rename(out / f"{name}-ref.manifest.json")
        subprocess.run([*common, *args], check=True, capture_output=True)
        folder = name.removesuffix("-embedded")
        total, rows = shard_bytes(out, folder)
        figures[name] = {"bytes": total, "samples": rows, "bytes_per_sample": round(total / max(rows, 1), 1)}
        if name.endswith("-embedded"):
            (out / folder).rename(out / name)
            (out / f"{folder}.manifest.json").rename(out / f"{name}.manifest.json")
            (out / f"{name}-ref").rename(out / folder)
            (out / f"{name}-ref.manifest.json").rename(out / f"{folder}.manifest.json")
    for ref, emb in (("pair2", "pairs"), ("star5", "star5-embedded"), ("tree12", "tree12-embedded")):
        figures[ref]["of_embedded"] = round(figures[ref]["bytes_per_sample"] / figures[emb]["bytes_per_sample"], 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="500,1000", help="views rendered, comma list (doubling)")
    parser.add_argument("--samples", type=int, default=200, help="samples (and pairs) a scene")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-bytes", action="store_true", help="the rates only (part 1)")
    args = parser.parse_args()
    counts = [int(v) for v in args.views.split(",")]
    result = {"views": counts, "samples": args.samples, "rate": {}, "render_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="samples-bench-") as tmp:
        for n in counts:
            out = Path(tmp) / f"v{n}"
            result["render_seconds"][n] = round(render(out, n), 1)
            result["rate"][n] = rate(out, args.samples, args.repeat)
            for name, f in result["rate"][n].items():
                print(f"{n} views, {name}: {f['samples']} in {f['seconds']} s ({f['per_s']}/s"
                      + (f", {f['exact_per_sample']} exact a sample)" if "exact_per_sample" in f else ")"))
        growth = {}
        for name in (*SHAPES, "pairs_index"):
            t = [result["rate"][n][name]["seconds"] / max(result["rate"][n][name]["samples"], 1) for n in counts]
            growth[name] = [round(b / a, 2) for a, b in zip(t, t[1:])]
            print(f"{name}: time a sample grows {growth[name]} per doubling of views (target <= 2.2)")
        result["growth_per_doubling"] = growth
        result["bytes"] = {} if args.no_bytes else sizes(Path(tmp) / f"v{counts[-1]}", args.samples)
        for name, f in result["bytes"].items():
            extra = f", {f['of_embedded']:.2%} of embedded" if "of_embedded" in f else ""
            print(f"bytes: {name}: {f['bytes_per_sample']:.0f} a sample ({f['samples']}){extra}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
