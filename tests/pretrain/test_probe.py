"""`pretrain probe`: metrics by hand, the scene split, determinism, the baseline, bad inputs (a file: exit 1; options
the views cannot satisfy: exit 2), too few held-out views (a warning); the correspondence task: the ground-truth
matches by hand, recall against features that know the geometry (1) and shuffled ones (chance), pairgen's
covisibility rule restated, both tasks end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from covisibility.pixel_rule import DEPTH_ABS_TOL, DEPTH_REL_TOL
from pretrain.cli import main
from pretrain.correspondence import (
    chance_recall,
    covisibility_of,
    fit_transform,
    nearest_patches,
    pair_recall,
    patch_errors,
    patch_matches,
    seen,
    to_model_frame,
    unproject,
)
from pretrain.probe import (
    MIN_HELDOUT_VIEWS,
    ProbeConfig,
    ProbeError,
    ProbeOptionError,
    band_of,
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


# ---- correspondence: ground truth and recall on a plane at known poses

PLANE_Z = 2.0  # metres: a fronto-parallel plane in front of both cameras


def plane_views(size: int, shift: tuple[float, float], focal: float | None = None):
    """Two ``size`` x ``size`` views of the plane ``z = PLANE_Z``: camera 1 at the origin, camera 2 moved by
    ``shift`` (x, y metres), both looking along +z. Returns (depth1, K, pose1, depth2, pose2)."""
    f = focal or size
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    pose1, pose2 = np.eye(4), np.eye(4)
    pose2[:2, 3] = shift
    depth = np.full((size, size), PLANE_Z, np.float32)
    return depth, K, pose1, depth.copy(), pose2


def test_patch_matches_by_hand():
    """64 px views, 16 px patches (4 x 4), focal 64: camera 2 half a metre to the right sees the plane 16 px (one
    patch) to the left, so patch (x, y) of view 1 is at (x - 1, y) in view 2; column 0 leaves view 2. An occluder
    in view 2 and a hole in view 1's depth unmatch one patch each."""
    depth1, K, pose1, depth2, pose2 = plane_views(64, (0.5, 0.0))
    depth2[0:16, 0:16] = 1.0  # in front of the plane where patch (1, 0)'s centre lands (pixel 8, 8): hidden
    depth1[24, 40] = 0.0  # the nearest pixel of patch (2, 1)'s centre (39.5, 23.5): no depth
    target = patch_matches(depth1, K, pose1, depth2, K, pose2, 64, 16).reshape(4, 4, 2)  # (y, x, (x, y))
    for y in range(4):
        for x in range(4):
            if x == 0 or (x, y) in ((1, 0), (2, 1)):
                assert np.isnan(target[y, x]).all(), (x, y)
            else:
                assert target[y, x] == pytest.approx([x - 1, y], abs=1e-9), (x, y)
    # the depth test is pairgen's: 2 cm + 5 % of the point's depth
    depth2[0:16, 0:16] = PLANE_Z - (DEPTH_ABS_TOL + DEPTH_REL_TOL * PLANE_Z) + 1e-4  # just within the tolerance
    assert patch_matches(depth1, K, pose1, depth2, K, pose2, 64, 16).reshape(4, 4, 2)[0, 1] == pytest.approx([0, 0])


def test_model_frame_round_trip_and_crop():
    """A 96 x 64 view at size 32: scaled by 1/2 to 48 x 32, 8 px cropped each side; pixel centres map exactly."""
    assert fit_transform(64, 96, 32) == (48, 32, 8, 0)
    u, v = to_model_frame(np.array([0.5, 16.5, 95.0]), np.array([0.5, 1.5, 63.0]), 64, 96, 32)
    assert u == pytest.approx([0.0 - 8, 8.0 - 8, 47.25 - 8]) and v == pytest.approx([0.0, 0.5, 31.25])
    back = to_model_frame(u, v, 64, 96, 32, inverse=True)
    assert back[0] == pytest.approx([0.5, 16.5, 95.0]) and back[1] == pytest.approx([0.5, 1.5, 63.0])


