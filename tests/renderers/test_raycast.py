"""The raycast backend: planar depth, projection agreement, texture and vertex colours."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from renderers.backends import available_backends, get_backend
from renderers.backends import raycast as raycast_backend
from renderers.backends.atlas import TextureAtlas, sample_texture, wrap_indices
from renderers.camera import intrinsics_from_hfov, pixel_rays, project, unproject_depth
from renderers.scene import Material, Scene, Texture, Wrap
from renderers.sources import load_scene
from renderers.sources.synthetic import grid_mesh
from tests.rooms import LEVEL, pose, rotation


def quad(corners, uvs=None, colors=None, texture=None) -> Scene:
    v = np.asarray(corners, np.float32)
    return Scene(
        name="quad",
        vertices=v,
        faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
        uvs=None if uvs is None else np.asarray(uvs, np.float32),
        vertex_colors=None if colors is None else np.asarray(colors, np.uint8),
        materials=(Material(texture=texture),),
    ).validate()


def wall(z=-3.0, half=50.0, **kw) -> Scene:
    """A big quad facing +Z at depth z; uv (0,0) top-left as seen from the origin."""
    return quad([[-half, half, z], [-half, -half, z], [half, -half, z], [half, half, z]], **kw)


def render(scene, K, c2w, w, h):
    with get_backend("raycast").open(scene) as r:
        return r.render(K, c2w, w, h)


def test_raycast_is_registered():
    assert "raycast" in available_backends()
    with pytest.raises(ValueError, match="unknown render backend"):
        get_backend("nope")


def test_facing_a_plane_gives_its_planar_depth_everywhere():
    K = intrinsics_from_hfov(64, 48, 90.0)
    view = render(wall(z=-3.0), K, pose(), 64, 48)
    np.testing.assert_allclose(view.depth, 3.0, atol=1e-3)  # planar, not ray length
    assert view.valid_fraction == 1.0


@pytest.mark.parametrize("axis,deg,t", [((1, 0, 0), 12, (0.3, 1.2, 0.5)), ((0, 1, 0), -25, (-1, 0.4, 0.2)), ((1, 1, 0), 18, (0, 0, 1))])
def test_tilted_camera_depth_matches_the_plane(axis, deg, t):
    K = intrinsics_from_hfov(40, 30, 60.0)
    c2w = pose(rotation(axis, deg) @ LEVEL, t)
    view = render(wall(z=-4.0), K, c2w, 40, 30)
    points, valid = unproject_depth(view.depth, K, c2w)
    assert valid.all()
    np.testing.assert_allclose(points[..., 2], -4.0, atol=1e-3)  # every unprojected pixel lies on the wall


def test_known_world_point_lands_on_the_predicted_pixel():
    K = intrinsics_from_hfov(80, 60, 70.0)
    c2w = pose(rotation((0, 1, 0), 20) @ LEVEL, (0.2, 1.5, 0.0))
    # The world point on pixel (23, 17)'s ray at planar depth 3: K and the pose predict it there.
    i, j, d = 23, 17, 3.0
    target = c2w[:3, :3] @ (np.linalg.inv(K) @ [i, j, 1.0] * d) + c2w[:3, 3]
    (u, v), z = project(target, K, c2w)
    assert (u, v, float(z)) == pytest.approx((i, j, d))
    # A small red square through the target, facing +Z, on a grey wall behind it.
    s = 0.04
    marker = quad([target + o for o in ([-s, s, 0], [-s, -s, 0], [s, -s, 0], [s, s, 0])], colors=[[255, 0, 0]] * 4)
    back = wall(z=target[2] - 0.5, colors=[[128, 128, 128]] * 4)
    scene = Scene(
        name="marker",
        vertices=np.concatenate([marker.vertices, back.vertices]),
        faces=np.concatenate([marker.faces, back.faces + 4]),
        vertex_colors=np.concatenate([marker.vertex_colors, back.vertex_colors]),
    ).validate()
    view = render(scene, K, c2w, 80, 60)
    assert tuple(view.rgb[j, i]) == (255, 0, 0)
    assert float(view.depth[j, i]) == pytest.approx(d, abs=1e-3)
    red = np.argwhere((view.rgb == (255, 0, 0)).all(axis=-1))
    assert np.abs(red.mean(axis=0) - (j, i)).max() < 1.0


def test_texture_pattern_lands_at_the_expected_pixels():
    # 2x2 checker: top-left red, top-right green, bottom-left blue, bottom-right white
    img = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    img = np.repeat(np.repeat(img, 8, axis=0), 8, axis=1)
    tex = Texture(img, Wrap.CLAMP_TO_EDGE, Wrap.CLAMP_TO_EDGE)
    # a 2 m x 2 m quad at distance 1 filling a 90 degree view exactly
    scene = wall(z=-1.0, half=1.0, uvs=[[0, 0], [0, 1], [1, 1], [1, 0]], texture=tex)
    view = render(scene, intrinsics_from_hfov(32, 32, 90.0), pose(), 32, 32)
    assert tuple(view.rgb[4, 4]) == (255, 0, 0)
    assert tuple(view.rgb[4, 27]) == (0, 255, 0)
    assert tuple(view.rgb[27, 4]) == (0, 0, 255)
    assert tuple(view.rgb[27, 27]) == (255, 255, 255)


@pytest.mark.parametrize("mode,expect", [(Wrap.REPEAT, (255, 0, 0)), (Wrap.MIRRORED_REPEAT, (0, 255, 0)), (Wrap.CLAMP_TO_EDGE, (0, 255, 0))])
def test_wrap_modes(mode, expect):
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, :4] = (255, 0, 0)  # left half red, right half green
    img[:, 4:] = (0, 255, 0)
    tex = Texture(img, mode, mode)
    # u runs 1..2 across the view: REPEAT starts over (red), MIRROR and CLAMP stay green at its left
    scene = wall(z=-1.0, half=1.0, uvs=[[1, 0], [1, 1], [2, 1], [2, 0]], texture=tex)
    view = render(scene, intrinsics_from_hfov(32, 32, 90.0), pose(), 32, 32)
    assert tuple(view.rgb[16, 3]) == expect


def test_vertex_colours_interpolate():
    scene = quad([[-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, -1]], colors=[[255, 0, 0], [0, 0, 0], [0, 0, 255], [0, 0, 0]])
    view = render(scene, intrinsics_from_hfov(33, 33, 90.0), pose(), 33, 33)
    centre = view.rgb[16, 16].astype(int)
    assert abs(centre[0] - 128) <= 3 and abs(centre[2] - 128) <= 3 and centre[1] == 0
    assert view.rgb[1, 1, 0] > 230 and view.rgb[31, 31, 2] > 230


def test_misses_are_zero_depth_and_black():
    K = intrinsics_from_hfov(16, 16, 60.0)
    view = render(wall(z=-2.0), K, pose(LEVEL @ rotation((1, 0, 0), 180)), 16, 16)  # looking away
    assert view.valid_fraction == 0.0 and not view.rgb.any()


# ----------------------------------------------------------------------------- fast shading vs the reference


def reference_rgb(scene: Scene, hits: dict) -> np.ndarray:
    """(N, 3) uint8: per-material shading with sample_texture, the definition the atlas path must reproduce."""
    t = hits["t_hit"].numpy().reshape(-1)
    hit = np.isfinite(t)
    prim = hits["primitive_ids"].numpy().reshape(-1)[hit].astype(np.int64)
    bary = hits["primitive_uvs"].numpy().reshape(-1, 2)[hit].astype(np.float64)
    weights = np.stack([1.0 - bary[:, 0] - bary[:, 1], bary[:, 0], bary[:, 1]], axis=1)  # (n, 3)
    corners = scene.faces[prim].astype(np.int64)
    mats = scene.face_materials[prim] if scene.face_materials is not None else np.zeros(len(prim), np.int64)
    color = np.array([m.base_color[:3] for m in scene.materials])[mats] * 255.0
    if scene.uvs is not None:
        uv = np.einsum("nk,nkc->nc", weights, scene.uvs[corners])
        for m in np.unique(mats):
            if scene.materials[m].texture is not None:
                color[mats == m] *= sample_texture(scene.materials[m].texture, uv[mats == m]) / 255.0
    if scene.vertex_colors is not None:
        color *= np.einsum("nk,nkc->nc", weights, scene.vertex_colors[corners].astype(np.float64)) / 255.0
    out = np.zeros((len(t), 3), np.uint8)
    out[hit] = np.clip(color + 0.5, 0, 255).astype(np.uint8)
    return out


def patchwork(vertex_colors: bool, base_colors: bool) -> Scene:
    """Textured quads 1.5-2 m in front of the camera, each with its own texture size (RGB or RGBA) and wrap
    modes, and an untextured quad before them. Tessellated quads have faces small enough for the atlas
    border; the single big quads do not (they span many texture periods), so both shading paths run."""
    rng = np.random.default_rng(7)

    def rect(x0, x1, y0, y1, z, cells):  # a cells x cells grid facing +Z; st (0, 0) at the top left
        origin, across, down = np.array([[x0, y1, z]]), np.array([[x1 - x0, 0, 0]]), np.array([[0, y0 - y1, 0]])
        return grid_mesh(origin, across, down, [cells], [cells])[:3]

    # image size (h, w, c), wrap_s, wrap_t, uv at the top left and bottom right, cells a side, where
    specs = [
        ((7, 5, 3), Wrap.REPEAT, Wrap.REPEAT, (-2.3, -1.7), (3.1, 2.9), 9, (-1.8, 0.0, 0.0, 1.8, -2.0)),
        ((9, 16, 4), Wrap.MIRRORED_REPEAT, Wrap.CLAMP_TO_EDGE, (-3.0, -0.4), (4.0, 1.3), 1, (0.0, 1.8, 0.0, 1.8, -2.0)),
        ((1, 3, 3), Wrap.CLAMP_TO_EDGE, Wrap.REPEAT, (-0.2, -6.0), (1.3, 7.0), 12, (-1.8, 0.0, -1.8, 0.0, -2.0)),
        ((32, 32, 3), Wrap.MIRRORED_REPEAT, Wrap.MIRRORED_REPEAT, (-1.0, -1.5), (2.0, 2.5), 6, (0.0, 1.8, -1.8, 0.0, -2)),
        ((4, 6, 3), Wrap.REPEAT, Wrap.MIRRORED_REPEAT, (-9.0, 5.0), (11.0, 31.0), 1, (-0.9, 0.9, -0.6, 0.6, -1.5)),
    ]
    vertices, faces, uvs, face_mats, materials = [], [], [], [], []
    for k, (shape, wrap_s, wrap_t, uv0, uv1, cells, where) in enumerate(specs):
        v, f, st = rect(*where, cells)
        faces.append(f + sum(len(a) for a in vertices))
        vertices.append(v)
        uvs.append(np.asarray(uv0) + st * (np.asarray(uv1) - uv0))
        face_mats.append(np.full(len(f), k))
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        base = tuple(rng.uniform(0.3, 1.0, 3)) + (1.0,) if base_colors else (1.0, 1.0, 1.0, 1.0)
        materials.append(Material(name=f"m{k}", base_color=base, texture=Texture(image, wrap_s, wrap_t)))
    v, f, st = rect(-0.3, 0.3, -0.3, 0.3, -1.0, 2)  # an untextured quad in front of the middle
    faces.append(f + sum(len(a) for a in vertices))
    vertices.append(v)
    uvs.append(st)
    face_mats.append(np.full(len(f), len(materials)))
    materials.append(Material(name="plain", base_color=(0.5, 0.25, 1.0, 1.0) if base_colors else (1.0, 1.0, 1.0, 1.0)))
    n_vertices = sum(len(a) for a in vertices)
    return Scene(
        name="patchwork",
        vertices=np.concatenate(vertices).astype(np.float32),
        faces=np.concatenate(faces).astype(np.uint32),
        uvs=np.concatenate(uvs).astype(np.float32),
        vertex_colors=rng.integers(0, 256, (n_vertices, 3), dtype=np.uint8) if vertex_colors else None,
        face_materials=np.concatenate(face_mats).astype(np.uint16),
        materials=tuple(materials),
    ).validate()


@pytest.mark.parametrize("vertex_colors,base_colors", [(False, False), (True, False), (False, True), (True, True)])
def test_atlas_shading_matches_per_material_sample_texture(vertex_colors, base_colors):
    scene = patchwork(vertex_colors, base_colors)
    K = intrinsics_from_hfov(96, 96, 90.0)
    with get_backend("raycast").open(scene) as r:
        slow = r.tables.slow
        assert slow is not None and 0 < slow.sum() < scene.num_triangles  # both paths are exercised
        hits = r.cast(r.rays(K, pose(), 96, 96))
        view = r.shade_hits(hits, 96, 96)
    expect = reference_rgb(scene, hits).reshape(96, 96, 3)
    diff = np.abs(view.rgb.astype(int) - expect)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float32 rounding only
    missed = view.depth == 0
    assert 0 < missed.mean() < 0.5 and not view.rgb[missed].any()  # a black border of misses
    slow_pixels = np.isin(hits["primitive_ids"].numpy(), np.flatnonzero(slow))
    assert 0 < slow_pixels.mean() < 1


@pytest.mark.parametrize("chunk", [None, 77])  # 77: chunks that end mid-row, most of them on either thread
def test_large_views_shade_the_same_on_two_threads(monkeypatch, chunk):
    scene = patchwork(vertex_colors=True, base_colors=True)
    K = intrinsics_from_hfov(256, 128, 90.0)  # 32768 pixels: shaded in chunks by two threads
    c2w = pose(rotation((1, 1, 0), 8) @ LEVEL, (0.1, -0.2, 0.3))
    if chunk is not None:
        monkeypatch.setattr(raycast_backend, "SPLIT_MIN_PIXELS", chunk)
    with get_backend("raycast").open(scene) as r:
        assert 256 * 128 >= raycast_backend.PARALLEL_MIN_PIXELS
        threads, shade_into = set(), r.shade_into

        def spy(*args, **kwargs):
            threads.add(threading.current_thread().name)
            return shade_into(*args, **kwargs)

        monkeypatch.setattr(r, "shade_into", spy)
        parallel = r.render(K, c2w, 256, 128)
        assert parallel.valid_fraction > 0.5 and parallel.rgb.any()
        assert len(threads) == 2 and any(name.startswith("raycast-shade") for name in threads)  # both took chunks
        monkeypatch.setattr(raycast_backend, "PARALLEL_MIN_PIXELS", 1 << 30)
        serial = r.render(K, c2w, 256, 128)
    np.testing.assert_array_equal(parallel.rgb, serial.rgb)
    np.testing.assert_array_equal(parallel.depth, serial.depth)


def test_synthetic_apartment_matches_the_reference():
    scene = load_scene("synthetic", "small/0", scene_id="small-0")
    lo, hi = (np.asarray(scene.extras["rooms"][0][k]) for k in ("min", "max"))
    K = intrinsics_from_hfov(64, 48, 60.0)
    with get_backend("raycast").open(scene, antialias="off", lighting="flat") as r:  # the reference: albedo, 1 sample
        for yaw in (0, 100, 200, 300):
            c2w = pose(rotation((0, 1, 0), yaw) @ LEVEL, (lo + hi) / 2 * [1, 0, 1] + [0, 1.5, 0])
            hits = r.cast(r.rays(K, c2w, 64, 48))
            view = r.shade_hits(hits, 64, 48)
            assert view.valid_fraction == 1.0
            assert np.abs(view.rgb.astype(int) - reference_rgb(scene, hits).reshape(48, 64, 3)).max() <= 1


@pytest.mark.parametrize("wrap_s", list(Wrap))
@pytest.mark.parametrize("wrap_t", list(Wrap))
def test_atlas_border_holds_what_the_wrap_mode_fetches(wrap_s, wrap_t):
    image = np.random.default_rng(3).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    pad = 7  # more than a period: the border wraps more than once
    atlas = TextureAtlas.build([Texture(image, wrap_s, wrap_t)], pad=pad)
    e = 2  # the first texture, after WHITE and BLACK
    width, height = atlas.extent[e] + 2 * pad
    entry = atlas.texels[atlas.offset[e] : atlas.offset[e] + width * height].reshape(height, width)
    rgb = entry.view(np.uint8).reshape(height, width, 4)[..., :3]
    cols = wrap_indices(np.arange(width) - pad, 5, wrap_s)
    rows = wrap_indices(np.arange(height) - pad, 3, wrap_t)
    np.testing.assert_array_equal(rgb, image[rows][:, cols])


def test_rays_follow_pixel_rays_with_skew():
    K = intrinsics_from_hfov(40, 30, 70.0)
    K[0, 1] = 2.5  # skew
    c2w = pose(rotation((1, 2, 3), 33), (0.5, -1.0, 2.0))
    rays = get_backend("raycast").open(wall()).rays(K, c2w, 40, 30)
    assert rays.shape == (30, 40, 6) and rays.dtype == np.float32
    np.testing.assert_allclose(rays[..., :3], np.broadcast_to(c2w[:3, 3], (30, 40, 3)), atol=1e-6)
    np.testing.assert_allclose(rays[..., 3:], pixel_rays(K, 40, 30) @ c2w[:3, :3].T, atol=1e-6)


@pytest.mark.parametrize("size", [(40, 30), (1, 7), (9, 1)])
def test_rays_are_the_float32_column_plus_row_terms_exactly(size):
    # The ray grid's bytes are geometry (depth is the cast of them): each direction is a float32 column term
    # plus a float32 row term, per axis, as the renderer computed them before a kernel interleaved them.
    w, h = size
    K = intrinsics_from_hfov(w, h, 70.0)
    K[0, 1] = 0.7
    c2w = pose(rotation((1, 2, 3), 33), (0.5, -1.0, 2.0))
    R = c2w[:3, :3]
    p = (np.arange(w) - K[0, 2]) / K[0, 0]
    y = (np.arange(h) - K[1, 2]) / K[1, 1]
    cols = (R[:, :1] * p).astype(np.float32)
    rows = (R[:, :1] * (-K[0, 1] / K[0, 0] * y) + R[:, 1:2] * y + R[:, 2:]).astype(np.float32)
    expected = np.concatenate([np.broadcast_to(c2w[:3, 3].astype(np.float32), (h, w, 3)),
                               (rows[:, :, None] + cols[:, None, :]).transpose(1, 2, 0)], axis=2)  # fmt: skip
    rays = get_backend("raycast").open(wall()).rays(K, c2w, w, h)
    assert rays.shape == (h, w, 6) and rays.flags.c_contiguous
    assert rays.tobytes() == expected.tobytes()


# -- back faces (docs/design.md, "Back faces") ------------------------------------------------

RED, GREEN, BLUE = (1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0)


def sheet(z: float, half: float, facing: int, material: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A square at ``z`` whose front (counter-clockwise) side faces ``facing`` * +Z: vertices (4, 3), faces (2, 3)."""
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]]) if facing > 0 else np.array([[0, 2, 1], [0, 3, 2]])
    return v, f, material


