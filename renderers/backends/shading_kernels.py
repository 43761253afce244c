"""The raycast backend's per-pixel work, compiled (numba): one pass over a view's hits.

Shading a hit takes a face's row of several tables, up to 16 texel fetches
(two trilinear probes), the light and the sRGB encoding: a few dozen
arithmetic operations that numpy could only do as some forty whole-array
passes, each reading and writing every pixel's temporaries (about 15 ms a
256 x 256 view, three times the ray cast). Here each pixel is shaded in one
go, in registers, and the kernels release the GIL, so that
:meth:`~renderers.backends.raycast.RaycastRenderer.shade_hits` shares a view's
pixels between two threads, in chunks.

What the kernels read besides the hits is one :class:`ShadingTables`, built
once per scene from the scene's
:class:`~renderers.backends.face_tables.FaceTables`
(:meth:`~renderers.backends.face_tables.FaceTables.kernel_tables`).

The arithmetic is numpy's: float32 throughout (and float64 where the numpy
reference, :func:`renderers.backends.atlas.sample_texture`, wraps texel
indices per tap), the same operations in the same order, no fast-math
contraction. So ``antialias="off"`` reproduces the renderer of before
anti-aliasing byte for byte (``tests/renderers/test_fidelity.py`` checks its colours'
digest, taken from it).

Memory safety: numba does not check bounds. Texel coordinates are in range by
construction of the atlas and the faces' texel maps
(:meth:`FaceTables.build <renderers.backends.face_tables.FaceTables.build>`),
and every flat texel index is clamped into the atlas once more before it is
read, every face id and sRGB table index into its table, so that a NaN or a
degenerate face can only ever fetch a wrong texel, never outside an array;
the caller checks the arrays' lengths
(:meth:`~renderers.backends.raycast.RaycastRenderer.shade_into`).
``tests/renderers/test_fidelity.py`` shades garbage hits with ``NUMBA_BOUNDSCHECK=1``
in a fresh cache.

Compiled code is cached beside this file (``cache=True``): the first process
on a machine compiles for a few seconds, later ones load it.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "ANISO_PROBES",
    "ISOTROPIC",
    "LOD_BIAS",
    "ShadingTables",
    "average_samples",
    "colour_edges",
    "geometric_edges",
    "grid_rays",
    "hit_geometry",
    "shade",
    "subpixel_rays",
]

# LLVM's superword (SLP) vectorizer, off in numba by default: it packs the channels' isomorphic float32
# operations into vector ones (shading 3.5 % faster). Without fast-math it keeps IEEE semantics: the same bytes.
# numba's setting is process-wide and re-read from the environment whenever a NUMBA_ variable changes, so it is
# set there (unless the user set it), for what compiles from now on.
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
numba.config.reload_config()
_jit = numba.njit(nogil=True, cache=True, error_model="numpy")  # numpy's errors: x / 0 is inf, no exception
_inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")  # helpers, in numba's IR

# float32 constants: a Python float in the arithmetic below would promote it to float64.
ANISO_PROBES = 2  # trilinear probes along a footprint's long axis (anisotropic filtering)
# Levels finer than the footprint by this much (log2): a level's texel box and its bilinear tent span about
# 1.4 of its texels, wider than the pixel's box; measured best against the 8 x 8 box reference.
LOD_BIAS = -0.5
# Footprints at most this much longer than wide get one trilinear probe at the width's level, not
# ANISO_PROBES (medium apartment vs 8 x 8: 43.9 -> 42.8 dB; minified room 31.8 -> 31.6; shading -14 %).
ISOTROPIC = 1.5

_F0, _HALF, _ONE, _255, _INV255 = (np.float32(x) for x in (0.0, 0.5, 1.0, 255.0, 1.0 / 255.0))
_TINY_COS, _TINY_LEN = np.float32(1e-3), np.float32(1e-6)


class ShadingTables(NamedTuple):
    """Everything :func:`shade` reads besides the hits, built once per scene
    (:meth:`~renderers.backends.face_tables.FaceTables.kernel_tables`).

    Absent features have ``has_*`` False and empty arrays of the right type.
    Face tables have a last row for misses (face ``F``).
    """

    has_texture: bool
    table: np.ndarray  # (F + 1, 10) float32: texel map a, b, c (6), then offset, stride, entry as int32 bits, log2 density
    table_i: np.ndarray  # the same memory as int32
    slow: np.ndarray  # (F + 1,) bool: faces sampled with per-tap wrapping
    mipmapped: bool  # the atlas holds mip levels and jacobian/mip_rows/top_level are set
    jacobian: np.ndarray  # (F + 1, 7) float32 per face: world to level-0 texels (2 x 3), texels per metre
    mip_rows: np.ndarray  # (E * R, 4) float32: per (entry, level) scale x, y, then offset and stride bits
    mip_rows_i: np.ndarray  # the same memory as int32
    rows_per_entry: int  # R: levels held per entry in mip_rows, one more than the deepest (repeated)
    top_level: np.ndarray  # (E,) float32: each entry's last level
    texels: np.ndarray  # (T,) uint32 RGBX atlas
    mip_scale: np.ndarray  # (E, L, 2) float32
    mip_period: np.ndarray  # (E, L, 2) int64
    mip_size: np.ndarray  # (E, L, 2) int64
    mip_offset: np.ndarray  # (E, L) int64
    mip_stride: np.ndarray  # (E, L) int64
    levels: np.ndarray  # (E,) int64
    pad: int
    has_base: bool
    base: np.ndarray  # (3, M + 1) float32 per material, or (3, F + 1) per face
    base_per_face: bool
    face_materials: np.ndarray  # (F + 1,) int32, misses last
    planes: np.ndarray  # (F + 1,) int64: faces with one key lie in one plane (edge search), see face_tables.plane_keys
    has_vertex_colors: bool
    corner_colors: np.ndarray  # (F + 1, 3) uint32 RGBX words of each face's corners
    has_light: bool
    corner_light: np.ndarray  # (F + 1, 9) float32 linear irradiance of each face's corners
    decode: np.ndarray  # float32 sRGB to linear, by quarter levels
    decode_steps: int
    encode: np.ndarray  # float32 sqrt(linear) to sRGB levels
    encode_steps: int


def hit_geometry(hits: dict, rays: np.ndarray, K: np.ndarray) -> tuple:
    """What the kernels need of each hit's surface and ray (not compiled).

    Parameters
    ----------
    hits : dict
        Open3D's hits (``t_hit``, ``primitive_normals``) of ``rays``.
    rays : (..., 6) float32
        Origins, then directions with camera-frame z = 1.
    K : (3, 3)

    Returns
    -------
    tuple
        Planar depths (N,) float32, normals (N, 3) float32, rays (N, 6)
        float32, and ``1 / sqrt(fx fy)`` as float32: :func:`shade`'s ``t``,
        ``normals``, ``rays`` and ``inv_focal``.
    """
    K = np.asarray(K, np.float64)
    return (
        hits["t_hit"].numpy().reshape(-1),
        hits["primitive_normals"].numpy().reshape(-1, 3),
        np.ascontiguousarray(rays, np.float32).reshape(-1, 6),
        np.float32(1.0 / np.sqrt(abs(K[0, 0] * K[1, 1]))),
    )


# ----------------------------------------------------------------------------- texel fetches
#
# Helpers take the arrays they read, never the tables tuple: a tuple of arrays handed on inside the pixel
# loop is reference-counted, array by array, at every pixel (measured 15x slower).


@_inline
def _channels(word):
    return np.float32(word & 255), np.float32((word >> 8) & 255), np.float32((word >> 16) & 255)


@_inline
def _bilinear(texels, x, y, offset, stride):
    """Bilinear RGB at padded texel coordinates ``x, y >= 0`` (texel centres at integers) of an entry."""
    ix, iy = int(x), int(y)  # floor, as x, y >= 0
    fx, fy = x - np.float32(ix), y - np.float32(iy)
    i = offset + iy * stride + ix
    i = min(max(i, 0), len(texels) - stride - 2)  # memory safety only (see the module's docstring)
    a0, a1, a2 = _channels(texels[i])
    b0, b1, b2 = _channels(texels[i + 1])
    c0, c1, c2 = _channels(texels[i + stride])
    d0, d1, d2 = _channels(texels[i + stride + 1])
    t0, t1, t2 = (b0 - a0) * fx + a0, (b1 - a1) * fx + a1, (b2 - a2) * fx + a2
    u0, u1, u2 = (d0 - c0) * fx + c0, (d1 - c1) * fx + c1, (d2 - c2) * fx + c2
    return (u0 - t0) * fy + t0, (u1 - t1) * fy + t1, (u2 - t2) * fy + t2


@_inline
def _level_sample(texels, mip_rows, mip_rows_i, pad, x, y, row):
    """Bilinear RGB from level-0 padded ``x, y`` at the level ``row`` of ``mip_rows``."""
    shift = np.float32(pad - 0.5)
    sx, sy = mip_rows[row, 0], mip_rows[row, 1]
    return _bilinear(texels, (x - shift) * sx + shift, (y - shift) * sy + shift, mip_rows_i[row, 2], mip_rows_i[row, 3])


@_inline
def _fold(i, period, size, pad):
    return (i % period if period > 0 else min(max(i, 0), size - 1)) + pad


@_inline
def _mix(aa, ab, ba, bb, shift, fx, fy):
    """One channel (bits ``shift``..) of four RGBX words mixed bilinearly in float64, as float32."""
    top = np.float64((aa >> shift) & 255) * (1 - fx) + np.float64((ab >> shift) & 255) * fx
    bottom = np.float64((ba >> shift) & 255) * (1 - fx) + np.float64((bb >> shift) & 255) * fx
    return np.float32(top * (1 - fy) + bottom * fy)


@_jit
def _wrapped(texels, mip_scale, mip_period, mip_size, mip_offset, mip_stride, pad, entry, x, y, level):
    """Bilinear RGB with per-tap wrapping (float64, as ``sample_texture``), for faces that overflow their border."""
    cx = (np.float64(x) - pad + 0.5) * np.float64(mip_scale[entry, level, 0]) - 0.5
    cy = (np.float64(y) - pad + 0.5) * np.float64(mip_scale[entry, level, 1]) - 0.5
    lx, ly = math.floor(cx), math.floor(cy)
    fx, fy = cx - lx, cy - ly
    px, py = mip_period[entry, level, 0], mip_period[entry, level, 1]
    sx, sy = mip_size[entry, level, 0], mip_size[entry, level, 1]
    xa, xb = _fold(int(lx), px, sx, pad), _fold(int(lx) + 1, px, sx, pad)
    ya, yb = _fold(int(ly), py, sy, pad), _fold(int(ly) + 1, py, sy, pad)
    offset, stride = mip_offset[entry, level], mip_stride[entry, level]
    last = len(texels) - 1
    aa, ab = texels[min(offset + ya * stride + xa, last)], texels[min(offset + ya * stride + xb, last)]
    ba, bb = texels[min(offset + yb * stride + xa, last)], texels[min(offset + yb * stride + xb, last)]
    return (_mix(aa, ab, ba, bb, 0, fx, fy), _mix(aa, ab, ba, bb, 8, fx, fy), _mix(aa, ab, ba, bb, 16, fx, fy))


# ----------------------------------------------------------------------------- level of detail


@_inline
def _finite(x):
    return x if math.isfinite(x) else _F0


@_inline
def _footprint(t, nx, ny, nz, dx, dy, dz, inv_focal):
    """A ray cone's footprint on the hit surface: its width (metres), and its long axis (a world vector).

    A pixel's rays spread ``w = t / f`` apart at planar depth ``t``; at
    incidence ``phi`` the footprint is ``w`` wide across the view direction and
    ``w / cos(phi)`` long along its projection on the surface. The long axis
    of a miss (anything non-finite) is 0; its width is not finite.
    """
    w = t * inv_focal
    ndotd = nx * dx + ny * dy + nz * dz
    px, py, pz = dx - ndotd * nx, dy - ndotd * ny, dz - ndotd * nz
    along = np.sqrt(px * px + py * py + pz * pz)
    length = w * np.sqrt(dx * dx + dy * dy + dz * dz) / max(abs(ndotd), _TINY_COS)
    scale = length / max(along, _TINY_LEN)
    return w, _finite(px * scale), _finite(py * scale), _finite(pz * scale)


@_inline
def _level(jac, p, top, w, l1, l2, l3, isotropic2):
    """Face ``p``'s mip level ``lam`` (clamped to ``[0, top]``) for a footprint, its long axis in texels,
    and whether the footprint is near round (long axis squared at most ``isotropic2`` times its width squared:
    one probe does).

    The level is ``log2`` of the longer of the footprint's width and the long
    axis' share of one of ``ANISO_PROBES`` probes, in level-0 texels (the face's
    texel density ``jac[p, 6]`` per metre times the width; the face's world
    to texel map times the axis), finer by ``LOD_BIAS``. Compared squared: one
    ``log2``, no square root. Not finite (a miss): level 0.
    """
    mx = jac[p, 0] * l1 + jac[p, 1] * l2 + jac[p, 2] * l3  # the long axis in level-0 texels
    my = jac[p, 3] * l1 + jac[p, 4] * l2 + jac[p, 5] * l3
    width = w * jac[p, 6]
    across = width * width
    long2 = mx * mx + my * my
    single = long2 <= isotropic2 * across
    along = _F0 if single else long2 * np.float32(1.0 / ANISO_PROBES**2)
    lam = np.log2(across if across > along else along) * _HALF + np.float32(LOD_BIAS)
    if not math.isfinite(lam):
        lam = _F0
    return min(max(lam, _F0), top), mx, my, single


@_inline
def _probes(texels, mip_rows, mip_rows_i, pad, x, y, row, level, frac, mx, my):
    """Minified: ``ANISO_PROBES`` trilinear probes spread evenly along the long axis ``(mx, my)``, averaged.

    The probes stay within ``pad / 2`` texels of ``level`` (the lower one)
    around the hit, inside the entry's border: only a footprint far longer
    than the whole texture (its level clamped at the top of the chain, at
    grazing incidence) is shortened by this.
    """
    if ANISO_PROBES > 1:
        reach = np.sqrt(mx * mx + my * my) * np.float32(0.5 - 0.5 / ANISO_PROBES)  # farthest probe, level-0 texels
        limit = np.float32((pad // 2) << level)
        shrink = min(_ONE, limit / max(reach, _TINY_LEN))
        mx, my = mx * shrink, my * shrink
    r = g = b = _F0
    for k in range(ANISO_PROBES):
        s = np.float32((k + 0.5) / ANISO_PROBES - 0.5)
        px, py = x + s * mx, y + s * my
        l0, l1, l2 = _level_sample(texels, mip_rows, mip_rows_i, pad, px, py, row)
        h0, h1, h2 = _level_sample(texels, mip_rows, mip_rows_i, pad, px, py, row + 1)  # the level above
        r += (h0 - l0) * frac + l0
        g += (h1 - l1) * frac + l1
        b += (h2 - l2) * frac + l2
    inv = np.float32(1.0 / ANISO_PROBES)
    return r * inv, g * inv, b * inv


# ----------------------------------------------------------------------------- one hit


@_inline
def _lit(decode, decode_steps, encode, encode_steps, c, e):
    """sRGB level ``c`` in [0, 255] times linear irradiance ``e``, in linear light, back to sRGB."""
    index = c * np.float32(decode_steps)
    index += _HALF
    linear = decode[min(max(int(index), 0), len(decode) - 1)] * e  # bounds: a NaN colour converts to any integer
    linear = min(max(linear, _F0), _ONE)
    linear = np.sqrt(linear) * np.float32(encode_steps)
    linear += _HALF
    return encode[min(max(int(linear), 0), len(encode) - 1)]


@_inline
def _corners(values, p, k, w0, u, v):
    """Channel ``k`` of face ``p``'s corner values (float32, corner-major rows of 3 channels) at barycentrics."""
    e = values[p, k] * w0
    e += values[p, 3 + k] * u
    e += values[p, 6 + k] * v
    return e


