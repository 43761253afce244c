"""Loading discovered scenes, and describing them for ``pairgen scenes``."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from manifests import SceneRecord
from renderers.scene import Scene, SceneFormatError
from renderers.sources import load_scene

__all__ = ["describe", "load_record"]

log = logging.getLogger(__name__)


def load_record(record: SceneRecord) -> Scene:
    """Load a discovered scene (mesh and navmesh) into the Y-up world frame.

    Raises
    ------
    SceneFormatError
        The record has problems, or a file cannot be read.
    """
    if not record.ok:
        raise SceneFormatError(record.mesh or record.key, "; ".join(record.problems))
    return load_scene(record.source, record.mesh, scene_id=record.scene_id, up=record.up, navmesh=record.navmesh)


def describe(records: Iterable[SceneRecord], *, triangles: bool, progress=None) -> list[dict]:
    """One row per scene for the ``scenes`` listing.

    With ``triangles`` every usable scene is loaded (mesh and navmesh), so the
    row also gives its triangle count and navigable area, and a file that
    cannot be read is reported as that scene's problem.
    """
    rows = []
    for record in records:
        row = record.to_dict()
        if triangles and record.ok:
            try:
                scene = load_record(record)
            except SceneFormatError as e:
                row["problems"] = row["problems"] + [str(e)]
            else:
                row["triangles"] = scene.num_triangles
                if scene.navmesh is not None:
                    row["navigable_m2"] = round(scene.navmesh.area, 2)
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows
