"""The ``pretrain`` command line's exit statuses over every subcommand, and what ``export`` leaves behind.

A bad file (a checkpoint, shards, views) is a failure of the command: one message naming it, exit status 1, in
``run``, ``probe`` and ``export`` alike; 2 is for a bad option value (as argparse's own errors).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain.checkpoint import preset_model_args, rng_state, save_checkpoint
from pretrain.cli import EXPORT_TEMPORARIES
from pretrain.engine import param_groups
from pretrain.model import CroCoNet
from pretrain.train import TrainConfig
from tests.commands import PRETRAIN_TINY, assert_one_message, pretrain


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint as `pretrain run` writes one before its first step (tiny, 48 px): made without training."""
    model_args = preset_model_args("tiny", 48)
    model = CroCoNet(**model_args)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05))
    config = TrainConfig(shards="pairs", run_dir="run", model="tiny", img_size=48, num_workers=0)
    path = tmp_path_factory.mktemp("run") / "checkpoint-last.pt"
    save_checkpoint({"model": model.state_dict(), "model_args": model_args, "optimizer": optimizer.state_dict(),
                     "scaler": torch.amp.GradScaler(enabled=False).state_dict(), "config": config.to_dict(),
                     "step": 0, "epoch": 0, "position": 0, "rng": rng_state(), "pairs_seen": 0}, path)  # fmt: skip
    return path


def _truncated(checkpoint: Path, tmp: Path) -> Path:
    path = tmp / "broken" / "checkpoint-last.pt"
    path.parent.mkdir()
    path.write_bytes(checkpoint.read_bytes()[:4000])
    return path


def _not_parquet(tmp: Path) -> Path:
    path = tmp / "shards" / "shard-00000.parquet"
    path.parent.mkdir()
    path.write_bytes(b"not parquet at all")
    return path


def _views_file(tmp: Path) -> Path:
    path = tmp / "views.parquet"
    path.write_bytes(b"PAR1")
    return path


# subcommand's arguments from (good checkpoint, tmp folder) -> (argv, phrase of the message, file it names)
BAD_FILES = {
    "run --resume truncated": lambda c, t: (["run", "--shards", t / "pairs", "--resume", _truncated(c, t)],
                                            "not a readable checkpoint", t / "broken"),
    "run --resume missing": lambda c, t: (["run", "--shards", t / "pairs", "--resume", t / "gone" / "c.pt"],
                                          "checkpoint not found", t / "gone"),
    "run --shards missing": lambda c, t: (["run", "--shards", t / "nothing"], "no such shard folder", t / "nothing"),
    "run --shards not Parquet": lambda c, t: (["run", "--shards", _not_parquet(t)], "", t / "shards"),
    "probe --checkpoint truncated": lambda c, t: (["probe", "--checkpoint", _truncated(c, t), "--views", t],
                                                  "not a readable checkpoint", t / "broken"),
    "probe --views missing": lambda c, t: (["probe", "--checkpoint", c, "--views", t / "nothing"],
                                           "no such views folder", t / "nothing"),
    "probe --views a file": lambda c, t: (["probe", "--checkpoint", c, "--views", _views_file(t)],
                                          "a file, not a views folder", t / "views.parquet"),
    "probe --views empty": lambda c, t: (["probe", "--checkpoint", c, "--views", t], "no views files", t),
    "export truncated": lambda c, t: (["export", _truncated(c, t), "--out", t / "exp"], "not a readable checkpoint",
                                      t / "broken"),
    "export missing": lambda c, t: (["export", t / "gone.pt", "--out", t / "exp"], "checkpoint not found",
                                    t / "gone.pt"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_exits_1_in_every_subcommand(case, checkpoint, tmp_path):
    argv, phrase, named = BAD_FILES[case](checkpoint, tmp_path)
    extra = [*PRETRAIN_TINY, "--runs", tmp_path / "runs"] if argv[0] == "run" else []
    ran = pretrain(*argv, *extra)
    assert_one_message(ran, phrase, str(named), code=1)
    assert not (tmp_path / "exp").exists() and not list(tmp_path.rglob("probe-*"))


BAD_OPTIONS = {
    "run --steps 0": ["run", "--shards", "pairs", "--steps", "0"],
    "run --img-size 17": ["run", "--shards", "pairs", "--img-size", "17"],
    "probe --views-per-scene 0": ["probe", "--checkpoint", "c.pt", "--views", "v", "--views-per-scene", "0"],
    "probe --head-cells 3": ["probe", "--checkpoint", "c.pt", "--views", "v", "--head-cells", "3"],
    "export without a checkpoint": ["export", "--out", "exp"],
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_a_bad_option_value_exits_2_in_every_subcommand(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing read: the option is refused first
    ran = pretrain(*BAD_OPTIONS[case])
    assert ran.code == 2 and "Traceback" not in ran.err, ran.err
    assert not list(tmp_path.iterdir())


def test_export_clears_the_temporaries_of_a_killed_export(checkpoint, tmp_path):
    """A killed export's temporary (croco.pth is 1.4 GB for croco-base) goes on the next export; a live one's stays."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = os.uname().nodename.replace("-", "_")
        temporaries = tmp_path / "exp" / EXPORT_TEMPORARIES
        temporaries.mkdir(parents=True)
        killed = temporaries / f".tmp-{host}-{dead.pid}-croco.pth.k1a2"
        running = temporaries / f".tmp-{host}-{live.pid}-croco_encoder.pth.r3b4"
        for path in (killed, running):
            path.write_bytes(b"half a checkpoint")
        assert pretrain("export", checkpoint, "--out", tmp_path / "exp").code == 0
        assert not killed.exists() and running.exists()
        assert (tmp_path / "exp" / "croco.pth").is_file() and (tmp_path / "exp" / "croco_encoder.pth").is_file()
        running.unlink()
        assert pretrain("export", checkpoint, "--out", tmp_path / "exp").code == 0
        assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["croco.pth", "croco_encoder.pth"]
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("where", ["pairs", "views/synthetic", "_pairgen", "star5"])
@pytest.mark.parametrize("command", ["run", "probe", "export"])
def test_nothing_is_written_into_a_data_folder(small_pairs, small_samples, checkpoint, tmp_path, command, where):
    """A data folder holds Parquet only (and _pairgen is pairgen's): run, probe and export refuse to write there."""
    out = small_pairs if where != "star5" else small_samples
    target = out / where / "x"
    argv = {"run": ["run", "--shards", small_pairs / "pairs", *PRETRAIN_TINY, "--runs", target.parent, "--name", "x"],
            "probe": ["probe", "--checkpoint", checkpoint, "--views", small_pairs / "views", "--out", target],
            "export": ["export", checkpoint, "--out", target]}[command]  # fmt: skip
    before = sorted(p.name for p in (out / where).iterdir())
    ran = pretrain(*argv)
    assert_one_message(ran, "inside pairgen's folder", "write ", code=1)
    assert sorted(p.name for p in (out / where).iterdir()) == before
