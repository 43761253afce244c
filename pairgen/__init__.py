"""pairgen: cross-view pre-training pairs from indoor scene datasets.

The command line (``pairgen``) and the orchestration live here; scene loading
is in ``renderers``, dataset layouts in ``manifests``.
"""

__version__ = "0.1.0"
