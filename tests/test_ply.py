"""PLY loading: ScanNet triangles, Replica quads, every encoding, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from renderers.scene import SceneFormatError
from renderers.sources import load_scene
from tests.writers.ply import write_ply

# A unit cube's corners, Z-up file coordinates, and its six faces as quads.
CUBE = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=np.float32)
CUBE_QUADS = np.array([[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]])
CUBE_TRIS = np.concatenate([CUBE_QUADS[:, [0, 1, 2]], CUBE_QUADS[:, [0, 2, 3]]])
COLORS = (np.arange(24).reshape(8, 3) * 10).astype(np.uint8)


def _area(scene) -> float:
    t = scene.vertices[scene.faces.astype(np.int64)].astype(np.float64)
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def _write(tmp_path, data: bytes, name="mesh.ply"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_scannet_layout_rotates_z_up_and_keeps_colours(tmp_path):
    verts = CUBE.copy()
    verts[5] = (1.0, 2.0, 3.0)  # a known file vertex
    path = _write(tmp_path, write_ply(verts, CUBE_TRIS, COLORS, alpha=True), "scene0000_00_vh_clean_2.ply")
    scene = load_scene("ply", path, scene_id="scene0000_00", up="z")
    np.testing.assert_allclose(scene.vertices[5], (1.0, 3.0, -2.0))
    np.testing.assert_array_equal(scene.vertex_colors, COLORS)
    assert scene.num_triangles == 12
    assert scene.name == "scene0000_00"


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
@pytest.mark.parametrize("faces", [CUBE_TRIS, CUBE_QUADS], ids=["triangles", "quads"])
def test_encodings_round_trip(tmp_path, fmt, faces):
    path = _write(tmp_path, write_ply(CUBE, faces, COLORS, fmt=fmt))
    scene = load_scene("ply", path, up="y")
    np.testing.assert_allclose(scene.vertices, CUBE)
    np.testing.assert_array_equal(scene.vertex_colors, COLORS)
    assert scene.num_triangles == 12
    assert _area(scene) == pytest.approx(6.0)


def test_replica_quads_with_normals_cover_the_quads(tmp_path):
    normals = np.tile([[0.0, 0.0, 1.0]], (8, 1)).astype(np.float32)
    path = _write(tmp_path, write_ply(CUBE * 2, CUBE_QUADS, COLORS, normals=normals), "mesh.ply")
    scene = load_scene("ply", path, up="z")
    assert scene.num_triangles == 2 * len(CUBE_QUADS)
    assert _area(scene) == pytest.approx(6 * 4.0)
    # Z-up cube of side 2 from z = 0: after rotation its Y spans [0, 2].
    assert scene.bounds[0][1] == pytest.approx(0.0) and scene.bounds[1][1] == pytest.approx(2.0)


def test_mixed_polygon_sizes_take_the_slow_path(tmp_path):
    faces = [list(CUBE_QUADS[0]), [0, 4, 6], [0, 6, 2], [1, 3, 7, 5]]
    path = _write(tmp_path, write_ply(CUBE, faces, COLORS, index_type="u4", count_type="u1"))
    scene = load_scene("ply", path, up="y")
    assert scene.num_triangles == 2 + 1 + 1 + 2
    assert _area(scene) == pytest.approx(3.0)


def _truncated(tmp_path):
    data = write_ply(CUBE, CUBE_TRIS, COLORS)
    return data[: len(data) - 7]


BAD = {
    "empty": (lambda tmp: b"", "empty"),
    "wrong magic": (lambda tmp: b"PK\x03\x04" + b"\0" * 64, "not a PLY file"),
    "no end_header": (lambda tmp: b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n", "end_header"),
    "truncated": (_truncated, "truncated PLY"),
    "bad property type": (lambda tmp: b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n1\n", "malformed PLY header"),
    "NaN vertex": (lambda tmp: write_ply(np.where(np.arange(24).reshape(8, 3) == 4, np.nan, CUBE), CUBE_TRIS), "NaN"),
    "index out of range": (lambda tmp: write_ply(CUBE, np.vstack([CUBE_TRIS, [[0, 1, 99]]])), "refers to vertex 99"),
    "point cloud": (lambda tmp: write_ply(CUBE, CUBE_TRIS).replace(b"element face 12\nproperty list uchar int vertex_indices\n", b"").split(b"end_header\n")[0] + b"end_header\n" + np.zeros(8 * 3, np.float32).tobytes(), "no 'face' element"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_file_and_the_problem(tmp_path, case):
    make, phrase = BAD[case]
    path = _write(tmp_path, make(tmp_path), "broken_scene.ply")
    with pytest.raises(SceneFormatError) as err:
        load_scene("ply", path, up="z")
    assert "broken_scene.ply" in str(err.value)
    assert phrase in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SceneFormatError, match="file not found"):
        load_scene("ply", tmp_path / "nope.ply")
