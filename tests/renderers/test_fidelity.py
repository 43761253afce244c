"""Anti-aliased colour (mip levels, edge samples) and the synthetic apartments' baked light.

Geometry must not move: the reference depth (``data/small0_depth_before_aa.npz``)
and colour digest below were taken from the renderer as it was before
anti-aliasing and lighting existed (commit 9b6015c: one ray per pixel centre,
albedo only) on a fixed small apartment and camera set. Depth is compared
within ``DEPTH_RTOL``, not by digest: Embree's hit distances differ in their
last bits between CPUs (the same code gave two digests on two machines, with
the colour digest equal on both).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from renderers.backends import get_backend
from renderers.backends import raycast as raycast_backend
from renderers.backends.atlas import MAX_TEXTURE_SIDE, TextureAtlas, mip_chain, wrapped_border
from renderers.backends.edges import edge_pixels
from renderers.backends.face_tables import plane_keys
from renderers.camera import intrinsics_from_hfov
from renderers.lighting import bake_irradiance, scene_irradiance
from renderers.scene import Material, Scene, SceneFormatError, Texture, Wrap
from renderers.sources import load_scene
from renderers.sources.synthetic import grid_mesh
from tests.writers.gltf import GlbImage, GlbMesh, textured_material, write_glb

DEPTH_BEFORE = Path(__file__).parent / "data" / "small0_depth_before_aa.npz"  # small/0, cameras(): (5, 48, 64)
DEPTH_RTOL = 1e-5  # 10 um at 1 m: far above a CPU's rounding, far below the millimetres stored
RGB_BEFORE = "b9a5d1baec604a3ee32025ecea238627d1adc8d89e9b6918a6fea07373664572"  # the same, colour


@pytest.fixture(scope="module")
def apartment() -> Scene:
    return load_scene("synthetic", "small/0", scene_id="small-0")


def cameras(extras: dict) -> list[np.ndarray]:
    """Five level cameras at the middle of the first room, 1.4 m up, turning."""
    lo, hi = np.asarray(extras["rooms"][0]["min"]), np.asarray(extras["rooms"][0]["max"])
    eye = np.array([(lo[0] + hi[0]) / 2, 1.4, (lo[2] + hi[2]) / 2])
    out = []
    for yaw in (0, 90, 180, 270, 45):
        c, s = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
        pose = np.eye(4)
        pose[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag([1.0, -1.0, -1.0])
        pose[:3, 3] = eye
        out.append(pose)
    return out


def renders(scene: Scene, **options) -> tuple[np.ndarray, str]:
    """Depth (5, 48, 64) of :func:`cameras`' views, and their colours' digest."""
    K = intrinsics_from_hfov(64, 48, 60.0)
    depth, rgb = [], hashlib.sha256()
    with get_backend("raycast").open(scene, **options) as r:
        for pose in cameras(scene.extras):
            view = r.render(K, pose, 64, 48)
            hits = r.cast(r.rays(K, pose, 64, 48))  # the bare cast of the pixel centres' rays
            bare = hits["t_hit"].numpy()
            assert view.depth.tobytes() == np.where(np.isfinite(bare), bare, np.float32(0)).tobytes()
            depth.append(view.depth)
            rgb.update(view.rgb.tobytes())
    return np.stack(depth), rgb.hexdigest()


def assert_depth_before(depth: np.ndarray) -> None:
    before = np.load(DEPTH_BEFORE)["depth"]
    assert depth.shape == before.shape
    np.testing.assert_array_equal(depth > 0, before > 0)
    np.testing.assert_allclose(depth, before, rtol=DEPTH_RTOL, atol=0)


@pytest.mark.parametrize("antialias", ["off", "textures", "full"])
def test_depth_is_todays_at_every_level(apartment, antialias):
    depth, _ = renders(apartment, antialias=antialias, lighting="baked")  # and exactly the bare cast's
    assert_depth_before(depth)


def test_off_and_flat_reproduce_todays_colour(apartment):
    depth, rgb = renders(apartment, antialias="off", lighting="flat")
    assert_depth_before(depth)
    assert rgb == RGB_BEFORE


def test_full_antialiasing_and_light_are_deterministic(apartment):
    depth, rgb = renders(apartment, antialias="full", lighting="baked")
    apartment.irradiance = None  # bake again, in a new renderer
    again, rgb_again = renders(apartment, antialias="full", lighting="baked")
    assert again.tobytes() == depth.tobytes() and rgb_again == rgb
    assert rgb != RGB_BEFORE


# ----------------------------------------------------------------------------- mip levels


def checker_floor(size=64, repeat=0.25, cell=0.5, half=40.0) -> Scene:
    """A floor at y = 0 of one-texel black and white checks, the texture repeating every ``repeat`` metres."""
    n = int(2 * half / cell)
    v, f, st, _, _ = grid_mesh(np.array([[-half, 0.0, -half]]), np.array([[2 * half, 0, 0.0]]),
                               np.array([[0.0, 0, 2 * half]]), [n], [n])  # fmt: skip
    y, x = np.mgrid[0:size, 0:size]
    image = np.repeat((((x + y) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return Scene(
        name="checker-floor",
        vertices=v.astype(np.float32),
        faces=f.astype(np.uint32),  # counter-clockwise seen from above: its front, single-sided
        uvs=(st * 2 * half / repeat).astype(np.float32),
        materials=(Material(texture=Texture(image, Wrap.REPEAT, Wrap.REPEAT, "checks")),),
    ).validate()


def test_minified_checkerboard_converges_to_its_mean():
    scene = checker_floor()
    K = intrinsics_from_hfov(128, 96, 60.0)
    pose = np.eye(4)
    tilt = np.radians(20.0)  # looking down 20 degrees towards -Z, 1.5 m up: the floor recedes to the horizon
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0]) @ np.array(
        [[1, 0, 0], [0, np.cos(tilt), np.sin(tilt)], [0, -np.sin(tilt), np.cos(tilt)]])  # fmt: skip
    pose[:3, 3] = (0.0, 1.5, 0.0)
    views = {}
    for level in ("off", "textures"):
        with get_backend("raycast").open(scene, antialias=level) as r:
            views[level] = r.render(K, pose, 128, 96)
    far = views["off"].depth > 6.0  # 6 m and more: hundreds of checks per pixel
    assert far.sum() > 500
    np.testing.assert_array_equal(views["off"].depth, views["textures"].depth)
    off, filtered = views["off"].rgb[far].astype(float), views["textures"].rgb[far].astype(float)
    assert off.std() > 30  # speckle: each pixel a bilinear mix of the 2x2 texels nearest its centre
    assert abs(filtered.mean() - 127.5) < 3 and filtered.std() < 4  # the checks' mean, 127.5
    near = (views["off"].depth > 0) & (views["off"].depth < 3.0)  # magnified region: level 0 as before
    assert near.sum() > 500
    assert np.abs(views["off"].rgb[near].astype(int) - views["textures"].rgb[near].astype(int)).mean() < 40


@pytest.mark.parametrize("wrap_s", list(Wrap))
@pytest.mark.parametrize("wrap_t", list(Wrap))
def test_every_mip_level_has_its_own_wrap_mode_border(wrap_s, wrap_t):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    atlas = TextureAtlas.build([Texture(image, wrap_s, wrap_t)], pad=4, mips=True)
    chain = mip_chain(image)
    assert [im.shape[:2] for im in chain] == [(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]
    np.testing.assert_array_equal(chain[1][0, 0], ((image[:2, :2].astype(int).sum(axis=(0, 1)) + 2) // 4))
    assert atlas.levels[2] == len(chain)
    rgb = atlas.texels.view(np.uint8).reshape(-1, 4)[:, :3]
    for k, level in enumerate(chain):
        want = wrapped_border(wrapped_border(level, 1, wrap_s, 4), 0, wrap_t, 4)
        h, w = want.shape[:2]
        assert atlas.mip_stride[2, k] == w
        got = rgb[atlas.mip_offset[2, k] : atlas.mip_offset[2, k] + h * w].reshape(h, w, 3)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(atlas.mip_scale[2, k], (level.shape[1] / 16, level.shape[0] / 8))


def test_a_texture_too_large_is_downscaled_once_with_a_note(caplog):
    tall = np.zeros((MAX_TEXTURE_SIDE * 2, 8, 3), np.uint8)  # 16384 x 8: cheap, yet too tall
    tall[::2] = 255
    with caplog.at_level(logging.WARNING, logger="renderers.backends.atlas"):
        atlas = TextureAtlas.build([Texture(tall, name="tall.png")], mips=True, scene="big-scene")
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "big-scene" in notes[0] and "tall.png" in notes[0] and "downscaled once" in notes[0]
    assert tuple(atlas.size[2]) == (4, MAX_TEXTURE_SIDE)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="renderers.backends.atlas"):  # over the texel budget: halved
        small = TextureAtlas.build([Texture(np.zeros((64, 64, 3), np.uint8), name="a")], pad=2, mips=True,
                                   budget=3000)  # fmt: skip
    assert tuple(small.size[2]) == (32, 32) and "texel" in caplog.records[0].getMessage()


def test_a_textured_material_without_uvs_is_named(tmp_path):
    scene = checker_floor()
    with pytest.raises(SceneFormatError, match="has a texture .* no texture coordinates"):
        Scene(name="nouv", vertices=scene.vertices, faces=scene.faces, materials=scene.materials,
              source="nouv.glb").validate()  # fmt: skip
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    glb = write_glb([GlbMesh(positions, np.array([0, 1, 2], np.uint32), material=0)],
                    images=[GlbImage(buf.tobytes(), "image/png")], materials=[textured_material(0)])  # fmt: skip
    path = tmp_path / "nouv.glb"
    path.write_bytes(glb)
    with pytest.raises(SceneFormatError, match="nouv.glb.*no TEXCOORD_0"):
        load_scene("gltf", path)


# ----------------------------------------------------------------------------- edges


def test_edges_are_found_at_silhouettes_not_inside_a_flat_wall():
    scene = checker_floor(size=2)  # a flat floor of 25,600 triangles, one material
    K = intrinsics_from_hfov(64, 48, 60.0)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # straight down, image down = world +Z
    pose[:3, 3] = (0.1, 3.0, 0.2)
    with get_backend("raycast").open(scene, antialias="full") as r:
        rays = r.rays(K, pose, 64, 48)
        hits = r.cast(rays)
        prim = hits["primitive_ids"].numpy().view(np.int32).astype(np.intp)
        assert len(np.unique(prim)) > 20  # many triangles in view
        edge = edge_pixels(prim, hits, rays, K, np.zeros((48, 64, 3), np.uint8), r.tables.face_materials, None)
        assert not edge.any()
        # Tilted to the horizon: the sky (misses) against the floor is an edge, one pixel each side.
        pose[:3, :3] = np.diag([1.0, -1.0, -1.0])
        pose[:3, 3] = (0.0, 1.0, 0.0)
        rays = r.rays(K, pose, 64, 48)
        hits = r.cast(rays)
        prim = hits["primitive_ids"].numpy().view(np.int32).astype(np.intp)
        prim = np.where(prim < 0, scene.num_triangles, prim)
        edge = edge_pixels(prim, hits, rays, K, np.zeros((48, 64, 3), np.uint8), r.tables.face_materials, None)
        assert 0 < edge.sum() <= 3 * 64 and edge.any(axis=1).sum() <= 3


def test_plane_keys_join_coplanar_faces_only(apartment):
    floor = checker_floor(size=2)
    keys = plane_keys(floor)
    assert len(keys) == floor.num_triangles + 1 and len(np.unique(keys[:-1])) == 1 and keys[-1] < 0  # one plane
    bent = Scene(  # two triangles meeting at a 1-degree crease, and a degenerate one
        name="bent",
        vertices=np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1], [2, np.tan(np.radians(1.0)), 1],
                           [3, 0, 0]], np.float32),  # fmt: skip
        faces=np.array([[0, 2, 1], [1, 2, 3], [1, 3, 4], [1, 1, 5]], np.uint32),
    ).validate()
    keys = plane_keys(bent)
    assert keys[0] == keys[1] != keys[2] and keys[3] < 0 and len(set(keys[3:])) == 2
    # Far from the origin, a plane tilted by less than the normals' quantum through the same offset: the
    # coarse key matches, yet 100 m out the faces are 39 mm apart, a step the edge search must see.
    x0, tilt = 100.0, 0.4 / 1024
    lift = np.tan(tilt)
    step = Scene(
        name="step",
        vertices=np.array([[x0 - 1, 0, -1], [x0, 0, -1], [x0, 0, 1], [x0 - 1, 0, 1], [x0, x0 * lift, -1],
                           [x0 + 1, (x0 + 1) * lift, -1], [x0 + 1, (x0 + 1) * lift, 1], [x0, x0 * lift, 1]],
                          np.float32),  # fmt: skip
        faces=np.array([[0, 2, 1], [0, 3, 2], [4, 6, 5], [4, 7, 6]], np.uint32),
    ).validate()
    keys = plane_keys(step)
    assert keys[0] == keys[1] and keys[0] not in keys[2:]  # the group's first plane is A's: B's faces are out
    K = intrinsics_from_hfov(64, 64, 60.0)
    down = np.eye(4)
    down[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    down[:3, 3] = (x0, 1.0, 0.0)
    with get_backend("raycast").open(step, antialias="full", lighting="flat") as r:
        rays = r.rays(K, down, 64, 64)
        hits = r.cast(rays)
        prim = hits["primitive_ids"].numpy().view(np.int32).reshape(64, 64)
        args = (prim, hits, rays, K, np.zeros((64, 64, 3), np.uint8), r.tables.face_materials, None)
        with_keys = edge_pixels(*args, keys)
        assert with_keys.sum() >= 64
        np.testing.assert_array_equal(with_keys, edge_pixels(*args))
    # The shortcut changes nothing: the apartment's edges with the keys are its edges without them.
    K = intrinsics_from_hfov(64, 48, 60.0)
    with get_backend("raycast").open(apartment, antialias="full") as r:
        planes = plane_keys(apartment)
        for pose in cameras(apartment.extras):
            rays = r.rays(K, pose, 64, 48)
            hits = r.cast(rays)
            prim = hits["primitive_ids"].numpy().view(np.int32).reshape(48, 64)
            rgb = r.render(K, pose, 64, 48).rgb
            args = (prim, hits, rays, K, rgb, r.tables.face_materials, r.tables.untextured)
            with_keys = edge_pixels(*args, planes)
            assert with_keys.any()
            np.testing.assert_array_equal(with_keys, edge_pixels(*args))


def garbage_hits_shade(scene: Scene) -> None:
    """Shade garbage hits of ``scene`` at every level: faces out of range, barycentrics NaN, infinite or huge,
    then filtered with garbage footprints and the edge search over a 7 x 1 image of them; and render views
    of awkward sizes (one pixel wide or high), on one thread and again shared by two in chunks of 3 pixels
    (ending mid-row), which must give the same bytes."""
    n = scene.num_triangles
    prim = np.array([-7, n, n + 5, 2**31 - 1, 0, 1, 2], np.int32)
    bary = np.array([[0.2, 0.3], [0.1, 0.1], [0.5, 0.5], [0.3, 0.3], [np.nan, np.nan], [np.inf, -np.inf],
                     [1e30, -1e30]], np.float32)  # fmt: skip
    t = np.array([1.0, np.nan, np.inf, -1.0, 0.0, 1e30, 2.0], np.float32)
    normals = np.full((7, 3), np.nan, np.float32)
    rays = np.array([[0, 0, 0, np.inf, -np.inf, np.nan]] * 7, np.float32)
    for level in ("off", "textures", "full"):
        with get_backend("raycast").open(scene, antialias=level) as r:
            rgb = r.shade(prim, bary)
            assert rgb.shape == (7, 3) and not rgb[:4].any()  # misses are black
            out, edge = np.empty((7, 3), np.uint8), np.zeros(7, bool)
            r.shade_into(out, prim, bary, (t, normals, rays, np.float32(0.01)), 0, 7, edge, 7)
            assert not out[:4].any()
            with pytest.raises(ValueError, match="must have 7 rows"):  # lengths are checked, not trusted
                r.shade_into(out, prim, bary[:5], None, 0, 7)
            if "rooms" in scene.extras:
                pose = cameras(scene.extras)[0]
            else:  # 1.5 m above the floor, looking 20 degrees down to the horizon
                pose, tilt = np.eye(4), np.radians(20.0)
                pose[:3, :3] = np.diag([1.0, -1.0, -1.0]) @ np.array(
                    [[1, 0, 0], [0, np.cos(tilt), np.sin(tilt)], [0, -np.sin(tilt), np.cos(tilt)]])  # fmt: skip
                pose[:3, 3] = (0.1, 1.5, 0.2)
            for w, h in ((1, 37), (37, 1), (65, 63)):
                K = intrinsics_from_hfov(w, h, 60.0)
                view = r.render(K, pose, w, h)
                assert view.rgb.shape == (h, w, 3) and view.valid_fraction > 0
                limits = raycast_backend.PARALLEL_MIN_PIXELS, raycast_backend.SPLIT_MIN_PIXELS
                raycast_backend.PARALLEL_MIN_PIXELS, raycast_backend.SPLIT_MIN_PIXELS = 1, 3
                try:
                    chunked = r.render(K, pose, w, h)
                finally:
                    raycast_backend.PARALLEL_MIN_PIXELS, raycast_backend.SPLIT_MIN_PIXELS = limits
                assert chunked.rgb.tobytes() == view.rgb.tobytes()


@pytest.mark.timeout(300)
def test_the_kernels_never_read_outside_their_tables(tmp_path):
    # numba checks no bounds; with NUMBA_BOUNDSCHECK=1 (in a fresh cache: a warm one ignores the flag) any
    # access outside an array raises, so garbage hits on a textured floor and on the lit apartment prove the
    # kernels' own clamps.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("from tests.renderers.test_fidelity import checker_floor, garbage_hits_shade; from renderers.sources import "
            "load_scene; garbage_hits_shade(checker_floor(size=2)); "
            "garbage_hits_shade(load_scene('synthetic', 'small/0', scene_id='small-0'))")  # fmt: skip
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]


def test_edge_supersampling_smooths_a_silhouette_and_keeps_depth():
    # A white square 2 m ahead, tilted in the image, on black: its edge pixels get intermediate values.
    c, s = np.cos(0.3), np.sin(0.3)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) @ np.array([[c, -s], [s, c]]).T
    vertices = np.concatenate([corners, np.full((4, 1), -2.0)], axis=1).astype(np.float32)
    scene = Scene(name="square", vertices=vertices, faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32)).validate()
    K = intrinsics_from_hfov(64, 64, 90.0)
    pose = np.diag([1.0, -1.0, -1.0, 1.0])
    with get_backend("raycast").open(scene, antialias="off") as r:
        off = r.render(K, pose, 64, 64)
    with get_backend("raycast").open(scene, antialias="full") as r:
        full = r.render(K, pose, 64, 64)
        again = r.render(K, pose, 64, 64)
    np.testing.assert_array_equal(full.depth, off.depth)  # depth: the pixel-centre sample, never averaged
    np.testing.assert_array_equal(full.rgb, again.rgb)
    assert set(np.unique(off.rgb)) == {0, 255}
    grey = (full.rgb[..., 0] > 0) & (full.rgb[..., 0] < 255)
    assert grey.sum() > 60  # the silhouette is anti-aliased...
    assert (full.rgb[..., 0] != off.rgb[..., 0]).sum() <= grey.sum()  # ...and only it changed
    assert abs(full.rgb[..., 0].astype(float).mean() - off.rgb[..., 0].astype(float).mean()) < 3


# ----------------------------------------------------------------------------- light


def test_bake_is_deterministic_and_plausible(apartment):
    r = get_backend("raycast").open(apartment, antialias="off", lighting="flat")
    first = bake_irradiance(apartment, r.raycaster())
    second = bake_irradiance(apartment, r.raycaster())
    assert first.tobytes() == second.tobytes() and first.shape == (len(apartment.vertices), 3)
    assert np.isfinite(first).all() and first.min() >= 0
    lum = first @ np.array([0.2126, 0.7152, 0.0722])
    v = apartment.vertices
    # Floor under a table (0.15 m inside its footprint) against open floor in the same room.
    table = next(o for o in apartment.extras["obstacles"] if o["kind"] == "table")
    lo, hi = np.asarray(table["min"]), np.asarray(table["max"])
    floor = np.abs(v[:, 1]) < 1e-3
    under = floor & (v[:, 0] > lo[0] + 0.15) & (v[:, 0] < hi[0] - 0.15) & (v[:, 2] > lo[2] + 0.15) & (v[:, 2] < hi[2] - 0.15)
    room = apartment.extras["rooms"][table["room"]]
    rlo, rhi = np.asarray(room["min"]), np.asarray(room["max"])
    clear = floor & (v[:, 0] > rlo[0] + 0.5) & (v[:, 0] < rhi[0] - 0.5) & (v[:, 2] > rlo[2] + 0.5) & (v[:, 2] < rhi[2] - 0.5)
    for o in apartment.extras["obstacles"]:
        olo, ohi = np.asarray(o["min"]) - 0.5, np.asarray(o["max"]) + 0.5
        clear &= ~((v[:, 0] > olo[0]) & (v[:, 0] < ohi[0]) & (v[:, 2] > olo[2]) & (v[:, 2] < ohi[2]))
    assert under.sum() > 3 and clear.sum() > 3
    assert np.median(lum[under]) < 0.7 * np.median(lum[clear])
    # A wall's vertices at a room's vertical corner against the same wall's middle, at 1.2-1.8 m.
    rlo, rhi = np.asarray(apartment.extras["rooms"][0]["min"]), np.asarray(apartment.extras["rooms"][0]["max"])
    wall = (np.abs(v[:, 2] - rlo[2]) < 1e-3) & (v[:, 1] > 1.2) & (v[:, 1] < 1.8) & (v[:, 0] > rlo[0] - 0.01)
    corner = wall & (v[:, 0] < rlo[0] + 0.03)
    middle = wall & (np.abs(v[:, 0] - (rlo[0] + rhi[0]) / 2) < 0.3)
    assert corner.sum() and middle.sum()
    assert lum[corner].mean() < 0.8 * lum[middle].mean()
    # Real scans are left as they are.
    floor_scene = checker_floor(size=2)
    assert scene_irradiance(floor_scene, None) is None
    r.close()


def test_lighting_is_in_the_config_hash():
    from manifests.config import config_hash
    from pairgen.render import RenderConfig

    hashes = {config_hash(RenderConfig(antialias=a, lighting=light).to_dict())
              for a in ("off", "textures", "full") for light in ("baked", "flat")}  # fmt: skip
    assert len(hashes) == 6
    assert RenderConfig().antialias == "full" and RenderConfig().lighting == "baked"
    with pytest.raises(ValueError):
        RenderConfig(antialias="msaa")


def test_sampled_views_keep_their_cameras_and_depth(apartment):
    """The pipeline's views (floor, walks, screening) are the same cameras and depths at every level."""
    from pairgen.render import scene_rng
    from renderers.floor import FloorConfig, find_floor
    from renderers.viewpoints import ViewConfig, sample_views

    config = ViewConfig(views_per_scene=6, resolution=(48, 32))
    runs = []
    for options in ({"antialias": "off", "lighting": "flat"}, {"antialias": "full", "lighting": "baked"}):
        with get_backend("raycast").open(apartment, **options) as r:
            rng = scene_rng(0, "synthetic/small-0")
            floor = find_floor(apartment, r.raycaster(), FloorConfig(), rng)
            runs.append([(v.K, v.cam2world, v.render.depth, v.render.rgb)
                         for v in sample_views(r.render, floor, r.raycaster(), config, rng)])  # fmt: skip
    (before, after) = runs
    assert len(before) == len(after) == 6
    for (K0, P0, D0, C0), (K1, P1, D1, C1) in zip(before, after):
        np.testing.assert_array_equal(K0, K1)
        np.testing.assert_array_equal(P0, P1)
        np.testing.assert_array_equal(D0, D1)
    assert any((c0 != c1).any() for (*_, c0), (*_, c1) in zip(before, after))  # colour did change
