"""The habitat backend: pose and intrinsics conversions, its errors, and its views against raycast's.

habitat-sim is conda-only, so most of these run without it. The conversions are
pure functions. The backend's plumbing runs against a stand-in ``habitat_sim``
module written to habitat-sim's documented behaviour, not to our conventions:
its camera looks down -Z with +Y up, spans ``hfov`` across the width, reads the
agent rotation as ``[x, y, z, w]`` coefficients, places sensors at their spec
position (1.5 m up unless set), loads ``.glb`` stages Z-up unless their stage
config says otherwise, and returns RGBA and planar depth as vertically flipped
views of buffers the next render overwrites. Its images must equal the raycast
backend's. The last test renders the real Habitat fixture with habitat-sim
itself, where it imports.
"""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from renderers.backends import BackendUnavailable, RenderedView, available_backends, get_backend
from renderers.backends.habitat import (
    GPU_DEVICE_ENV,
    cam2world_from_habitat,
    choose_gpu_device,
    habitat_from_world,
    habitat_hfov,
    habitat_pose,
    view_from_observations,
)
from renderers.camera import intrinsics_from_hfov, pixel_rays
from renderers.scene import Y_UP_FROM_Z_UP, Scene
from renderers.sources import load_scene
from renderers.sources.gltf import stage_config_axes
from tests.rooms import LEVEL, pose, rotation
from tests.writers.gltf import GlbMesh, write_glb


def fake_rgba(depth: np.ndarray) -> np.ndarray:
    """(..., 4) uint8: the stand-in habitat's colour at planar depths (0 = no hit: transparent black)."""
    rgba = np.zeros((*depth.shape, 4), np.uint8)
    hit = depth > 0
    rgba[hit] = (200, 100, 0, 255)
    rgba[hit, 2] = np.clip(depth[hit] * 25.0, 0, 255).astype(np.uint8)  # blue encodes depth
    return rgba


def look_at(eye, target, roll_deg=0.0) -> np.ndarray:
    """OpenCV cam2world at ``eye`` looking at ``target``, image up towards world +Y, then rolled."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, (0.0, 1.0, 0.0))
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z], axis=1) @ rotation((0, 0, 1), roll_deg)
    return pose(R, eye)


def quat_rotate(coeffs, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by habitat coefficients ``[x, y, z, w]``: ``q v q*``."""
    u, w = np.asarray(coeffs[:3], float), float(coeffs[3])
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


# -- pure conversions ---------------------------------------------------------------


