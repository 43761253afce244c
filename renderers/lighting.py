"""Baked lighting of the synthetic apartments: irradiance per vertex, cast with the scene's own ray caster.

Real scans (HM3D, Replica, ScanNet...) carry their lighting in their colours;
the procedural apartments of :mod:`renderers.sources.synthetic` are albedo
only. :func:`bake_irradiance` gives each vertex the light it receives, in
linear RGB, from

* **ceiling lights**: one per room, two in rooms over ``TWO_LIGHTS`` m²,
  small discs (``LIGHT_RADIUS``) just under the ceiling that emit mostly
  downwards, each seen through ``LIGHT_SAMPLES`` shadow rays to points of the
  disc (soft shadows under tables and beds);
* **door openings**: each doorway glows into the rooms it joins with a cool
  daylight tint (area lights of ``DOOR_SAMPLES`` shadow rays);
* **ambient light** times ambient occlusion: the share of ``AO_RAYS``
  cosine-distributed rays that leave the vertex for ``AO_DISTANCE`` metres
  unobstructed (darker corners, contact shadows).

Shadow and occlusion rays are any-hit queries (``RaycastingScene.test_occlusions``)
of the Embree BVH the renderer itself casts with. Every sample pattern is
drawn from the apartment's seed, so the same seed gives the same bytes. The
result is normalised so that the ``EXPOSURE_PERCENTILE``-th percentile of the
room vertices' luminance is 1 and clipped at ``MAX_IRRADIANCE``; the renderer
multiplies it into the albedo in linear light and encodes the product to sRGB.

Per-vertex light needs vertices close enough together: the apartments'
rectangles are grids of near-square cells (``scene.extras["edge"]``: 0.144,
0.086 and 0.038 m for ``small/0``, ``medium/0`` and ``large/0``), fine enough
at 256 x 256 for soft shadows and darkened corners; small presets light more
coarsely. A bake takes 0.4, 1.3-1.8 and 7.8 s for those (2 cores), once per
renderer opened on a scene object, so it is not cached on disk.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from renderers.scene import Scene

__all__ = ["bake_irradiance", "scene_irradiance", "vertex_normals"]

log = logging.getLogger(__name__)

LIGHT_RADIUS = 0.15  # metres, ceiling light discs
LIGHT_DROP = 0.05  # metres below the ceiling
TWO_LIGHTS = 14.0  # m² of floor above which a room gets two ceiling lights
LIGHT_SAMPLES = 4  # shadow rays per ceiling light and vertex
DOOR_SAMPLES = 2  # shadow rays per door opening and vertex
AO_RAYS = 16  # occlusion rays per vertex
AO_DISTANCE = 0.6  # metres an occlusion ray must travel free
ORIGIN_OFFSET = 2e-3  # metres off the surface that rays start (SEAM is 1e-3)
ROOM_MARGIN = 0.06  # metres around a room's interior whose vertices it lights (doorway jambs: half a wall)
EXPOSURE_PERCENTILE = 85
MAX_IRRADIANCE = 2.0
CHUNK = 1 << 14  # vertices per batch of rays
LAMP_COLOR = np.array([1.0, 0.9, 0.78], np.float32)  # warm white
DAYLIGHT_COLOR = np.array([0.8, 0.9, 1.0], np.float32)  # cool white
AMBIENT_COLOR = np.array([0.9, 0.92, 1.0], np.float32)
DOOR_RADIANCE = 1.5  # radiance of a door opening, relative to the irradiance its room's lights give the floor
AMBIENT = 0.5  # ambient irradiance (times occlusion), relative to the same


def scene_irradiance(scene: Scene, raycaster) -> np.ndarray | None:
    """The scene's baked irradiance, baked on first use for a synthetic apartment; None for other scenes.

    The result is kept on ``scene.irradiance``, so that renderers opened again
    on the same scene (the benchmarks, a second backend) do not bake again.
    """
    if scene.irradiance is not None:
        return scene.irradiance
    if not scene.source.startswith("synthetic:") or "rooms" not in scene.extras:
        return None
    start = time.perf_counter()
    scene.irradiance = bake_irradiance(scene, raycaster)
    log.info("%s: lighting baked for %d vertices in %.2f s", scene.name, len(scene.vertices),
             time.perf_counter() - start)  # fmt: skip
    return scene.irradiance


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit normals: the area-weighted sum of each vertex's faces' normals (front side)."""
    v = vertices.astype(np.float64)
    f = faces.astype(np.intp)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # (F, 3), length 2 x area
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, f[:, k], n)
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(length > 0, length, 1.0)).astype(np.float32)


