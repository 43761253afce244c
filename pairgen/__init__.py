"""pairgen: cross-view pre-training pairs from indoor scene datasets.

The command line (``pairgen``) and the stages live here (``stage.py`` is the
lifecycle every stage shares; ``render.py`` and ``filter.py`` are two stages);
scene loading is in ``renderers``, on-disk formats and dataset layouts in
``manifests``. docs/design.md describes the whole.
"""

from manifests.version import VERSION as __version__

__all__ = ["__version__"]
