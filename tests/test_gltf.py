"""glTF/glb loading: axes, node transforms, materials, textures (JPEG, PNG, Basis), bad files."""

from __future__ import annotations

import json
import os
import struct

import cv2
import numpy as np
import pytest

from renderers.scene import SceneFormatError, Wrap
from renderers.sources import load_scene
from renderers.sources.gltf import rotation_from_up_front
from tests.writers.gltf import GlbImage, GlbMesh, GlbNode, textured_material, write_glb

QUAD_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)


def z_up_room(size=4.0, height=2.5) -> list[GlbMesh]:
    """A floor at z = 0 and a ceiling at z = height, in Z-up file coordinates."""
    s = size / 2
    floor = np.array([[-s, -s, 0], [s, -s, 0], [s, s, 0], [-s, s, 0]], np.float32)
    ceiling = floor + np.array([0, 0, height], np.float32)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    return [GlbMesh(floor, quad, uvs=QUAD_UV, material=0), GlbMesh(ceiling, quad[:, ::-1], uvs=QUAD_UV, material=1)]


def pattern(h=16, w=24) -> np.ndarray:
    """An RGB image whose every pixel is distinct, so a flip or transpose shows."""
    j, i = np.mgrid[0:h, 0:w]
    return np.stack([i * 10 % 256, j * 15 % 256, (i + j) * 5 % 256], axis=2).astype(np.uint8)


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def save(tmp_path, data: bytes, name="scene.glb"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_habitat_z_up_floor_ends_below_ceiling(tmp_path):
    images = [GlbImage(png(pattern()), "image/png")]
    glb = write_glb(z_up_room(), images=images, materials=[textured_material(0), textured_material(0)])
    scene = load_scene("gltf", save(tmp_path, glb), up="z")
    floor_y = scene.vertices[:4, 1]
    ceiling_y = scene.vertices[4:, 1]
    np.testing.assert_allclose(floor_y, 0.0)
    np.testing.assert_allclose(ceiling_y, 2.5)
    assert scene.textured and len(scene.materials) == 2


def test_known_file_vertex_lands_at_expected_world_point(tmp_path):
    tri = GlbMesh(np.array([[1, 2, 3], [0, 0, 0], [1, 0, 0]], np.float32), np.array([[0, 1, 2]]))
    scene = load_scene("gltf", save(tmp_path, write_glb([tri])), up="z")
    np.testing.assert_allclose(scene.vertices[0], (1.0, 3.0, -2.0))
    np.testing.assert_allclose(rotation_from_up_front((0, 0, 1), (0, 1, 0))[:3, :3] @ (1, 2, 3), (1, 3, -2))


def test_stage_config_beside_the_file_overrides_the_dataset_axes(tmp_path):
    tri = GlbMesh(np.array([[1, 2, 3], [0, 0, 0], [1, 0, 0]], np.float32), np.array([[0, 1, 2]]))
    path = save(tmp_path, write_glb([tri]), "stage.glb")
    (tmp_path / "stage.stage_config.json").write_text(json.dumps({"up": [0, 1, 0], "front": [0, 0, -1]}))
    scene = load_scene("gltf", path, up="z")  # the config says the file is already Y-up
    np.testing.assert_allclose(scene.vertices[0], (1.0, 2.0, 3.0))


def test_node_transforms_compose_parent_then_child(tmp_path):
    tri = GlbMesh(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32), np.array([[0, 1, 2]]))
    # child: scale 2 then rotate 90 deg about +Z; parent: translate (10, 0, 0) via a matrix
    half = np.sqrt(0.5)
    parent_matrix = np.eye(4)
    parent_matrix[:3, 3] = (10, 0, 0)
    nodes = [GlbNode(children=[1], matrix=parent_matrix), GlbNode(mesh=0, scale=(2, 2, 2), rotation=(0, 0, half, half))]
    scene = load_scene("gltf", save(tmp_path, write_glb([tri], nodes)), up="y")
    # (1,0,0) -> scaled (2,0,0) -> rotated (0,2,0) -> translated (10,2,0)
    np.testing.assert_allclose(scene.vertices, [[10, 2, 0], [8, 0, 0], [10, 0, 2]], atol=1e-5)


