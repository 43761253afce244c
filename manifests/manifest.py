"""The stage manifests: ``OUT/views.manifest.json`` and ``OUT/pairs.manifest.json``, typed.

Each stage's data folder has one JSON manifest beside it, ``<folder>.manifest.json``
(docs/design.md, "On-disk layout"; :mod:`manifests.layout`): its format and version, the pairgen version that wrote it, the
config and its hash, and one entry per unit of work (a scene) with its status.
This module is the only place that reads or writes them:

* :meth:`StageManifest.read` checks the format name and version (a manifest
  of another kind or of a newer version is refused, naming the file), that it
  is a JSON object with the fields every reader relies on, and resolves every
  file it names inside its data folder (:meth:`StageManifest.file`: a manifest
  is data, never a trusted path). A folder written by pairgen 0.1, whose
  manifest is ``<folder>/manifest.json``, is read the same way
  (:attr:`StageManifest.legacy` is then True); a stage's next run writes the
  new one and removes the old (:meth:`StageManifest.remove_legacy`);
* :meth:`StageManifest.write` writes it atomically (``manifests.io``);
* :func:`sha256_file` and :meth:`PairsManifest.verify_shard` check recorded
  checksums.

:class:`ViewsManifest` adds the render totals; :class:`PairsManifest` the
shard list, the histogram and the ``complete`` flag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from manifests.io import OutputError, path_inside, read_json, write_json_atomic
from manifests.layout import legacy_manifest_path, manifest_path
from manifests.version import VERSION

__all__ = ["ManifestError", "PairsManifest", "StageManifest", "ViewsManifest", "sha256_file"]


class ManifestError(OutputError):
    """A manifest that cannot be used: of another format or version, damaged, or pointing outside its folder."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class StageManifest:
    """A stage's manifest: config, config hash and one entry per unit (scene key -> entry).

    Subclasses set ``KIND`` (the format name, ``pairgen-<kind>-manifest``)
    and ``VERSION``; other top-level fields live in ``body``, in the order
    they are written.
    """

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1

    folder: Path  # the data folder, where the files it names are
    config_hash: str
    config: dict
    scenes: dict[str, dict] = field(default_factory=dict)
    body: dict = field(default_factory=dict)
    legacy: bool = False  # read from <folder>/manifest.json (pairgen 0.1's place)

    @classmethod
    def format_name(cls) -> str:
        return f"pairgen-{cls.KIND}-manifest/{cls.VERSION}"

    @classmethod
    def path_in(cls, folder: str | Path) -> Path:
        """Where the manifest of the data folder ``folder`` is written: ``<folder>.manifest.json`` beside it."""
        return manifest_path(folder)

    @classmethod
    def find(cls, folder: str | Path) -> Path | None:
        """The manifest file to read for ``folder``: beside it, else pairgen 0.1's inside it, else None."""
        for path in (manifest_path(folder), legacy_manifest_path(folder)):
            if path.is_file():
                return path
        return None

    @property
    def path(self) -> Path:
        """The manifest's file: where it was read from (pairgen 0.1's while :attr:`legacy`), else where it goes."""
        return legacy_manifest_path(self.folder) if self.legacy else self.path_in(self.folder)

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return cls.find(folder) is not None

    @classmethod
    def read(cls, folder: str | Path) -> StageManifest:
        """Read and validate the manifest of the data folder ``folder`` (:meth:`find`).

        Raises
        ------
        ManifestError
            Not found, not JSON, another kind of manifest, a newer version,
            or a field of the wrong type; the message names the file.
        """
        folder = Path(folder)
        path = cls.find(folder) or cls.path_in(folder)
        if not path.is_file():
            raise ManifestError(f"{path}: not found")
        try:
            doc = read_json(path)
        except OutputError as e:
            raise ManifestError(str(e)) from None
        fmt = doc.get("format")
        name, _, version = str(fmt).rpartition("/")
        expected = cls.format_name().rpartition("/")[0]
        if name != expected or not version.isdigit():
            raise ManifestError(f"{path}: format {fmt!r} is not a {cls.KIND} manifest ({cls.format_name()!r})")
        if int(version) > cls.VERSION:
            raise ManifestError(f"{path}: format {fmt!r} is newer than this pairgen reads ({cls.format_name()!r}); "
                                "upgrade pairgen")  # fmt: skip
        for key, kind in (("config_hash", str), ("config", dict), ("scenes", dict)):
            if not isinstance(doc.get(key), kind):
                raise ManifestError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
        scenes = doc.pop("scenes")
        for key, entry in scenes.items():
            if not isinstance(entry, dict):
                raise ManifestError(f"{path}: entry {key!r} is not an object")
        manifest = cls(folder, doc.pop("config_hash"), doc.pop("config"), scenes,
                       legacy=path == legacy_manifest_path(folder))  # fmt: skip
        for key in ("format", "pairgen_version"):
            doc.pop(key, None)
        manifest.body = doc
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Checks of the subclass' own fields (raise :class:`ManifestError`)."""

    def file(self, relative: str) -> Path:
        """A file the manifest names, resolved inside its folder; :class:`ManifestError` if it points out."""
        try:
            return path_inside(self.folder, str(relative))
        except OutputError as e:
            raise ManifestError(f"{self.path}: {e}") from None

    def ok_scenes(self) -> dict[str, dict]:
        """The entries whose status is ``ok`` and that name a file."""
        return {k: e for k, e in self.scenes.items() if e.get("status") == "ok" and e.get("file")}

    def to_json(self) -> dict:
        return {"format": self.format_name(), "pairgen_version": VERSION, "config_hash": self.config_hash,
                "config": self.config, **self.body, "scenes": dict(sorted(self.scenes.items()))}  # fmt: skip

    def write(self) -> None:
        """Write atomically (the last thing a stage writes: the files it lists are complete)."""
        write_json_atomic(self.path_in(self.folder), self.to_json())

    def remove_legacy(self) -> bool:
        """Remove pairgen 0.1's ``<folder>/manifest.json`` once this one is written; True if there was one."""
        old = legacy_manifest_path(self.folder)
        if not old.is_file() or not self.path_in(self.folder).is_file():
            return False
        old.unlink()
        self.legacy = False
        return True


