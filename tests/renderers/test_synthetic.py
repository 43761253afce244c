"""The procedural apartments: determinism, size, textures, closure and layout."""

from __future__ import annotations

import functools
import time
from collections import deque

import numpy as np
import pytest

from renderers.scene import SceneFormatError, Wrap
from renderers.sources import available_sources, load_scene
from renderers.sources import procedural_textures
from renderers.sources.synthetic import (
    CEILING,
    DOOR_CLEAR,
    DOOR_HEIGHT,
    DOOR_WIDTH,
    PRESETS,
    ROOM_SIZE,
    WALL,
    build_apartment,
    grid_mesh,
)

TRIANGLES = {"small": (10_000, 60_000), "medium": (100_000, 300_000), "large": (800_000, 1_200_000)}
CHEAP = ["small", "medium"]
TOL = 1e-6


@functools.lru_cache(maxsize=None)
def apartment(preset: str, seed: int = 0):
    return build_apartment(seed, preset)


@pytest.fixture(scope="module", params=list(PRESETS))
def scene(request):
    """One apartment of each preset, built once (the large one is about 1 M triangles)."""
    return apartment(request.param)


def boxes(items) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) min and max corners of extras' boxes."""
    return np.array([b["min"] for b in items]), np.array([b["max"] for b in items])


def free_points(scene, rng, per_room: int, height: float = 1.5) -> np.ndarray:
    """(N, 3) random points at ``height`` inside rooms, 5 cm clear of any obstacle."""
    olo, ohi = boxes(scene.extras["obstacles"])
    points = []
    for room in scene.extras["rooms"]:
        lo, hi = np.array(room["min"]) + 0.05, np.array(room["max"]) - 0.05
        p = lo + rng.random((20 * per_room, 3)) * (hi - lo)
        p[:, 1] = height
        inside = np.all((p[:, None] > olo - 0.05) & (p[:, None] < ohi + 0.05), axis=2).any(axis=1)
        points.append(p[~inside][:per_room])
    return np.concatenate(points)


def cast(scene, origins: np.ndarray, directions: np.ndarray) -> dict:
    o3d = pytest.importorskip("open3d")
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.faces))
    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    return {k: v.numpy() for k, v in rs.cast_rays(o3d.core.Tensor(rays)).items()}


def test_grid_mesh_counts_positions_and_winding():
    origins = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 5.0]])
    axes_u = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, -2.0]])
    axes_v = np.array([[0.0, -2.0, 0.0], [1.0, 0.0, 0.0]])
    v, f, st, vr, fr = grid_mesh(origins, axes_u, axes_v, np.array([3, 1]), np.array([2, 4]))
    assert v.shape == (4 * 3 + 2 * 5, 3) and f.shape == (2 * (6 + 4), 3)
    assert np.array_equal(np.bincount(fr), [12, 8]) and np.array_equal(np.bincount(vr), [12, 10])
    np.testing.assert_allclose(v, origins[vr] + st[:, :1] * axes_u[vr] + st[:, 1:] * axes_v[vr])
    assert st.min() == 0 and st.max() == 1
    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    front = np.cross(axes_v, axes_u)[fr]  # counter-clockwise seen from this side
    assert np.all(np.einsum("ij,ij->i", normals, front) > 0)
    np.testing.assert_allclose(0.5 * np.linalg.norm(normals, axis=1).sum(), 3 * 2 + 2 * 1)