def test_several_meshes_keep_their_materials(tmp_path):
    meshes = z_up_room()
    mats = [{"pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}, {"pbrMetallicRoughness": {"baseColorFactor": [0, 0, 1, 1]}}]
    scene = load_scene("gltf", save(tmp_path, write_glb(meshes, materials=mats)), up="z")
    colors = [scene.materials[m].base_color for m in scene.face_materials]
    assert colors[:2] == [(1, 0, 0, 1)] * 2 and colors[2:] == [(0, 0, 1, 1)] * 2


def test_png_texture_decodes_exactly_with_sampler_wrap(tmp_path):
    img = pattern()
    glb = write_glb(
        z_up_room()[:1], images=[GlbImage(png(img), "image/png")], materials=[textured_material(0)],
        samplers=[{"wrapS": int(Wrap.CLAMP_TO_EDGE), "wrapT": int(Wrap.MIRRORED_REPEAT)}],
    )
    scene = load_scene("gltf", save(tmp_path, glb), up="z")
    tex = scene.materials[0].texture
    np.testing.assert_array_equal(tex.image, img)
    assert (tex.wrap_s, tex.wrap_t) == (Wrap.CLAMP_TO_EDGE, Wrap.MIRRORED_REPEAT)
    np.testing.assert_allclose(scene.uvs, QUAD_UV)


def test_jpeg_texture_decodes_top_row_first(tmp_path):
    img = np.zeros((64, 32, 3), np.uint8)
    img[:32] = (250, 20, 20)  # top half red, bottom half blue
    img[32:] = (20, 20, 250)
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1])
    glb = write_glb(z_up_room()[:1], images=[GlbImage(buf.tobytes(), "image/jpeg")], materials=[textured_material(0)])
    tex = load_scene("gltf", save(tmp_path, glb), up="z").materials[0].texture.image
    assert tex.shape == (64, 32, 3)
    assert tex[:16, :, 0].mean() > 200 and tex[48:, :, 2].mean() > 200


def test_triangle_strip_and_fan_become_triangles(tmp_path):
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], np.float32)
    strip = GlbMesh(pos, np.arange(5), mode=5)
    fan = GlbMesh(pos, np.arange(4), mode=6)
    scene = load_scene("gltf", save(tmp_path, write_glb([strip, fan])), up="y")
    assert scene.num_triangles == 3 + 2
    normals = np.cross(*(scene.vertices[scene.faces[:3, k]] - scene.vertices[scene.faces[:3, 0]] for k in (1, 2)))
    assert (normals[:, 2] > 0).all()  # a strip keeps one winding


# -- Basis Universal, around the real kodim20.basis (768x512, sky above grass) --


def _basis_flag_y_flipped(data: bytes) -> bytes:
    """The same .basis file with its header's y_flipped flag set (and CRC16 fixed)."""

    def crc16(buf: bytes) -> int:
        crc = 0xFFFF
        for byte in buf:
            q = (byte ^ (crc >> 8)) & 0xFFFF
            k = ((q >> 4) ^ q) & 0xFFFF
            crc = (((crc << 8) ^ k) ^ (k << 5) ^ (k << 12)) & 0xFFFF
        return (~crc) & 0xFFFF

    d = bytearray(data)
    header_size = struct.unpack_from("<H", d, 4)[0]
    flags = struct.unpack_from("<H", d, 21)[0]
    struct.pack_into("<H", d, 21, flags | 2)  # cBASISHeaderFlagYFlipped
    struct.pack_into("<H", d, 6, crc16(bytes(d[8:header_size])))
    return bytes(d)


@pytest.fixture(scope="module")
def kodim20(shared_fixtures) -> bytes:
    return (shared_fixtures / "basis" / "kodim20.basis").read_bytes()


@pytest.mark.parametrize("mime,extension", [("image/x-basis", True), ("image/basis", True), ("image/x-basis", False)])
def test_basis_texture_behind_google_texture_basis(tmp_path, kodim20, mime, extension):
    glb = write_glb(z_up_room()[:1], images=[GlbImage(kodim20, mime, basis_extension=extension)], materials=[textured_material(0)])
    tex = load_scene("gltf", save(tmp_path, glb, "x.basis.glb"), up="z").materials[0].texture.image
    assert tex.shape == (512, 768, 3)
    # The photo has bright sky in its top rows and darker grass at the bottom:
    # decoded rows must come top first.
    assert tex[:100].mean() > tex[-100:].mean() + 40


