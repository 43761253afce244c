"""Recast/Detour navmeshes as habitat-sim saves them, read without habitat-sim.

A ``.navmesh`` file is what ``PathFinder::saveNavMesh`` writes (all
little-endian, Detour built with 32-bit ``dtPolyRef``)::

    NavMeshSetHeader        40 bytes
        int32   magic       'M'<<24|'S'<<16|'E'<<8|'T': the bytes "TESM" on disk
        int32   version     1, or 2 in newer habitat-sim
        int32   numTiles
        dtNavMeshParams     float orig[3], tileWidth, tileHeight; int32 maxTiles, maxPolys
    NavMeshSettings         version 2 only; its size differs between releases
    numTiles times:
        uint32  tileRef     0 ends the list, as does dataSize 0
        int32   dataSize
        dataSize bytes of Detour tile data (dtNavMesh::addTile's layout):
            dtMeshHeader    100 bytes, magic 'DNAV' ("VAND" on disk), version 7
            float32         verts[vertCount][3]
            dtPoly          polys[polyCount], 32 bytes each
            dtLink          links[maxLinkCount], 12 bytes each (ignored)
            dtPolyDetail    detailMeshes[detailMeshCount], 12 bytes each
            float32         detailVerts[detailVertCount][3]
            uint8           detailTris[detailTriCount][4]: 3 indices + edge flags
            dtBVNode[bvNodeCount], dtOffMeshConnection[offMeshConCount] (ignored)

Every section size is already a multiple of 4, so Detour's ``dtAlign4``
padding adds nothing.

**Version 2 settings.** habitat-sim's ``NavMeshSettings`` struct (13 floats,
then, in later releases, the navmesh bounds as two vec3 and several bools with
padding) has no size field and has changed size between releases. Rather than
hard-coding one release's size, the reader looks for the first tile after byte
40: a tile header whose data starts with the Detour magic ``b"VAND"``, with a
non-zero tileRef and a dataSize inside the file, preferring the first one from
which the chain of ``numTiles`` tiles ends exactly at the end of the file
(habitat writes nothing after the last tile). A float in the settings that
happens to spell ``VAND`` cannot pass that test. The search is linear in the
file: where each tile header's chain leads is computed once and shared by every
candidate (``benchmarks/navmesh.py``: walking each candidate's chain on its own
took 55 s on a crafted 240 KB file).

**Triangles and area.** Each ground polygon's surface is its Detour detail
mesh: detail triangle index ``k < poly.vertCount`` names the polygon's own
vertex ``verts[poly.verts[k]]``, a larger one the detail vertex
``detailVerts[vertBase + k - poly.vertCount]``. A polygon without a detail mesh
(index ``>= detailMeshCount``) is fan-triangulated. Like habitat-sim's
``removeZeroAreaPolys``, polygons whose detail area is below
:data:`MIN_POLYGON_AREA` or that lack the walk flag are not navigable and are
left out; off-mesh connections (polygon type 1) are skipped. The result's
``area`` is then habitat-sim's ``PathFinder.navigable_area``.

Vertices are already in the Y-up world frame of docs/design.md; nothing is rotated.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from renderers.scene import NavMesh, SceneFormatError, triangle_areas
from renderers.sources.base import read_bytes

__all__ = ["AT_END_MARKER", "AT_EOF", "BROKEN", "MIN_POLYGON_AREA", "next_tile", "parse_navmesh", "read_navmesh"]

log = logging.getLogger(__name__)

Fail = Callable[[str], NoReturn]  # raises SceneFormatError naming the file

SET_MAGIC = b"TESM"  # int32 'MSET' little-endian
SET_VERSIONS = (1, 2)
TILE_MAGIC = b"VAND"  # int32 'DNAV' little-endian
TILE_VERSION = 7  # DT_NAVMESH_VERSION

# magic, version, numTiles, orig[3], tileWidth, tileHeight, maxTiles, maxPolys
SET_HEADER = struct.Struct("<4sii3fffii")
# tileRef (32-bit dtTileRef), dataSize
TILE_HEADER = struct.Struct("<Ii")
# dtMeshHeader: magic, version, x, y, layer, userId, nine counts (polyCount,
# vertCount, maxLinkCount, detailMeshCount, detailVertCount, detailTriCount,
# bvNodeCount, offMeshConCount, offMeshBase), walkableHeight, walkableRadius,
# walkableClimb, bmin[3], bmax[3], bvQuantFactor.
MESH_HEADER = struct.Struct("<4si3iI9i3f3f3ff")

MAX_VERTS_PER_POLY = 6  # DT_VERTS_PER_POLYGON
POLY_DTYPE = np.dtype(
    [
        ("first_link", "<u4"),
        ("verts", "<u2", (MAX_VERTS_PER_POLY,)),
        ("neis", "<u2", (MAX_VERTS_PER_POLY,)),
        ("flags", "<u2"),
        ("vert_count", "u1"),
        ("area_and_type", "u1"),  # area in the low 6 bits, type in the top 2
    ]
)
DETAIL_DTYPE = np.dtype(
    {
        "names": ["vert_base", "tri_base", "vert_count", "tri_count"],
        "formats": ["<u4", "<u4", "u1", "u1"],
        "offsets": [0, 4, 8, 9],
        "itemsize": 12,
    }
)
# Bytes per item of each tile section, in file order, keyed by its count.
SECTIONS = (
    ("vertCount", 12),  # float[3]
    ("polyCount", POLY_DTYPE.itemsize),  # dtPoly, 32
    ("maxLinkCount", 12),  # dtLink with a 32-bit ref
    ("detailMeshCount", DETAIL_DTYPE.itemsize),  # dtPolyDetail, 12
    ("detailVertCount", 12),  # float[3]
    ("detailTriCount", 4),  # uint8[4]
    ("bvNodeCount", 16),  # dtBVNode
    ("offMeshConCount", 36),  # dtOffMeshConnection
)
assert POLY_DTYPE.itemsize == 32 and MESH_HEADER.size == 100 and SET_HEADER.size == 40

POLYTYPE_OFFMESH = 1  # DT_POLYTYPE_OFFMESH_CONNECTION
POLYFLAGS_WALK = 0x01  # habitat-sim's walkable flag
# habitat-sim disables polygons whose detail area is below this (m^2).
MIN_POLYGON_AREA = 1e-5


def read_navmesh(path: str | Path) -> NavMesh:
    """Read a habitat-sim ``.navmesh`` file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    NavMesh
        Navigable polygons and their triangles, Y-up world frame.

    Raises
    ------
    SceneFormatError
        The file is missing, not a regular file (a FIFO, a device: refused
        without reading), malformed, or has no navigable area.
    """
    return parse_navmesh(read_bytes(path), str(path))


def parse_navmesh(data: bytes, name: str) -> NavMesh:
    """Parse the bytes of a navmesh file.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        The file's name or path, for messages and ``NavMesh.source``.

    Returns
    -------
    NavMesh
        ``polygons``: list of (n_i, 3) float32; ``triangles``: (T, 3, 3) float32;
        ``triangle_polygon``: (T,) int32 index into ``polygons``.
    """

    def fail(problem: str) -> NoReturn:
        raise SceneFormatError(name, problem)

    data = bytes(data)
    if not data:
        fail("file is empty")
    if len(data) >= 4 and data[:4] != SET_MAGIC:
        fail(
            f"not a Recast/Detour navmesh: magic {data[:4]!r}, expected {SET_MAGIC!r} "
            "('MSET' as a little-endian int32)"
        )
    if len(data) < SET_HEADER.size:
        fail(f"too short for the {SET_HEADER.size}-byte navmesh set header ({len(data)} bytes)")
    _, version, num_tiles, *_ = SET_HEADER.unpack_from(data)
    if version not in SET_VERSIONS:
        fail(f"unsupported navmesh set version {version} (habitat-sim writes 1 or 2)")
    if num_tiles < 0:
        fail(f"negative tile count {num_tiles}")
    if num_tiles == 0:
        fail("the set has no tiles, so no navigable area")

    offset = SET_HEADER.size if version == 1 else _find_first_tile(data, num_tiles, fail)
    tiles: list[_Tile] = []
    for i in range(num_tiles):
        if offset + TILE_HEADER.size > len(data):
            fail(f"truncated: the file ends before tile {i} of {num_tiles}")
        tile_ref, size = TILE_HEADER.unpack_from(data, offset)
        if tile_ref == 0 or size == 0:  # habitat-sim stops here too
            break
        start = offset + TILE_HEADER.size
        if size < 0:
            fail(f"tile {i} has a negative dataSize {size}")
        if start + size > len(data):
            fail(
                f"truncated tile {i}: dataSize {size} at byte {start} runs past the end "
                f"of the file ({len(data)} bytes)"
            )
        tiles.append(_parse_tile(data, start, size, i, fail))
        offset = start + size
    if not tiles:
        fail("no tiles before the end-of-list marker, so no navigable area")

    # Concatenate the tiles' ground polygons, then keep the navigable ones.
    polygons = [p for t in tiles for p in t.polygons]
    first = np.cumsum([0] + [len(t.polygons) for t in tiles])
    triangles = np.concatenate([t.triangles for t in tiles])  # (T, 3, 3)
    tri_poly = np.concatenate([t.triangle_polygon + f for t, f in zip(tiles, first)])  # (T,)
    walkable = np.concatenate([t.walkable for t in tiles])  # (P,)
    poly_area = np.bincount(tri_poly, weights=triangle_areas(triangles), minlength=len(polygons))
    keep = walkable & (poly_area >= MIN_POLYGON_AREA)  # (P,)
    if not keep.any():
        fail(
            f"no navigable area: none of {len(polygons)} polygons is walkable with at "
            f"least {MIN_POLYGON_AREA:g} m^2 (total {poly_area.sum():.3g} m^2)"
        )
    new_index = np.cumsum(keep) - 1  # (P,) index among kept polygons
    tri_keep = keep[tri_poly]
    navmesh = NavMesh(
        polygons=[p for p, k in zip(polygons, keep) if k],
        triangles=np.ascontiguousarray(triangles[tri_keep], dtype=np.float32),
        triangle_polygon=new_index[tri_poly[tri_keep]].astype(np.int32),
        source=name,
    )
    log.debug(
        "%s: navmesh v%d, %d tiles, %d of %d polygons navigable, %.2f m^2",
        name, version, len(tiles), int(keep.sum()), len(polygons), navmesh.area,
    )
    return navmesh


def _find_first_tile(data: bytes, num_tiles: int, fail: Fail) -> int:
    """Offset of the first tile header after a version-2 settings block.

    Prefers the first candidate whose tile chain ends exactly at the end of the
    file; otherwise returns the first plausible one, so that parsing reports
    what is wrong with it.

    Linear in the file: every candidate's chain is walked through one shared
    table of where each tile header leads (:class:`_Chains`), so a tile is
    stepped over once however many candidates' chains pass through it (a file
    of many tiny tiles, every one a candidate, made this quadratic).
    """
    chains = _Chains(data)
    plausible = None
    at = data.find(TILE_MAGIC, SET_HEADER.size + TILE_HEADER.size)
    while at >= 0:
        offset = at - TILE_HEADER.size
        tile_ref, size = TILE_HEADER.unpack_from(data, offset)
        if tile_ref != 0 and size > 0:
            if chains.ends_at_eof(offset, num_tiles):
                return offset
            if plausible is None:
                plausible = offset
        at = data.find(TILE_MAGIC, at + 1)
    if plausible is not None:
        return plausible
    fail(f"version 2 navmesh: no Detour tile ({TILE_MAGIC!r}) found after the settings block")


# How a chain of tiles from an offset stops (see _Chains).
AT_EOF, AT_END_MARKER, BROKEN = "eof", "end-marker", "broken"


def next_tile(data: bytes, offset: int) -> int | str:
    """One step along a tile chain: the offset after the tile at ``offset``, or how the chain stops there.

    ``AT_EOF``: ``offset`` is the end of the file; ``AT_END_MARKER``: a
    ``tileRef 0`` / ``dataSize 0`` header that is the last 8 bytes of the file;
    ``BROKEN``: anything else that is not a whole tile starting with the magic.

    The version-2 tile search steps along chains with this function only,
    looked up in this module at each step, once per tile header (memoised):
    ``tests/renderers/test_navmesh.py`` counts its calls (``monkeypatch.setattr`` on
    this module) to check that the search stays linear in the file.
    """
    if offset == len(data):
        return AT_EOF
    if offset + TILE_HEADER.size > len(data):
        return BROKEN
    tile_ref, size = TILE_HEADER.unpack_from(data, offset)
    if tile_ref == 0 or size == 0:
        return AT_END_MARKER if offset + TILE_HEADER.size == len(data) else BROKEN
    start = offset + TILE_HEADER.size
    if size < 0 or start + size > len(data) or data[start : start + 4] != TILE_MAGIC:
        return BROKEN
    return start + size


class _Chains:
    """For each tile header offset: how many whole tiles follow from it, and how the chain stops.

    Each offset is stepped over once (memoised), so answering for every
    candidate of :func:`_find_first_tile` is linear in the file.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._memo: dict[int, tuple[int, str]] = {}  # offset -> (tiles, how it stops)

    def walk(self, offset: int) -> tuple[int, str]:
        path = []
        while offset not in self._memo:
            step = next_tile(self.data, offset)
            if isinstance(step, str):
                self._memo[offset] = (0, step)
                break
            path.append(offset)
            offset = step  # > offset: a chain never loops
        tiles, stop = self._memo[offset]
        for o in reversed(path):
            tiles += 1
            self._memo[o] = (tiles, stop)
        return tiles, stop

    def ends_at_eof(self, offset: int, num_tiles: int) -> bool:
        """Whether ``num_tiles`` tiles read from ``offset``, as :func:`parse_navmesh` reads them, end at the end of the file.

        They do when exactly ``num_tiles`` tiles reach the end, or fewer tiles
        reach an end-of-list header that is the file's last 8 bytes.
        """
        tiles, stop = self.walk(offset)
        return (stop == AT_EOF and tiles == num_tiles) or (stop == AT_END_MARKER and tiles < num_tiles)