def position_features(depth: np.ndarray, K: np.ndarray, pose: np.ndarray, patch: int) -> torch.Tensor:
    """Features that know the geometry: a sinusoidal embedding of the world (x, y) of each patch centre's surface
    point, all of one norm, their dot product falling with the distance on the plane at these frequencies."""
    g = depth.shape[0] // patch
    c = np.arange(g) * patch + (patch - 1) / 2
    v, u = np.meshgrid(c, c, indexing="ij")
    world = unproject(u.ravel(), v.ravel(), np.full(g * g, PLANE_Z), K, pose)  # (N, 3)
    freqs = np.array([0.3, 0.6, 1.2])  # rad/m: a half period longer than any distance on the plane seen here
    angles = world[:, :2, None] * freqs  # (N, 2, F)
    return torch.from_numpy(np.concatenate([np.cos(angles), np.sin(angles)], axis=-1).reshape(g * g, -1)).float()


@pytest.mark.parametrize("shift", [(0.3, 0.0), (0.0, -0.45), (0.37, 0.21), (-0.8, 0.5)])
def test_features_that_encode_position_have_recall_one(shift):
    depth1, K, pose1, depth2, pose2 = plane_views(128, shift)
    target = patch_matches(depth1, K, pose1, depth2, K, pose2, 128, 16)  # (64, 2)
    q = np.flatnonzero(~np.isnan(target[:, 0]))
    assert 10 <= len(q) < 64
    f1, f2 = position_features(depth1, K, pose1, 16), position_features(depth2, K, pose2, 16)
    chosen = nearest_patches(f1[q], f2, torch.Generator().manual_seed(0)).numpy()
    errors = patch_errors(chosen, target[q], 8)
    assert errors.max() <= np.sqrt(0.5) + 1e-9  # the patch holding the true position, or one as near
    assert pair_recall(errors).tolist() == [1.0, 1.0, 1.0]


def test_shuffled_features_score_chance():
    """View 2's features in a random order: each pick is then uniform over view 2's patches, and the recall over
    many shuffles is what chance_recall computes from the true positions alone."""
    depth1, K, pose1, depth2, pose2 = plane_views(128, (0.37, 0.21))
    target = patch_matches(depth1, K, pose1, depth2, K, pose2, 128, 16)
    q = np.flatnonzero(~np.isnan(target[:, 0]))
    f1, f2 = position_features(depth1, K, pose1, 16), position_features(depth2, K, pose2, 16)
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    recalls = [pair_recall(patch_errors(nearest_patches(f1[q], f2[rng.permutation(64)], g).numpy(), target[q], 8))
               for _ in range(400)]  # fmt: skip
    chance = chance_recall(target[q], 8)
    assert np.mean(recalls, axis=0) == pytest.approx(chance, abs=0.02)
    assert chance[0] < 0.2 and chance[0] < chance[1] < chance[2] < 1  # far from the geometry's 1


def test_ties_are_broken_at_random():
    """A feature similar to nothing (all zeros) picks a patch uniformly, not always the first."""
    picks = nearest_patches(torch.zeros(2000, 4), torch.randn(16, 4), torch.Generator().manual_seed(0)).numpy()
    counts = np.bincount(picks, minlength=16)
    assert counts.min() > 80 and counts.max() < 170  # 125 expected each


