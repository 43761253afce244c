"""PLY loading: ScanNet triangles, Replica quads, every encoding, bad files."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest

from renderers.backends import get_backend
from renderers.backends import habitat as habitat_backend
from renderers.camera import intrinsics_from_hfov
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


# -- per-face colours ------------------------------------------------------------

FACE_COLORS = (np.arange(18).reshape(6, 3) * 14).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
@pytest.mark.parametrize("alpha", [False, True])
def test_face_colours_follow_their_triangles(tmp_path, fmt, alpha):
    colors = np.concatenate([FACE_COLORS, np.full((6, 1), 255, np.uint8)], axis=1) if alpha else FACE_COLORS
    path = _write(tmp_path, write_ply(CUBE, CUBE_QUADS, face_colors=colors, fmt=fmt))
    scene = load_scene("ply", path, up="y")
    assert scene.vertex_colors is None
    # Quad q becomes triangles 2q and 2q + 1, both of its colour.
    np.testing.assert_array_equal(scene.face_colors, np.repeat(FACE_COLORS, 2, axis=0))


def test_float_face_colours_and_mixed_polygons(tmp_path):
    faces = [list(CUBE_QUADS[0]), [0, 4, 6], [0, 6, 2], [1, 3, 7, 5]]
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]], np.float32)
    scene = load_scene("ply", _write(tmp_path, write_ply(CUBE, faces, COLORS, face_colors=colors)), up="y")
    np.testing.assert_array_equal(scene.vertex_colors, COLORS)
    expect = [[255, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [128, 128, 128]]
    np.testing.assert_array_equal(scene.face_colors, expect)


def _two_colour_wall(tmp_path, fmt="binary_little_endian"):
    """A wall at world z = -3 facing the origin: a red quad on the left, the right quad as two triangles."""
    # world (x, y, z) = file (x, z, -y): the wall is file y = 3; file z is world up.
    world = np.array([[-2, 2], [-2, -2], [0, -2], [0, 2], [2, -2], [2, 2]], np.float32)  # (x, up)
    verts = np.stack([world[:, 0], np.full(len(world), 3.0, np.float32), world[:, 1]], axis=1)
    faces = [[0, 1, 2, 3], [3, 2, 4], [3, 4, 5]]  # left quad; right: lower-left and upper-right halves
    colors = np.array([[220, 30, 40], [20, 200, 60], [10, 50, 230]], np.uint8)
    return _write(tmp_path, write_ply(verts, faces, face_colors=colors, fmt=fmt)), colors


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_raycast_renders_each_face_in_its_colour(tmp_path, fmt):
    path, colors = _two_colour_wall(tmp_path, fmt)
    scene = load_scene("ply", path, up="z")
    K = intrinsics_from_hfov(64, 64, 90.0)  # f = 32: world (x, up) at depth 3 -> pixel (31.5 + 32 x / 3, 31.5 - 32 up / 3)
    with get_backend("raycast").open(scene) as r:
        view = r.render(K, np.diag([1.0, -1.0, -1.0, 1.0]), 64, 64)
    np.testing.assert_allclose(view.depth[32, 20], 3.0, rtol=1e-5)
    np.testing.assert_array_equal(view.rgb[22:42, 15:28].reshape(-1, 3), np.tile(colors[0], (20 * 13, 1)))
    np.testing.assert_array_equal(view.rgb[42, 37], colors[1])  # world (0.5, -1)
    np.testing.assert_array_equal(view.rgb[21, 47], colors[2])  # world (1.5, 1)
    assert not view.rgb[:, :8].any()  # beyond the wall: black


@pytest.mark.parametrize("inwards", [True, False])
def test_a_scan_is_seen_from_both_sides_whatever_its_winding(tmp_path, inwards):
    # A PLY has no material to say which side of a face is seen: its faces are drawn from both (docs/design.md,
    # "Back faces"). The unit cube seen from its centre, wound inwards or outwards, is there all round.
    tris = CUBE_TRIS if inwards else CUBE_TRIS[:, ::-1]
    path = tmp_path / "cube.ply"
    path.write_bytes(write_ply(CUBE, tris, COLORS))
    scene = load_scene("ply", path, up="z")
    assert [m.double_sided for m in scene.materials] == [True] and scene.single_sided_faces is None
    c2w = np.eye(4)
    c2w[:3, 3] = (0.5, 0.5, -0.5)  # the cube's centre in the Y-up world
    with get_backend("raycast").open(scene) as r:
        view = r.render(intrinsics_from_hfov(16, 16, 80.0), c2w, 16, 16)
    np.testing.assert_allclose(view.depth[7:9, 7:9], 0.5, rtol=1e-5)
    assert view.valid_fraction == 1.0


def test_habitat_backend_warns_about_face_colours(tmp_path, monkeypatch, caplog):
    path, _ = _two_colour_wall(tmp_path)
    scene = load_scene("ply", path, up="z")
    monkeypatch.setattr(habitat_backend, "import_habitat_sim", lambda: SimpleNamespace())
    with caplog.at_level(logging.WARNING, logger=habitat_backend.__name__):
        habitat_backend.HabitatBackend().open(scene).close()
    assert any("per-face colours" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_a_mesh_without_colours_is_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load_scene("ply", _write(tmp_path, write_ply(CUBE, CUBE_TRIS)), up="y")
    assert "no vertex or face colours" in caplog.text


# -- bad files ---------------------------------------------------------------------


def _truncated(tmp_path):
    data = write_ply(CUBE, CUBE_TRIS, COLORS)
    return data[: len(data) - 7]


def _ascii_ply(props: str, row: str, face_prop: str = "list uchar int vertex_indices", face: str = "3 0 1 2") -> bytes:
    """Three vertices with the same ``row`` of ``props`` (e.g. ``"float x, float y"``) and one face."""
    lines = ["ply", "format ascii 1.0", "element vertex 3", *(f"property {p.strip()}" for p in props.split(",")),
             "element face 1", f"property {face_prop}", "end_header", row, row, row, face]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


XYZ_RGB = "float x, float y, float z, uchar red, uchar green, uchar blue"

BAD = {
    "empty": (lambda tmp: b"", "empty"),
    "wrong magic": (lambda tmp: b"PK\x03\x04" + b"\0" * 64, "not a PLY file"),
    "no end_header": (lambda tmp: b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n", "end_header"),
    "truncated": (_truncated, "truncated PLY"),
    "bad property type": (lambda tmp: b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n1\n", "malformed PLY header"),
    "NaN vertex": (lambda tmp: write_ply(np.where(np.arange(24).reshape(8, 3) == 4, np.nan, CUBE), CUBE_TRIS), "NaN"),
    "index out of range": (lambda tmp: write_ply(CUBE, np.vstack([CUBE_TRIS, [[0, 1, 99]]])), "refers to vertex 99"),
    "point cloud": (lambda tmp: write_ply(CUBE, CUBE_TRIS).replace(b"element face 12\nproperty list uchar int vertex_indices\n", b"").split(b"end_header\n")[0] + b"end_header\n" + np.zeros(8 * 3, np.float32).tobytes(), "no 'face' element"),
    "rows beyond the file": (lambda tmp: write_ply(CUBE, CUBE_TRIS).replace(b"element face 12", b"element face 1000000000000"), "truncated PLY"),
    "ASCII rows beyond the file": (lambda tmp: write_ply(CUBE, CUBE_TRIS, fmt="ascii").replace(b"element vertex 8", b"element vertex 1000000000000"), "truncated PLY"),
    "ragged faces truncated": (lambda tmp: write_ply(CUBE, [[0, 1, 2], [0, 1, 2, 3]])[:-3], "truncated PLY"),
    "negative count": (lambda tmp: write_ply(CUBE, CUBE_TRIS).replace(b"element face 12", b"element face -12"), "negative count"),
    "unknown format": (lambda tmp: write_ply(CUBE, CUBE_TRIS).replace(b"binary_little_endian", b"binary_middle_endian"), "unknown PLY format 'binary_middle_endian'"),
    "malformed ASCII row": (lambda tmp: write_ply(CUBE, CUBE_TRIS, fmt="ascii").replace(b"\n3 0 2 3\n", b"\n3 0 x 3\n"), "malformed ASCII PLY data in element 'face'"),
    # Properties of the wrong kind (found by tests/renderers/test_sources_fuzz.py): a list where a number belongs, and back.
    "x is a list": (lambda tmp: _ascii_ply(XYZ_RGB.replace("float x", "list uchar float x"), "1 0.5 0 0 5 6 7"), "vertex property 'x' must be a number"),
    "indices are a number": (lambda tmp: _ascii_ply(XYZ_RGB, "0 0 0 5 6 7", "int vertex_indices", "1"), "'vertex_indices' must be a list"),
    "indices are floats": (lambda tmp: _ascii_ply(XYZ_RGB, "0 0 0 5 6 7", "list uchar float vertex_indices", "3 0 1.5 2"), "must hold integers"),
    "colour is a list": (lambda tmp: _ascii_ply(XYZ_RGB.replace("uchar red", "list uchar uchar red"), "0 0 0 1 5 6 7"), "colour property 'red' must be a number"),
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


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.ply"
    os.mkfifo(fifo)
    with pytest.raises(SceneFormatError, match="not a regular file"):
        load_scene("ply", fifo)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_a_link_to_a_device_is_refused_without_reading(tmp_path, target):
    link = tmp_path / "device.ply"
    link.symlink_to(target)
    with pytest.raises(SceneFormatError, match="is not a regular file \\(a character device\\)") as err:
        load_scene("ply", link)
    assert str(link) in str(err.value)


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "folder.ply").mkdir()
    with pytest.raises(SceneFormatError, match="is a folder"):
        load_scene("ply", tmp_path / "folder.ply")


def test_huge_float_face_colours_do_not_overflow(tmp_path):
    colours = np.full((len(CUBE_TRIS), 3), 3e38, np.float32)
    with np.errstate(all="raise"):
        scene = load_scene("ply", _write(tmp_path, write_ply(CUBE, CUBE_TRIS, face_colors=colours)), up="y")
    assert (scene.face_colors == 255).all()
