"""``pairgen import croco`` and ``pairgen export --format croco`` (pairgen/interchange/croco/).

The scenes are rooms of ours written as Z-up PLY files under a fake data root
in CroCo label folders; the metadata files are written here in CroCo's
format (naver/croco datasets/habitat_sim: ``resolution`` [h, w], ``hfov``,
``multiviews`` {label: positions, orientations w-first}). Cameras are checked
against CroCo's own formulas, written here again from its code
(``compute_camera_pose_opencv_convention``: quaternion to matrix, times
``R_OPENCV2HABITAT``, the rows habitat RIGHT, -UP, FRONT).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pairgen.cli import main
from tests.commands import assert_one_message, pairgen
from tests.rooms import write_room_ply
from tests.writers.croco import write_metadata

W, H, HFOV = 64, 48, 60.0
HABITAT_RIGHT, HABITAT_UP, HABITAT_FRONT = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, -1.0])
R_OPENCV2HABITAT = np.stack((HABITAT_RIGHT, -HABITAT_UP, HABITAT_FRONT), axis=0)  # as CroCo builds it


def quat_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]  # fmt: skip


def quat_to_matrix(q):
    """numpy-quaternion's as_rotation_matrix: the unit quaternion's rotation (a non-unit one normalised)."""
    w, x, y, z = q
    s = 2.0 / (w * w + x * x + y * y + z * z)
    return np.array([[1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
                     [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
                     [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)]])  # fmt: skip


def croco_cam2world(position, orientation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(orientation) @ R_OPENCV2HABITAT
    pose[:3, 3] = position
    return pose


def yaw_pitch(yaw_deg: float, pitch_deg: float, scale: float = 1.0) -> list[float]:
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    q = quat_mul([math.cos(a / 2), 0, math.sin(a / 2), 0], [math.cos(b / 2), math.sin(b / 2), 0, 0])
    return [scale * v for v in q]


MULTIVIEWS = {
    "00000000": {"positions": [[2.5, 1.3, 2.0], [2.2, 1.4, 2.3]], "orientations": [[1.0, 0, 0, 0], yaw_pitch(12, -5)]},
    "00000001": {"positions": [[1.5, 1.5, 2.5], [1.8, 1.2, 2.2]],
                 "orientations": [yaw_pitch(90, 0), yaw_pitch(75, 8, scale=1.02)]},  # a slightly non-unit one
    "00000002": {"positions": [[3.0, 1.6, 3.0], [3.1, 1.5, 2.9], [2.9, 1.55, 3.1]],
                 "orientations": [yaw_pitch(200, -10), yaw_pitch(190, -3), yaw_pitch(215, 4)]},  # three views
    "00000003": {"positions": [[2.5, 1.3, 3.5], [2.4, 1.3, 3.4]],
                 "orientations": [yaw_pitch(0, -45), yaw_pitch(5, -40)]},  # looking down at the floor
}


def metadata(scene: str, multiviews=MULTIVIEWS, **extra) -> dict:
    return {"scene_dataset_config_file": "", "scene": scene, "navmesh": "", "views_count": 2, "size": len(multiviews),
            "generate_depth": True, "resolution": [H, W], "hfov": HFOV, "multiviews": multiviews, **extra}


@pytest.fixture
def croco_world(tmp_path):
    """A data root with two scenes (one under a mapped label folder) and metadata for them plus a missing one."""
    root = tmp_path / "scene_datasets"
    write_room_ply(root / "my_test_scenes" / "rooms" / "room_a.ply")
    write_room_ply(root / "scannet" / "scans" / "scene0000_00" / "scene0000_00.ply", size=(4.5, 2.6, 4.2))
    meta = tmp_path / "metadata"
    write_metadata(meta / "habitat-test-scenes" / "room_a" / "metadata.json", metadata("habitat-test-scenes/rooms/room_a.ply"))
    write_metadata(meta / "scannet" / "scene0000_00" / "metadata.json",
               metadata("scannet/scans/scene0000_00/scene0000_00.ply"))  # fmt: skip
    write_metadata(meta / "hm3d" / "val" / "00800-gone" / "metadata.json", metadata("hm3d/val/00800-gone/gone.basis.glb"))
    return root, meta


def import_args(meta: Path, root: Path, out: Path, *more: str) -> list[str]:
    return ["import", "croco", str(meta), "--data-root", str(root), "--dataset-map",
            "habitat-test-scenes=my_test_scenes", "--out", str(out), "--no-ray", *more]  # fmt: skip


def shard_rows(out: Path) -> list[dict]:
    rows = []
    for shard in sorted((out / "pairs").glob("shard-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return sorted(rows, key=lambda r: r["pair_id"])


def test_import_renders_croco_cameras_exactly(croco_world, tmp_path, capsys):
    root, meta = croco_world
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1  # the missing hm3d scene fails; the others are imported
    err = capsys.readouterr().err
    assert "FAILED hm3d/val__00800-gone__gone" in err and "not found under the data root" in err
    views = json.loads((out / "views.manifest.json").read_text())
    assert views["scenes"]["hm3d/val__00800-gone__gone"]["status"] == "failed"
    assert {k for k, e in views["scenes"].items() if e["status"] == "ok"} == {
        "habitat-test-scenes/rooms__room_a", "scannet/scans__scene0000_00__scene0000_00"}

    rows = shard_rows(out)
    ids = [r["pair_id"] for r in rows]
    per_scene = ["00000000_1-2", "00000001_1-2", "00000002_1-2", "00000002_1-3", "00000002_2-3", "00000003_1-2"]
    assert ids == sorted(f"{k}/{p}" for k in ("habitat-test-scenes/rooms__room_a",
                                              "scannet/scans__scene0000_00__scene0000_00") for p in per_scene)
    f = (W / 2) / math.tan(math.radians(HFOV) / 2)
    K_ours = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    from covisibility import covisibility
    from manifests.codecs import decode_depth

    for r in rows:
        label, _, pair = r["pair_id"].rsplit("/", 1)[1].partition("_")
        o1, o2 = (int(o) for o in pair.split("-"))
        entry = MULTIVIEWS[label]
        for o, suffix in ((o1, "1"), (o2, "2")):
            expected = croco_cam2world(entry["positions"][o - 1], entry["orientations"][o - 1])
            np.testing.assert_allclose(np.reshape(r["cam2world" + suffix], (4, 4)), expected, atol=1e-5)
            np.testing.assert_allclose(np.reshape(r["K" + suffix], (3, 3)), K_ours, atol=1e-4)
        assert (r["width"], r["height"]) == (W, H)
        d1, d2 = decode_depth(r["depth1"]["bytes"]), decode_depth(r["depth2"]["bytes"])
        c12, c21 = covisibility(d1, K_ours, np.reshape(r["cam2world1"], (4, 4)), d2, K_ours,
                                np.reshape(r["cam2world2"], (4, 4)))  # fmt: skip
        assert r["covis_1in2"] == pytest.approx(c12, abs=1e-6) and r["covis_2in1"] == pytest.approx(c21, abs=1e-6)
        assert r["covisibility"] == pytest.approx(min(c12, c21), abs=1e-6)

    # the identity orientation looks down habitat's -Z: at the room's wall z = 0, 2 m ahead of the centre pixel
    first = next(r for r in rows if r["pair_id"] == "habitat-test-scenes/rooms__room_a/00000000_1-2")
    depth = decode_depth(first["depth1"]["bytes"])
    assert depth[H // 2 - 1 : H // 2 + 1, W // 2 - 1 : W // 2 + 1] == pytest.approx(2.0, abs=0.01)
    # pitched 45 degrees down, 1.3 m above the floor: the floor is near at the image's bottom row (habitat's image
    # has +Y up, OpenCV's y points down): planar depth 1.3 / sin(45 + a) * cos(a), a the row's angle off the axis
    down = decode_depth(next(r for r in rows if r["pair_id"].endswith("room_a/00000003_1-2"))["depth1"]["bytes"])
    a = math.atan(((H - 1) / 2) / f)
    assert down[-1, W // 2] == pytest.approx(1.3 / math.sin(math.radians(45) + a) * math.cos(a), abs=0.02)
    assert down[0, W // 2] == pytest.approx(1.3 / math.sin(math.radians(45) - a) * math.cos(a), abs=0.05)


def test_rerun_does_nothing_and_heals(croco_world, tmp_path, capsys):
    root, meta = croco_world
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1
    files = sorted(p for p in out.rglob("*.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(import_args(meta, root, out)) == 1  # the missing scene is tried again; nothing else is touched
    assert "0 CroCo scenes imported, 2 already done, 1 failed" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*.parquet"))} == stamps
    # the scene appears under the data root: the same command imports it and pairs it
    write_room_ply(root / "hm3d" / "val" / "00800-gone" / "gone.basis.ply")
    doc = json.loads((meta / "hm3d" / "val" / "00800-gone" / "metadata.json").read_text())
    doc["scene"] = "hm3d/val/00800-gone/gone.basis.ply"
    write_metadata(meta / "hm3d" / "val" / "00800-gone" / "metadata.json", doc)
    assert main(import_args(meta, root, out)) == 0
    assert {r["dataset"] for r in shard_rows(out)} == {"habitat-test-scenes", "scannet", "hm3d"}


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d.pop("resolution"), "resolution"),
        (lambda d: d.update(hfov="wide"), "hfov"),
        (lambda d: d["multiviews"]["00000001"]["orientations"].__setitem__(1, [1, 0, 0]), "multiviews/00000001/orientations/1"),
        (lambda d: d["multiviews"]["00000000"].pop("positions"), "multiviews/00000000/positions"),
        (lambda d: d.update(scene=7), "scene"),
        (lambda d: d["multiviews"].__setitem__("0001\n", d["multiviews"].pop("00000001")), "multiviews/0001\n"),
    ],
)
def test_malformed_metadata_names_file_and_key(croco_world, tmp_path, capsys, edit, key):
    root, meta = croco_world
    path = meta / "scannet" / "scene0000_00" / "metadata.json"
    doc = json.loads(path.read_text())
    edit(doc)
    write_metadata(path, doc)
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and f"key {key!r}" in err[0], err
    assert not out.exists()  # nothing is written before every metadata file has been read


@pytest.mark.parametrize("scene", ["scannet/../../outside/room.ply", "scannet/linked/room.ply", "scannet//abs/room.ply"])
def test_a_scene_path_out_of_its_dataset_folder_is_refused(croco_world, tmp_path, capsys, scene):
    """One containment rule for every reader of scene paths: ``..``, a link out and an absolute path alike."""
    root, meta = croco_world
    outside = tmp_path / "outside"
    write_room_ply(outside / "room.ply")
    (root / "scannet" / "linked").symlink_to(outside, target_is_directory=True)
    scene = scene.replace("/abs", str(outside))  # scannet//tmp/.../outside/room.ply: an absolute path after the label
    path = write_metadata(meta / "scannet" / "scene0000_00" / "metadata.json", metadata(scene))
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "key 'scene'" in err[0] and "leads out of" in err[0], err
    assert not out.exists()


def test_import_writes_the_dataset_card_as_render_does(croco_world, tmp_path):
    root, meta = croco_world
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1  # the missing hm3d scene fails
    card = (out / "README.md").read_text()
    assert "configs:" in card and "habitat-test-scenes" in card and "views/*/*.parquet" in card


def test_two_metadata_files_of_one_scene_are_refused(croco_world, tmp_path, capsys):
    root, meta = croco_world
    copy = write_metadata(meta / "again" / "metadata.json", metadata("scannet/scans/scene0000_00/scene0000_00.ply"))
    assert main(import_args(meta, root, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert str(copy) in err and "key 'scene'" in err and str(meta / "scannet") in err


def test_bad_dataset_map_is_a_usage_error(croco_world, tmp_path, capsys):
    root, meta = croco_world
    assert main(import_args(meta, root, tmp_path / "out", "--dataset-map", "nofolder")) == 2
    assert "LABEL=FOLDER" in capsys.readouterr().err


def read_habitat_release(dest: Path) -> list[dict]:
    """A reader of CroCo's habitat_release layout as its datasets/pairs_dataset.py and generator write/read it.

    pairs.txt: ``<image 1> <image 2>`` relative to the folder, one pair a line
    (``load_pairs_from_cache_file``); beside each ``<label>_<o>.jpeg`` its
    ``_depth.exr`` (one half-float channel, what cv2.imwrite with
    IMWRITE_EXR_TYPE_HALF writes; cv2 here is built without OpenEXR, so the
    OpenEXR bindings read it) and ``_camera_params.json``.
    """
    import OpenEXR

    lines = (dest / "pairs.txt").read_text().strip().splitlines()
    pairs = [(os.path.join(dest, line.split()[0]), os.path.join(dest, line.split()[1])) for line in lines]
    out = []
    for im1, im2 in pairs:
        views = []
        for im in (im1, im2):
            stem = im[: -len(".jpeg")]
            with OpenEXR.File(stem + "_depth.exr") as f:
                channels = f.channels()
                assert list(channels) == ["Y"]
                depth = channels["Y"].pixels
            params = json.loads(Path(stem + "_camera_params.json").read_text())
            views.append({"image": np.asarray(Image.open(im)), "depth": depth, **params})
        out.append({"paths": (im1, im2), "views": views})
    return out


def croco_parse_pairs(dirname: Path) -> str:
    """pairs.txt as naver/croco's parse_and_cache_all_pairs + write_cache_file would write it for this folder."""
    pairs = []
    for root, dirs, files in os.walk(dirname):
        if "val" in root:
            continue
        dirs.sort()
        pairs += [(os.path.join(root, f), os.path.join(root, f[: -len("_1.jpeg")] + "_2.jpeg"))
                  for f in sorted(files) if f.endswith("_1.jpeg")]  # fmt: skip
    prefix = str(dirname) + "/"
    return "".join(f"{a[len(prefix):]} {b[len(prefix):]}\n" for a, b in pairs)[:-1]