def random_poses(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q = rng.normal(size=4)
        R = cam2world_from_habitat(np.zeros(3), q / np.linalg.norm(q))[:3, :3]
        out.append(pose(R, rng.uniform(-5, 5, size=3)))
    return out


@pytest.mark.parametrize("c2w", random_poses(20))
def test_pose_round_trip(c2w):
    position, q = habitat_pose(c2w)
    assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
    np.testing.assert_allclose(position, c2w[:3, 3])
    np.testing.assert_allclose(cam2world_from_habitat(position, q), c2w, atol=1e-12)


def test_level_opencv_camera_is_habitat_identity():
    position, q = habitat_pose(pose(LEVEL, (1.0, 1.5, -2.0)))
    np.testing.assert_allclose(q, (1.0, 0.0, 0.0, 0.0), atol=1e-12)
    np.testing.assert_allclose(position, (1.0, 1.5, -2.0))


def test_yaw_left_is_a_rotation_about_world_up():
    # Turning the level camera 90 degrees left (looking along world -X) is yaw +90 about +Y.
    _, q = habitat_pose(pose(rotation((0, 1, 0), 90) @ LEVEL))
    h = math.sqrt(0.5)
    np.testing.assert_allclose(q, (h, 0.0, h, 0.0), atol=1e-12)


@pytest.mark.parametrize("c2w", [look_at((1, 1.5, 2), (-2, 0.2, -1), 7.0), *random_poses(4, seed=1)])
def test_habitat_camera_sees_the_same_world_rays(c2w):
    """Each pixel's ray, built habitat's way from the converted pose, is the OpenCV ray."""
    w, h = 40, 30
    K = intrinsics_from_hfov(w, h, 70.0)
    ours = pixel_rays(K, w, h) @ c2w[:3, :3].T  # (H, W, 3), camera z = 1
    _, (qw, qx, qy, qz) = habitat_pose(c2w)
    tan = math.tan(math.radians(habitat_hfov(K, w, h)) / 2)
    i, j = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # pixel centres, from the top-left corner
    x = (2 * i / w - 1) * tan  # habitat's near plane spans [-tan, tan] across the width ...
    y = (1 - 2 * j / h) * tan * h / w  # ... square pixels, +Y up, row 0 at the top
    cam = np.stack([x, y, -np.ones_like(x)], axis=-1)  # looks down -Z, at distance 1
    theirs = quat_rotate([qx, qy, qz, qw], cam)
    np.testing.assert_allclose(theirs, ours, atol=1e-9)


@pytest.mark.parametrize(
    "bad",
    [
        np.diag([1.0, 1.0, 1.0, 2.0]),  # last row
        pose(np.diag([1.0, 1.0, -1.0])),  # a reflection
        pose(1.1 * np.eye(3)),  # scaled
        np.eye(3),  # shape
        pose(np.full((3, 3), np.nan)),
    ],
)
def test_non_rigid_poses_are_refused(bad):
    with pytest.raises(ValueError, match="cam2world"):
        habitat_pose(bad)


def test_hfov_of_a_centred_K():
    assert habitat_hfov(intrinsics_from_hfov(64, 48, 75.0), 64, 48) == pytest.approx(75.0)
    assert habitat_hfov(intrinsics_from_hfov(256, 256, 60.0).astype(np.float32), 256, 256) == pytest.approx(60.0)


def _edit(K, **kw) -> np.ndarray:
    K = K.copy()
    for (r, c), v in {
        (0, 0): kw.get("fx"),
        (1, 1): kw.get("fy"),
        (0, 2): kw.get("cx"),
        (1, 2): kw.get("cy"),
        (0, 1): kw.get("skew"),
    }.items():
        if v is not None:
            K[r, c] = v
    return K


GOOD_K = intrinsics_from_hfov(64, 48, 90.0)  # f = 32, centre (31.5, 23.5)
BAD_K = {
    "fx != fy": _edit(GOOD_K, fy=40.0),
    "off-centre cx": _edit(GOOD_K, cx=32.0),  # W / 2, not (W - 1) / 2
    "off-centre cy": _edit(GOOD_K, cy=20.0),
    "skew": _edit(GOOD_K, skew=0.5),
}


@pytest.mark.parametrize("case", sorted(BAD_K))
def test_non_centred_square_pixel_K_is_refused(case):
    with pytest.raises(ValueError, match="centred square-pixel pinhole") as err:
        habitat_hfov(BAD_K[case], 64, 48)
    assert "--backend raycast" in str(err.value)


def test_observations_become_clean_rgb_and_depth():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 255
    depth = np.array([[1.5, 0.0, np.nan], [np.inf, -1.0, 2.0]], np.float32)
    view = view_from_observations(rgba, depth)
    assert isinstance(view, RenderedView)
    assert view.rgb.shape == (2, 3, 3) and view.rgb.dtype == np.uint8 and (view.rgb[..., 0] == 10).all()
    assert view.depth.dtype == np.float32
    np.testing.assert_array_equal(view.depth, [[1.5, 0, 0], [0, 0, 2.0]])
    depth[0, 0] = 9.0  # the view owns its arrays
    assert view.depth[0, 0] == 1.5


def test_stage_frame_map():
    z_up, y_front = (0, 0, 1), (0, 1, 0)  # habitat's default for .glb stages
    np.testing.assert_allclose(habitat_from_world(Y_UP_FROM_Z_UP, z_up, y_front), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(habitat_from_world(np.eye(4), z_up, y_front), Y_UP_FROM_Z_UP, atol=1e-12)


# -- errors ----------------------------------------------------------------------------


def test_habitat_is_registered():
    assert "habitat" in available_backends()


def test_missing_habitat_sim_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # import fails even where it is installed
    scene = Scene(name="s", vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32))
    with pytest.raises(BackendUnavailable) as err:
        get_backend("habitat").open(scene)
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert "conda-only" in message
    assert "conda install habitat-sim -c conda-forge -c aihabitat" in message
    assert "habitat-sim headless" in message
    assert "--backend raycast" in message


# -- the backend against a stand-in habitat_sim ------------------------------------------


def fake_habitat_sim() -> types.ModuleType:
    """``habitat_sim`` as far as the backend uses it, ray cast with Open3D."""
    import open3d as o3d

    hs = types.ModuleType("habitat_sim")
    hs.SensorType = SimpleNamespace(COLOR="COLOR", DEPTH="DEPTH")
    hs.SensorSubType = SimpleNamespace(PINHOLE="PINHOLE")
    hs.gfx = SimpleNamespace(NO_LIGHT_KEY="no_lights")
    hs.simulators = []  # every Simulator made, for the tests to inspect

    class SimulatorConfiguration:
        def __init__(self):
            self.scene_id = "NONE"
            self.enable_physics = True
            self.gpu_device_id = 0
            self.create_renderer = False
            self.scene_light_setup = ""

    class CameraSensorSpec:
        def __init__(self):
            self.uuid = "rgba_camera"
            self.sensor_type = hs.SensorType.COLOR
            self.sensor_subtype = hs.SensorSubType.PINHOLE
            self.resolution = [128, 128]  # [H, W]
            self.position = [0.0, 1.5, 0.0]  # habitat's default: 1.5 m above the agent
            self.orientation = [0.0, 0.0, 0.0]
            self.hfov = 90.0

    class AgentConfiguration:
        def __init__(self):
            self.sensor_specifications = []

    class AgentState:
        def __init__(self, position=None, rotation=None):
            self.position = np.zeros(3) if position is None else position
            self.rotation = [0.0, 0.0, 0.0, 1.0] if rotation is None else rotation

    class Agent:
        def __init__(self):
            self.position, self.rotation = np.zeros(3), [0.0, 0.0, 0.0, 1.0]

        def set_state(self, state, reset_sensors=True, infer_sensor_states=True, is_initial=False):
            # habitat-sim: a list or ndarray rotation goes through quat_from_coeffs([x, y, z, w])
            assert isinstance(state.rotation, (list, np.ndarray)) and len(state.rotation) == 4
            assert abs(np.linalg.norm(state.rotation) - 1.0) < 1e-4
            assert reset_sensors
            self.position = np.asarray(state.position, dtype=np.float64)
            self.rotation = [float(c) for c in state.rotation]

    class Simulator:
        def __init__(self, config):
            self.config, self.closed = config, False
            self.scene_id = config.sim_cfg.scene_id
            # habitat: a .glb stage is Z-up unless a stage config beside it says otherwise,
            # which is also what load_scene(..., up="z") does.
            self._mesh = load_scene("gltf", self.scene_id, up="z")
            v = self._mesh.vertices.astype(np.float64)[self._mesh.faces]  # (F, 3, 3)
            self._corners = v[:, 0]  # (F, 3)
            self._fronts = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # (F, 3): counter-clockwise sides
            self._agent = Agent()
            self.specs = {s.uuid: s for s in config.agents[0].sensor_specifications}
            self._buffers: dict[str, np.ndarray] = {}
            hs.simulators.append(self)

        def get_stage_initialization_template(self):
            up, front = stage_config_axes(Path(self.scene_id)) or ([0, 0, 1], [0, 1, 0])
            return SimpleNamespace(orient_up=up, orient_front=front)

        def get_agent(self, agent_id):
            assert agent_id == 0
            return self._agent

        def get_sensor_observations(self):
            obs = {}
            for uuid, spec in self.specs.items():
                depth = self._cast(spec)  # (H, W), row 0 at the top
                if spec.sensor_type == hs.SensorType.DEPTH:
                    image = depth
                else:
                    image = fake_rgba(depth)
                buffer = self._buffers.setdefault(uuid, np.empty_like(image))
                buffer[...] = image[::-1]  # GL rows, bottom first, in a buffer the next call reuses
                obs[uuid] = np.flip(buffer, axis=0)
            return obs

        def _cast(self, spec):
            assert spec.sensor_subtype == hs.SensorSubType.PINHOLE and not np.any(spec.orientation)
            h, w = spec.resolution
            tan = math.tan(math.radians(float(spec.hfov)) / 2)
            i, j = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            x = (2 * i / w - 1) * tan
            y = (1 - 2 * j / h) * tan * h / w
            cam = np.stack([x, y, -np.ones_like(x)], axis=-1).reshape(-1, 3)
            dirs = quat_rotate(self._agent.rotation, cam)
            origin = self._agent.position + quat_rotate(self._agent.rotation, np.asarray(spec.position, float))
            rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=1).astype(np.float32)
            # habitat-sim culls every back face, doubleSided or not (flat shading): as a rasterizer does, it
            # draws the faces whose front side holds the camera centre
            drawn = np.einsum("fc,fc->f", self._fronts, origin - self._corners) > 0
            rs = o3d.t.geometry.RaycastingScene()
            rs.add_triangles(o3d.core.Tensor(self._mesh.vertices), o3d.core.Tensor(self._mesh.faces[drawn]))
            t = rs.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()  # direction z is -1: t is planar z
            return np.where(np.isfinite(t), t, 0.0).astype(np.float32).reshape(h, w)  # 0: no hit

        def close(self):
            self.closed = True

    hs.SimulatorConfiguration = SimulatorConfiguration
    hs.CameraSensorSpec = CameraSensorSpec
    hs.agent = SimpleNamespace(AgentConfiguration=AgentConfiguration, AgentState=AgentState)
    hs.Configuration = lambda sim_cfg, agents: SimpleNamespace(sim_cfg=sim_cfg, agents=agents)
    hs.Simulator = Simulator
    return hs


