"""What a run writes besides its checkpoints: ``log.jsonl``, TensorBoard events, reconstruction PNGs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from manifests.io import atomic_path
from pretrain import augment

__all__ = ["RunLog", "reconstruction_png"]

log = logging.getLogger("pretrain.train")  # the run's logger: its messages are named as the run's

IMAGENET_MEAN = torch.tensor(augment.IMAGENET_MEAN).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor(augment.IMAGENET_STD).view(1, 3, 1, 1)


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    return (x.float().cpu() * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)


def reconstruction_png(model, img1, img2, out, mask, path: Path, rows: int = 4) -> None:
    """A PNG of rows ``masked view 1 | view 2 | reconstruction | target`` (pixels un-normalised).

    img1, img2 (B, 3, S, S) normalised; out (B, N, p*p*3) the model's prediction of img1's
    patches (in per-patch normalised units); mask (B, N) bool, True = masked. Written atomically.
    """
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


class RunLog:
    """JSON lines (``log.jsonl``) and TensorBoard (``tb/``) in the run folder; a no-op when not ``enabled``
    (ranks other than 0)."""

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