def test_basis_y_flipped_flag_reverses_rows(tmp_path, kodim20):
    def load(data):
        glb = write_glb(z_up_room()[:1], images=[GlbImage(data, "image/x-basis", True)], materials=[textured_material(0)])
        return load_scene("gltf", save(tmp_path, glb, "x.basis.glb"), up="z").materials[0].texture.image

    plain, flipped = load(kodim20), load(_basis_flag_y_flipped(kodim20))
    np.testing.assert_array_equal(flipped, plain[::-1])


# -- the real Habitat fixture --------------------------------------------------


def test_real_habitat_simple_room(shared_fixtures):
    path = shared_fixtures / "habitat" / "simple_room.glb"
    scene = load_scene("gltf", path, up="z")
    assert scene.num_triangles == 84  # seven boxes
    v = scene.vertices
    low = v[v[:, 1] < 0.1]
    # The floor slab spans the room (about 10.5 m x 10.8 m) horizontally at y ~ 0:
    # only true when the Z-up file was rotated to Y-up.
    assert np.ptp(low[:, 0]) > 10 and np.ptp(low[:, 2]) > 10
    assert v[:, 1].max() > 1.0  # the furniture stands above it


# -- bad files -------------------------------------------------------------------


def _room_glb(**kw) -> bytes:
    return write_glb(z_up_room(), images=[GlbImage(png(pattern()), "image/png")], materials=[textured_material(0)] * 2, **kw)


def _with_json(edit) -> bytes:
    data = bytearray(_room_glb())
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(bytes(data[20 : 20 + n]))
    edit(doc)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    rest = bytes(data[20 + n :])
    return struct.pack("<4sII", b"glTF", 2, 20 + len(js) + len(rest)) + struct.pack("<II", len(js), 0x4E4F534A) + js + rest


def _nan_vertex() -> bytes:
    meshes = z_up_room()
    for m in meshes:
        m.material = None
    meshes[0].positions = meshes[0].positions.copy()
    meshes[0].positions[2, 1] = np.nan
    return write_glb(meshes)


