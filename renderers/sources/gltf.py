"""glTF 2.0 (``.glb`` and ``.gltf``) as HM3D, MP3D and Gibson ship their scenes.

What is read: the default scene's node tree with every node's transform
(matrix or translation/rotation/scale) applied; every triangle primitive
(modes 4, 5 and 6; points and lines are skipped) of every mesh; positions,
``TEXCOORD_n`` (with ``KHR_texture_transform``), ``COLOR_0``; materials'
base colour factor and texture (``pbrMetallicRoughness``, or
``KHR_materials_pbrSpecularGlossiness``'s diffuse) and ``doubleSided`` (a
primitive without a material gets glTF's default material: single-sided);
samplers' wrap modes;
images embedded in buffer views, in data URIs or in files beside the glTF,
including Basis Universal images (``image/x-basis`` / ``image/basis`` behind
``GOOGLE_texture_basis``, KTX 2 behind ``KHR_texture_basisu``).

Axes. Habitat stages are stored Z-up (their ``*.stage_config.json`` says
``up [0,0,1]``, ``front [0,1,0]``); the loader rotates them into the Y-up world
with ``(x, y, z) -> (x, z, -y)``. The ``up`` argument gives a dataset's
convention; a ``<name>.stage_config.json`` beside the file, when present,
overrides it with its own ``up``/``front``.

Untrusted input. Every size the file declares (counts, offsets, lengths,
strides) is checked against the bytes actually there before anything is
allocated or read, so a count of 10^12 or a count that is not a number is a
SceneFormatError naming the file, never a MemoryError; any other malformed
JSON value is one too. A ``uri`` (image or buffer), and the stage config
beside the file, are only followed to a regular file inside the glTF file's
folder: absolute paths, URL schemes other than ``data:``, ``..`` or symlinks
leading out, and FIFOs or devices are refused with the file and the uri named.
Work stays linear in the file: each accessor is read once, the node hierarchy
must be a forest (a node reached twice is refused, as a shared child in a
chain would double the work at each level), and instancing is capped at
:data:`MAX_TRIANGLES` / :data:`MAX_VERTICES`. Image sizes are checked from
their headers before decoding (:mod:`renderers.sources.textures`).

All of this is hand-written, the glb container included (about 40 lines): the
Python glTF libraries do not do it. ``pygltflib`` (1.16) splits glb chunks
without bounds checks (a truncated file surfaces as a JSON decode error, a
short one as ``struct.error``, a version-1 header as a warning), follows any
``uri`` it is given, and decodes the JSON into dataclasses through
``dataclasses_json``, which raises from deep inside on a wrongly typed field;
the reader would need the same checks around it and would then be longer.
``trimesh``'s glTF loader builds processed meshes, cannot decode Basis/KTX2
textures, and hides the document and accessors this reader validates. Image
decoding is :mod:`renderers.sources.textures` (OpenCV; ``opengl-basisu`` for
Basis Universal and KTX 2).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import struct
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderers.scene import Material, Scene, SceneFormatError, Texture, Wrap
from renderers.sources.base import SceneSource, read_bytes, register_source, resolve_inside
from renderers.sources.textures import decode_image

__all__ = [
    "GltfReader",
    "GltfSource",
    "read_container",
    "rotation_from_up_front",
    "stage_config_axes",
    "stage_config_path",
    "triangles_from_mode",
]

log = logging.getLogger(__name__)

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942

_COMPONENT_DTYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

# Extensions whose data we cannot decode; a file that requires one is refused.
# (KHR_mesh_quantization needs nothing: its integer attributes are read as such.)
_UNSUPPORTED_EXTENSIONS = {
    "KHR_draco_mesh_compression": "Draco-compressed geometry",
    "EXT_meshopt_compression": "meshopt-compressed buffers",
}
_TEXTURE_SOURCE_EXTENSIONS = ("GOOGLE_texture_basis", "KHR_texture_basisu", "EXT_texture_webp")
_SPARSE_INDEX_TYPES = (5121, 5123, 5125)
# An accessor with no bufferView is all zeros (plus its sparse values): nothing
# bounds its count but this, so a few bytes of JSON cannot ask for gigabytes of zeros.
MAX_ZERO_ACCESSOR_BYTES = 1 << 26
# A stage config is a few hundred bytes of JSON.
MAX_STAGE_CONFIG_BYTES = 1 << 20
# Instancing (many nodes using one mesh) multiplies a small file into many
# vertices and triangles: a scene may hold at most this many of each (real
# indoor scans: a few million).
MAX_TRIANGLES = 1 << 27
MAX_VERTICES = 1 << 27

# Habitat's world frame: up +Y, front -Z.
_WORLD_UP = np.array([0.0, 1.0, 0.0])
_WORLD_FRONT = np.array([0.0, 0.0, -1.0])
_DEFAULT_AXES = {"z": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)), "y": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))}


def rotation_from_up_front(up, front) -> np.ndarray:
    """The 4x4 rotation taking a file's ``up``/``front`` to the world's +Y/-Z.

    Parameters
    ----------
    up, front : (3,) float
        Orthogonal directions in file coordinates (Habitat's stage config).

    Returns
    -------
    (4, 4) float64
        For ``up=(0,0,1), front=(0,1,0)`` this is ``(x, y, z) -> (x, z, -y)``.
    """
    up = np.asarray(up, dtype=np.float64)
    front = np.asarray(front, dtype=np.float64)
    if np.linalg.norm(up) == 0 or np.linalg.norm(front) == 0 or abs(np.dot(up, front)) > 1e-6:
        raise ValueError(f"up {up.tolist()} and front {front.tolist()} must be orthogonal and non-zero")
    up, front = up / np.linalg.norm(up), front / np.linalg.norm(front)
    src = np.stack([up, front, np.cross(up, front)], axis=1)
    dst = np.stack([_WORLD_UP, _WORLD_FRONT, np.cross(_WORLD_UP, _WORLD_FRONT)], axis=1)
    out = np.eye(4)
    out[:3, :3] = dst @ src.T
    return out


def stage_config_path(mesh_path: Path) -> Path:
    """Where Habitat looks for a mesh's stage config: ``<name>.stage_config.json`` beside it
    (``<name>`` less ``.basis.glb``, ``.glb`` or ``.gltf``)."""
    name = mesh_path.name
    for suffix in (".basis.glb", ".glb", ".gltf"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return mesh_path.with_name(name + ".stage_config.json")


def stage_config_axes(mesh_path: Path) -> tuple[list[float], list[float]] | None:
    """``(up, front)`` from a Habitat ``<name>.stage_config.json`` beside the mesh, if any.

    The config is read like any file a scene names: a regular file inside the
    mesh's folder (a symlink leading out, a FIFO or a device is refused), at
    most :data:`MAX_STAGE_CONFIG_BYTES`; a malformed one is a SceneFormatError
    naming the mesh and the config.
    """
    mesh_path = Path(mesh_path)
    config = stage_config_path(mesh_path)
    if not os.path.lexists(config):
        return None

    def fail(problem: str) -> SceneFormatError:
        return SceneFormatError(mesh_path, f"stage config {config.name!r}: {problem}")

    target = resolve_inside(mesh_path.parent, config.name)
    if target is None:
        raise fail(f"refused: it leads outside the glTF file's folder {mesh_path.parent.resolve()}")
    data = read_bytes(target, fail, limit=MAX_STAGE_CONFIG_BYTES)
    try:
        cfg = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise fail(f"unreadable stage config: {e}") from None
    if not isinstance(cfg, dict):
        raise fail(f"must be a JSON object, got {type(cfg).__name__}")
    if "up" not in cfg and "front" not in cfg:
        return None
    default_up, default_front = _DEFAULT_AXES["y"]
    axes = []
    for key, default in (("up", default_up), ("front", default_front)):
        value = cfg.get(key, default)
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise fail(f"{key!r} must be a list of 3 finite numbers, got {_quote(value)}")
        axes.append([float(v) for v in value])
    return axes[0], axes[1]


def _quote(value, limit: int = 60) -> str:
    """A JSON value for a message: its repr, cut to ``limit`` characters (one line, no raw control characters)."""
    return _printable(repr(value), limit)


def _printable(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, control characters escaped, so a message stays one line."""
    cut = text[:limit]
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return out + ("..." if len(text) > limit else "")


@register_source
class GltfSource(SceneSource):
    """glTF 2.0 binary (``.glb``) or JSON (``.gltf``) scenes."""

    name = "gltf"
    description = "glTF 2.0 .glb/.gltf: HM3D, MP3D, Gibson, ReplicaCAD stages; Basis textures"
    suffixes = (".glb", ".gltf")

    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        path = Path(location)
        data = read_bytes(path)
        try:
            doc, bin_chunk = _split_container(data, path)
            axes = stage_config_axes(path) or _DEFAULT_AXES[up]
            try:
                file_to_world = rotation_from_up_front(*axes)
            except (TypeError, ValueError) as e:
                raise SceneFormatError(path, f"stage config axes: {e}") from None
            reader = GltfReader(doc, bin_chunk, path)
            scene = reader.build(scene_id, file_to_world)
        except SceneFormatError:
            raise
        except (AttributeError, IndexError, KeyError, OverflowError, TypeError, ValueError) as e:
            # A JSON value of the wrong type or shape somewhere the checks above do not name.
            raise SceneFormatError(path, f"malformed glTF ({type(e).__name__}: {_printable(str(e), 200)})") from None
        return scene.validate()


def read_container(path: Path) -> tuple[dict, bytes | None]:
    """A .glb's or .gltf's JSON document and its BIN chunk (None for .gltf), checked as :class:`GltfSource` reads them.

    Raises
    ------
    SceneFormatError
        Not a readable glTF 2.0 container.
    """
    return _split_container(read_bytes(Path(path)), Path(path))


def _split_container(data: bytes, path: Path) -> tuple[dict, bytes | None]:
    """Parse a .glb container (header, JSON chunk, BIN chunk) or a .gltf JSON file."""
    if data[:4] == _GLB_MAGIC:
        if len(data) < 12:
            raise SceneFormatError(path, f"truncated glb: {len(data)} bytes, shorter than its header")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise SceneFormatError(path, f"glb version {version} is not supported (only glTF 2.0)")
        if len(data) < 20:
            raise SceneFormatError(path, f"truncated glb: {len(data)} bytes, no room for a chunk")
        if length > len(data):
            raise SceneFormatError(path, f"truncated glb: header says {length} bytes, file has {len(data)}")
        chunks: dict[int, bytes] = {}
        offset = 12
        while offset + 8 <= length:
            chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
            start, end = offset + 8, offset + 8 + chunk_len
            if end > length:
                raise SceneFormatError(path, f"truncated glb: chunk at byte {offset} runs past the end")
            chunks.setdefault(chunk_type, data[start:end])
            offset = end
        if _CHUNK_JSON not in chunks:
            raise SceneFormatError(path, "glb has no JSON chunk")
        text = chunks[_CHUNK_JSON]
        bin_chunk = chunks.get(_CHUNK_BIN)
    elif path.suffix.lower() == ".gltf" or data.lstrip()[:1] == b"{":
        text, bin_chunk = data, None
    else:
        raise SceneFormatError(path, f"not a glTF file: starts {bytes(data[:4])!r}, expected b'glTF'")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError; RecursionError: [[[[...
        raise SceneFormatError(path, f"glTF JSON is malformed: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("asset"), dict):
        raise SceneFormatError(path, "glTF JSON has no 'asset' object")
    version = str(doc["asset"].get("version", ""))
    if not version.startswith("2"):
        raise SceneFormatError(path, f"glTF asset version {version!r} is not supported (only 2.x)")
    for ext in doc.get("extensionsRequired", []):
        if ext in _UNSUPPORTED_EXTENSIONS:
            raise SceneFormatError(path, f"requires {ext} ({_UNSUPPORTED_EXTENSIONS[ext]}), which pairgen cannot decode")
    return doc, bin_chunk


@dataclass
class _Parts:
    """Per-primitive arrays gathered before they are merged into one Scene."""

    positions: list[np.ndarray] = field(default_factory=list)
    faces: list[np.ndarray] = field(default_factory=list)
    uvs: list[np.ndarray | None] = field(default_factory=list)
    colors: list[np.ndarray | None] = field(default_factory=list)
    materials: list[int] = field(default_factory=list)


class GltfReader:
    """Reads one parsed glTF document (:meth:`GltfSource.load` makes one per file); every error names the file."""

    def __init__(self, doc: dict, bin_chunk: bytes | None, path: Path) -> None:
        self.doc = doc
        self.bin_chunk = bin_chunk
        self.path = path
        self._buffers: dict[int, bytes] = {}
        self._images: dict[int, np.ndarray] = {}
        self._accessors: dict[int, np.ndarray] = {}  # read once, however many primitives use them
        self._triangles = 0  # so far, against MAX_TRIANGLES
        self._vertices = 0  # so far, against MAX_VERTICES

    def fail(self, problem: str) -> SceneFormatError:
        return SceneFormatError(self.path, problem)

    def item(self, kind: str, index) -> dict:
        items = self.doc.get(kind, [])
        if not isinstance(items, list):
            raise self.fail(f"'{kind}' must be a list, got {type(items).__name__}")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(items):
            raise self.fail(f"refers to {kind[:-1]} {index!r}, but the file has {len(items)} {kind}")
        if not isinstance(items[index], dict):
            raise self.fail(f"{kind[:-1]} {index} must be an object, got {type(items[index]).__name__}")
        return items[index]

    def size(self, value, what: str) -> int:
        """A declared count, offset or length: a non-negative integer, else an error naming ``what``."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{what} must be a non-negative integer, got {value!r}")
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise self.fail(f"{what} must be a non-negative integer, got {value!r}")
        return int(value)

    # -- buffers and accessors -------------------------------------------

    def buffer(self, index: int) -> bytes:
        if index not in self._buffers:
            buf = self.item("buffers", index)
            uri = buf.get("uri")
            if uri is None:
                if index != 0 or self.bin_chunk is None:
                    raise self.fail(f"buffer {index} has no uri and there is no glb BIN chunk")
                data = self.bin_chunk
            else:
                data = self.read_uri(uri, f"buffer {index}")
            declared = self.size(buf.get("byteLength", 0), f"buffer {index} byteLength")
            if len(data) < declared:
                raise self.fail(f"truncated: buffer {index} declares {declared} bytes, has {len(data)}")
            self._buffers[index] = data
        return self._buffers[index]

    def read_uri(self, uri, what: str) -> bytes:
        """The bytes of a base64 data URI, or of a regular file inside the glTF file's folder."""
        if not isinstance(uri, str):
            raise self.fail(f"{what}: uri must be a string, got {uri!r}")
        if uri.startswith("data:"):
            header, _, payload = uri.partition(",")
            if not header.endswith(";base64"):
                raise self.fail(f"{what}: only base64 data URIs are supported")
            try:
                return base64.b64decode(payload, validate=True)
            except ValueError:
                raise self.fail(f"{what}: malformed base64 data URI") from None
        return self._read_beside(uri, what)

    def _read_beside(self, uri: str, what: str) -> bytes:
        """A relative file uri, refused unless it stays inside the glTF file's folder and is a regular file."""

        def refuse(why: str) -> SceneFormatError:
            return self.fail(f"{what}: uri {uri!r} refused: {why}")

        if urllib.parse.urlsplit(uri).scheme:
            raise refuse("only relative paths and base64 data: URIs are read")
        relative = urllib.parse.unquote(uri)
        if "\0" in relative:
            raise refuse("it contains a NUL character")
        if Path(relative).is_absolute():
            raise refuse("an absolute path; only files inside the glTF file's folder are read")
        folder = self.path.parent.resolve()
        target = resolve_inside(folder, relative)  # follows symlinks and '..'
        if target is None:
            raise refuse(f"it leads outside the glTF file's folder {folder}")
        return read_bytes(target, refuse)

    def buffer_view(self, index: int) -> tuple[memoryview, int | None]:
        view = self.item("bufferViews", index)
        data = self.buffer(view.get("buffer", 0))
        start = self.size(view.get("byteOffset", 0), f"bufferView {index} byteOffset")
        length = self.size(view.get("byteLength", 0), f"bufferView {index} byteLength")
        stride = view.get("byteStride")
        if stride is not None:
            stride = self.size(stride, f"bufferView {index} byteStride")
        if start + length > len(data):
            raise self.fail(
                f"truncated: bufferView {index} spans bytes {start}..{start + length} "
                f"of a {len(data)}-byte buffer"
            )
        return memoryview(data)[start : start + length], stride

    def accessor(self, index: int) -> np.ndarray:
        """The accessor's elements as an (count, ncomp) array (normalized ints -> float32), read once.

        Every declared size is checked against the bytes there before reading.
        The array is shared between the primitives that use the accessor: do
        not modify it.
        """
        key = index if isinstance(index, int) and not isinstance(index, bool) else None
        if key is not None and key in self._accessors:
            return self._accessors[key]
        out = self.read_accessor(index)
        if key is not None:
            self._accessors[key] = out
        return out

    def read_accessor(self, index: int) -> np.ndarray:
        """The accessor's elements read from its bytes, every call (:meth:`accessor` reads each one once).

        ``tests/renderers/test_gltf.py`` counts its calls to check that instanced meshes
        read their accessors once.
        """
        acc = self.item("accessors", index)
        try:
            dtype = np.dtype(_COMPONENT_DTYPES[acc["componentType"]]).newbyteorder("<")
            ncomp = _TYPE_SIZES[acc["type"]]
            count = self.size(acc["count"], f"accessor {index} count")
        except (KeyError, TypeError) as e:  # TypeError: an unhashable componentType or type
            raise self.fail(f"accessor {index} has a missing or unknown field {e}") from None
        elem = dtype.itemsize * ncomp
        if "bufferView" in acc:
            view, stride = self.buffer_view(acc["bufferView"])
            if stride is not None and 0 < stride < elem:
                raise self.fail(
                    f"accessor {index}: bufferView {acc['bufferView']} byteStride {stride} is smaller than "
                    f"one element ({elem} bytes)"
                )
            stride = stride or elem
            offset = self.size(acc.get("byteOffset", 0), f"accessor {index} byteOffset")
            if count and offset + (count - 1) * stride + elem > len(view):
                raise self.fail(
                    f"truncated: accessor {index} needs {offset + (count - 1) * stride + elem} bytes "
                    f"of bufferView {acc['bufferView']}, which has {len(view)}"
                )
            if stride == elem:
                out = np.frombuffer(view, dtype=dtype, count=count * ncomp, offset=offset)
                out = out.reshape(count, ncomp).copy()
            else:
                rows = np.frombuffer(view, dtype=np.uint8, count=(count - 1) * stride + elem, offset=offset)
                idx = np.arange(count)[:, None] * stride + np.arange(elem)[None, :]
                out = rows[idx].view(dtype).reshape(count, ncomp)
        else:
            if count * elem > MAX_ZERO_ACCESSOR_BYTES:
                raise self.fail(
                    f"accessor {index} has no bufferView and declares {count} elements "
                    f"({count * elem} bytes of zeros, more than the {MAX_ZERO_ACCESSOR_BYTES} allowed)"
                )
            out = np.zeros((count, ncomp), dtype=dtype)
        if "sparse" in acc:
            out = self._apply_sparse(acc["sparse"], out, dtype, ncomp, index)
        if acc.get("normalized") and dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.maximum(out.astype(np.float32) / info.max, -1.0)
        return out

    def _apply_sparse(self, sparse: dict, out: np.ndarray, dtype, ncomp: int, index: int) -> np.ndarray:
        label = f"accessor {index} sparse"
        n = self.size(sparse.get("count", 0), f"{label} count")
        if n > len(out):
            raise self.fail(f"{label} count {n} exceeds the accessor's {len(out)} elements")
        idx_info, val_info = sparse.get("indices", {}), sparse.get("values", {})
        idx_type = idx_info.get("componentType", 5125)
        if idx_type not in _SPARSE_INDEX_TYPES:
            raise self.fail(f"{label} indices have componentType {idx_type!r}; must be one of {_SPARSE_INDEX_TYPES}")
        idx_dtype = np.dtype(_COMPONENT_DTYPES[idx_type]).newbyteorder("<")

        def read(info: dict, part: str, item_dtype, items: int) -> np.ndarray:
            view, _ = self.buffer_view(info.get("bufferView", -1))
            offset = self.size(info.get("byteOffset", 0), f"{label} {part} byteOffset")
            need = offset + items * item_dtype.itemsize
            if need > len(view):
                raise self.fail(
                    f"truncated: {label} {part} need {need} bytes of bufferView {info.get('bufferView')}, "
                    f"which has {len(view)}"
                )
            return np.frombuffer(view, dtype=item_dtype, count=items, offset=offset)

        idx = read(idx_info, "indices", idx_dtype, n)
        vals = read(val_info, "values", dtype, n * ncomp)
        if n and int(idx.max()) >= len(out):
            raise self.fail(f"accessor {index}: sparse index {int(idx.max())} out of range")
        out = out.copy()
        out[idx.astype(np.int64)] = vals.reshape(n, ncomp)
        return out

    # -- images and materials ----------------------------------------------

    def image(self, index: int) -> np.ndarray:
        if index not in self._images:
            img = self.item("images", index)
            label = f"image {index}" + (f" ({_printable(str(img['name']))})" if img.get("name") else "")
            if "bufferView" in img:
                view, _ = self.buffer_view(img["bufferView"])
                data = bytes(view)
            elif "uri" in img:
                label = f"image {index} ({_printable(str(img['uri']))})"
                data = self.read_uri(img["uri"], label)
            else:
                raise self.fail(f"{label} has neither a bufferView nor a uri")
            self._images[index] = decode_image(data, path=self.path, what=label)
        return self._images[index]

    def texture(self, index: int) -> Texture:
        tex = self.item("textures", index)
        source = tex.get("source")
        for ext in _TEXTURE_SOURCE_EXTENSIONS:
            ext_source = tex.get("extensions", {}).get(ext, {}).get("source")
            if ext_source is not None:
                source = ext_source
                break
        if source is None:
            raise self.fail(f"texture {index} has no image source")
        sampler = self.item("samplers", tex["sampler"]) if "sampler" in tex else {}
        try:
            wrap_s = Wrap(sampler.get("wrapS", Wrap.REPEAT))
            wrap_t = Wrap(sampler.get("wrapT", Wrap.REPEAT))
        except ValueError as e:
            raise self.fail(f"texture {index}: unknown sampler wrap mode ({e})") from None
        return Texture(self.image(source), wrap_s, wrap_t, name=f"{self.path.name}:image{source}")

    def material(self, index: int) -> tuple[Material, dict | None]:
        """The material and its base-colour textureInfo (for texCoord/transform)."""
        mat = self.item("materials", index)
        pbr = mat.get("pbrMetallicRoughness", {})
        factor = pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0])
        info = pbr.get("baseColorTexture")
        spec_gloss = mat.get("extensions", {}).get("KHR_materials_pbrSpecularGlossiness")
        if info is None and spec_gloss:
            info = spec_gloss.get("diffuseTexture")
            factor = spec_gloss.get("diffuseFactor", factor)
        texture = self.texture(info["index"]) if info is not None and "index" in info else None
        if info is not None and "index" not in info:
            raise self.fail(f"material {index}: base colour texture has no index")
        name = mat.get("name", f"material{index}")
        color = tuple(float(c) for c in (list(factor) + [1.0] * 4)[:4])
        double_sided = mat.get("doubleSided", False)
        if not isinstance(double_sided, bool):
            raise self.fail(f"material {index}: doubleSided must be true or false, got {_quote(double_sided)}")
        return Material(name=name, base_color=color, texture=texture, double_sided=double_sided), info

    # -- the node tree ---------------------------------------------------------

    def build(self, scene_id: str, file_to_world: np.ndarray) -> Scene:
        doc = self.doc
        for ext in doc.get("extensionsUsed", []):
            if ext in _UNSUPPORTED_EXTENSIONS:
                log.warning("%s uses %s, which pairgen cannot decode: its fallback data is read, "
                            "and a primitive that has none is an error", self.path, ext)
        scenes = doc.get("scenes", [])
        if scenes:
            roots = self.item("scenes", doc.get("scene", 0)).get("nodes", [])
        else:
            children = {c for n in doc.get("nodes", []) for c in n.get("children", [])}
            roots = [i for i in range(len(doc.get("nodes", []))) if i not in children]
        parts = _Parts()
        material_slots: dict[int | None, int] = {}
        materials: list[Material] = []
        infos: list[dict | None] = []
        stack = [(r, file_to_world) for r in reversed(roots)]  # pre-order, document order
        visited: set[int] = set()
        while stack:
            index, parent = stack.pop()
            node = self.item("nodes", index)
            # glTF: the hierarchy is a set of disjoint strict trees. Reaching a node twice is a
            # cycle, or a shared child whose subtree would be read again (exponentially, in a chain).
            if index in visited:
                raise self.fail(f"node {index} is reached twice: the node hierarchy has a cycle or a shared child")
            visited.add(index)
            with np.errstate(over="ignore", invalid="ignore"):  # huge transforms: the vertices are checked
                world = parent @ _local_matrix(node, self.fail, index)
            if "mesh" in node:
                mesh = self.item("meshes", node["mesh"])
                for p, prim in enumerate(mesh.get("primitives", [])):
                    key = prim.get("material")
                    if key not in material_slots:
                        material_slots[key] = len(materials)
                        mat, info = self.material(key) if key is not None else (Material("default"), None)
                        materials.append(mat)
                        infos.append(info)
                    slot = material_slots[key]
                    self._primitive(prim, world, slot, infos[slot], parts, f"mesh {node['mesh']} primitive {p}")
            stack.extend((c, world) for c in reversed(node.get("children", [])))
        if not parts.faces:
            raise self.fail("no triangles: the scene has no triangle primitives")
        return self._merge(parts, materials, scene_id, file_to_world)

    def _primitive(self, prim: dict, world: np.ndarray, slot: int, info: dict | None,
                   parts: _Parts, label: str) -> None:
        if "extensions" in prim and "KHR_draco_mesh_compression" in prim["extensions"]:
            raise self.fail(f"{label} is Draco-compressed, which pairgen cannot decode")
        mode = prim.get("mode", 4)
        if mode not in (4, 5, 6):
            log.debug("%s: %s has mode %r (points/lines), skipped", self.path, label, mode)
            return
        attrs = prim.get("attributes", {})
        if "POSITION" not in attrs:
            raise self.fail(f"{label} has no POSITION attribute")
        pos = self.accessor(attrs["POSITION"])
        if pos.shape[1] != 3:
            raise self.fail(f"{label}: POSITION must be VEC3")
        self._vertices += len(pos)
        if self._vertices > MAX_VERTICES:
            raise self.fail(f"more than {MAX_VERTICES} vertices (nodes instancing meshes add up to {self._vertices} so far)")
        pos = pos.astype(np.float64)
        if "indices" in prim:
            idx = self.accessor(prim["indices"]).reshape(-1).astype(np.int64)
        else:
            idx = np.arange(len(pos), dtype=np.int64)
        faces = triangles_from_mode(idx, mode)
        if len(faces) == 0:
            return
        self._triangles += len(faces)
        if self._triangles > MAX_TRIANGLES:
            raise self.fail(f"more than {MAX_TRIANGLES} triangles (nodes instancing meshes add up to {self._triangles} so far)")
        if int(faces.max()) >= len(pos) or int(faces.min()) < 0:
            raise self.fail(f"{label}: index {int(faces.max())} out of range for {len(pos)} vertices")
        with np.errstate(over="ignore", invalid="ignore"):  # huge transforms: checked just below
            world_pos = (pos @ world[:3, :3].T + world[:3, 3]).astype(np.float32)
        if not np.isfinite(world_pos).all():
            raise self.fail(f"{label}: NaN or infinite vertex positions (in the file, or after the node transforms)")
        if np.linalg.det(world[:3, :3]) < 0:
            faces = faces[:, ::-1]
        uv = None
        tex_coord = info.get("texCoord", 0) if info else 0
        if f"TEXCOORD_{tex_coord}" in attrs:
            uv = self.accessor(attrs[f"TEXCOORD_{tex_coord}"]).astype(np.float32)[:, :2]
            transform = (info or {}).get("extensions", {}).get("KHR_texture_transform")
            if transform:
                uv = _texture_transform(uv, transform)
        elif info is not None:
            raise self.fail(
                f"{label}: its material has a base-colour texture but the primitive has no TEXCOORD_{tex_coord} "
                "texture coordinates to map it with"
            )
        color = None
        if "COLOR_0" in attrs:
            color = _linear_to_srgb8(self.accessor(attrs["COLOR_0"])[:, :3])
        parts.positions.append(world_pos)
        parts.faces.append(faces)
        parts.uvs.append(uv)
        parts.colors.append(color)
        parts.materials.append(slot)

    def _merge(self, parts: _Parts, materials: list[Material], scene_id: str,
               file_to_world: np.ndarray) -> Scene:
        offsets = np.cumsum([0] + [len(p) for p in parts.positions])
        vertices = np.concatenate(parts.positions)
        faces = np.concatenate([f + o for f, o in zip(parts.faces, offsets)]).astype(np.uint32)
        face_materials = np.concatenate(
            [np.full(len(f), m, dtype=np.uint16) for f, m in zip(parts.faces, parts.materials)]
        )
        uvs = None
        if any(u is not None for u in parts.uvs):
            uvs = np.concatenate(
                [u if u is not None else np.zeros((len(p), 2), np.float32) for u, p in zip(parts.uvs, parts.positions)]
            )
        colors = None
        if any(c is not None for c in parts.colors):
            colors = np.concatenate(
                [c if c is not None else np.full((len(p), 3), 255, np.uint8) for c, p in zip(parts.colors, parts.positions)]
            )
        return Scene(
            name=scene_id,
            vertices=vertices,
            faces=faces,
            uvs=uvs,
            vertex_colors=colors,
            face_materials=face_materials,
            materials=tuple(materials),
            source=str(self.path),
            file_to_world=file_to_world,
            extras={"primitives": len(parts.faces)},
        )


def _node_numbers(node: dict, key: str, default: list[float], fail, index: int) -> np.ndarray:
    """``node[key]`` as len(default) finite float64s, else a SceneFormatError."""
    value = node.get(key, default)
    ok = isinstance(value, list) and len(value) == len(default) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok:
        raise fail(f"malformed glTF: node {index} {key} must be {len(default)} finite numbers, got {_quote(value)}")
    return np.asarray(value, dtype=np.float64)


def _local_matrix(node: dict, fail, index: int) -> np.ndarray:
    """A node's local 4x4 transform from ``matrix`` (column-major) or T * R * S."""
    if "matrix" in node:
        return _node_numbers(node, "matrix", [0.0] * 16, fail, index).reshape(4, 4).T
    out = np.eye(4)
    q = _node_numbers(node, "rotation", [0.0, 0.0, 0.0, 1.0], fail, index)
    scale = _node_numbers(node, "scale", [1.0, 1.0, 1.0], fail, index)
    translation = _node_numbers(node, "translation", [0.0, 0.0, 0.0], fail, index)
    n = math.hypot(*q)
    if n == 0:
        raise fail(f"node {index}: zero rotation quaternion")
    x, y, z, w = q / n
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    with np.errstate(over="ignore", invalid="ignore"):  # a huge scale: the vertices are checked for it
        out[:3, :3] = rot * scale[None, :]
    out[:3, 3] = translation
    return out


def triangles_from_mode(idx: np.ndarray, mode: int) -> np.ndarray:
    """(F, 3) int64 triangles from an index list in TRIANGLES, STRIP or FAN mode."""
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if len(idx) < 3:
        return np.zeros((0, 3), np.int64)
    k = np.arange(len(idx) - 2)
    if mode == 5:  # strip: odd triangles swap their first two vertices to keep the winding
        a = np.where(k % 2 == 0, idx[k], idx[k + 1])
        b = np.where(k % 2 == 0, idx[k + 1], idx[k])
        return np.stack([a, b, idx[k + 2]], axis=1)
    return np.stack([np.full_like(k, idx[0]), idx[k + 1], idx[k + 2]], axis=1)  # fan


def _texture_transform(uv: np.ndarray, t: dict) -> np.ndarray:
    """Apply KHR_texture_transform (offset, rotation, scale) to (N, 2) uvs."""
    ox, oy = t.get("offset", [0.0, 0.0])
    sx, sy = t.get("scale", [1.0, 1.0])
    r = t.get("rotation", 0.0)
    c, s = np.cos(r), np.sin(r)
    m = np.array([[c * sx, s * sy, ox], [-s * sx, c * sy, oy]], dtype=np.float64)
    return (uv @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _linear_to_srgb8(c: np.ndarray) -> np.ndarray:
    """Linear colours in [0, 1] (glTF COLOR_0) to sRGB uint8."""
    c = np.clip(c.astype(np.float64), 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)
