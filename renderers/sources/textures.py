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
flag set, in ``tests/renderers/test_gltf.py``). KTX 2 stores the top row first.

Declared sizes. An image's header declares its size, and decoders allocate
that much before reading the pixels: a 2 KB PNG may declare 50000 x 50000
(7.5 GB). :func:`image_size` reads the size from the header (PNG ``IHDR``,
the JPEG frame header, WebP's ``VP8``/``VP8L``/``VP8X`` chunk; the Basis
transcoder's own header parse), and an image wider or taller than
:data:`MAX_IMAGE_SIDE` is refused before it is decoded.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from renderers.scene import SceneFormatError

__all__ = ["MAX_IMAGE_SIDE", "decode_image", "image_size", "sniff_image_format"]

log = logging.getLogger(__name__)

_KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
# The largest width or height decoded (GPU texture limits are 16384 too).
MAX_IMAGE_SIDE = 16384
# JPEG start-of-frame markers (SOF0..SOF15 except DHT, JPG and DAC), which carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


def image_size(data: bytes, kind: str | None = None) -> tuple[int, int] | None:
    """``(width, height)`` an encoded JPEG, PNG or WebP image declares, read from its header only.

    None when the header does not say (truncated, or another encoding); the
    decoder then fails on it by itself.
    """
    kind = kind or sniff_image_format(data)
    if kind == "png":  # the IHDR chunk comes first: length 13, type, width, height (big-endian)
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        return None
    if kind == "jpeg":
        return _jpeg_size(data)
    if kind == "webp":
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame header, walking the markers as libjpeg does."""
    at, n = 2, len(data)
    while at < n:
        if data[at] != 0xFF:  # libjpeg skips stray bytes up to the next marker
            at = data.find(b"\xff", at)
            if at < 0:
                return None
        while at < n and data[at] == 0xFF:  # fill bytes
            at += 1
        if at >= n:
            return None
        marker = data[at]
        at += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if marker in (0xD9, 0xDA) or at + 2 > n:  # end of image, start of scan: no frame header before
            return None
        (length,) = struct.unpack_from(">H", data, at)
        if marker in _JPEG_SOF:
            if at + 7 > n:
                return None
            height, width = struct.unpack_from(">HH", data, at + 3)  # after length, precision
            return width, height
        at += length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # 24-bit canvas width - 1, height - 1
        w, h = data[24:27], data[27:30]
        return int.from_bytes(w, "little") + 1, int.from_bytes(h, "little") + 1
    if chunk == b"VP8L" and len(data) >= 25:  # 14-bit width - 1, height - 1 after the signature byte
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:  # 14-bit width and height after the frame tag and start code
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    return None


def _check_size(width: int, height: int, *, path, what: str) -> None:
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise SceneFormatError(
            path,
            f"{what}: the image declares {width} x {height} pixels, more than the {MAX_IMAGE_SIDE} "
            "allowed per side (refused before decoding)",
        )
    if width == 0 or height == 0:
        raise SceneFormatError(path, f"{what}: image has no pixels (declares {width} x {height})")


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
        size = image_size(data, kind)
        if size is not None:
            _check_size(*size, path=path, what=what)
        image = _decode_raster(data, path=path, what=what, kind=kind)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise SceneFormatError(path, f"{what}: image has no pixels")
    return np.ascontiguousarray(image)


def _decode_raster(data: bytes, *, path, what: str, kind: str) -> np.ndarray:
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own limits (CV_IO_MAX_IMAGE_PIXELS) and decoder asserts
        raise SceneFormatError(path, f"{what}: cannot decode {kind.upper()} data ({str(e).strip()[-120:]})") from None
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
        texture = opengl_basisu.open(bytes(data))  # parses the header only
        _check_size(texture.width, texture.height, path=path, what=what)
        rgba = texture.transcode("rgba8", level=0).data
    except opengl_basisu.BasisuError as e:
        raise SceneFormatError(path, f"{what}: cannot decode Basis Universal data: {e}") from None
    if texture.container == "basis" and texture.y_flipped:
        rgba = rgba[::-1]
    return rgba if texture.has_alpha else rgba[:, :, :3]
