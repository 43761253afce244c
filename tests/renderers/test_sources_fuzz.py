"""Seeded fuzzing of every scene format pairgen reads: glb, PLY, navmesh.

Real inputs (written by ``tests/writers``, and the real samples in
``../shared/fixtures`` when present) are mutated (byte flips, truncations,
edits of the glb's JSON chunk or the PLY header, overwritten navmesh counts,
files swapped for other formats, links leading out, FIFOs, devices, folders)
inside a sandbox::

    <tmp>/outside/              files a scene must never read (their content is SECRET)
    <tmp>/data/gibson/          the scene's folder: the scene file, a texture,
                                links out, a FIFO, a link to /dev/zero, a folder

and loaded with ``renderers.sources.load_scene`` (navmeshes also with
``read_navmesh``) under a per-case time limit. Each case must end in success
or in one SceneFormatError whose one-line message names the file and quotes
nothing from outside; every file opened (``builtins.open``, ``io.open``,
``os.open`` are watched) must lie inside the scene's folder. Hypothesis runs
derandomized with a bounded number of examples, so the file is deterministic
and fast. The last tests check discovery (links leaving the dataset folder
are a scene's problem, never followed) and ``pairgen scenes`` over a folder
of mutated glbs.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import io
import json
import os
import random
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2  # imported here, not inside a watched load: cv2's bootstrap opens its own files
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifests import discover, get_dataset
from pairgen.cli import main as pairgen_main
from pairgen.distribute import time_limit
from pairgen.scenes import load_record
from renderers.scene import NavMesh, Scene, SceneFormatError
from renderers.sources import load_scene
from renderers.sources.navmesh import read_navmesh
from tests.conftest import SHARED_FIXTURES
from tests.writers.gltf import (
    GlbImage,
    GlbMesh,
    GlbNode,
    pack_glb,
    split_glb,
    textured_material,
    write_glb,
)
from tests.writers.navmesh import write_navmesh
from tests.writers.ply import write_ply

try:  # the Basis transcoder is optional; so is the real texture
    import opengl_basisu
except ImportError:  # pragma: no cover
    opengl_basisu = None

SECRET = b"SECRET-CONTENT-of-a-file-outside"
NOT_A_SCENE = b"hello, I am a text file, not a scene"
CASE_SECONDS = 5  # per case: a FIFO opened for reading would block forever
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------- inputs


def _png(h=8, w=12) -> bytes:
    j, i = np.mgrid[0:h, 0:w]
    img = np.stack([i * 20 % 256, j * 30 % 256, (i + j) * 10 % 256], axis=2).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _huge_png(w=50000, h=50000) -> bytes:
    """A PNG signature and IHDR declaring ``w`` x ``h`` (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def _room(uvs=True, colors=False, material=True) -> list[GlbMesh]:
    s = 2.0
    floor = np.array([[-s, -s, 0], [s, -s, 0], [s, s, 0], [-s, s, 0]], np.float32)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32) if uvs else None
    col = np.full((4, 3), 0.5, np.float32) if colors else None
    mat = 0 if material else None
    return [GlbMesh(floor, quad, uvs=uv, colors=col, material=mat),
            GlbMesh(floor + np.float32([0, 0, 2.5]), quad[:, ::-1], uvs=uv, colors=col, material=mat)]  # fmt: skip


def _external_buffer_glb() -> tuple[bytes, dict[str, bytes]]:
    """A glb whose only buffer is the file ``mesh.bin`` beside it, its texture ``tex.png`` beside it too."""
    glb = write_glb(_room(), images=[GlbImage(b"", "image/png", uri="tex.png")], materials=[textured_material(0)])
    doc, blob = split_glb(glb)
    doc["buffers"] = [{"uri": "mesh.bin", "byteLength": len(blob)}]
    return pack_glb(doc), {"mesh.bin": blob}