def _frame(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents (V, 3) completing each normal to an orthonormal frame."""
    helper = np.where(np.abs(n[:, 1:2]) < 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
    t = np.cross(helper, n)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return t, np.cross(n, t)


def _lights(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """The apartment's ceiling lights: centre (3,) and power, per room."""
    lights = []
    for r, room in enumerate(scene.extras["rooms"]):
        lo, hi = np.asarray(room["min"]), np.asarray(room["max"])
        area = (hi[0] - lo[0]) * (hi[2] - lo[2])
        long = 0 if hi[0] - lo[0] >= hi[2] - lo[2] else 2
        spots = (0.5,) if area < TWO_LIGHTS else (0.28, 0.72)
        for s in spots:
            c = (lo + hi) / 2
            c[long] = lo[long] + s * (hi[long] - lo[long])
            c[[0, 2]] += rng.uniform(-0.15, 0.15, 2)
            c[1] = hi[1] - LIGHT_DROP
            lights.append({"room": r, "centre": c, "power": area / len(spots)})
    return lights


def _door_panels(scene: Scene) -> list[dict]:
    """Each doorway's two faces (one per room it joins): corner, edge vectors, normal into the room."""
    panels = []
    for door in scene.extras.get("doors", []):
        lo, hi = np.asarray(door["min"]), np.asarray(door["max"])
        axis = int(np.argmin(hi - lo))  # through the wall
        along = [a for a in (0, 2) if a != axis][0]
        for side, room in zip((lo[axis], hi[axis]), door["rooms"]):
            # the room on the low side of the wall sees the opening's low face, facing -axis... find by centre
            centre = (np.asarray(scene.extras["rooms"][room]["min"]) + np.asarray(scene.extras["rooms"][room]["max"])) / 2
            normal = np.zeros(3)
            normal[axis] = 1.0 if centre[axis] > (lo[axis] + hi[axis]) / 2 else -1.0
            plane = hi[axis] if normal[axis] > 0 else lo[axis]
            corner = lo.copy()
            corner[axis] = plane + 0.01 * normal[axis]
            eu, ev = np.zeros(3), np.zeros(3)
            eu[along], ev[1] = hi[along] - lo[along], hi[1] - lo[1]
            panels.append({"room": room, "corner": corner, "u": eu, "v": ev, "normal": normal,
                           "area": float(np.linalg.norm(eu) * np.linalg.norm(ev))})  # fmt: skip
    return panels


def _visible(raycaster, origins: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) bool: nothing between each origin and its target (any-hit shadow rays)."""
    import open3d as o3d

    rays = np.concatenate([origins, targets - origins], axis=1).astype(np.float32)
    hit = raycaster.test_occlusions(o3d.core.Tensor(rays), tnear=0.0, tfar=0.999).numpy()
    return ~hit.astype(bool)


def bake_irradiance(scene: Scene, raycaster) -> np.ndarray:
    """Irradiance at every vertex of a synthetic apartment (see the module docstring).

    Parameters
    ----------
    scene : Scene
        With the synthetic layout in ``extras`` (``rooms``, ``doors``, ``seed``).
    raycaster : open3d.t.geometry.RaycastingScene
        Holding the scene's triangles.

    Returns
    -------
    (V, 3) float32
        Linear RGB, in ``[0, MAX_IRRADIANCE]``.
    """
    rng = np.random.default_rng([int(scene.extras.get("seed", 0)), 0x11647])
    lights, panels = _lights(scene, rng), _door_panels(scene)
    rooms = [(np.asarray(r["min"]), np.asarray(r["max"])) for r in scene.extras["rooms"]]
    v = scene.vertices.astype(np.float64)
    n = vertex_normals(scene.vertices, scene.faces).astype(np.float64)
    n_vertices = len(v)
    room_of = np.full(n_vertices, -1)
    for r, (lo, hi) in reversed(list(enumerate(rooms))):  # the first room that holds a vertex wins
        inside = ((v >= lo - ROOM_MARGIN) & (v <= hi + ROOM_MARGIN)).all(axis=1)
        room_of[inside] = r
    # Fixed sample patterns, turned per vertex by a seeded angle.
    k = np.arange(AO_RAYS)
    ao_r = np.sqrt((k + rng.random(AO_RAYS)) / AO_RAYS)  # cosine-distributed: radius sqrt(uniform)
    ao_phi = 2 * np.pi * ((k * 0.6180339887 + rng.random()) % 1.0)
    disc = np.sqrt((np.arange(LIGHT_SAMPLES) + 0.5) / LIGHT_SAMPLES) * LIGHT_RADIUS
    disc_phi = 2 * np.pi * np.arange(LIGHT_SAMPLES) / LIGHT_SAMPLES
    door_uv = (np.stack([(np.arange(DOOR_SAMPLES) + 0.5) / DOOR_SAMPLES,
                         ((np.arange(DOOR_SAMPLES) * 0.618) % 1.0 + 0.5 / DOOR_SAMPLES) % 1.0], axis=1))  # fmt: skip
    turn = rng.random(n_vertices) * 2 * np.pi  # (V,) per-vertex rotation of the patterns
    jitter = rng.random((n_vertices, 2)) - 0.5  # per-vertex shift of the door samples, in strata

    out = np.zeros((n_vertices, 3))
    origin = v + ORIGIN_OFFSET * n
    t1, t2 = _frame(n)
    for start in range(0, n_vertices, CHUNK):
        s = slice(start, min(start + CHUNK, n_vertices))
        o, nn, a = origin[s], n[s], turn[s]
        m = len(o)
        # Ambient occlusion.
        phi = ao_phi[None, :] + a[:, None]  # (m, R)
        x, y = ao_r[None, :] * np.cos(phi), ao_r[None, :] * np.sin(phi)
        z = np.sqrt(np.maximum(0.0, 1 - ao_r**2))[None, :]
        dirs = x[..., None] * t1[s, None, :] + y[..., None] * t2[s, None, :] + z[..., None] * nn[:, None, :]
        free = _visible(raycaster, np.repeat(o, AO_RAYS, axis=0), (o[:, None, :] + AO_DISTANCE * dirs).reshape(-1, 3))
        ao = free.reshape(m, AO_RAYS).mean(axis=1)
        rooms_here = room_of[s]
        # What a room's lights give the floor below them: the scale of its ambient and doorway light.
        e0 = np.array([sum(q["power"] for q in lights if q["room"] == r) / (np.pi * (rooms[r][1][1] - rooms[r][0][1]) ** 2)
                       for r in range(len(rooms))] + [np.mean([q["power"] for q in lights]) / (np.pi * 6.0)])  # fmt: skip
        light = (AMBIENT * ao * e0[rooms_here])[:, None] * AMBIENT_COLOR[None, :]
        # Ceiling lights of the vertex's room.
        for q in lights:
            idx = np.flatnonzero(rooms_here == q["room"])
            if not len(idx):
                continue
            phi = disc_phi[None, :] + a[idx, None]
            targets = q["centre"][None, None, :] + np.stack(
                [disc[None, :] * np.cos(phi), np.zeros_like(phi), disc[None, :] * np.sin(phi)], axis=-1)  # fmt: skip
            to = targets - o[idx, None, :]  # (k, S, 3)
            dist2 = np.maximum((to**2).sum(-1), 1e-4)
            unit = to / np.sqrt(dist2)[..., None]
            cos_r = np.maximum(0.0, (unit * nn[idx, None, :]).sum(-1))
            lobe = 0.25 + 0.75 * np.maximum(0.0, unit[..., 1])  # the disc faces down: receivers below see it
            vis = _visible(raycaster, np.repeat(o[idx], LIGHT_SAMPLES, axis=0), targets.reshape(-1, 3))
            e = (cos_r * lobe / dist2 * vis.reshape(len(idx), LIGHT_SAMPLES)).mean(axis=1)
            light[idx] += (q["power"] / np.pi * e)[:, None] * LAMP_COLOR[None, :]
        # Door openings into the vertex's room.
        for p in panels:
            idx = np.flatnonzero(rooms_here == p["room"])
            if not len(idx):
                continue
            uv = np.clip(door_uv[None, :, :] + jitter[start + idx, None, :] / DOOR_SAMPLES, 0.0, 1.0)  # (k, S, 2)
            targets = p["corner"] + uv[..., :1] * p["u"] + uv[..., 1:] * p["v"]
            to = targets - o[idx, None, :]
            dist2 = np.maximum((to**2).sum(-1), 1e-4)
            unit = to / np.sqrt(dist2)[..., None]
            cos_r = np.maximum(0.0, (unit * nn[idx, None, :]).sum(-1))
            cos_e = np.maximum(0.0, -(unit @ p["normal"]))
            vis = _visible(raycaster, np.repeat(o[idx], DOOR_SAMPLES, axis=0), targets.reshape(-1, 3))
            e = (cos_r * cos_e / dist2 * vis.reshape(len(idx), DOOR_SAMPLES)).mean(axis=1) * p["area"] / np.pi
            light[idx] += (DOOR_RADIANCE * e0[p["room"]] * e)[:, None] * DAYLIGHT_COLOR[None, :]
        out[s] = light
    lum = out @ np.array([0.2126, 0.7152, 0.0722])
    lit = room_of >= 0
    scale = np.percentile(lum[lit], EXPOSURE_PERCENTILE) if lit.any() else 1.0
    return np.clip(out / max(scale, 1e-9), 0.0, MAX_IRRADIANCE).astype(np.float32)
