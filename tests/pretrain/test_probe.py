"""`pretrain probe`: metrics by hand, the scene split, determinism, the baseline, bad inputs (a file: exit 1; options
the views cannot satisfy: exit 2), too few held-out views (a warning)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pretrain.cli import main
from pretrain.probe import (
    MIN_HELDOUT_VIEWS,
    ProbeConfig,
    ProbeError,
    ProbeOptionError,
    depth_metrics,
    partner_rows,
    split_scenes,
)

FAST = ["--views-per-scene", "8", "--head-steps", "20", "--cvc-pairs", "8"]


@pytest.fixture(scope="module")
def checkpoint(small_pairs, tmp_path_factory) -> Path:
    """The last checkpoint of a short `pretrain run` of the tiny model on the small render's pairs."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", "--shards", str(small_pairs / "pairs"), "--model", "tiny", "--img-size", "64",
                 "--batch-size", "8", "--steps", "4", "--workers", "0", "--image-every", "0", "--no-verify",
                 "--runs", str(runs), "--name", "t"]) == 0  # fmt: skip
    return runs / "t" / "checkpoint-last.pt"


def probe_json(folder: Path) -> dict:
    (path,) = folder.glob("probe-*.json")
    return json.loads(path.read_text())


# ---- metrics and helpers


def test_metrics_by_hand():
    gt = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    pred = np.array([[[1.0, 1.0], [1.0, 2.0]]])  # medians 1 and 1: no rescaling
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.25)  # (0 + 0 + 0 + 1/1) / 4
    assert m["rmse"] == pytest.approx(0.5)  # sqrt(1/4)
    assert m["rmse_log"] == pytest.approx(math.log(2) / 2)  # sqrt(ln(2)^2 / 4)
    assert m["delta1"] == pytest.approx(0.75)  # 2/1 >= 1.25 for one pixel of four
    assert m["images"] == 1


def test_metrics_align_by_median_and_skip_invalid():
    gt = np.array([[[1.0, 2.0], [4.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [20.0, 4.0]]])
    pred = np.array([[[2.0, 4.0], [8.0, 99.0]], [[5.0, 5.0], [5.0, 5.0]], [[3.0, 6.0], [1.0, 12.0]]])
    m = depth_metrics(pred, gt, max_depth=10.0)
    # image 1: a scaled copy on its valid pixels (0 = invalid); image 2: no valid pixel, left out;
    # image 3: 20 m is beyond max_depth, the rest is 3x the truth
    assert m["images"] == 2
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert m["delta1"] == pytest.approx(1.0)


def test_metrics_average_per_image():
    gt = np.ones((2, 1, 2))
    pred = np.array([[[1.0, 1.0]], [[1.0, 3.0]]])  # image 2: median 2 -> scaled by 1/2 -> (0.5, 1.5)
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((0.0 + 0.5) / 2)
    assert m["rmse"] == pytest.approx((0.0 + 0.5) / 2)
    assert m["delta1"] == pytest.approx((1.0 + 0.0) / 2)  # 1/0.5 = 2 and 1.5 both >= 1.25


def test_split_is_seeded_and_checked():
    keys = [f"synthetic/s{i}" for i in range(8)]
    train, held = split_scenes(keys, ProbeConfig(seed=3))
    assert (train, held) == split_scenes(keys, ProbeConfig(seed=3))
    assert len(held) == 2 and not set(train) & set(held) and sorted(train + held) == keys
    assert split_scenes(keys, ProbeConfig(holdout="s1,synthetic/s2")) == (
        [k for k in keys if k not in ("synthetic/s1", "synthetic/s2")], ["synthetic/s1", "synthetic/s2"])
    with pytest.raises(ProbeOptionError, match="overlap"):
        split_scenes(keys, ProbeConfig(holdout="s1", train_scenes="s1,s2"))
    with pytest.raises(ProbeError, match="empty") as one_scene:  # the views' fault, not an option's
        split_scenes(keys[:1], ProbeConfig())
    assert not isinstance(one_scene.value, ProbeOptionError)
    with pytest.raises(ProbeOptionError, match="empty"):
        split_scenes(keys, ProbeConfig(holdout=""))
    with pytest.raises(ProbeOptionError, match="no scene left"):
        split_scenes(keys[:2], ProbeConfig(holdout_fraction=0.9))


def test_partners_are_nearby_cameras_looking_the_same_way():
    poses = np.tile(np.eye(4), (4, 1, 1))
    poses[1, 0, 3] = 0.05  # too near: a duplicate
    poses[2, 0, 3] = 0.5  # the partner
    poses[3, 0, 3] = 0.3
    poses[3, :3, :3] = np.diag([-1.0, 1.0, -1.0])  # nearer, but looking back
    assert partner_rows(poses, np.array([0])).tolist() == [2]
    assert partner_rows(poses[[0, 1, 3]], np.array([0])).tolist() == [-1]


# ---- the command


def test_probe_end_to_end_deterministic_with_baseline(checkpoint, small_pairs, tmp_path, capsys):
    views = str(small_pairs / "views")
    assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST]) == 0
    err = capsys.readouterr().err
    first = probe_json(checkpoint.parent)  # by default, in the checkpoint's run folder
    assert sum(line.startswith("probe of step 4") for line in err.splitlines()) == 1
    assert (checkpoint.parent / first["png"]).stat().st_size > 0
    assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST, "--out", str(tmp_path)]) == 0
    again = probe_json(tmp_path)
    for record in (first, again):
        record.pop("seconds")
    assert first == again  # same seed, same numbers
    assert first["format"] == "pretrain-probe/1" and first["step"] == 4
    assert len(first["heldout_scenes"]) == 1 and len(first["train_scenes"]) == 2
    for which in ("pretrained", "random_init"):
        d = first[which]["depth"]
        assert d["images"] == 8 and 0 < d["abs_rel"] < 10 and 0 <= d["delta1"] <= 1
        assert first[which]["cvc_loss"]["pairs"] > 0
    assert first["pretrained"]["depth"] != first["random_init"]["depth"]
    other = tmp_path / "other"
    assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST, "--seed", "1",
                 "--out", str(other)]) == 0  # fmt: skip
    assert probe_json(other)["random_init"]["depth"] != first["random_init"]["depth"]