@pytest.mark.parametrize("preset", CHEAP)
def test_same_seed_gives_identical_arrays(preset):
    a = build_apartment(7, preset)
    procedural_textures.texture_image.cache_clear()  # regenerate the textures too
    b = build_apartment(7, preset)
    for name in ("vertices", "faces", "uvs", "face_materials"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.extras == b.extras
    assert [m.name for m in a.materials] == [m.name for m in b.materials]
    for m, n in zip(a.materials, b.materials):
        assert np.array_equal(m.texture.image, n.texture.image), m.name


def test_different_seeds_give_different_apartments():
    scenes = [apartment("small", seed) for seed in range(4)]
    layouts = {str(s.extras["rooms"]) for s in scenes}
    assert len(layouts) == 4
    assert not np.array_equal(scenes[0].uvs[:100], scenes[1].uvs[:100])
    first = [s.materials[0].texture.image for s in scenes[:2]]
    assert first[0].tobytes() != first[1].tobytes()


def test_triangle_count_is_within_the_preset_range(scene):
    lo, hi = TRIANGLES[scene.extras["preset"]]
    assert lo <= scene.num_triangles <= hi
    assert scene.extras["edge"] > 0


@pytest.mark.parametrize("preset", CHEAP)
def test_build_is_fast(preset):
    start = time.perf_counter()
    build_apartment(1000 + len(preset), preset)  # a seed no other test builds
    assert time.perf_counter() - start < 3.0


def test_scene_is_valid_and_every_material_is_textured(scene):
    assert scene.validate() is scene
    assert scene.vertex_colors is None and scene.textured
    assert scene.source == f"synthetic:{scene.extras['preset']}/0"
    used = np.bincount(scene.face_materials, minlength=len(scene.materials))
    assert np.all(used > 0), "a material no face uses"
    seen = set()
    for m in scene.materials:
        img = m.texture.image
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.reshape(-1, 3).astype(np.float64).std(axis=0).max() > 3.0, f"{m.name} is flat"
        assert img.tobytes() not in seen, f"{m.name} repeats another material's image"
        seen.add(img.tobytes())


def test_tiling_textures_are_seamless(scene):
    """The wrap-around seam steps no more than neighbouring rows (columns) inside, give or take."""
    for m in scene.materials:
        if m.texture.wrap_s != Wrap.REPEAT:
            continue
        img = m.texture.image.astype(np.float32)
        for axis in (0, 1):
            steps = np.abs(np.diff(img, axis=axis)).mean(axis=(1 - axis, 2))
            seam = np.abs(np.take(img, 0, axis) - np.take(img, -1, axis)).mean()
            assert seam <= 1.5 * steps.max() + 2.0, (m.name, axis)


def test_uvs_tile_on_surfaces_and_images_span_once(scene):
    uv = scene.uvs[scene.faces.astype(np.int64)]  # (F, 3, 2)
    clamped = np.array([m.texture.wrap_s == Wrap.CLAMP_TO_EDGE for m in scene.materials])
    images = clamped[scene.face_materials]
    assert images.any() and (~images).any()
    assert uv[images].min() >= -TOL and uv[images].max() <= 1 + TOL
    tiling = np.flatnonzero(~clamped)
    spans = [np.ptp(uv[scene.face_materials == k], axis=(0, 1)).max() for k in tiling]
    assert max(spans) > 2, "tiling textures should repeat across big surfaces"


def test_apartment_is_closed_seen_from_inside(scene):
    rng = np.random.default_rng(0)
    points = free_points(scene, rng, per_room=8)
    origins = np.repeat(points, 250, axis=0)
    d = rng.normal(size=origins.shape)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    hits = cast(scene, origins, d)
    t = hits["t_hit"]
    assert np.isfinite(t).all(), f"{(~np.isfinite(t)).sum()} of {len(t)} rays escaped"
    # Every surface seen is counter-clockwise from the camera's side.
    tri = scene.vertices[scene.faces[hits["primitive_ids"].astype(np.int64)].astype(np.int64)]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("ij,ij->i", n, d) < 0)


