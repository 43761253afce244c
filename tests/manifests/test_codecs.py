"""Image and depth encodings: exact round trips, and files other readers decode the same."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from manifests.codecs import decode_depth, decode_rgb, depth_to_mm, encode_depth, encode_rgb


def test_depth_round_trip_in_millimetres():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.2, 20.0, (37, 53)).astype(np.float32)
    depth[3, :] = 0.0  # invalid
    depth[5, 7], depth[6, 8], depth[7, 9] = np.nan, np.inf, 70.0  # invalid, invalid, beyond 65.535 m
    back = decode_depth(encode_depth(depth))
    assert back.shape == depth.shape and back.dtype == np.float32
    ok = np.isfinite(depth) & (depth > 0) & (depth < 65.0)
    np.testing.assert_allclose(back[ok], depth[ok], atol=0.0005 + 1e-6)
    assert np.all(back[~ok] == 0)


def test_depth_to_mm_rounds_half_to_even_and_zeroes_what_does_not_fit():
    metres = [0.0, -0.0, 0.0004, 0.0005, 0.0015, 0.0025, 1.0, 2.0015, 65.5345, 65.535, 65.5355, 70.0, -1.0,
              np.nan, np.inf, -np.inf]  # fmt: skip
    expected = [0, 0, 0, 0, 2, 2, 1000, 2001, 65534, 65535, 0, 0, 0, 0, 0, 0]
    mm = depth_to_mm(np.array(metres, np.float32))
    assert mm.dtype == np.uint16 and mm.tolist() == expected
    assert depth_to_mm(np.array([0.0025, 1e30, 2.0015])).tolist() == [2, 0, 2001]  # float64 in: as float32
    assert depth_to_mm(np.float32(1.2344)).tolist() == 1234 and depth_to_mm(2.0).shape == ()  # scalars
    big_endian = depth_to_mm(np.array(metres, np.float32).reshape(4, 4).T, ">u2")  # Fortran-ordered in
    assert big_endian.dtype == np.dtype(">u2") and big_endian.flags.c_contiguous
    assert big_endian.T.ravel().tolist() == expected


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (48, 64), (256, 256)])
def test_depth_png_is_standard(shape):
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.0, 60.0, shape).astype(np.float32)
    data = encode_depth(depth)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "I;16" and im.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(im), depth_to_mm(depth))
    cv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert cv.dtype == np.uint16
    np.testing.assert_array_equal(cv, depth_to_mm(depth))
    assert encode_depth(np.asfortranarray(depth)) == data  # any memory layout


def test_rgb_png_is_lossless_and_jpeg_close():
    rng = np.random.default_rng(2)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    np.testing.assert_array_equal(decode_rgb(encode_rgb(rgb, "png")), rgb)
    jpeg = decode_rgb(encode_rgb(rgb, "jpeg", quality=95))
    assert jpeg.shape == rgb.shape and np.abs(jpeg.astype(int) - rgb).mean() < 12  # 4:2:0 on random colour blocks
    with pytest.raises(ValueError, match="unknown image format"):
        encode_rgb(rgb, "gif")