def test_covisibility_at_every_pixel_is_pairgens(small_pairs):
    """At stride 1 the probe's pair covisibility is pairgen's reference measure, exactly; on its default grid
    (about 32 x 32 points) within a few points."""
    import pyarrow.parquet as pq

    from covisibility.reference import covisibility
    from manifests.codecs import decode_depth

    table = pq.read_table(sorted((small_pairs / "views").glob("**/*.parquet"))[0])
    depths = [decode_depth(d["bytes"]) for d in table.column("depth").to_pylist()[:8]]
    Ks = np.array(table.column("K").to_pylist()[:8], np.float64).reshape(-1, 3, 3)
    poses = np.array(table.column("cam2world").to_pylist()[:8], np.float64).reshape(-1, 4, 4)
    first = np.array([0, 3])
    exact = covisibility_of(depths.__getitem__, Ks, poses, first, stride=1)
    grid = covisibility_of(depths.__getitem__, Ks, poses, first)
    for i, a in enumerate(first):
        for b in range(8):
            if b != a:
                ref = min(covisibility(depths[a], Ks[a], poses[a], depths[b], Ks[b], poses[b]))
                assert exact[i, b] == pytest.approx(ref, abs=1e-9)
                assert grid[i, b] == pytest.approx(ref, abs=0.06)
    assert (exact[np.arange(2), first] == -1).all() and (exact > 0.1).sum() >= 4  # pairs that overlap exist


def test_bands_are_half_open_but_the_last():
    bands = ProbeConfig().bands
    assert bands == [(0.1, 0.3), (0.3, 0.5), (0.5, 0.8), (0.8, 1.0)]
    assert band_of(np.array([0.05, 0.1, 0.2999, 0.3, 0.79, 0.8, 1.0, -1.0]), bands).tolist() == [-1, 0, 0, 1, 2, 3,
                                                                                                  3, -1]  # fmt: skip


@pytest.mark.parametrize("values", [{"task": "depth,depth"}, {"task": "normals"}, {"task": ""},
                                    {"corr_bands": "0.5"}, {"corr_bands": "0.5,0.3"}, {"corr_bands": "0.1,x"},
                                    {"corr_bands": "0.1,1.2"}])  # fmt: skip
def test_bad_task_options_are_refused(values):
    from manifests.options import ConfigError

    with pytest.raises(ConfigError):
        ProbeConfig(**values)
    assert ProbeConfig(task="correspondence,depth").tasks == ("depth", "correspondence")


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
    assert first["format"] == "pretrain-probe/2" and first["step"] == 4 and first["tasks"] == ["depth"]
    assert "correspondence" not in first  # depth only, unless asked
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


CORR = ["--task", "depth,correspondence", "--corr-pairs", "6"]


def test_both_tasks_end_to_end_deterministic(checkpoint, small_pairs, tmp_path, capsys):
    """`--task depth,correspondence`: the depth line, then a correspondence heading and a line a band and one for
    all pairs; the same numbers twice; every encoder and baseline scored on the same pairs."""
    views = str(small_pairs / "views")
    records = []
    for out in (tmp_path / "a", tmp_path / "b"):
        assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, *FAST, *CORR, "--out", str(out)]) == 0
        records.append(probe_json(out))
    err = capsys.readouterr().err.splitlines()
    for record in records:
        record.pop("seconds")
    first = records[0]
    assert records[0] == records[1]
    assert first["tasks"] == ["depth", "correspondence"] and "png" in first
    c = first["correspondence"]
    assert c["radii"] == [1, 2, 4] and c["grid"] == 4  # 64 px, 16 px patches
    labels = ["[0.1, 0.3)", "[0.3, 0.5)", "[0.5, 0.8)", "[0.8, 1]", "all"]
    assert list(c["bands"]) == labels and c["bands"]["all"]["pairs"] == len(c["pairs"]) > 0
    assert all(c["bands"][b]["pairs"] <= 6 for b in labels[:-1])
    assert sum(c["bands"][b]["pairs"] for b in labels[:-1]) == c["bands"]["all"]["pairs"]
    assert all(0.1 <= pair["covisibility"] <= 1 and pair["id"].startswith(first["heldout_scenes"][0] + "/")
               for pair in c["pairs"])  # fmt: skip
    for which in ("pretrained", "random_init", "pixels", "same_place"):
        recall = first[which]["correspondence"]["all"]
        assert set(recall) == {"1", "2", "4"} and 0 <= recall["1"] <= recall["2"] <= recall["4"] <= 1
    assert "depth" in first["pretrained"] and "depth" not in first["pixels"]
    heading = [i for i, line in enumerate(err) if line.startswith("correspondence of step 4")]
    assert len(heading) == 2 and sum(line.startswith("probe of step 4") for line in err) == 2
    assert [line.split(":")[0].strip() for line in err[heading[0] + 1 : heading[0] + 6]] == labels


