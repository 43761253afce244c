"""Write Recast/Detour navmesh files the way habitat-sim's ``saveNavMesh`` does.

The layout (see :mod:`renderers.sources.navmesh` for the field list) is written
here from the format itself, not from the reader's tables, so a round trip
checks both against Detour's layout. Each polygon becomes one Detour ground
polygon (at most 6 vertices, walk flag set unless ``flags`` says otherwise);
links are zero-filled (Detour rebuilds them in ``addTile``), there is no BV
tree and no off-mesh connection. Tiles sit at nominal grid cells ``(i, 0)``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

import numpy as np

__all__ = ["write_navmesh", "write_tile_chain"]

log = logging.getLogger(__name__)

# habitat-sim's NavMeshSettings defaults: cellSize, cellHeight, agentHeight,
# agentRadius, agentMaxClimb, agentMaxSlope, regionMinSize, regionMergeSize,
# edgeMaxLen, edgeMaxError, vertsPerPoly, detailSampleDist, detailSampleMaxError.
SETTINGS = (0.05, 0.2, 1.5, 0.1, 0.2, 45.0, 20.0, 20.0, 12.0, 1.3, 6.0, 6.0, 1.0)
DETAIL_MODES = ("fan", "centre", "none")


def write_navmesh(
    polygons: Sequence[np.ndarray],
    version: int = 1,
    settings_size: int = 64,
    tiles: int = 1,
    detail: str = "fan",
    flags: int | Sequence[int] = 1,
) -> bytes:
    """Encode polygons as a habitat-sim navmesh set.

    Parameters
    ----------
    polygons : sequence of (n_i, 3) float
        Convex polygons, 3 <= n_i <= 6, Y-up world coordinates.
    version : {1, 2}
        Set version; 2 writes a ``settings_size``-byte NavMeshSettings block
        after the header (13 floats, the bounds, then bools, cut or zero-padded).
    tiles : int
        Number of Detour tiles; the polygons are split in order, in contiguous runs.
    detail : {"fan", "centre", "none"}
        The detail mesh: a fan over the polygon's own vertices; a fan around one
        extra detail vertex at the polygon's centroid; or no detail meshes at all
        (``detailMeshCount = 0``).
    flags : int or sequence of int
        Detour poly flags, one for all polygons or one per polygon (1 = walk).

    Returns
    -------
    bytes
        The file's contents.
    """
    polygons = [np.asarray(p, dtype=np.float32).reshape(-1, 3) for p in polygons]
    if not 1 <= tiles <= len(polygons):
        raise ValueError(f"tiles must be in 1..{len(polygons)}, got {tiles}")
    if detail not in DETAIL_MODES:
        raise ValueError(f"detail must be one of {DETAIL_MODES}, got {detail!r}")
    if any(not 3 <= len(p) <= 6 for p in polygons):
        raise ValueError("Detour polygons have 3 to 6 vertices")
    flags = [flags] * len(polygons) if isinstance(flags, int) else list(flags)

    runs = np.array_split(np.arange(len(polygons)), tiles)
    max_polys = max(len(r) for r in runs)
    poly_bits = (max_polys - 1).bit_length()  # log2 of the next power of two
    tile_bits = (tiles - 1).bit_length()
    everything = np.concatenate(polygons)
    lo, hi = everything.min(axis=0), everything.max(axis=0)

    out = [
        struct.pack(
            "<4sii3fffii", b"TESM", version, tiles, *lo,
            float(hi[0] - lo[0]), float(hi[2] - lo[2]), tiles, max_polys,
        )
    ]
    if version >= 2:
        settings = struct.pack("<13f6f3?", *SETTINGS, *lo, *hi, True, True, True)
        out.append(settings[:settings_size].ljust(settings_size, b"\0"))
    for i, run in enumerate(runs):
        data = _tile_data([polygons[j] for j in run], [flags[j] for j in run], i, detail)
        tile_ref = (1 << (poly_bits + tile_bits)) | (i << poly_bits)  # salt 1, tile i, poly 0
        out.append(struct.pack("<Ii", tile_ref, len(data)) + data)
    return b"".join(out)


def _tile_data(polygons: list[np.ndarray], flags: list[int], x: int, detail: str) -> bytes:
    """One tile's Detour data: dtMeshHeader, verts, polys, links, detail mesh."""
    verts: dict[tuple, int] = {}  # shared vertices, as Detour stores them
    poly_records, detail_records, detail_verts, detail_tris = [], [], [], []
    for poly, flag in zip(polygons, flags):
        idx = [verts.setdefault(tuple(v.tolist()), len(verts)) for v in poly]
        n = len(idx)
        pad = [0] * (6 - n)
        # firstLink, verts[6], neis[6] (0: no neighbour), flags, vertCount, area 0 | type 0
        poly_records.append(struct.pack("<I6H6HHBB", 0, *idx, *pad, *([0] * 6), flag, n, 0))
        if detail == "centre":  # detail vertex n is the centroid
            tris = [(n, k, (k + 1) % n) for k in range(n)]
            extra = [poly.astype(np.float64).mean(axis=0)]
        else:
            tris = [(0, k, k + 1) for k in range(1, n - 1)]
            extra = []
        # vertBase, triBase, vertCount (extra vertices only), triCount, padding
        detail_records.append(
            struct.pack("<IIBBxx", len(detail_verts), len(detail_tris), len(extra), len(tris))
        )
        detail_verts += extra
        detail_tris += tris
    if detail == "none":
        detail_records, detail_tris = [], []

    v = np.array(list(verts), dtype=np.float32).reshape(-1, 3)
    max_links = sum(len(p) for p in polygons)
    header = struct.pack(
        "<4si3iI9i3f3f3ff", b"VAND", 7, x, 0, 0, 0,
        len(polygons), len(v), max_links, len(detail_records), len(detail_verts),
        len(detail_tris), 0, 0, len(polygons),  # bvNodeCount, offMeshConCount, offMeshBase
        1.5, 0.1, 0.2, *v.min(axis=0), *v.max(axis=0), 1 / 0.05,
    )
    return b"".join(
        [
            header,
            v.astype("<f4").tobytes(),
            *poly_records,
            bytes(12 * max_links),  # dtLink: ref, next, edge, side, bmin, bmax
            *detail_records,
            np.asarray(detail_verts, dtype="<f4").reshape(-1, 3).tobytes(),
            bytes(b for t in detail_tris for b in (*t, 0)),  # 3 indices + edge flags
        ]
    )


def write_tile_chain(tiles: int, *, tail: bytes = b"\0", settings_size: int = 64) -> bytes:
    """A hostile version-2 set: ``tiles`` minimal tiles of 12 bytes (tile header, then only the Detour magic).

    Every tile is a candidate of the reader's search for the first tile after
    the settings block, and ``tail`` (a byte after the last tile) keeps every
    candidate's chain from ending at the end of the file, so a search that
    walks each candidate's chain on its own is quadratic in the file. The file
    is not a valid navmesh (its tiles are too short for a dtMeshHeader).
    """
    head = struct.pack("<4sii3fffii", b"TESM", 2, tiles, 0.0, 0.0, 0.0, 1.0, 1.0, tiles, 1)
    return head + bytes(settings_size) + struct.pack("<Ii4s", 1, 4, b"VAND") * tiles + tail