BAD = {
    "empty": (lambda: b"", "empty"),
    "wrong magic": (lambda: b"GLTX" + _room_glb()[4:], "not a glTF file"),
    "truncated": (lambda: _room_glb()[:300], "truncated"),
    "version 1": (lambda: struct.pack("<4sII", b"glTF", 1, 20), "glb version 1"),
    "NaN vertex": (_nan_vertex, "NaN"),
    "texture index out of range": (lambda: _with_json(lambda d: d["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"].update(index=7)), "refers to texture 7"),
    "image index out of range": (lambda: _with_json(lambda d: d["textures"][0].update(source=3)), "refers to image 3"),
    "undecodable image": (lambda: write_glb(z_up_room(), images=[GlbImage(b"\xff\xd8\xff\xe0" + b"\x00" * 40, "image/jpeg")], materials=[textured_material(0)] * 2), "corrupt or truncated JPEG"),
    "unknown image bytes": (lambda: write_glb(z_up_room(), images=[GlbImage(b"GIF89a" + b"\x00" * 40, "image/gif")], materials=[textured_material(0)] * 2), "not a JPEG, PNG, WebP or Basis image"),
    "corrupt basis": (lambda: write_glb(z_up_room(), images=[GlbImage(b"sB" + b"\x13\x00" + b"\x00" * 100, "image/x-basis", True)], materials=[textured_material(0)] * 2), "Basis Universal"),
    "draco required": (lambda: write_glb(z_up_room(), extensions_required=["KHR_draco_mesh_compression"]), "KHR_draco_mesh_compression"),
    "bad json": (lambda: struct.pack("<4sII", b"glTF", 2, 28) + struct.pack("<II", 8, 0x4E4F534A) + b"{nope!!}", "JSON is malformed"),
    # Declared sizes are checked before anything is allocated or read.
    "count 1e12": (lambda: _with_json(lambda d: d["accessors"][0].update(count=1e12)), "truncated: accessor 0 needs"),
    "count not a number": (lambda: _with_json(lambda d: d["accessors"][0].update(count="lots")), "accessor 0 count must be a non-negative integer, got 'lots'"),
    "count negative": (lambda: _with_json(lambda d: d["accessors"][0].update(count=-4)), "accessor 0 count must be a non-negative integer"),
    "zeros of 1e12": (lambda: _with_json(lambda d: (d["accessors"][0].pop("bufferView"), d["accessors"][0].update(count=10**12))), "no bufferView and declares 1000000000000 elements"),
    "sparse count 1e12": (lambda: _with_json(lambda d: d["accessors"][0].update(sparse={"count": 10**12, "indices": {"bufferView": 0, "componentType": 5125}, "values": {"bufferView": 0}})), "sparse count 1000000000000 exceeds"),
    "sparse past its view": (lambda: _with_json(lambda d: d["accessors"][0].update(sparse={"count": 4, "indices": {"bufferView": 0, "componentType": 5125, "byteOffset": 40}, "values": {"bufferView": 0}})), "truncated: accessor 0 sparse indices"),
    "negative byteOffset": (lambda: _with_json(lambda d: d["bufferViews"][0].update(byteOffset=-4)), "bufferView 0 byteOffset must be a non-negative integer"),
    "stride below an element": (lambda: _with_json(lambda d: d["bufferViews"][0].update(byteStride=4)), "byteStride 4 is smaller than one element"),
    "byteLength not a number": (lambda: _with_json(lambda d: d["buffers"][0].update(byteLength="big")), "buffer 0 byteLength must be a non-negative integer"),
    "asset not an object": (lambda: _with_json(lambda d: d.update(asset="2.0")), "no 'asset' object"),
    "matrix of words": (lambda: _with_json(lambda d: d["nodes"][0].update(matrix=["a"] * 16)), "malformed glTF"),
    "buffer uri out of the folder": (lambda: _with_json(lambda d: (d["buffers"].append({"uri": "../data.bin", "byteLength": 4}), d["bufferViews"][0].update(buffer=1))), "buffer 1: uri '../data.bin' refused"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_file_and_the_problem(tmp_path, case):
    make, phrase = BAD[case]
    path = save(tmp_path, make(), "broken_stage.glb")
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    assert "broken_stage.glb" in str(err.value)
    assert phrase in str(err.value)


# -- image uris: only regular files inside the glTF file's folder ------------------


def _glb_with_image_uri(uri: str) -> bytes:
    return write_glb(z_up_room()[:1], images=[GlbImage(b"", "image/png", uri=uri)], materials=[textured_material(0)])


def test_image_uri_beside_the_file_is_read(tmp_path):
    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "my tex.png").write_bytes(png(pattern()))
    path = save(tmp_path, _glb_with_image_uri("textures/my%20tex.png"))
    np.testing.assert_array_equal(load_scene("gltf", path, up="z").materials[0].texture.image, pattern())


def _outside(tmp_path):
    """``tmp/outside.png`` (a good image) and the folder ``tmp/scene`` the glb goes in."""
    (tmp_path / "outside.png").write_bytes(png(pattern()))
    folder = tmp_path / "scene"
    folder.mkdir()
    return folder


def _symlink(folder, name, target) -> str:
    (folder / name).symlink_to(target)
    return name


URI_CASES = {
    "absolute path": (lambda tmp, folder: str(tmp / "outside.png"), "absolute path"),
    "absolute /dev/zero": (lambda tmp, folder: "/dev/zero", "absolute path"),
    "parent folder": (lambda tmp, folder: "../outside.png", "outside the glTF file's folder"),
    "parent folder, encoded": (lambda tmp, folder: "sub/%2E%2E/%2E%2E/outside.png", "outside the glTF file's folder"),
    "symlink out": (lambda tmp, folder: _symlink(folder, "link.png", tmp / "outside.png"), "outside the glTF file's folder"),
    "symlink to /dev/zero": (lambda tmp, folder: _symlink(folder, "zero.png", "/dev/zero"), "outside the glTF file's folder"),
    "fifo": (lambda tmp, folder: (os.mkfifo(folder / "pipe.png"), "pipe.png")[1], "is not a regular file"),
    "file scheme": (lambda tmp, folder: "file://" + str(tmp / "outside.png"), "only relative paths"),
}


@pytest.mark.timeout(30)  # a FIFO that were opened for reading would block here
@pytest.mark.parametrize("case", list(URI_CASES))
def test_image_uri_outside_the_folder_is_refused(tmp_path, case):
    make, phrase = URI_CASES[case]
    folder = _outside(tmp_path)
    uri = make(tmp_path, folder)
    path = save(folder, _glb_with_image_uri(uri), "stage.glb")
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    message = str(err.value)
    assert str(path) in message and repr(uri) in message and phrase in message, message
