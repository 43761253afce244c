"""Tiny box-room meshes for floor and viewpoint tests (Y-up, faces towards the inside)."""

from __future__ import annotations

import numpy as np

from renderers.scene import Material, Scene


def box_faces(lo, hi, inward: bool = True, skip: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (24, 3) and faces (12 or fewer, 3) of an axis-aligned box's six quads."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    quads = []
    for axis in range(3):
        for side, value in (("min", lo[axis]), ("max", hi[axis])):
            name = f"{'xyz'[axis]}{side}"
            if name in skip:
                continue
            u, v = [a for a in range(3) if a != axis]
            corners = []
            for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.empty(3)
                p[axis] = value
                p[u] = (lo[u], hi[u])[cu]
                p[v] = (lo[v], hi[v])[cv]
                corners.append(p)
            # orient so the normal points inwards (or outwards)
            n = np.cross(corners[1] - corners[0], corners[2] - corners[0])
            want = (1.0 if side == "min" else -1.0) * (1.0 if inward else -1.0)
            if np.sign(n[axis]) != want:
                corners = corners[::-1]
            quads.append(corners)
    vertices = np.array(quads, dtype=np.float32).reshape(-1, 3)
    faces = np.array([[4 * q, 4 * q + 1, 4 * q + 2, 4 * q, 4 * q + 2, 4 * q + 3] for q in range(len(quads))])
    return vertices, faces.reshape(-1, 3).astype(np.uint32)


def scene_of(*parts: tuple[np.ndarray, np.ndarray], name: str = "rooms") -> Scene:
    """One grey scene from several (vertices, faces) parts."""
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    v = np.concatenate(vertices).astype(np.float32)
    return Scene(
        name=name,
        vertices=v,
        faces=np.concatenate(faces).astype(np.uint32),
        vertex_colors=np.full((len(v), 3), 180, np.uint8),
        materials=(Material(name="grey"),),
    ).validate()


def room(size=(5.0, 2.6, 4.0), furniture: bool = True) -> Scene:
    """A closed room with its floor at y = 0, and (optionally) a table and a closed cabinet."""
    parts = [box_faces((0, 0, 0), size)]
    if furniture:
        parts.append(box_faces((1.0, 0.72, 1.0), (2.2, 0.76, 1.8), inward=False))  # table top (legs omitted)
        parts.append(box_faces((3.5, 0.0, 0.2), (4.6, 2.0, 0.8), inward=False))  # tall closed cabinet
    return scene_of(*parts, name="room")