@pytest.fixture
def fake_habitat(monkeypatch) -> types.ModuleType:
    hs = fake_habitat_sim()
    monkeypatch.setitem(sys.modules, "habitat_sim", hs)
    return hs


def box(lo, hi, inward: bool = True, material: int | None = None) -> GlbMesh:
    """An axis-aligned box's 12 triangles, their fronts (counter-clockwise sides) inwards or outwards."""
    v = np.array([[x, y, z] for z in (lo[2], hi[2]) for y in (lo[1], hi[1]) for x in (lo[0], hi[0])], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return GlbMesh(v, faces if inward else faces[:, ::-1], material=material)


@pytest.fixture(scope="module")
def room_glb(tmp_path_factory) -> Path:
    """A closed 6 m x 6 m x 3 m room (Z-up file, as Habitat stages are) with a box and a table in it,
    every face turned to the side a camera in the room sees."""
    meshes = [box((-3, -3, 0), (3, 3, 3)), box((0.5, 1.0, 0.0), (1.5, 2.0, 1.2), inward=False),
              box((-2, -1, 0.7), (-1, 0.5, 0.8), inward=False)]  # fmt: skip
    path = tmp_path_factory.mktemp("habitat") / "room.glb"
    path.write_bytes(write_glb(meshes))
    return path


POSES = {
    "level": pose(LEVEL, (0.0, 1.5, 0.0)),
    "tilted and rolled": look_at((-2.0, 1.6, 2.0), (1.0, 0.4, -1.5), roll_deg=8.0),
    "looking down": look_at((0.5, 2.5, -1.0), (0.6, 0.0, -1.4), roll_deg=-20.0),
}


def render_both(scene: Scene, c2w, K, w, h) -> tuple[RenderedView, RenderedView]:
    with get_backend("habitat").open(scene) as hab, get_backend("raycast").open(scene) as ray:
        return hab.render(K, c2w, w, h), ray.render(K, c2w, w, h)


@pytest.mark.parametrize("name", sorted(POSES))
@pytest.mark.parametrize("up", ["z", "y"])  # "y": our loader and habitat's disagree on the file's axes
def test_views_match_raycast(fake_habitat, room_glb, name, up):
    scene = load_scene("gltf", room_glb, up=up)
    # The same camera in the room, in our world: habitat's world is the file turned Z-up to Y-up.
    c2w = scene.file_to_world @ np.linalg.inv(Y_UP_FROM_Z_UP) @ POSES[name]
    w, h = 48, 32
    K = intrinsics_from_hfov(w, h, 75.0)
    hab, ray = render_both(scene, c2w, K, w, h)
    assert hab.rgb.shape == (h, w, 3) and hab.rgb.dtype == np.uint8
    assert hab.depth.shape == (h, w) and hab.depth.dtype == np.float32
    assert ray.valid_fraction > 0.9
    np.testing.assert_array_equal(hab.depth > 0, ray.depth > 0)
    np.testing.assert_allclose(hab.depth, ray.depth, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(hab.rgb, fake_rgba(hab.depth)[..., :3])


def test_simulator_config_cache_and_close(fake_habitat, room_glb):
    scene = load_scene("gltf", room_glb, up="z")
    c2w = POSES["level"]
    with get_backend("habitat").open(scene) as renderer:
        renderer.render(intrinsics_from_hfov(48, 32, 60.0), c2w, 48, 32)
        renderer.render(intrinsics_from_hfov(48, 32, 60.0), look_at((0, 1, 0), (1, 1, 1)), 48, 32)
        assert len(fake_habitat.simulators) == 1  # same sensor: same simulator
        first = fake_habitat.simulators[0]
        cfg = first.config.sim_cfg
        assert cfg.scene_id == str(room_glb) and cfg.enable_physics is False
        assert sorted(first.specs) == ["color", "depth"]
        for spec in first.specs.values():
            assert spec.resolution == [32, 48] and float(spec.hfov) == pytest.approx(60.0)
            assert list(spec.position) == [0.0, 0.0, 0.0]
        view = renderer.render(intrinsics_from_hfov(64, 64, 90.0), c2w, 64, 64)
        assert view.depth.shape == (64, 64)
        assert len(fake_habitat.simulators) == 2 and first.closed  # a new sensor: rebuilt
        assert not fake_habitat.simulators[1].closed
    assert fake_habitat.simulators[1].closed


def test_views_own_their_arrays(fake_habitat, room_glb):
    scene = load_scene("gltf", room_glb, up="z")
    K = intrinsics_from_hfov(32, 32, 90.0)
    with get_backend("habitat").open(scene) as renderer:
        a = renderer.render(K, POSES["level"], 32, 32)
        kept = a.rgb.copy(), a.depth.copy()
        b = renderer.render(K, POSES["looking down"], 32, 32)
    assert not np.array_equal(b.rgb, kept[0]) and not np.array_equal(b.depth, kept[1])
    np.testing.assert_array_equal(a.rgb, kept[0])
    np.testing.assert_array_equal(a.depth, kept[1])


def test_render_refuses_an_off_centre_K(fake_habitat, room_glb):
    scene = load_scene("gltf", room_glb, up="z")
    with get_backend("habitat").open(scene) as renderer, pytest.raises(ValueError, match="centred square-pixel"):
        renderer.render(BAD_K["off-centre cx"], POSES["level"], 64, 48)


def test_synthetic_scenes_are_refused(fake_habitat, tmp_path):
    synthetic = load_scene("synthetic", "small/0")
    with pytest.raises(ValueError, match="--backend raycast"):
        get_backend("habitat").open(synthetic)
    gone = Scene(name="gone", vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.uint32))
    gone.source = str(tmp_path / "gone.glb")
    with pytest.raises(ValueError, match="is not a file"):
        get_backend("habitat").open(gone)


# -- the GPU device ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, gpus, device",
    [
        ({}, 0, -1),  # no CUDA device: habitat-sim finds no EGL device for id 0
        ({}, 2, 0),
        ({"CUDA_VISIBLE_DEVICES": ""}, 2, -1),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 1, -1),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, 1, -1),
        ({"CUDA_VISIBLE_DEVICES": "3,1"}, 4, 0),  # ids count among the visible devices
        ({GPU_DEVICE_ENV: "2"}, 0, 2),
        ({GPU_DEVICE_ENV: " -1 ", "CUDA_VISIBLE_DEVICES": "0"}, 1, -1),
        ({GPU_DEVICE_ENV: "1", "CUDA_VISIBLE_DEVICES": ""}, 0, 1),  # the override wins
    ],
)
def test_gpu_device_follows_the_machine_unless_overridden(environ, gpus, device):
    assert choose_gpu_device(environ, lambda: gpus) == device


