"""Fixtures of the pairgen tests: a damaged copy of whatever output folder a test module calls ``out``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def damaged(out, tmp_path) -> Path:
    """A copy of the set to break."""
    copy = tmp_path / "pg"
    shutil.copytree(out, copy)
    return copy
