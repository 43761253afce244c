"""Image fidelity of each ``--antialias`` level against an 8x8-supersampled reference, and its cost.

Four scenes, built here (no data needed):

* **apartment**: a synthetic apartment (``medium/0`` by default), lit as
  ``pairgen render`` lights it (``--lighting baked``);
* **minified**: a 6 x 2.8 x 5 m room whose walls, floor and ceiling repeat a
  detailed 1024-texel texture every half metre (about 2,000 texels per metre,
  HM3D-like atlases seen at 256 px: most surfaces minified 10 to 50 times),
  tessellated into 0.25 m cells like the synthetic apartments;
* **vertex-coloured**: a ScanNet-style room (walls and boxes of small
  triangles with a random colour per vertex, no texture);
* **edges**: one straight edge, a plain half-plane against nothing, seen by a
  camera rolled to 8 angles (0 to 157.5 degrees, every 22.5, plus 0.7): how
  the edge samples' fixed pattern serves each direction (median and worst).

For each room, cameras stand inside (seeded, 1.5 m up, random yaw, small tilt
and roll). The **reference** of a view is the mean of 64 renders at
``--antialias off``, one per sub-pixel offset of an 8 x 8 grid (a box filter
over the pixel: every sample a pixel-centre ray of a shifted camera, textures
bilinear at full resolution). For each level (``off``, ``textures``, ``full``)
the benchmark reports the median PSNR of its RGB against the reference over
the views, and its throughput (``renderer.render`` views per second) against
the bare ``RaycastingScene.cast_rays`` of the same views' rays, alternated
over ``--repeats`` repetitions (medians; the ratio is the median of each
repetition's own ratio).

    python benchmarks/fidelity.py                    # 256 x 256, 6 views per scene, medium apartment
    python benchmarks/fidelity.py --large            # 24 views per scene, large apartment

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.render import HFOV, axis_rotation, sample_poses  # noqa: E402
from renderers.backends import ANTIALIAS, get_backend  # noqa: E402
from renderers.camera import intrinsics_from_hfov  # noqa: E402
from renderers.scene import Material, Scene, Texture, Wrap  # noqa: E402
from renderers.sources import load_scene  # noqa: E402
from renderers.sources.synthetic import grid_mesh  # noqa: E402

REFERENCE = 8  # reference samples per pixel side
ROOM = (6.0, 2.8, 5.0)  # the built rooms' interior, metres
CELL = 0.25  # their tessellation, metres
REPEAT = 0.5  # metres per repetition of the minified room's texture
TEXTURE = 1024  # its side in texels
SCENES = ("apartment", "minified", "vertex-coloured", "edges")  # in the order measured
EDGE_ANGLES = np.arange(8) * 22.5 + 0.7  # degrees: the edges scene's camera rolls (off-axis: edges at all phases)


def _box_room(size, cell: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inward-facing tessellated walls, floor and ceiling of a box at the origin: vertices, faces, world (s, t)."""
    w, h, d = size
    # (origin, axis_u, axis_v) of each inner face, counter-clockwise seen from inside
    rects = [
        ((0, h, 0), (w, 0, 0), (0, -h, 0)),  # z = 0 wall, seen from +z
        ((w, h, d), (-w, 0, 0), (0, -h, 0)),  # z = d wall
        ((0, h, d), (0, 0, -d), (0, -h, 0)),  # x = 0 wall
        ((w, h, 0), (0, 0, d), (0, -h, 0)),  # x = w wall
        ((0, 0, 0), (w, 0, 0), (0, 0, d)),  # floor
        ((0, h, d), (w, 0, 0), (0, 0, -d)),  # ceiling
    ]
    o, au, av = (np.array([r[k] for r in rects], np.float64) for k in range(3))
    nu = np.maximum(1, np.round(np.linalg.norm(au, axis=1) / cell)).astype(int)
    nv = np.maximum(1, np.round(np.linalg.norm(av, axis=1) / cell)).astype(int)
    vertices, faces, st, vr, _ = grid_mesh(o, au, av, nu, nv)
    metres = st * np.stack([np.linalg.norm(au, axis=1)[vr], np.linalg.norm(av, axis=1)[vr]], axis=1)
    normal = np.cross(av[0], au[0])  # check the winding faces inwards (+z for the first wall)
    assert normal[2] > 0
    return vertices, faces, metres