def _strided_sparse_glb() -> bytes:
    """The room with one POSITION in a strided bufferView and the other a sparse accessor over zeros."""
    doc, blob = split_glb(write_glb(_room(uvs=False, material=False)))
    blob = bytearray(blob)
    floor = _room()[0].positions
    views, accessors = doc["bufferViews"], doc["accessors"]

    def view(raw: bytes, **extra) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw), **extra})
        blob.extend(raw)
        return len(views) - 1

    padded = np.concatenate([floor, np.ones((4, 1), np.float32)], axis=1).astype("<f4").tobytes()
    accessors.append({"bufferView": view(padded, byteStride=16), "componentType": 5126, "count": 4, "type": "VEC3"})
    doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = len(accessors) - 1
    sparse = {"count": 4, "indices": {"bufferView": view(bytes([0, 1, 2, 3])), "componentType": 5121},
              "values": {"bufferView": view((floor + np.float32([0, 0, 2.5])).astype("<f4").tobytes())}}  # fmt: skip
    accessors.append({"componentType": 5126, "count": 4, "type": "VEC3", "sparse": sparse})
    doc["meshes"][1]["primitives"][0]["attributes"]["POSITION"] = len(accessors) - 1
    doc["buffers"][0]["byteLength"] = len(blob)
    return pack_glb(doc, bytes(blob))


def _glb_inputs() -> dict[str, tuple[bytes, dict[str, bytes]]]:
    """name -> (glb bytes, files beside it); every one loads."""
    strip = GlbMesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], np.float32),
                    np.array([0, 1, 2, 3, 4]), mode=5)  # fmt: skip
    nodes = [GlbNode(mesh=0, children=[1], translation=(1, 2, 3), rotation=(0, 0, 0.38268343, 0.92387953)),
             GlbNode(mesh=1, matrix=np.diag([1.0, 2.0, 1.0, 1.0]))]  # fmt: skip
    inputs = {
        "png-texture": (write_glb(_room(), images=[GlbImage(_png(), "image/png")], materials=[textured_material(0)]), {}),
        "jpeg-texture": (write_glb(_room(), images=[GlbImage(_jpeg(), "image/jpeg")], materials=[textured_material(0)]), {}),
        "vertex-colours-nodes": (write_glb([*_room(uvs=False, colors=True, material=False), strip], [*nodes, GlbNode(mesh=2)]), {}),
        "files-beside": _external_buffer_glb(),
        "strided-sparse": (_strided_sparse_glb(), {}),
    }
    inputs["files-beside"][1]["tex.png"] = _png()
    basis = SHARED_FIXTURES / "basis" / "kodim20.basis"
    if opengl_basisu is not None and basis.is_file():
        image = GlbImage(basis.read_bytes(), "image/x-basis", basis_extension=True)
        inputs["basis-texture"] = (write_glb(_room(), images=[image], materials=[textured_material(0)]), {})
    return inputs


def _ply_inputs() -> dict[str, bytes]:
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)
    tris = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1]])
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1]])
    colors = np.arange(24, dtype=np.uint8).reshape(8, 3) * 10
    return {
        "scannet": write_ply(cube, tris, colors, alpha=True),
        "replica-quads": write_ply(cube, quads, colors, normals=np.ones((8, 3))),
        "ascii": write_ply(cube, tris, colors, fmt="ascii"),
        "big-endian": write_ply(cube, tris, colors, fmt="binary_big_endian", index_type="u2"),
        "face-colours": write_ply(cube, tris, face_colors=np.full((6, 3), 0.5, np.float32)),
        "mixed-polygons": write_ply(cube, [[0, 1, 3], [4, 6, 7, 5], [0, 4, 5, 1, 3]], colors),
    }


def _navmesh_inputs() -> dict[str, bytes]:
    square = np.array([[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0]], np.float32)
    hexagon = np.array([[3 + np.cos(a), 0.2, np.sin(a)] for a in np.arange(6) * np.pi / 3], np.float32)
    tri = np.array([[5, 0, 0], [7, 0, 0], [5, 0, 2]], np.float32)
    polygons = [square, hexagon, tri, square + np.float32([0, 0, 3])]
    inputs = {
        "v1": write_navmesh(polygons),
        "v1-tiles-centre": write_navmesh(polygons, tiles=3, detail="centre"),
        "v2-52": write_navmesh(polygons, version=2, settings_size=52, tiles=2),
        "v2-80-no-detail": write_navmesh(polygons, version=2, settings_size=80, detail="none"),
    }
    for name in ("van-gogh-room.navmesh", "apartment_1.navmesh"):
        path = SHARED_FIXTURES / "navmesh" / name
        if path.is_file():
            inputs[f"real-{name}"] = path.read_bytes()
    return inputs


