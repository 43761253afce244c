"""Image and depth encodings of the views and pairs files (DESIGN.md).

* RGB: JPEG (Pillow's defaults besides the quality) or lossless PNG.
* Depth: 16-bit greyscale PNG in millimetres, 0 = invalid. Depths that do not
  fit (over 65.535 m) are stored as 0 rather than wrapped or clipped to a
  wrong distance.

Both go through Pillow, whose libjpeg-turbo/zlib encoders are the fastest in
the dependency set for 256-pixel images (0.2 ms a JPEG on this class of CPU).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = [
    "DEPTH_SCALE",
    "IMAGE_FORMATS",
    "MAX_DEPTH_M",
    "decode_depth",
    "decode_rgb",
    "depth_to_mm",
    "encode_depth",
    "encode_rgb",
]

DEPTH_SCALE = 1000.0  # stored units per metre (millimetres)
MAX_DEPTH_M = np.iinfo(np.uint16).max / DEPTH_SCALE
IMAGE_FORMATS = ("jpeg", "png")


def encode_rgb(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode an (H, W, 3) uint8 image as JPEG (``quality`` 1-100) or PNG."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    buf = io.BytesIO()
    image = Image.fromarray(rgb)
    if fmt == "jpeg":
        image.save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        image.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(IMAGE_FORMATS)}")
    return buf.getvalue()


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> uint16 millimetres, 0 where invalid or out of range."""
    depth = np.asarray(depth, dtype=np.float32)
    mm = np.rint(depth * DEPTH_SCALE)
    ok = np.isfinite(mm) & (mm > 0) & (mm <= np.iinfo(np.uint16).max)
    return np.where(ok, mm, 0).astype(np.uint16)


def encode_depth(depth: np.ndarray) -> bytes:
    """Encode (H, W) planar depth in metres as a 16-bit PNG in millimetres."""
    if depth.ndim != 2:
        raise ValueError(f"expected an (H, W) depth map, got shape {depth.shape}")
    buf = io.BytesIO()
    Image.fromarray(depth_to_mm(depth)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_rgb(data: bytes) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def decode_depth(data: bytes) -> np.ndarray:
    """16-bit PNG bytes (millimetres) -> (H, W) float32 metres, 0 = invalid."""
    with Image.open(io.BytesIO(data)) as image:
        mm = np.asarray(image)
    if mm.ndim != 2 or mm.dtype not in (np.uint16, np.int32, np.uint8):
        raise ValueError(f"depth PNG must be single-channel 16-bit, got {mm.shape} {mm.dtype}")
    return mm.astype(np.float32) / np.float32(DEPTH_SCALE)