def test_correspondence_alone_reads_only_held_out_scenes(checkpoint, small_pairs, tmp_path, capsys):
    views = str(small_pairs / "views")
    assert main(["probe", "--checkpoint", str(checkpoint), "--views", views, "--views-per-scene", "8",
                 "--task", "correspondence", "--corr-pairs", "4", "--out", str(tmp_path)]) == 0  # fmt: skip
    record = probe_json(tmp_path)
    err = capsys.readouterr().err
    assert record["tasks"] == ["correspondence"] and record["views"]["train"] == 0 and "png" not in record
    assert "depth" not in record["pretrained"] and "cvc_loss" not in record["pretrained"]
    assert "probe of step" not in err and "correspondence of step 4" in err and "depth PNG" not in err
    assert not list(tmp_path.glob("*.png"))


def _no_depth_column(src: Path, dst: Path) -> Path:
    table = pq.read_table(src)
    out = dst / "synthetic" / src.name
    out.parent.mkdir(parents=True)
    pq.write_table(table.drop_columns(["depth"]).replace_schema_metadata(table.schema.metadata), out)
    return dst


def _cameras_changed(src: Path, dst: Path, how: str) -> Path:
    """``src``'s scene beside the others, its poses null (``how="null"``) or 100 m apart (``"apart"``: no view
    sees another)."""
    import pyarrow as pa

    table = pq.read_table(src)
    field = table.schema.field("cam2world")
    if how == "null":
        values = pa.nulls(table.num_rows, field.type)
    else:
        poses = np.array(table.column("cam2world").to_pylist(), np.float32).reshape(-1, 4, 4)
        poses[:, 0, 3] += 100.0 * np.arange(len(poses))
        values = pa.array(list(poses.reshape(len(poses), 16)), field.type)
    table = table.set_column(table.schema.get_field_index("cam2world"), field, values)
    out = dst / "synthetic" / src.name
    out.parent.mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), out)
    for other in sorted(src.parent.glob("*.parquet")):
        if other != src:
            shutil.copy(other, out.parent / other.name)
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
    "no covisible held-out pair": (None, "apart", ["--task", "correspondence"], "no held-out pair with a "
                                   "covisibility in [0.1, 1] (--corr-bands)", 2),
    "views without poses": (None, "no-pose", ["--task", "correspondence"], "no pose (cam2world is null)", 1),
    "no poses, depth task": (None, "no-pose", [], "no pose (cam2world is null)", 1),
    "checkpoint of another size": ("resized", None, ["--task", "depth,correspondence"], "not a checkpoint of "
                                   "`pretrain run`", 1),
    "unknown task": (None, None, ["--task", "depth,normals"], "argument --task: must be a comma list", 2),
    "bad bands": (None, None, ["--task", "correspondence", "--corr-bands", "0.5,0.3"],
                  "argument --corr-bands: must be two or more increasing", 2),
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
    elif ckpt_kind == "resized":  # a checkpoint whose weights are not of the size its model_args say
        ckpt = tmp_path / "run" / "checkpoint-last.pt"
        ckpt.parent.mkdir()
        state = torch.load(checkpoint, weights_only=True)
        state["model_args"]["enc_embed_dim"] = 96
        torch.save(state, ckpt)
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
    elif views_kind in ("apart", "no-pose"):
        views = _cameras_changed(files[0], tmp_path / "views", "null" if views_kind == "no-pose" else "apart")
        extra = [*extra, "--holdout", files[0].stem]
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
    prefix = ("pretrain: error:", "pretrain probe: error: argument")  # a bad input; a bad option value (argparse's)
    assert len(lines) == 1 and lines[0].startswith(prefix) and message in lines[0], lines
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