def _no_depth_column(src: Path, dst: Path) -> Path:
    table = pq.read_table(src)
    out = dst / "synthetic" / src.name
    out.parent.mkdir(parents=True)
    pq.write_table(table.drop_columns(["depth"]).replace_schema_metadata(table.schema.metadata), out)
    return dst


def _zero_depth(src: Path, dst: Path, column: str = "depth") -> Path:
    """``src``'s scene with every depth all zero (or, ``column="image"``, every image null), beside the others."""
    import pyarrow as pa

    from manifests.codecs import encode_depth

    table = pq.read_table(src)
    w, h = table.column("width")[0].as_py(), table.column("height")[0].as_py()
    zero = {"bytes": encode_depth(np.zeros((h, w), np.float32)), "path": "x.depth.png"} if column == "depth" else None
    values = pa.array([zero] * table.num_rows, table.schema.field(column).type)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    out = dst / "synthetic" / src.name
    out.parent.mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), out)
    for other in sorted(src.parent.glob("*.parquet")):  # and the other scenes, intact
        if other != src:
            shutil.copy(other, out.parent / other.name)
    return dst


# case -> (checkpoint, views, options, message, exit status: 1 a bad file, 2 options the views cannot satisfy)
BAD = {
    "corrupt checkpoint": ("truncated", None, [], "not a readable checkpoint", 1),
    "another model's checkpoint": ("foreign", None, [], "not a checkpoint of `pretrain run`", 1),
    "no views files": (None, "empty", [], "no views files", 1),
    "views given as a file": (None, "a-file", [], "a file, not a views folder", 1),
    "no depth column": (None, "no-depth", [], "no depth column", 1),
    "all depth invalid": (None, "zero-depth", [], "no valid depth", 1),
    "null images": (None, "null-image", [], "no image (null)", 1),
    "one scene only": (None, "one-scene", [], "held-out split is empty", 1),
    "empty held-out split": (None, None, ["--holdout", ""], "held-out split is empty", 2),
    "overlapping splits": (None, None, ["--holdout", "X", "--train-scenes", "X"], "overlap", 2),
    "unknown scene": (None, None, ["--holdout", "no_such_scene"], "no scene 'no_such_scene'", 2),
    "all scenes held out": (None, None, ["--holdout-fraction", "0.99"], "no scene left to train the head", 2),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_message_and_its_exit_status(case, checkpoint, small_pairs, tmp_path, capsys):
    ckpt_kind, views_kind, extra, message, status = BAD[case]
    ckpt, views = checkpoint, small_pairs / "views"
    files = sorted(views.glob("**/*.parquet"))
    if ckpt_kind == "truncated":
        ckpt = tmp_path / "run" / "checkpoint-last.pt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(checkpoint.read_bytes()[:5000])
    elif ckpt_kind == "foreign":
        ckpt = tmp_path / "run" / "other.pt"
        ckpt.parent.mkdir()
        torch.save({"model": {"conv.weight": torch.zeros(3)}, "epoch": 3}, ckpt)
    if views_kind == "empty":
        views = tmp_path / "views"
        views.mkdir()
    elif views_kind == "a-file":
        views = files[0]
    elif views_kind == "no-depth":
        views = _no_depth_column(files[0], tmp_path / "views")
    elif views_kind == "zero-depth":
        views = _zero_depth(files[0], tmp_path / "views")
        extra = ["--holdout", files[0].stem]  # the broken scene is read
    elif views_kind == "null-image":
        views = _zero_depth(files[0], tmp_path / "views", column="image")
        extra = ["--holdout", files[0].stem]
    elif views_kind == "one-scene":
        views = tmp_path / "views"
        (views / "synthetic").mkdir(parents=True)
        shutil.copy(files[0], views / "synthetic" / files[0].name)
    if extra[:2] == ["--holdout", "X"]:
        extra = ["--holdout", files[0].stem, "--train-scenes", f"{files[0].stem},{files[1].stem}"]
    out = tmp_path / "out"
    rc = main(["probe", "--checkpoint", str(ckpt), "--views", str(views), *FAST, *extra, "--out", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == status
    assert len(lines) == 1 and lines[0].startswith("pretrain: error:") and message in lines[0], lines
    assert not list(out.glob("probe-*")) if out.exists() else True


def test_too_few_held_out_views_is_a_warning(checkpoint, small_pairs, tmp_path, caplog):
    """One held-out view gives numbers, but they mean nothing: one warning line says so; enough views, no word."""
    views = str(small_pairs / "views")
    with caplog.at_level("WARNING"):
        assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST, "--views-per-scene", "1",
                     "--out", str(tmp_path / "one")]) == 0  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith("only 1 held-out view(s) (1 scene(s), --views-per-scene 1)"), warnings[0]
    assert probe_json(tmp_path / "one")["views"]["heldout"] == 1
    caplog.clear()
    assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST, "--views-per-scene", "24",
                 "--holdout-fraction", "0.5", "--out", str(tmp_path / "enough")]) == 0  # two scenes of 24 views
    assert probe_json(tmp_path / "enough")["views"]["heldout"] >= MIN_HELDOUT_VIEWS
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "held-out view" in r.getMessage()]
