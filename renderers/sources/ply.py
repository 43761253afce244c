"""PLY meshes as ScanNet and Replica ship them.

* ScanNet v2 ``scans/<scene>/<scene>_vh_clean_2.ply``: binary little-endian,
  ``vertex`` with ``x y z red green blue alpha``, ``face`` with a
  ``vertex_indices`` list of 3; Z-up, metres.
* Replica ``<room>/mesh.ply``: binary little-endian, ``vertex`` with
  ``x y z nx ny nz red green blue``, ``face`` with a ``vertex_indices`` list of
  **4** (quads); Z-up.

The reader handles every PLY flavour those and similar tools write: ASCII and
both binary byte orders, any scalar types, extra vertex/face properties and
extra elements (skipped), and faces of any vertex count (fan-triangulated; a
file whose faces all have the same count is read in one vectorised step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderers.scene import Material, Scene, SceneFormatError, z_up_to_y_up, Y_UP_FROM_Z_UP
from renderers.sources import SceneSource, read_bytes, register_source

__all__ = ["PlySource", "PlyElement", "parse_ply"]

log = logging.getLogger(__name__)

_SCALARS = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_FACE_LIST_NAMES = ("vertex_indices", "vertex_index")


@dataclass
class PlyElement:
    """One element of the header: its name, count and properties.

    ``properties`` holds ``(name, dtype)`` for scalars and
    ``(name, (count_dtype, item_dtype))`` for lists.
    """

    name: str
    count: int
    properties: list[tuple[str, object]]


def _parse_header(data: bytes, path) -> tuple[str, list[PlyElement], int]:
    if not data.startswith(b"ply"):
        raise SceneFormatError(path, f"not a PLY file: starts {bytes(data[:8])!r}, expected b'ply'")
    end = data.find(b"end_header")
    if end < 0:
        raise SceneFormatError(path, "truncated PLY: no end_header line")
    body = data.find(b"\n", end) + 1
    if body == 0:
        raise SceneFormatError(path, "truncated PLY: nothing after end_header")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[PlyElement] = []
    for lineno, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
                if fmt not in _FORMATS:
                    raise SceneFormatError(path, f"unknown PLY format {fmt!r}")
            elif words[0] == "element":
                elements.append(PlyElement(words[1], int(words[2]), []))
                if elements[-1].count < 0:
                    raise ValueError("negative count")
            elif words[0] == "property":
                if not elements:
                    raise ValueError("property before any element")
                if words[1] == "list":
                    prop = (words[4], (np.dtype(_SCALARS[words[2]]), np.dtype(_SCALARS[words[3]])))
                else:
                    prop = (words[2], np.dtype(_SCALARS[words[1]]))
                elements[-1].properties.append(prop)
            else:
                raise ValueError(f"unknown keyword {words[0]!r}")
        except SceneFormatError:
            raise
        except (IndexError, KeyError, ValueError) as e:
            raise SceneFormatError(path, f"malformed PLY header line {lineno}: {line.strip()!r} ({e})") from None
    if fmt is None:
        raise SceneFormatError(path, "PLY header has no format line")
    return fmt, elements, body


def parse_ply(data: bytes, path) -> dict[str, dict[str, np.ndarray]]:
    """Parse a PLY file into ``{element: {property: array}}``.

    Scalar properties are ``(count,)`` arrays in native byte order. A list
    property is ``(count, n)`` when every row has ``n`` items, else a Python
    list of 1-D arrays.
    """
    fmt, elements, offset = _parse_header(data, path)
    order = _FORMATS[fmt]
    if order is None:
        return _parse_ascii(data[offset:], elements, path)
    out: dict[str, dict[str, np.ndarray]] = {}
    for el in elements:
        out[el.name], offset = _read_binary_element(data, offset, el, order, path)
    return out


def _read_binary_element(data: bytes, offset: int, el: PlyElement, order: str, path):
    def truncated(need: int) -> SceneFormatError:
        return SceneFormatError(
            path,
            f"truncated PLY: element '{el.name}' ({el.count} rows) needs {need} more bytes "
            f"at byte {offset}, the file has {len(data) - offset}",
        )

    lists = [i for i, (_, t) in enumerate(el.properties) if isinstance(t, tuple)]
    if not lists:
        dtype = np.dtype([(n, t.newbyteorder(order)) for n, t in el.properties])
        need = dtype.itemsize * el.count
        if offset + need > len(data):
            raise truncated(need)
        rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
        return {n: rows[n].astype(rows[n].dtype.newbyteorder("=")) for n, _ in el.properties}, offset + need
    if el.count == 0:
        return {n: np.zeros((0, 3) if isinstance(t, tuple) else (0,)) for n, t in el.properties}, offset
    # Fast path: guess each list's length from the first row, read all rows as
    # one structured array, then check every row's counts agree.
    fields, pos = [], offset
    for name, t in el.properties:
        if isinstance(t, tuple):
            cnt_t, item_t = (x.newbyteorder(order) for x in t)
            if pos + cnt_t.itemsize > len(data):
                raise truncated(cnt_t.itemsize)
            n = int(np.frombuffer(data, dtype=cnt_t, count=1, offset=pos)[0])
            fields += [(name + "#n", cnt_t), (name, item_t, (n,))]
            pos += cnt_t.itemsize + n * item_t.itemsize
        else:
            fields.append((name, t.newbyteorder(order)))
            pos += t.itemsize
    dtype = np.dtype(fields)
    need = dtype.itemsize * el.count
    if offset + need <= len(data):
        rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
        uniform = all((rows[name + "#n"] == rows.dtype[name].shape[0]).all() for name, t in el.properties if isinstance(t, tuple))
        if uniform:
            res = {name: rows[name].astype(rows[name].dtype.newbyteorder("=")) for name, _ in el.properties}
            return res, offset + need
    return _read_binary_rows(data, offset, el, order, path)


def _read_binary_rows(data: bytes, offset: int, el: PlyElement, order: str, path):
    """Slow path for elements whose list lengths vary row to row."""
    cols: dict[str, list] = {n: [] for n, _ in el.properties}
    mv = memoryview(data)
    pos = offset
    try:
        for _ in range(el.count):
            for name, t in el.properties:
                if isinstance(t, tuple):
                    cnt_t, item_t = (x.newbyteorder(order) for x in t)
                    n = int(np.frombuffer(mv, dtype=cnt_t, count=1, offset=pos)[0])
                    pos += cnt_t.itemsize
                    cols[name].append(np.frombuffer(mv, dtype=item_t, count=n, offset=pos).astype(item_t.newbyteorder("=")))
                    pos += n * item_t.itemsize
                else:
                    tt = t.newbyteorder(order)
                    cols[name].append(np.frombuffer(mv, dtype=tt, count=1, offset=pos)[0])
                    pos += t.itemsize
    except ValueError:
        raise SceneFormatError(path, f"truncated PLY: element '{el.name}' runs past the end of the file") from None
    res = {}
    for name, t in el.properties:
        res[name] = cols[name] if isinstance(t, tuple) else np.asarray(cols[name], dtype=t)
    return res, pos


def _parse_ascii(body: bytes, elements: list[PlyElement], path):
    lines = body.decode("ascii", errors="replace").splitlines()
    out: dict[str, dict[str, np.ndarray]] = {}
    row = 0
    for el in elements:
        if row + el.count > len(lines):
            raise SceneFormatError(path, f"truncated PLY: element '{el.name}' needs {el.count} lines, {len(lines) - row} remain")
        cols: dict[str, list] = {n: [] for n, _ in el.properties}
        for line in lines[row : row + el.count]:
            words = line.split()
            k = 0
            try:
                for name, t in el.properties:
                    if isinstance(t, tuple):
                        n = int(words[k])
                        cols[name].append(np.asarray(words[k + 1 : k + 1 + n], dtype=t[1]))
                        if len(cols[name][-1]) != n:
                            raise ValueError("short list")
                        k += 1 + n
                    else:
                        cols[name].append(float(words[k]))
                        k += 1
            except (IndexError, ValueError) as e:
                raise SceneFormatError(path, f"malformed ASCII PLY row in element '{el.name}': {line[:60]!r} ({e})") from None
        row += el.count
        res = {}
        for name, t in el.properties:
            if isinstance(t, tuple):
                lens = {len(a) for a in cols[name]}
                res[name] = np.stack(cols[name]) if len(lens) == 1 and cols[name] else cols[name]
            else:
                res[name] = np.asarray(cols[name], dtype=t)
        out[el.name] = res
    return out


def _triangulate(lists, path) -> np.ndarray:
    """(F, 3) int64 triangles from faces of any vertex count (fan triangulation)."""
    if isinstance(lists, np.ndarray):
        n = lists.shape[1]
        if n < 3:
            raise SceneFormatError(path, f"faces have {n} vertices; at least 3 are needed")
        k = np.arange(1, n - 1)
        tris = np.stack([np.repeat(lists[:, :1], n - 2, axis=1), lists[:, k], lists[:, k + 1]], axis=2)
        return tris.reshape(-1, 3).astype(np.int64)
    out = []
    for face in lists:
        for k in range(1, len(face) - 1):
            out.append((face[0], face[k], face[k + 1]))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


@register_source
class PlySource(SceneSource):
    """Binary or ASCII PLY with per-vertex colours (ScanNet, Replica)."""

    name = "ply"
    suffixes = (".ply",)

    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        path = Path(location)
        elements = parse_ply(read_bytes(path), path)
        vertex = elements.get("vertex")
        if vertex is None or not all(k in vertex for k in "xyz"):
            raise SceneFormatError(path, "PLY has no 'vertex' element with x, y, z")
        face = elements.get("face")
        if face is None:
            raise SceneFormatError(path, "PLY has no 'face' element: a point cloud, not a mesh")
        key = next((k for k in _FACE_LIST_NAMES if k in face), None)
        if key is None:
            raise SceneFormatError(path, "PLY 'face' element has no vertex_indices list")
        points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
        faces = _triangulate(face[key], path)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
            bad = faces.max() if faces.max() >= len(points) else faces.min()
            raise SceneFormatError(path, f"a face refers to vertex {int(bad)} but there are {len(points)} vertices")
        colors = None
        for names in _COLOR_NAMES:
            if all(n in vertex for n in names):
                c = np.stack([vertex[n] for n in names], axis=1)
                if c.dtype.kind == "f":
                    c = np.clip(c * 255.0 + 0.5, 0, 255)
                colors = c.astype(np.uint8)
                break
        file_to_world = np.eye(4)
        if up == "z":
            points = z_up_to_y_up(points)
            file_to_world = Y_UP_FROM_Z_UP.copy()
        return Scene(
            name=scene_id,
            vertices=points,
            faces=faces.astype(np.uint32),
            vertex_colors=colors,
            materials=(Material(name="vertex_colors"),),
            source=str(path),
            file_to_world=file_to_world,
        ).validate()
