"""CroCo's ``metadata.json`` files (naver/croco ``datasets/habitat_sim/``), as its packer writes them."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_metadata"]


def write_metadata(path: Path, doc) -> Path:
    """``doc`` (any JSON value: tests write malformed ones too) as the file ``path``, folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