@_jit
def shade(tables, prim, bary, filtered, t, normals, rays, inv_focal, out, start, stop, edge, width, footprint_scale,
          isotropic2):
    """sRGB colours of hits ``start .. stop - 1`` into ``out`` (N, 3) uint8; optionally, their edges.

    Parameters
    ----------
    tables : ShadingTables
    prim : (N,) int32
        Hit faces; anything outside ``[0, F)`` is a miss (face ``F``, black).
    bary : (N, 2) float32
        Open3D's barycentrics: the hit weighs the face's corners ``(1 - u - v, u, v)``.
    filtered : bool
        Textures filtered by each hit's footprint (mip levels, probes); then
        ``t`` (N,) float32 planar depths, ``normals`` (N, 3) float32 and
        ``rays`` (N, 6) float32 (origins, then directions with camera z = 1)
        give it, with ``inv_focal`` ``1 / sqrt(fx fy)``. Otherwise they may be empty.
    edge : (N,) bool
        When not empty (and False), the hits are an image ``width`` pixels
        wide and :func:`_mark_edges` (with ``t``, ``normals``, ``rays`` and
        ``footprint_scale``) marks there the pixels on an edge, while their
        data is at hand.
    isotropic2 : float32
        Footprints whose long axis is at most ``sqrt(isotropic2)`` times
        their width take one trilinear probe, the others ``ANISO_PROBES``
        (``ISOTROPIC ** 2``; ``inf``: all take one).
    """
    has_texture, table, ti, slow, texels = tables.has_texture, tables.table, tables.table_i, tables.slow, tables.texels
    mip_scale, mip_period, mip_size = tables.mip_scale, tables.mip_period, tables.mip_size
    mip_offset, mip_stride, levels, pad = tables.mip_offset, tables.mip_stride, tables.levels, tables.pad
    jac, mip_rows, mip_rows_i, top_level = tables.jacobian, tables.mip_rows, tables.mip_rows_i, tables.top_level
    per_entry = tables.rows_per_entry
    filtered = filtered and tables.mipmapped
    has_base, base, base_per_face, face_materials = tables.has_base, tables.base, tables.base_per_face, tables.face_materials
    has_vc, has_light, corner_light = tables.has_vertex_colors, tables.has_light, tables.corner_light
    corner_colors = tables.corner_colors
    decode, decode_steps, encode, encode_steps = tables.decode, tables.decode_steps, tables.encode, tables.encode_steps
    planes = tables.planes
    n_faces = len(face_materials) - 1
    find_edges = len(edge) > 0
    width = max(width, 1)
    height = len(prim) // width
    pixel_row = start // width  # counted along: an integer division per pixel costs
    pixel_col = start - pixel_row * width
    for i in range(start, stop):
        if find_edges:
            _mark_edges(prim, t, normals, rays, face_materials, planes, footprint_scale, i, pixel_col, pixel_row,
                        width, height, edge)  # fmt: skip
            pixel_col += 1
            if pixel_col == width:
                pixel_col = 0
                pixel_row += 1
        p = prim[i]
        if p < 0 or p > n_faces:
            p = n_faces
        u, v = bary[i, 0], bary[i, 1]
        w0 = _ONE - u
        w0 -= v
        r = g = b = _F0
        if has_texture:  # texel coordinates a + u b + v c in the face's padded atlas entry
            x = table[p, 2] * u
            x += table[p, 4] * v
            x += table[p, 0]
            y = table[p, 3] * u
            y += table[p, 5] * v
            y += table[p, 1]
            entry = ti[p, 8]
            if not filtered:
                if slow[p]:
                    r, g, b = _wrapped(texels, mip_scale, mip_period, mip_size, mip_offset, mip_stride, pad, entry, x, y, 0)
                else:
                    r, g, b = _bilinear(texels, x, y, ti[p, 6], ti[p, 7])
            else:
                w, l1, l2, l3 = _footprint(t[i], normals[i, 0], normals[i, 1], normals[i, 2],
                                           rays[i, 3], rays[i, 4], rays[i, 5], inv_focal)  # fmt: skip
                lam, mx, my, single = _level(jac, p, top_level[entry], w, l1, l2, l3, isotropic2)
                level = int(lam)
                frac = lam - np.float32(level)
                row = entry * per_entry + level
                if slow[p]:  # one probe, per-tap wrapping, at the same levels
                    a0, a1, a2 = _wrapped(texels, mip_scale, mip_period, mip_size, mip_offset, mip_stride, pad,
                                          entry, x, y, level)  # fmt: skip
                    b0, b1, b2 = _wrapped(texels, mip_scale, mip_period, mip_size, mip_offset, mip_stride, pad,
                                          entry, x, y, min(level + 1, levels[entry] - 1))  # fmt: skip
                    r, g, b = a0 + frac * (b0 - a0), a1 + frac * (b1 - a1), a2 + frac * (b2 - a2)
                elif lam > _F0 and single:  # a near-round footprint: one trilinear probe
                    r, g, b = _level_sample(texels, mip_rows, mip_rows_i, pad, x, y, row)
                    h0, h1, h2 = _level_sample(texels, mip_rows, mip_rows_i, pad, x, y, row + 1)
                    r, g, b = (h0 - r) * frac + r, (h1 - g) * frac + g, (h2 - b) * frac + b
                elif lam > _F0:
                    r, g, b = _probes(texels, mip_rows, mip_rows_i, pad, x, y, row, level, frac, mx, my)
                else:  # magnified: one bilinear tap of level 0
                    r, g, b = _level_sample(texels, mip_rows, mip_rows_i, pad, x, y, row)
        if has_base:
            m = p if base_per_face else face_materials[p]
            if has_texture:
                r, g, b = r * base[0, m], g * base[1, m], b * base[2, m]
            else:
                r, g, b = base[0, m] * _255, base[1, m] * _255, base[2, m] * _255
        if has_vc:
            a0, a1, a2 = _channels(corner_colors[p, 0])
            b0, b1, b2 = _channels(corner_colors[p, 1])
            c0, c1, c2 = _channels(corner_colors[p, 2])
            v0 = a0 * w0
            v0 += b0 * u
            v0 += c0 * v
            v1 = a1 * w0
            v1 += b1 * u
            v1 += c1 * v
            v2 = a2 * w0
            v2 += b2 * u
            v2 += c2 * v
            if has_texture or has_base:
                r, g, b = (r * v0) * _INV255, (g * v1) * _INV255, (b * v2) * _INV255
            else:
                r, g, b = v0, v1, v2
        if has_base or has_vc:  # a bilinear texel mix stays in range
            r, g, b = min(max(r, _F0), _255), min(max(g, _F0), _255), min(max(b, _F0), _255)
        if has_light:
            r = _lit(decode, decode_steps, encode, encode_steps, r, _corners(corner_light, p, 0, w0, u, v))
            g = _lit(decode, decode_steps, encode, encode_steps, g, _corners(corner_light, p, 1, w0, u, v))
            b = _lit(decode, decode_steps, encode, encode_steps, b, _corners(corner_light, p, 2, w0, u, v))
        # round half up, as the reference does
        out[i, 0] = min(max(int(r + _HALF), 0), 255)
        out[i, 1] = min(max(int(g + _HALF), 0), 255)
        out[i, 2] = min(max(int(b + _HALF), 0), 255)


