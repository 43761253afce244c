"""`pretrain run` / `export` on the small synthetic pairs: resume, logs, export, learning check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain.cli import main
from pretrain.engine import lr_at, param_groups, step_mask
from pretrain.train import TrainConfig, train
from tests.commands import assert_one_message, pretrain
from tests.conftest import copy_stage

TINY = ["--model", "tiny", "--img-size", "48", "--batch-size", "8", "--workers", "0", "--warmup-steps", "2",
        "--log-every", "1"]  # fmt: skip


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def test_resume_reproduces_the_next_losses(small_pairs, tmp_path):
    shards = str(small_pairs / "pairs")
    assert main(["run", "--shards", shards, *TINY, "--steps", "6", "--ckpt-every", "3", "--keep-checkpoints",
                 "--image-every", "3", "--runs", str(tmp_path), "--name", "straight"]) == 0  # fmt: skip
    straight = tmp_path / "straight"
    assert (straight / "checkpoint-0000003.pt").is_file() and (straight / "recon-0000003.png").is_file()
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "checkpoint-0000003.pt", resumed / "checkpoint-0000003.pt")
    assert main(["run", "--shards", shards, *TINY, "--steps", "6", "--ckpt-every", "3",
                 "--resume", str(resumed / "checkpoint-0000003.pt")]) == 0  # fmt: skip
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == [4, 5, 6]
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6)
    record = json.loads((straight / "log.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "grad_norm", "pairs_per_s"} <= set(record)
    assert list((straight / "tb").iterdir())  # TensorBoard events


def test_export_writes_reference_keys(small_pairs, tmp_path):
    from pretrain.model import build_model

    assert main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "1", "--runs", str(tmp_path),
                 "--name", "x"]) == 0  # fmt: skip
    assert main(["export", str(tmp_path / "x" / "checkpoint-last.pt"), "--out", str(tmp_path / "exp")]) == 0
    full = torch.load(tmp_path / "exp" / "croco.pth", weights_only=True)
    model = build_model("tiny", **{k: v for k, v in full["croco_kwargs"].items()})
    model.load_state_dict(full["model"], strict=True)
    enc = torch.load(tmp_path / "exp" / "croco_encoder.pth", weights_only=True)["model"]
    assert enc and all(k.split(".")[0] in ("patch_embed", "enc_blocks", "enc_norm", "enc_pos_embed") for k in enc)
    assert "enc_blocks.0.attn.qkv.weight" in enc and "decoder_embed.weight" not in enc


def test_lr_schedule_and_weight_decay_groups():
    assert lr_at(0, 100, 1.0, 10, 0.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, 0.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10, 0.0) == pytest.approx(0.5)  # half way down the half cosine
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.05)
    assert [p.shape for p in decay["params"]] == [(4, 4)] and len(no_decay["params"]) == 3
    assert no_decay["weight_decay"] == 0.0


def test_step_masks_are_fixed_counts_and_reproducible():
    m = step_mask(5, 196, 0.9, (0, 0, 7, 0))
    assert m.dtype == torch.bool and m.shape == (5, 196) and (m.sum(1) == 176).all()
    assert torch.equal(m, step_mask(5, 196, 0.9, (0, 0, 7, 0)))
    assert not torch.equal(m, step_mask(5, 196, 0.9, (0, 0, 8, 0)))
    assert not torch.equal(m[0], m[1])  # drawn independently per image


def test_non_finite_loss_stops_with_a_message(small_pairs, tmp_path, capsys):
    code = main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "3", "--base-lr", "1e30",
                 "--warmup-steps", "1", "--runs", str(tmp_path), "--name", "nan"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "non-finite loss" in err and "Traceback" not in err


def test_corrupt_shard_is_one_message(tmp_path, capsys):
    bad = tmp_path / "pairs"
    bad.mkdir()
    (bad / "shard-00000.parquet").write_bytes(b"not parquet at all")
    assert main(["run", "--shards", str(bad), *TINY, "--steps", "1", "--runs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "shard-00000.parquet" in err and "Traceback" not in err


def test_learning_check_view2_matters(small_pairs, tmp_path):
    """After a short run, the masked loss on held-out pairs is clearly lower with their true view 2."""
    from pretrain.data import PairStream
    from pretrain.model import masked_patch_loss

    shards = sorted((small_pairs / "pairs").glob("shard-*.parquet"))
    train_shards, held_out = shards[:-1], shards[-1:]
    config = TrainConfig(shards=str(train_shards[0].parent), run_dir=str(tmp_path / "learn"), model="tiny",
                         img_size=48, batch_size=16, base_lr=3e-3, warmup_steps=10, steps=120, num_workers=0,
                         log_every=50, ckpt_every=0, image_every=0, jitter=False)  # fmt: skip
    config.shards = [str(s) for s in train_shards]
    train(config)
    from pretrain.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(tmp_path / "learn" / "checkpoint-last.pt"))
    assert model.img_size == 48 and len(model.enc_blocks) == 4  # the tiny preset at 48 px
    model.eval()
    stream = PairStream(held_out, batch_size=8, crop=48, seed=1, jitter=False, shuffle=False)
    true_loss, swapped_loss = [], []
    with torch.no_grad():
        for batch in stream:
            ids = [p.split("/")[1] for p in batch["pair_id"]]
            mask = step_mask(len(ids), model.num_patches, model.mask_ratio, (9, 0, 0, len(true_loss)))
            out, _, target = model(batch["img1"], batch["img2"], mask=mask)
            true_loss.append(masked_patch_loss(out, target, mask).item())
            # view 2 from another scene: roll the batch until every pair's context comes from elsewhere
            shift = next((s for s in range(1, len(ids)) if all(ids[i] != ids[(i - s) % len(ids)] for i in range(len(ids)))), None)
            if shift is None:
                continue
            out, _, target = model(batch["img1"], torch.roll(batch["img2"], shift, 0), mask=mask)
            swapped_loss.append(masked_patch_loss(out, target, mask).item())
    true_mean, swapped_mean = sum(true_loss) / len(true_loss), sum(swapped_loss) / len(swapped_loss)
    print(f"held-out masked loss: true view 2 {true_mean:.4f}, view 2 of another scene {swapped_mean:.4f}")
    assert swapped_loss and true_mean < 0.9 * swapped_mean


def test_torchrun_ddp_two_processes(small_pairs, tmp_path):
    """DDP over gloo on CPU: two ranks train together and rank 0 writes the run."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pretrain.cli",
           "run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "3", "--runs", str(tmp_path),
           "--name", "ddp"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(losses(tmp_path / "ddp")) == [1, 2, 3]
    assert (tmp_path / "ddp" / "checkpoint-last.pt").is_file()
    assert done.stderr.count("trained to step 3") == 1  # rank 0 reports


