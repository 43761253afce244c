"""DUSt3R interchange: ``pairgen export --format dust3r``.

* :mod:`~pairgen.interchange.dust3r.export`: 5-view stars (``OUT/star5``) written
  as the processed Habitat folder naver/dust3r's ``dust3r/datasets/habitat.py``
  reads: per sample five views' JPEG, half-float depth EXR and camera JSON,
  and the scene lists ``Habitat_<n>_scenes_<split>.txt``.

The view files and the export's state (resume, refusal of another export)
are those the CroCo export writes too (:mod:`pairgen.interchange.files`);
the cameras differ only in the principal point's convention (DUSt3R's is
ours, CroCo's ours + 0.5).
"""

from pairgen.interchange.dust3r.export import (
    ALL_SCENES,
    SHAPE,
    VIEWS,
    Dust3rOptions,
    Dust3rSummary,
    export_dust3r,
    sample_key,
    scenes_list_name,
    split_of,
)

__all__ = [
    "ALL_SCENES",
    "SHAPE",
    "VIEWS",
    "Dust3rOptions",
    "Dust3rSummary",
    "export_dust3r",
    "sample_key",
    "scenes_list_name",
    "split_of",
]
