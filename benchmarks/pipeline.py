"""Render and filter of one synthetic apartment at growing view counts, for every pair search.

For each ``N`` of ``--views`` (default 250, 500, 1000, 2000):

1. **render**: ``pairgen render --scenes synthetic --synthetic-count 1
   --synthetic-preset medium --views-per-scene N --no-ray`` in a subprocess
   (its wall time and peak RSS);
2. **filter**, once per search (``--searches``, default ``exhaustive,index``),
   each in its own subprocess (this file with ``--filter-one``): read the
   scene's views file (:func:`manifests.views.read_views`), decode its depth
   (:func:`manifests.codecs.decode_depth`; the ``index`` search keeps it as
   uint16 millimetres, :func:`covisibility.millimetres`, the ``exhaustive``
   one as float32 as ``pairgen filter`` does), and choose the scene's pairs
   with :meth:`covisibility.Search.choose` (seed as
   :func:`pairgen.filter.select_scene_pairs` derives it). "filter" is that
   whole subprocess' work from reading to choice, timed inside it; its peak
   RSS is the child's ``ru_maxrss``.

Each filter runs ``--repeat`` times (the exhaustive one
``--exhaustive-repeat`` times) and its fastest run is reported, the
machine being shared; the renders run once.

Printed: per N and search the seconds, peak RSS, candidates, exact
computations, pairs kept, the in-band pairs found, their recall against the
``exhaustive`` search (of the in-band pairs it found, the share the search
found too: partial by design once the target is met, and pairs a full view
could never join are not computed; where ``exhaustive`` found fewer than the
target, the share found by the same search with no target and no cap,
"whole-band recall", from an extra untimed choice; and the share among its
candidates), the spread of the kept pairs' covisibility, and the growth of
the filter time per doubling of N. Then the targets: index
filter time per doubling <= 2.2x, index filter no slower than the render that
fed it, 500 views -> ``--pairs`` pairs in the band end to end <= 20 s.

The filter subprocesses run with ``OMP_NUM_THREADS`` set to
``--blas-threads`` (default 1, what Ray gives a one-CPU task, so what
``pairgen filter`` runs with on Ray; 0 leaves the environment as it is):
OpenBLAS' threads on small matrix products cost more than they bring when
the cores are shared. The render subprocess keeps the environment.

    python benchmarks/pipeline.py                               # 250 ... 2000 views
    python benchmarks/pipeline.py --views 250,500,1000 --exhaustive-max 1000
    python benchmarks/pipeline.py --views 500 --searches index

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HISTOGRAM_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)  # pairgen.filter's


def timed_run(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, the child's peak RSS in MiB, its output). Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, out


# --------------------------------------------------------------------------- one filter, in its own process


def filter_one(views_file: Path, search: str, out: Path, *, min_covis: float, max_covis: float, pairs: int,
               per_view: int, seed: int, whole_band: bool) -> None:  # fmt: skip
    """Read, decode, choose; write the figures (JSON) and the pair sets (npz) for the parent.

    ``whole_band``: after the timed choice, choose again with no target and
    no cap (untimed), so that the search looks for every in-band pair: its
    recall when the scene holds fewer than its target.
    """
    start = time.perf_counter()
    from covisibility import get_search, millimetres
    from manifests.codecs import decode_depth
    from manifests.views import read_views

    table, _ = read_views(views_file, columns=["view_id", "depth", "K", "cam2world", "width", "height"])
    n = table.num_rows
    h, w = int(table.column("height")[0].as_py()), int(table.column("width")[0].as_py())
    depths = np.empty((n, h, w), np.uint16 if search == "index" else np.float32)
    column = table.column("depth").combine_chunks().field("bytes")
    for lo in range(0, n, 256):  # decoded a slice at a time: never all depth bytes as Python objects
        for i, data in enumerate(column.slice(lo, 256).to_pylist(), start=lo):
            d = decode_depth(data)
            depths[i] = millimetres(d) if search == "index" else d
    del column
    Ks = np.asarray(table.column("K").to_pylist(), np.float64).reshape(n, 3, 3)
    poses = np.asarray(table.column("cam2world").to_pylist(), np.float64).reshape(n, 4, 4)
    del table
    read = time.perf_counter() - start
    rng = np.random.default_rng([seed, int(hashlib.sha256(views_file.name.encode()).hexdigest()[:8], 16)])
    choice = get_search(search).choose(depths, Ks, poses, measure="reprojection", min_covis=min_covis,
                                       max_covis=max_covis, target=pairs, max_per_view=per_view, rng=rng)  # fmt: skip
    seconds = time.perf_counter() - start
    r = choice.result
    band = r.pairs[r.band(min_covis, max_covis)]
    extra = {}
    if search == "index":  # the candidates, for their recall (after the timing)
        from covisibility.search import SurfaceIndex

        extra["candidates"] = SurfaceIndex.build(depths, Ks, poses).candidates(min_covis, max_covis)[0]
    if whole_band:
        every = get_search(search).choose(depths, Ks, poses, measure="reprojection", min_covis=min_covis,
                                          max_covis=max_covis, target=10**9, max_per_view=10**9,
                                          rng=np.random.default_rng(seed)).result  # fmt: skip
        extra["band_all"] = every.pairs[every.band(min_covis, max_covis)]
    np.savez(out.with_suffix(".npz"), band=band, kept=r.covisibility[choice.chosen], **extra)
    out.write_text(json.dumps({
        "search": search, "views": n, "seconds": round(seconds, 3), "read_seconds": round(read, 3),
        "candidates": r.candidates, "computed": r.computed, "in_band": len(band), "kept": len(choice.chosen),
        "stats": r.stats,
    }))  # fmt: skip


# --------------------------------------------------------------------------- the driver


def _pair_set(pairs: np.ndarray, n: int) -> np.ndarray:
    return np.unique(pairs[:, 0] * n + pairs[:, 1]) if len(pairs) else np.zeros(0, np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", default="250,500,1000,2000", help="view counts, a comma list")
    ap.add_argument("--searches", default="exhaustive,index", help="pair searches, a comma list")
    ap.add_argument("--exhaustive-max", type=int, default=2000, help="skip the exhaustive search above this N")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--scene-seed", type=int, default=0)
    ap.add_argument("--min-covis", type=float, default=0.5)
    ap.add_argument("--max-covis", type=float, default=0.8)
    ap.add_argument("--pairs", type=int, default=1000, help="pairs per scene (pairgen filter's default)")
    ap.add_argument("--per-view", type=int, default=10, help="pairs per view, at most")
    ap.add_argument("--seed", type=int, default=0, help="filter seed")
    ap.add_argument("--blas-threads", type=int, default=1, help="OMP_NUM_THREADS of the filters (0: leave it)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each filter; the fastest is reported")
    ap.add_argument("--exhaustive-repeat", type=int, default=1, help="runs of the exhaustive filter")
    ap.add_argument("--workdir", type=Path, default=None, help="where renders go (default: a temporary folder)")
    ap.add_argument("--filter-one", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--search", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--whole-band", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    band = {"min_covis": args.min_covis, "max_covis": args.max_covis}
    if args.filter_one:
        filter_one(args.filter_one, args.search, args.out, **band, pairs=args.pairs, per_view=args.per_view,
                   seed=args.seed, whole_band=args.whole_band)  # fmt: skip
        return

    views = [int(v) for v in args.views.split(",")]
    searches = args.searches.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pairgen-pipeline-"))
    env = dict(os.environ)
    if args.blas_threads > 0:
        env["OMP_NUM_THREADS"] = str(args.blas_threads)
    print(f"one {args.preset}/{args.scene_seed} synthetic apartment, band [{args.min_covis}, {args.max_covis}], "
          f"{args.pairs} pairs a scene, {args.per_view} a view; renders under {work}", flush=True)  # fmt: skip
    rows: list[dict] = []
    for n in views:
        out = work / f"n{n}"
        render_s, render_mib, _ = timed_run([sys.executable, "-m", "pairgen", "render", "--scenes", "synthetic",
                                        "--synthetic-count", "1", "--synthetic-preset", args.preset,
                                        "--seed", str(args.scene_seed), "--views-per-scene", str(n),
                                        "--no-ray", "--out", str(out)])  # fmt: skip
        (views_file,) = sorted((out / "views").rglob("*.parquet"))
        print(f"N={n}: render {render_s:.1f} s, peak RSS {render_mib:.0f} MiB", flush=True)
        found: dict[str, dict] = {}
        for search in searches:
            if search == "exhaustive" and n > args.exhaustive_max:
                continue
            result = out / f"filter-{search}.json"
            runs = []
            repeat = args.exhaustive_repeat if search == "exhaustive" else args.repeat
            # the whole band too (last run, untimed part) where exhaustive found fewer in-band pairs than the target
            short = search != "exhaustive" and "exhaustive" in found and len(found["exhaustive"]["band"]) < args.pairs
            for k in range(repeat + short):  # the extra whole-band run last, not reported (it does more)
                _, mib, _ = timed_run([sys.executable, __file__, "--filter-one", str(views_file), "--search", search,
                                  "--out", str(result), "--min-covis", str(args.min_covis), "--max-covis",
                                  str(args.max_covis), "--pairs", str(args.pairs), "--per-view", str(args.per_view),
                                  "--seed", str(args.seed), *(["--whole-band"] if k == repeat else [])],
                                 env=env)  # fmt: skip
                runs.append((json.loads(result.read_text()), mib))
            runs = runs[:repeat]
            row = min(runs, key=lambda r: r[0]["seconds"])[0]  # the fastest run (the machine is shared)
            row["runs_seconds"] = [r[0]["seconds"] for r in runs]
            mib = max(r[1] for r in runs)
            arrays = np.load(result.with_suffix(".npz"))
            row.update(N=n, render_seconds=round(render_s, 3), render_rss_mib=round(render_mib, 1),
                       rss_mib=round(mib, 1))  # fmt: skip
            kept = arrays["kept"]
            row["kept_std"] = round(float(kept.std()), 4) if len(kept) else None
            row["kept_q05_q95"] = [round(float(q), 4) for q in np.quantile(kept, [0.05, 0.95])] if len(kept) else None
            row["histogram"] = np.histogram(kept, bins=HISTOGRAM_BINS)[0].tolist()
            found[search] = {"band": _pair_set(arrays["band"], n),
                             "candidates": _pair_set(arrays["candidates"], n) if "candidates" in arrays else None,
                             "band_all": _pair_set(arrays["band_all"], n) if "band_all" in arrays else None}
            rows.append(row)
        for row in rows:
            if row["N"] != n:
                continue
            ref = found.get("exhaustive")
            if ref is None or not len(ref["band"]):
                row["recall"] = row["candidate_recall"] = row["whole_band_recall"] = None
                continue
            mine = found[row["search"]]

            def share(x: np.ndarray, ref: np.ndarray = ref["band"]) -> float:
                return round(len(np.intersect1d(x, ref)) / len(ref), 4)

            row["recall"] = share(mine["band"])
            row["whole_band_recall"] = share(mine["band_all"]) if mine["band_all"] is not None else None
            row["candidate_recall"] = share(mine["candidates"]) if mine["candidates"] is not None else 1.0
        for row in rows:
            if row["N"] == n:
                print(f"  {row['search']:>10}: filter {row['seconds']:6.1f} s (read {row['read_seconds']:.1f}), "
                      f"peak RSS {row['rss_mib']:5.0f} MiB, candidates {row['candidates']:>9,}, "
                      f"exact {row['computed']:>7,}, in band {row['in_band']:>6,}, kept {row['kept']:>5,}, "
                      f"recall {row['recall']} (whole band {row['whole_band_recall']}), "
                      f"candidate recall {row['candidate_recall']}, "
                      f"kept covis sd {row['kept_std']} q05-q95 {row['kept_q05_q95']}", flush=True)  # fmt: skip

    print("\n| search | N | render s | filter s | filter/render | growth | peak RSS MiB | candidates | exact | "
          "in band | kept | kept sd | recall | whole-band recall | cand. recall |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for search in searches:
        previous = None
        for row in (r for r in rows if r["search"] == search):
            growth = None
            if previous and row["N"] == 2 * previous["N"]:
                growth = round(row["seconds"] / previous["seconds"], 2)
            row["growth"] = growth
            row["filter_over_render"] = round(row["seconds"] / row["render_seconds"], 3)
            print(f"| {search} | {row['N']} | {row['render_seconds']:.1f} | {row['seconds']:.1f} | "
                  f"{row['filter_over_render']:.2f} | {growth if growth is not None else '-'} | {row['rss_mib']:.0f} | "
                  f"{row['candidates']:,} | {row['computed']:,} | {row['in_band']:,} | {row['kept']:,} | "
                  f"{row['kept_std']} | {row['recall']} | {row['whole_band_recall'] or '-'} | "
                  f"{row['candidate_recall']} |")  # fmt: skip
            previous = row
    index = [r for r in rows if r["search"] == "index"]
    targets = {}
    if index:
        growths = [r["growth"] for r in index if r["growth"] is not None]
        targets["growth_max"] = max(growths) if growths else None
        targets["growth_ok"] = all(g <= 2.2 for g in growths)
        targets["filter_not_slower_than_render"] = all(r["seconds"] <= r["render_seconds"] for r in index)
        at500 = [r for r in index if r["N"] == 500]
        if at500:
            r = at500[0]
            targets["end_to_end_500_s"] = round(r["render_seconds"] + r["seconds"], 2)
            targets["end_to_end_500_ok"] = targets["end_to_end_500_s"] <= 20 and r["kept"] >= args.pairs
        largest = max(index, key=lambda r: r["N"])
        targets["largest_N_rss_mib"] = largest["rss_mib"]
        print("targets:", json.dumps(targets))
    print(json.dumps({"band": [args.min_covis, args.max_covis], "pairs": args.pairs, "per_view": args.per_view,
                      "blas_threads": args.blas_threads, "rows": rows, "targets": targets}))  # fmt: skip


if __name__ == "__main__":
    main()
