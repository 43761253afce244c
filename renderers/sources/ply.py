"""PLY meshes as ScanNet, Replica and scanning tools ship them.

* ScanNet v2 ``scans/<scene>/<scene>_vh_clean_2.ply``: binary little-endian,
  ``vertex`` with ``x y z red green blue alpha``, ``face`` with a
  ``vertex_indices`` list of 3; Z-up, metres.
* Replica ``<room>/mesh.ply``: binary little-endian, ``vertex`` with
  ``x y z nx ny nz red green blue``, ``face`` with a ``vertex_indices`` list of
  **4** (quads); Z-up.
* Scans whose colour is stored per face (``face`` with ``red green blue``
  beside its ``vertex_indices``, as MeshLab and some reconstruction tools
  write): the colours go to :attr:`Scene.face_colors`, one per triangle.

The container is read by `plyfile <https://github.com/dranjan/plyfile>`_:
ASCII and both binary byte orders, any scalar types, extra properties and
elements (ignored), faces of any vertex count, each element as a numpy
structured array and nothing done to the mesh (trimesh's PLY loader, by
contrast, merges vertices and processes the geometry). What stays here:

* **Declared sizes are checked before plyfile sees them.** plyfile allocates
  an element's rows before reading them (``np.empty(count)``) on its ASCII and
  variable-length-list paths, so a header claiming 10^12 rows would be a
  MemoryError; :func:`read_ply` first checks every element's rows against the
  bytes the file has and raises a SceneFormatError naming the file.
* **The fast path for faces.** plyfile reads a binary list property with a
  Python loop per row unless it is told the list length (``known_list_len``,
  which it then verifies on every row). The length is read from the first
  face row; a file whose faces differ in vertex count is read again row by row.
  plyfile has no public header-only parser: :func:`read_ply` calls
  ``PlyData._parse_header`` (as in plyfile 1.0 to 1.1), hence the version
  bounds in ``pyproject.toml``.
* **Messages.** plyfile's exceptions are turned into SceneFormatErrors that
  name the file, say ``truncated PLY``, ``malformed PLY header line N`` or
  ``unknown PLY format``, and quote the offending header line.
* Fan triangulation of polygons, colour conversion, and the Z-up rotation.

Sides: a PLY has no material, so nothing says which side of a face is seen;
its one material is double-sided (docs/design.md, "Back faces").

Colours: ``red green blue`` (or ``r g b``, ``diffuse_red...``) of the vertex
or face element, ``alpha`` ignored; ``uchar`` as is, floats in [0, 1] scaled
to [0, 255], other integer types clipped to [0, 255]. A mesh with neither is
loaded white, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElementParseError, PlyHeaderParseError, PlyListProperty, PlyParseError

from renderers.scene import Y_UP_FROM_Z_UP, Material, Scene, SceneFormatError, z_up_to_y_up
from renderers.sources.base import SceneSource, open_regular, register_source

__all__ = ["PlySource", "read_ply"]

log = logging.getLogger(__name__)

_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_FACE_LIST_NAMES = ("vertex_indices", "vertex_index")
_HEADER_LIMIT = 1 << 20  # bytes of header searched for the line a message quotes
_QUOTE_LIMIT = 200  # characters of a header line quoted in a message


def read_ply(path: str | Path) -> PlyData:
    """Read a PLY file with plyfile, checking its declared sizes first.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    plyfile.PlyData
        Binary elements are memory-mapped (copy-on-write): copy what you keep.

    Raises
    ------
    SceneFormatError
        The file is missing, empty, not a PLY file, has a malformed header,
        declares more rows than it holds, or its data cannot be parsed; the
        message names the file.
    """
    path = Path(path)
    with _open(path) as stream:
        if stream.read(3) != b"ply":
            stream.seek(0)
            raise SceneFormatError(path, f"not a PLY file: starts {stream.read(8)!r}, expected b'ply'")
        stream.seek(0)
        header = _parse_header(stream, path)
        body = stream.tell()
        _check_sizes(header, os.fstat(stream.fileno()).st_size - body, path)
        guess = _list_lengths(header, stream, body)
        for known in ([guess, {}] if guess else [{}]):
            stream.seek(0)
            try:
                return PlyData.read(stream, known_list_len=known)
            except PlyElementParseError as e:
                if known:  # faces of differing vertex counts, or truncated: read row by row to tell
                    continue
                raise _element_error(e, header, path) from None
            except (PlyParseError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as e:
                raise SceneFormatError(path, f"malformed PLY data: {e}") from None
    raise AssertionError("unreachable")


def _open(path: Path):
    """The file opened for binary reading (regular files only, see ``open_regular``); empty is refused."""
    stream = open_regular(path)
    if os.fstat(stream.fileno()).st_size == 0:
        stream.close()
        raise SceneFormatError(path, "file is empty")
    return stream


def _header_line(stream, number: int) -> str:
    """Header line ``number`` (1-based) of the file, for messages."""
    stream.seek(0)
    lines = stream.read(_HEADER_LIMIT).split(b"\n")
    if not 1 <= number <= len(lines):
        return ""
    line = lines[number - 1].decode("ascii", errors="replace").strip()
    return line if len(line) <= _QUOTE_LIMIT else line[:_QUOTE_LIMIT] + "..."


def _parse_header(stream, path: Path) -> PlyData:
    """plyfile's header parse (no element data), with its errors in our words."""
    try:
        header = PlyData._parse_header(stream)  # noqa: SLF001 -- no public header-only API
    except PlyHeaderParseError as e:
        if e.message == "early end-of-file":
            raise SceneFormatError(path, "truncated PLY: no end_header line") from None
        line = _header_line(stream, e.line or 0)
        if e.message.startswith("don't understand format"):
            fmt = line.split()[1] if len(line.split()) > 1 else line
            raise SceneFormatError(path, f"unknown PLY format {fmt!r}") from None
        raise SceneFormatError(path, f"malformed PLY header line {e.line}: {line!r} ({e.message})") from None
    except (ValueError, UnicodeDecodeError) as e:  # duplicate names, non-ASCII header bytes
        raise SceneFormatError(path, f"malformed PLY header: {e}") from None
    for el in header.elements:
        if el.count < 0:
            raise SceneFormatError(path, f"malformed PLY header: element '{el.name}' has a negative count ({el.count})")
    return header


