"""The navmesh reader, on real habitat-sim files and on files the tests write.

Real files live beside the project in ``../shared/fixtures/navmesh``; their
tests skip when that folder is absent. The written files come from
:func:`tests.writers.navmesh.write_navmesh`, which follows Detour's layout on
its own, so a round trip checks the reader against the format.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from renderers.scene import SceneFormatError
from renderers.sources.navmesh import MIN_POLYGON_AREA, parse_navmesh, read_navmesh
from tests.conftest import SHARED_FIXTURES
from tests.writers.navmesh import write_navmesh, write_tile_chain

log = logging.getLogger(__name__)

FIXTURES = SHARED_FIXTURES

# (file, polygon count, navigable area in m^2 as habitat-sim computes it)
REAL_NAVMESHES = [("van-gogh-room.navmesh", 10, 9.18), ("apartment_1.navmesh", 78, 52.88)]


def _hexagon(centre, r):
    """(6, 3) regular hexagon in the horizontal plane through ``centre``."""
    a = np.arange(6) * np.pi / 3
    return np.asarray(centre) + r * np.stack([np.cos(a), np.zeros(6), np.sin(a)], axis=1)


# Polygons with known areas (m^2): Detour-sized (3 to 6 vertices), one sloped.
SHAPES = [
    (np.array([[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0]]), 1.0),  # unit square
    (np.array([[2, 0.5, 0], [4, 0.5, 0], [4, 0.5, 3], [2, 0.5, 3]]), 6.0),  # 2 x 3 rectangle
    (np.array([[5, 0.2, 0], [9, 0.2, 0], [5, 0.2, 3]]), 6.0),  # right triangle 4 x 3
    (_hexagon([0, 1, 5], 1.0), 1.5 * math.sqrt(3)),  # regular hexagon, r = 1
    (np.array([[0, 0, 8], [2, 0, 8], [2, 0, 10], [1, 0, 11], [0, 0, 10]]), 5.0),  # "house"
    (np.array([[10, 0, 0], [11, 0, 0], [11, 1, 1], [10, 1, 1]]), math.sqrt(2)),  # 45-degree ramp
]
POLYGONS = [p for p, _ in SHAPES]
AREAS = np.array([a for _, a in SHAPES])


def _real(name: str) -> Path:
    path = FIXTURES / "navmesh" / name
    if not path.is_file():
        pytest.skip(f"real navmesh fixture {path} is absent (see ../shared/fixtures)")
    return path


def _set_tile_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Union of the dtMeshHeader bmin/bmax of every tile of a version-1 set, (3,) each."""
    magic, version, num_tiles = struct.unpack_from("<4sii", data)
    assert (magic, version) == (b"TESM", 1)
    lo, hi, offset = np.full(3, np.inf), np.full(3, -np.inf), 40
    for _ in range(num_tiles):
        _, size = struct.unpack_from("<Ii", data, offset)
        box = np.array(struct.unpack_from("<6f", data, offset + 8 + 72))
        lo, hi = np.minimum(lo, box[:3]), np.maximum(hi, box[3:])
        offset += 8 + size
    return lo, hi


def _tile_offsets(data: bytes) -> dict[str, int]:
    """Absolute byte offsets of the sections of the first tile of a version-1 set."""
    start = 48  # 40-byte set header + 8-byte tile header
    counts = struct.unpack_from("<8i", data, start + 24)  # polyCount ... offMeshConCount
    p, v, links, dm, dv, _, _, _ = counts
    off = {"tile": start, "verts": start + 100}
    off["polys"] = off["verts"] + 12 * v
    off["detail_meshes"] = off["polys"] + 32 * p + 12 * links
    off["detail_tris"] = off["detail_meshes"] + 12 * dm + 12 * dv
    return off


