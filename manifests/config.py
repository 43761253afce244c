"""Run configs as data: one hash and one difference report for every stage.

A config is a JSON-able dict (nested dicts allowed). Its hash names what a
stage's outputs were made with; :func:`config_changes` says, when a rerun's
config differs from the one on disk, which settings changed, in the form
``views.hfov: 60.0 -> 75.0``.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["config_changes", "config_hash"]


def config_hash(config: dict) -> str:
    """16 hex digits of the SHA-256 of the config's canonical JSON."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:  # tuples compare as the lists JSON gives back
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_changes(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """``"key: old -> new"`` for every (flattened) setting that differs, keys in ``ignore`` left out."""
    a, b = _flat(old), _flat(new)
    keys = sorted((set(a) | set(b)) - set(ignore))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