# ----------------------------------------------------------------------------- edges


@_inline
def _face(prim, i, n_faces):
    p = prim[i]
    return n_faces if p < 0 or p > n_faces else p


@_inline
def _surface(rays, t, normals, i):
    """Hit ``i``: whether it hit, its depth (0 if not), its point, its normal and its plane's offset ``n . p``."""
    d = t[i]
    hit = math.isfinite(d)
    if not hit:
        d = _F0
    px, py, pz = rays[i, 0] + d * rays[i, 3], rays[i, 1] + d * rays[i, 4], rays[i, 2] + d * rays[i, 5]
    nx, ny, nz = normals[i, 0], normals[i, 1], normals[i, 2]
    return hit, d, px, py, pz, nx, ny, nz, nx * px + ny * py + nz * pz


@_inline
def _mark_edges(prim, t, normals, rays, face_materials, planes, footprint_scale, i, x, y, width, height, edge):
    """Mark in ``edge`` both pixels of each pair, pixel ``i`` (flat, in rows ``width`` wide: column ``x``,
    row ``y``) and its right or lower neighbour, that straddles an edge; never unmark (``edge`` starts False).

    A pair does when its hits' materials differ (a miss is material ``M``),
    or they hit different faces whose surfaces are apart by more than
    ``footprint_scale * t`` along either's normal (a depth step or a crease;
    the inner edges of a flat wall's triangles are not edges: faces with one
    ``planes`` key skip the test). Each pair is tested once, from its upper
    or left pixel, and only True is ever stored, so two threads that take
    the pixels in chunks may both mark the row after a chunk's end. Misses
    are faces outside ``[0, F)``.
    """
    n_faces = len(face_materials) - 1
    a = _face(prim, i, n_faces)
    for k in range(2):
        if k == 0:
            if x == width - 1:
                continue
            j = i + 1
        else:
            if y == height - 1:
                continue
            j = i + width
        if j >= len(prim):  # only a caller's wrong width could get here: never index past the arrays
            continue
        b = _face(prim, j, n_faces)
        if face_materials[a] != face_materials[b] or (
            a != b and planes[a] != planes[b] and _apart(rays, t, normals, i, j, footprint_scale)
        ):
            edge[i] = True
            edge[j] = True


