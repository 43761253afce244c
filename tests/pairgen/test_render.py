"""`pairgen render` end to end: the views files, the manifest, reruns, bad scenes, Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.codecs import decode_depth, decode_rgb
from manifests.io import OutputError
from manifests.views import VIEWS_SCHEMA, read_views, read_views_meta
from pairgen.cli import main
from renderers.camera import intrinsics_from_hfov
from tests.rooms import scannet_room

SMALL = ["--synthetic-preset", "small", "--synthetic-count", "2", "--views-per-scene", "12", "--resolution", "64x48"]


def render(out: Path, *extra: str) -> int:
    return main(["render", "--scenes", "synthetic", "--out", str(out), "--no-ray", *SMALL, *extra])


def manifest(out: Path) -> dict:
    return json.loads((out / "views.manifest.json").read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairgen")
    assert render(out) == 0
    return out


def test_views_files_follow_the_schema(rendered):
    m = manifest(rendered)
    assert m["totals"] == {"scenes_ok": 2, "scenes_failed": 0, "views": 24}
    for key, entry in m["scenes"].items():
        path = rendered / "views" / entry["file"]
        assert path == rendered / "views" / "synthetic" / f"{key.split('/')[1]}.parquet"
        table, meta = read_views(path)
        assert table.schema.equals(VIEWS_SCHEMA, check_metadata=False)
        assert meta.config_hash == m["config_hash"] and meta.views == 12 and meta.backend == "raycast"
        assert table.column("view_id").to_pylist() == list(range(12))
        K = np.array(table.column("K").to_pylist()[0]).reshape(3, 3)
        np.testing.assert_allclose(K, intrinsics_from_hfov(64, 48, 60.0), rtol=1e-6)
        row = table.slice(3, 1).to_pylist()[0]
        assert decode_rgb(row["image"]["bytes"]).shape == (48, 64, 3)
        depth = decode_depth(row["depth"]["bytes"])
        assert depth.shape == (48, 64)
        assert (depth > 0).mean() == pytest.approx(row["valid_fraction"], abs=1e-6) and row["valid_fraction"] >= 0.7
        pose = np.array(row["cam2world"]).reshape(4, 4)
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-5)
        assert row["image"]["path"].endswith(".jpg")
        meta_keys = pq.read_schema(path).metadata
        assert b"huggingface" in meta_keys and b"pairgen" in meta_keys


def test_rerun_does_nothing(rendered, capsys):
    files = sorted((rendered / "views").rglob("*.parquet"))
    before = {f: f.stat().st_mtime_ns for f in files}
    assert render(rendered) == 0
    assert "0 scenes rendered, 2 already done, 0 failed" in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_a_finished_render_is_marked_complete(rendered):
    assert json.loads((rendered / "views.manifest.json").read_text())["complete"] is True


def test_same_config_same_views(rendered, tmp_path):
    assert render(tmp_path) == 0
    for f in (rendered / "views" / "synthetic").glob("*.parquet"):
        a = pq.read_table(f, columns=["cam2world", "image"])
        b = pq.read_table(tmp_path / "views" / "synthetic" / f.name, columns=["cam2world", "image"])
        assert a.equals(b)


def test_views_of_the_old_back_face_rule_are_another_configs(rendered, tmp_path, capsys):
    """Views rendered before render_revision 2 (every face from both sides) are refused, never reused."""
    import shutil

    from manifests.config import config_hash

    copy = tmp_path / "pg"
    shutil.copytree(rendered, copy)
    path = copy / "views.manifest.json"
    doc = json.loads(path.read_text())
    doc.pop("identity")  # as the stage wrote it before: the config alone was hashed
    doc["config_hash"] = config_hash(doc["config"])
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert render(copy) == 1
    err = capsys.readouterr().err
    assert "another config" in err and "render_revision: None -> 2" in err and "Traceback" not in err


def test_config_drift_refuses_then_overwrites(tmp_path, capsys):
    assert render(tmp_path) == 0
    capsys.readouterr()
    assert render(tmp_path, "--hfov", "75") == 1
    err = capsys.readouterr().err
    assert "another config" in err and "hfov: 60.0 -> 75.0" in err and "--overwrite" in err and "Traceback" not in err
    assert render(tmp_path, "--hfov", "75", "--overwrite") == 0
    m = manifest(tmp_path)
    assert m["config"]["sampling"]["hfov"] == 75.0 and m["totals"]["scenes_ok"] == 2
    for entry in m["scenes"].values():
        assert read_views_meta(tmp_path / "views" / entry["file"]).config_hash == m["config_hash"]


def test_a_corrupt_scene_is_recorded_and_the_others_finish(tmp_path, capsys):
    root = tmp_path / "data"
    for scan in ("scene0000_00", "scene0001_00"):
        scannet_room(root / "scannet" / "scans" / scan / f"{scan}_vh_clean_2.ply")
    bad = root / "scannet" / "scans" / "scene0002_00" / "scene0002_00_vh_clean_2.ply"
    scannet_room(bad)
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    out = tmp_path / "out"
    code = main(["render", "--scenes", "scannet", "--data-root", str(root), "--out", str(out), "--no-ray",
                 "--views-per-scene", "8", "--resolution", "32"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "2 scenes rendered, 0 already done, 1 failed" in err and "scannet/scene0002_00" in err
    m = manifest(out)
    failed = m["scenes"]["scannet/scene0002_00"]
    assert failed["status"] == "failed" and "scene0002_00_vh_clean_2.ply" in failed["reason"]
    assert not (out / "views" / "scannet" / "scene0002_00.parquet").exists()
    assert m["scenes"]["scannet/scene0000_00"]["status"] == "ok"
    assert m["scenes"]["scannet/scene0000_00"]["floor"] == "geometry"


def test_a_scene_id_too_long_for_a_file_name_is_that_scenes_failure(tmp_path, capsys):
    from tests.rooms import write_room_ply

    long_id = "r" * 240  # a folder name the file system takes; its views file's temporary name it does not
    root = tmp_path / "data"
    for room in (long_id, "room_0"):
        write_room_ply(root / "replica" / room / "mesh.ply")
    out = tmp_path / "out"
    code = main(["render", "--scenes", "replica", "--data-root", str(root), "--out", str(out), "--no-ray",
                 "--views-per-scene", "8", "--resolution", "32"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "1 scenes rendered, 0 already done, 1 failed" in err
    reason = manifest(out)["scenes"][f"replica/{long_id}"]["reason"]
    assert reason.startswith(f"scene id {'r' * 40 + '...'!r} is too long for a file name (240 bytes;")
    assert "cannot write" not in err and str(out / "views") not in reason  # not the output folder's problem
    assert (out / "views" / "replica" / "room_0.parquet").is_file()


def test_a_views_file_found_complete_without_its_entry_is_recorded_with_its_checksum(rendered, tmp_path):
    import shutil

    from manifests.manifest import sha256_file

    copy = tmp_path / "pg"
    shutil.copytree(rendered, copy)
    m = manifest(copy)
    key = min(m["scenes"])
    del m["scenes"][key]  # as if killed between the views file's rename and its manifest entry
    (copy / "views.manifest.json").write_text(json.dumps(m))
    assert render(copy) == 0
    entry = manifest(copy)["scenes"][key]
    assert entry["status"] == "ok" and entry["sha256"] == sha256_file(copy / "views" / entry["file"])


def test_habitat_backend_missing_is_one_message(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "habitat_sim", None)
    assert render(tmp_path, "--backend", "habitat") == 1
    err = capsys.readouterr().err
    assert "conda" in err and "--backend raycast" in err and "Traceback" not in err
    assert not (tmp_path / "views").exists()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--resolution", "0x3"], "argument --resolution: must be at least 8, got 0"),  # bound (manifests.options)
        (["--camera-height", "1.8"], "MIN,MAX"),  # not a pair: argparse's own error
    ],
)
def test_bad_render_arguments(tmp_path, capsys, args, phrase):
    try:
        code = render(tmp_path, *args)
    except SystemExit as e:
        code = e.code
    assert code == 2 and phrase in capsys.readouterr().err


def test_contradictory_values_are_one_message(tmp_path, capsys):
    assert render(tmp_path, "--camera-height", "1.8,1.2") == 2  # a bad option value: argparse's status
    assert "camera height range" in capsys.readouterr().err


def test_unwritable_output_is_one_message(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert render(blocker / "out") == 1
    err = capsys.readouterr().err
    assert "cannot write here" in err and "Traceback" not in err


def test_views_file_of_another_schema_names_the_column(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"view_id": pa.array([0], pa.int32())}).replace_schema_metadata(
        {"pairgen": json.dumps({"dataset": "d", "scene_id": "s", "source": "", "backend": "raycast",
                                "config_hash": "0", "views": 1, "format": "pairgen-views/1"})}), path)  # fmt: skip
    with pytest.raises(OutputError, match=r"x.parquet: column 'image' is missing"):
        read_views(path)
    pq.write_table(pa.table({"a": [1]}), path)
    with pytest.raises(OutputError, match="not a pairgen views file"):
        read_views(path)


def test_ray_end_to_end(tmp_path, capsys):
    code = main(["render", "--scenes", "synthetic", "--out", str(tmp_path), "--workers", "2", *SMALL])
    assert code == 0, capsys.readouterr().err
    m = manifest(tmp_path)
    assert m["totals"]["scenes_ok"] == 2 and m["totals"]["views"] == 24


@pytest.mark.parametrize("damage", ["not JSON", "a field of the wrong kind"])
def test_overwrite_replaces_an_unreadable_manifest(rendered, tmp_path, capsys, damage):
    import shutil

    copy = tmp_path / "pg"
    shutil.copytree(rendered, copy)
    path = copy / "views.manifest.json"
    recorded = manifest(copy)["scenes"]
    if damage == "not JSON":
        path.write_text('{"format": "pairgen-views-manifest/1", broken')
    else:
        doc = json.loads(path.read_text())
        doc["scenes"][min(doc["scenes"])]["views"] = "many"
        path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert render(copy) == 1  # without --overwrite: refused, naming the file and the way out
    err = capsys.readouterr().err
    assert f"{path}: " in err and "pass --overwrite to replace it" in err and "Traceback" not in err
    assert render(copy, "--overwrite") == 0
    scenes = manifest(copy)["scenes"]
    assert {k: (e["status"], e["sha256"]) for k, e in scenes.items()} == {
        k: (e["status"], e["sha256"]) for k, e in recorded.items()}  # the views files kept, found complete, hashed


@pytest.mark.parametrize("replacement", ["another scene's file", "the same scene, other bytes"])
def test_a_views_file_replaced_by_another_valid_one_is_not_kept_under_the_old_checksum(rendered, tmp_path, capsys,
                                                                                        caplog, replacement):
    """A file of the same config put in a scene's place (found by its stat, then its SHA-256): another scene's is
    rendered again; one of the same scene (other bytes) is taken with its own checksum, never the one it replaced,
    which the filter would then refuse at every run."""
    import shutil

    from manifests.manifest import sha256_file

    copy = tmp_path / "pg"
    shutil.copytree(rendered, copy)
    recorded = manifest(copy)["scenes"]
    first, second = sorted(recorded)
    victim = copy / "views" / recorded[first]["file"]
    if replacement == "another scene's file":
        shutil.copy(copy / "views" / recorded[second]["file"], victim)
    else:  # the same scene's views, written again with another row order: valid, same config, other bytes
        table = pq.read_table(victim)
        pq.write_table(table.take(list(range(table.num_rows))[::-1]).replace_schema_metadata(table.schema.metadata),
                       victim)  # fmt: skip
    capsys.readouterr()
    assert render(copy) == 0
    err = capsys.readouterr().err
    scenes = manifest(copy)["scenes"]
    if replacement == "another scene's file":
        assert "1 scenes rendered, 1 already done, 0 failed" in err
        assert any("not of this scene" in r.getMessage() for r in caplog.records)  # a warning, on stderr in a process
        assert scenes[first]["sha256"] == recorded[first]["sha256"]  # rendered again: deterministic, the same bytes
    else:
        assert "0 scenes rendered, 2 already done, 0 failed" in err
        assert scenes[first]["sha256"] == sha256_file(victim) != recorded[first]["sha256"]
    assert scenes[first]["stat"] == [victim.stat().st_size, victim.stat().st_mtime_ns]  # then kept, by its stat
    assert main(["filter", "--min-covis", "0.1", "--out", str(copy), "--no-ray"]) == 0  # the views as recorded
