"""One CroCo optimizer step, and the rules it follows (as MAE's ``engine_pretrain.py``).

A step consumes ``accum`` micro-batches: each is masked (:func:`step_mask`,
keyed by seed, rank, step and micro-batch, so a resumed run masks as the
uninterrupted one), run through the network under autocast, and its masked
patch loss back-propagated divided by ``accum``; then AdamW steps once. The
learning rate follows :func:`lr_at`; weight decay spares 1-d parameters
(:func:`param_groups`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass

import torch

from pretrain.augment import to_float
from pretrain.model import masked_patch_loss

__all__ = ["NonFiniteLoss", "Step", "TrainingError", "lr_at", "param_groups", "step_mask", "train_step"]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a checkpoint of another run)."""


class NonFiniteLoss(TrainingError):
    """A micro-batch's loss is NaN or infinite; ``loss`` is its value (the trainer says where and what to do)."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"non-finite loss ({loss})")
        self.loss = loss


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


@dataclass
class Step:
    """What one optimizer step did: its loss (mean over micro-batches and ranks), the gradient norm, and the
    last micro-batch (for the reconstruction PNG)."""

    loss: float
    grad_norm: float
    img1: torch.Tensor  # (B, 3, S, S) float32, normalised
    img2: torch.Tensor  # (B, 3, S, S)
    out: torch.Tensor  # (B, N, p*p*3) predicted patches of img1, detached
    mask: torch.Tensor  # (B, N) bool, True = masked


def train_step(net: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches, *,
               accum: int, key: tuple[int, int, int], world: int, device: torch.device,
               amp: torch.dtype | None) -> Step:  # fmt: skip
    """One optimizer step over ``accum`` micro-batches from the iterator ``batches`` (uint8 ``img1``/``img2``).

    ``net`` is what runs the forward (``model`` itself, or wrapped by DDP or
    ``torch.compile``); ``key`` is (seed, rank, step) for the masks; ``amp``
    the autocast dtype (None: float32). The learning rate is the optimizer's
    as set by the caller. Gradients are all-reduced by DDP on the last
    micro-batch only.

    Raises
    ------
    NonFiniteLoss
        A micro-batch's loss is not finite (nothing was stepped).
    """
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for micro in range(accum):
        batch = next(batches)
        img1 = to_float(batch["img1"].to(device, non_blocking=True))  # uint8 over the wire
        img2 = to_float(batch["img2"].to(device, non_blocking=True))
        sync = world == 1 or micro == accum - 1
        ctx = net.no_sync() if (not sync and hasattr(net, "no_sync")) else contextlib.nullcontext()
        mask = step_mask(img1.shape[0], model.num_patches, model.mask_ratio, (*key, micro)).to(device)
        with ctx, torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out, mask, target = net(img1, img2, mask=mask)
            loss = masked_patch_loss(out.float(), target.float(), mask)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(loss.item())
        (loss / accum).backward()
        loss_sum += loss.item() / accum
    if world > 1:  # log the loss of the whole step, not this rank's share
        mean = torch.tensor([loss_sum], device=device)
        torch.distributed.all_reduce(mean)
        loss_sum = mean.item() / world
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
    optimizer.step()
    return Step(loss_sum, grad_norm, img1, img2, out.detach(), mask)