@pytest.mark.parametrize("bad", ["gpu0", "-2", "1.5"])
def test_a_bad_gpu_device_override_names_the_variable(bad):
    with pytest.raises(ValueError, match=GPU_DEVICE_ENV):
        choose_gpu_device({GPU_DEVICE_ENV: bad}, lambda: 1)


@pytest.mark.parametrize("environ, device", [({"CUDA_VISIBLE_DEVICES": ""}, -1), ({GPU_DEVICE_ENV: "1"}, 1)])
def test_the_simulator_gets_the_chosen_device(fake_habitat, room_glb, monkeypatch, environ, device):
    monkeypatch.delenv(GPU_DEVICE_ENV, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with get_backend("habitat").open(load_scene("gltf", room_glb, up="z")) as renderer:
        renderer.render(intrinsics_from_hfov(16, 16, 60.0), POSES["level"], 16, 16)
    assert fake_habitat.simulators[0].config.sim_cfg.gpu_device_id == device


# -- back faces: habitat-sim culls them all, so double-sided faces are handed over with both windings -----


@pytest.fixture(scope="module")
def outward_room(tmp_path_factory):
    """A room as ``simple_room.glb`` is one: its walls, floor and ceiling face outwards; a box inside faces out."""

    def make(double_sided: bool) -> Path:
        meshes = [box((-3, -3, 0), (3, 3, 3), inward=False, material=0),
                  box((0.5, 1.0, 0.0), (1.5, 2.0, 1.2), inward=False, material=0)]  # fmt: skip
        path = tmp_path_factory.mktemp("outward") / "room.glb"
        path.write_bytes(write_glb(meshes, materials=[{"doubleSided": double_sided}]))
        return path

    return make


@pytest.mark.parametrize("name", sorted(POSES))
@pytest.mark.parametrize("double_sided", [True, False], ids=["double-sided", "single-sided"])
def test_inside_a_room_both_backends_follow_double_sided(fake_habitat, outward_room, name, double_sided):
    # Double-sided walls are seen from inside by both backends; single-sided ones by neither.
    path = outward_room(double_sided)
    scene = load_scene("gltf", path, up="z")
    c2w = scene.file_to_world @ np.linalg.inv(Y_UP_FROM_Z_UP) @ POSES[name]
    K = intrinsics_from_hfov(48, 32, 75.0)
    with get_backend("habitat").open(scene) as hab, get_backend("raycast").open(scene) as ray:
        drawn = Path(hab.path)
        a, b = hab.render(K, c2w, 48, 32), ray.render(K, c2w, 48, 32)
        assert (drawn != path) == double_sided and drawn.is_file()  # double-sided: habitat draws a copy
    assert not drawn.exists() or not double_sided  # the copy goes with the renderer
    assert b.valid_fraction == 1.0 if double_sided else b.valid_fraction < 0.5
    np.testing.assert_array_equal(a.depth > 0, b.depth > 0)
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-4, rtol=1e-4)


