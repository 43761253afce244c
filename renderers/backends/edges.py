"""Edge pixels: where the raycast backend takes extra samples (``antialias="full"``).

A pixel straddles an edge when, with its right or lower neighbour, it hits
another material (a miss counts as one), or a surface apart from its own by
more than ``EDGE_GAP`` pixel footprints along either's normal (a depth step
or a crease; faces with one plane key, :func:`~renderers.backends.face_tables.plane_keys`,
skip that test: the inner edges of a flat wall's triangles are not edges), or,
between two faces coloured without a texture, a colour more than
``EDGE_COLOR`` levels apart. Both pixels of such a pair get ``EDGE_SAMPLES``
more rays at the fixed sub-pixel offsets ``SUBPIXEL``, averaged with the
centre sample (docs/design.md, "Renderer notes", Edges).

The renderer finds edges while it shades
(:meth:`~renderers.backends.raycast.RaycastRenderer.shade_hits`); :func:`edge_pixels`
is the same search on its own, for tests and callers with their own hits.
"""

from __future__ import annotations

import numpy as np

from renderers.backends import shading_kernels
from renderers.backends.face_tables import own_plane_keys

__all__ = ["EDGE_COLOR", "EDGE_GAP", "EDGE_SAMPLES", "SUBPIXEL", "edge_pixels"]

EDGE_GAP = 0.5  # pixel footprints between two hits' surfaces, along a normal, that make an edge
EDGE_COLOR = 48  # levels between two untextured neighbours' colours that make an edge
# Extra samples per edge pixel (medium apartment vs 8 x 8, benchmarks/fidelity.py: 2 give 42.3 dB, 4 in the
# four quadrants 42.8, the edge samples' cast and shading half of 4's: about 0.7 ms a 256^2 view of the large one).
EDGE_SAMPLES = 2
# Fixed sub-pixel offsets of the edge samples: in two opposite quadrants, a quarter pixel from the centre along
# each axis and jittered by up to an eighth (seeded), so that with the centre sample they are centred on the pixel.
_pattern = np.random.default_rng(20261203)
SUBPIXEL = np.array([(0.25, 0.25), (-0.25, -0.25)]) + _pattern.uniform(-0.125, 0.125, (EDGE_SAMPLES, 2))
del _pattern


def edge_pixels(prim, hits, rays, K, rgb, face_materials, untextured, planes=None) -> np.ndarray:
    """(H, W) bool: the pixels that straddle a geometric or material edge (see the module's docstring).

    Parameters
    ----------
    prim : (H, W) int
        Hit faces; anything outside ``[0, F)`` is a miss.
    hits : dict
        Open3D's hits of the view's rays (``t_hit``, ``primitive_normals``).
    rays : (H, W, 6) float32
    K : (3, 3)
    rgb : (H, W, 3) uint8
        The pixel-centre colours.
    face_materials : (F + 1,) int
        Material of each face, misses last (their own value):
        :attr:`FaceTables.face_materials <renderers.backends.face_tables.FaceTables>`.
    untextured : (F + 1,) bool or None
        Faces whose colour varies without a texture: colour steps between two
        of them are edges too. None: no such faces (``FaceTables.untextured``).
    planes : (F + 1,) int64, optional
        :func:`~renderers.backends.face_tables.plane_keys`; without them every
        pair of faces gets the plane test.
    """
    h, w = prim.shape
    planes = own_plane_keys(len(face_materials)) if planes is None else planes
    t, normals, rays, inv_focal = shading_kernels.hit_geometry(hits, rays, K)
    flat = np.ascontiguousarray(prim, np.int32).reshape(-1)
    edge = np.zeros(h * w, bool)
    face_materials = np.ascontiguousarray(face_materials, np.int32)
    shading_kernels.geometric_edges(flat, t, normals, rays, inv_focal * np.float32(EDGE_GAP), face_materials, planes,
                                    edge, w, 0, h * w)  # fmt: skip
    if untextured is not None:
        colours = np.ascontiguousarray(rgb, np.uint8).reshape(-1, 3)
        shading_kernels.colour_edges(flat, colours, np.ascontiguousarray(untextured, bool), EDGE_COLOR, edge, w, 0,
                                     h * w)  # fmt: skip
    return edge.reshape(h, w)