def minified_room() -> Scene:
    """A room whose every surface repeats a detailed texture each ``REPEAT`` metres."""
    rng = np.random.default_rng(7)
    n = TEXTURE
    y, x = np.mgrid[0:n, 0:n] / n
    base = rng.random((n, n, 3)).astype(np.float32) * 0.35  # texel grain
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 24 * (x + 0.3 * y))[..., None] * np.array([0.9, 0.5, 0.2])
    checks = ((np.floor(x * 16) + np.floor(y * 16)) % 2)[..., None] * np.array([0.1, 0.3, 0.5])
    image = np.clip(255 * (0.15 + base + 0.5 * stripes + checks * 0.6), 0, 255).astype(np.uint8)
    vertices, faces, metres = _box_room(ROOM, CELL)
    return Scene(
        name="minified-room",
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.uint32),
        uvs=(metres / REPEAT).astype(np.float32),
        materials=(Material(name="detail", texture=Texture(image, Wrap.REPEAT, Wrap.REPEAT, "detail")),),
        source="benchmark:minified",
        extras=_layout(),
    ).validate()


def vertex_coloured_room() -> Scene:
    """A room and a few boxes of 5 cm triangles, a random colour per vertex (ScanNet-style)."""
    rng = np.random.default_rng(11)
    parts = [_box_room(ROOM, 0.05)[:2]]
    for lo, hi in (((0.5, 0.0, 0.5), (1.5, 0.8, 1.3)), ((4.0, 0.0, 3.5), (5.5, 1.2, 4.5))):
        lo, hi = np.array(lo), np.array(hi)
        size = hi - lo
        v, f, _ = _box_room(size, 0.05)
        parts.append((lo + v, f[:, ::-1]))  # a box seen from outside: the winding flipped
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    vertices = np.concatenate(vertices)
    smooth = np.clip(120 + 40 * np.sin(vertices[:, :1] * 3 + np.arange(3)) + rng.normal(0, 25, (len(vertices), 3)), 0, 255)
    return Scene(
        name="vertex-coloured-room",
        vertices=vertices.astype(np.float32),
        faces=np.concatenate(faces).astype(np.uint32),
        vertex_colors=smooth.astype(np.uint8),
        source="benchmark:vertex-coloured",
        extras=_layout(obstacles=[((0.5, 0.0, 0.5), (1.5, 0.8, 1.3)), ((4.0, 0.0, 3.5), (5.5, 1.2, 4.5))]),
    ).validate()


def edge_plate() -> Scene:
    """A plain half-plane 2 m down -Z from the origin, its straight edge 13 mm off the view's centre."""
    x0, far = 0.013, 50.0
    vertices = np.array([[x0, -far, -2.0], [far, -far, -2.0], [far, far, -2.0], [x0, far, -2.0]], np.float32)
    return Scene(name="edge-plate", vertices=vertices, faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
                 source="benchmark:edges").validate()  # fmt: skip


def plate_poses() -> np.ndarray:
    """(8, 4, 4): a camera at the origin looking down -Z, rolled by each of ``EDGE_ANGLES``."""
    poses = np.tile(np.eye(4), (len(EDGE_ANGLES), 1, 1))
    for pose, deg in zip(poses, EDGE_ANGLES):
        pose[:3, :3] = np.diag([1.0, -1.0, -1.0]) @ axis_rotation(2, deg)
    return poses


def _layout(obstacles=()) -> dict:
    return {"rooms": [{"min": [0.0, 0.0, 0.0], "max": list(ROOM)}],
            "obstacles": [{"min": list(lo), "max": list(hi)} for lo, hi in obstacles]}  # fmt: skip


