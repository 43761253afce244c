"""Dataset descriptors (where each dataset keeps its scenes) and manifest schemas."""

from manifests.datasets import *  # noqa: F403
from manifests.datasets import __all__  # noqa: F401