def sheets(parts, materials) -> Scene:
    vertices = np.concatenate([v for v, _, _ in parts])
    faces = np.concatenate([f + 4 * i for i, (_, f, _) in enumerate(parts)]).astype(np.uint32)
    face_materials = np.concatenate([[m, m] for _, _, m in parts]).astype(np.uint16)
    return Scene("sheets", vertices, faces, face_materials=face_materials, materials=tuple(materials)).validate()


# A camera 1 m in front of z = 0 (at z = +1, looking down -Z) sees a sheet's front there; one at z = -1 looking
# down +Z sees its back. Double-sided green backdrops at z = -2 and z = +2, 3 m behind the sheet from either.
FROM_FRONT, FROM_BEHIND = pose(LEVEL, (0.0, 0.0, 1.0)), pose(np.diag([1.0, 1.0, 1.0]), (0.0, 0.0, -1.0))


def sided_scene(double_sided: bool, *extra) -> Scene:
    backdrop = Material("backdrop", GREEN, double_sided=True)
    parts = [sheet(0.0, 0.5, +1, 1), sheet(-2.0, 50.0, +1, 0), sheet(2.0, 50.0, -1, 0), *extra]
    return sheets(parts, [backdrop, Material("sheet", RED, double_sided=double_sided), Material("blue", BLUE)])


