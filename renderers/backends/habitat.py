"""The ``habitat`` backend: GPU rendering with habitat-sim, where it is installed.

habitat-sim is conda-only (no PyPI wheels), so it is imported lazily, in
:meth:`HabitatBackend.open`; where it does not import, ``open`` raises
:class:`~renderers.backends.BackendUnavailable` with the install route.

Outputs follow docs/design.md exactly as the ``raycast`` backend's do
(:class:`~renderers.backends.RenderedView`), so the two are interchangeable.
What the conversion rests on:

* **Camera axes.** Ours is OpenCV (x right, y down, z forward); a habitat
  camera looks down its local -Z with +Y up. The same camera therefore has
  habitat rotation ``R_habitat = R_opencv @ diag(1, -1, -1)``
  (:func:`habitat_pose`).
* **Pose.** One agent carries two sensors (``"color"``, ``"depth"``) at the
  agent's origin with zero orientation; the whole camera pose goes into
  ``AgentState(position, rotation)``. ``Agent.set_state(state,
  reset_sensors=True)`` puts the sensors back at their spec pose relative to
  the agent body, whose rotation is set whole (not only yaw), so tilt and roll
  apply. The rotation is passed as a list ``[x, y, z, w]``, which
  ``set_state`` turns into a quaternion with ``quat_from_coeffs`` (old and
  current releases alike; no numpy-quaternion object is needed).
* **Intrinsics.** A pinhole ``CameraSensorSpec`` takes only ``hfov`` and the
  resolution ``[H, W]``: its near plane is ``2 near tan(hfov / 2)`` wide and
  ``H / W`` times that high, edge to edge, so pixel centres sit at
  ``fx = fy = (W / 2) / tan(hfov / 2)``, ``(cx, cy) = ((W - 1) / 2, (H - 1) / 2)``:
  exactly docs/design.md's centred K. Any other K is refused (:func:`habitat_hfov`).
* **World frame.** Habitat loads the scene file itself and turns it to its
  Y-up world with the stage's ``up``/``front`` (Z-up by default for ``.glb``,
  overridden by a ``<name>.stage_config.json``), the frame docs/design.md adopts.
  Should habitat's stage frame differ from the one our loader applied
  (``Scene.file_to_world``), poses are mapped into habitat's frame first
  (:func:`habitat_from_world`), so the views still match.
* **Face colours.** habitat-sim reads the file with its own importer, not
  ours, so what it makes of per-face PLY colours (:attr:`Scene.face_colors`)
  is its own and untested here: :meth:`HabitatBackend.open` logs a warning for
  such a scene, whose views may then differ from raycast's (which renders them).
* **Observations.** Colour comes back ``(H, W, 4)`` uint8 RGBA, depth
  ``(H, W)`` float32 planar z in metres with 0 where nothing was hit (the far
  plane is patched to 0). Both are vertically flipped views of buffers that
  the next render overwrites, so they are copied.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from renderers.backends.base import BackendUnavailable, RenderBackend, RenderedView, SceneRenderer, register_backend
from renderers.backends.habitat_stage import double_sided_copy
from renderers.scene import Scene
from renderers.sources.gltf import rotation_from_up_front

__all__ = [
    "GPU_DEVICE_ENV",
    "INSTALL_HINT",
    "HabitatBackend",
    "choose_gpu_device",
    "cam2world_from_habitat",
    "habitat_from_world",
    "habitat_hfov",
    "habitat_pose",
    "import_habitat_sim",
    "view_from_observations",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "habitat-sim is conda-only (no PyPI wheels): install it with "
    "`conda install habitat-sim -c conda-forge -c aihabitat` "
    "(on a machine without a display: `conda install habitat-sim headless -c conda-forge -c aihabitat`), "
    "or render with `--backend raycast` (the default CPU renderer, same outputs)"
)

# OpenCV camera axes -> habitat camera axes (and back: it is its own inverse).
OPENCV_TO_HABITAT = np.diag([1.0, -1.0, -1.0])

# Tolerances, in one place.
ROTATION_TOL = 1e-4  # max |R^T R - I| and |last row - (0, 0, 0, 1)| of a pose
K_TOL = 1e-4  # pixels for the principal point; relative for fx vs fy

COLOR_UUID = "color"
DEPTH_UUID = "depth"

#: an integer >= -1 in this variable is habitat-sim's ``gpu_device_id``, whatever the machine has
GPU_DEVICE_ENV = "PAIRGEN_HABITAT_GPU"
#: ``CUDA_VISIBLE_DEVICES`` values that hide every device (CUDA stops at the first entry that is not one)
_NO_CUDA = ("", "-1", "NoDevFiles")


def _nvidia_devices() -> int:
    """How many NVIDIA GPUs the kernel driver exposes here (``/dev/nvidia0``, ``/dev/nvidia1``...)."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


