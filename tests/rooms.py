"""Shared test helpers: tiny box-room meshes (Y-up, faces towards the inside), camera poses (OpenCV axes), rooms
written as the datasets store them (Z-up PLY), and views sampled as ``pairgen render`` samples them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers.scene import Material, Scene
from tests.writers.ply import write_ply

LEVEL = np.diag([1.0, -1.0, -1.0])  # an OpenCV camera's rotation looking along world -Z, image up = world +Y


def rotation(axis, deg) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    th = np.radians(deg)
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k


def pose(R=LEVEL, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(4, 4) cam2world with rotation ``R`` (3, 3) and camera centre ``t`` (3,)."""
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = t
    return m


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


def z_up(vertices: np.ndarray) -> np.ndarray:
    """(V, 3) float32: Y-up world -> Z-up file coordinates, the inverse of ``(x, y, z)_world = (x, z, -y)_file``."""
    v = np.asarray(vertices, np.float32)
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


def write_scan_ply(path: Path, scene: Scene, colors: np.ndarray | None = None, *, alpha: bool = False) -> Path:
    """``scene`` as a Z-up binary PLY at ``path`` (folders made), with ``colors`` or else its vertex colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(write_ply(z_up(scene.vertices), scene.faces, scene.vertex_colors if colors is None else colors,
                               alpha=alpha))  # fmt: skip
    return path


def write_room_ply(path: Path, size=(5.0, 2.6, 4.0)) -> Path:
    """A furnished :func:`room` of ``size`` as a Z-up PLY with seeded random vertex colours (a scan with texture)."""
    scene = room(size)
    colors = np.random.default_rng(0).integers(40, 250, (len(scene.vertices), 3), dtype=np.uint8)
    return write_scan_ply(path, scene, colors)


def scannet_room(path: Path) -> Path:
    """A furnished :func:`room` as ScanNet stores a scan: Z-up PLY, vertex RGBA."""
    return write_scan_ply(path, room(furniture=True), alpha=True)


def synthetic_views(location: str, views: int, size: int, seed: int) -> list:
    """Views of a synthetic apartment as ``pairgen render`` places them (floor search, walks)."""
    from renderers.backends import get_backend
    from renderers.floor import floor_from_geometry
    from renderers.sources import load_scene
    from renderers.viewpoints import ViewConfig, sample_views

    scene = load_scene("synthetic", location, scene_id="apartment")
    config = ViewConfig(views_per_scene=views, resolution=(size, size))
    with get_backend("raycast").open(scene) as renderer:
        caster = renderer.raycaster()
        floor = floor_from_geometry(scene, caster)
        return list(sample_views(renderer.render, floor, caster, config, np.random.default_rng(seed)))