@pytest.mark.parametrize("double_sided", [False, True], ids=["single-sided", "double-sided"])
@pytest.mark.parametrize("side", ["front", "back"])
def test_single_sided_faces_are_seen_from_the_front_only(double_sided, side):
    K = intrinsics_from_hfov(9, 9, 20.0)
    c2w = FROM_FRONT if side == "front" else FROM_BEHIND
    view = render(sided_scene(double_sided), K, c2w, 9, 9)
    seen = side == "front" or double_sided
    assert view.depth[4, 4] == pytest.approx(1.0 if seen else 3.0, abs=1e-5)  # culled: the ray goes on
    assert tuple(view.rgb[4, 4]) == ((255, 0, 0) if seen else (0, 255, 0))
    assert view.valid_fraction == 1.0


@pytest.mark.parametrize("red_first", [True, False])
@pytest.mark.parametrize("side", ["front", "back"])
def test_coincident_opposite_faces_show_the_one_facing_the_camera(side, red_first):
    # A wall modelled as two single-sided faces in one plane, back to back: whichever Embree reports first
    # (the order of the faces decides), the camera sees the face turned to it, never through the wall.
    red, blue = sheet(0.0, 0.5, +1, 1), sheet(0.0, 0.5, -1, 2)  # red faces +Z, blue faces -Z, both at z = 0
    parts = [red, blue] if red_first else [blue, red]
    scene = sheets(parts + [sheet(-2.0, 50.0, +1, 0), sheet(2.0, 50.0, -1, 0)],
                   [Material("backdrop", GREEN, double_sided=True), Material("red", RED), Material("blue", BLUE)])
    K = intrinsics_from_hfov(9, 9, 20.0)
    view = render(scene, K, FROM_FRONT if side == "front" else FROM_BEHIND, 9, 9)
    np.testing.assert_allclose(view.depth[2:7, 2:7], 1.0, atol=1e-5)
    assert (view.rgb[2:7, 2:7] == ((255, 0, 0) if side == "front" else (0, 0, 255))).all()


