"""The CroCo training loop: optimizer, schedule, checkpoints, logs, DDP.

One process a GPU under ``torchrun`` (or one process on CPU). Each optimizer
step consumes ``accum`` micro-batches of ``batch_size`` pairs on every rank:
the effective batch is ``batch_size * accum * world_size`` and the learning
rate ``base_lr * effective_batch / 256`` (MAE's and CroCo's rule), reached by
a linear warm-up and then decayed along a half cosine to ``min_lr``.

A checkpoint holds everything the next step depends on: model, optimizer,
grad scaler, config, step, the data position (epoch and batches consumed) and
the RNG states, so ``--resume`` continues exactly: the next step's loss equals
that of an uninterrupted run. Checkpoints are written atomically and loaded
with ``torch.load(weights_only=True)``: no pickled objects are executed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from manifests.io import atomic_path, copy_atomic
from manifests.options import ConfigError, check, option
from pretrain import augment
from pretrain.augment import to_float
from pretrain.data import PairStream, worker_context
from pretrain.model import build_model, flops_per_pair, masked_patch_loss
from pretrain.shards import find_shards

__all__ = ["TrainConfig", "TrainingError", "load_checkpoint", "train"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = torch.tensor(augment.IMAGENET_MEAN).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor(augment.IMAGENET_STD).view(1, 3, 1, 1)


PATCH = 16  # the presets' patch side, pixels


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint of another run)."""


def _models() -> list[str]:
    from pretrain.model import MODEL_PRESETS

    return sorted(MODEL_PRESETS)