def _normals(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) unit normals and (T,) doubled areas of (T, 3, 3) triangles."""
    t = triangles.astype(np.float64)
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    length = np.linalg.norm(n, axis=1)
    return n / np.maximum(length, 1e-30)[:, None], length


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name, n_polygons, area", REAL_NAVMESHES)
def test_real_navmesh(name, n_polygons, area):
    path = _real(name)
    nav = read_navmesh(path)
    assert nav.source == str(path)
    assert len(nav.polygons) == n_polygons
    assert nav.area == pytest.approx(area, rel=0.01)
    assert nav.triangles.dtype == np.float32 and nav.triangles.shape[1:] == (3, 3)
    assert nav.triangle_polygon.dtype == np.int32
    # Every polygon has triangles, and the indices are in range.
    assert np.array_equal(np.unique(nav.triangle_polygon), np.arange(n_polygons))
    assert all(p.dtype == np.float32 and np.isfinite(p).all() for p in nav.polygons)
    assert np.isfinite(nav.triangles).all()
    # Inside the bounds the tiles declare.
    lo, hi = _set_tile_bounds(path.read_bytes())
    points = nav.triangles.reshape(-1, 3)
    assert (points >= lo - 1e-4).all() and (points <= hi + 1e-4).all()


@pytest.mark.parametrize("name, n_polygons, area", REAL_NAVMESHES)
def test_real_navmesh_is_y_up(name, n_polygons, area):
    """Floors are horizontal in a Y-up frame: area-weighted |n_y| near 1, |n_x|, |n_z| near 0."""
    nav = read_navmesh(_real(name))
    normals, weight = _normals(nav.triangles)
    mean_abs = (np.abs(normals) * weight[:, None]).sum(axis=0) / weight.sum()  # (3,)
    log.debug("%s: area-weighted mean |normal| = %s", name, mean_abs)
    assert mean_abs[1] > 0.95
    assert mean_abs[0] < 0.2 and mean_abs[2] < 0.2


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("version, settings_size", [(1, 0), (2, 52), (2, 64), (2, 80)])
@pytest.mark.parametrize("tiles", [1, 3])
@pytest.mark.parametrize("detail", ["fan", "centre", "none"])
def test_round_trip(tmp_path, version, settings_size, tiles, detail):
    path = tmp_path / "written.navmesh"
    path.write_bytes(write_navmesh(POLYGONS, version, settings_size, tiles, detail))
    nav = read_navmesh(path)

    assert len(nav.polygons) == len(POLYGONS)
    for got, expected in zip(nav.polygons, POLYGONS):
        np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert nav.area == pytest.approx(AREAS.sum(), rel=1e-6)
    per_polygon = np.bincount(nav.triangle_polygon, weights=nav.triangle_areas)
    np.testing.assert_allclose(per_polygon, AREAS, rtol=1e-5)
    sides = np.array([len(p) for p in POLYGONS])
    assert len(nav.triangles) == (sides.sum() if detail == "centre" else (sides - 2).sum())
    # Each triangle lies within its polygon's bounding box.
    for i, polygon in enumerate(POLYGONS):
        corners = nav.triangles[nav.triangle_polygon == i].reshape(-1, 3)
        assert (corners >= polygon.min(axis=0) - 1e-6).all()
        assert (corners <= polygon.max(axis=0) + 1e-6).all()


def test_parse_bytes_names_the_source():
    nav = parse_navmesh(write_navmesh(POLYGONS[:2]), "in-memory.navmesh")
    assert nav.source == "in-memory.navmesh"
    assert nav.area == pytest.approx(7.0, rel=1e-6)


def test_habitat_navigability_filter():
    """Polygons without the walk flag or under MIN_POLYGON_AREA are not navigable."""
    side = math.sqrt(2 * MIN_POLYGON_AREA)  # a right isosceles triangle of the threshold area
    side_small, side_ok = 0.9 * side, 1.1 * side
    tiny = np.array([[20, 0, 0], [20 + side_small, 0, 0], [20, 0, side_small]])
    small = np.array([[30, 0, 0], [30 + side_ok, 0, 0], [30, 0, side_ok]])
    line = np.array([[40, 0, 0], [41, 0, 0], [42, 0, 0]])  # collinear: zero area
    polygons = [POLYGONS[0], tiny, small, line, POLYGONS[1]]
    nav = parse_navmesh(write_navmesh(polygons, flags=[1, 1, 1, 1, 0]), "filter.navmesh")
    assert len(nav.polygons) == 2
    np.testing.assert_array_equal(nav.polygons[1], small.astype(np.float32))
    assert nav.area == pytest.approx(1.0 + side_ok**2 / 2, rel=1e-5)
    assert set(nav.triangle_polygon.tolist()) == {0, 1}


def test_off_mesh_connections_are_skipped():
    data = bytearray(write_navmesh(POLYGONS[:3]))
    off = _tile_offsets(bytes(data))
    data[off["polys"] + 32 * 1 + 31] = 1 << 6  # polygon 1 becomes an off-mesh connection
    nav = parse_navmesh(bytes(data), "offmesh.navmesh")
    assert len(nav.polygons) == 2
    assert nav.area == pytest.approx(AREAS[0] + AREAS[2], rel=1e-6)


def test_zero_tile_header_ends_the_list():
    """habitat-sim stops at a tile with tileRef 0, even if numTiles says more."""
    data = bytearray(write_navmesh(POLYGONS) + bytes(8))
    struct.pack_into("<i", data, 8, 2)
    nav = parse_navmesh(bytes(data), "end-marker.navmesh")
    assert len(nav.polygons) == len(POLYGONS)


def test_version_2_ignores_a_decoy_in_the_settings():
    """A settings block that spells the tile magic must not be taken for the tile."""
    data = bytearray(write_navmesh(POLYGONS, version=2, settings_size=64))
    struct.pack_into("<Ii4s", data, 48, 5, 100, b"VAND")  # fake tile header, 100 bytes
    nav = parse_navmesh(bytes(data), "decoy.navmesh")
    assert len(nav.polygons) == len(POLYGONS)
    assert nav.area == pytest.approx(AREAS.sum(), rel=1e-6)


# --------------------------------------------------------------------------- bad input


def _patch(fmt: str, offset, *values):
    """A mutation writing ``values`` at ``offset`` (an int, or a key of _tile_offsets + delta)."""

    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        at = offset if isinstance(offset, int) else _tile_offsets(data)[offset[0]] + offset[1]
        struct.pack_into(fmt, out, at, *values)
        return bytes(out)

    return mutate


def _written(**kwargs):
    return lambda data: write_navmesh(**kwargs)


LINE = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]])
BAD_INPUTS = {
    # case: (mutation of a valid one-tile version-1 file, phrase in the message)
    "empty": (lambda d: b"", "empty"),
    "short": (lambda d: d[:20], "too short"),
    "wrong-magic": (lambda d: b"glTF" + d[4:], "magic b'gltf'"),
    "version-3": (_patch("<i", 4, 3), "version 3"),
    "negative-tiles": (_patch("<i", 8, -1), "negative tile count"),
    "missing-tile": (_patch("<i", 8, 2), "truncated"),
    "truncated-tile": (lambda d: d[:-10], "truncated tile 0"),
    "tile-magic": (_patch("<4s", 48, b"XXXX"), "bad tile magic b'xxxx'"),
    "tile-version": (_patch("<i", 52, 6), "tile version 6"),
    "counts-overrun": (_patch("<i", 48 + 24, 1000), "overrun"),
    "vertex-index": (_patch("<H", ("polys", 4), 999), "vertex index out of range"),
    "detail-index": (_patch("<B", ("detail_tris", 0), 60), "detail vertex index out of range"),
    "nan-vertex": (_patch("<f", ("verts", 4), float("nan")), "nan"),
    "inf-vertex": (_patch("<f", ("verts", 0), float("inf")), "infinite"),
    "zero-area": (_written(polygons=[LINE, LINE + 1]), "no navigable area"),
    "not-walkable": (_written(polygons=POLYGONS[:2], flags=0), "no navigable area"),
    "v2-no-tile": (lambda d: _patch("<i", 4, 2)(d[:40]) + bytes(64), "no detour tile"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(tmp_path, case):
    mutate, phrase = BAD_INPUTS[case]
    path = tmp_path / f"{case}.navmesh"
    path.write_bytes(mutate(write_navmesh(POLYGONS[:2])))
    with pytest.raises(SceneFormatError) as info:
        read_navmesh(path)
    message = str(info.value)
    assert path.name in message
    assert phrase in message.lower(), message


def test_empty_bytes_are_refused():
    with pytest.raises(SceneFormatError, match="empty"):
        parse_navmesh(b"", "nothing.navmesh")


# --------------------------------------------------------------------------- hostile files


def _count_tile_steps(monkeypatch) -> list[int]:
    """Count the steps along tile chains the version-2 tile search takes (one call a tile header)."""
    from renderers.sources import navmesh as module

    calls = [0]
    real = module.next_tile

    def counting(data, offset):
        calls[0] += 1
        return real(data, offset)

    monkeypatch.setattr(module, "next_tile", counting)
    return calls


def test_first_tile_search_is_linear_in_the_file(monkeypatch):
    """Many tiny tiles, every one a candidate whose chain misses the end of the file by one byte:
    each tile header is stepped over once, not once per candidate before it (that was quadratic:
    a 240 KB file took 55 s). Timing figures: benchmarks/navmesh.py."""
    calls = _count_tile_steps(monkeypatch)
    steps = {}
    for tiles in (800, 4000):  # about 10 KB and 48 KB
        calls[0] = 0
        with pytest.raises(SceneFormatError, match="tile 0: 4 bytes, too short"):
            parse_navmesh(write_tile_chain(tiles), "chain.navmesh")
        steps[tiles] = calls[0]
    assert steps[800] <= 2 * 800 + 2 and steps[4000] <= 2 * 4000 + 2, steps
    assert steps[4000] < 6 * steps[800], steps  # 5x the file, about 5x the work (quadratic: 25x)


def test_version_2_chain_to_an_end_marker_is_preferred():
    """A chain that stops at a tileRef-0 header in the file's last 8 bytes ends the file too."""
    data = bytearray(write_navmesh(POLYGONS, version=2, settings_size=64, tiles=2) + bytes(8))
    struct.pack_into("<i", data, 8, 3)  # numTiles 3: two tiles and the end marker
    struct.pack_into("<Ii4s", data, 48, 5, 100, b"VAND")  # and a decoy in the settings
    nav = parse_navmesh(bytes(data), "end-marker-v2.navmesh")
    assert len(nav.polygons) == len(POLYGONS)


def test_version_2_trailing_bytes_fall_back_to_the_first_tile():
    """No chain ends at the end of the file: the first plausible tile is read (as before the fix)."""
    data = write_navmesh(POLYGONS, version=2, settings_size=80, tiles=3)
    nav = parse_navmesh(data + b"\0", "trailing.navmesh")
    assert nav.area == pytest.approx(parse_navmesh(data, "x").area)


@pytest.mark.timeout(30)  # a FIFO opened for reading would block here
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_navmesh_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / "scene.navmesh"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(SceneFormatError, match="is a folder" if kind == "folder" else "is not a regular file") as info:
        read_navmesh(path)
    assert str(path) in str(info.value)
