"""What the back-face rule (docs/design.md, "Back faces") changes in rendered views, and what it costs.

The ``raycast`` backend draws a face of a single-sided material only from its
front; a ray meeting its back goes on through it. This script renders the same
cameras twice in one process, **culled** (single-sided materials as they are)
and **both sides** (every material made double-sided: the renderer before the
rule, whose cast is Open3D's alone), alternating repetition after repetition,
and reports

* pixels whose depth or colour differ, and the first hits that are the back
  of a single-sided face (what culling removes);
* views per second of each (``render``: rays, cast, shading), median over the
  repetitions, and the median of each repetition's ratio culled / both sides.

Two kinds of scene:

* ``synthetic``: the views of a ``pairgen render --scenes synthetic`` run
  (``--views OUT/views/synthetic``), re-rendered at their own cameras with the
  run's defaults (``--antialias full``, baked light). The apartments are
  single-sided under the rule; their winding faces into the rooms, so culling
  should change nothing there.
* ``scan``: a ScanNet-style scan made here: the RGB-D views of one of those
  apartments fused into a TSDF (Open3D's, 2 cm voxels, as BundleFusion and
  VoxelHashing build ScanNet's meshes), its marching-cubes mesh with vertex
  colours written as a Z-up PLY like ScanNet's ``_vh_clean_2.ply`` and read
  back by the ``ply`` source, rendered at the same cameras (``--held-out``:
  fused from the even views, rendered at the odd ones). PLY scans are
  double-sided under the rule; this measures what culling them would do, with
  each one's depth error against the apartment itself where they differ.

    pairgen render --scenes synthetic --views-per-scene 100 --no-ray --out /tmp/out
    python benchmarks/back_faces.py synthetic --views /tmp/out/views/synthetic
    python benchmarks/back_faces.py scan --views /tmp/out/views/synthetic --scene apartment_0000 [--held-out]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manifests.views import read_views
from renderers.backends import get_backend
from renderers.sources import load_scene

VOXEL = 0.02  # metres, the TSDF's voxel (ScanNet's meshes: 4 mm fused, then decimated to about 2 cm edges)
TILE = 128  # voxels a side of one TSDF cube (64 MiB of Open3D's voxels)
TRUNCATION = 0.08  # metres, the TSDF's truncation
MAX_FUSED_DEPTH = 4.0  # metres, ScanNet's depth range


def both_sides(scene):
    """A copy of ``scene`` whose every material is double-sided (the renderer before the rule)."""
    materials = tuple(dataclasses.replace(m, double_sided=True) for m in scene.materials)
    return dataclasses.replace(scene, materials=materials)


def cameras(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], int, int, str, str]:
    """``(Ks, poses, width, height, source, scene_id)`` of a views file."""
    table, meta = read_views(path, columns=["K", "cam2world", "width", "height"])
    Ks = np.asarray(table.column("K").combine_chunks().flatten(), np.float64).reshape(-1, 3, 3)
    poses = np.asarray(table.column("cam2world").combine_chunks().flatten(), np.float64).reshape(-1, 4, 4)
    return list(Ks), list(poses), int(table.column("width")[0].as_py()), int(table.column("height")[0].as_py()), \
        meta.source, meta.scene_id


def back_face_hits(renderer, single: np.ndarray, K, c2w, width: int, height: int) -> int:
    """First hits (of Open3D's bare cast) on the back of a single-sided face, in one view."""
    import open3d as o3d

    rays = renderer.rays(K, c2w, width, height).reshape(-1, 6)
    hits = renderer.raycaster().cast_rays(o3d.core.Tensor(rays))
    prim = hits["primitive_ids"].numpy().view(np.int32)
    away = np.einsum("nc,nc->n", hits["primitive_normals"].numpy(), rays[:, 3:]) > 0
    return int((away & (prim >= 0) & np.append(single, False)[prim]).sum())


def compare(scene, Ks, poses, width, height, repeats: int, antialias: str, lighting: str, truth=None) -> dict:
    """Render every camera culled and from both sides; differences, back-face hits and throughput.

    ``truth``, a scene the cameras also render (the apartment a scan was fused from), adds the median
    depth error of each against it over the pixels whose depth culling changed (a miss: infinite).
    """
    backend = get_backend("raycast")
    culled = backend.open(scene, antialias=antialias, lighting=lighting)
    both = backend.open(both_sides(scene), antialias=antialias, lighting=lighting)  # the irradiance is reused
    single = scene.single_sided_faces
    single = np.zeros(scene.num_triangles, bool) if single is None else single
    pixels = depth_changed = rgb_changed = back = 0
    errors = {"culled": [], "both_sides": []}
    missed = 0
    reference = None if truth is None else backend.open(both_sides(truth), antialias="off", lighting="flat")
    for K, c2w in zip(Ks, poses):
        a, b = culled.render(K, c2w, width, height), both.render(K, c2w, width, height)
        pixels += a.depth.size
        changed = a.depth != b.depth
        depth_changed += int(changed.sum())
        if reference is not None and changed.any():
            true = reference.render(K, c2w, width, height).depth[changed]
            errors["culled"].append(np.abs(np.where(a.depth[changed] > 0, a.depth[changed], np.inf) - true))
            errors["both_sides"].append(np.abs(b.depth[changed] - true))
            missed += int((a.depth[changed] == 0).sum())
        rgb_changed += int((a.rgb != b.rgb).any(axis=2).sum())
        back += back_face_hits(both, single, K, c2w, width, height)
    rates = {"culled": [], "both_sides": []}
    for _ in range(repeats):  # alternate, so that drift in the machine's speed hits both
        for name, r in (("both_sides", both), ("culled", culled)):
            start = time.perf_counter()
            for K, c2w in zip(Ks, poses):
                r.render(K, c2w, width, height)
            rates[name].append(len(Ks) / (time.perf_counter() - start))
    culled.close()
    both.close()
    ratios = [a / b for a, b in zip(rates["culled"], rates["both_sides"])]
    if reference is not None:  # a miss counts as an infinite error
        reference.close()
        truth_figures = {f"changed_depth_error_median_m_{k}": round(float(np.median(np.concatenate(v))), 4)
                         for k, v in errors.items() if v}  # fmt: skip
        truth_figures["changed_now_missed"] = missed
    else:
        truth_figures = {}
    return {
        **truth_figures,
        "views": len(Ks), "pixels": pixels, "depth_changed": depth_changed, "rgb_changed": rgb_changed,
        "back_face_first_hits": back,
        "views_per_s_culled": round(statistics.median(rates["culled"]), 2),
        "views_per_s_both_sides": round(statistics.median(rates["both_sides"]), 2),
        "ratio": round(statistics.median(ratios), 4),
    }  # fmt: skip


def scan_mesh(scene, Ks, poses, width: int, height: int, path: Path) -> None:
    """Fuse ``scene``'s flat-lit RGB-D views at the cameras into a TSDF; write its mesh as a ScanNet-style PLY.

    Open3D's ``UniformTSDFVolume`` (its hashed volumes extract nothing in this build), in cubes of
    ``TILE`` voxels a side that share their border voxels, so their marching cubes meet without seams.
    """
    import open3d as o3d
    from plyfile import PlyData, PlyElement

    views = []
    with get_backend("raycast").open(both_sides(scene), antialias="off", lighting="flat") as r:
        for K, c2w in zip(Ks, poses):
            view = r.render(K, c2w, width, height)
            views.append(o3d.geometry.RGBDImage.create_from_color_and_depth(
                o3d.geometry.Image(np.ascontiguousarray(view.rgb)), o3d.geometry.Image(view.depth),
                depth_scale=1.0, depth_trunc=MAX_FUSED_DEPTH, convert_rgb_to_intensity=False,
            ))  # fmt: skip
    lo, hi = (np.asarray(b, np.float64) for b in scene.bounds)
    step = (TILE - 1) * VOXEL  # tiles share their last plane of voxels
    parts, offset = [], 0
    for x in np.arange(lo[0] - 2 * VOXEL, hi[0] + VOXEL, step):
        for y in np.arange(lo[1] - 2 * VOXEL, hi[1] + VOXEL, step):
            for z in np.arange(lo[2] - 2 * VOXEL, hi[2] + VOXEL, step):
                volume = o3d.pipelines.integration.UniformTSDFVolume(
                    length=step, resolution=TILE - 1, sdf_trunc=TRUNCATION,
                    color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8, origin=np.array([x, y, z]),
                )  # fmt: skip
                for K, c2w, rgbd in zip(Ks, poses, views):
                    intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
                    volume.integrate(rgbd, intrinsic, np.linalg.inv(c2w))  # Open3D's camera axes are OpenCV's
                mesh = volume.extract_triangle_mesh()
                if len(mesh.triangles):
                    parts.append((np.asarray(mesh.vertices), np.asarray(mesh.vertex_colors),
                                  np.asarray(mesh.triangles) + offset))  # fmt: skip
                    offset += len(mesh.vertices)
    v = np.concatenate([p[0] for p in parts])  # (V, 3) Y-up world
    c = (np.clip(np.concatenate([p[1] for p in parts]), 0, 1) * 255).round().astype(np.uint8)
    f = np.concatenate([p[2] for p in parts]).astype(np.int32)
    z_up = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)  # the inverse of the loader's (x, y, z) -> (x, z, -y)
    vertex = np.empty(len(v), [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                               ("blue", "u1"), ("alpha", "u1")])  # fmt: skip
    vertex["x"], vertex["y"], vertex["z"] = z_up.T
    vertex["red"], vertex["green"], vertex["blue"], vertex["alpha"] = c[:, 0], c[:, 1], c[:, 2], 255
    face = np.empty(len(f), [("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = f
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("synthetic", "scan"))
    parser.add_argument("--views", type=Path, required=True, help="a folder of views files (OUT/views/synthetic)")
    parser.add_argument("--scene", default=None, help="scan: the scene id whose views are fused (default: the first)")
    parser.add_argument("--max-views", type=int, default=100, help="cameras used per scene")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the median counts")
    parser.add_argument("--held-out", action="store_true",
                        help="scan: fuse the even views, render at the odd ones (cameras the scan was not made from)")
    args = parser.parse_args()
    files = sorted(args.views.glob("*.parquet"))
    if args.scene:
        files = [f for f in files if f.stem == args.scene]
    if not files:
        parser.error(f"no views files in {args.views}")
    out = {}
    if args.kind == "synthetic":
        for path in files:
            Ks, poses, w, h, source, scene_id = cameras(path)
            Ks, poses = Ks[: args.max_views], poses[: args.max_views]
            scene = load_scene("synthetic", source.removeprefix("synthetic:"), scene_id=scene_id)
            out[scene_id] = compare(scene, Ks, poses, w, h, args.repeats, "full", "baked")
            print(scene_id, json.dumps(out[scene_id]), flush=True)
    else:
        Ks, poses, w, h, source, scene_id = cameras(files[0])
        Ks, poses = Ks[: args.max_views], poses[: args.max_views]
        fused = slice(0, None, 2) if args.held_out else slice(None)
        shown = slice(1, None, 2) if args.held_out else slice(None)
        apartment = load_scene("synthetic", source.removeprefix("synthetic:"), scene_id=scene_id)
        with tempfile.TemporaryDirectory() as tmp:
            ply = Path(tmp) / f"{scene_id}_vh_clean_2.ply"
            start = time.perf_counter()
            scan_mesh(apartment, Ks[fused], poses[fused], w, h, ply)
            scan = load_scene("ply", str(ply), scene_id=scene_id, up="z")
            print(f"scan of {scene_id}: {scan.num_triangles:,} triangles from {len(Ks[fused])} views, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
            single = dataclasses.replace(scan, materials=tuple(
                dataclasses.replace(m, double_sided=False) for m in scan.materials))  # fmt: skip
            key = f"scan:{scene_id}" + (":held-out" if args.held_out else "")
            out[key] = compare(single, Ks[shown], poses[shown], w, h, args.repeats, "full", "flat", truth=apartment)
            print(key, json.dumps(out[key]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