@dataclass
class _Tile:
    """One tile's ground polygons, before the navigability filter.

    Attributes
    ----------
    polygons : list of (n_i, 3) float32
    triangles : (T, 3, 3) float32
    triangle_polygon : (T,) int64, index into ``polygons``
    walkable : (P,) bool, the walk flag of each polygon
    """

    polygons: list[np.ndarray]
    triangles: np.ndarray
    triangle_polygon: np.ndarray
    walkable: np.ndarray


def _parse_tile(data: bytes, start: int, size: int, index: int, fail: Fail) -> _Tile:
    """Read the Detour tile whose ``size`` bytes begin at ``start``."""

    def tile_fail(problem: str) -> NoReturn:
        fail(f"tile {index}: {problem}")

    if size < MESH_HEADER.size:
        tile_fail(f"{size} bytes, too short for the {MESH_HEADER.size}-byte dtMeshHeader")
    magic, version, *fields = MESH_HEADER.unpack_from(data, start)
    if magic != TILE_MAGIC:
        tile_fail(f"bad tile magic {magic!r}, expected {TILE_MAGIC!r} ('DNAV' little-endian)")
    if version != TILE_VERSION:
        tile_fail(f"unsupported Detour tile version {version} (expected {TILE_VERSION})")
    counts = dict(
        zip(
            ("polyCount", "vertCount", "maxLinkCount", "detailMeshCount", "detailVertCount",
             "detailTriCount", "bvNodeCount", "offMeshConCount"),
            fields[4:12],
        )
    )
    negative = [f"{k}={v}" for k, v in counts.items() if v < 0]
    if negative:
        tile_fail(f"negative counts {', '.join(negative)}")

    # Byte offset of each section inside the tile, in file order.
    offsets, end = {}, MESH_HEADER.size
    for key, item_size in SECTIONS:
        offsets[key] = end
        end += counts[key] * item_size
    if end > size:
        listed = ", ".join(f"{k}={v}" for k, v in counts.items() if v)
        tile_fail(f"counts overrun the tile: {listed} need {end} bytes, the tile has {size}")

    def section(key: str, dtype) -> np.ndarray:
        return np.frombuffer(data, dtype, counts[key], start + offsets[key])

    n_verts, n_detail_verts = counts["vertCount"], counts["detailVertCount"]
    verts = section("vertCount", np.dtype(("<f4", 3))).astype(np.float32)  # (V, 3)
    polys = section("polyCount", POLY_DTYPE)  # (P,)
    detail = section("detailMeshCount", DETAIL_DTYPE)  # (D,)
    detail_verts = section("detailVertCount", np.dtype(("<f4", 3))).astype(np.float32)
    detail_tris = section("detailTriCount", np.dtype(("u1", 4)))  # (DT, 4)
    for what, v in (("vertices", verts), ("detail vertices", detail_verts)):
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            tile_fail(f"{int(bad.sum())} of {len(v)} {what} have NaN or infinite coordinates")

    # Ground polygons (skip off-mesh connections) and their vertex indices.
    ground = np.flatnonzero((polys["area_and_type"] >> 6) != POLYTYPE_OFFMESH)  # (G,)
    nv = polys["vert_count"].astype(np.int64)  # (P,)
    too_many = ground[nv[ground] > MAX_VERTS_PER_POLY]
    if len(too_many):
        j = int(too_many[0])
        tile_fail(f"polygon {j} has {nv[j]} vertices, more than Detour's {MAX_VERTS_PER_POLY}")
    pv = polys["verts"].astype(np.int64)  # (P, 6)
    used = np.arange(MAX_VERTS_PER_POLY) < nv[:, None]  # (P, 6)
    out_of_range = used & (pv >= n_verts)
    out_of_range[np.setdiff1d(np.arange(len(polys)), ground)] = False
    if out_of_range.any():
        j, k = (int(x[0]) for x in np.nonzero(out_of_range))
        tile_fail(
            f"polygon {j} refers to vertex {pv[j, k]} but the tile has {n_verts} "
            "(vertex index out of range)"
        )

    # Triangles from the detail mesh where there is one, a fan otherwise.
    with_detail = ground[ground < counts["detailMeshCount"]]
    without = ground[ground >= counts["detailMeshCount"]]
    if len(without):
        log.debug("tile %d: %d polygons without a detail mesh: fans", index, len(without))

    pd = detail[with_detail]
    tri_count = pd["tri_count"].astype(np.int64)  # (Gd,)
    d_poly = np.repeat(with_detail, tri_count)  # (Td,) polygon of each detail triangle
    d_tri = np.repeat(pd["tri_base"].astype(np.int64), tri_count) + _ramps(tri_count)  # (Td,)
    if (d_tri >= counts["detailTriCount"]).any():
        j = int(d_poly[np.argmax(d_tri >= counts["detailTriCount"])])
        tile_fail(
            f"polygon {j}'s detail triangles run past detailTriCount="
            f"{counts['detailTriCount']} (detail triangle index out of range)"
        )
    t = detail_tris[d_tri, :3].astype(np.int64)  # (Td, 3) detail-local indices
    n = nv[d_poly][:, None]  # (Td, 1)
    on_poly = t < n  # (Td, 3) a polygon vertex, else a detail vertex
    extra = t - n  # (Td, 3) index among the polygon's detail vertices
    d_base = np.repeat(pd["vert_base"].astype(np.int64), tri_count)[:, None]
    d_count = np.repeat(pd["vert_count"].astype(np.int64), tri_count)[:, None]
    bad = ~on_poly & ((extra >= d_count) | (d_base + extra >= n_detail_verts))
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        tile_fail(
            f"a detail triangle of polygon {int(d_poly[row])} uses index {t[row].tolist()} "
            f"beyond its vertices (detail vertex index out of range)"
        )
    corner = np.where(on_poly, pv[d_poly[:, None], np.minimum(t, MAX_VERTS_PER_POLY - 1)],
                      n_verts + d_base + extra)  # (Td, 3) into verts ++ detail_verts
    all_verts = np.concatenate([verts, detail_verts])  # (V + DV, 3)

    fan_count = np.maximum(nv[without] - 2, 0)
    f_poly = np.repeat(without, fan_count)  # (Tf,)
    k = _ramps(fan_count) + 1  # (Tf,)
    fan = np.stack([pv[f_poly, 0], pv[f_poly, k], pv[f_poly, k + 1]], axis=1)  # (Tf, 3)

    tri_poly = np.concatenate([d_poly, f_poly])
    corners = np.concatenate([corner, fan])
    order = np.argsort(tri_poly, kind="stable")
    ground_index = np.cumsum(np.isin(np.arange(len(polys)), ground)) - 1  # (P,)
    return _Tile(
        polygons=[verts[pv[j, : nv[j]]] for j in ground],
        triangles=all_verts[corners[order]].reshape(-1, 3, 3),
        triangle_polygon=ground_index[tri_poly[order]],
        walkable=(polys["flags"][ground] & POLYFLAGS_WALK) != 0,
    )


def _ramps(counts: np.ndarray) -> np.ndarray:
    """``[0..c0-1, 0..c1-1, ...]`` for (N,) non-negative counts; (sum,) int64."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)