@_inline
def _apart(rays, t, normals, i, j, footprint_scale):
    """Whether hits ``i`` and ``j`` both hit, and either's point is off the other's plane by more than a footprint."""
    hit_a, ta, pax, pay, paz, nax, nay, naz, off_a = _surface(rays, t, normals, i)
    hit_b, tb, pbx, pby, pbz, nbx, nby, nbz, off_b = _surface(rays, t, normals, j)
    return hit_a and hit_b and (abs(nax * pbx + nay * pby + naz * pbz - off_a) > ta * footprint_scale
                                or abs(nbx * pax + nby * pay + nbz * paz - off_b) > tb * footprint_scale)  # fmt: skip


@_jit
def geometric_edges(prim, t, normals, rays, footprint_scale, face_materials, planes, edge, width, start, stop):
    """:func:`_mark_edges` of pixels ``start .. stop - 1`` into ``edge`` (N,) bool, False where no edge was
    marked yet (all arrays flat, as in :func:`shade`)."""
    width = max(width, 1)
    height = len(prim) // width
    for i in range(start, stop):
        y = i // width
        _mark_edges(prim, t, normals, rays, face_materials, planes, footprint_scale, i, i - y * width, y, width, height,
                    edge)  # fmt: skip


@_jit
def colour_edges(prim, rgb, plain, edge_color, edge, width, start, stop):
    """Also mark in ``edge`` (N,) bool both pixels of each pair (pixel ``start .. stop - 1`` and its right or
    lower neighbour) whose faces are both ``plain`` (their colour varies without a texture) and whose colours
    in ``rgb`` (N, 3) uint8 differ by more than ``edge_color`` levels in some channel; as :func:`_mark_edges`."""
    n_faces = len(plain) - 1
    height = len(prim) // max(width, 1)
    for i in range(start, stop):
        if not plain[_face(prim, i, n_faces)]:
            continue
        y = i // width
        x = i - y * width
        for j in (i + 1 if x < width - 1 else -1, i + width if y < height - 1 else -1):
            if 0 <= j < len(prim) and plain[_face(prim, j, n_faces)]:  # bounded, as in _mark_edges
                for c in range(3):
                    if abs(np.int32(rgb[i, c]) - np.int32(rgb[j, c])) > edge_color:
                        edge[i] = True
                        edge[j] = True


