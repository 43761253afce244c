"""A ``pretrain run``: its config, DDP, the step loop, and when it logs, draws and saves.

One process a GPU under ``torchrun`` (or one process on CPU). Each optimizer
step consumes ``accum`` micro-batches of ``batch_size`` pairs on every rank
(:func:`pretrain.engine.train_step`): the effective batch is ``batch_size *
accum * world_size`` and the learning rate ``base_lr * effective_batch / 256``
(MAE's and CroCo's rule), reached by a linear warm-up and then decayed along a
half cosine to ``min_lr``.

Every ``ckpt_every`` steps and at the end, rank 0 writes ``checkpoint-last.pt``
(:mod:`pretrain.checkpoint`: everything the next step depends on, so
``--resume`` continues exactly: the next step's loss equals that of an
uninterrupted run); every ``log_every`` steps a record to ``log.jsonl`` and
TensorBoard, every ``image_every`` steps a reconstruction PNG
(:mod:`pretrain.outputs`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from manifests import store
from manifests.config import config_changes
from manifests.io import copy_atomic, remove_stale_temporaries
from manifests.options import ConfigError, check, option
from pretrain.checkpoint import (
    checkpoint_model_args,
    model_from_checkpoint,
    preset_model_args,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pretrain.data import VIEW2_MODES, PairStream, other_scene_view2, worker_context
from pretrain.engine import NonFiniteLoss, TrainingError, lr_at, param_groups, train_step
from pretrain.model import CroCoNet, flops_per_pair
from pretrain.outputs import RunLog, reconstruction_png
from pretrain.shards import find_shards, folder_manifest

__all__ = ["PATCH", "TrainConfig", "incomplete_warning", "train"]

log = logging.getLogger(__name__)


PATCH = 16  # the presets' patch side, pixels


def _models() -> list[str]:
    from pretrain.model import MODEL_PRESETS

    return sorted(MODEL_PRESETS)


@dataclass
class TrainConfig:
    """A training run; stored in every checkpoint. Each option field is a ``pretrain run`` flag."""

    shards: str | list[str]  # a pairs or samples folder, a shard, or shard files (--shards)
    run_dir: str  # RUNS/NAME (--runs, --name)
    model: str = option("croco-base", choices=_models, help="model preset")
    img_size: int = option(224, min=16, max=4096,
                           help="crop size fed to the model (pixels, a multiple of the 16-pixel patch)")
    batch_size: int = option(64, min=1, max=65_536, help="pairs per micro-batch per process")
    accum: int = option(1, min=1, max=65_536, help="micro-batches per optimizer step")
    base_lr: float = option(1.5e-4, above=0, help="learning rate per 256 pairs of effective batch")
    min_lr: float = option(0.0, min=0, cli=False, help="learning rate at the end of the cosine")
    weight_decay: float = option(0.05, min=0, max=10, help="AdamW weight decay (not on biases and norms)")
    betas: tuple[float, float] = option((0.9, 0.95), min=0, below=1, cli=False, help="AdamW betas")
    warmup_steps: int | None = option(None, min=0, max=10**9,
                                      help="linear warm-up steps (None: a tenth of the run, at most 1,000)")
    steps: int | None = option(None, min=1, max=10**9, help="optimizer steps to train (None: --epochs, or one epoch)")
    epochs: float | None = option(None, above=0, max=1e6, help="epochs over the shards to train")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the data order, augmentation, masks and init")
    num_workers: int = option(4, min=0, max=256, flag="--workers", help="DataLoader worker processes per GPU/process")
    compile: bool = option(False, help="torch.compile the model")
    amp: str = option("auto", choices=("auto", "bf16", "off"), help="auto: bf16 autocast on CUDA, fp32 on CPU")
    jitter: bool = option(True, flag="--no-jitter", help="turn CroCo's colour jitter off")
    view2: str = option("pair", choices=VIEW2_MODES, help="view 2 of each pair: its own (pair), or, as a control "
                        "with no geometry to use, another scene's (other-scene: the view 2 of another pair of the "
                        "batch, of another scene; the same images, steps and seeds)")  # fmt: skip
    log_every: int = option(20, min=1, max=10**9, help="steps between log lines")
    ckpt_every: int = option(1000, min=0, max=10**9, help="steps between checkpoints (0: only at the end)")
    keep_checkpoints: bool = option(False, help="keep every periodic checkpoint as checkpoint-NNNNNNN.pt besides "
                                    "checkpoint-last.pt")
    image_every: int = option(1000, min=0, max=10**9, help="steps between reconstruction PNGs (0: never)")
    views: str | None = option(None, metavar="FOLDER",
                               help="the views folder that referenced samples name (None: the samples folder's "
                               "sibling views/, as pairgen writes OUT)")  # fmt: skip
    verify: bool = option(True, flag="--no-verify", help="skip the check of the shards, done once a run: their "
                          "SHA-256 against their manifest, or without one the checksums in each shard's footer "
                          "(about 0.6 s a GiB)")

    def __post_init__(self) -> None:
        check(self)
        if self.img_size % PATCH != 0:
            raise ConfigError("img_size", f"must be a multiple of the patch size {PATCH}, got {self.img_size}")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("steps", "cannot be given with epochs: both bound the run", related=("epochs",))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, initialising the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def incomplete_warning(shards: str | list[str]) -> str | None:
    """The warning for a pairs or samples folder whose manifest says ``"complete": false``, or None.

    ``pairgen filter`` marks its manifest complete only when every scene
    succeeded: false means scenes failed (their pairs are missing from the
    shards) or the run was interrupted. The shards it lists are whole
    either way (written atomically, checked by SHA-256), so the run goes on
    with a warning naming the manifest and why. A list of files, one
    shard, a folder without a manifest or one that cannot be read (the
    shard search says why) give None.
    """
    from manifests.manifest import ManifestError, PairsManifest

    if isinstance(shards, (list, tuple)) or not Path(shards).is_dir() or not PairsManifest.exists(shards):
        return None
    try:
        manifest = folder_manifest(shards)
    except (ManifestError, OSError):
        return None
    return manifest.incomplete_warning("Training on") if manifest.shards else None  # none: find_shards refuses it


def warn_if_incomplete(shards: str | list[str]) -> None:
    """Log :func:`incomplete_warning`'s line, if any (rank 0 of a run)."""
    warning = incomplete_warning(shards)
    if warning:
        log.warning("%s", warning)


