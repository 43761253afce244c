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


def test_double_sided_is_read_per_material_and_the_default_material_is_single_sided(tmp_path):
    meshes = z_up_room() + [GlbMesh(z_up_room()[0].positions + 1, np.array([[0, 1, 2]]))]  # the last: no material
    mats = [{"doubleSided": True}, {"doubleSided": False, "pbrMetallicRoughness": {}}]
    scene = load_scene("gltf", save(tmp_path, write_glb(meshes, materials=mats)), up="z")
    assert [m.double_sided for m in scene.materials] == [True, False, False]
    np.testing.assert_array_equal(scene.single_sided_faces, [False, False, True, True, True])


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
    # One material, doubleSided; the thin box of mesh "Cube.003" has none: glTF's default, single-sided.
    assert [m.double_sided for m in scene.materials] == [True, False]
    assert scene.single_sided_faces.sum() == 12


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
    "doubleSided not a bool": (lambda: _with_json(lambda d: d["materials"][0].update(doubleSided="yes")), "material 0: doubleSided must be true or false, got 'yes'"),
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


# -- hostile files: declared image sizes, stage configs, buffers, node trees -------


def _huge_png(w=50000, h=50000) -> bytes:
    """A PNG signature and IHDR declaring ``w`` x ``h``, and no pixels."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", w, h, 8, 2, 0, 0, 0) + b"\0" * 4


def _huge_jpeg(w=50000, h=50000) -> bytes:
    """A JPEG whose APP0 then baseline frame header (SOF0) declare ``w`` x ``h``."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x11\0\x02\x11\0\x03\x11\0"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xda" + b"\0" * 32


def _huge_webp(w=50000, h=50000) -> bytes:
    """A WebP whose VP8X chunk declares a ``w`` x ``h`` canvas."""
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("image, kind", [(_huge_png(), "png"), (_huge_jpeg(), "jpeg"), (_huge_webp(), "webp"),
                                         (_huge_png(4, 70000), "png")])  # fmt: skip
def test_image_declaring_a_huge_size_is_refused_before_decoding(tmp_path, monkeypatch, image, kind):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image whose header declares too many pixels")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    glb = write_glb(z_up_room()[:1], images=[GlbImage(image, f"image/{kind}")], materials=[textured_material(0)])
    path = save(tmp_path, glb, "huge.glb")
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    message = str(err.value)
    assert str(path) in message and "image 0" in message and "allowed per side" in message, message


def test_image_sizes_are_read_from_real_headers():
    from renderers.sources.textures import image_size

    img = np.zeros((37, 53, 3), np.uint8)
    for ext, params in [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".webp", []),
                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])]:  # fmt: skip
        ok, buf = cv2.imencode(ext, img, params)
        assert ok and image_size(buf.tobytes()) == (53, 37), (ext, params)
    assert image_size(_huge_jpeg(300, 200)) == (300, 200)
    assert image_size(_huge_webp(300, 200)) == (300, 200)


def _plain_room() -> list[GlbMesh]:
    """The room without materials or textures."""
    meshes = z_up_room()
    for m in meshes:
        m.material = None
    return meshes


