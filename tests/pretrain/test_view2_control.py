"""`pretrain run --view2 other-scene`, the band experiment's control: each pair's view 2 is another scene's (a
fixed rule on the batch, so a resumed run draws the same), stored in the checkpoint and not changeable on resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from pretrain.cli import main
from pretrain.data import other_scene_rows, other_scene_view2

BATCHES = {
    "balanced": list("aabbccdd"),
    "interleaved": list("abcabcab"),
    "half one scene": list("aaaabbcd"),
    "odd, mixed": list("aabbc"),
    "two scenes": ["x/s1", "x/s2"],
    "one scene past half": list("aaaaaabc"),
    "nearly all one scene": list("aaaaaaab"),
}


@pytest.mark.parametrize("case", list(BATCHES))
def test_view2_is_always_of_another_scene(case):
    scenes = BATCHES[case]
    src = other_scene_rows(scenes)
    assert all(scenes[j] != scenes[i] for i, j in enumerate(src.tolist())), src
    assert (other_scene_rows(scenes) == src).all()  # a fixed rule of the batch
    if max(Counter(scenes).values()) <= len(scenes) // 2:  # every view 2 used once: the same images
        assert sorted(src.tolist()) == list(range(len(scenes)))


def test_a_batch_of_one_scene_is_refused():
    with pytest.raises(ValueError, match="one scene .*--view2 other-scene needs batches of two scenes"):
        other_scene_rows(["d/a"] * 4)


def test_the_batch_keeps_view_1_and_moves_view_2():
    batch = {"img1": torch.arange(4).view(4, 1), "img2": torch.arange(10, 14).view(4, 1),
             "pair_id": ["d/a/0-1", "d/a/2-3", "d/b/0-1", "d/b/4-5"]}  # fmt: skip
    out = other_scene_view2(batch)
    assert out["img1"] is batch["img1"]
    assert out["img2"].ravel().tolist() == [12, 13, 10, 11] and out["view2_of"] == ["d/b/0-1", "d/b/4-5", "d/a/0-1",
                                                                                   "d/a/2-3"]  # fmt: skip


@pytest.mark.parametrize("pair_id", ["shard-00000.parquet#3", None])
def test_pairs_without_a_scene_in_their_id_are_refused(pair_id):
    """A shard without pair_id names its rows <file>#<row>: no scene to tell apart, refused rather than guessed."""
    batch = {"img1": torch.zeros(4, 1), "img2": torch.zeros(4, 1),
             "pair_id": ["d/a/0-1", "d/b/2-3", "d/b/4-5", pair_id]}  # fmt: skip
    with pytest.raises(ValueError, match=rf"needs each pair's scene, from its pair_id .*pair {pair_id!r} has none"):
        other_scene_view2(batch)


RUN = ["--model", "tiny", "--img-size", "64", "--batch-size", "8", "--workers", "0", "--image-every", "0",
       "--no-verify", "--log-every", "1"]  # fmt: skip


def test_control_run_is_stored_and_not_changeable_on_resume(small_pairs, tmp_path, capsys):
    shards = str(small_pairs / "pairs")
    runs = ["--runs", str(tmp_path)]
    assert main(["run", "--shards", shards, *RUN, *runs, "--name", "c", "--steps", "2", "--view2", "other-scene"]) == 0
    ckpt = tmp_path / "c" / "checkpoint-last.pt"
    assert torch.load(ckpt, weights_only=True)["config"]["view2"] == "other-scene"
    capsys.readouterr()
    assert main(["run", "--shards", shards, *RUN, "--resume", str(ckpt), "--steps", "2"]) == 1  # --view2 pair
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(view2: 'other-scene' -> 'pair')" in err[0], err
    assert main(["run", "--shards", shards, *RUN, "--resume", str(ckpt), "--steps", "2", "--view2", "other-scene"]) == 0
    assert "already trained to step 2" in capsys.readouterr().err


def test_control_changes_what_the_model_sees_not_view_1(small_pairs, tmp_path):
    """Same seed, same steps: the first step's loss differs (view 2 differs), view 1 and the masks do not."""
    import json

    shards = str(small_pairs / "pairs")
    losses = {}
    for view2 in ("pair", "other-scene"):
        assert main(["run", "--shards", shards, *RUN, "--runs", str(tmp_path), "--name", view2, "--steps", "1",
                     "--view2", view2]) == 0  # fmt: skip
        losses[view2] = json.loads((tmp_path / view2 / "log.jsonl").read_text().splitlines()[0])["loss"]
    assert np.isfinite(list(losses.values())).all() and losses["pair"] != losses["other-scene"]


def test_checkpoints_from_before_the_option_resume_as_pair(small_pairs, tmp_path):
    """A checkpoint written before --view2 existed trained on the pairs' own view 2: it resumes with the default."""
    shards = str(small_pairs / "pairs")
    assert main(["run", "--shards", shards, *RUN, "--runs", str(tmp_path), "--name", "old", "--steps", "1"]) == 0
    ckpt = tmp_path / "old" / "checkpoint-last.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["view2"]
    torch.save(state, ckpt)
    assert main(["run", "--shards", shards, *RUN, "--resume", str(ckpt), "--steps", "1"]) == 0