GLB_INPUTS = _glb_inputs()
PLY_INPUTS = _ply_inputs()
NAVMESH_INPUTS = _navmesh_inputs()
GOOD_PLY = PLY_INPUTS["scannet"]


# --------------------------------------------------------------------------- the sandbox


@dataclass
class Sandbox:
    root: Path
    outside: Path  # files a scene must never read
    folder: Path  # the scene's folder, inside the dataset folder
    data_root: Path

    def path(self, name: str) -> Path:
        return self.folder / name


def _make_sandbox(root: Path, scene_folder: str) -> Sandbox:
    outside, folder = root / "outside", root / "data" / scene_folder
    outside.mkdir()
    folder.mkdir(parents=True)
    (outside / "secret.png").write_bytes(_png())  # decodes: following it would go unnoticed but for the watch
    (outside / "secret.bin").write_bytes(SECRET * 8)
    (outside / "secret.json").write_text(json.dumps({"up": [0, 1, 0], "front": [0, 0, -1], "s": SECRET.decode()}))
    (folder / "tex.png").write_bytes(_png())
    (folder / "big.png").write_bytes(_huge_png())
    (folder / "secret_link.png").symlink_to(outside / "secret.png")
    (folder / "secret_link.bin").symlink_to(os.path.relpath(outside / "secret.bin", folder))
    (folder / "zero.bin").symlink_to("/dev/zero")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "dangling.png").symlink_to("nowhere.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "sub").mkdir()
    return Sandbox(root, outside, folder, root / "data")


@contextlib.contextmanager
def sandbox(scene_folder: str = "gibson"):
    """A fresh sandbox whose scene folder is ``data/<scene_folder>`` (a dataset's layout)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield _make_sandbox(Path(tmp), scene_folder)


def _loader(box: Sandbox, dataset: str, scene_id: str, direct: Callable[[], object]) -> Callable[[], object]:
    """``direct`` (a load_scene call), or, when a scene file was swapped for a link, the pipeline's way:
    discovery, then ``load_record``, which never follows a link out of the dataset folder."""
    files = [p for p in box.folder.rglob("*") if p.name.startswith(("scene.", "mesh.", "simple_room."))]
    if not any(p.is_symlink() for p in files):
        return direct

    def through_discovery():
        (record,) = [r for r in discover(get_dataset(dataset), box.data_root) if r.scene_id == scene_id]
        return load_record(record)

    return through_discovery


def _hostile_uris(box: Sandbox) -> list[str]:
    return [
        "../../outside/secret.png", "%2E%2E/%2E%2E/outside/secret.bin", "sub/../../../outside/secret.png",
        str(box.outside / "secret.png"), "/dev/zero", "/etc/passwd", "file:///etc/passwd", "http://example.com/a.png",
        "secret_link.png", "secret_link.bin", "zero.bin", "pipe.png", "loop.png", "dangling.png", "sub", "sub/",
        "missing.png", "big.png", "tex.png", "sub/../tex.png", "a\x00b.png", "", ".", "..",
        "data:image/png;base64," + base64.b64encode(_huge_png()).decode(),
        "data:image/png;base64,!!!", "data:,plain", "data:image/png,raw",
    ]  # fmt: skip


HOSTILE_VALUES = [
    -1, 0, 1, 2, 3, 4, 5, 6, 7, 255, 2**31 - 1, 2**31, 2**32 + 4, 10**12, 10**30, -(2**63), 1e12, 1e308, -1e308, 0.5,
    float("nan"), float("inf"), -float("inf"), True, False, None, "", "lots", "VEC3", "SCALAR", [], {}, [0] * 16,
    [1e30] * 16, [0, 0, 0, 0], [float("nan")] * 4, {"uri": "../../outside/secret.png"}, [[[[]]]], "\n\x1b[31mred",
]  # fmt: skip


def _swap_target(box: Sandbox, path: Path, kind: str) -> None:
    """Replace ``path`` by another kind of file (written bytes are swapped in by the caller)."""
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    if kind == "secret-link":
        path.symlink_to(box.outside / "secret.bin")
    elif kind == "secret-png-link":
        path.symlink_to(os.path.relpath(box.outside / "secret.png", path.parent))
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "inside-link":
        path.symlink_to("tex.png")
    else:
        raise AssertionError(kind)


SWAP_KINDS = ["secret-link", "secret-png-link", "dev-zero", "dev-null", "fifo", "folder", "loop", "inside-link"]


# --------------------------------------------------------------------------- watching a load


class Hang(BaseException):
    """A case ran past CASE_SECONDS (BaseException: no loader's except clause swallows it)."""


@contextlib.contextmanager
def watch_opens():
    """Record every path opened through ``builtins.open``, ``io.open`` and ``os.open``."""
    opened: list[str] = []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def note(file) -> None:
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(file))

    def open_(file, *args, **kwargs):
        note(file)
        return real_open(file, *args, **kwargs)

    def io_open(file, *args, **kwargs):
        note(file)
        return real_io_open(file, *args, **kwargs)

    def os_open(path, *args, **kwargs):
        note(path)
        return real_os_open(path, *args, **kwargs)

    builtins.open, io.open, os.open = open_, io_open, os_open
    try:
        yield opened
    finally:
        builtins.open, io.open, os.open = real_open, real_io_open, real_os_open


def _inside(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def check_load(load: Callable[[], object], box: Sandbox, names: list[Path]) -> str:
    """Run ``load``; assert success or a proper SceneFormatError, no hang, no file opened outside.

    Returns ``"ok"`` or the error message.
    """
    with time_limit(CASE_SECONDS, Hang), watch_opens() as opened:
        try:
            result = load()
        except SceneFormatError as e:
            result = e
    outside = [p for p in opened if not _inside(p, box.folder)]
    assert not outside, f"opened outside the scene's folder: {outside}"
    if not isinstance(result, SceneFormatError):
        assert isinstance(result, (Scene, NavMesh)), result
        return "ok"
    message = str(result)
    assert any(str(n) in message for n in names), f"the message names none of {names}: {message}"
    assert SECRET.decode() not in message and "SECRET" not in message, message
    assert "\n" not in message and "\r" not in message, f"a message of more than one line: {message!r}"
    assert len(message) < 2000, f"a message of {len(message)} characters"
    return message


# --------------------------------------------------------------------------- mutations


def _flip(data: st.DataObject, blob: bytes) -> bytes:
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(0, len(out) - 1), label="flip at")
        out[at] ^= data.draw(st.integers(1, 255), label="flip bits")
    return bytes(out)


def _truncate(data: st.DataObject, blob: bytes) -> bytes:
    return blob[: data.draw(st.integers(0, len(blob) - 1), label="truncate to")]


def _json_paths(node, prefix=()) -> list[tuple]:
    paths = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            paths += _json_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            paths += _json_paths(v, prefix + (i,))
    return paths


def _edit_json(data: st.DataObject, doc: dict, box: Sandbox) -> None:
    """One edit somewhere in the document: a hostile value, a removal, a hostile uri, a self-reference."""
    paths = _json_paths(doc)[1:]
    path = data.draw(st.sampled_from(paths), label="json path")
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = data.draw(st.sampled_from(["value", "int", "delete", "uri", "uri-beside", "children", "duplicate"]), label="edit")
    if action == "value":
        parent[key] = copy.deepcopy(data.draw(st.sampled_from(HOSTILE_VALUES), label="value"))  # a fresh one: edits follow
    elif action == "int":
        parent[key] = data.draw(st.integers(-(2**40), 2**40) | st.integers(-3, 40), label="int")
    elif action == "delete":
        del parent[key]
    elif action == "uri":  # on the images and buffers the file has, or anything
        uri = data.draw(st.sampled_from(_hostile_uris(box)), label="uri")
        section = data.draw(st.sampled_from(["images", "buffers", "here"]), label="uri on")
        items = doc.get(section) if section != "here" else None
        target = None
        if isinstance(items, list) and items:
            target = items[data.draw(st.integers(0, len(items) - 1), label="uri item")]
        if isinstance(target, dict):
            target.pop("bufferView", None)
            target["uri"] = uri
        else:
            parent[key] = {"uri": uri} if isinstance(parent[key], dict) else uri
    elif action == "uri-beside":
        parent[key] = data.draw(st.sampled_from(_hostile_uris(box)), label="uri value")
    elif action == "children" and isinstance(doc.get("nodes"), list) and doc["nodes"]:  # cycles, shared children
        n = len(doc["nodes"])
        node = doc["nodes"][data.draw(st.integers(0, n - 1), label="node")]
        if isinstance(node, dict):
            node["children"] = data.draw(st.lists(st.integers(-1, n), max_size=4), label="children")
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))