STAGE_CASES = {
    "link out": (lambda p: p.symlink_to(p.parent.parent / "outside.json"), "leads outside the glTF file's folder"),
    "link to /dev/zero": (lambda p: p.symlink_to("/dev/zero"), "leads outside the glTF file's folder"),
    "fifo": (lambda p: os.mkfifo(p), "is not a regular file"),
    "folder": (lambda p: p.mkdir(), "is a folder"),
    "not an object": (lambda p: p.write_text("[0, 0, 1]"), "must be a JSON object"),
    "up of words": (lambda p: p.write_text('{"up": ["x", "y", "z"]}'), "'up' must be a list of 3 finite numbers"),
    "front too long": (lambda p: p.write_text('{"front": [0, 1, 0, 0]}'), "'front' must be a list of 3 finite numbers"),
    "deep nesting": (lambda p: p.write_text("[" * 100000), "unreadable stage config"),
    "too big": (lambda p: p.write_bytes(b" " * (2 << 20) + b"{}"), "more than the"),
    "not orthogonal": (lambda p: p.write_text('{"up": [0, 0, 1], "front": [0, 0, 1]}'), "stage config axes"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(STAGE_CASES))
def test_hostile_stage_config_is_refused(tmp_path, case):
    make, phrase = STAGE_CASES[case]
    folder = tmp_path / "scene"
    folder.mkdir()
    (tmp_path / "outside.json").write_text('{"up": [0, 1, 0], "front": [0, 0, -1], "secret": "SECRET"}')
    path = save(folder, write_glb(_plain_room()), "stage.glb")
    make(folder / "stage.stage_config.json")
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    message = str(err.value)
    assert str(path) in message and phrase in message and "SECRET" not in message, message
    if case != "not orthogonal":
        assert "stage.stage_config.json" in message


BUFFER_CASES = {
    "absolute": (lambda tmp, folder: str(tmp / "outside.bin"), "absolute path"),
    "parent folder": (lambda tmp, folder: "../outside.bin", "outside the glTF file's folder"),
    "symlink out": (lambda tmp, folder: _symlink(folder, "link.bin", tmp / "outside.bin"), "outside the glTF file's folder"),
    "fifo": (lambda tmp, folder: (os.mkfifo(folder / "pipe.bin"), "pipe.bin")[1], "is not a regular file"),
    "folder": (lambda tmp, folder: ((folder / "sub").mkdir(), "sub")[1], "is a folder"),
    "missing": (lambda tmp, folder: "missing.bin", "file not found"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(BUFFER_CASES))
def test_buffer_uri_outside_the_folder_is_refused(tmp_path, case):
    make, phrase = BUFFER_CASES[case]
    folder = tmp_path / "scene"
    folder.mkdir()
    glb = write_glb(_plain_room())
    (tmp_path / "outside.bin").write_bytes(b"SECRET" * 100)
    uri = make(tmp_path, folder)
    path = save(folder, _with_uri_buffer(glb, uri), "stage.glb")
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    message = str(err.value)
    assert str(path) in message and repr(uri) in message and phrase in message and "SECRET" not in message, message


def _with_uri_buffer(glb: bytes, uri: str) -> bytes:
    from tests.writers.gltf import pack_glb, split_glb

    doc, blob = split_glb(glb)
    doc["buffers"] = [{"uri": uri, "byteLength": len(blob)}]
    return pack_glb(doc)


def test_buffer_beside_the_file_is_read(tmp_path):
    from tests.writers.gltf import split_glb

    glb = write_glb(_plain_room())
    (tmp_path / "mesh.bin").write_bytes(split_glb(glb)[1])
    scene = load_scene("gltf", save(tmp_path, _with_uri_buffer(glb, "mesh.bin")), up="z")
    assert scene.num_triangles == 4


def test_shared_children_are_refused_before_the_work_doubles(tmp_path):
    """A chain of 40 nodes, each listing the next twice, would visit 2^40 nodes."""
    meshes = _plain_room()[:1]
    nodes = [GlbNode(mesh=0, children=[i + 1, i + 1]) for i in range(40)] + [GlbNode(mesh=0)]
    path = save(tmp_path, write_glb(meshes, nodes, roots=[0]))
    with pytest.raises(SceneFormatError, match="node 40 is reached twice"):
        load_scene("gltf", path, up="z")


def test_a_node_cycle_is_refused(tmp_path):
    meshes = _plain_room()[:1]
    path = save(tmp_path, write_glb(meshes, [GlbNode(mesh=0, children=[1]), GlbNode(children=[0])], roots=[0]))
    with pytest.raises(SceneFormatError, match="node 0 is reached twice: the node hierarchy has a cycle"):
        load_scene("gltf", path, up="z")


def test_instanced_meshes_read_their_accessors_once_and_are_capped(tmp_path, monkeypatch):
    from renderers.sources import gltf

    meshes = _plain_room()[:1]
    nodes = [GlbNode(children=list(range(1, 51)))] + [GlbNode(mesh=0, translation=(i, 0, 0)) for i in range(50)]
    path = save(tmp_path, write_glb(meshes, nodes, roots=[0]))
    reads = []
    real = gltf.GltfReader.read_accessor
    monkeypatch.setattr(gltf.GltfReader, "read_accessor", lambda self, i: reads.append(i) or real(self, i))
    scene = load_scene("gltf", path, up="z")
    assert scene.num_triangles == 100 and sorted(reads) == [0, 1, 2]  # POSITION, TEXCOORD_0, indices: once each
    monkeypatch.setattr(gltf, "MAX_TRIANGLES", 60)
    with pytest.raises(SceneFormatError, match="more than 60 triangles"):
        load_scene("gltf", path, up="z")


def test_huge_node_transforms_are_a_clear_error(tmp_path):
    meshes = _plain_room()[:1]
    path = save(tmp_path, write_glb(meshes, [GlbNode(mesh=0, scale=(1e308, 1e308, 1e308))]))
    with np.errstate(all="raise"), pytest.raises(SceneFormatError, match="NaN or infinite vertex positions"):
        load_scene("gltf", path, up="z")


def test_names_in_messages_stay_on_one_line(tmp_path):
    glb = write_glb(z_up_room()[:1], images=[GlbImage(b"GIF89a", "image/gif")], materials=[textured_material(0)])
    path = save(tmp_path, _with_json_of(glb, lambda d: d["images"][0].update(name="line one\nline two\x1b[31m")))
    with pytest.raises(SceneFormatError) as err:
        load_scene("gltf", path, up="z")
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value) and "line one" in str(err.value)


def _with_json_of(glb: bytes, edit) -> bytes:
    from tests.writers.gltf import pack_glb, split_glb

    doc, blob = split_glb(glb)
    edit(doc)
    return pack_glb(doc, blob)
