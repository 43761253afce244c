"""Decoding texture images: JPEG, PNG, WebP, and Basis Universal (.basis, KTX 2).

:func:`decode_image` answers an ``(H, W, 3|4) uint8`` array whose row 0 is the
top of the image, whatever the encoding, or raises ``SceneFormatError`` naming
the file and the image: a texture that cannot be decoded is an error, never a
silent grey.

Basis Universal orientation. The transcoder returns rows in the order they are
stored. A ``.basis`` file records in its header whether its rows were flipped
at encode time (``basisu -y_flip``; the ``y_flipped`` flag): such a file stores
the bottom row first, which is how Habitat's assets are encoded for Magnum's
bottom-up image convention. We reverse the rows of exactly those files, so
every decoded texture is top row first (checked against the real
``kodim20.basis`` fixture, which is not flipped, and the same file with its
flag set, in ``tests/test_gltf.py``). KTX 2 stores the top row first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from renderers.scene import SceneFormatError

__all__ = ["decode_image", "sniff_image_format"]

log = logging.getLogger(__name__)

_KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"


def sniff_image_format(data: bytes) -> str | None:
    """Name the encoding from the first bytes: jpeg, png, webp, basis, ktx2 or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"sB":
        return "basis"
    if data[:12] == _KTX2_MAGIC:
        return "ktx2"
    return None


def decode_image(data: bytes, *, path: str | Path, what: str) -> np.ndarray:
    """Decode one encoded image to ``(H, W, 3|4) uint8``, top row first.

    Parameters
    ----------
    data : bytes
        The encoded image.
    path : str or Path
        The file the image came from, for messages.
    what : str
        Which image inside that file (``"image 3 (floor.jpg)"``), for messages.

    Raises
    ------
    SceneFormatError
        Unknown encoding, corrupt data, or a transcoder that is not installed.
    """
    kind = sniff_image_format(data)
    if kind is None:
        head = bytes(data[:8])
        raise SceneFormatError(path, f"{what}: not a JPEG, PNG, WebP or Basis image (starts {head!r})")
    if kind in ("basis", "ktx2"):
        image = _decode_basis(data, path=path, what=what)
    else:
        image = _decode_raster(data, path=path, what=what, kind=kind)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise SceneFormatError(path, f"{what}: image has no pixels")
    return np.ascontiguousarray(image)


def _decode_raster(data: bytes, *, path, what: str, kind: str) -> np.ndarray:
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SceneFormatError(path, f"{what}: corrupt or truncated {kind.upper()} data")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise SceneFormatError(path, f"{what}: unsupported {kind.upper()} sample type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 2:  # grey + alpha
        return np.concatenate([np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]], axis=2)
    if img.shape[2] == 3:
        return img[:, :, ::-1]
    return img[:, :, [2, 1, 0, 3]]


def _decode_basis(data: bytes, *, path, what: str) -> np.ndarray:
    try:
        import opengl_basisu
    except ImportError:
        raise SceneFormatError(
            path,
            f"{what} is a Basis Universal texture and the transcoder is not installed "
            "(pip install opengl-basisu)",
        ) from None
    try:
        texture = opengl_basisu.open(bytes(data))
        rgba = texture.transcode("rgba8", level=0).data
    except opengl_basisu.BasisuError as e:
        raise SceneFormatError(path, f"{what}: cannot decode Basis Universal data: {e}") from None
    if texture.container == "basis" and texture.y_flipped:
        rgba = rgba[::-1]
    return rgba if texture.has_alpha else rgba[:, :, :3]