def _mutate_glb(data: st.DataObject, glb: bytes, box: Sandbox, main: Path) -> bytes | None:
    """A mutated glb (or None when ``main`` was swapped for something that is not a plain file)."""
    how = data.draw(st.sampled_from(["flip", "truncate", "json", "json", "json", "raw-json", "swap", "beside"]),
                    label="glb mutation")  # fmt: skip
    if how == "flip":
        return _flip(data, glb)
    if how == "truncate":
        return _truncate(data, glb)
    if how in ("json", "raw-json"):
        doc, blob = split_glb(glb)
        if how == "raw-json":  # text edits: cut, deep nesting, a duplicated key, not UTF-8
            text = json.dumps(doc).encode()
            edit = data.draw(st.sampled_from(["cut", "deep", "dup", "bytes", "array"]), label="raw edit")
            text = {"cut": text[: len(text) // 2], "deep": b"[" * 100000 + b"]" * 100000,
                    "dup": text[:-1] + b', "asset": {"version": "1.0"}}', "bytes": text[:-1] + b', "x": "\xff\xfe"}',
                    "array": b"[" + text + b"]"}[edit]  # fmt: skip
            return pack_glb(None, blob, json_text=text)
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            if _json_paths(doc)[1:]:
                _edit_json(data, doc, box)
        return pack_glb(doc, blob)
    if how == "swap":  # the main file is something else
        kind = data.draw(st.sampled_from(["ply", "navmesh", "png", "empty", "text", *SWAP_KINDS]), label="swap")
        if kind in SWAP_KINDS:
            _swap_target(box, main, kind)
            return None
        return {"ply": GOOD_PLY, "navmesh": NAVMESH_INPUTS["v1"], "png": _png(), "empty": b"", "text": NOT_A_SCENE}[kind]
    # beside: the stage config, or a file the glb names, is hostile
    which = data.draw(st.sampled_from(["stage", "tex.png", "mesh.bin"]), label="beside")
    target = main.with_name(main.name[: -len(".glb")] + ".stage_config.json") if which == "stage" else box.path(which)
    kind = data.draw(st.sampled_from([*SWAP_KINDS, "content"]), label="beside kind")
    if kind == "content":
        content = data.draw(st.sampled_from([
            b"[]", b"{}", b'{"up": "x"}', b'{"up": [0, 0, 1], "front": [0, 0, 1]}', b'{"up": [1e400, 0, 0]}',
            b'{"up": [0, 0, 1, 2]}', b'{"front": [true, false, 0]}', b"[" * 100000, b"\xff\xfe", NOT_A_SCENE,
            b'{"up": [0, 0, 0], "front": [0, 1, 0]}', _huge_png(), _huge_png(70000, 4),
        ]), label="content")  # fmt: skip
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_bytes(content)
    else:
        _swap_target(box, target, kind)
    return glb


def _mutate_ply(data: st.DataObject, ply: bytes, box: Sandbox, main: Path) -> bytes | None:
    how = data.draw(st.sampled_from(["flip", "truncate", "header", "header", "swap"]), label="ply mutation")
    if how == "flip":
        return _flip(data, ply)
    if how == "truncate":
        return _truncate(data, ply)
    if how == "header":
        end = ply.index(b"end_header") + len(b"end_header")
        head, body = ply[:end].decode("ascii"), ply[end:]
        tokens = list(re.finditer(r"\S+", head))
        tok = tokens[data.draw(st.integers(0, len(tokens) - 1), label="header token")]
        new = data.draw(st.sampled_from([
            "-1", "0", "1", "3", "99999999999", "1e12", "lots", "", "float", "double", "uchar", "int", "list",
            "list uchar int", "list uchar float", "list int uchar", "list uchar uchar", "vertex", "face", "element",
            "end_header", "binary_big_endian", "ascii", "\x00",
            "property float x\nproperty float x", "element face 4000000000", "format binary_little_endian 2.0",
        ]) | st.integers(-(2**40), 2**40).map(str), label="header value")  # fmt: skip
        return (head[: tok.start()] + new + head[tok.end():]).encode("latin-1") + body
    kind = data.draw(st.sampled_from(["glb", "navmesh", "empty", "text", *SWAP_KINDS]), label="swap")
    if kind in SWAP_KINDS:
        _swap_target(box, main, kind)
        return None
    return {"glb": GLB_INPUTS["png-texture"][0], "navmesh": NAVMESH_INPUTS["v1"], "empty": b"", "text": NOT_A_SCENE}[kind]


def _mutate_navmesh(data: st.DataObject, nav: bytes, box: Sandbox, main: Path) -> bytes | None:
    how = data.draw(st.sampled_from(["flip", "truncate", "int32", "int32", "int16", "append", "swap"]),
                    label="navmesh mutation")  # fmt: skip
    if how == "flip":
        return _flip(data, nav)
    if how == "truncate":
        return _truncate(data, nav)
    if how in ("int32", "int16"):  # counts, sizes, indices: at 4- or 2-byte boundaries
        out = bytearray(nav)
        for _ in range(data.draw(st.integers(1, 3), label="overwrites")):
            step = 4 if how == "int32" else 2
            at = data.draw(st.integers(0, len(out) // step - 1), label="at") * step
            if how == "int32":
                value = data.draw(st.sampled_from([-1, 0, 1, 2, 7, 255, 1000, 65535, 2**24, 2**31 - 1, -(2**31)])
                                  | st.integers(-(2**31), 2**31 - 1), label="int32")  # fmt: skip
                struct.pack_into("<i", out, at, value)
            else:
                struct.pack_into("<H", out, at, data.draw(st.sampled_from([0, 5, 6, 7, 255, 65535]), label="int16"))
        return bytes(out)
    if how == "append":  # trailing bytes, a duplicated tile list, an end marker
        extra = data.draw(st.sampled_from([b"\0", bytes(8), nav[40:], b"VAND" * 50, nav]), label="append")
        return nav + extra
    kind = data.draw(st.sampled_from(["glb", "ply", "empty", "text", *SWAP_KINDS]), label="swap")
    if kind in SWAP_KINDS:
        _swap_target(box, main, kind)
        return None
    return {"glb": GLB_INPUTS["png-texture"][0], "ply": GOOD_PLY, "empty": b"", "text": NOT_A_SCENE}[kind]


def _write_main(path: Path, blob: bytes | None) -> None:
    if blob is not None:
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_bytes(blob)


# --------------------------------------------------------------------------- the fuzz tests


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=500)
@given(data=st.data(), name=st.sampled_from(sorted(GLB_INPUTS)))
def test_fuzz_glb(data, name):
    glb, beside = GLB_INPUTS[name]
    with sandbox() as box:
        for file, content in beside.items():
            box.path(file).unlink(missing_ok=True)
            box.path(file).write_bytes(content)
        main = box.path("scene.glb")
        main.write_bytes(glb)
        _write_main(main, _mutate_glb(data, glb, box, main))
        check_load(_loader(box, "gibson", "scene", lambda: load_scene("gltf", main, up="z")), box, [main])


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300)
@given(data=st.data(), name=st.sampled_from(sorted(PLY_INPUTS)))
def test_fuzz_ply(data, name):
    with sandbox("replica/room_0") as box:
        main = box.path("mesh.ply")
        main.write_bytes(PLY_INPUTS[name])
        _write_main(main, _mutate_ply(data, PLY_INPUTS[name], box, main))
        check_load(_loader(box, "replica", "room_0", lambda: load_scene("ply", main, up="z")), box, [main])


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=400)
@given(data=st.data(), name=st.sampled_from(sorted(NAVMESH_INPUTS)), through_scene=st.booleans())
def test_fuzz_navmesh(data, name, through_scene):
    with sandbox() as box:
        nav = box.path("scene.navmesh")
        nav.write_bytes(NAVMESH_INPUTS[name])
        _write_main(nav, _mutate_navmesh(data, NAVMESH_INPUTS[name], box, nav))
        mesh = box.path("scene.glb")
        mesh.write_bytes(GLB_INPUTS["png-texture"][0])
        if through_scene:
            load = lambda: load_scene("gltf", mesh, up="z", navmesh=nav)
        else:
            load = lambda: read_navmesh(nav)
        check_load(_loader(box, "gibson", "scene", load), box, [nav])


