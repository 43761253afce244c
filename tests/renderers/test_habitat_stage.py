"""What the habitat backend hands habitat-sim: copies whose double-sided faces have both windings.

habitat-sim culls every back face, so the copy, culled, must look exactly as
the original drawn by docs/design.md's rule ("Back faces"): the raycast
backend renders both and compares. No habitat-sim is needed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct

import numpy as np
import pytest

from renderers.backends import get_backend
from renderers.backends.habitat_stage import double_sided_copy
from renderers.camera import intrinsics_from_hfov
from renderers.sources import load_scene
from tests.rooms import LEVEL, box_faces, pose, room, rotation, write_scan_ply
from tests.writers.gltf import GlbMesh, write_glb

STRIP = GlbMesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], np.float32), np.arange(5), mode=5,
                material=0)  # fmt: skip


def glb_room(tmp_path, double_sided=(True, False), name="room.glb"):
    """A Z-up box room facing outwards (material 0) holding a box facing outwards (material 1), and a strip."""
    v, f = box_faces((-3, -3, 0), (3, 3, 3), inward=False)
    w, g = box_faces((0.5, 1.0, 0.0), (1.5, 2.0, 1.2), inward=False)
    meshes = [GlbMesh(v, f, material=0), GlbMesh(w, g, material=1), STRIP]
    materials = [{"doubleSided": d, "name": f"m{i}"} for i, d in enumerate(double_sided)]
    path = tmp_path / name
    path.write_bytes(write_glb(meshes, materials=materials))
    return path


def culled(scene):
    """``scene`` with every material single-sided: what habitat-sim makes of any file."""
    single = tuple(dataclasses.replace(m, double_sided=False) for m in scene.materials)
    return dataclasses.replace(scene, materials=single)


def depths(scene, cameras) -> np.ndarray:
    K = intrinsics_from_hfov(40, 30, 80.0)
    with get_backend("raycast").open(scene, antialias="off", lighting="flat") as r:
        return np.stack([r.render(K, c2w, 40, 30).depth for c2w in cameras])


CAMERAS = [  # our Y-up world; the room spans x, z in [-3, 3], y in [0, 3]
    pose(rotation((0, 1, 0), 30), (-1.0, 1.5, -1.0)),  # inside, looking at the walls and the box
    pose(rotation((0, 1, 0), 200) @ rotation((1, 0, 0), -20), (2.0, 2.0, 2.0)),  # inside, looking down
    pose(LEVEL, (0.5, 1.5, 8.0)),  # outside, looking in
]


@pytest.mark.parametrize("double_sided", [(True, False), (False, True), (True, True)])
def test_a_glb_copy_culled_looks_as_the_original_by_the_rule(tmp_path, double_sided):
    path = glb_room(tmp_path, double_sided)
    scene = load_scene("gltf", path, up="z")
    (tmp_path / "copy").mkdir()
    copy = double_sided_copy(scene, tmp_path / "copy")
    assert copy == tmp_path / "copy" / "room.glb"
    twin = load_scene("gltf", copy, up="z")
    expected = depths(scene, CAMERAS)
    np.testing.assert_array_equal(depths(culled(twin), CAMERAS), expected)
    assert (expected[0] > 0).all() == double_sided[0]  # from inside: the walls all round, where double-sided
    assert (expected[2] > 0).any()  # from outside: the room's outer side


def test_a_glb_copy_adds_a_reversed_twin_to_each_double_sided_primitive_only(tmp_path):
    path = glb_room(tmp_path)
    scene = load_scene("gltf", path, up="z")
    (tmp_path / "copy").mkdir()
    twin = load_scene("gltf", double_sided_copy(scene, tmp_path / "copy"), up="z")
    # room (12 triangles, material 0), box (12, material 1), strip (3, material 0); each twin after its primitive
    room, box, strip = (scene.vertices[scene.faces[a:b]] for a, b in ((0, 12), (12, 24), (24, 27)))
    assert scene.num_triangles == 27 and twin.num_triangles == 27 + 12 + 3
    expected = np.concatenate([room, room[:, ::-1], box, strip, strip[:, ::-1]])
    np.testing.assert_array_equal(twin.vertices[twin.faces], expected)
    assert [m.name for m in twin.materials] == [m.name for m in scene.materials]
    np.testing.assert_array_equal(twin.face_materials, [0] * 24 + [1] * 12 + [0] * 6)


def test_a_glb_copy_keeps_the_stage_config_and_is_needed_only_for_double_sided_materials(tmp_path):
    path = glb_room(tmp_path, name="room.basis.glb")
    config = {"render_asset": "room.basis.glb", "up": [0, 0, 1], "front": [0, 1, 0]}
    (tmp_path / "room.stage_config.json").write_text(json.dumps(config))  # as the gltf source looks for it
    out = tmp_path / "copy"
    out.mkdir()
    copy = double_sided_copy(load_scene("gltf", path, up="z"), out)
    assert json.loads((out / "room.stage_config.json").read_text()) == config
    data = copy.read_bytes()
    assert data[:4] == b"glTF" and struct.unpack_from("<I", data, 8)[0] == len(data) and len(data) % 4 == 0
    single = glb_room(tmp_path, (False, False), name="single.glb")
    assert double_sided_copy(load_scene("gltf", single, up="z"), out) is None
    assert sorted(p.name for p in out.iterdir()) == ["room.basis.glb", "room.stage_config.json"]


@pytest.mark.parametrize("face_colors", [False, True])
def test_a_ply_copy_has_both_windings_in_the_files_frame(tmp_path, face_colors):
    scene = room()  # Y-up, faces inwards; written as ScanNet stores a scan (Z-up)
    colors = np.random.default_rng(1).integers(0, 256, (len(scene.vertices), 3), dtype=np.uint8)
    path = write_scan_ply(tmp_path / "scan.ply", scene, colors)
    scan = load_scene("ply", path, up="z")
    if face_colors:  # as if read from a file with colours per face
        scan = dataclasses.replace(scan, face_colors=np.random.default_rng(2).integers(0, 256, (scan.num_triangles, 3),
                                                                                        dtype=np.uint8))  # fmt: skip
    out = tmp_path / "copy"
    out.mkdir()
    twin = load_scene("ply", double_sided_copy(scan, out), up="z")
    f = scan.num_triangles
    np.testing.assert_allclose(twin.vertices, scan.vertices, atol=1e-6)
    np.testing.assert_array_equal(twin.faces, np.concatenate([scan.faces, scan.faces[:, ::-1]]))
    np.testing.assert_array_equal(twin.vertex_colors, colors)
    if face_colors:
        np.testing.assert_array_equal(twin.face_colors[:f], scan.face_colors)
        np.testing.assert_array_equal(twin.face_colors[f:], scan.face_colors)
    np.testing.assert_array_equal(depths(culled(twin), CAMERAS[:2]), depths(scan, CAMERAS[:2]))


def test_no_copy_is_made_of_other_files(tmp_path, caplog):
    scene = dataclasses.replace(room(), source=str(tmp_path / "room.obj"))  # double-sided, from no format we copy
    scene = dataclasses.replace(scene, materials=(dataclasses.replace(scene.materials[0], double_sided=True),))
    with caplog.at_level(logging.WARNING):
        assert double_sided_copy(scene, tmp_path) is None
    assert "culls the back faces" in caplog.text and list(tmp_path.iterdir()) == []
