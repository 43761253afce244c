"""Interchange with other projects' data formats: one subpackage a format.

Each format keeps its concerns apart: reading its files (``metadata``),
the stages that bring its data into ``OUT/views`` and ``OUT/pairs`` on the
common lifecycle (``stages``, on :class:`pairgen.views_stage.ViewsStage` and
:class:`pairgen.filter.FilterStage`), and the exporter that writes
``OUT/pairs`` (or a samples folder, ``OUT/star5``) in its layout
(``export``). What the exporters share, a view's three files (JPEG,
half-float depth EXR, camera JSON) and the export's state (resume, refusal
of another export), is :mod:`pairgen.interchange.files`.

* :mod:`pairgen.interchange.croco`: CroCo's habitat release
  (``pairgen import croco``, ``pairgen export --format croco``).
* :mod:`pairgen.interchange.dust3r`: DUSt3R's processed Habitat folder, from
  5-view stars (``pairgen export --format dust3r``).
"""
