"""Render throughput of the raycast backend against Open3D's bare ray cast.

Builds one synthetic apartment (the large preset, about 1 M triangles), opens
the ``raycast`` backend once, and draws camera poses inside its rooms (1.5 m
above the floor, away from furniture, random yaw, tilt within 10 degrees and
roll within 5, seeded). Then, in the same process and on the same rays, it
measures

* **cast only**: ``RaycastingScene.cast_rays`` alone, back to back, on the
  views' rays, built beforehand (a batch at a time, untimed) exactly as the
  renderer builds them;
* **full pipeline**, at each ``--antialias`` level (``off``, ``textures``,
  ``full``; the synthetic apartment lit, ``--lighting baked``):
  ``renderer.render`` plus ``encode_rgb`` (JPEG quality 95) and
  ``encode_depth`` (16-bit PNG) of every view;

each after a warm-up. Cast-only and the levels alternate, repetition after
repetition, so that drift in the machine's speed hits all; rates are medians
over the repetitions and each level's ratio is the median of each
repetition's own ratio. The per-stage figures (rays, cast, shade, encode) of
the default level (``full``) come from one extra pass that times the
renderer's stages (``rays``, ``cast``, ``shade_hits``, which includes the
edge samples' cast) one after the other.

    python benchmarks/render.py                        # large/0, 200 views, 256x256
    python benchmarks/render.py --preset medium --views 100 --resolution 128

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manifests.codecs import encode_depth, encode_rgb
from renderers.backends import ANTIALIAS, get_backend
from renderers.camera import intrinsics_from_hfov
from renderers.sources import load_scene

HFOV = 60.0  # degrees, CroCo's Habitat setting
EYE_HEIGHT = 1.5  # metres above the floor
TILT, ROLL = 10.0, 5.0  # degrees, at most
CLEARANCE = 0.3  # metres kept between the camera and walls or furniture
WARMUP = 5  # views rendered before any timing
NOISY = 0.10  # relative spread of the cast-only runs above which the figures are flagged
CAST_BATCH = 20  # views whose rays are prepared at once for the cast-only runs (a view's rays: 1.5 MiB at 256 px)


def axis_rotation(axis: int, deg: float) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about coordinate axis ``axis`` (0: x, 1: y, 2: z)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i] = R[j, j] = c
    R[i, j], R[j, i] = -s, s
    return R


def sample_poses(extras: dict, n: int, seed: int) -> np.ndarray:
    """``n`` cam2world poses (n, 4, 4) inside the apartment's rooms, clear of furniture.

    Rooms are drawn by floor area; the camera stands ``EYE_HEIGHT`` above the
    floor, ``CLEARANCE`` from walls and furniture, looks level along a random
    yaw, then tilts and rolls a little (OpenCV axes: x right, y down, z forward).
    """
    rng = np.random.default_rng(seed)
    rooms = [(np.asarray(r["min"]), np.asarray(r["max"])) for r in extras["rooms"]]
    area = np.array([(hi[0] - lo[0]) * (hi[2] - lo[2]) for lo, hi in rooms])
    obstacles = [(np.asarray(o["min"]), np.asarray(o["max"])) for o in extras["obstacles"]]
    level = np.diag([1.0, -1.0, -1.0])  # looks along world -Z with image up = world +Y
    poses = []
    while len(poses) < n:
        lo, hi = rooms[rng.choice(len(rooms), p=area / area.sum())]
        eye = np.array(
            [
                rng.uniform(lo[0] + CLEARANCE, hi[0] - CLEARANCE),
                EYE_HEIGHT,
                rng.uniform(lo[2] + CLEARANCE, hi[2] - CLEARANCE),
            ]
        )
        if any((eye > olo - CLEARANCE).all() and (eye < ohi + CLEARANCE).all() for olo, ohi in obstacles):
            continue
        yaw, tilt, roll = rng.uniform(-180, 180), rng.uniform(-TILT, TILT), rng.uniform(-ROLL, ROLL)
        pose = np.eye(4)
        pose[:3, :3] = axis_rotation(1, yaw) @ level @ axis_rotation(0, tilt) @ axis_rotation(2, roll)
        pose[:3, 3] = eye
        poses.append(pose)
    return np.stack(poses)


def _rate(run, views: int) -> float:
    """Views per second of ``run()``, which renders ``views`` views."""
    start = time.perf_counter()
    run()
    return views / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large", help="synthetic preset (small, medium, large)")
    parser.add_argument("--scene-seed", type=int, default=0, help="which apartment of the preset")
    parser.add_argument("--views", type=int, default=200, help="views per repetition")
    parser.add_argument("--resolution", type=int, default=256, help="image width and height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the camera poses")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions; the median counts")
    args = parser.parse_args()
    import open3d as o3d

    size = args.resolution
    start = time.perf_counter()
    scene = load_scene("synthetic", f"{args.preset}/{args.scene_seed}", scene_id=f"{args.preset}-{args.scene_seed}")
    load_s = time.perf_counter() - start
    K = intrinsics_from_hfov(size, size, HFOV)
    poses = sample_poses(scene.extras, args.views, args.seed)
    print(
        f"scene {scene.name}: {scene.num_triangles:,} triangles, {len(scene.materials)} materials, built in {load_s:.2f} s"
    )

    start = time.perf_counter()
    renderers = {level: get_backend("raycast").open(scene, antialias=level) for level in ANTIALIAS}
    print(f"raycast backend opened at {len(renderers)} levels (lighting baked once) in {time.perf_counter() - start:.2f} s")
    renderer = renderers["full"]
    rs = renderer.raycaster()  # one renderer's RaycastingScene: every level's BVH is built alike

    def cast_only() -> float:  # seconds spent in cast_rays, back to back within batches of prepared rays
        seconds = 0.0
        for start in range(0, len(poses), CAST_BATCH):
            rays = [o3d.core.Tensor(renderer.rays(K, c2w, size, size)) for c2w in poses[start : start + CAST_BATCH]]
            t0 = time.perf_counter()
            for r in rays:
                rs.cast_rays(r)
            seconds += time.perf_counter() - t0
        return seconds

    def full(r) -> None:  # one view at a time: render(), then encode
        for c2w in poses:
            view = r.render(K, c2w, size, size)
            encode_rgb(view.rgb, "jpeg", quality=95)
            encode_depth(view.depth)

    for c2w in poses[:WARMUP]:  # warm-up: caches, allocator, lazy initialisation
        rs.cast_rays(o3d.core.Tensor(renderer.rays(K, c2w, size, size)))
        for r in renderers.values():
            view = r.render(K, c2w, size, size)
            encode_rgb(view.rgb, "jpeg", quality=95)
            encode_depth(view.depth)

    # Interleave the measurements so that drift in the machine's speed hits all alike; each ratio is
    # the median of each repetition's own ratio.
    cast_rates, level_rates = [], {level: [] for level in renderers}
    for _ in range(args.repeats):
        cast_rates.append(len(poses) / cast_only())
        for level, r in renderers.items():
            level_rates[level].append(_rate(lambda: full(r), len(poses)))
    cast_vps = statistics.median(cast_rates)
    levels = {
        level: {"views_per_s": round(statistics.median(rates), 2),
                "ratio": round(statistics.median(f / c for f, c in zip(rates, cast_rates)), 4)}
        for level, rates in level_rates.items()
    }  # fmt: skip

    # Per-stage breakdown of the default level: one pass, stage after stage.
    stages = {"rays": 0.0, "cast": 0.0, "shade": 0.0, "encode": 0.0}
    valid = []
    for c2w in poses:
        t0 = time.perf_counter()
        r = renderer.rays(K, c2w, size, size)
        t1 = time.perf_counter()
        hits = renderer.cast(r)
        t2 = time.perf_counter()
        view = renderer.shade_hits(hits, size, size, rays=r, K=K, cam2world=c2w)
        t3 = time.perf_counter()
        encode_rgb(view.rgb, "jpeg", quality=95)
        encode_depth(view.depth)
        t4 = time.perf_counter()
        for k, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[k] += dt
        valid.append(view.valid_fraction)
    for r in renderers.values():
        r.close()
    ms = {k: round(1000 * v / len(poses), 3) for k, v in stages.items()}

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(poses)} views at {size}x{size}, hfov {HFOV:g}, median valid depth {statistics.median(valid):.3f}")
    print(f"cast only:        {cast_vps:7.1f} views/s  (runs: {', '.join(f'{v:.1f}' for v in cast_rates)})")
    for level, rates in level_rates.items():
        print(f"full pipeline, --antialias {level:8s}: {levels[level]['views_per_s']:7.1f} views/s, "
              f"{levels[level]['ratio']:.3f} x cast only  (runs: {', '.join(f'{v:.1f}' for v in rates)})")  # fmt: skip
    print("target: ratio >= 0.40 at the default level (full)")
    spread = (max(cast_rates) - min(cast_rates)) / cast_vps
    if spread > NOISY:
        print(f"note: cast-only runs spread {spread:.0%}: something else is using the CPU, figures are noisy")
    print("per view at --antialias full, stage by stage: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    print(f"peak RSS {peak:.0f} MiB")
    summary = {
        "views_per_s": levels["full"]["views_per_s"],
        "cast_only_views_per_s": round(cast_vps, 2),
        "ratio": levels["full"]["ratio"],
        "levels": levels,
        "peak_rss_mib": round(peak, 1),
        "triangles": scene.num_triangles,
        "resolution": [size, size],
        "views": len(poses),
        "repeats": args.repeats,
        "stage_ms": ms,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
