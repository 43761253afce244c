"""Interchange with other projects' data formats: one subpackage a format.

Each format keeps its concerns apart: reading its files (``metadata``),
the stages that bring its data into ``OUT/views`` and ``OUT/pairs`` on the
common lifecycle (``stages``, on :class:`pairgen.views_stage.ViewsStage` and
:class:`pairgen.filter.FilterStage`), and the exporter that writes ``OUT/pairs``
in its layout (``export``).

* :mod:`pairgen.interchange.croco`: CroCo's habitat release
  (``pairgen import croco``, ``pairgen export --format croco``).
"""
