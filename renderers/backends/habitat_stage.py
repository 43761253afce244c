"""What the ``habitat`` backend hands habitat-sim: the scene's file, or a copy with both windings of double-sided faces.

habitat-sim culls back faces: ``esp/gfx/Renderer.cpp`` enables
``FaceCulling`` for every draw, and only its PBR drawable turns it off, for
glTF materials marked ``doubleSided``, from release 0.3.0 on (0.2.x has that
code commented out). The backend renders unlit (``NO_LIGHT_KEY``), which makes
habitat-sim force flat shading on the stage, whose drawables cull in every
release (0.2.x to 0.3.x). Left alone, habitat-sim therefore draws every face
from its front only, ``doubleSided`` or not: from inside the fixture
``simple_room.glb``'s box, whose faces look outwards (material
``doubleSided: true``), it sees almost nothing, and PLY scans, which have no
material, lose every face seen from behind.

docs/design.md's rule ("Back faces"): glTF materials are seen from the sides
their ``doubleSided`` says; a PLY scan's faces from both. For habitat-sim to
follow it, :func:`double_sided_copy` writes a copy of the scene's file in which
every double-sided face is there twice, once per winding. Whichever side a
camera is on, one of the two turns its front to it and the other is culled, so
each is drawn once, at the same depth, in the same colour (flat shading uses
no normals). Single-sided faces are left alone.

* ``.glb``: each primitive of a double-sided material gets a twin with the
  same attributes and material and its triangles' corners reversed; the copy
  shares every accessor, image and material with the original and appends
  only the reversed index lists to its binary chunk. Its stage config
  (``<name>.stage_config.json``) is copied beside it.
* ``.ply``: the scene's vertices (in the file's frame) and colours, and its
  triangles followed by the same triangles reversed.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import struct
from pathlib import Path

import numpy as np

from manifests.store import local
from renderers.scene import Scene
from renderers.sources.gltf import GltfReader, read_container, stage_config_path, triangles_from_mode

__all__ = ["double_sided_copy", "double_sided_glb", "double_sided_ply"]

log = logging.getLogger(__name__)

_GLB_MAGIC, _CHUNK_JSON, _CHUNK_BIN = b"glTF", 0x4E4F534A, 0x004E4942
_UNSIGNED_INT, _ELEMENT_ARRAY_BUFFER = 5125, 34963  # glTF's componentType and bufferView target codes
_TRIANGLE_MODES = (4, 5, 6)  # TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN


def double_sided_copy(scene: Scene, dest_dir: str | Path) -> Path | None:
    """The file habitat-sim should load for ``scene``: a copy in ``dest_dir`` whose double-sided faces have both
    windings, or None when the scene's own file will do (no double-sided face) or no copy can be made.

    Parameters
    ----------
    scene : Scene
        Loaded from ``scene.source`` (a ``.glb`` or ``.ply``; other files get no copy, with a warning).
    dest_dir : str or Path
        An existing folder; the copy keeps the file's name.

    Raises
    ------
    SceneFormatError
        The file is not readable as its source reads it.
    """
    single = scene.single_sided_faces
    if single is not None and single.all():
        return None
    path, dest_dir = Path(scene.source), Path(dest_dir)
    suffix = path.suffix.lower()
    if suffix == ".glb":
        return double_sided_glb(path, dest_dir / path.name)
    if suffix == ".ply":
        return double_sided_ply(scene, dest_dir / path.name)
    log.warning("%s: habitat-sim culls the back faces of double-sided materials, and no copy with both windings "
                "is written for a %s file: views that see them from behind differ from raycast's",
                path, suffix)  # fmt: skip
    return None


def double_sided_glb(path: Path, target: Path) -> Path | None:
    """Write ``target``: the ``.glb`` at ``path`` with each primitive of a double-sided material drawn once more,
    reversed; its stage config copied beside it. None (nothing written) when no primitive needs it, or when the
    file's first buffer is not its binary chunk (a warning says so)."""
    doc, bin_chunk = read_container(path)
    materials = doc.get("materials", [])
    double = {i for i, m in enumerate(materials if isinstance(materials, list) else [])
              if isinstance(m, dict) and m.get("doubleSided") is True}  # fmt: skip
    buffers = doc.get("buffers", [])
    if not double:
        return None
    if buffers and (bin_chunk is None or "uri" in buffers[0]):
        log.warning("%s: its first buffer is not the glb's binary chunk, so its double-sided primitives cannot be "
                    "given both windings for habitat-sim, which culls their back faces", path)  # fmt: skip
        return None
    reader = GltfReader(doc, bin_chunk, path)
    out = copy.deepcopy(doc)
    blob = bytearray(bin_chunk or b"")
    views, accessors = out.setdefault("bufferViews", []), out.setdefault("accessors", [])
    doubled = 0
    for mesh in out.get("meshes", []):
        twins = []
        for prim in mesh.get("primitives", []):
            mode = prim.get("mode", 4)
            if prim.get("material") not in double or mode not in _TRIANGLE_MODES:
                continue
            if "indices" in prim:
                idx = reader.accessor(prim["indices"]).reshape(-1).astype(np.int64)
            else:
                idx = np.arange(reader.size(reader.item("accessors", prim["attributes"]["POSITION"])["count"], "count"))
            reversed_ = triangles_from_mode(idx, mode)[:, ::-1]  # (T, 3): the other winding
            if not len(reversed_):
                continue
            blob.extend(b"\0" * (-len(blob) % 4))
            data = np.ascontiguousarray(reversed_, "<u4").tobytes()
            views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data),
                          "target": _ELEMENT_ARRAY_BUFFER})  # fmt: skip
            accessors.append({"bufferView": len(views) - 1, "componentType": _UNSIGNED_INT, "count": reversed_.size,
                              "type": "SCALAR"})  # fmt: skip
            blob.extend(data)
            twin = {k: v for k, v in prim.items() if k not in ("indices", "mode")}
            twins.append({**twin, "indices": len(accessors) - 1, "mode": 4})
            doubled += 1
        mesh.get("primitives", []).extend(twins)
    if not doubled:
        return None
    blob.extend(b"\0" * (-len(blob) % 4))
    if buffers:
        out["buffers"][0]["byteLength"] = len(blob)
    else:
        out["buffers"] = [{"byteLength": len(blob)}]
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    with open(target, "wb") as f:
        f.write(struct.pack("<4sII", _GLB_MAGIC, 2, 12 + 8 + len(text) + 8 + len(blob)))
        f.write(struct.pack("<II", len(text), _CHUNK_JSON) + text)
        f.write(struct.pack("<II", len(blob), _CHUNK_BIN) + blob)
    config = stage_config_path(path)
    if config.is_file():
        shutil.copyfile(local(config), stage_config_path(target))  # a store's: fetched first
    log.info("%s: %d primitives of double-sided materials given both windings for habitat-sim (%s)",
             path, doubled, target)  # fmt: skip
    return target