@dataclass
class TrainConfig:
    """A training run; stored in every checkpoint. Each option field is a ``pretrain run`` flag."""

    shards: str | list[str]  # a pairs folder, a shard, or shard files (--shards)
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
    log_every: int = option(20, min=1, max=10**9, help="steps between log lines")
    ckpt_every: int = option(1000, min=0, max=10**9, help="steps between checkpoints (0: only at the end)")
    keep_checkpoints: bool = option(False, help="keep every periodic checkpoint as checkpoint-NNNNNNN.pt besides "
                                    "checkpoint-last.pt")
    image_every: int = option(1000, min=0, max=10**9, help="steps between reconstruction PNGs (0: never)")
    verify: bool = option(True, flag="--no-verify", help="skip the check of the shards' SHA-256 against their "
                          "manifest (done once a run; about 0.6 s a GiB)")

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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norm weights and other 1-d parameters are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then a half cosine down to ``floor`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_mask(batch: int, patches: int, ratio: float, key: tuple[int, ...]) -> torch.Tensor:
    """(B, N) bool, True = masked: ``int(ratio * N)`` patches per image, uniformly, drawn independently per image.

    Drawn from a generator seeded by ``key`` (seed, rank, step, micro-batch),
    so a resumed run masks exactly as the uninterrupted one would.
    """
    digest = hashlib.sha256(repr(key).encode()).digest()[:8]
    g = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
    order = torch.rand(batch, patches, generator=g).argsort(dim=1)  # (B, N) random permutation per image
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(patches).expand(batch, -1))
    return ranks < int(ratio * patches)


def _rng_state() -> dict:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(state[1].astype(np.int64)), "pos": state[2], "gauss": [state[3], state[4]]},
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, loaded without unpickling arbitrary objects, and checked before use.

    Everything a resume or an export reads is checked here, so that a damaged
    or foreign file is one message naming it rather than an error deep in
    training: a dict with ``config`` (plain values; a known ``model``, a
    positive ``img_size``, ``num_workers``), ``model`` (the tensors of that
    model at that size, same names and shapes, finite), ``optimizer``
    (AdamW's groups of that model, moments of its parameters' shapes),
    ``scaler``, ``step``/``epoch``/``position`` (non-negative integers) and
    ``rng`` (states the generators accept).

    Raises
    ------
    TrainingError
        Not found, not readable, holding pickled objects, or not a checkpoint
        of ``pretrain run`` (the message says what is wrong).
    """
    import re
    import zipfile

    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(2)
        if not head:
            raise TrainingError(f"{path}: not a readable checkpoint (the file is empty)")
        try:
            archive = zipfile.is_zipfile(path)
        except (zipfile.BadZipFile, OSError, ValueError):  # is_zipfile itself raises on some damaged end records
            archive = False
        if head != b"\x80\x02" and not archive:  # torch.save writes a zip archive, or a legacy pickle
            raise TrainingError(f"{path}: not a readable checkpoint (not a file torch.save writes: truncated, "
                                "damaged or of another kind)")  # fmt: skip
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise TrainingError(f"{path}: is a folder, not a checkpoint") from None
    except pickle.UnpicklingError as e:
        operand = re.search(r"Unsupported operand \d+", str(e))
        if operand:  # not a request for an object: a byte of the pickle that is no pickle opcode
            raise TrainingError(f"{path}: not a readable checkpoint (damaged: {operand.group(0).lower()})") from None
        if "Weights only load failed" in str(e):
            raise TrainingError(
                f"{path}: refused: it holds Python objects besides tensors and plain values, and loading "
                "them could run code (checkpoints are read with torch.load(weights_only=True))"
            ) from None
        detail = (str(e).strip() or "no detail").splitlines()[0]
        raise TrainingError(f"{path}: not a readable checkpoint (damaged: {detail})") from None
    except Exception as e:  # noqa: BLE001 -- a damaged file: torch raises RuntimeError, EOFError, KeyError...
        detail = (str(e).strip() or "no detail").splitlines()[0]
        raise TrainingError(f"{path}: not a readable checkpoint ({type(e).__name__}: {detail})") from None

    def plain(value) -> bool:  # what a config may hold: JSON-like values
        if value is None or isinstance(value, (str, bool, int, float)):
            return True
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return isinstance(value, dict) and all(isinstance(k, str) and plain(v) for k, v in value.items())

    def count(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def problem() -> str | None:
        from pretrain.model import MODEL_PRESETS

        if not isinstance(ckpt, dict):
            return f"it holds a {type(ckpt).__name__}, not a dict"
        needed = ("config", "model", "optimizer", "scaler", "step", "epoch", "position", "rng")
        missing = [k for k in needed if k not in ckpt]
        if missing:
            return f"no {', '.join(repr(k) for k in missing)}"
        config = ckpt["config"]
        if not isinstance(config, dict) or not plain(config):
            return "'config' is not a dict of plain values"
        if config.get("model") not in MODEL_PRESETS:
            return f"'config' names model {config.get('model')!r}; known: {', '.join(sorted(MODEL_PRESETS))}"
        if not count(config.get("img_size")) or not config["img_size"] or not count(config.get("num_workers")):
            return "'config' has no valid img_size and num_workers"
        for key in ("step", "epoch", "position"):
            if not count(ckpt[key]):
                return f"{key!r} is {ckpt[key]!r}, not a non-negative integer"
        try:
            with torch.device("meta"):  # shapes only, no memory
                reference = build_model(config["model"], img_size=config["img_size"])
        except Exception as e:  # noqa: BLE001 -- a size the model cannot be built at
            return f"its model {config['model']!r} cannot be built at {config['img_size']} px ({e})"
        state, wanted = ckpt["model"], reference.state_dict()
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            return "'model' is not a dict of tensors"
        if set(state) != set(wanted):
            lost, extra = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
            return (f"'model' is not a {config['model']!r} model at {config['img_size']} px (missing "
                    f"{lost[:3] or 'none'}, unexpected {extra[:3] or 'none'})")  # fmt: skip
        for name, tensor in state.items():
            if tensor.shape != wanted[name].shape or tensor.dtype != wanted[name].dtype:
                return (f"'model' tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, expected "
                        f"{wanted[name].dtype} {tuple(wanted[name].shape)}")  # fmt: skip
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"'model' tensor {name!r} holds NaN or infinite values"
        optimizer = ckpt["optimizer"]
        groups = param_groups(reference, 0.0)
        if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) or not isinstance(
            optimizer.get("param_groups"), list
        ):
            return "'optimizer' is not an optimizer state (state, param_groups)"
        saved = optimizer["param_groups"]
        if len(saved) != len(groups) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                and len(g["params"]) == len(r["params"]) for g, r in zip(saved, groups)):  # fmt: skip
            return "'optimizer' has other parameter groups than the model's"
        defaults = torch.optim.AdamW([torch.zeros(1)]).defaults
        shapes = {}
        for g, r in zip(saved, groups):
            for key, value in g.items():
                if key == "params" or key not in defaults:
                    continue
                default = defaults[key]
                fits = (isinstance(value, bool) or value is None if isinstance(default, bool) or default is None
                        else all(number(v) for v in value) and len(value) == len(default)
                        if isinstance(default, tuple) and isinstance(value, (list, tuple))
                        else number(value) and number(default))  # fmt: skip
                if not fits:
                    return f"'optimizer' setting {key!r} is {value!r}"
            for i, p in zip(g["params"], r["params"]):
                if not count(i) or i in shapes:
                    return "'optimizer' parameter ids are not distinct integers"
                shapes[i] = p.shape
        amsgrad = any(g.get("amsgrad") for g in saved)
        needed = {"step", "exp_avg", "exp_avg_sq", *(["max_exp_avg_sq"] if amsgrad else [])}  # AdamW's, per parameter
        for i, moments in optimizer["state"].items():
            if i not in shapes or not isinstance(moments, dict):
                return f"'optimizer' holds a state for parameter {i!r}, which the model has not"
            if needed - set(moments):
                return f"'optimizer' state of parameter {i} has no {', '.join(sorted(needed - set(moments)))}"
            for key, value in moments.items():
                if not isinstance(value, torch.Tensor) or (key != "step" and value.shape != shapes[i]) or (
                    key == "step" and value.numel() != 1
                ):
                    return f"'optimizer' state {key!r} of parameter {i} does not fit it"
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    return f"'optimizer' state {key!r} of parameter {i} holds NaN or infinite values"
        rng = ckpt["rng"]
        try:
            torch.Generator().set_state(rng["torch"])
            if not isinstance(rng["cuda"], list) or not all(isinstance(t, torch.Tensor) for t in rng["cuda"]):
                raise TypeError("cuda: not a list of tensors")
            n = rng["numpy"]
            np.random.RandomState().set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                                               n["gauss"][0], n["gauss"][1]))  # fmt: skip
            internal, version, gauss = rng["python"]
            random.Random().setstate((version, tuple(internal), gauss))
        except Exception as e:  # noqa: BLE001 -- any shape of damage
            detail = (str(e).strip() or "no detail").splitlines()[0]
            return f"'rng' is not the generators' states ({type(e).__name__}: {detail})"
        return None

    wrong = problem()
    if wrong:
        raise TrainingError(f"{path}: not a checkpoint of `pretrain run`: {wrong}")
    return ckpt


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    return (x.float().cpu() * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)


def reconstruction_png(model, img1, img2, out, mask, path: Path, rows: int = 4) -> None:
    """A PNG of rows ``masked view 1 | view 2 | reconstruction | target`` (pixels un-normalised)."""
    from PIL import Image

    n = min(rows, img1.shape[0])
    target = model.patchify(img1[:n]).float()  # (n, N, p*p*3)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    pred = out[:n].float() * (var + 1e-6).sqrt() + mean  # undo the per-patch normalisation
    m = mask[:n, :, None].float()
    recon = model.unpatchify(pred * m + target * (1 - m))
    masked = model.unpatchify(target * (1 - m))
    panels = [masked, img2[:n].float(), recon, img1[:n].float()]
    grid = torch.cat([torch.cat([_denormalize(x[i : i + 1]) for x in panels], dim=3) for i in range(n)], dim=2)
    pixels = (grid[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


class _Logger:
    """JSON lines (``log.jsonl``) and TensorBoard (``tb/``), rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        if enabled:
            self.file = open(run_dir / "log.jsonl", "a")
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                log.warning("tensorboard is not installed: logging to log.jsonl only")

    def write(self, step: int, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **record}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def train(config: TrainConfig, *, resume: dict | None = None, progress=None) -> dict:
    """Run training, or resume it from a checkpoint (:func:`load_checkpoint`); returns the last logged record.

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
    amp = torch.bfloat16 if (config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")) else None

    torch.manual_seed(config.seed + rank)
    np.random.seed(config.seed + rank)
    random.seed(config.seed + rank)
    model = build_model(config.model, img_size=config.img_size).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.base_lr, betas=config.betas)
    scaler = torch.amp.GradScaler(enabled=False)  # bf16 needs no loss scaling; kept for fp16 users' checkpoints

    ckpt = resume
    # the batch order depends on the number of lanes: keep the run's first worker count across resumes
    lanes = max(1, (ckpt["config"] if ckpt else config.to_dict())["num_workers"])
    shards = find_shards(config.shards)
    data = PairStream(shards, batch_size=config.batch_size, crop=config.img_size, seed=config.seed, rank=rank,
                      world_size=world, jitter=config.jitter, lanes=lanes, output="uint8")  # fmt: skip
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

    step, epoch, position = 0, 0, 0
    if ckpt is not None:
        if ckpt["config"]["model"] != config.model or ckpt["config"]["img_size"] != config.img_size:
            raise TrainingError(f"the resume checkpoint is of model {ckpt['config']['model']!r} "
                                f"at {ckpt['config']['img_size']} px, not {config.model!r} at {config.img_size}")  # fmt: skip
        model.load_state_dict(ckpt["model"], strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, epoch, position = ckpt["step"], ckpt["epoch"], ckpt["position"]
        _set_rng_state(ckpt["rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", step, epoch, position)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    flops = flops_per_pair(model, config.img_size)
    logger = _Logger(run_dir, rank == 0)
    last: dict = {}

    def save(name: str) -> None:
        if rank == 0:
            _save_atomic({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "config": config.to_dict(), "step": step, "epoch": epoch, "position": position,
                "rng": _rng_state(), "pairs_seen": step * effective,
            }, run_dir / name)  # fmt: skip

    timer, pairs_since = time.perf_counter(), 0
    shown = None  # the last batch, for the reconstruction PNG
    try:
        while step < total:
            data.set_epoch(epoch)
            data.set_position(position * config.accum)
            loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=config.num_workers,
                                                 pin_memory=device.type == "cuda", persistent_workers=False,
                                                 multiprocessing_context=worker_context() if config.num_workers
                                                 else None)  # fmt: skip
            batches = iter(loader)
            while step < total and position < per_epoch:
                lr = lr_at(step, total, peak_lr, warmup, config.min_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for micro in range(config.accum):
                    batch = next(batches)
                    img1 = to_float(batch["img1"].to(device, non_blocking=True))  # uint8 over the wire
                    img2 = to_float(batch["img2"].to(device, non_blocking=True))
                    sync = world == 1 or micro == config.accum - 1
                    ctx = net.no_sync() if (not sync and hasattr(net, "no_sync")) else contextlib.nullcontext()
                    mask = step_mask(img1.shape[0], model.num_patches, model.mask_ratio,
                                     (config.seed, rank, step, micro)).to(device)  # fmt: skip
                    with ctx, torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        out, mask, target = net(img1, img2, mask=mask)
                        loss = masked_patch_loss(out.float(), target.float(), mask)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"non-finite loss ({loss.item()}) at step {step}, epoch {epoch}: lower the learning "
                            f"rate (--base-lr {config.base_lr}) or resume from the last checkpoint in {run_dir}"
                        )
                    (loss / config.accum).backward()
                    loss_sum += loss.item() / config.accum
                if world > 1:  # log the loss of the whole step, not this rank's share
                    mean = torch.tensor([loss_sum], device=device)
                    torch.distributed.all_reduce(mean)
                    loss_sum = mean.item() / world
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
                optimizer.step()
                shown = (img1, img2, out.detach(), mask)
                step += 1
                position += 1
                pairs_since += effective
                if step % config.log_every == 0 or step == total:
                    elapsed = time.perf_counter() - timer
                    rate = pairs_since / elapsed
                    last = {"loss": loss_sum, "lr": lr, "grad_norm": grad_norm, "pairs_per_s": rate,
                            "tflops": rate * flops / 1e12, "epoch": epoch}  # fmt: skip
                    logger.write(step, last)
                    timer, pairs_since = time.perf_counter(), 0
                else:
                    last = {"loss": loss_sum, "lr": lr, "grad_norm": grad_norm, "epoch": epoch}
                if progress is not None:
                    progress.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}", refresh=False)
                    progress.update(1)
                if rank == 0 and config.image_every and step % config.image_every == 0:
                    reconstruction_png(model, *shown, run_dir / f"recon-{step:07d}.png")
                if config.ckpt_every and step % config.ckpt_every == 0:
                    save("checkpoint-last.pt")
                    if config.keep_checkpoints and rank == 0:
                        copy_atomic(run_dir / "checkpoint-last.pt", run_dir / f"checkpoint-{step:07d}.pt")
            if position >= per_epoch:
                epoch, position = epoch + 1, 0
        save("checkpoint-last.pt")
        if rank == 0 and shown is not None:
            reconstruction_png(model, *shown, run_dir / "recon-last.png")
    finally:
        logger.close()
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return {"step": step, **last}

