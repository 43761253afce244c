"""`pairgen filter` end to end on rendered synthetic views: shards, manifest, reruns, bad options."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests.pairs import PAIRS_SCHEMA
from pairgen.cli import main
from tests.conftest import FILTER_SMALL, copy_stage

FILTER = FILTER_SMALL


@pytest.fixture
def out(small_pairs) -> Path:
    return small_pairs


def manifest(out: Path) -> dict:
    return json.loads((out / "pairs.manifest.json").read_text())


def test_shards_hold_the_band_and_copy_the_views_bytes(out):
    m = manifest(out)
    assert m["complete"] and m["totals"]["pairs"] > 20 and m["totals"]["shards"] == len(m["shards"])
    views = {}
    for f in (out / "views" / "synthetic").glob("*.parquet"):
        t = pq.read_table(f)
        views[f.stem] = {r["view_id"]: r for r in t.to_pylist()}
    ids = set()
    for shard in m["shards"]:
        path = out / "pairs" / shard["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        table = pq.read_table(path)
        assert table.schema.equals(PAIRS_SCHEMA, check_metadata=False) and table.num_rows == shard["pairs"]
        meta = pq.read_schema(path).metadata
        assert b"huggingface" in meta and b'"Image"' in meta[b"huggingface"]
        for row in table.to_pylist():
            assert 0.3 <= row["covisibility"] <= 0.9
            assert row["covisibility"] == pytest.approx(min(row["covis_1in2"], row["covis_2in1"]))
            v1, v2 = views[row["scene_id"]][row["view1_id"]], views[row["scene_id"]][row["view2_id"]]
            assert row["image1"] == v1["image"] and row["depth2"] == v2["depth"]  # bytes copied, not re-encoded
            np.testing.assert_array_equal(row["cam2world1"], v1["cam2world"])
            ids.add(row["pair_id"])
    assert len(ids) == m["totals"]["pairs"]  # unique
    hist = m["histogram"]
    assert sum(hist["counts"]) == m["totals"]["pairs"]


def test_pairs_of_scenes_are_interleaved(out):
    scenes = []
    for shard in manifest(out)["shards"]:
        scenes += pq.read_table(out / "pairs" / shard["file"], columns=["scene_id"]).column("scene_id").to_pylist()
    first = scenes[:40]
    assert len(set(first)) > 1  # consecutive pairs come from several scenes


def test_rerun_is_a_no_op(out, capsys):
    before = {p: p.stat().st_mtime_ns for p in (out / "pairs").iterdir()}
    assert main([*FILTER, "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "pairs").iterdir()} == before


def test_changed_config_refuses(out, capsys):
    assert main([*FILTER, "--out", str(out), "--min-covis", "0.4"]) == 1
    err = capsys.readouterr().err
    assert "another config" in err and "min_covis: 0.3 -> 0.4" in err


def test_lost_shard_is_rewritten_identically(out, tmp_path):
    import shutil

    copy = tmp_path / "pg"
    shutil.copytree(out, copy)
    m = manifest(copy)
    victim = copy / "pairs" / m["shards"][0]["file"]
    victim.unlink()
    (copy / "pairs.manifest.json").unlink()  # as if killed before the manifest
    assert main([*FILTER, "--out", str(copy)]) == 0
    assert manifest(copy)["shards"] == m["shards"]


def test_a_views_file_replaced_by_another_valid_one_makes_the_filter_redo_its_scene(out, tmp_path, capsys):
    import shutil

    from tests.conftest import RENDER_SMALL

    copy = tmp_path / "pg"
    shutil.copytree(out, copy)
    other = tmp_path / "other"  # the same scene rendered with another config: a sound views file, not the one recorded
    assert main([*RENDER_SMALL, "--synthetic-count", "1", "--views-per-scene", "20", "--out", str(other)]) == 0
    replaced = copy / "views" / "synthetic" / "apartment_0000.parquet"
    shutil.copy(other / "views" / "synthetic" / "apartment_0000.parquet", replaced)
    capsys.readouterr()
    assert main([*FILTER, "--out", str(copy)]) == 1  # was "already complete", exit 0
    err = capsys.readouterr().err
    assert "already complete" not in err
    assert f"FAILED synthetic/apartment_0000: {replaced}: its SHA-256 differs from the views manifest's" in err
    assert "synthetic/apartment_0000" not in manifest(copy)["views_files"]
    kept = {r["scene_id"] for s in manifest(copy)["shards"] for r in pq.read_table(copy / "pairs" / s["file"],
                                                                                    columns=["scene_id"]).to_pylist()}
    assert kept == {"apartment_0001", "apartment_0002"}  # no pair of the replaced file's scene
    assert main([*RENDER_SMALL, "--out", str(copy)]) == 0  # render notices it too, and renders it again
    assert main([*FILTER, "--out", str(copy)]) == 0
    assert manifest(copy)["shards"] == manifest(out)["shards"]


def test_an_up_to_date_check_hashes_a_views_file_only_when_it_was_touched(out, tmp_path, capsys, monkeypatch):
    import os
    import shutil

    import manifests.manifest
    import pairgen.filter

    copy = tmp_path / "pg"
    shutil.copytree(out, copy)  # copytree keeps the modification times: the recorded ones still hold
    hashed = []
    real = manifests.manifest.sha256_file
    for module in (pairgen.filter, manifests.manifest):  # the filter's own hashes, and has_checksum's
        monkeypatch.setattr(module, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    assert main([*FILTER, "--out", str(copy)]) == 0 and hashed == []
    touched = copy / "views" / "synthetic" / "apartment_0001.parquet"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert main([*FILTER, "--out", str(copy)]) == 0 and hashed == ["apartment_0001.parquet"]  # the same bytes
    assert "already complete" in capsys.readouterr().err
    assert main([*FILTER, "--out", str(copy)]) == 0 and hashed == ["apartment_0001.parquet"]  # its new time recorded


@pytest.mark.parametrize(
    "args, phrase",
    [(["--min-covis", "0.8", "--max-covis", "0.5"], "is above --max-covis"),
     (["--min-covis", "1.5"], "argument --min-covis: must be at most 1")],
)
def test_contradictory_options(tmp_path, capsys, args, phrase):
    assert main(["filter", "--out", str(tmp_path), *args]) == 2  # a bad option value: argparse's status
    assert phrase in capsys.readouterr().err


def test_no_views_is_one_message(tmp_path, capsys):
    assert main(["filter", "--out", str(tmp_path), "--no-ray"]) == 1
    assert "run `pairgen render" in capsys.readouterr().err


def test_ray_gives_the_same_shards(out, tmp_path):
    import shutil

    copy_stage(out, tmp_path, "views")
    args = [a for a in FILTER if a != "--no-ray"]
    assert main([*args, "--out", str(tmp_path), "--workers", "2"]) == 0
    assert manifest(tmp_path)["shards"] == manifest(out)["shards"]  # same bytes, whatever ran them
