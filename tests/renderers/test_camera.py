"""Camera conventions of docs/design.md: intrinsics, unprojection and projection agree."""

from __future__ import annotations

import numpy as np
import pytest

from covisibility import intrinsics_from_hfov, project, unproject_depth


def look(rotation_deg=(0, 0, 0), position=(0, 0, 0)) -> np.ndarray:
    """cam2world from Euler angles (x, y, z in degrees) and a position."""
    ax, ay, az = np.radians(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = position
    return m


def test_intrinsics_follow_the_design_conventions():
    K = intrinsics_from_hfov(256, 192, 60.0)
    assert K[0, 2] == 127.5 and K[1, 2] == 95.5
    assert K[0, 0] == pytest.approx(128 / np.tan(np.radians(30)))
    assert K[0, 0] == K[1, 1]


@pytest.mark.parametrize("bad", [(0, 10, 60), (10, 10, 0), (10, 10, 180)])
def test_intrinsics_reject_bad_values(bad):
    with pytest.raises(ValueError):
        intrinsics_from_hfov(*bad)


def test_edge_pixels_span_the_field_of_view():
    K = intrinsics_from_hfov(100, 50, 90.0)
    # Left edge of pixel 0 is at u = -0.5; right edge of pixel 99 at u = 99.5.
    left = (-0.5 - K[0, 2]) / K[0, 0]
    right = (99.5 - K[0, 2]) / K[0, 0]
    assert np.degrees(np.arctan(right) - np.arctan(left)) == pytest.approx(90.0)


@pytest.mark.parametrize("pose", [look(), look((10, 35, -5), (1, 1.5, -2)), look((-8, 200, 4), (-3, 1.2, 0.5))])
def test_unproject_then_project_round_trips(pose):
    K = intrinsics_from_hfov(32, 24, 60.0)
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 5.0, size=(24, 32))
    depth[3, 4] = 0.0
    points, valid = unproject_depth(depth, K, pose)
    assert not valid[3, 4] and valid.sum() == 24 * 32 - 1
    uv, z = project(points, K, pose)
    j, i = np.mgrid[0:24, 0:32]
    np.testing.assert_allclose(uv[valid], np.stack([i, j], -1)[valid], atol=1e-9)
    np.testing.assert_allclose(z[valid], depth[valid], atol=1e-12)


def test_level_camera_in_the_y_up_world():
    """A level camera looking along Habitat's front (-Z): x right, y down, z forward."""
    pose = np.diag([1.0, -1.0, -1.0, 1.0])
    pose[:3, 3] = (0.0, 1.5, 0.0)
    K = intrinsics_from_hfov(11, 11, 60.0)
    ahead, right, above = (0.0, 1.5, -2.0), (0.5, 1.5, -2.0), (0.0, 2.0, -2.0)
    uv, z = project(np.array([ahead, right, above]), K, pose)
    np.testing.assert_allclose(z, 2.0)
    np.testing.assert_allclose(uv[0], (5.0, 5.0))
    assert uv[1, 0] > 5.0  # world +x is to the right in the image
    assert uv[2, 1] < 5.0  # world +y (up) is towards the top row