def _check_sizes(header: PlyData, available: int, path: Path) -> None:
    """Refuse elements that declare more rows than the bytes after the header can hold.

    A binary row takes at least its scalars and list counts; an ASCII row at
    least one character and one separator per property.
    """
    need = 0
    for el in header.elements:
        if header.text:
            row = 2 * len(el.properties)
        else:
            row = sum(np.dtype(p.list_dtype()[0] if isinstance(p, PlyListProperty) else p.dtype()).itemsize
                      for p in el.properties)  # fmt: skip
        need += el.count * row
        if need > available + header.text:  # the last ASCII line may lack its newline
            raise SceneFormatError(
                path,
                f"truncated PLY: element '{el.name}' ({el.count} rows) needs at least {need} bytes "
                f"after the header, the file has {available}",
            )


def _list_lengths(header: PlyData, stream, body: int) -> dict:
    """``known_list_len`` for the face list, from its first row (binary files only)."""
    if header.text:
        return {}
    offset = body
    for el in header.elements:
        lists = [p for p in el.properties if isinstance(p, PlyListProperty)]
        if el.name == "face" and el.count and len(lists) == 1:
            before = el.properties[: el.properties.index(lists[0])]  # scalars ahead of the list in a row
            len_t = np.dtype(lists[0].list_dtype(header.byte_order)[0])
            stream.seek(offset + sum(np.dtype(p.dtype(header.byte_order)).itemsize for p in before))
            raw = stream.read(len_t.itemsize)
            if len(raw) < len_t.itemsize:
                return {}
            return {"face": {lists[0].name: int(np.frombuffer(raw, len_t)[0])}}
        if lists:
            return {}  # rows of unknown size before the faces: no guess
        offset += el.count * np.dtype(el.dtype(header.byte_order)).itemsize
    return {}


def _element_error(e: PlyElementParseError, header: PlyData, path: Path) -> SceneFormatError:
    name = e.element.name if e.element is not None else "?"
    count = e.element.count if e.element is not None else 0
    where = f"row {e.row}" + (f", property '{e.prop.name}'" if e.prop is not None else "")
    if e.message == "early end-of-file":
        return SceneFormatError(path, f"truncated PLY: element '{name}' ({count} rows) ends at {where}")
    kind = "ASCII" if header.text else "binary"
    return SceneFormatError(path, f"malformed {kind} PLY data in element '{name}' at {where}: {e.message}")


def _lists(column: np.ndarray) -> tuple[np.ndarray | None, list]:
    """A list property as one (F, n) int64 array when every row has n items, else the rows."""
    if column.dtype != object:
        return column.astype(np.int64), []
    rows = list(column)
    if rows and len({len(r) for r in rows}) == 1:
        return np.stack(rows).astype(np.int64), rows
    return None, rows


def _triangulate(uniform: np.ndarray | None, rows: list, path) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate faces of any vertex count.

    Returns
    -------
    triangles : (T, 3) int64
    face_of : (T,) int64
        The PLY face each triangle came from.
    """
    if uniform is not None:
        n = uniform.shape[1]
        if n < 3:
            raise SceneFormatError(path, f"faces have {n} vertices; at least 3 are needed")
        k = np.arange(1, n - 1)
        tris = np.stack([np.repeat(uniform[:, :1], n - 2, axis=1), uniform[:, k], uniform[:, k + 1]], axis=2)
        return tris.reshape(-1, 3), np.repeat(np.arange(len(uniform)), n - 2)
    tris, face_of = [], []
    for f, face in enumerate(rows):
        for k in range(1, len(face) - 1):
            tris.append((face[0], face[k], face[k + 1]))
            face_of.append(f)
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3), np.asarray(face_of, dtype=np.int64)


def _colors(element, path) -> np.ndarray | None:
    """(N, 3) uint8 colours of an element's rows, or None when it has none."""
    fields = element.data.dtype.names
    for names in _COLOR_NAMES:
        if all(n in fields for n in names):
            for n in names:
                if element.data.dtype[n].kind not in "biuf":
                    raise SceneFormatError(path, f"PLY '{element.name}' colour property '{n}' must be a number, not a list")
            c = np.stack([np.asarray(element[n]) for n in names], axis=1)
            if c.dtype.kind == "f":
                if not np.isfinite(c).all():
                    raise SceneFormatError(path, f"PLY '{element.name}' colours contain NaN or infinite values")
                c = np.clip(c, 0.0, 1.0) * 255.0 + 0.5  # clipped first: a huge float does not overflow
            return np.clip(c, 0, 255).astype(np.uint8)
    return None


@register_source
class PlySource(SceneSource):
    """Binary or ASCII PLY with per-vertex or per-face colours (ScanNet, Replica, scans)."""

    name = "ply"
    description = "PLY with vertex or face colours: ScanNet, Replica"
    suffixes = (".ply",)

    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        path = Path(location)
        ply = read_ply(path)
        if "vertex" not in ply or not all(k in ply["vertex"].data.dtype.names for k in "xyz"):
            raise SceneFormatError(path, "PLY has no 'vertex' element with x, y, z")
        vertex = ply["vertex"]
        for k in "xyz":
            if vertex.data.dtype[k].kind not in "biuf":
                raise SceneFormatError(path, f"PLY vertex property '{k}' must be a number, not a list")
        if "face" not in ply:
            raise SceneFormatError(path, "PLY has no 'face' element: a point cloud, not a mesh")
        face = ply["face"]
        key = next((k for k in _FACE_LIST_NAMES if k in face.data.dtype.names), None)
        if key is None:
            raise SceneFormatError(path, "PLY 'face' element has no vertex_indices list")
        column = face[key]
        if column.dtype != object and column.ndim != 2:
            raise SceneFormatError(path, f"PLY 'face' property '{key}' must be a list, not a {column.dtype} number")
        index_kind = (column[0].dtype if column.dtype == object and len(column) else column.dtype).kind
        if index_kind not in "iu":
            raise SceneFormatError(path, f"PLY 'face' property '{key}' must hold integers, not {index_kind!r} numbers")
        points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
        faces, face_of = _triangulate(*_lists(column), path)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
            bad = faces.max() if faces.max() >= len(points) else faces.min()
            raise SceneFormatError(path, f"a face refers to vertex {int(bad)} but there are {len(points)} vertices")
        vertex_colors = _colors(vertex, path)
        face_colors = _colors(face, path)
        if face_colors is not None:
            face_colors = face_colors[face_of]
        if vertex_colors is None and face_colors is None:
            log.warning("%s has no vertex or face colours: it renders white", path)
        del ply, vertex, face  # the memory maps
        file_to_world = np.eye(4)
        if up == "z":
            points = z_up_to_y_up(points)
            file_to_world = Y_UP_FROM_Z_UP.copy()
        return Scene(
            name=scene_id,
            vertices=points,
            faces=faces.astype(np.uint32),
            vertex_colors=vertex_colors,
            face_colors=face_colors,
            # A scan has no material to say which of its sides are seen, and its winding is not to be trusted:
            # drawn from both sides (docs/design.md, "Back faces").
            materials=(Material(name="vertex_colors" if face_colors is None else "face_colors", double_sided=True),),
            source=str(path),
            file_to_world=file_to_world,
        ).validate()
