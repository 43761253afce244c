"""The installed pairgen version, read once from the package metadata (pyproject.toml is its only source)."""

from importlib import metadata

__all__ = ["VERSION"]

try:
    VERSION = metadata.version("pairgen")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "0+unknown"