@pytest.mark.parametrize("why", ["a scene failed", "interrupted"])
def test_export_of_an_incomplete_pairs_folder(small_pairs, tmp_path, caplog, why):
    """Scenes failed: the shards listed are whole, exported with one warning; interrupted (none listed): refused."""
    for name in ("views", "pairs"):
        shutil.copytree(small_pairs / name, tmp_path / "pg" / name)
        shutil.copy(small_pairs / f"{name}.manifest.json", tmp_path / "pg")
    path = tmp_path / "pg" / "pairs.manifest.json"
    doc = json.loads(path.read_text())
    doc["complete"] = False
    if why == "interrupted":
        doc["shards"] = []
    else:
        doc["scenes"]["synthetic/broken"] = {"status": "failed", "reason": "broken.parquet: bad depth"}
    path.write_text(json.dumps(doc))
    ran = pairgen("export", "--format", "croco", tmp_path / "dest", "--out", tmp_path / "pg")
    if why == "interrupted":
        assert_one_message(ran, f"{path}: not marked complete: the `pairgen filter` that wrote it was interrupted")
    else:
        (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # on stderr in a process
        assert ran.code == 0, ran.err
        assert warning == (f"{path}: marked incomplete: 1 scene(s) failed in `pairgen filter` (synthetic/broken: "
                           "broken.parquet: bad depth), their pairs are not in the shards; the reasons are in the "
                           f"manifest: fix them and run `pairgen filter` again. Exporting the {len(doc['shards'])} "
                           "shard(s) it lists")  # fmt: skip


def test_export_of_filtered_pairs(small_pairs, tmp_path):
    dest = tmp_path / "habitat_release"
    assert main(["export", "--format", "croco", str(dest), "--out", str(small_pairs)]) == 0
    release = read_habitat_release(dest)
    total = json.loads((small_pairs / "pairs.manifest.json").read_text())["totals"]["pairs"]
    assert len(release) == total > 0
    assert (dest / "pairs.txt").read_text() == croco_parse_pairs(dest)
    first = release[0]["views"][0]
    assert first["image"].ndim == 3 and first["depth"].dtype == np.float16
    # an export interrupted before its first shard was recorded: the rerun writes the shard's files again
    text, jpeg = (dest / "pairs.txt").read_text(), Path(release[0]["paths"][0])
    state = json.loads((dest / ".pairgen-export.json").read_text())
    (dest / ".pairgen-export.json").write_text(json.dumps({**state, "done": state["done"][1:], "complete": False}))
    jpeg.unlink()
    (dest / "pairs.txt").unlink()
    assert main(["export", "--format", "croco", str(dest), "--out", str(small_pairs)]) == 0
    assert jpeg.is_file() and (dest / "pairs.txt").read_text() == text


@pytest.mark.parametrize("inside", [".", "pairs/croco", "views/x", "_pairgen/export"])
def test_export_into_the_working_folder_is_refused(small_pairs, tmp_path, inside):
    out = tmp_path / "pg"
    shutil.copytree(small_pairs, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    ran = pairgen("export", "--format", "croco", out / inside, "--out", out)
    assert_one_message(ran, f"{out / inside}: inside the working folder {out}", code=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written, pairs/ Parquet only


def test_export_never_mixes_into_a_folder_of_other_files(small_pairs, tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "pairs.txt").write_text("my own list")
    ran = pairgen("export", "--format", "croco", dest, "--out", small_pairs)
    assert_one_message(ran, f"{dest}: holds other files (pairs.txt), not an export of pairgen's", code=1)
    assert [p.name for p in dest.iterdir()] == ["pairs.txt"] and (dest / "pairs.txt").read_text() == "my own list"


def test_an_export_killed_before_any_shard_resumes(small_pairs, tmp_path):
    """The state is written before any file: a rerun after a kill continues, even before the first shard."""
    dest = tmp_path / "release"
    assert main(["export", "--format", "croco", str(dest), "--out", str(small_pairs)]) == 0
    files = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    state = json.loads((dest / ".pairgen-export.json").read_text())
    (dest / ".pairgen-export.json").write_text(json.dumps({"source": state["source"], "done": [], "complete": False}))
    (dest / "pairs.txt").unlink()
    assert main(["export", "--format", "croco", str(dest), "--out", str(small_pairs)]) == 0
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files


def test_export_reads_as_croco_and_imports_back(croco_world, tmp_path, capsys):
    root, meta = croco_world
    (meta / "hm3d").rename(tmp_path / "hm3d-aside")  # only the scenes that exist
    out, dest, again = tmp_path / "out", tmp_path / "habitat_release", tmp_path / "again"
    assert main(import_args(meta, root, out)) == 0
    rows = shard_rows(out)
    from pretrain.cli import main as pretrain_main  # the imported pairs train as they are

    assert pretrain_main(["run", "--shards", str(out / "pairs"), "--model", "tiny", "--img-size", "48", "--batch-size",
                          "4", "--workers", "0", "--warmup-steps", "1", "--steps", "1", "--runs", str(tmp_path / "runs")]) == 0
    assert main(["export", "--format", "croco", str(dest), "--out", str(out)]) == 0

    release = read_habitat_release(dest)
    assert len(release) == len(rows)
    for r in rows:
        key, name = r["pair_id"].rsplit("/", 1)
        pair = next(p for p in release if p["paths"][0].startswith(str(dest / key) + "/")
                    and Path(p["paths"][0]).name == f"{name.removesuffix('_1-2')}_1.jpeg")  # fmt: skip
        for suffix, view in zip(("1", "2"), pair["views"]):
            assert view["image"].shape == (H, W, 3) and view["depth"].shape == (H, W)
            assert view["depth"].dtype == np.float16
            K = np.array(view["camera_intrinsics"])
            f = (W / 2) / math.tan(math.radians(HFOV) / 2)  # CroCo's compute_camera_intrinsics
            np.testing.assert_allclose(K, [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], atol=1e-4)
            pose = np.reshape(r["cam2world" + suffix], (4, 4))
            np.testing.assert_allclose(view["R_cam2world"], pose[:3, :3], atol=1e-6)
            np.testing.assert_allclose(view["t_cam2world"], pose[:3, 3], atol=1e-6)
            from manifests.codecs import decode_depth

            np.testing.assert_allclose(view["depth"].astype(np.float32), decode_depth(r["depth" + suffix]["bytes"]),
                                       rtol=1e-3, atol=1e-3)  # fmt: skip
    assert (dest / "pairs.txt").read_text() == croco_parse_pairs(dest)  # the cache CroCo's own parser writes

    # metadata.json in CroCo's format: only the keys its generator takes, besides multiviews and generate_depth
    generator_keys = {"scene_dataset_config_file", "scene", "navmesh", "resolution", "views_count", "hfov", "size"}
    for path in dest.rglob("metadata.json"):
        doc = json.loads(path.read_text())
        assert set(doc) - {"multiviews", "generate_depth"} <= generator_keys
        assert doc["resolution"] == [H, W] and doc["hfov"] == pytest.approx(HFOV, abs=1e-4)

    # the export imports back: the same cameras and the same pairs (a pair of a three-view entry, 00000002_1-3,
    # is exported as its own two-view entry 00000002_1-3, which imports as 00000002_1-3_1-2)
    assert main(import_args(dest, root, again)) == 0
    back = {r["pair_id"]: r for r in shard_rows(again)}
    assert len(back) == len(rows)
    for r in rows:
        key, name = r["pair_id"].rsplit("/", 1)
        b = back[f"{key}/{name.removesuffix('_1-2')}_1-2"]
        for column in ("cam2world1", "cam2world2", "K1", "K2"):
            np.testing.assert_allclose(b[column], r[column], atol=1e-5)
        assert (b["dataset"], b["scene_id"]) == (r["dataset"], r["scene_id"])
        assert b["covisibility"] == pytest.approx(r["covisibility"], abs=1e-3)
    expected = {f"{k}/{n.removesuffix('_1-2')}_1-2" for k, n in (r["pair_id"].rsplit("/", 1) for r in rows)}
    assert set(back) == expected  # one to one; a two-view entry's pair keeps its very pair_id

    # the same export again does nothing
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["export", "--format", "croco", str(dest), "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == stamps
    # another pairs folder into the same DEST is refused, naming it; nothing changes
    assert main(["export", "--format", "croco", str(dest), "--out", str(again)]) == 1
    assert "holds an export of other pairs" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == stamps


def test_an_entry_of_too_many_views_is_refused_naming_it(croco_world, tmp_path, capsys):
    """One entry's pairs are every two of its views: 400 views would be 79,800 pairs. The bound is an option."""
    from pairgen.interchange.croco import import_tasks

    root, meta = croco_world
    many = {"positions": [[1.0 + 0.1 * i, 1.4, 2.0] for i in range(33)], "orientations": [[1.0, 0, 0, 0]] * 33}
    path = write_metadata(meta / "scannet" / "scene0000_00" / "metadata.json",
                          metadata("scannet/scans/scene0000_00/scene0000_00.ply", {**MULTIVIEWS, "00000009": many}))
    out = tmp_path / "out"
    ran = pairgen(*import_args(meta, root, out))
    assert_one_message(ran, str(path), "key 'multiviews/00000009/positions': 33 views in one entry, 528 pairs",
                       "--max-views-per-entry 32", code=1)
    assert not out.exists()
    (task,) = import_tasks([path], root, max_views=33)  # allowed: every view kept
    assert task.views == 33 + sum(len(e["positions"]) for e in MULTIVIEWS.values())
    assert pairgen(*import_args(meta, root, out, "--max-views-per-entry", "1")).code == 2


def _repeat_label(text: str) -> str:
    """The metadata's JSON text with a first entry '00000001' (CroCo's 00000000's views) before the real one."""
    return text.replace('"multiviews": {', f'"multiviews": {{"00000001": {json.dumps(MULTIVIEWS["00000000"])}, ', 1)


@pytest.mark.parametrize("repeat, key, lost", [
    (_repeat_label, "multiviews/00000001", "the first entry's views would be lost"),
    (lambda text: text.replace('{"scene_dataset_config_file"', '{"scene": "elsewhere.ply", "scene_dataset_config_file"',
                               1), "scene", "the first value would be lost"),
])  # fmt: skip
def test_a_repeated_key_is_refused_naming_file_and_key(croco_world, tmp_path, repeat, key, lost):
    """JSON keeps a repeated key's last value: a label twice in 'multiviews' would drop the first entry silently."""
    root, meta = croco_world
    path = meta / "scannet" / "scene0000_00" / "metadata.json"
    path.write_text(repeat(path.read_text()))
    assert path.read_text().count(f'"{key.rsplit("/", 1)[-1]}"') == 2
    out = tmp_path / "out"
    ran = pairgen(*import_args(meta, root, out))
    assert_one_message(ran, str(path), f"key {key!r}: repeated in its object", lost, code=1)
    assert not out.exists()


def test_a_camera_far_out_or_seeing_nothing_fails_its_scene(croco_world, tmp_path):
    """A camera 1e30 m out is refused with the file; one 55 m out of its scene, or one that sees no surface, fails its
    scene with the entry and view, as render refuses views with too little valid depth; the other scenes go on."""
    root, meta = croco_world
    far = write_metadata(meta / "scannet" / "scene0000_00" / "metadata.json",
                         metadata("scannet/scans/scene0000_00/scene0000_00.ply", {**MULTIVIEWS, "00000009": {
                             "positions": [[2.5, 1.3, 2.0], [60.0, 1.3, 2.0]], "orientations": [[1.0, 0, 0, 0]] * 2}}))
    blind = write_metadata(meta / "habitat-test-scenes" / "room_a" / "metadata.json",
                           metadata("habitat-test-scenes/rooms/room_a.ply", {**MULTIVIEWS, "00000009": {
                               "positions": [[2.5, 1.3, 2.0], [-1.5, 1.3, 2.0]],  # 1.5 m outside, looking away
                               "orientations": [[1.0, 0, 0, 0], yaw_pitch(90, 0)]}}))  # fmt: skip
    out = tmp_path / "out"
    assert main(import_args(meta, root, out)) == 1
    scenes = json.loads((out / "views.manifest.json").read_text())["scenes"]
    reason = scenes["scannet/scans__scene0000_00__scene0000_00"]["reason"]
    assert reason.startswith(f"{far}: key 'multiviews/00000009/positions/1': camera at [60.0, 1.3, 2.0] m, 55.4 m "
                              "outside the scene's bounds [0.0, 0.0, 0.0] .. [4.6, 2.6, 4.2]"), reason
    reason = scenes["habitat-test-scenes/rooms__room_a"]["reason"]
    assert reason.startswith(f"{blind}: key 'multiviews/00000009/positions/1': too little valid depth: 0% of its "
                              "pixels see a surface, below --min-valid 0.3"), reason
    assert not list((out / "views").rglob("*.parquet"))
    assert main(import_args(meta, root, out, "--min-valid", "0")) == 1  # the blind view allowed; the far camera not
    scenes = json.loads((out / "views.manifest.json").read_text())["scenes"]
    assert scenes["habitat-test-scenes/rooms__room_a"]["status"] == "ok"
    assert scenes["scannet/scans__scene0000_00__scene0000_00"]["status"] == "failed"

    doc = json.loads(far.read_text())
    doc["multiviews"]["00000009"]["positions"][1] = [1e30, 1.3, 2.0]
    write_metadata(far, doc)
    ran = pairgen(*import_args(meta, root, out))
    assert_one_message(ran, str(far), "key 'multiviews/00000009/positions/1': [1e+30, 1.3, 2.0]: more than 100000 m "
                       "from the origin", code=1)


def test_import_from_and_into_a_store(croco_world, s3, tmp_path):
    """The metadata, the data root and OUT all in the store: the same pairs as the local import."""
    root, meta = croco_world
    client = s3.client()
    for local_root, prefix in ((root, "scene_datasets"), (meta, "metadata")):
        for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
            client.upload_file(str(path), s3.name, f"{prefix}/{path.relative_to(local_root).as_posix()}")
    ran = pairgen(*import_args(s3.uri("metadata"), s3.uri("scene_datasets"), s3.uri("out")))
    assert ran.code == 1, ran.err  # the missing hm3d scene fails, the others are imported
    assert "FAILED hm3d/val__00800-gone__gone" in ran.err and s3.uri("scene_datasets") in ran.err
    local_out = tmp_path / "local-out"
    assert main(import_args(meta, root, local_out)) == 1
    shutil.rmtree(s3.cache)
    for key in s3.keys("out/pairs/"):  # the stored shards, read as they are in the store
        target = tmp_path / "fetched" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3.name, key, str(target))
    assert shard_rows(tmp_path / "fetched" / "out") == shard_rows(local_out)
