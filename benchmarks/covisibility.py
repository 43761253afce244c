"""Covisibility throughput: pruned reprojection against CroCo's k-d-tree measure.

Renders the views of one synthetic apartment (as ``pairgen render`` does:
floor search, view walks, 256x256, hfov 60), then in the same run

* **ours**: the ``reprojection`` measure (:mod:`covisibility.reprojection`) over
  *all* candidate pairs of those views, band ``[0.5, 0.8]`` (pruning
  included, exactly as ``pairgen filter`` runs it): pairs/s = candidate
  pairs / time;
* **CroCo's measure** (:func:`covisibility.croco_overlap.croco_overlap_pairs`, each
  view's k-d tree built once) on a random sample of the same candidate pairs
  (all of them would take tens of minutes): pairs/s on the sample;
* the **Spearman rank correlation** of the two measures (each pair's
  :attr:`~covisibility.PairCovisibility.covisibility`) over that sample,
  ours computed exactly there.

    python benchmarks/covisibility.py                 # medium/0, 300 views, 256x256
    python benchmarks/covisibility.py --views 100 --sample 100

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covisibility import all_pairs, get_measure  # noqa: E402
from covisibility.reprojection import covisibility_pairs  # noqa: E402
from covisibility.croco_overlap import croco_overlap_pairs  # noqa: E402
from renderers.backends import get_backend  # noqa: E402
from renderers.floor import find_floor  # noqa: E402
from renderers.sources import load_scene  # noqa: E402
from renderers.viewpoints import ViewConfig, sample_views  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--scene-seed", type=int, default=0)
    ap.add_argument("--views", type=int, default=300)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--sample", type=int, default=200, help="pairs CroCo's measure is timed on")
    ap.add_argument("--min-covis", type=float, default=0.5)
    ap.add_argument("--max-covis", type=float, default=0.8)
    args = ap.parse_args()

    scene = load_scene("synthetic", f"{args.preset}/{args.scene_seed}", scene_id="bench")
    config = ViewConfig(views_per_scene=args.views, resolution=(args.resolution, args.resolution))
    start = time.perf_counter()
    with get_backend("raycast").open(scene) as renderer:
        caster = renderer.raycaster()
        rng = np.random.default_rng(0)
        views = list(sample_views(renderer.render, find_floor(scene, caster, rng=rng), caster, config, rng))
    print(f"rendered {len(views)} views of {scene.num_triangles:,} triangles in {time.perf_counter() - start:.1f} s")
    depths = np.stack([v.render.depth for v in views])
    Ks = np.stack([v.K for v in views])
    poses = np.stack([v.cam2world for v in views])

    start = time.perf_counter()
    ours = get_measure("reprojection").pairs(depths, Ks, poses, min_covis=args.min_covis, max_covis=args.max_covis)
    t_ours = time.perf_counter() - start
    c = ours.covisibility
    in_band = len(ours.band(args.min_covis, args.max_covis))
    pairs_per_s = ours.candidates / t_ours
    print(
        f"ours: {ours.candidates:,} candidate pairs in {t_ours:.2f} s = {pairs_per_s:,.0f} pairs/s "
        f"(frustum bound dropped {ours.stats['bound_pruned']:,}, coarse pass {ours.stats['coarse_pruned']:,}, "
        f"exact on {ours.computed:,}; {in_band:,} in [{args.min_covis}, {args.max_covis}])"
    )

    n = len(views)
    everything = all_pairs(n)
    # the sample: half random candidates, half pairs ours found overlapping, so the correlation
    # is measured where it matters, not only on the many pairs that do not overlap at all
    pick = np.random.default_rng(1)
    overlapping = ours.pairs[c > 0.05]
    half = min(args.sample // 2, len(overlapping))
    sample = np.concatenate([
        overlapping[pick.choice(len(overlapping), half, replace=False)] if half else np.zeros((0, 2), np.int64),
        everything[pick.choice(len(everything), args.sample - half, replace=False)],
    ])  # fmt: skip
    start = time.perf_counter()
    croco = croco_overlap_pairs(depths, Ks, poses, sample)
    t_croco = time.perf_counter() - start
    croco_pairs_per_s = len(sample) / t_croco
    print(f"CroCo's k-d tree: {len(sample)} pairs in {t_croco:.2f} s = {croco_pairs_per_s:,.1f} pairs/s")

    from scipy.stats import spearmanr

    mine = covisibility_pairs(depths, Ks, poses, pairs=sample)  # min 0, max 1: exact on every sampled pair
    rho = float(spearmanr(mine.covisibility, croco.covisibility).statistic)
    speedup = pairs_per_s / croco_pairs_per_s
    print(f"speedup {speedup:,.0f}x (target >= 50); Spearman rank correlation over the sample {rho:.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "pairs_per_s": round(pairs_per_s, 1),
        "croco_pairs_per_s": round(croco_pairs_per_s, 2),
        "speedup": round(speedup, 1),
        "spearman": round(rho, 4),
        "views": n,
        "candidate_pairs": ours.candidates,
        "exact_pairs": ours.computed,
        "in_band": in_band,
        "croco_sample": len(sample),
        "resolution": args.resolution,
        "peak_rss_mib": round(peak, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