def choose_gpu_device(
    environ: Mapping[str, str] = os.environ, nvidia_devices: Callable[[], int] = _nvidia_devices
) -> int:
    """habitat-sim's ``gpu_device_id`` on this machine.

    habitat-sim finds its EGL device by CUDA device id: on a machine without
    a CUDA device, id 0 fails (``unable to find EGL device for CUDA device
    0``), and -1 asks for none (habitat-sim 0.3.2+ skips the CUDA match,
    PR 2378; older releases hand Magnum its "not set" value, so the first EGL
    device, Mesa's, is taken).

    Parameters
    ----------
    environ : mapping
        The process environment: ``PAIRGEN_HABITAT_GPU`` (:data:`GPU_DEVICE_ENV`)
        overrides the choice; ``CUDA_VISIBLE_DEVICES`` set to ``""``, ``-1``
        or ``NoDevFiles`` hides every CUDA device.
    nvidia_devices : callable
        Counts the NVIDIA GPUs the machine has (the ``/dev/nvidiaN`` device files).

    Returns
    -------
    int
        The override when set; else 0, the first CUDA device this process
        sees (Ray sets ``CUDA_VISIBLE_DEVICES`` per worker), where the machine
        has one and it is not hidden; else -1.

    Raises
    ------
    ValueError
        The override is not an integer >= -1.
    """
    override = environ.get(GPU_DEVICE_ENV, "").strip()
    if override:
        try:
            device = int(override)
        except ValueError:
            device = -2
        if device < -1:
            raise ValueError(f"{GPU_DEVICE_ENV} must be a CUDA device id (0, 1, ...) or -1 for none, got {override!r}")
        return device
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.split(",")[0].strip() in _NO_CUDA:
        return -1
    return 0 if nvidia_devices() > 0 else -1


# -- pure conversions (no habitat needed) -------------------------------------


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (3, 3).

    Bar-Itzhack's method: the eigenvector of the largest eigenvalue of a
    symmetric 4x4 built from ``R``; stable for every rotation, and the nearest
    rotation's quaternion when ``R`` is slightly off orthonormal.
    """
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = R
    k = np.array(  # 3x Bar-Itzhack's K; the scale does not move the eigenvectors
        [
            [m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12],
            [m01 + m10, m11 - m00 - m22, m12 + m21, m02 - m20],
            [m02 + m20, m12 + m21, m22 - m00 - m11, m10 - m01],
            [m21 - m12, m02 - m20, m10 - m01, m00 + m11 + m22],
        ]
    )
    vals, vecs = np.linalg.eigh(k)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return -q if w < 0 else q


def _matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion ``(w, x, y, z)`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def habitat_pose(cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Habitat agent state of an OpenCV camera pose.

    Parameters
    ----------
    cam2world : (4, 4) float
        OpenCV camera (x right, y down, z forward) to Y-up world, rigid.

    Returns
    -------
    position : (3,) float64
        Camera centre in the world.
    rotation : (4,) float64
        Unit quaternion ``(w, x, y, z)``, ``w >= 0``, of the habitat camera
        (looking down its -Z, +Y up): ``R_habitat = R_opencv @ diag(1, -1, -1)``.
        Habitat's ``AgentState.rotation`` takes it as ``[x, y, z, w]``.

    Raises
    ------
    ValueError
        ``cam2world`` is not a finite 4x4 rigid transform.
    """
    m = np.asarray(cam2world, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f"cam2world must be a finite (4, 4) matrix, got shape {m.shape}")
    R = m[:3, :3]
    if (
        np.abs(m[3] - (0.0, 0.0, 0.0, 1.0)).max() > ROTATION_TOL
        or np.abs(R.T @ R - np.eye(3)).max() > ROTATION_TOL
        or np.linalg.det(R) < 0
    ):
        raise ValueError("cam2world must be a rigid transform (orthonormal rotation, det +1, last row 0 0 0 1)")
    return m[:3, 3].copy(), _quat_from_matrix(R @ OPENCV_TO_HABITAT)


