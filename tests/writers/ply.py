"""A PLY writer producing the byte layouts ScanNet and Replica ship."""

from __future__ import annotations

import numpy as np

_TYPE_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}


def write_ply(
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None = None,
    *,
    face_colors: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    alpha: bool = False,
    fmt: str = "binary_little_endian",
    index_type: str = "i4",
    count_type: str = "u1",
) -> bytes:
    """Encode a mesh as PLY.

    Parameters
    ----------
    vertices : (V, 3) float
        Written as float32 ``x y z`` (file coordinates, e.g. Z-up).
    faces : (F, n) int
        ``n`` = 3 (ScanNet) or 4 (Replica quads); a list of ragged rows is
        accepted too (mixed polygons).
    colors : (V, 3) uint8, optional
        ``red green blue`` (and ``alpha`` = 255 when ``alpha``, as ScanNet).
    face_colors : (F, 3) or (F, 4) uint8 or float, optional
        ``red green blue [alpha]`` of each face, after its ``vertex_indices``
        (``uchar`` for integers, ``float`` for floats).
    normals : (V, 3) float, optional
        ``nx ny nz`` after the position (as Replica).
    fmt : {"binary_little_endian", "binary_big_endian", "ascii"}
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    props = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    cols = [vertices[:, 0], vertices[:, 1], vertices[:, 2]]
    if normals is not None:
        props += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
        cols += [normals[:, 0], normals[:, 1], normals[:, 2]]
    if colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        cols += [colors[:, 0], colors[:, 1], colors[:, 2]]
        if alpha:
            props.append(("alpha", "u1"))
            cols.append(np.full(len(vertices), 255, np.uint8))
    rows = [list(f) for f in faces]
    fprops: list[tuple[str, str]] = []
    fcols: list[np.ndarray] = []
    if face_colors is not None:
        fc = np.asarray(face_colors)
        t = "f4" if fc.dtype.kind == "f" else "u1"
        fprops = [(n, t) for n in ("red", "green", "blue", "alpha")[: fc.shape[1]]]
        fcols = [fc[:, k] for k in range(fc.shape[1])]
    header = [
        "ply",
        f"format {fmt} 1.0",
        "comment written by pairgen tests",
        f"element vertex {len(vertices)}",
        *[f"property {_TYPE_NAMES[t]} {n}" for n, t in props],
        f"element face {len(rows)}",
        f"property list {_TYPE_NAMES[count_type]} {_TYPE_NAMES[index_type]} vertex_indices",
        *[f"property {_TYPE_NAMES[t]} {n}" for n, t in fprops],
        "end_header",
    ]
    head = ("\n".join(header) + "\n").encode("ascii")
    if fmt == "ascii":
        vlines = [" ".join(repr(float(c[i])) if t[0] == "f" else str(int(c[i])) for c, (_, t) in zip(cols, props)) for i in range(len(vertices))]
        flines = [
            " ".join([str(len(r))] + [str(int(x)) for x in r] + [repr(float(c[i])) if t[0] == "f" else str(int(c[i])) for c, (_, t) in zip(fcols, fprops)])
            for i, r in enumerate(rows)
        ]
        return head + ("\n".join(vlines + flines) + "\n").encode("ascii")
    order = "<" if fmt == "binary_little_endian" else ">"
    vdtype = np.dtype([(n, order + t) for n, t in props])
    varr = np.empty(len(vertices), dtype=vdtype)
    for (n, _), c in zip(props, cols):
        varr[n] = c
    lens = {len(r) for r in rows}
    if len(lens) == 1:
        n = lens.pop()
        fdtype = np.dtype([("n", order + count_type), ("idx", order + index_type, (n,))] + [(k, order + t) for k, t in fprops])
        farr = np.empty(len(rows), dtype=fdtype)
        farr["n"] = n
        farr["idx"] = np.asarray(rows)
        for (k, _), c in zip(fprops, fcols):
            farr[k] = c
        fbytes = farr.tobytes()
    else:
        cdtype = np.dtype([(k, order + t) for k, t in fprops])
        crow = np.empty(len(rows), dtype=cdtype)
        for (k, _), c in zip(fprops, fcols):
            crow[k] = c
        fbytes = b"".join(
            np.array([len(r)], dtype=order + count_type).tobytes() + np.asarray(r, dtype=order + index_type).tobytes()
            + (crow[i : i + 1].tobytes() if fprops else b"")
            for i, r in enumerate(rows)
        )
    return head + varr.tobytes() + fbytes