# -- the real thing ------------------------------------------------------------------------


def render_fixture_both(shared_fixtures, pose):
    """The habitat fixture room seen from ``pose`` by the real habitat-sim and by raycast, 128x96 at 90 degrees."""
    pytest.importorskip("habitat_sim")
    scene = load_scene("gltf", shared_fixtures / "habitat" / "simple_room.glb", up="z")
    w, h = 128, 96
    return render_both(scene, pose, intrinsics_from_hfov(w, h, 90.0), w, h)


REAL_POSES = {
    "table": look_at((-3.0, 1.6, 3.0), (0.25, 0.6, -0.25)),
    "box, rolled": look_at((-2.5, 1.4, -3.0), (2.4, 0.8, 1.4), roll_deg=8.0),
    "down, rolled": look_at((0.0, 2.0, 4.0), (0.0, 0.15, 0.0), roll_deg=-5.0),
}


@pytest.mark.parametrize("name", sorted(REAL_POSES))
def test_real_habitat_agrees_with_raycast_on_simple_room(shared_fixtures, name):
    hab, ray = render_fixture_both(shared_fixtures, REAL_POSES[name])
    assert ray.valid_fraction > 0.4  # the view holds both floor and the void around the room
    valid_h, valid_r = hab.depth > 0, ray.depth > 0
    assert np.mean(valid_h == valid_r) > 0.98
    both = valid_h & valid_r
    assert np.median(np.abs(hab.depth[both] - ray.depth[both])) < 0.02
    assert hab.rgb[valid_h].any(), "habitat's colour is all black"


# Cameras inside the fixture's 2 m cube (x 1.37-3.37, y 0.15-2.15, z 0.39-2.39 in our world), where
# `pairgen render` samples them: its faces look outwards, and its material is doubleSided.
INSIDE_POSES = {
    "level": look_at((1.9, 1.6, 1.9), (3.4, 1.4, 0.8)),
    "corner, rolled": look_at((2.8, 1.2, 1.0), (1.4, 2.0, 2.4), roll_deg=6.0),
    "down": look_at((2.4, 1.9, 1.4), (2.3, 0.2, 2.2), roll_deg=-4.0),
}


@pytest.mark.parametrize("name", sorted(INSIDE_POSES))
def test_real_habitat_agrees_with_raycast_inside_the_room(shared_fixtures, name):
    hab, ray = render_fixture_both(shared_fixtures, INSIDE_POSES[name])
    assert ray.valid_fraction == 1.0  # walls all round, 0.2-2.5 m away
    assert hab.valid_fraction > 0.98
    both = (hab.depth > 0) & (ray.depth > 0)
    assert np.median(np.abs(hab.depth[both] - ray.depth[both])) < 0.02
    assert hab.rgb[both].any(), "habitat's colour is all black"