@pytest.fixture(scope="module")
def real_glb(shared_fixtures) -> tuple[bytes, bytes]:
    room = shared_fixtures / "habitat" / "simple_room.glb"
    if not room.is_file():
        pytest.skip(f"{room} is absent")
    return room.read_bytes(), room.with_name("simple_room.stage_config.json").read_bytes()


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fuzz_real_habitat_glb(real_glb, data):
    """The real Habitat stage (and its stage config), mutated the same ways."""
    glb, config = real_glb
    with sandbox() as box:
        main = box.path("simple_room.glb")
        main.write_bytes(glb)
        box.path("simple_room.stage_config.json").write_bytes(config)
        _write_main(main, _mutate_glb(data, glb, box, main))
        check_load(_loader(box, "gibson", "simple_room", lambda: load_scene("gltf", main, up="z")), box, [main])


def test_the_unmutated_inputs_load():
    """The fuzz starts from files that load: a mutation, not the input, is what fails."""
    with sandbox() as box:
        for name, (glb, beside) in GLB_INPUTS.items():
            for file, content in beside.items():
                box.path(file).unlink(missing_ok=True)
                box.path(file).write_bytes(content)
            path = box.path(f"{name}.glb")
            path.write_bytes(glb)
            assert check_load(lambda p=path: load_scene("gltf", p, up="z"), box, [path]) == "ok", name
        for name, ply in PLY_INPUTS.items():
            path = box.path(f"{name}.ply")
            path.write_bytes(ply)
            assert check_load(lambda p=path: load_scene("ply", p, up="z"), box, [path]) == "ok", name
        for name, nav in NAVMESH_INPUTS.items():
            path = box.path(f"{name}.navmesh")
            path.write_bytes(nav)
            assert check_load(lambda p=path: read_navmesh(p), box, [path]) == "ok", name