def test_same_command_again_resumes_and_drift_refuses(small_pairs, tmp_path, capsys):
    args = ["run", "--shards", str(small_pairs / "pairs"), *TINY, "--runs", str(tmp_path), "--name", "again"]
    assert main([*args, "--steps", "2"]) == 0
    capsys.readouterr()
    assert main([*args, "--steps", "2"]) == 0  # finished: resumes at step 2 and stops there
    assert "resuming from" in capsys.readouterr().err
    assert sorted(losses(tmp_path / "again")) == [1, 2]
    assert main([*args, "--steps", "2", "--base-lr", "1e-3"]) == 1
    err = capsys.readouterr().err
    assert "another config" in err and "base_lr: 0.00015 -> 0.001" in err
    assert main([*args, "--steps", "2", "--base-lr", "1e-3", "--overwrite"]) == 0


def test_a_rerun_clears_the_temporaries_of_killed_checkpoint_copies(small_pairs, tmp_path):
    """A run killed while copying a --keep-checkpoints checkpoint leaves its temporary; the next run in the folder
    removes it, and leaves a live process's alone."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = os.uname().nodename.replace("-", "_")
        run = tmp_path / "kept"
        run.mkdir()
        killed = run / f".tmp-{host}-{dead.pid}-checkpoint-0000003.pt.q1w2"
        running = run / f".tmp-{host}-{live.pid}-croco.pth.e3r4"  # an export writing into the run folder meanwhile
        for path in (killed, running):
            path.write_bytes(b"half a checkpoint")
        assert main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "1", "--keep-checkpoints",
                     "--image-every", "0", "--runs", str(tmp_path), "--name", "kept"]) == 0  # fmt: skip
        assert not killed.exists() and running.exists()
    finally:
        live.kill()
        live.wait()


def test_a_kept_checkpoint_a_run_could_not_copy_is_made_by_the_rerun(small_pairs, tmp_path):
    """A full disk (or a kill) between checkpoint-last.pt and its --keep-checkpoints copy: the same command again
    makes the copy; the last checkpoint is written once a step, not again at the end."""
    args = ["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "2", "--ckpt-every", "1",
            "--keep-checkpoints", "--image-every", "0", "--runs", str(tmp_path), "--name", "k"]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "k"
    last = (run / "checkpoint-last.pt").stat().st_mtime_ns
    assert sorted(p.name for p in run.glob("checkpoint-0*.pt")) == ["checkpoint-0000001.pt", "checkpoint-0000002.pt"]
    (run / "checkpoint-0000002.pt").unlink()  # the copy the disk had no room for
    assert main(args) == 0
    assert (run / "checkpoint-0000002.pt").read_bytes() == (run / "checkpoint-last.pt").read_bytes()
    assert (run / "checkpoint-last.pt").stat().st_mtime_ns == last  # finished: not written again


@pytest.mark.parametrize("why", ["failed", "interrupted"])
def test_an_incomplete_pairs_manifest_is_a_warning(why, small_pairs, tmp_path, caplog):
    """Scenes failed in the filter, or the filter was interrupted: the listed shards train, with one warning."""
    copy_stage(small_pairs, tmp_path, "pairs")
    path = tmp_path / "pairs.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["complete"] = False
    if why == "failed":
        key = min(manifest["scenes"])
        manifest["scenes"][key] = {**manifest["scenes"][key], "status": "failed", "reason": "views file unreadable"}
    path.write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        assert main(["run", "--shards", str(tmp_path / "pairs"), *TINY, "--steps", "1", "--image-every", "0",
                     "--runs", str(tmp_path / "runs"), "--name", "x"]) == 0  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith(f"{path}: marked incomplete: ")
    expected = f"1 scene(s) failed in `pairgen filter` ({key}: views file unreadable)" if why == "failed" \
        else "the `pairgen filter` that wrote it was interrupted"
    assert expected in warnings[0], warnings[0]
    caplog.clear()
    manifest["complete"] = True  # a complete folder: no word
    path.write_text(json.dumps(manifest))
    assert main(["run", "--shards", str(tmp_path / "pairs"), *TINY, "--steps", "1", "--image-every", "0",
                 "--runs", str(tmp_path / "runs"), "--name", "y"]) == 0  # fmt: skip
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_an_interrupted_filter_listing_no_shard_is_one_message(small_pairs, tmp_path):
    """A filter killed before its shards: the manifest lists none and says incomplete; one message says so."""
    copy_stage(small_pairs, tmp_path, "pairs")
    path = tmp_path / "pairs.manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "complete": False, "shards": []}))
    ran = pretrain("run", "--shards", tmp_path / "pairs", *TINY, "--steps", "1", "--runs", tmp_path / "runs")
    assert_one_message(ran, f"{path}: lists no shard (marked incomplete: its `pairgen filter` was interrupted", code=1)
