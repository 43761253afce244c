"""Checkpoints carry their model's constructor arguments: a preset edited later does not change what an old run
means; checkpoints written before ``model_args`` existed still resume and export; a damaged ``model_args`` is one
message naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from manifests.io import OutputError
from pretrain.checkpoint import MODEL_ARGS, croco_kwargs, load_checkpoint, model_from_checkpoint, preset_model_args
from pretrain.cli import main
from pretrain.engine import TrainingError
from pretrain.model import MODEL_PRESETS

TINY = ["--model", "tiny", "--img-size", "48", "--batch-size", "8", "--workers", "0", "--warmup-steps", "2",
        "--log-every", "1", "--image-every", "0", "--no-verify"]  # fmt: skip
# "tiny" as someone might edit it later: other widths and depths, so every weight's shape changes
TODAYS_TINY = dict(MODEL_PRESETS["tiny"])  # before a test edits it
EDITED_TINY = dict(enc_embed_dim=96, enc_depth=2, enc_num_heads=3, dec_embed_dim=64, dec_depth=1, dec_num_heads=4)
# what pretrain run wrote before model_args was stored, in its order
OLD_KEYS = ("model", "optimizer", "scaler", "config", "step", "epoch", "position", "rng", "pairs_seen")


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def run(small_pairs, tmp_path_factory) -> Path:
    """A 4-step run of the tiny model at 48 px, keeping its step-2 checkpoint."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "4", "--ckpt-every", "2",
                 "--keep-checkpoints", "--runs", str(runs), "--name", "r"]) == 0  # fmt: skip
    return runs / "r"


def old_format(src: Path, dst: Path) -> Path:
    """``src`` rewritten as pretrain run wrote checkpoints before model_args: the same keys and values, without it."""
    ckpt = torch.load(src, weights_only=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: ckpt[k] for k in OLD_KEYS}, dst)
    return dst


def exported(folder: Path) -> dict:
    return torch.load(folder / "croco.pth", weights_only=True)


def test_a_new_checkpoint_carries_its_model_args(run):
    ckpt = load_checkpoint(run / "checkpoint-last.pt")
    assert set(ckpt["model_args"]) == set(MODEL_ARGS)
    assert ckpt["model_args"] == preset_model_args("tiny", 48) and ckpt["model_args"]["img_size"] == 48
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in ckpt["model_args"].values())


def test_an_edited_preset_does_not_change_a_new_checkpoint(run, small_pairs, tmp_path, monkeypatch, caplog):
    ckpt_path = run / "checkpoint-last.pt"
    assert main(["export", str(ckpt_path), "--out", str(tmp_path / "before")]) == 0
    monkeypatch.setitem(MODEL_PRESETS, "tiny", EDITED_TINY)

    ckpt = load_checkpoint(ckpt_path)  # checked against its own arguments, not the edited preset
    model = model_from_checkpoint(ckpt)
    assert len(model.enc_blocks) == 4 and model.enc_embed_dim == 192 and len(model.dec_blocks) == 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt["model"][name]), name

    assert main(["export", str(ckpt_path), "--out", str(tmp_path / "after")]) == 0
    before, after = exported(tmp_path / "before"), exported(tmp_path / "after")
    assert after["croco_kwargs"] == before["croco_kwargs"] == croco_kwargs(ckpt["model_args"])
    assert before["croco_kwargs"] == {**TODAYS_TINY, "img_size": 48}  # as naver/croco's files: changed widths, size
    assert after["model"].keys() == before["model"].keys()
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])

    # resuming trains the checkpoint's model: the same losses as the run before the edit, and a warning
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(run / "checkpoint-0000002.pt", resumed / "checkpoint-0000002.pt")
    assert main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "4", "--ckpt-every", "2",
                 "--resume", str(resumed / "checkpoint-0000002.pt")]) == 0  # fmt: skip
    a, b = losses(run), losses(resumed)
    assert sorted(b) == [3, 4] and all(b[s] == pytest.approx(a[s], rel=1e-5, abs=1e-6) for s in (3, 4))
    assert any("not today's preset 'tiny'" in r.getMessage() and "enc_depth: 2 -> 4" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert load_checkpoint(resumed / "checkpoint-last.pt")["model_args"] == ckpt["model_args"]


def test_the_probe_builds_the_checkpoints_model(run, small_pairs, tmp_path, monkeypatch):
    args = ["probe", "--checkpoint", str(run / "checkpoint-last.pt"), "--views", str(small_pairs / "views"),
            "--views-per-scene", "4", "--head-steps", "5", "--cvc-pairs", "2"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "before")]) == 0
    monkeypatch.setitem(MODEL_PRESETS, "tiny", EDITED_TINY)
    assert main([*args, "--out", str(tmp_path / "after")]) == 0
    records = [json.loads(next((tmp_path / d).glob("probe-*.json")).read_text()) for d in ("before", "after")]
    for record in records:
        record.pop("seconds")
    assert records[0] == records[1]  # the same encoders, pretrained and random-init