def cam2world_from_habitat(position: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """The OpenCV ``cam2world`` of a habitat camera; inverse of :func:`habitat_pose`.

    Parameters
    ----------
    position : (3,) float
    rotation : (4,) float
        Quaternion ``(w, x, y, z)`` of the habitat camera (looks down -Z, +Y up).

    Returns
    -------
    (4, 4) float64
    """
    out = np.eye(4)
    out[:3, :3] = _matrix_from_quat(rotation) @ OPENCV_TO_HABITAT
    out[:3, 3] = position
    return out


def habitat_hfov(K: np.ndarray, width: int, height: int) -> float:
    """Horizontal field of view (degrees) of a centred square-pixel pinhole.

    Parameters
    ----------
    K : (3, 3) float
    width, height : int
        Image size in pixels.

    Returns
    -------
    float
        ``2 * atan((W / 2) / fx)`` in degrees.

    Raises
    ------
    ValueError
        ``K`` is not ``[[f, 0, (W-1)/2], [0, f, (H-1)/2], [0, 0, 1]]``: habitat's
        pinhole sensor is defined by its hfov alone.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    cx0, cy0 = (width - 1) / 2.0, (height - 1) / 2.0
    centred = (
        fx > 0
        and abs(fx - fy) <= K_TOL * fx
        and abs(skew) <= K_TOL * fx
        and abs(cx - cx0) <= K_TOL
        and abs(cy - cy0) <= K_TOL
        and np.allclose(K[2], (0.0, 0.0, 1.0), atol=K_TOL)
        and abs(K[1, 0]) <= K_TOL * fx
    )
    if not centred:
        raise ValueError(
            "the habitat backend needs a centred square-pixel pinhole K (fx == fy, no skew, principal point "
            f"((W-1)/2, (H-1)/2) = ({cx0}, {cy0}) for {width}x{height}), because habitat's pinhole sensor takes "
            f"only a horizontal field of view; got fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g}, skew={skew:g}. "
            "Use --backend raycast for general intrinsics."
        )
    return math.degrees(2.0 * math.atan((width / 2.0) / fx))


def habitat_from_world(file_to_world: np.ndarray, up, front) -> np.ndarray:
    """The rigid map from our world frame to the frame habitat loaded the file in.

    Parameters
    ----------
    file_to_world : (4, 4) float
        What our loader applied to the file (``Scene.file_to_world``).
    up, front : (3,) float
        Habitat's stage orientation (``StageAttributes.orient_up`` /
        ``orient_front``, file coordinates), which it turns to +Y / -Z.

    Returns
    -------
    (4, 4) float64
        ``habitat_file_to_world @ inv(file_to_world)``: the identity when both
        loaders agree (the usual case).
    """
    return rotation_from_up_front(up, front) @ np.linalg.inv(np.asarray(file_to_world, dtype=np.float64))


def view_from_observations(rgba: np.ndarray, depth: np.ndarray) -> RenderedView:
    """Own copies of habitat's RGBA (H, W, 4) and depth (H, W) as a RenderedView.

    Depth that is non-finite or not positive becomes 0 (no surface). Habitat's
    observations are views of buffers that its next render overwrites: the
    RenderedView's arrays are the caller's own.
    """
    rgb = np.array(np.asarray(rgba)[..., :3], dtype=np.uint8, copy=True)  # (H, W, 3)
    d = np.array(depth, dtype=np.float32, copy=True).reshape(rgb.shape[:2])  # (H, W)
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return RenderedView(rgb=rgb, depth=d)


# -- the backend ----------------------------------------------------------------


def import_habitat_sim():
    """The ``habitat_sim`` module, imported on first use; :class:`BackendUnavailable` (with the install route)
    where it does not import.

    The one place the backend imports habitat-sim: tests replace it (``monkeypatch.setattr(habitat,
    "import_habitat_sim", ...)``) to run the backend against a stand-in.
    """
    try:
        import habitat_sim
    except ImportError as e:
        raise BackendUnavailable(
            f"the habitat backend needs habitat-sim, which does not import here ({e}). {INSTALL_HINT}."
        ) from None
    return habitat_sim


def _scene_file(scene: Scene) -> str:
    """The mesh file habitat will load for ``scene``; ValueError when there is none."""
    source = scene.source or ""
    if not source or source.startswith("synthetic:"):
        raise ValueError(
            f"the habitat backend loads scenes from their files, and scene {scene.name!r} was not loaded from "
            f"one (source {source!r}); render synthetic scenes with --backend raycast"
        )
    if not Path(source).is_file():
        raise ValueError(f"the habitat backend loads scenes from their files, and {source} is not a file")
    return source


class _HabitatRenderer(SceneRenderer):
    """One scene in habitat-sim; one Simulator at a time, rebuilt when the sensor changes.

    Sensors are fixed when a Simulator is made, so it is cached per
    ``(width, height, hfov)`` and rebuilt (reloading the scene) when they change.
    ``gpu_device_id`` is :func:`choose_gpu_device`'s (0, the first GPU this
    process sees, where there is one: Ray sets ``CUDA_VISIBLE_DEVICES`` per
    worker; -1 without). habitat-sim holds one OpenGL context per Simulator:
    close a renderer before opening the next scene. ``workdir``, if given, is
    a temporary folder holding ``path`` (a copy of the scene's file), removed
    on close.
    """

    screening = False  # a new size rebuilds the Simulator (and reloads the scene)

    def __init__(
        self, scene: Scene, path: str, habitat_sim, gpu_device_id: int = 0, workdir: str | None = None
    ) -> None:
        self.scene = scene
        self.path = path
        self.gpu_device_id = gpu_device_id
        self.workdir = workdir
        self._hs = habitat_sim
        self._sim = None
        self._key: tuple[int, int, float] | None = None
        self._habitat_from_world = np.eye(4)

    def _configuration(self, width: int, height: int, hfov: float):
        hs = self._hs
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = self.path
        sim_cfg.enable_physics = False
        sim_cfg.gpu_device_id = self.gpu_device_id
        sim_cfg.create_renderer = True
        # Unlit (base colour x texture, as raycast shades), whatever the scene's own config asks for.
        if hasattr(sim_cfg, "override_scene_light_defaults"):
            sim_cfg.override_scene_light_defaults = True
        sim_cfg.scene_light_setup = hs.gfx.NO_LIGHT_KEY
        specs = []
        for uuid, kind in ((COLOR_UUID, hs.SensorType.COLOR), (DEPTH_UUID, hs.SensorType.DEPTH)):
            spec = hs.CameraSensorSpec()
            spec.uuid = uuid
            spec.sensor_type = kind
            spec.sensor_subtype = hs.SensorSubType.PINHOLE
            spec.resolution = [height, width]
            spec.position = [0.0, 0.0, 0.0]  # the default is 1.5 m above the agent
            spec.orientation = [0.0, 0.0, 0.0]
            try:
                spec.hfov = hfov  # degrees; the binding converts a float to magnum.Deg
            except TypeError:
                import magnum

                spec.hfov = magnum.Deg(hfov)
            specs.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = specs
        return hs.Configuration(sim_cfg, [agent_cfg])

    def _simulator(self, width: int, height: int, hfov: float):
        key = (width, height, round(hfov, 9))
        if self._sim is not None and self._key == key:
            return self._sim
        self._close_simulator()
        log.info("habitat-sim: loading %s for %dx%d views, hfov %.3f deg", self.path, width, height, hfov)
        self._sim = self._hs.Simulator(self._configuration(width, height, hfov))
        self._key = key
        self._habitat_from_world = self._stage_frame(self._sim)
        return self._sim

    def _stage_frame(self, sim) -> np.ndarray:
        """Map from our world to habitat's, from the stage orientation habitat used."""
        try:
            stage = sim.get_stage_initialization_template()
            up, front = np.asarray(stage.orient_up, dtype=np.float64), np.asarray(stage.orient_front, dtype=np.float64)
        except (AttributeError, TypeError) as e:
            log.warning(
                "habitat-sim did not report the stage orientation of %s (%s); assuming our world frame", self.path, e
            )
            return np.eye(4)
        m = habitat_from_world(self.scene.file_to_world, up, front)
        if not np.allclose(m, np.eye(4), atol=1e-6):
            log.info(
                "habitat-sim loads %s with up %s, front %s, unlike our loader: poses are mapped into its frame",
                self.path,
                up.tolist(),
                front.tolist(),
            )
        return m

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """Render one view.

        Parameters
        ----------
        K : (3, 3) float
            Centred square-pixel pinhole (see :func:`habitat_hfov`).
        cam2world : (4, 4) float
            OpenCV camera to our Y-up world.
        width, height : int

        Returns
        -------
        RenderedView
            ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 planar z in metres, 0 = no hit.

        Raises
        ------
        ValueError
            ``K`` is not a centred square-pixel pinhole, or ``cam2world`` is not rigid.
        """
        hfov = habitat_hfov(K, width, height)
        sim = self._simulator(int(width), int(height), hfov)
        position, (w, x, y, z) = habitat_pose(self._habitat_from_world @ np.asarray(cam2world, dtype=np.float64))
        state = self._hs.agent.AgentState(position=position, rotation=[x, y, z, w])
        sim.get_agent(0).set_state(state, reset_sensors=True)
        obs = sim.get_sensor_observations()
        return view_from_observations(obs[COLOR_UUID], obs[DEPTH_UUID])

    def _close_simulator(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
            self._key = None

    def close(self) -> None:
        self._close_simulator()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


@register_backend
class HabitatBackend(RenderBackend):
    """habitat-sim on the GPU (conda-only); the same outputs as ``raycast``."""

    name = "habitat"
    description = ("habitat-sim's GPU rasterizer, needs habitat-sim from conda; unlike raycast: textures always "
                   "mip-filtered, edges not supersampled, PLY vertex colours darker (0.2.2), no synthetic scenes; "
                   "double-sided faces reach it with both windings, as it culls back faces; "
                   "GPU: the first CUDA device, else -1, PAIRGEN_HABITAT_GPU overrides (README, Backends)")

    def check_available(self) -> None:
        import_habitat_sim()

    def open(self, scene: Scene, *, antialias: str = "full", lighting: str = "baked") -> SceneRenderer:
        """Prepare ``scene`` (its file, ``scene.source``) for habitat-sim.

        ``antialias``: habitat-sim's rasterizer samples textures through the
        GPU's mip-maps whatever the level, and draws one sample per pixel, so
        ``off`` still filters textures and ``full`` renders as ``textures``; a
        log line says so. ``lighting`` concerns synthetic scenes only, which
        habitat does not render (their colours carry no light to add).

        Raises
        ------
        BackendUnavailable
            habitat-sim does not import; the message gives the install route.
        ValueError
            The scene has no file on disk (synthetic scenes).
        """
        habitat_sim = import_habitat_sim()
        path = _scene_file(scene)
        device = choose_gpu_device()
        log.info("habitat-sim: gpu_device_id %d (%s to override)", device, GPU_DEVICE_ENV)
        if antialias != "textures":
            log.info(
                "habitat backend, --antialias %s: habitat-sim filters textures with the GPU's mip-maps and draws one "
                "sample per pixel, so this renders as --antialias textures", antialias,
            )  # fmt: skip
        if scene.face_colors is not None:
            log.warning(
                "%s has per-face colours, and habitat-sim reads the file with its own importer: whether it "
                "renders them is untested, so its views may differ from raycast's (--backend raycast renders them)",
                path,
            )
        workdir, drawn = None, path
        single = scene.single_sided_faces
        if single is None or not single.all():  # habitat-sim culls every back face: give it both windings
            workdir = tempfile.mkdtemp(prefix="pairgen-habitat-")
            try:
                copy = double_sided_copy(scene, workdir)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            if copy is None:
                shutil.rmtree(workdir, ignore_errors=True)
                workdir = None
            else:
                drawn = str(copy)
        return _HabitatRenderer(scene, drawn, habitat_sim, gpu_device_id=device, workdir=workdir)