def test_a_ray_goes_on_through_every_back_face_in_its_way():
    layers = [sheet(z, 0.5, +1, 1) for z in (0.0, -0.5, -1.0, -1.5)]  # all face +Z: backs seen from z = -3
    scene = sheets(layers + [sheet(3.0, 50.0, -1, 0)], [Material("far", GREEN), Material("sheet", RED)])
    c2w = pose(np.diag([1.0, 1.0, 1.0]), (0.0, 0.0, -3.0))
    view = render(scene, intrinsics_from_hfov(9, 9, 20.0), c2w, 9, 9)
    assert view.depth[4, 4] == pytest.approx(6.0, abs=1e-5) and tuple(view.rgb[4, 4]) == (0, 255, 0)


def test_a_ray_through_a_back_face_into_nothing_misses():
    scene = sheets([sheet(0.0, 0.5, +1, 0)], [Material("sheet", RED)])
    view = render(scene, intrinsics_from_hfov(9, 9, 20.0), FROM_BEHIND, 9, 9)
    assert view.valid_fraction == 0.0 and not view.rgb.any()


def test_cast_reports_the_hit_behind_a_culled_back_face():
    # What the shading reads of a continued hit (face, barycentrics, normal, depth) is Open3D's own for that face:
    # seen from behind, the single-sided sheet is as if it were not there.
    import open3d as o3d

    scene = sided_scene(False)
    with get_backend("raycast").open(scene) as r:
        rays = r.rays(intrinsics_from_hfov(16, 12, 60.0), FROM_BEHIND, 16, 12)
        hits = {k: v.numpy().reshape(192, -1) for k, v in r.cast(rays).items()}
    backdrops = o3d.t.geometry.RaycastingScene()  # the scene less the sheet (its faces 0 and 1)
    backdrops.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.faces[2:]))
    behind = {k: v.numpy().reshape(192, -1) for k, v in backdrops.cast_rays(o3d.core.Tensor(rays)).items()}
    through = np.abs(rays[..., 3:5]).max(axis=-1).reshape(-1) < 0.5  # the rays that cross the sheet
    assert through.sum() > 20
    for key in ("t_hit", "primitive_uvs", "primitive_normals"):
        np.testing.assert_allclose(hits[key], behind[key], atol=1e-6)
    np.testing.assert_array_equal(hits["primitive_ids"], behind["primitive_ids"] + 2)
    assert (np.einsum("nc,nc->n", hits["primitive_normals"], rays.reshape(-1, 6)[:, 3:]) < 0).all()  # fronts only


def test_double_sided_scenes_cast_as_open3d_alone():
    scene = sided_scene(True)
    assert scene.single_sided_faces is None  # every material double-sided
    with get_backend("raycast").open(scene) as r:
        rays = r.rays(intrinsics_from_hfov(16, 12, 60.0), FROM_BEHIND, 16, 12)
        hits = r.cast(rays)
        assert hits["primitive_ids"].numpy().reshape(-1)[6 * 16 + 8] == 0  # the sheet's back, not culled


def test_face_normals_are_open3ds_primitive_normals():
    import open3d as o3d

    scene = load_scene("synthetic", "small/0")
    with get_backend("raycast").open(scene, antialias="off", lighting="flat") as r:
        rays = r.rays(intrinsics_from_hfov(32, 32, 90.0), pose(LEVEL, (2.0, 1.5, 2.0)), 32, 32).reshape(-1, 6)
        hits = r.raycaster().cast_rays(o3d.core.Tensor(rays))
    prim = hits["primitive_ids"].numpy().view(np.int32)
    hit = prim >= 0
    normals = raycast_backend.face_normals(scene.vertices, scene.faces)
    np.testing.assert_allclose(normals[prim[hit]], hits["primitive_normals"].numpy()[hit], atol=1e-5)