def double_sided_ply(scene: Scene, target: Path) -> Path:
    """Write ``target``: ``scene`` as a binary PLY in its file's frame, every triangle followed by it reversed.

    Vertex colours (``red green blue``) and face colours (each triangle's, on both of its windings) are kept;
    other properties (normals, alpha) are not, as unlit flat shading reads none of them.
    """
    from plyfile import PlyData, PlyElement

    world_to_file = np.linalg.inv(np.asarray(scene.file_to_world, np.float64))
    v = scene.vertices.astype(np.float64) @ world_to_file[:3, :3].T + world_to_file[:3, 3]  # (V, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if scene.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(v), fields)
    vertex["x"], vertex["y"], vertex["z"] = v.T
    if scene.vertex_colors is not None:
        vertex["red"], vertex["green"], vertex["blue"] = scene.vertex_colors.T
    faces = np.concatenate([scene.faces, scene.faces[:, ::-1]]).astype("<i4")  # (2F, 3): both windings
    face_fields = [("vertex_indices", "<i4", (3,))]
    if scene.face_colors is not None:
        face_fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    face = np.empty(len(faces), face_fields)
    face["vertex_indices"] = faces
    if scene.face_colors is not None:
        colors = np.concatenate([scene.face_colors, scene.face_colors])
        face["red"], face["green"], face["blue"] = colors.T
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(target))
    log.info("%s: %d triangles given both windings for habitat-sim (%s)", scene.source, scene.num_triangles, target)
    return target