@dataclass
class ViewsManifest(StageManifest):
    """``OUT/views.manifest.json``: per scene ``status``, ``reason``, ``file``, ``views``, ``sha256``..."""

    KIND: ClassVar[str] = "views"

    def totals(self) -> dict:
        ok = [e for e in self.scenes.values() if e.get("status") == "ok"]
        return {"scenes_ok": len(ok), "scenes_failed": sum(1 for e in self.scenes.values() if e.get("status") == "failed"),
                "views": sum(int(e.get("views", 0)) for e in ok)}  # fmt: skip

    def to_json(self) -> dict:
        self.body = {"totals": self.totals(), **{k: v for k, v in self.body.items() if k != "totals"}}
        return super().to_json()


@dataclass
class PairsManifest(StageManifest):
    """``OUT/pairs.manifest.json``: shards with pair counts and SHA-256, totals, histogram, ``complete``."""

    KIND: ClassVar[str] = "pairs"

    def validate(self) -> None:
        shards = self.body.get("shards", [])
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "file" in s for s in shards):
            raise ManifestError(f"{self.path}: field 'shards' is not a list of {{file, pairs, sha256}}")
        for key in ("totals", "histogram", "identity"):
            if key in self.body and not isinstance(self.body[key], dict):
                raise ManifestError(f"{self.path}: field {key!r} is not an object")

    @property
    def complete(self) -> bool:
        return bool(self.body.get("complete"))

    @property
    def shards(self) -> list[dict]:
        return list(self.body.get("shards", []))

    def shard_paths(self) -> Iterator[tuple[dict, Path]]:
        """Each shard entry with its path, resolved inside the folder."""
        for entry in self.shards:
            yield entry, self.file(str(entry["file"]))

    def verify_shard(self, entry: dict, path: Path) -> str | None:
        """Why the shard at ``path`` is not the one ``entry`` records (missing, other checksum), or None."""
        if not path.is_file():
            return f"{path.name}: listed in the manifest but missing"
        recorded = entry.get("sha256")
        if recorded and sha256_file(path) != recorded:
            return f"{path.name}: its SHA-256 differs from the manifest's (altered or truncated after it was written)"
        return None


@dataclass
class SamplesManifest(PairsManifest):
    """``OUT/<shape><N>.manifest.json``: as the pairs' (shards with their sample counts and SHA-256, totals,
    histogram of the edges' covisibility, ``complete``), for a folder of samples (:mod:`manifests.samples`)."""

    KIND: ClassVar[str] = "samples"