def test_an_old_checkpoint_resumes_and_exports(run, small_pairs, tmp_path):
    old = old_format(run / "checkpoint-0000002.pt", tmp_path / "old" / "checkpoint-0000002.pt")
    assert "model_args" not in torch.load(old, weights_only=True)
    ckpt = load_checkpoint(old)
    assert model_from_checkpoint(ckpt).state_dict().keys() == ckpt["model"].keys()

    assert main(["export", str(old), "--out", str(tmp_path / "exp")]) == 0
    full = exported(tmp_path / "exp")
    assert full["croco_kwargs"] == {**MODEL_PRESETS["tiny"], "img_size": 48}  # what export wrote before model_args
    assert all(torch.equal(full["model"][k], ckpt["model"][k]) for k in ckpt["model"])

    assert main(["run", "--shards", str(small_pairs / "pairs"), *TINY, "--steps", "4", "--ckpt-every", "2",
                 "--resume", str(old)]) == 0  # fmt: skip
    a, b = losses(run), losses(old.parent)
    assert sorted(b) == [3, 4] and all(b[s] == pytest.approx(a[s], rel=1e-5, abs=1e-6) for s in (3, 4))
    assert load_checkpoint(old.parent / "checkpoint-last.pt")["model_args"] == preset_model_args("tiny", 48)


def test_an_old_checkpoint_follows_todays_preset(run, tmp_path, monkeypatch, capsys):
    """Without model_args the preset is all there is: an edited preset no longer fits, and says so."""
    old = old_format(run / "checkpoint-last.pt", tmp_path / "old.pt")
    monkeypatch.setitem(MODEL_PRESETS, "tiny", EDITED_TINY)
    assert main(["export", str(old), "--out", str(tmp_path / "exp")]) == 1
    err = capsys.readouterr().err
    assert f"{old}: not a checkpoint of `pretrain run`: 'model' is not a 'tiny' model at 48 px" in err
    assert not (tmp_path / "exp").exists()


def test_with_model_args_the_name_is_a_label(run, tmp_path):
    """A preset renamed or removed later: the checkpoint's model is still known."""
    ckpt = torch.load(run / "checkpoint-last.pt", weights_only=True)
    ckpt["config"]["model"] = "retired-preset"
    torch.save(ckpt, tmp_path / "c.pt")
    assert main(["export", str(tmp_path / "c.pt"), "--out", str(tmp_path / "exp")]) == 0
    assert exported(tmp_path / "exp")["croco_kwargs"] == croco_kwargs(ckpt["model_args"])


DAMAGED_ARGS = {
    "not a dict": (lambda a: [1, 2], "'model_args' is not a dict of CroCoNet's arguments"),
    "a tensor": (lambda a: torch.zeros(2), "'model_args' is not a dict of CroCoNet's arguments"),
    "missing": (lambda a: {k: v for k, v in a.items() if k != "enc_depth"}, "missing ['enc_depth']"),
    "unexpected": (lambda a: {**a, "drop_path": 0.1}, "unexpected ['drop_path']"),
    "a string width": (lambda a: {**a, "enc_embed_dim": "192"}, "'model_args' 'enc_embed_dim' is '192'"),
    "a bool depth": (lambda a: {**a, "enc_depth": True}, "'model_args' 'enc_depth' is True"),
    "a huge depth": (lambda a: {**a, "dec_depth": 2**40}, f"'model_args' 'dec_depth' is {2**40}"),
    "a zero width": (lambda a: {**a, "dec_embed_dim": 0}, "'model_args' 'dec_embed_dim' is 0"),
    "mask ratio 1": (lambda a: {**a, "mask_ratio": 1.0}, "'model_args' 'mask_ratio' is 1.0"),
    "a NaN mlp ratio": (lambda a: {**a, "mlp_ratio": float("nan")}, "'model_args' 'mlp_ratio' is nan"),
    "an int flag": (lambda a: {**a, "norm_im2_in_dec": 1}, "'model_args' 'norm_im2_in_dec' is 1"),
    "another size": (lambda a: {**a, "img_size": 64}, "'model_args' img_size is 64, the config's 48"),
    "heads": (lambda a: {**a, "enc_num_heads": 5}, "enc_embed_dim 192 does not split into 5 heads"),
    "rope heads": (lambda a: {**a, "pos_embed": "RoPE100", "enc_num_heads": 32}, "does not split into 32 heads"),
    "unbuildable": (lambda a: {**a, "pos_embed": "learned"}, "its 'model_args' do not make a model (unknown pos_embed"),
    "other weights": (lambda a: {**a, "enc_depth": 3}, "'model' is not a 'tiny' model at 48 px (missing none, "
                      "unexpected ['enc_blocks.3"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGED_ARGS))
def test_damaged_model_args_are_one_message_naming_the_file(case, run, tmp_path, capsys):
    damage, message = DAMAGED_ARGS[case]
    ckpt = torch.load(run / "checkpoint-last.pt", weights_only=True)
    ckpt["model_args"] = damage(ckpt["model_args"])
    path = tmp_path / "run" / "checkpoint-last.pt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    with pytest.raises(TrainingError, match=r"not a checkpoint of `pretrain run`") as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    assert main(["export", str(path), "--out", str(tmp_path / "exp")]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in lines[0], lines


def test_an_error_of_torch_saves_writer_names_the_file(tmp_path, monkeypatch):
    """torch.save's zip writer loses the errno (a quota, an I/O error): one message naming the file, nothing left."""
    import pretrain.checkpoint as checkpoint

    def failing(obj, f):
        with open(f, "wb") as out:
            out.write(b"PK half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoint.torch, "save", failing)
    path = tmp_path / "checkpoint-last.pt"
    with pytest.raises(OutputError, match=rf"^{path}: cannot be written \(\[enforce fail .*: a quota, or an I/O error\?\)"):
        checkpoint.save_checkpoint({"step": 1}, path)
    assert list(tmp_path.iterdir()) == []
