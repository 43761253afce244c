"""Procedural indoor apartments: the embedded default dataset (source ``"synthetic"``).

:func:`build_apartment` turns ``(seed, preset)`` into a furnished, textured
apartment, deterministically (the same arguments give bit-identical arrays) and
in under a second, so the pipeline runs and is tested without any dataset::

    from renderers.sources import load_scene
    scene = load_scene("synthetic", "large/7", scene_id="apt-7")   # about 1 M triangles

World frame as everywhere: metres, right-handed, Y up, floor at ``y = 0``.

* **Rooms** split a rectangle (interiors 2.5-6 m a side, ceilings 2.4-3.0 m).
  Walls are ``WALL`` thick: a room's interior is its plan cell shrunk by
  ``WALL / 2``. Doorways along a random spanning tree (plus maybe one more)
  join all rooms; each is lined with two jambs, the lintel's underside and a
  threshold, so the apartment is closed seen from inside: every ray from
  inside hits something. It is not meant to be seen from outside.
* **Furniture** (beds, sofas, tables, desks, shelves of books, cabinets,
  crates, lamps, plants, stools) is made of closed axis-aligned boxes and
  prisms, kept apart, and out of the ``DOOR_CLEAR`` zone before each doorway.
* **Posters and rugs** are quads ``OFFSET`` off a wall or the floor.

**Winding**: every triangle is counter-clockwise seen from the side a camera
sees it from: floors, walls and ceilings face into their room, jambs into their
doorway, furniture outwards, posters and rugs away from their wall or floor.

**Tessellation**: every rectangle is a grid of near-square cells, whose edge is
solved per scene so that the triangle count lands on the preset's target.

**Textures** (plaster, wallpaper, brick, tiles, parquet, carpet, wood, fabric,
metal, ceramic, foliage; one image per poster and rug) are drawn with numpy and
cv2 from seeds, cached by ``(kind, seed, size)``. Tiling kinds are seamless,
mapped in metres (world-anchored along each surface, plus a random offset)
with ``Wrap.REPEAT``; posters and rugs span ``0..1`` with ``Wrap.CLAMP_TO_EDGE``.

``scene.extras`` describes the layout: ``rooms`` (``min``/``max`` of each
interior, floor to ceiling), ``doors`` (``min``/``max`` of each opening and the
two ``rooms`` it joins), ``obstacles`` (``min``/``max`` of each piece of
furniture, its ``room`` and ``kind``), ``preset``, ``seed`` and ``edge`` (the
cell edge used, metres).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass

import numpy as np

from renderers.scene import Scene, SceneFormatError
from renderers.sources.base import SceneSource, register_source
from renderers.sources.procedural_textures import Palette

__all__ = ["PRESETS", "Preset", "SyntheticSource", "build_apartment", "grid_mesh"]

log = logging.getLogger(__name__)

# Sizes and tolerances, in metres.
WALL = 0.10  # wall thickness
ROOM_SIZE = (2.5, 6.0)  # interior width and depth of a room
CEILING = (2.4, 3.0)  # ceiling height
DOOR_WIDTH = 0.9
DOOR_HEIGHT = (2.0, 2.1)
DOOR_MARGIN = 0.2  # from a doorway to a room's corner, and beside it kept clear
DOOR_CLEAR = 1.0  # depth of free floor kept before each doorway
FURNITURE_GAP = 0.1  # between two pieces of furniture
WALL_GAP = 0.02  # between a wall and a piece standing against it
OFFSET = 0.01  # posters and rugs sit this far off their wall or floor
SEAM = 1e-3  # surfaces that meet overlap this much, so no ray slips through a seam
MAX_COVER = 0.45  # share of a room's floor that furniture may take


@dataclass(frozen=True)
class Preset:
    """How big and detailed an apartment is."""

    rooms: tuple[int, int]  # inclusive range of the number of rooms
    triangles: int  # target triangle count: the cell edge is solved for it
    texture_size: int  # side of each texture in pixels (a power of two)
    furniture: float  # pieces of furniture per square metre of floor
    sides: int  # facets of the prisms (lamps, pots, stools)


PRESETS: dict[str, Preset] = {
    "small": Preset(rooms=(2, 3), triangles=30_000, texture_size=128, furniture=0.2, sides=12),
    "medium": Preset(rooms=(4, 6), triangles=200_000, texture_size=256, furniture=0.25, sides=16),
    "large": Preset(rooms=(7, 9), triangles=1_000_000, texture_size=512, furniture=0.3, sides=24),
}

# ----------------------------------------------------------------------------- geometry


def grid_mesh(origins, axes_u, axes_v, nu, nv):
    """Tessellate R rectangles into grids of cells, all at once.

    Rectangle ``r`` spans ``origins[r] + s * axes_u[r] + t * axes_v[r]`` for
    ``s, t`` in [0, 1], cut into ``nu[r] x nv[r]`` cells of two triangles. Read
    as an image (u to the right, v down), its triangles are counter-clockwise
    seen from the front, the side ``axes_v x axes_u`` points to.

    Parameters
    ----------
    origins, axes_u, axes_v : (R, 3) float
    nu, nv : (R,) int, >= 1

    Returns
    -------
    vertices : (V, 3) float64
        ``V = sum((nu + 1) * (nv + 1))``, rectangle after rectangle.
    faces : (F, 3) int64
        ``F = 2 * sum(nu * nv)``, rectangle after rectangle.
    st : (V, 2) float64
        Each vertex's ``(s, t)`` in its rectangle.
    vertex_rect, face_rect : (V,) and (F,) int64
        The rectangle of each vertex and face.
    """
    nu, nv = np.asarray(nu, np.int64), np.asarray(nv, np.int64)
    n_vert, n_cell = (nu + 1) * (nv + 1), nu * nv
    v_start = np.cumsum(n_vert) - n_vert
    vr = np.repeat(np.arange(len(nu)), n_vert)  # (V,)
    k = np.arange(n_vert.sum()) - v_start[vr]  # index within the rectangle
    st = np.stack([(k % (nu[vr] + 1)) / nu[vr], (k // (nu[vr] + 1)) / nv[vr]], axis=1)  # (V, 2)
    vertices = origins[vr] + st[:, :1] * axes_u[vr] + st[:, 1:] * axes_v[vr]  # (V, 3)

    cr = np.repeat(np.arange(len(nu)), n_cell)  # (C,)
    c = np.arange(n_cell.sum()) - (np.cumsum(n_cell) - n_cell)[cr]
    p00 = v_start[cr] + (c // nu[cr]) * (nu[cr] + 1) + c % nu[cr]  # each cell's top-left corner
    p01 = p00 + nu[cr] + 1  # the one below it
    faces = np.stack([p00, p01, p01 + 1, p00, p01 + 1, p00 + 1], axis=1).reshape(-1, 3)  # (2C, 3)
    return vertices, faces, st, vr, np.repeat(cr, 2)


# (axis, sign) of a face's normal -> (right, down): its image axes seen from the front
_FRAMES = {}
for _axis in range(3):
    for _sign in (-1, 1):
        _down = np.eye(3)[2] if _axis == 1 else -np.eye(3)[1]
        _FRAMES[_axis, _sign] = (np.cross(_sign * np.eye(3)[_axis], _down), _down)


class _Mesh:
    """Collects rectangles (tessellated at the end) and prism caps (triangle fans)."""

    def __init__(self, palette: Palette, rng: np.random.Generator) -> None:
        self.palette, self.rng = palette, rng
        # rows: origin, axis_u, axis_v (3 each), uv at the origin, uv span (2 each), material
        self.rects: list[np.ndarray] = []
        self.fans: list[tuple] = []  # vertices (n, 3), uvs (n, 2), faces (m, 3), material

    def face(self, lo, hi, axis: int, sign: int, material: int, offset=None) -> None:
        """The rectangle between corners ``lo`` and ``hi``, facing ``sign`` along ``axis``.

        Seen from the front its texture's u runs right and v down (down is -Y
        on walls, +Z on floors and ceilings); tiling textures are anchored to
        the world, shifted by ``offset`` (2,) (random if None).
        """
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        right, down = _FRAMES[axis, sign]
        origin = np.where(right + down < 0, hi, lo)
        axis_u, axis_v = right * (hi - lo), down * (hi - lo)
        metres = self.palette.metres[material]
        if metres:
            offset = self.rng.random(2) if offset is None else offset
            uv0 = np.array([origin @ right, origin @ down]) / metres + offset
            span = np.array([abs(axis_u.sum()), abs(axis_v.sum())]) / metres
        else:
            uv0, span = np.zeros(2), np.ones(2)
        self.rects.append(np.concatenate([origin, axis_u, axis_v, uv0, span, [material]]))

    def box(self, lo, hi, material: int) -> None:
        """A closed box facing outwards (without the bottom where it stands on the floor)."""
        offset = self.rng.random(2)
        for axis in range(3):
            for sign, plane in ((-1, lo[axis]), (1, hi[axis])):
                if axis == 1 and sign == -1 and lo[1] <= 0:
                    continue
                a, b = np.array(lo, np.float64), np.array(hi, np.float64)
                a[axis] = b[axis] = plane
                self.face(a, b, axis, sign, material, offset)

    def prism(self, cx, cz, r, y0, y1, material: int, sides: int) -> None:
        """A closed upright prism of ``sides`` facets around ``(cx, cz)``, facing outwards."""
        metres, off = self.palette.metres[material], self.rng.random(2)
        theta = 2 * np.pi * np.arange(sides + 1) / sides
        ring = np.stack([cx + r * np.cos(theta), cz + r * np.sin(theta)], axis=1)
        chord = float(np.linalg.norm(ring[1] - ring[0]))
        span = [chord / metres, (y1 - y0) / metres]
        for k in range(sides):  # from ring[k + 1] to ring[k]: faces outwards
            (ax, az), (bx, bz) = ring[k + 1], ring[k]
            uv0 = [off[0] + k * chord / metres, off[1] - y1 / metres]
            corner = [ax, y1, az, bx - ax, 0, bz - az, 0, y0 - y1, 0]
            self.rects.append(np.concatenate([corner, uv0, span, [material]]))
        i = np.arange(1, sides + 1)
        fan = np.stack([np.zeros(sides, np.int64), i, i % sides + 1], axis=1)  # centre, i, i + 1
        for y, tri in ((y1, fan[:, [0, 2, 1]]), (y0, fan)):  # the top faces up, the bottom down
            if y > 0:
                ring3 = np.concatenate([[[cx, y, cz]], np.insert(ring[:-1], 1, y, axis=1)])
                self.fans.append((ring3, ring3[:, [0, 2]] / metres + off, tri, material))

    def build(self, target: int):
        """Tessellate with the cell edge that brings the triangle count nearest ``target``.

        Returns
        -------
        vertices (V, 3) float32, faces (F, 3) uint32, uvs (V, 2) float32,
        face_materials (F,) uint16, edge (float, metres)
        """
        R = np.array(self.rects)
        origins, axes_u, axes_v = R[:, 0:3], R[:, 3:6], R[:, 6:9]
        uv0, span = R[:, 9:11], R[:, 11:13]
        lengths = np.stack([np.linalg.norm(axes_u, axis=1), np.linalg.norm(axes_v, axis=1)], 1)
        fan_tris = sum(len(f[2]) for f in self.fans)

        def cells(edge: float) -> np.ndarray:  # (R, 2) cells along u and v
            return np.maximum(1, np.ceil(lengths / edge - 1e-6)).astype(np.int64)

        def count(edge: float) -> int:
            return int(2 * cells(edge).prod(axis=1).sum()) + fan_tris

        lo, hi = 1e-3, 100.0  # count(lo) >= target >= count(hi): bisect
        for _ in range(40):
            mid = np.sqrt(lo * hi)
            lo, hi = (mid, hi) if count(mid) > target else (lo, mid)
        edge = lo if abs(count(lo) - target) < abs(count(hi) - target) else hi
        n = cells(edge)
        vertices, faces, st, vr, fr = grid_mesh(origins, axes_u, axes_v, n[:, 0], n[:, 1])
        parts = [(vertices, faces, uv0[vr] + st * span[vr], R[fr, 13])]
        base = len(vertices)
        for fv, fuv, ff, m in self.fans:
            parts.append((fv, ff + base, fuv, np.full(len(ff), m)))
            base += len(fv)
        dtypes = (np.float32, np.uint32, np.float32, np.uint16)  # cast first: less to copy
        columns = zip(zip(*parts), dtypes)
        v, f, uv, fm = (np.concatenate([a.astype(dtype) for a in c]) for c, dtype in columns)
        return v, f, uv, fm, float(edge)


# ----------------------------------------------------------------------------- layout


def _split_plan(rng: np.random.Generator, preset: Preset) -> list[tuple[float, ...]]:
    """Split a rectangle into room cells ``(x0, z0, x1, z1)`` whose interiors fit ROOM_SIZE."""
    lo, hi = ROOM_SIZE[0] + WALL, ROOM_SIZE[1] + WALL
    for _ in range(1000):  # about one draw in three fits
        n = int(rng.integers(preset.rooms[0], preset.rooms[1] + 1))
        area = n * rng.uniform(14.0, 24.0)
        width = float(np.sqrt(area * rng.uniform(1.0, 1.8)))
        cells = [(0.0, 0.0, width, area / width)]
        while len(cells) < n:  # cut the cell with the longest side across it
            longest = [max(c[2] - c[0], c[3] - c[1]) for c in cells]
            i = int(np.argmax(longest))
            length = longest[i]
            if length < 2 * lo:
                break
            x0, z0, x1, z1 = cells.pop(i)
            cut = rng.uniform(max(lo, 0.3 * length), min(length - lo, 0.7 * length))
            if x1 - x0 >= z1 - z0:
                cells += [(x0, z0, x0 + cut, z1), (x0 + cut, z0, x1, z1)]
            else:
                cells += [(x0, z0, x1, z0 + cut), (x0, z0 + cut, x1, z1)]
        sides = np.array([(c[2] - c[0], c[3] - c[1]) for c in cells])
        if len(cells) == n and sides.min() >= lo - 1e-9 and sides.max() <= hi:
            return cells
    raise RuntimeError(f"no floor plan fits {preset}")


def _doors(rng: np.random.Generator, cells) -> list[dict] | None:
    """Doorways along a random spanning tree of adjacent cells, plus maybe one more.

    Returns None where some room cannot be reached (the caller draws a new plan).
    """
    candidates = []  # (low room, high room, plan axis, wall plane, range of the door's centre)
    for i, a in enumerate(cells):
        for j, b in enumerate(cells):
            for k in (0, 1):  # walls across x, across z
                m = 1 - k
                if i != j and np.isclose(a[2 + k], b[k]):
                    lo = max(a[m], b[m]) + WALL / 2 + DOOR_MARGIN + DOOR_WIDTH / 2
                    hi = min(a[2 + m], b[2 + m]) - WALL / 2 - DOOR_MARGIN - DOOR_WIDTH / 2
                    if hi >= lo:
                        candidates.append((i, j, k, a[2 + k], lo, hi))
    group = list(range(len(cells)))  # union-find

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    chosen, spare = [], []
    for c in (candidates[i] for i in rng.permutation(len(candidates))):
        ri, rj = root(c[0]), root(c[1])
        (chosen if ri != rj else spare).append(c)
        group[ri] = rj
    if len({root(i) for i in range(len(cells))}) > 1:
        return None
    if spare and rng.random() < 0.5:
        chosen.append(spare[int(rng.integers(len(spare)))])
    doors = []
    for i, j, k, plane, lo, hi in chosen:
        axis, along = 2 * k, 2 - 2 * k  # world axes across and along the wall
        centre = rng.uniform(lo, hi)
        dmin, dmax = np.zeros(3), np.zeros(3)
        dmin[axis], dmax[axis] = plane - WALL / 2, plane + WALL / 2
        dmin[along], dmax[along] = centre - DOOR_WIDTH / 2, centre + DOOR_WIDTH / 2
        dmax[1] = rng.uniform(*DOOR_HEIGHT)
        doors.append({"min": dmin, "max": dmax, "rooms": (i, j), "axis": axis})
    return doors


def _room_shell(mesh: _Mesh, lo, hi, doors, materials: list[int]) -> None:
    """A room's floor, ceiling and walls, facing inwards, with its doorways cut out.

    ``materials``: floor, ceiling, then one a wall (x-min, x-max, z-min, z-max).
    Edges meeting at the room's (concave) corners overlap by SEAM.
    """
    e = SEAM
    mesh.face([lo[0] - e, 0, lo[2] - e], [hi[0] + e, 0, hi[2] + e], 1, 1, materials[0])
    mesh.face([lo[0] - e, hi[1], lo[2] - e], [hi[0] + e, hi[1], hi[2] + e], 1, -1, materials[1])
    for w, (axis, sign) in enumerate(((0, 1), (0, -1), (2, 1), (2, -1))):
        plane, along, offset = (lo if sign > 0 else hi)[axis], 2 - axis, mesh.rng.random(2)
        side = "min" if sign > 0 else "max"  # the door's far face is a wall thickness away
        cuts = sorted(
            (d["min"][along], d["max"][along], d["max"][1])
            for d in doors
            if d["axis"] == axis and np.isclose(d[side][axis], plane - sign * WALL)
        )

        def piece(a0, a1, y0, y1):
            a, b = np.full(3, plane), np.full(3, plane)
            a[along], b[along], a[1], b[1] = a0, a1, y0, y1
            mesh.face(a, b, axis, sign, materials[2 + w], offset)

        start = lo[along] - e
        for d0, d1, top in cuts:
            piece(start, d0, -e, hi[1] + e)
            piece(d0, d1, top, hi[1] + e)  # above the doorway
            start = d1
        piece(start, hi[along] + e, -e, hi[1] + e)


def _doorway(mesh: _Mesh, door: dict, material: int) -> None:
    """Line a doorway, facing into the opening: two jambs, the lintel's underside, the threshold.

    Their edges meet the rooms' walls exactly (these corners stand out, where an
    overlap would show); their other edges overlap SEAM into the wall.
    """
    lo, hi, along = door["min"], door["max"], 2 - door["axis"]
    faces = ((along, 1, lo[along]), (along, -1, hi[along]), (1, -1, hi[1]), (1, 1, 0.0))
    for axis, sign, plane in faces:
        a, b, grow = lo.copy(), hi.copy(), 1 if axis == along else along
        a[axis], b[axis] = plane, plane
        a[grow], b[grow] = a[grow] - SEAM, b[grow] + SEAM
        mesh.face(a, b, axis, sign, material)


# ----------------------------------------------------------------------------- furniture
# Builders take (rng, w, d, h) and return parts in a local frame: width along
# x, depth along z with the back at z = 0, height along y. A part is
# ("box", lo, hi, pool) or ("prism", (x, z), radius, y0, y1, pool), where pool
# names the kind of material ("wood", "fabric", ...).


def _table(rng, w, d, h):
    legs = [(x, z) for x in (0.05, w - 0.1) for z in (0.05, d - 0.1)]
    return [("box", (0, h - 0.04, 0), (w, h, d), "wood")] + [
        ("box", (x, 0, z), (x + 0.05, h - 0.04, z + 0.05), "wood") for x, z in legs
    ]


def _bed(rng, w, d, h):
    n = 2 if w > 1.3 else 1
    pillows = [(0.08 + k * (w - 0.16) / n, 0.02 + (k + 1) * (w - 0.16) / n) for k in range(n)]
    return [
        ("box", (0, 0, 0.06), (w, 0.3, d), "wood"),
        ("box", (0.03, 0.3, 0.08), (w - 0.03, 0.52, d - 0.03), "fabric"),  # mattress
        ("box", (0, 0, 0), (w, h, 0.06), "wood"),  # headboard
        ("box", (0.02, 0.52, d * 0.45), (w - 0.02, 0.56, d - 0.01), "fabric"),  # blanket
    ] + [("box", (x0, 0.52, 0.12), (x1, 0.64, 0.5), "fabric") for x0, x1 in pillows]


def _sofa(rng, w, d, h):
    return [
        ("box", (0, 0, 0), (w, 0.42, d), "fabric"),
        ("box", (0, 0.42, 0), (w, h, 0.22), "fabric"),
        ("box", (0, 0.42, 0.22), (0.18, 0.62, d), "fabric"),
        ("box", (w - 0.18, 0.42, 0.22), (w, 0.62, d), "fabric"),
    ]


def _shelf(rng, w, d, h):
    t, levels = 0.025, int(rng.integers(3, 6))
    parts = [
        ("box", (0, 0, 0), (t, h, d), "wood"),
        ("box", (w - t, 0, 0), (w, h, d), "wood"),
        ("box", (t, 0, 0), (w - t, h, t), "wood"),
    ]
    for k in range(levels + 1):
        y = k * (h - t) / levels
        parts.append(("box", (t, y, t), (w - t, y + t, d), "wood"))
        x = t + 0.01
        while k < levels and x < w - t - 0.1:  # a row of books
            bw, bh = rng.uniform(0.02, 0.06), rng.uniform(0.5, 0.85) * (h - t) / levels
            back = d - rng.uniform(0.02, 0.06)
            if rng.random() < 0.8:
                parts.append(("box", (x, y + t, t + 0.01), (x + bw, y + t + bh, back), "books"))
            x += bw + 0.003
    return parts


def _cabinet(rng, w, d, h):
    n = int(rng.integers(2, 4))  # drawers
    fronts = [(0.05 + k * (h - 0.1) / n, 0.02 + (k + 1) * (h - 0.1) / n) for k in range(n)]
    return [
        ("box", (0, 0, 0), (w, h - 0.03, d), "wood"),
        ("box", (-0.01, h - 0.03, 0), (w + 0.01, h, d + 0.02), "wood"),
    ] + [("box", (0.03, y0, d), (w - 0.03, y1, d + 0.015), "front") for y0, y1 in fronts]


def _crate(rng, w, d, h):
    parts = [("box", (0, 0, 0), (w, h, d), "wood")]
    if rng.random() < 0.4:  # something on it
        parts.append(("box", (0.05 * w, h, 0.1 * d), (0.85 * w, 1.6 * h, 0.9 * d), "books"))
    return parts


def _pedestal(w, h, base: tuple[float, float], pole: tuple[float, float], top: tuple[float, str]):
    """A round base, a metal pole and a top of full width: lamps and stools.

    ``base`` is (radius, height), ``pole`` (radius, height of its upper end),
    ``top`` (height of its lower end, material kind).
    """
    c = (w / 2, w / 2)
    return [
        ("prism", c, base[0], 0, base[1], "metal"),
        ("prism", c, pole[0], base[1], pole[1], "metal"),
        ("prism", c, w / 2, top[0], h, top[1]),
    ]


def _lamp(rng, w, d, h):
    return _pedestal(w, h, base=(0.3 * w, 0.03), pole=(0.02, h - 0.3), top=(h - 0.35, "fabric"))


def _plant(rng, w, d, h):
    c, pot = (w / 2, w / 2), rng.uniform(0.3, 0.5) * h
    return [("prism", c, 0.35 * w, 0, pot, "ceramic"), ("prism", c, w / 2, pot, h, "foliage")]


def _stool(rng, w, d, h):
    return _pedestal(w, h, base=(0.4 * w, 0.02), pole=(0.03, h - 0.04), top=(h - 0.04, "wood"))


# kind: (weight, width, depth (None: the width), height in metres, stands against a wall, builder)
_CATALOGUE = {
    "bed": (1.0, (1.4, 1.8), (1.9, 2.1), (0.9, 1.1), True, _bed),
    "sofa": (1.0, (1.6, 2.4), (0.8, 1.0), (0.75, 0.9), True, _sofa),
    "table": (1.5, (0.8, 1.8), (0.7, 1.0), (0.72, 0.78), False, _table),
    "desk": (0.8, (1.0, 1.6), (0.6, 0.8), (0.72, 0.76), True, _table),
    "shelf": (1.5, (0.6, 1.2), (0.3, 0.4), (1.2, 2.0), True, _shelf),
    "cabinet": (1.5, (0.6, 1.4), (0.4, 0.6), (0.7, 1.1), True, _cabinet),
    "crate": (1.0, (0.3, 0.6), (0.3, 0.6), (0.25, 0.6), False, _crate),
    "lamp": (1.0, (0.35, 0.45), None, (1.4, 1.7), True, _lamp),
    "plant": (1.2, (0.3, 0.6), None, (0.6, 1.4), True, _plant),
    "stool": (0.8, (0.3, 0.4), None, (0.45, 0.65), False, _stool),
}
_ONE_A_ROOM = ("bed", "sofa")


def _place(parts, ox, oz, sx, sz, swap):
    """Local parts to world: ``(x, z) -> (ox + sx * x, oz + sz * z)``, swapped first if ``swap``."""

    def xz(x, z):
        return (ox + sx * z, oz + sz * x) if swap else (ox + sx * x, oz + sz * z)

    out = []
    for p in parts:
        if p[0] == "box":
            (x0, z0), (x1, z1) = xz(p[1][0], p[1][2]), xz(p[2][0], p[2][2])
            lo, hi = (min(x0, x1), p[1][1], min(z0, z1)), (max(x0, x1), p[2][1], max(z0, z1))
            out.append(("box", lo, hi, p[3]))
        else:
            out.append(("prism", xz(*p[1]), *p[2:]))
    return out


def _bounds(parts) -> tuple[np.ndarray, np.ndarray]:
    """(3,) min and max corners of world parts."""
    lo, hi = [], []
    for p in parts:
        if p[0] == "box":
            lo.append(p[1])
            hi.append(p[2])
        else:
            (x, z), r = p[1], p[2]
            lo.append((x - r, p[3], z - r))
            hi.append((x + r, p[4], z + r))
    return np.min(lo, axis=0), np.max(hi, axis=0)


def _overlap(alo, ahi, blo, bhi, margin: float = 0.0) -> bool:
    """Whether two boxes come closer than ``margin`` along every axis."""
    alo, ahi, blo, bhi = map(np.asarray, (alo, ahi, blo, bhi))
    return bool(np.all(alo < bhi + margin) and np.all(blo < ahi + margin))


def _furnish(rng, lo, hi, keep_clear, count: int) -> list[tuple]:
    """Draw up to ``count`` pieces in the room ``lo..hi``: (kind, world parts, min, max) each."""
    names = list(_CATALOGUE)
    weights = np.array([_CATALOGUE[k][0] for k in names])
    placed, cover, floor = [], 0.0, (hi[0] - lo[0]) * (hi[2] - lo[2])
    for _ in range(15 * count):
        if len(placed) == count:
            break
        kind = names[rng.choice(len(names), p=weights / weights.sum())]
        if kind in _ONE_A_ROOM and any(p[0] == kind for p in placed):
            continue
        _, wr, dr, hr, at_wall, builder = _CATALOGUE[kind]
        w = rng.uniform(*wr)
        d, h = rng.uniform(*dr) if dr else w, rng.uniform(*hr)
        if at_wall:  # its back to a random wall, anywhere along it
            side = int(rng.integers(4))
            axis, along, sign = (0, 2)[side // 2], (2, 0)[side // 2], 1 - 2 * (side % 2)
            slack = hi[along] - lo[along] - 2 * WALL_GAP - w
            if slack < 0:
                continue
            pos = lo[along] + WALL_GAP + rng.random() * slack
            back = (lo if sign > 0 else hi)[axis] + sign * WALL_GAP
            frame = (back, pos, sign, 1, True) if axis == 0 else (pos, back, 1, sign, False)
        else:  # free-standing, 0.4 m from the walls
            swap = bool(rng.random() < 0.5)
            slack = hi[[0, 2]] - lo[[0, 2]] - 0.8 - np.array([d, w] if swap else [w, d])
            if np.any(slack < 0):
                continue
            x, z = lo[[0, 2]] + 0.4 + rng.random(2) * slack
            frame = (x, z, 1, 1, swap)
        parts = _place(builder(rng, w, d, h), *frame)
        plo, phi = _bounds(parts)
        area = (phi[0] - plo[0]) * (phi[2] - plo[2])
        inside = np.all(plo >= lo) and np.all(phi[[0, 2]] <= hi[[0, 2]]) and phi[1] <= hi[1] - 0.2
        if (
            not inside
            or cover + area > MAX_COVER * floor
            or any(_overlap(plo, phi, p[2], p[3], FURNITURE_GAP) for p in placed)
            or any(_overlap(plo, phi, *c) for c in keep_clear)
        ):
            continue
        placed.append((kind, parts, plo, phi))
        cover += area
    return placed


def _decorate(rng, mesh: _Mesh, lo, hi, doors, obstacles) -> None:
    """Hang 1-3 posters (clear of doorways, furniture and each other) and maybe lay a rug."""
    taken = list(obstacles)
    for _ in range(int(rng.integers(1, 4))):
        for _ in range(20):
            axis, sign = (0, 2)[int(rng.integers(2))], int(rng.choice([-1, 1]))
            along = 2 - axis
            w, h, y0 = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.0), rng.uniform(0.9, 1.5)
            if hi[along] - lo[along] < w + 0.3 or y0 + h > hi[1] - 0.15:
                continue
            a0 = lo[along] + 0.15 + rng.random() * (hi[along] - lo[along] - 0.3 - w)
            plane = (lo if sign > 0 else hi)[axis] + sign * OFFSET
            a, b = np.full(3, plane), np.full(3, plane)
            a[along], b[along], a[1], b[1] = a0, a0 + w, y0, y0 + h
            zone_lo, zone_hi = a.copy(), b.copy()  # the poster and 0.3 m before it
            zone_lo[axis], zone_hi[axis] = sorted((plane, plane + sign * 0.3))
            if any(_overlap(zone_lo, zone_hi, *t, 0.1) for t in taken) or any(
                _overlap(zone_lo, zone_hi, d["min"], d["max"], 0.15) for d in doors
            ):
                continue
            mesh.face(a, b, axis, sign, mesh.palette.add("poster", aspect=w / h))
            taken.append((zone_lo, zone_hi))
            break
    if rng.random() < 0.6:
        room = hi[[0, 2]] - lo[[0, 2]] - 0.6
        size = np.minimum(rng.uniform([1.2, 0.8], [2.5, 1.8]), room)
        x0, z0 = lo[[0, 2]] + 0.3 + rng.random(2) * (room - size)
        rug = mesh.palette.add("rug", aspect=size[0] / size[1])
        mesh.face([x0, OFFSET, z0], [x0 + size[0], OFFSET, z0 + size[1]], 1, 1, rug)


# ----------------------------------------------------------------------------- the apartment


def build_apartment(seed: int, preset: str = "medium") -> Scene:
    """Build one furnished, textured apartment, deterministically from ``(seed, preset)``.

    Parameters
    ----------
    seed : int
        Any non-negative integer.
    preset : {"small", "medium", "large"}
        Size and detail (``PRESETS``): about 30 k, 200 k and 1 M triangles.

    Returns
    -------
    Scene
        Named ``<preset>-<seed>``, source ``synthetic:<preset>/<seed>``: Y up,
        floor at y = 0, triangles counter-clockwise seen from the side a camera
        looks at, the layout in ``extras`` (see the module docstring).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}")
    start, p = time.perf_counter(), PRESETS[preset]
    rng = np.random.default_rng([int(seed), zlib.crc32(preset.encode())])
    doors = None
    while doors is None:
        cells = _split_plan(rng, p)
        doors = _doors(rng, cells)
    height = rng.uniform(CEILING[0], CEILING[1] - 0.2)
    rooms = [  # interiors: (3,) min and max corners
        (np.array([x0 + WALL / 2, 0.0, z0 + WALL / 2]),
         np.array([x1 - WALL / 2, height + rng.uniform(0, 0.2), z1 - WALL / 2]))
        for x0, z0, x1, z1 in cells
    ]  # fmt: skip

    palette = Palette(rng, p.texture_size)
    mesh = _Mesh(palette, rng)
    counts = {"wood": 3, "fabric": 3, "metal": 1, "ceramic": 2, "foliage": 1}
    pool = {k: [palette.add(k) for _ in range(n)] for k, n in counts.items()}
    pool["books"] = pool["fabric"] + pool["ceramic"] + [palette.add("fabric")]
    pool["front"] = pool["wood"] + pool["metal"]
    trim, ceiling = palette.add("wood"), palette.add("ceiling")  # one each for the apartment
    for door in doors:
        _doorway(mesh, door, trim)

    obstacles = []
    for r, (lo, hi) in enumerate(rooms):
        mine = [d for d in doors if r in d["rooms"]]
        walls = [palette.add(str(rng.choice(["plaster"] * 3 + ["wallpaper", "tiles"])))] * 4
        if rng.random() < 0.35:  # an accent wall
            walls[int(rng.integers(4))] = palette.add(str(rng.choice(["brick", "wallpaper"])))
        floor = palette.add(str(rng.choice(["parquet", "parquet", "tiles", "carpet"])))
        _room_shell(mesh, lo, hi, mine, [floor, ceiling] + walls)

        keep_clear = []  # the floor before each doorway, on this room's side
        for d in mine:
            a, b, axis, along = d["min"].copy(), d["max"].copy(), d["axis"], 2 - d["axis"]
            a[along], b[along] = a[along] - DOOR_MARGIN, b[along] + DOOR_MARGIN
            if d["rooms"][0] == r:  # this room is on the low side
                a[axis] = b[axis] - WALL - DOOR_CLEAR
            else:
                b[axis] = a[axis] + WALL + DOOR_CLEAR
            keep_clear.append((a, b))
        count = max(2, round(p.furniture * (hi[0] - lo[0]) * (hi[2] - lo[2])))
        pieces = _furnish(rng, lo, hi, keep_clear, count)
        for kind, parts, plo, phi in pieces:
            mats = {k: int(rng.choice(v)) for k, v in pool.items()}
            for part in parts:
                if part[0] == "box":
                    mesh.box(part[1], part[2], mats[part[3]])
                else:
                    mesh.prism(*part[1], *part[2:5], mats[part[5]], p.sides)
            obstacles.append({"min": plo, "max": phi, "room": r, "kind": kind})
        _decorate(rng, mesh, lo, hi, mine, [(q[2], q[3]) for q in pieces])

    vertices, faces, uvs, face_materials, edge = mesh.build(p.triangles)
    used = np.flatnonzero(np.bincount(face_materials))  # drop pool materials no piece drew
    renumber = np.zeros(len(palette.recipes), np.uint16)
    renumber[used] = np.arange(len(used))

    def box(lo, hi) -> dict:
        return {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}

    scene = Scene(
        name=f"{preset}-{seed}",
        vertices=vertices,
        faces=faces,
        uvs=uvs,
        face_materials=renumber[face_materials],
        materials=palette.materials(used),
        source=f"synthetic:{preset}/{seed}",
        extras={
            "rooms": [box(lo, hi) for lo, hi in rooms],
            "doors": [{**box(d["min"], d["max"]), "rooms": list(d["rooms"])} for d in doors],
            "obstacles": [
                {**box(o["min"], o["max"]), "room": o["room"], "kind": o["kind"]} for o in obstacles
            ],
            "preset": preset,
            "seed": int(seed),
            "edge": edge,
        },
    ).validate()
    log.debug(
        "synthetic %s/%s: %d rooms, %d pieces, %d triangles (edge %.3f m), %d materials, %.2f s",
        preset, seed, len(rooms), len(obstacles), scene.num_triangles, edge, len(used),
        time.perf_counter() - start,
    )  # fmt: skip
    return scene


@register_source
class SyntheticSource(SceneSource):
    """Procedural apartments: ``location`` is ``"<preset>/<seed>"``, e.g. ``"medium/3"``.

    Synthetic scenes are built Y-up: ``up`` is ignored.
    """

    name = "synthetic"
    description = "procedural apartments built in memory, no files"

    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        preset, sep, seed = str(location).strip().partition("/")
        if not sep or not preset or not seed:
            problem = "a synthetic scene is named '<preset>/<seed>', e.g. 'medium/3'"
        elif preset not in PRESETS:
            problem = f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}"
        elif not (seed.isascii() and seed.isdigit()):
            problem = f"the seed must be a non-negative integer, got {seed!r}"
        else:
            scene = build_apartment(int(seed), preset)
            scene.name = scene_id
            return scene
        raise SceneFormatError(location, problem)
