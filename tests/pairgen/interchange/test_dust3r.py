"""``pairgen export --format dust3r`` (pairgen/interchange/dust3r/): 5-view stars as DUSt3R's Habitat folder.

The export is read back by :func:`read_dust3r_habitat`, a reader written here
from naver/dust3r's ``dust3r/datasets/habitat.py`` (class ``Habitat``): the
scene list ``Habitat_<size>_scenes_<split>.txt`` opened by size and split,
each line split into its folder and key (``os.path.split``), then for views
``_1`` to ``_5`` the JPEG (PIL), the depth EXR (``cv2.imread`` with
``IMREAD_GRAYSCALE | IMREAD_ANYDEPTH``: one channel; cv2 here is built
without OpenEXR, so the OpenEXR bindings read it), and from the camera JSON
``camera_intrinsics`` as float32 and a float32 pose from ``R_cam2world`` and
``t_cam2world``. Their intrinsics put pixel ``i``'s centre at ``i`` (their
preprocessing writes ``colmap_to_opencv_intrinsics`` of habitat's frustum:
``(W/2 - 0.5, H/2 - 0.5)`` for a centred one), as ours do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from manifests.samples import read_samples
from pairgen.interchange.dust3r import ALL_SCENES, VIEWS, sample_key, scenes_list_name, split_of
from tests.commands import assert_one_message, files_under, pairgen
from tests.conftest import SAMPLES_SMALL, copy_stage

STATE = ".pairgen-export.json"


def read_dust3r_habitat(root: Path, size: int, split: str) -> list[dict]:
    """Every sample of ``Habitat(size, split=split, ROOT=root)``, as its ``_load_one_view`` reads each of 5 views.

    A view: ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres,
    ``K`` (3, 3) float32, ``pose`` (4, 4) float32 cam2world, ``params``
    (the JSON as written).
    """
    import OpenEXR

    scenes = (root / f"Habitat_{size}_scenes_{split}.txt").read_text().splitlines()
    samples = []
    for scene in scenes:
        data_path, key = os.path.split(os.path.join(root, scene))
        views = []
        for i in range(1, VIEWS + 1):  # their file indices start at 1; view 0 (file 1) is connected to every other
            image = np.asarray(Image.open(os.path.join(data_path, f"{key}_{i}.jpeg")).convert("RGB"))
            with OpenEXR.File(os.path.join(data_path, f"{key}_{i}_depth.exr")) as f:
                channels = f.channels()
                assert list(channels) == ["Y"]  # one channel: what IMREAD_GRAYSCALE reads as it is
                depth = np.asarray(channels["Y"].pixels, np.float32)  # IMREAD_ANYDEPTH: half read as float
            params = json.loads(Path(data_path, f"{key}_{i}_camera_params.json").read_text())
            pose = np.eye(4, dtype=np.float32)
            pose[:3, :3] = params["R_cam2world"]
            pose[:3, 3] = params["t_cam2world"]
            views.append({"image": image, "depth": depth, "K": np.float32(params["camera_intrinsics"]), "pose": pose,
                          "params": params})  # fmt: skip
        samples.append({"scene": scene, "label": os.path.relpath(data_path, root), "key": key, "views": views})
    return samples


def export(out: Path, dest: Path, *more: str):
    return pairgen("export", "--format", "dust3r", dest, "--out", out, *more)


def stamps(dest: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in files_under(dest)}


def sample_files(dest: Path, sample_id: str) -> list[Path]:
    dataset, scene_id, key = sample_id.split("/")
    return [dest / dataset / scene_id / f"{key}_{i}{suffix}" for i in range(1, VIEWS + 1)
            for suffix in (".jpeg", "_depth.exr", "_camera_params.json")]  # fmt: skip


@pytest.fixture
def exported(small_samples, tmp_path) -> Path:
    dest = tmp_path / "habitat_processed"
    ran = export(small_samples, dest)
    assert ran.code == 0, ran.err
    return dest


def test_export_loads_as_dust3r_habitat_with_the_stored_cameras_and_depths(small_samples, exported):
    samples = {s.sample_id: s for s in read_samples(small_samples / "star5")}
    n = len(samples)
    assert n > 0 and (exported / scenes_list_name(n, "train")).is_file()
    assert not (exported / scenes_list_name(n, "val")).exists()  # --val-share 0: every sample in train
    read = read_dust3r_habitat(exported, n, "train")
    assert sorted(s["scene"] for s in read) == sorted(samples)  # every sample, once; the lines are the sample ids
    assert (exported / ALL_SCENES).read_text() == "\n".join(sorted(samples))  # find_scenes.py's cache, no final newline
    for got in read:
        s = samples[got["scene"]]
        assert got["key"] == sample_key(s.sample_id) and got["label"] == f"{s.dataset}/{s.scene_id}"
        for i, view in enumerate(got["views"]):  # file i + 1 is the star's view i: view 1 the reference
            height, width = s.depth[i].shape
            np.testing.assert_allclose(view["pose"][:3, :3], s.cam2world[i][:3, :3], rtol=0, atol=1e-5)
            np.testing.assert_allclose(view["pose"][:3, 3], s.cam2world[i][:3, 3], rtol=0, atol=1e-5)
            np.testing.assert_array_equal(view["K"], s.K[i])  # DUSt3R's principal point convention is ours
            assert view["K"][0, 2] == width / 2 - 0.5 and view["K"][1, 2] == height / 2 - 0.5  # as they write it
            np.testing.assert_array_equal(view["depth"], s.depth[i].astype(np.float16).astype(np.float32))
            np.testing.assert_array_equal(view["image"], s.rgb[i])
            assert list(view["params"]) == ["camera_intrinsics", "size", "R_cam2world", "t_cam2world"]
            assert view["params"]["size"] == [width, height]
        np.testing.assert_array_less(0, s.covis[0, 1:])  # view 1 overlaps every other: a star's reference


def test_rerun_leaves_a_complete_export_alone(small_samples, exported):
    before = stamps(exported)
    ran = export(small_samples, exported)
    assert ran.code == 0 and "already complete" in ran.err, ran.err
    assert stamps(exported) == before


def test_an_interrupted_export_rewrites_exactly_the_shards_not_recorded(small_samples, exported):
    state = json.loads((exported / STATE).read_text())
    shards = sorted((small_samples / "star5").glob("shard-*.parquet"))
    assert state["done"] == [p.name for p in shards] and len(shards) >= 2
    first, second = (pq.read_table(p, columns=["sample_id"]).column("sample_id").to_pylist() for p in shards[:2])
    contents = {p: p.read_bytes() for p in files_under(exported) if p.name != STATE}
    # killed after the first shard was recorded, in the middle of the second: one of its files missing, no lists
    (exported / STATE).write_text(json.dumps({**state, "done": state["done"][:1], "complete": False}))
    sample_files(exported, second[0])[4].unlink()
    for name in [ALL_SCENES, *state["lists"]]:
        (exported / name).unlink()
    before = stamps(exported)
    ran = export(small_samples, exported)
    assert ran.code == 0 and "1 done before" in ran.err, ran.err
    after = stamps(exported)
    assert {p: p.read_bytes() for p in files_under(exported) if p.name != STATE} == contents
    assert all(after[p] == before[p] for s in first for p in sample_files(exported, s))  # the recorded shard: untouched
    assert all(after[p] != before.get(p) for s in second for p in sample_files(exported, s))  # the other: written again
    assert json.loads((exported / STATE).read_text()) == state


def test_val_share_splits_by_scene_and_rewrites_only_the_lists(small_samples, exported):
    samples = sorted(s.sample_id for s in read_samples(small_samples / "star5"))
    views_before = {p: t for p, t in stamps(exported).items() if p.parent != exported}
    ran = export(small_samples, exported, "--val-share", "0.5")
    assert ran.code == 0, ran.err
    val = [s for s in samples if split_of(*s.split("/")[:2], 0.5) == "val"]
    train = [s for s in samples if s not in val]
    assert val and train  # these three scenes' hashes fall on both sides of 0.5
    assert sorted(p.name for p in exported.glob("Habitat_*.txt")) == sorted(
        [ALL_SCENES, scenes_list_name(len(train), "train"), scenes_list_name(len(val), "val")])
    assert sorted(s["scene"] for s in read_dust3r_habitat(exported, len(val), "val")) == val
    assert sorted(s["scene"] for s in read_dust3r_habitat(exported, len(train), "train")) == train
    assert {s.split("/")[1] for s in val}.isdisjoint({s.split("/")[1] for s in train})  # by scene, never by sample
    assert {p: t for p, t in stamps(exported).items() if p.parent != exported} == views_before
    ran = export(small_samples, exported, "--val-share", "1")  # every scene in val: the train list goes
    assert ran.code == 0, ran.err
    assert sorted(p.name for p in exported.glob("Habitat_*.txt")) == sorted(
        [ALL_SCENES, scenes_list_name(len(samples), "val")])


def test_embedded_samples_export_the_same_files(small_samples, exported, tmp_path):
    out = tmp_path / "embedded"
    copy_stage(small_samples, out, "views")
    assert pairgen(*SAMPLES_SMALL, "--embed", "--out", out).code == 0
    assert pq.read_schema(next((out / "star5").glob("shard-*.parquet"))).names[-4:] == ["images", "depths", "K",
                                                                                       "cam2world"]  # fmt: skip
    dest = tmp_path / "from_embedded"
    ran = export(out, dest)
    assert ran.code == 0, ran.err

    def tree(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files_under(folder) if p.name != STATE}

    assert tree(dest) == tree(exported)
    # the same DEST for other samples (these, embedded: another config) is refused; nothing changes
    before = stamps(exported)
    assert_one_message(export(out, exported), str(exported), "holds an export of other samples")
    assert stamps(exported) == before


def test_refusals(small_samples, small_pairs, exported, tmp_path):
    """Bad inputs: one message naming the folder, exit status 1, nothing written; bad options: exit status 2."""
    croco = tmp_path / "croco"
    assert pairgen("export", "--format", "croco", croco, "--out", small_pairs).code == 0
    before = stamps(croco)
    assert_one_message(export(small_samples, croco), str(croco), "holds an export of other samples")
    assert stamps(croco) == before

    assert_one_message(export(small_samples, small_samples / "habitat"), "inside the working folder")
    assert not (small_samples / "habitat").exists()
    assert_one_message(export(small_samples, tmp_path / "a", "--samples", "chain8"), "chain8.manifest.json: not found",
                       "--views 5 --shape star")  # fmt: skip
    assert_one_message(export(small_pairs, tmp_path / "b", "--samples", "pairs"), "is not a samples manifest")

    four = tmp_path / "four"
    copy_stage(small_samples, four, "views")
    argv = [a if a != "5" else "4" for a in SAMPLES_SMALL]
    assert pairgen(*argv, "--out", four).code == 0
    assert_one_message(export(four, tmp_path / "c", "--samples", "star4"), str(four / "star4"), "stars of 4 views",
                       "reads stars of 5 views")  # fmt: skip
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))

    assert_one_message(export(small_samples, tmp_path / "d", "--val-share", "2"), "argument --val-share",
                       "at most 1", code=2)  # fmt: skip
    assert_one_message(pairgen("export", "--format", "croco", tmp_path / "e", "--out", small_pairs, "--samples",
                               "star5x"), "argument --samples", "only with --format dust3r", code=2)  # fmt: skip
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
