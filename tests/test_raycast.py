"""The raycast backend: planar depth, projection agreement, texture and vertex colours."""

from __future__ import annotations

import numpy as np
import pytest

from renderers.backends import available_backends, get_backend
from renderers.camera import intrinsics_from_hfov, project, unproject_depth
from renderers.scene import Material, Scene, Texture, Wrap

LEVEL = np.diag([1.0, -1.0, -1.0, 1.0])  # looks along -Z, image up = world +Y


def pose(R=LEVEL[:3, :3], t=(0.0, 0.0, 0.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = t
    return m


def rotation(axis, deg) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    th = np.radians(deg)
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k


def quad(corners, uvs=None, colors=None, texture=None) -> Scene:
    v = np.asarray(corners, np.float32)
    return Scene(
        name="quad",
        vertices=v,
        faces=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
        uvs=None if uvs is None else np.asarray(uvs, np.float32),
        vertex_colors=None if colors is None else np.asarray(colors, np.uint8),
        materials=(Material(texture=texture),),
    ).validate()


def wall(z=-3.0, half=50.0, **kw) -> Scene:
    """A big quad facing +Z at depth z; uv (0,0) top-left as seen from the origin."""
    return quad([[-half, half, z], [-half, -half, z], [half, -half, z], [half, half, z]], **kw)


def render(scene, K, c2w, w, h):
    with get_backend("raycast").open(scene) as r:
        return r.render(K, c2w, w, h)


def test_raycast_is_registered():
    assert "raycast" in available_backends()
    with pytest.raises(ValueError, match="unknown render backend"):
        get_backend("nope")


def test_facing_a_plane_gives_its_planar_depth_everywhere():
    K = intrinsics_from_hfov(64, 48, 90.0)
    view = render(wall(z=-3.0), K, pose(), 64, 48)
    np.testing.assert_allclose(view.depth, 3.0, atol=1e-3)  # planar, not ray length
    assert view.valid_fraction == 1.0


@pytest.mark.parametrize("axis,deg,t", [((1, 0, 0), 12, (0.3, 1.2, 0.5)), ((0, 1, 0), -25, (-1, 0.4, 0.2)), ((1, 1, 0), 18, (0, 0, 1))])
def test_tilted_camera_depth_matches_the_plane(axis, deg, t):
    K = intrinsics_from_hfov(40, 30, 60.0)
    c2w = pose(rotation(axis, deg) @ LEVEL[:3, :3], t)
    view = render(wall(z=-4.0), K, c2w, 40, 30)
    points, valid = unproject_depth(view.depth, K, c2w)
    assert valid.all()
    np.testing.assert_allclose(points[..., 2], -4.0, atol=1e-3)  # every unprojected pixel lies on the wall


def test_known_world_point_lands_on_the_predicted_pixel():
    K = intrinsics_from_hfov(80, 60, 70.0)
    c2w = pose(rotation((0, 1, 0), 20) @ LEVEL[:3, :3], (0.2, 1.5, 0.0))
    # The world point on pixel (23, 17)'s ray at planar depth 3: K and the pose predict it there.
    i, j, d = 23, 17, 3.0
    target = c2w[:3, :3] @ (np.linalg.inv(K) @ [i, j, 1.0] * d) + c2w[:3, 3]
    (u, v), z = project(target, K, c2w)
    assert (u, v, float(z)) == pytest.approx((i, j, d))
    # A small red square through the target, facing +Z, on a grey wall behind it.
    s = 0.04
    marker = quad([target + o for o in ([-s, s, 0], [-s, -s, 0], [s, -s, 0], [s, s, 0])], colors=[[255, 0, 0]] * 4)
    back = wall(z=target[2] - 0.5, colors=[[128, 128, 128]] * 4)
    scene = Scene(
        name="marker",
        vertices=np.concatenate([marker.vertices, back.vertices]),
        faces=np.concatenate([marker.faces, back.faces + 4]),
        vertex_colors=np.concatenate([marker.vertex_colors, back.vertex_colors]),
    ).validate()
    view = render(scene, K, c2w, 80, 60)
    assert tuple(view.rgb[j, i]) == (255, 0, 0)
    assert float(view.depth[j, i]) == pytest.approx(d, abs=1e-3)
    red = np.argwhere((view.rgb == (255, 0, 0)).all(axis=-1))
    assert np.abs(red.mean(axis=0) - (j, i)).max() < 1.0


def test_texture_pattern_lands_at_the_expected_pixels():
    # 2x2 checker: top-left red, top-right green, bottom-left blue, bottom-right white
    img = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    img = np.repeat(np.repeat(img, 8, axis=0), 8, axis=1)
    tex = Texture(img, Wrap.CLAMP_TO_EDGE, Wrap.CLAMP_TO_EDGE)
    # a 2 m x 2 m quad at distance 1 filling a 90 degree view exactly
    scene = wall(z=-1.0, half=1.0, uvs=[[0, 0], [0, 1], [1, 1], [1, 0]], texture=tex)
    view = render(scene, intrinsics_from_hfov(32, 32, 90.0), pose(), 32, 32)
    assert tuple(view.rgb[4, 4]) == (255, 0, 0)
    assert tuple(view.rgb[4, 27]) == (0, 255, 0)
    assert tuple(view.rgb[27, 4]) == (0, 0, 255)
    assert tuple(view.rgb[27, 27]) == (255, 255, 255)


@pytest.mark.parametrize("mode,expect", [(Wrap.REPEAT, (255, 0, 0)), (Wrap.MIRRORED_REPEAT, (0, 255, 0)), (Wrap.CLAMP_TO_EDGE, (0, 255, 0))])
def test_wrap_modes(mode, expect):
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, :4] = (255, 0, 0)  # left half red, right half green
    img[:, 4:] = (0, 255, 0)
    tex = Texture(img, mode, mode)
    # u runs 1..2 across the view: REPEAT starts over (red), MIRROR and CLAMP stay green at its left
    scene = wall(z=-1.0, half=1.0, uvs=[[1, 0], [1, 1], [2, 1], [2, 0]], texture=tex)
    view = render(scene, intrinsics_from_hfov(32, 32, 90.0), pose(), 32, 32)
    assert tuple(view.rgb[16, 3]) == expect


def test_vertex_colours_interpolate():
    scene = quad([[-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, -1]], colors=[[255, 0, 0], [0, 0, 0], [0, 0, 255], [0, 0, 0]])
    view = render(scene, intrinsics_from_hfov(33, 33, 90.0), pose(), 33, 33)
    centre = view.rgb[16, 16].astype(int)
    assert abs(centre[0] - 128) <= 3 and abs(centre[2] - 128) <= 3 and centre[1] == 0
    assert view.rgb[1, 1, 0] > 230 and view.rgb[31, 31, 2] > 230


def test_misses_are_zero_depth_and_black():
    K = intrinsics_from_hfov(16, 16, 60.0)
    view = render(wall(z=-2.0), K, pose(LEVEL[:3, :3] @ rotation((1, 0, 0), 180)), 16, 16)  # looking away
    assert view.valid_fraction == 0.0 and not view.rgb.any()
