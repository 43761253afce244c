"""Dataset discovery on the real layouts, and `pairgen scenes` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from manifests import DATASETS, DatasetError, discover, get_dataset, parse_dataset_list
from pairgen.cli import main
from tests.writers.gltf import GlbMesh, write_glb
from tests.writers.ply import write_ply

TRI = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
TRI_FACES = np.array([[0, 1, 2], [1, 3, 2]])
QUAD_FACES = np.array([[0, 1, 3, 2]])
COLORS = np.full((4, 3), 128, np.uint8)


def glb() -> bytes:
    return write_glb([GlbMesh(TRI, TRI_FACES)])


@pytest.fixture
def data_root(tmp_path, shared_fixtures_optional):
    """A data root holding every dataset in its release layout, with a few bad scenes."""
    root = tmp_path / "scene_datasets"
    # HM3D: plain glb preferred over basis; one scene with only a basis glb; one empty folder.
    for split, scene, files in [
        ("train", "00000-kfPV7w3FaU5", ["kfPV7w3FaU5.glb", "kfPV7w3FaU5.basis.glb", "kfPV7w3FaU5.basis.navmesh"]),
        ("val", "00800-TEEsavR23oF", ["TEEsavR23oF.basis.glb"]),
        ("val", "00801-HaxA7YrQdEC", []),
    ]:
        d = root / "hm3d" / split / scene
        d.mkdir(parents=True)
        for f in files:
            if f.endswith(".navmesh"):
                if shared_fixtures_optional is not None:
                    shutil.copy(shared_fixtures_optional / "navmesh" / "van-gogh-room.navmesh", d / f)
            else:
                (d / f).write_bytes(glb())
    (root / "hm3d" / "minival").mkdir()
    # ScanNet: one good scan, one with an empty mesh, one missing its mesh.
    for scan, data in [("scene0000_00", write_ply(TRI, TRI_FACES, COLORS, alpha=True)), ("scene0001_00", b""), ("scene0002_00", None)]:
        d = root / "scannet" / "scans" / scan
        d.mkdir(parents=True)
        if data is not None:
            (d / f"{scan}_vh_clean_2.ply").write_bytes(data)
    # Replica: quads, one room with a habitat folder.
    for room in ("apartment_0", "room_0"):
        d = root / "replica" / room
        (d / "habitat").mkdir(parents=True)
        (d / "mesh.ply").write_bytes(write_ply(TRI, QUAD_FACES, COLORS))
    # MP3D and Gibson.
    (root / "mp3d" / "17DRP5sb8fy").mkdir(parents=True)
    (root / "mp3d" / "17DRP5sb8fy" / "17DRP5sb8fy.glb").write_bytes(glb())
    (root / "gibson").mkdir()
    (root / "gibson" / "Allensville.glb").write_bytes(glb())
    (root / "gibson" / "Orphan.navmesh").write_bytes(b"TESM")
    return root


@pytest.fixture
def shared_fixtures_optional():
    from tests.conftest import SHARED_FIXTURES

    return SHARED_FIXTURES if SHARED_FIXTURES.is_dir() else None


def by_id(records):
    return {r.scene_id: r for r in records}


def test_hm3d_prefers_plain_glb_and_records_missing_mesh(data_root):
    recs = by_id(discover(get_dataset("hm3d"), data_root))
    assert set(recs) == {"00000-kfPV7w3FaU5", "00800-TEEsavR23oF", "00801-HaxA7YrQdEC"}
    assert recs["00000-kfPV7w3FaU5"].mesh.endswith("/kfPV7w3FaU5.glb")
    assert recs["00800-TEEsavR23oF"].mesh.endswith("TEEsavR23oF.basis.glb")
    assert recs["00800-TEEsavR23oF"].split == "val"
    assert not recs["00801-HaxA7YrQdEC"].ok and "no HaxA7YrQdEC.glb" in recs["00801-HaxA7YrQdEC"].problems[0]
    only_val = discover(get_dataset("hm3d"), data_root, split="val")
    assert {r.split for r in only_val} == {"val"}


def test_scannet_records_empty_and_missing_meshes(data_root):
    recs = by_id(discover(get_dataset("scannet"), data_root))
    assert recs["scene0000_00"].ok
    assert "file is empty" in recs["scene0001_00"].problems[0]
    assert "no scene0002_00_vh_clean_2.ply" in recs["scene0002_00"].problems[0]


def test_replica_mp3d_gibson_layouts(data_root):
    assert sorted(by_id(discover(get_dataset("replica"), data_root))) == ["apartment_0", "room_0"]
    assert by_id(discover(get_dataset("mp3d"), data_root))["17DRP5sb8fy"].ok
    gibson = by_id(discover(get_dataset("gibson"), data_root))
    assert gibson["Allensville"].ok and not gibson["Orphan"].ok


def test_synthetic_needs_no_root():
    from manifests import SyntheticOptions

    recs = discover(get_dataset("synthetic"), None, synthetic=SyntheticOptions(count=3, preset="small", seed=5))
    assert [r.mesh for r in recs] == ["small/5", "small/6", "small/7"]
    assert len({r.scene_id for r in recs}) == 3


@pytest.mark.parametrize(
    "call,phrase",
    [
        (lambda root: discover(get_dataset("hm3d"), root / "nowhere"), "data root"),
        (lambda root: discover(get_dataset("hm3d"), root, split="test"), "has splits train, val, minival"),
        (lambda root: parse_dataset_list("hm3d,nope"), "unknown dataset 'nope'"),
        (lambda root: parse_dataset_list(" , "), "no dataset named"),
    ],
)
def test_discovery_errors(data_root, call, phrase):
    with pytest.raises(DatasetError, match=phrase):
        call(data_root)


def test_missing_dataset_folder(tmp_path):
    tmp_path.joinpath("hm3d").mkdir()
    with pytest.raises(DatasetError, match="dataset folder .*scannet does not exist"):
        discover(get_dataset("scannet"), tmp_path)


def test_every_dataset_has_a_registered_source():
    from renderers.sources import available_sources

    assert {spec.source for spec in DATASETS.values()} <= set(available_sources())


# -- pairgen scenes ---------------------------------------------------------------


def test_scenes_command_lists_all_and_reports_problems(data_root, capsys):
    code = main(["scenes", "--scenes", "hm3d,scannet,replica,mp3d,gibson", "--data-root", str(data_root), "--triangles", "--json"])
    out, err = capsys.readouterr()
    rows = {r["scene_id"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0
    assert rows["scene0000_00"]["triangles"] == 2
    assert rows["apartment_0"]["triangles"] == 2  # one quad
    assert rows["00000-kfPV7w3FaU5"]["triangles"] == 2
    assert rows["scene0001_00"]["problems"] and "triangles" not in rows["scene0001_00"]
    assert "with problems" in err
    if rows["00000-kfPV7w3FaU5"]["navmesh"]:
        assert rows["00000-kfPV7w3FaU5"]["navigable_m2"] == pytest.approx(9.2, abs=0.1)


def test_scenes_command_unreadable_file_is_a_scene_problem(data_root, capsys):
    (data_root / "mp3d" / "17DRP5sb8fy" / "17DRP5sb8fy.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    code = main(["scenes", "--scenes", "mp3d,gibson", "--data-root", str(data_root), "--triangles", "--strict"])
    out, err = capsys.readouterr()
    assert code == 1  # --strict
    line = next(l for l in out.splitlines() if "17DRP5sb8fy" in l)
    assert "PROBLEM" in line and "truncated glb" in line
    assert "Allensville" in out


@pytest.mark.parametrize(
    "argv,phrase",
    [
        (["scenes", "--scenes", "hm3d", "--data-root", "/nonexistent/root"], "data root /nonexistent/root does not exist"),
        (["scenes", "--scenes", "hm3d,bogus"], "unknown dataset 'bogus'"),
        (["scenes", "--scenes", "synthetic", "--synthetic-count", "-1"], "--synthetic-count: must be at least 0"),
    ],
)
def test_scenes_command_bad_arguments_one_message(argv, phrase, capsys):
    assert main(argv) == (2 if "--synthetic-count" in argv else 1)  # 2: a bad option value, as argparse
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_scenes_command_missing_dataset_folder(tmp_path, capsys):
    assert main(["scenes", "--scenes", "replica", "--data-root", str(tmp_path)]) == 1
    assert "dataset folder" in capsys.readouterr().err


@pytest.mark.parametrize("name, phrase", [("r" * 240, "is too long for a file name (240 bytes;"),
                                          ("-room", "starts with '-'")])  # fmt: skip
def test_a_scene_id_that_cannot_name_a_file_is_its_scenes_problem_found_at_discovery(data_root, name, phrase):
    d = data_root / "replica" / name  # a folder name the file system takes, a scene id pairgen's files cannot
    d.mkdir()
    (d / "mesh.ply").write_bytes(write_ply(TRI, QUAD_FACES, COLORS))
    recs = by_id(discover(get_dataset("replica"), data_root))
    assert not recs[name].ok and any(p.startswith("scene id ") and phrase in p for p in recs[name].problems)
    assert recs["apartment_0"].ok and recs["room_0"].ok  # the others go on
