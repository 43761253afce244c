"""The default backend: CPU ray casting with Open3D's ``RaycastingScene`` (Embree).

Per view, one ray per pixel centre leaves the camera centre along
``R @ (x, y, 1)`` (camera frame scaled to z = 1), so Open3D's ``t_hit``, which
counts multiples of the direction's length, *is* the planar z-depth. Colour is
``base_color * texture(uv) * vertex_color`` at the hit, with the face's
barycentrics interpolating uvs and vertex colours (Open3D's ``primitive_uvs``
``(u, v)`` weigh the face's vertices ``(1 - u - v, u, v)``), textures sampled
bilinearly with their sampler's wrap modes.
"""

from __future__ import annotations

import logging

import numpy as np

from renderers.camera import pixel_rays
from renderers.backends import RenderBackend, RenderedView, SceneRenderer, register_backend
from renderers.scene import Scene, Texture, Wrap

__all__ = ["RaycastBackend", "sample_texture"]

log = logging.getLogger(__name__)


def _wrap(i: np.ndarray, n: int, mode: Wrap) -> np.ndarray:
    """Integer texel indices folded into [0, n) by a sampler wrap mode."""
    if mode == Wrap.CLAMP_TO_EDGE:
        return np.clip(i, 0, n - 1)
    if mode == Wrap.MIRRORED_REPEAT:
        period = np.mod(i, 2 * n)
        return np.where(period < n, period, 2 * n - 1 - period)
    return np.mod(i, n)


def sample_texture(texture: Texture, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup.

    Parameters
    ----------
    texture : Texture
        ``image`` (H, W, C) uint8, row 0 on top.
    uv : (N, 2) float
        glTF texture coordinates: (0, 0) is the image's top-left corner,
        texel ``(i, j)`` has its centre at ``((i + 0.5) / W, (j + 0.5) / H)``.

    Returns
    -------
    (N, 3) float32
        RGB in [0, 255].
    """
    img = texture.image
    h, w = img.shape[:2]
    x = uv[:, 0].astype(np.float64) * w - 0.5
    y = uv[:, 1].astype(np.float64) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = _wrap(x0, w, texture.wrap_s), _wrap(x0 + 1, w, texture.wrap_s)
    ya, yb = _wrap(y0, h, texture.wrap_t), _wrap(y0 + 1, h, texture.wrap_t)
    rgb = img[..., :3]
    top = rgb[ya, xa] * (1 - fx) + rgb[ya, xb] * fx
    bottom = rgb[yb, xa] * (1 - fx) + rgb[yb, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class _RaycastRenderer(SceneRenderer):
    def __init__(self, scene: Scene) -> None:
        import open3d as o3d

        self._o3d = o3d
        self.scene = scene
        self._rs = o3d.t.geometry.RaycastingScene()
        self._rs.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(scene.vertices)),
            o3d.core.Tensor(np.ascontiguousarray(scene.faces)),
        )
        self._faces = scene.faces.astype(np.int64)
        self._base = np.array([m.base_color[:3] for m in scene.materials], dtype=np.float32)  # (M, 3)

    def rays(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W, 6) float32 rays: origin and direction with camera-frame z = 1."""
        c2w = np.asarray(cam2world, dtype=np.float64)
        dirs = pixel_rays(K, width, height) @ c2w[:3, :3].T
        origin = np.broadcast_to(c2w[:3, 3], dirs.shape)
        return np.concatenate([origin, dirs], axis=-1).astype(np.float32)

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        rays = self.rays(K, cam2world, width, height)
        hits = self._rs.cast_rays(self._o3d.core.Tensor(rays.reshape(-1, 6)))
        t = hits["t_hit"].numpy()  # (HW,)
        hit = np.isfinite(t)
        depth = np.where(hit, t, 0.0).astype(np.float32).reshape(height, width)
        rgb = np.zeros((height * width, 3), dtype=np.uint8)
        if hit.any():
            prim = hits["primitive_ids"].numpy()[hit].astype(np.int64)  # (N,)
            bary_uv = hits["primitive_uvs"].numpy()[hit]  # (N, 2)
            rgb[hit] = self.shade(prim, bary_uv)
        return RenderedView(rgb=rgb.reshape(height, width, 3), depth=depth)

    def shade(self, prim: np.ndarray, bary_uv: np.ndarray) -> np.ndarray:
        """sRGB uint8 colours (N, 3) at hits on faces ``prim`` with barycentrics ``bary_uv``."""
        scene = self.scene
        weights = np.empty((len(prim), 3), dtype=np.float32)  # (N, 3) per face vertex
        weights[:, 1:] = bary_uv
        weights[:, 0] = 1.0 - bary_uv[:, 0] - bary_uv[:, 1]
        corners = self._faces[prim]  # (N, 3)
        mats = scene.face_materials[prim] if scene.face_materials is not None else np.zeros(len(prim), np.int64)
        color = self._base[mats] * 255.0  # (N, 3)
        if scene.uvs is not None:
            uv = np.einsum("nk,nkc->nc", weights, scene.uvs[corners])  # (N, 2)
            for m in np.unique(mats):
                texture = scene.materials[m].texture
                if texture is not None:
                    sel = mats == m
                    color[sel] *= sample_texture(texture, uv[sel]) / 255.0
        if scene.vertex_colors is not None:
            vc = np.einsum("nk,nkc->nc", weights, scene.vertex_colors[corners].astype(np.float32))
            color *= vc / 255.0
        return np.clip(color + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        self._rs = None


@register_backend
class RaycastBackend(RenderBackend):
    """Open3D/Embree ray casting on the CPU; works wherever pip does."""

    name = "raycast"

    def open(self, scene: Scene) -> SceneRenderer:
        return _RaycastRenderer(scene)
