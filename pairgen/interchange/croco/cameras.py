"""CroCo's cameras: habitat agent states and CroCo's intrinsics, to and from ours (docs/design.md, Conventions).

A view is habitat's agent state: the sensor sits at the agent's position
(CroCo's sensors have no offset), turned by the quaternion (w first); the
habitat camera looks down -Z with +Y up in habitat's world, which is ours (Y
up, metres). CroCo's own conversion to an OpenCV camera
(``multiview_habitat_sim_generator.py``) is ``R_cam2world = R(q) @
R_OPENCV2HABITAT`` with ``R_OPENCV2HABITAT`` the rows habitat RIGHT, -UP and
FRONT, i.e. ``diag(1, -1, -1)``; ``t_cam2world`` is the position.
:func:`habitat_to_cam2world` is that, and :func:`cam2world_to_habitat` its
inverse.

Intrinsics: CroCo writes ``f = (W/2) / tan(hfov/2)`` and the principal point
``(W/2, H/2)``, the centre of the image in the convention where pixel ``i``
covers ``[i, i + 1)``: habitat renders a symmetric frustum. Ours puts pixel
``i``'s centre at ``i``, so the same frustum has its principal point at
``((W-1)/2, (H-1)/2)``: the two ``K`` differ by half a pixel in ``cx`` and
``cy`` and describe the same image. Export writes CroCo's form
(:func:`croco_intrinsics`, ours + 0.5), import builds ours from ``hfov``.
(CroCo's point-map code, ``compute_pointmap``, unprojects integer pixel
indices with ``cu = W/2``: half a pixel off its own images; we reproduce
neither that nor anything else of its point clouds, only its cameras.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["R_OPENCV2HABITAT", "cam2world_to_habitat", "croco_intrinsics", "habitat_to_cam2world"]

#: habitat_sim.geo RIGHT, -UP, FRONT as rows (CroCo's R_OPENCV2HABITAT): OpenCV camera axes -> habitat's
R_OPENCV2HABITAT = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def habitat_to_cam2world(position, orientation_wxyz) -> np.ndarray:
    """OpenCV ``cam2world`` (4, 4) of a habitat agent state (position, quaternion w, x, y, z).

    The quaternion is normalised (as numpy-quaternion's ``as_rotation_matrix``
    does); ``R_cam2world = R(q) @ R_OPENCV2HABITAT``, ``t_cam2world = position``.
    """
    from scipy.spatial.transform import Rotation

    q = np.asarray(orientation_wxyz, np.float64)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(q, scalar_first=True).as_matrix() @ R_OPENCV2HABITAT
    pose[:3, 3] = np.asarray(position, np.float64)
    return pose


def cam2world_to_habitat(cam2world: np.ndarray) -> tuple[list[float], list[float]]:
    """The habitat agent state ``(position, [w, x, y, z])`` of an OpenCV ``cam2world``; ``w >= 0``."""
    from scipy.spatial.transform import Rotation

    pose = np.asarray(cam2world, np.float64).reshape(4, 4)
    q = Rotation.from_matrix(pose[:3, :3] @ R_OPENCV2HABITAT.T).as_quat(scalar_first=True)
    if q[0] < 0:
        q = -q
    return pose[:3, 3].tolist(), q.tolist()


def croco_intrinsics(K: np.ndarray) -> np.ndarray:
    """Our ``K`` in CroCo's convention (pixel ``i`` covering ``[i, i + 1)``): the principal point + 0.5."""
    K = np.array(K, np.float64).reshape(3, 3)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K
