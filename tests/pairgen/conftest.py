"""Fixtures of the pairgen tests: a damaged copy of whatever output folder a test module calls ``out``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest


@pytest.fixture
def damaged(out, tmp_path) -> Path:
    """A copy of the set to break."""
    copy = tmp_path / "pg"
    shutil.copytree(out, copy)
    return copy


def damage_shard(path: Path, damage: str) -> None:
    """Break a shard as a disk or a user would: ``delete`` it, ``truncate`` it to half, or keep 5 of its ``rows``."""
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a readable shard that lost rows
        pq.write_table(pq.read_table(path).slice(0, 5), path)

