"""A glb writer: meshes, node transforms, materials and embedded images.

It writes what Habitat datasets ship: a binary glTF 2.0 container whose
images live in buffer views, optionally behind the ``GOOGLE_texture_basis``
texture extension (HM3D ``*.basis.glb``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GlbMesh:
    """One primitive: positions (file frame), triangles, optional uvs/colours/material."""

    positions: np.ndarray
    indices: np.ndarray
    uvs: np.ndarray | None = None
    colors: np.ndarray | None = None  # (V, 3) float linear or (V, 4) float
    material: int | None = None
    mode: int = 4


@dataclass
class GlbNode:
    mesh: int | None = None
    children: list[int] = field(default_factory=list)
    translation: tuple | None = None
    rotation: tuple | None = None  # quaternion x, y, z, w
    scale: tuple | None = None
    matrix: np.ndarray | None = None  # (4, 4), written column-major


@dataclass
class GlbImage:
    data: bytes
    mime: str  # image/jpeg, image/png, image/x-basis
    basis_extension: bool = False  # texture points at it through GOOGLE_texture_basis
    uri: str | None = None  # written as this uri (a file beside the glb) instead of a buffer view; data unused


def write_glb(
    meshes: list[GlbMesh],
    nodes: list[GlbNode] | None = None,
    images: list[GlbImage] = (),
    materials: list[dict] = (),
    samplers: list[dict] = (),
    textures: list[dict] | None = None,
    *,
    roots: list[int] | None = None,
    extensions_required: list[str] = (),
) -> bytes:
    """Encode a glb. ``materials`` are raw glTF material dicts; ``textures``
    defaults to one texture per image (basis images through the extension)."""
    blob = bytearray()
    views, accessors = [], []

    def add_view(raw: bytes) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw)})
        blob.extend(raw)
        return len(views) - 1

    def add_accessor(arr: np.ndarray, ctype: int, kind: str, **extra) -> int:
        view = add_view(np.ascontiguousarray(arr).tobytes())
        acc = {"bufferView": view, "componentType": ctype, "count": int(arr.shape[0]), "type": kind, **extra}
        accessors.append(acc)
        return len(accessors) - 1

    gl_meshes = []
    for m in meshes:
        pos = np.asarray(m.positions, np.float32)
        attrs = {"POSITION": add_accessor(pos, 5126, "VEC3", min=pos.min(0).tolist(), max=pos.max(0).tolist())}
        if m.uvs is not None:
            attrs["TEXCOORD_0"] = add_accessor(np.asarray(m.uvs, np.float32), 5126, "VEC2")
        if m.colors is not None:
            c = np.asarray(m.colors, np.float32)
            attrs["COLOR_0"] = add_accessor(c, 5126, "VEC3" if c.shape[1] == 3 else "VEC4")
        prim = {"attributes": attrs, "mode": m.mode}
        if m.indices is not None:
            prim["indices"] = add_accessor(np.asarray(m.indices, np.uint32).reshape(-1), 5125, "SCALAR")
        if m.material is not None:
            prim["material"] = m.material
        gl_meshes.append({"primitives": [prim]})
    gl_images = []
    for im in images:
        if im.uri is not None:
            gl_images.append({"uri": im.uri, "mimeType": im.mime})
        else:
            gl_images.append({"bufferView": add_view(im.data), "mimeType": im.mime})
    if textures is None:
        textures = []
        for i, im in enumerate(images):
            tex = {"extensions": {"GOOGLE_texture_basis": {"source": i}}} if im.basis_extension else {"source": i}
            if samplers:
                tex["sampler"] = 0
            textures.append(tex)
    if nodes is None:
        nodes = [GlbNode(mesh=i) for i in range(len(meshes))]
    gl_nodes = []
    for n in nodes:
        d = {}
        if n.mesh is not None:
            d["mesh"] = n.mesh
        if n.children:
            d["children"] = n.children
        if n.translation is not None:
            d["translation"] = list(n.translation)
        if n.rotation is not None:
            d["rotation"] = list(n.rotation)
        if n.scale is not None:
            d["scale"] = list(n.scale)
        if n.matrix is not None:
            d["matrix"] = np.asarray(n.matrix, dtype=float).T.reshape(-1).tolist()
        gl_nodes.append(d)
    if roots is None:
        children = {c for n in nodes for c in n.children}
        roots = [i for i in range(len(nodes)) if i not in children]
    used = ["GOOGLE_texture_basis"] if any(im.basis_extension for im in images) else []
    doc = {
        "asset": {"version": "2.0", "generator": "pairgen tests"},
        "scene": 0,
        "scenes": [{"nodes": roots}],
        "nodes": gl_nodes,
        "meshes": gl_meshes,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    for key, val in (("materials", list(materials)), ("textures", textures), ("images", gl_images), ("samplers", list(samplers))):
        if val:
            doc[key] = val
    if used:
        doc["extensionsUsed"] = used
    if extensions_required:
        doc["extensionsRequired"] = list(extensions_required)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    while len(blob) % 4:
        blob.append(0)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<II", len(js), 0x4E4F534A) + js
        + struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)
    )


def textured_material(texture: int, factor=(1.0, 1.0, 1.0, 1.0)) -> dict:
    return {"pbrMetallicRoughness": {"baseColorTexture": {"index": texture}, "baseColorFactor": list(factor)}}


def split_glb(data: bytes) -> tuple[dict, bytes]:
    """The JSON document and BIN chunk of a well-formed glb (as :func:`write_glb` writes it)."""
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(bytes(data[20 : 20 + n]))
    rest = bytes(data[20 + n :])
    blob = rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""
    return doc, blob


def pack_glb(doc, blob: bytes = b"", *, json_text: bytes | None = None) -> bytes:
    """A glb holding ``doc`` (or the raw ``json_text``) and ``blob``, every length consistent."""
    js = json.dumps(doc).encode() if json_text is None else json_text
    js += b" " * (-len(js) % 4)
    blob = bytes(blob) + b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob:
        chunks += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