def train(config: TrainConfig, *, resume: dict | None = None, progress=None) -> dict:
    """Run training, or resume it from a checkpoint (:func:`pretrain.checkpoint.load_checkpoint`); returns the
    last logged record.

    A resumed run's model is the checkpoint's (its ``model_args``), whatever the preset says today.

    Raises
    ------
    TrainingError
        A non-finite loss, or a resume checkpoint of another model.
    """
    rank, world, local_rank = _distributed()
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run_dir = Path(config.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        # a killed run's unfinished checkpoint or --keep-checkpoints copy (1.4 GB for croco-base), a killed export's
        # file: only those of processes that are gone (manifests.io), as the pairgen stages clear theirs
        stale = remove_stale_temporaries(run_dir)
        if stale:
            log.info("%s: removed %d unfinished temporary file(s) of an interrupted run", run_dir, stale)
        warn_if_incomplete(store.path_of(config.shards))
    amp = torch.bfloat16 if (config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")) else None

    torch.manual_seed(config.seed + rank)
    np.random.seed(config.seed + rank)
    random.seed(config.seed + rank)
    ckpt = resume
    if ckpt is not None:
        model_args = checkpoint_model_args(ckpt)
        model = model_from_checkpoint(ckpt).to(device)
    else:
        model_args = preset_model_args(config.model, config.img_size)
        model = CroCoNet(**model_args).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.base_lr, betas=config.betas)
    scaler = torch.amp.GradScaler(enabled=False)  # bf16 needs no loss scaling; kept for fp16 users' checkpoints

    # the batch order depends on the number of lanes: keep the run's first worker count across resumes
    lanes = max(1, (ckpt["config"] if ckpt else config.to_dict())["num_workers"])
    shards = find_shards(store.path_of(config.shards))  # a store's (recorded by URI): its mirror
    data = PairStream(shards, batch_size=config.batch_size, crop=config.img_size, seed=config.seed, rank=rank,
                      world_size=world, jitter=config.jitter, lanes=lanes, output="uint8",
                      views=store.path_of(config.views))  # fmt: skip
    per_epoch = data.batches_per_epoch() // config.accum  # optimizer steps an epoch
    if per_epoch < 1:
        raise TrainingError(
            f"{config.shards}: {data.batches_per_epoch()} batches of {config.batch_size} an epoch on each of "
            f"{world} process(es), fewer than --accum {config.accum}: use a smaller --batch-size"
        )
    total = config.steps if config.steps is not None else max(1, round((config.epochs or 1.0) * per_epoch))
    warmup = config.warmup_steps if config.warmup_steps is not None else min(1000, max(1, total // 10))
    effective = config.batch_size * config.accum * world
    peak_lr = config.base_lr * effective / 256

    step, epoch, position = _restore(ckpt, config, optimizer, scaler) if ckpt is not None else (0, 0, 0)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    flops = flops_per_pair(model, config.img_size)
    logger = RunLog(run_dir, rank == 0)
    last: dict = {}

    def save(name: str) -> None:
        if rank == 0:
            save_checkpoint({
                "model": model.state_dict(), "model_args": model_args, "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "config": config.to_dict(), "step": step, "epoch": epoch,
                "position": position, "rng": rng_state(), "pairs_seen": step * effective,
            }, run_dir / name)  # fmt: skip

    if rank == 0 and config.keep_checkpoints and config.ckpt_every and step and step % config.ckpt_every == 0:
        kept = run_dir / f"checkpoint-{step:07d}.pt"  # the copy a full disk or a kill stopped, made on resuming
        if not kept.is_file() and (run_dir / "checkpoint-last.pt").is_file():
            copy_atomic(run_dir / "checkpoint-last.pt", kept)
    saved = step if resume is not None else None  # the step checkpoint-last.pt holds
    timer, pairs_since = time.perf_counter(), 0
    shown = None  # the last step, for the reconstruction PNG
    try:
        while step < total:
            data.set_epoch(epoch)
            data.set_position(position * config.accum)
            loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=config.num_workers,
                                                 pin_memory=device.type == "cuda", persistent_workers=False,
                                                 multiprocessing_context=worker_context() if config.num_workers
                                                 else None)  # fmt: skip
            batches = iter(loader)
            if config.view2 == "other-scene":  # the control: no geometry between the views
                batches = map(other_scene_view2, batches)
            while step < total and position < per_epoch:
                lr = lr_at(step, total, peak_lr, warmup, config.min_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                try:
                    shown = train_step(net, model, optimizer, batches, accum=config.accum,
                                       key=(config.seed, rank, step), world=world, device=device, amp=amp)  # fmt: skip
                except NonFiniteLoss as e:
                    raise TrainingError(
                        f"non-finite loss ({e.loss}) at step {step}, epoch {epoch}: lower the learning "
                        f"rate (--base-lr {config.base_lr}) or resume from the last checkpoint in {run_dir}"
                    ) from e
                step += 1
                position += 1
                pairs_since += effective
                if step % config.log_every == 0 or step == total:
                    rate = pairs_since / (time.perf_counter() - timer)
                    last = {"loss": shown.loss, "lr": lr, "grad_norm": shown.grad_norm, "pairs_per_s": rate,
                            "tflops": rate * flops / 1e12, "epoch": epoch}  # fmt: skip
                    logger.write(step, last)
                    timer, pairs_since = time.perf_counter(), 0
                else:
                    last = {"loss": shown.loss, "lr": lr, "grad_norm": shown.grad_norm, "epoch": epoch}
                if progress is not None:
                    progress.set_postfix(loss=f"{shown.loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                    progress.update(1)
                if rank == 0 and config.image_every and step % config.image_every == 0:
                    reconstruction_png(model, shown.img1, shown.img2, shown.out, shown.mask,
                                       run_dir / f"recon-{step:07d}.png")
                if config.ckpt_every and step % config.ckpt_every == 0:
                    save("checkpoint-last.pt")
                    saved = step
                    if config.keep_checkpoints and rank == 0:
                        copy_atomic(run_dir / "checkpoint-last.pt", run_dir / f"checkpoint-{step:07d}.pt")
            if position >= per_epoch:
                epoch, position = epoch + 1, 0
        if saved != step:  # not written again for the step it holds (a second write only risks a full disk)
            save("checkpoint-last.pt")
        if rank == 0 and shown is not None:
            reconstruction_png(model, shown.img1, shown.img2, shown.out, shown.mask, run_dir / "recon-last.png")
    finally:
        logger.close()
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return {"step": step, **last}


def _restore(ckpt: dict, config: TrainConfig, optimizer, scaler) -> tuple[int, int, int]:
    """Check a resume checkpoint against ``config``; restore the optimizer, scaler and generators from it.

    Returns (step, epoch, position). The model's weights are restored with it
    (:func:`pretrain.checkpoint.model_from_checkpoint`).
    """
    if ckpt["config"]["model"] != config.model or ckpt["config"]["img_size"] != config.img_size:
        raise TrainingError(f"the resume checkpoint is of model {ckpt['config']['model']!r} "
                            f"at {ckpt['config']['img_size']} px, not {config.model!r} at {config.img_size}")  # fmt: skip
    changed = config_changes(preset_model_args(config.model, config.img_size), checkpoint_model_args(ckpt))
    if changed:  # the preset was edited since: the checkpoint's weights mean its own arguments
        log.warning("resuming the checkpoint's model, which is not today's preset %r (preset -> checkpoint: %s)",
                    config.model, "; ".join(changed))  # fmt: skip
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    log.info("resumed at step %d (epoch %d, batch %d)", ckpt["step"], ckpt["epoch"], ckpt["position"])
    return ckpt["step"], ckpt["epoch"], ckpt["position"]