def test_rooms_and_furniture_layout(scene):
    extras = scene.extras
    rlo, rhi = boxes(extras["rooms"])
    assert np.all(rlo[:, 1] == 0) and np.all(rhi[:, 1] > rlo[:, 1])
    assert np.all((rhi[:, 1] >= CEILING[0] - TOL) & (rhi[:, 1] <= CEILING[1] + TOL))
    size = (rhi - rlo)[:, [0, 2]]
    assert size.min() >= ROOM_SIZE[0] - TOL and size.max() <= ROOM_SIZE[1] + TOL
    n = len(rlo)
    assert PRESETS[extras["preset"]].rooms[0] <= n <= PRESETS[extras["preset"]].rooms[1]
    overlap = np.all((rlo[:, None] < rhi[None]) & (rlo[None] < rhi[:, None]), axis=2)
    assert np.array_equal(overlap, np.eye(n, dtype=bool)), "rooms overlap"
    assert scene.vertices[:, 1].min() > -0.01, "nothing below the floor"

    olo, ohi = boxes(extras["obstacles"])
    room = np.array([o["room"] for o in extras["obstacles"]])
    inside = np.all(olo >= rlo[room] - TOL) and np.all(ohi <= rhi[room] + TOL)
    assert inside, "furniture outside its room"
    assert np.bincount(room, minlength=n).min() >= 1 and len(room) >= 2 * n
    touching = np.all((olo[:, None] < ohi[None]) & (olo[None] < ohi[:, None]), axis=2)
    assert np.array_equal(touching, np.eye(len(olo), dtype=bool)), "furniture overlaps"
    for r in range(n):
        footprint = ((ohi - olo)[room == r][:, [0, 2]]).prod(axis=1).sum()
        assert footprint <= 0.5 * size[r].prod(), "no floor left to walk on"
    for door in extras["doors"]:  # nothing stands in the DOOR_CLEAR before a doorway
        lo, hi = np.array(door["min"]), np.array(door["max"])
        axis = 0 if hi[0] - lo[0] < hi[2] - lo[2] else 2
        lo[axis] -= DOOR_CLEAR - 0.01
        hi[axis] += DOOR_CLEAR - 0.01
        assert not np.any(np.all((olo < hi) & (lo < ohi), axis=1)), "furniture blocks a doorway"


def test_doors_connect_every_room(scene):
    rlo, rhi = boxes(scene.extras["rooms"])
    n = len(rlo)
    links = {r: set() for r in range(n)}
    for door in scene.extras["doors"]:
        lo, hi = np.array(door["min"]), np.array(door["max"])
        axis = 0 if hi[0] - lo[0] < hi[2] - lo[2] else 2
        along = 2 - axis
        assert np.isclose(hi[axis] - lo[axis], WALL)
        assert np.isclose(hi[along] - lo[along], DOOR_WIDTH)
        assert lo[1] == 0 and DOOR_HEIGHT[0] - TOL <= hi[1] <= DOOR_HEIGHT[1] + TOL
        grown_lo, grown_hi = lo - TOL, hi + TOL  # the rooms the opening touches
        touch = np.flatnonzero(np.all((rlo < grown_hi) & (grown_lo < rhi), axis=1))
        assert sorted(touch) == sorted(door["rooms"])
        a, b = door["rooms"]
        links[a].add(b)
        links[b].add(a)
    seen, todo = {0}, deque([0])
    while todo:
        for r in links[todo.popleft()] - seen:
            seen.add(r)
            todo.append(r)
    assert seen == set(range(n)), "a room no doorway leads to"


def test_doorways_are_open_below_the_lintel_and_walled_above(scene):
    origins, directions = [], []
    for door in scene.extras["doors"]:
        lo, hi = np.array(door["min"]), np.array(door["max"])
        axis = 0 if hi[0] - lo[0] < hi[2] - lo[2] else 2
        for y in (1.0, hi[1] + 0.1):
            o = (lo + hi) / 2
            o[1], o[axis] = y, lo[axis] - 0.5
            origins.append(o)
            directions.append(np.eye(3)[axis])
    t = cast(scene, np.array(origins), np.array(directions))["t_hit"]
    assert np.all(t[0::2] > 0.5 + WALL + 0.4), "something closes a doorway"
    np.testing.assert_allclose(t[1::2], 0.5, atol=1e-3)  # the wall above the opening


def test_loads_through_the_source_registry():
    assert "synthetic" in available_sources()
    scene = load_scene("synthetic", "small/3", scene_id="apt", up="z")  # up is ignored
    assert scene.name == "apt" and scene.source == "synthetic:small/3"
    assert np.array_equal(scene.vertices, apartment("small", 3).vertices)


@pytest.mark.parametrize(
    "location, message",
    [
        ("huge/3", "known: small, medium, large"),
        ("small", "'<preset>/<seed>'"),
        ("/3", "'<preset>/<seed>'"),
        ("small/", "'<preset>/<seed>'"),
        ("small/x", "non-negative integer"),
        ("small/-1", "non-negative integer"),
    ],
)
def test_bad_locations_are_refused_clearly(location, message):
    with pytest.raises(SceneFormatError, match=message) as info:
        load_scene("synthetic", location, scene_id="x")
    assert info.value.path == location


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="known: small, medium, large"):
        build_apartment(0, "huge")