# --------------------------------------------------------------------------- discovery and the CLI


def _link_out_layout(root: Path, outside: Path) -> None:
    """hm3d, replica and gibson scenes whose mesh or navmesh is a link leaving the dataset folder."""
    glb = GLB_INPUTS["png-texture"][0]
    (outside / "foreign.glb").write_bytes(glb)
    (outside / "foreign.navmesh").write_bytes(NAVMESH_INPUTS["v1"])
    (outside / "foreign.ply").write_bytes(GOOD_PLY)
    hm3d = root / "hm3d" / "val"
    for scene, mesh_link, nav_link in [("00800-aaa", True, False), ("00801-bbb", False, True), ("00802-ccc", False, False)]:
        d = hm3d / scene
        d.mkdir(parents=True)
        h = scene.split("-")[1]
        if mesh_link:
            (d / f"{h}.glb").symlink_to(outside / "foreign.glb")
        else:
            (d / f"{h}.glb").write_bytes(glb)
        if nav_link:
            (d / f"{h}.basis.navmesh").symlink_to(outside / "foreign.navmesh")
    room = root / "replica" / "room_0"
    (room / "habitat").mkdir(parents=True)
    (room / "mesh.ply").write_bytes(GOOD_PLY)
    (room / "habitat" / "mesh_semantic.navmesh").symlink_to("../../../../outside/foreign.navmesh")
    gibson = root / "gibson"
    gibson.mkdir()
    (gibson / "Good.glb").write_bytes(glb)
    (gibson / "Good.navmesh").write_bytes(NAVMESH_INPUTS["v1"])
    (gibson / "Inside.glb").symlink_to("Good.glb")  # a link that stays inside is fine
    (gibson / "Foreign.glb").symlink_to(outside / "foreign.glb")
    (gibson / "Pipe.glb").unlink(missing_ok=True)
    os.mkfifo(gibson / "Pipe.glb")


