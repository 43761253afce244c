"""Failures that heal: the same command again retries exactly what failed and picks up what changed.

A render with one broken scene, a filter over it, the scene repaired and
rendered again, the filter again; a filter whose views file broke; a shard
truncated after a complete run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pairgen.cli import main
from tests.rooms import scannet_room

RENDER = ["--views-per-scene", "16", "--resolution", "48", "--no-ray"]
FILTER = ["filter", "--min-covis", "0.2", "--max-covis", "0.95", "--shard-size", "30", "--no-ray"]
SCANS = ("scene0000_00", "scene0001_00", "scene0002_00")


def _manifest(out: Path, folder: str) -> dict:
    return json.loads((out / f"{folder}.manifest.json").read_text())


def _pair_ids(out: Path) -> list[str]:
    m = _manifest(out, "pairs")
    return [i for s in m["shards"] for i in pq.read_table(out / "pairs" / s["file"], columns=["pair_id"])
            .column("pair_id").to_pylist()]  # fmt: skip


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    for scan in SCANS:
        scannet_room(root / "scannet" / "scans" / scan / f"{scan}_vh_clean_2.ply")
    return root


def _render(root: Path, out: Path) -> int:
    return main(["render", "--scenes", "scannet", "--data-root", str(root), "--out", str(out), *RENDER])


def test_a_scene_render_failed_is_reported_then_picked_up_once_rendered(data, tmp_path, capsys):
    bad = data / "scannet" / "scans" / "scene0002_00" / "scene0002_00_vh_clean_2.ply"
    good = bad.read_bytes()
    bad.write_bytes(good[:300])  # truncated
    out = tmp_path / "out"
    assert _render(data, out) == 1
    capsys.readouterr()
    assert main([*FILTER, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "from 2 scenes (0 failed, 1 not rendered)" in err, err
    pairs = _manifest(out, "pairs")
    assert pairs["complete"] and pairs["scenes"]["scannet/scene0002_00"]["status"] == "absent"
    assert "not rendered" in pairs["scenes"]["scannet/scene0002_00"]["reason"]
    assert "truncated" in pairs["scenes"]["scannet/scene0002_00"]["reason"]  # the render's reason

    bad.write_bytes(good)  # repaired: render does that scene only, filter picks it up and redoes nothing else
    assert _render(data, out) == 0
    assert "1 scenes rendered, 2 already done, 0 failed" in capsys.readouterr().err
    assert main([*FILTER, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "already complete" not in err and "from 3 scenes (0 failed, 2 reused)" in err, err
    pairs = _manifest(out, "pairs")
    assert pairs["complete"] and {e["status"] for e in pairs["scenes"].values()} == {"ok"}
    assert any(i.startswith("scannet/scene0002_00/") for i in _pair_ids(out))
    assert main([*FILTER, "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err


def test_a_filter_failure_is_retried_by_the_same_command(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert _render(data, out) == 0
    assert main([*FILTER, "--out", str(out)]) == 0
    reference = _pair_ids(out)
    views = _manifest(out, "views")
    victim = out / "views" / views["scenes"]["scannet/scene0001_00"]["file"]
    saved = victim.read_bytes()
    victim.write_bytes(saved[: len(saved) // 2])  # broken after render
    main([*FILTER, "--out", str(out), "--overwrite", "--seed", "1"])  # another config: every scene computed
    capsys.readouterr()
    assert main([*FILTER, "--out", str(out), "--seed", "1"]) == 1  # the same command: that scene fails again
    err = capsys.readouterr().err
    assert "FAILED scannet/scene0001_00" in err and "2 reused" in err, err
    assert not _manifest(out, "pairs")["complete"]
    victim.write_bytes(saved)  # healed input: the same command completes, computing that scene alone
    assert main([*FILTER, "--out", str(out), "--seed", "1"]) == 0
    err = capsys.readouterr().err
    assert "from 3 scenes (0 failed, 2 reused)" in err, err
    assert _manifest(out, "pairs")["complete"]
    assert main([*FILTER, "--out", str(out), "--overwrite"]) == 0  # back to seed 0: the first run's pairs
    assert _pair_ids(out) == reference


def test_a_shard_truncated_after_a_complete_run_is_written_again(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert _render(data, out) == 0
    assert main([*FILTER, "--out", str(out)]) == 0
    before = _manifest(out, "pairs")["shards"]
    victim = out / "pairs" / before[0]["file"]
    victim.write_bytes(victim.read_bytes()[:1000])
    capsys.readouterr()
    assert main([*FILTER, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "already complete" not in err and "3 reused" in err, err
    after = _manifest(out, "pairs")["shards"]
    assert [s["sha256"] for s in after] == [s["sha256"] for s in before]  # the same bytes as the first time
