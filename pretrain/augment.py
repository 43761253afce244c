"""CroCo's per-view augmentation (``crop224+acolor``, then ``ToTensor`` and ``Normalize``).

Every random number of a pair is a counter-based hash (splitmix64) of
``(seed, epoch, canonical index, slot)`` (:func:`sample_uniforms`): the same
pair gets the same crops and colours in an epoch whatever the rank, worker,
lane or resume point.

* **crop**: each view an independent random ``crop x crop`` window (images
  smaller than the crop are an error); ``crop=None`` keeps the full image.
* **colour jitter**, asymmetric: brightness ``b``, contrast ``c`` and
  saturation ``s`` factors uniform in ``jitter_range`` (0.6--1.4), drawn
  independently for each view; hue untouched. The operations are
  torchvision's: brightness multiplies by ``b``; contrast blends with the
  mean ``m`` of the greyscale image (``c x + (1 - c) m``); saturation blends
  with the greyscale image (``s x + (1 - s) grey(x)``), greyscale being
  ITU-R 601 luma (0.299, 0.587, 0.114). The three are linear maps that
  commute (saturation keeps the grey mean), so **the order does not matter**
  and they are applied as one per-pixel map, ``y = b (c (s x + (1 - s)
  grey(x)) + (1 - c) m)``, clamped to 0..255 and rounded to uint8 once at the
  end, as CroCo's PIL images are. torchvision (random order) also clamps
  after each operation; the two agree exactly up to that rounding wherever no
  intermediate value leaves the 0..255 range, and differ only on pixels that
  saturate midway.
* **normalisation**: ``(y / 255 - mean) / std`` with ImageNet's mean and
  std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`: their one definition in
  the project); off, the output is ``y / 255``. With everything off the
  output is the decoded image divided by 255, exactly. :func:`to_float` does
  the same on the device for uint8 batches.

Speed: JPEGs are decoded with ``cv2.imdecode`` (:func:`decode_bgr`;
libjpeg-turbo, faster than Pillow, see ``benchmarks/loader.py``) straight from
the Arrow buffers, in OpenCV's BGR order, which the colour code indexes rather
than converts. A view is then processed while it is in cache, with a handful
of OpenCV SIMD calls on the uint8 crop (greyscale, three channel blends) and
one uint8-to-float32 pass per channel written straight into the batch tensor;
whole-batch numpy or torch passes over float32 were several times slower (a
batch of float32 views does not fit in cache). Decoding is most of what
remains.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "JITTER_RANGE",
    "LUMA",
    "SLOTS",
    "Augment",
    "decode_bgr",
    "sample_uniforms",
    "to_float",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 greyscale weights (R, G, B), as OpenCV, PIL and torchvision
JITTER_RANGE = (0.6, 1.4)  # CroCo's acolor: brightness, contrast and saturation factors
SLOTS = 10  # random numbers a pair uses: (top, left, brightness, contrast, saturation) per view

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_uniforms(seed: int, epoch: int, index: np.ndarray, slots: int = SLOTS) -> np.ndarray:
    """Uniform numbers in [0, 1) that depend on ``(seed, epoch, index, slot)`` only.

    Returns ``(len(index), slots)`` float64: splitmix64 at counter ``index *
    slots + slot`` of a stream keyed by ``(seed, epoch)``.
    """
    with np.errstate(over="ignore"):
        key = _splitmix(np.array([seed % 2**64], np.uint64) + _GOLDEN)
        key = _splitmix(key ^ np.array([epoch % 2**64], np.uint64))
        counter = np.asarray(index, np.uint64)[:, None] * np.uint64(slots) + np.arange(slots, dtype=np.uint64)
        z = _splitmix(key + counter * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def decode_bgr(buffer: np.ndarray | bytes) -> np.ndarray | None:
    """A JPEG (or PNG) as ``(H, W, 3)`` uint8 in OpenCV's BGR order; None if it does not decode."""
    return cv2.imdecode(np.frombuffer(buffer, np.uint8), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class Augment:
    """CroCo's per-view transforms: random crop, colour jitter, normalisation (module docstring)."""

    crop: int | None = 224  # None: keep the whole image
    jitter: bool = True
    normalize: bool = True
    jitter_range: tuple[float, float] = JITTER_RANGE

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop must be at least 1 pixel (or None for no crop), got {self.crop}")
        lo, hi = self.jitter_range
        if not 0 <= lo <= hi:
            raise ValueError(f"jitter range must satisfy 0 <= low <= high, got {self.jitter_range}")

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return (height, width) if self.crop is None else (self.crop, self.crop)

    def apply(self, bgr: np.ndarray, out: np.ndarray, u: np.ndarray) -> None:
        """Transform one decoded view into ``out``.

        Parameters
        ----------
        bgr : (H, W, 3) uint8
            The decoded image, BGR (OpenCV's order).
        out : (3, S, S) float32 or uint8
            Written in place, RGB; each ``out[c]`` must be C-contiguous.
            uint8 receives the cropped, jittered view before normalisation.
        u : (5,) float
            Uniforms in [0, 1): crop top, crop left, brightness, contrast, saturation.
        """
        H, W = bgr.shape[:2]
        if self.crop is not None:
            S = self.crop
            top = min(int(u[0] * (H - S + 1)), H - S)
            left = min(int(u[1] * (W - S + 1)), W - S)
            bgr = bgr[top : top + S, left : left + S]
        planes = cv2.split(bgr)[::-1]  # R, G, B; each (S, S) uint8, contiguous
        if self.jitter:
            lo, hi = self.jitter_range
            b, c, s = lo + (hi - lo) * np.asarray(u[2:5], np.float64)
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            means = cv2.mean(bgr)  # (B, G, R, 0)
            m = LUMA[0] * means[2] + LUMA[1] * means[1] + LUMA[2] * means[0]
            # y = b (c (s x + (1 - s) grey) + (1 - c) m): saturating, rounding uint8 (module docstring)
            planes = [cv2.addWeighted(p, b * c * s, grey, b * c * (1 - s), b * (1 - c) * m) for p in planes]
        if out.dtype == np.uint8:  # normalised later, on the device (to_float)
            for k, p in enumerate(planes):
                np.copyto(out[k], p)
            return
        for k, p in enumerate(planes):
            dst = out[k]
            if self.normalize:
                scale, shift = 1.0 / (255.0 * IMAGENET_STD[k]), -IMAGENET_MEAN[k] / IMAGENET_STD[k]
                if cv2.addWeighted(p, scale, p, 0.0, shift, dst=dst, dtype=cv2.CV_32F).ctypes.data != dst.ctypes.data:
                    raise ValueError("output planes must be C-contiguous float32")  # OpenCV wrote elsewhere
            else:
                np.divide(p, np.float32(255.0), out=dst)  # exactly the decoded value / 255


def to_float(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 batches (``output="uint8"``) to what the float32 output holds, on their device.

    ``images`` is ``(B, 3, S, S)`` uint8, RGB; returns float32 ``images /
    255``, normalised with ImageNet's mean and std when ``normalize``.
    """
    x = images.to(torch.float32).div_(255.0)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    return x