def test_discovery_records_links_leaving_the_dataset_folder(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    _link_out_layout(root, outside)
    hm3d = {r.scene_id: r for r in discover(get_dataset("hm3d"), root)}
    assert not hm3d["00800-aaa"].ok and "leads outside the dataset folder" in hm3d["00800-aaa"].problems[0]
    assert str(root / "hm3d" / "val" / "00800-aaa" / "aaa.glb") in hm3d["00800-aaa"].problems[0]
    assert not hm3d["00801-bbb"].ok and hm3d["00801-bbb"].navmesh is None
    assert "bbb.basis.navmesh" in hm3d["00801-bbb"].problems[0]
    assert hm3d["00802-ccc"].ok
    (replica,) = discover(get_dataset("replica"), root)
    assert not replica.ok and replica.navmesh is None and "mesh_semantic.navmesh" in replica.problems[0]
    gibson = {r.scene_id: r for r in discover(get_dataset("gibson"), root)}
    assert gibson["Good"].ok and gibson["Good"].navmesh and gibson["Inside"].ok
    assert not gibson["Foreign"].ok and "leads outside" in gibson["Foreign"].problems[0]
    assert not gibson["Pipe"].ok and "not a regular file" in gibson["Pipe"].problems[0]
    for record in [*hm3d.values(), replica, *gibson.values()]:
        assert "foreign" not in (record.mesh or "") + (record.navmesh or "") or not record.ok


def test_discovery_allows_a_linked_dataset_folder(tmp_path):
    """Habitat users link whole dataset folders into data/scene_datasets: that is inside."""
    real = tmp_path / "disk" / "gibson"
    real.mkdir(parents=True)
    (real / "Good.glb").write_bytes(GLB_INPUTS["png-texture"][0])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gibson").symlink_to(real)
    (record,) = discover(get_dataset("gibson"), tmp_path / "data")
    assert record.ok, record.problems


def _mutated_glbs(count: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` glbs, each damaged one seeded way (flips, cuts, JSON edits)."""
    rng = random.Random(seed)
    base = GLB_INPUTS["png-texture"][0]
    out = {}
    for i in range(count):
        how = ["flip", "cut", "count", "uri", "children", "image", "json"][i % 7]
        if how == "flip":
            data = bytearray(base)
            for _ in range(4):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
            out[f"Flip{i}"] = bytes(data)
        elif how == "cut":
            out[f"Cut{i}"] = base[: rng.randrange(len(base))]
        else:
            doc, blob = split_glb(base)
            if how == "count":
                doc["accessors"][rng.randrange(len(doc["accessors"]))]["count"] = rng.choice([10**12, -1, "lots"])
            elif how == "uri":
                doc["images"][0] = {"uri": rng.choice(["../../outside/secret.bin", "/dev/zero", "pipe.png"])}
            elif how == "children":
                doc["nodes"][0]["children"] = [0]
            elif how == "image":
                doc["images"][0] = {"uri": "data:image/png;base64," + base64.b64encode(_huge_png()).decode()}
            else:
                doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = rng.choice([99, "x", None])
            out[f"Json{i}"] = pack_glb(doc, blob)
    return out


@pytest.mark.timeout(120)
def test_scenes_command_lists_every_mutated_glb(tmp_path, capsys):
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "gibson").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.bin").write_bytes(SECRET)
    glbs = _mutated_glbs(28)
    for name, data in glbs.items():
        (root / "gibson" / f"{name}.glb").write_bytes(data)
    (root / "gibson" / "Good.glb").write_bytes(GLB_INPUTS["png-texture"][0])
    (root / "gibson" / "Foreign.glb").symlink_to(outside / "secret.bin")
    os.mkfifo(root / "gibson" / "Pipe.glb")
    os.mkfifo(root / "gibson" / "pipe.png")
    (root / "gibson" / "Nav.glb").write_bytes(GLB_INPUTS["png-texture"][0])
    (root / "gibson" / "Nav.navmesh").symlink_to(outside / "secret.bin")
    names = {*glbs, "Good", "Foreign", "Pipe", "Nav"}

    with time_limit(60, Hang):
        code = pairgen_main(["scenes", "--scenes", "gibson", "--data-root", str(root), "--triangles"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in out + err and "SECRET" not in out + err
    rows = out.splitlines()[1:]  # after the header
    assert len(rows) == len(names), out
    listed = {row.split()[2]: row for row in rows}
    assert set(listed) == names
    assert listed["Good"].rstrip().endswith("ok")
    bad = [n for n in names if n != "Good"]
    for name in bad:
        assert "PROBLEM" in listed[name], listed[name]
    assert f"{len(names)} scenes, 1 usable, {len(bad)} with problems" in err