def reference(renderer, K: np.ndarray, c2w: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float64: the mean of REFERENCE**2 pixel-centre renders at sub-pixel offsets (a box filter)."""
    total = np.zeros((size, size, 3))
    offsets = (np.arange(REFERENCE) + 0.5) / REFERENCE - 0.5
    for dy in offsets:
        for dx in offsets:
            Ks = K.copy()
            Ks[0, 2] -= dx  # pixel u then looks through u + dx
            Ks[1, 2] -= dy
            total += renderer.render(Ks, c2w, size, size).rgb
    return total / REFERENCE**2


def psnr(image: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - ref) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(scene: Scene, poses: np.ndarray, size: int, repeats: int) -> dict:
    import open3d as o3d

    K = intrinsics_from_hfov(size, size, HFOV)
    renderers = {level: get_backend("raycast").open(scene, antialias=level) for level in ANTIALIAS}
    off = renderers["off"]
    start = time.perf_counter()
    refs = [reference(off, K, c2w, size) for c2w in poses]
    ref_s = time.perf_counter() - start
    out = {"scene": scene.name, "triangles": scene.num_triangles, "views": len(poses), "reference_s": round(ref_s, 1)}
    rays = [o3d.core.Tensor(off.rays(K, c2w, size, size)) for c2w in poses]
    rs = off.raycaster()
    for r in rays[:2]:
        rs.cast_rays(r)
    for level, renderer in renderers.items():
        views = [renderer.render(K, c2w, size, size) for c2w in poses]
        values = [psnr(v.rgb, ref) for v, ref in zip(views, refs)]
        cast_rates, rates = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for r in rays:
                rs.cast_rays(r)
            cast_rates.append(len(rays) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for c2w in poses:
                renderer.render(K, c2w, size, size)
            rates.append(len(poses) / (time.perf_counter() - t0))
        out[level] = {
            "psnr_db": round(statistics.median(values), 2),
            "psnr_min_db": round(min(values), 2),
            "views_per_s": round(statistics.median(rates), 1),
            "cast_views_per_s": round(statistics.median(cast_rates), 1),
            "ratio": round(statistics.median(f / c for f, c in zip(rates, cast_rates)), 3),
        }
        print(f"  {scene.name:22s} {level:8s} PSNR {out[level]['psnr_db']:6.2f} dB (min {min(values):5.2f}), "
              f"{out[level]['views_per_s']:6.1f} views/s, {out[level]['ratio']:.3f} x the bare cast")  # fmt: skip
    for renderer in renderers.values():
        renderer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="medium", help="synthetic apartment preset (small, medium, large)")
    parser.add_argument("--scene-seed", type=int, default=0, help="which apartment of the preset")
    parser.add_argument("--views", type=int, default=6, help="views per scene")
    parser.add_argument("--resolution", type=int, default=256, help="image width and height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the camera poses")
    parser.add_argument("--repeats", type=int, default=3, help="throughput repetitions; the median counts")
    parser.add_argument("--large", action="store_true", help="the larger run: 24 views per scene, large apartment")
    parser.add_argument("--only", choices=SCENES, help="one scene only")
    args = parser.parse_args()
    if args.large:
        args.views, args.preset = 24, "large"
    start = time.perf_counter()
    builders = {
        "apartment": lambda: load_scene("synthetic", f"{args.preset}/{args.scene_seed}",
                                        scene_id=f"{args.preset}-{args.scene_seed}"),  # fmt: skip
        "minified": minified_room,
        "vertex-coloured": vertex_coloured_room,
        "edges": edge_plate,
    }
    results = {}
    for key in SCENES:
        if args.only and key != args.only:
            continue
        scene = builders[key]()
        poses = plate_poses() if key == "edges" else sample_poses(scene.extras, args.views, args.seed)
        print(f"{key}: {scene.name}, {scene.num_triangles:,} triangles, {len(poses)} views at "
              f"{args.resolution}x{args.resolution}")  # fmt: skip
        results[key] = measure(scene, poses, args.resolution, args.repeats)
    summary = {"resolution": args.resolution, "reference_samples": REFERENCE**2, "preset": args.preset,
               "seconds": round(time.perf_counter() - start, 1), **results}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