# ----------------------------------------------------------------------------- rays, and the edge samples


@_jit
def grid_rays(origin, rows, cols, out):
    """Into ``out`` (H, W, 6) float32: origin ``origin`` (3,) and direction ``rows[:, i] + cols[:, j]``
    (float32, (3, H) and (3, W)) at pixel ``(i, j)``, the sum numpy's broadcast add would give."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for k in range(3):
                out[i, j, k] = origin[k]
                out[i, j, 3 + k] = rows[k, i] + cols[k, j]


@_jit
def back_face_hits(prim, normals, rays, single, out):
    """Into ``out`` (N,) int64, the rays whose hit is the back of a single-sided face; returns how many.

    ``prim`` (N,) int32 hit faces (anything outside ``[0, F)`` a miss), ``normals`` (N, 3) float32 their front
    normals, ``rays`` (N, 6) float32, ``single`` (F,) bool: the faces seen from their front only. A back: the
    normal along the ray (docs/design.md, "Back faces").
    """
    n = 0
    for i in range(len(prim)):
        p = prim[i]
        if p < 0 or p >= len(single) or not single[p]:
            continue
        if normals[i, 0] * rays[i, 3] + normals[i, 1] * rays[i, 4] + normals[i, 2] * rays[i, 5] > 0:
            out[n] = i
            n += 1
    return n


@_jit
def subpixel_rays(index, width, subpixel, K, cam2world, out):
    """Into ``out`` (M S, 6) float32: the rays of pixels ``index`` (M,) (flat, row-major in rows ``width`` wide)
    at the sub-pixel offsets ``subpixel`` (S, 2), directions with camera-frame z = 1 (``t_hit`` stays planar depth).
    """
    n = len(subpixel)
    for m in range(len(index)):
        y, x = divmod(index[m], width)
        for s in range(n):
            v = (y + subpixel[s, 1] - K[1, 2]) / K[1, 1]
            u = (x + subpixel[s, 0] - K[0, 2] - K[0, 1] * v) / K[0, 0]
            row = m * n + s
            for k in range(3):
                out[row, k] = cam2world[k, 3]
                out[row, 3 + k] = cam2world[k, 0] * u + cam2world[k, 1] * v + cam2world[k, 2]


@_jit
def average_samples(rgb, index, samples):
    """Pixels ``index`` of ``rgb`` (N, 3) uint8 averaged, in place, with their ``S`` samples each in
    ``samples`` (M S, 3) uint8 (the centre sample counts as one more), rounded half up."""
    n = len(samples) // max(len(index), 1)
    inv = np.float32(1.0 / (n + 1))
    for m in range(len(index)):
        i = index[m]
        for c in range(3):
            total = np.float32(rgb[i, c])
            for s in range(n):
                total += np.float32(samples[m * n + s, c])
            rgb[i, c] = min(int(total * inv + _HALF), 255)
