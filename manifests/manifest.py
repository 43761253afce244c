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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from manifests.io import OutputError, path_inside, read_json, write_json_atomic
from manifests.layout import legacy_manifest_path, manifest_path
from manifests.version import VERSION
from manifests.store import local, remove

__all__ = ["ManifestError", "PairsManifest", "StageManifest", "ViewsManifest", "file_stat", "has_checksum",
           "sha256_file"]


class ManifestError(OutputError):
    """A manifest that cannot be used: of another format or version, damaged, or pointing outside its folder."""


#: what a manifest field may hold: kind -> (test, what the message says is expected). "?" after a kind: or null.
KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "ints": (lambda v: isinstance(v, list) and all(KINDS["int"][0](x) for x in v), "a list of integers"),
    "numbers": (lambda v: isinstance(v, list) and all(KINDS["number"][0](x) for x in v), "a list of numbers"),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
}


def _shown(value: object, limit: int = 60) -> str:
    """A value as a message quotes it: a string in quotes, anything else as JSON; cut to ``limit`` characters."""
    import json

    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_fields(path: Path, obj: dict, fields: dict[str, str], of: str = "") -> None:
    """The one rule for a manifest's fields: each of ``fields`` present in ``obj`` holds its kind (:data:`KINDS`).

    An absent field is left to its reader's default; an unknown one is
    ignored (a newer minor writer's). ``of`` says whose fields they are
    (``" of shard 'shard-00000.parquet'"``).

    Raises
    ------
    ManifestError
        ``<path>: field 'pairs' of shard 'shard-00000.parquet' is 'many', expected an integer``.
    """
    for name, kind in fields.items():
        if name not in obj:
            continue
        value = obj[name]
        test, expected = KINDS[kind.rstrip("?")]
        if value is None and kind.endswith("?"):
            continue
        if not test(value):
            raise ManifestError(f"{path}: field {name!r}{of} is {_shown(value)}, expected {expected}"
                                + (" or null" if kind.endswith("?") else ""))  # fmt: skip


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(local(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_stat(path: str | Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it cannot be read: what says it was not touched since."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def has_checksum(path: str | Path, sha256: str, known: Iterable[list[int] | None] = ()) -> bool:
    """Whether the file at ``path`` has the SHA-256 ``sha256``: at once when its :func:`file_stat` is one of
    ``known`` (stats recorded when that checksum was taken or checked), else by hashing it; False when it
    cannot be read."""
    stat = file_stat(path)
    return stat is not None and (stat in list(known) or sha256_file(path) == sha256)


@dataclass
class StageManifest:
    """A stage's manifest: config, config hash and one entry per unit (scene key -> entry).

    Subclasses set ``KIND`` (the format name, ``pairgen-<kind>-manifest``)
    and ``VERSION``; other top-level fields live in ``body``, in the order
    they are written.
    """

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    #: every field the stage writes, with its kind (:func:`check_fields`), checked on read: top level, in a top-level
    #: object (``totals``), in a scene's entry
    BODY_FIELDS: ClassVar[dict[str, str]] = {"complete": "bool", "last_run": "object", "totals": "object"}
    NESTED_FIELDS: ClassVar[dict[str, dict[str, str]]] = {}
    SCENE_FIELDS: ClassVar[dict[str, str]] = {"status": "str", "reason": "str", "file": "str", "seconds": "number"}

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
            check_fields(path, entry, cls.SCENE_FIELDS, f" of scene {key!r}")
        check_fields(path, doc, cls.BODY_FIELDS)
        for name, fields in cls.NESTED_FIELDS.items():
            check_fields(path, doc.get(name, {}), fields, f" of {name!r}")
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
        remove(old)
        self.legacy = False
        return True


@dataclass
class ViewsManifest(StageManifest):
    """``OUT/views.manifest.json``: per scene ``status``, ``reason``, ``file``, ``views``, ``sha256``..."""

    KIND: ClassVar[str] = "views"
    SCENE_FIELDS: ClassVar[dict[str, str]] = {
        **StageManifest.SCENE_FIELDS, "views": "int", "sha256": "str", "stat": "ints", "dataset": "str", "split": "str",
        "scene_id": "str", "source": "str?", "candidates": "int", "walks": "int", "rejected": "object", "floor": "str",
        "floor_m2": "number", "metadata": "str", "metadata_sha256": "str", "croco": "object"}  # fmt: skip
    NESTED_FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "totals": {"scenes_ok": "int", "scenes_failed": "int", "views": "int"}}

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
    ITEMS: ClassVar[str] = "pairs"  # what a row is: the shard entries', scene entries' and totals' count
    BODY_FIELDS: ClassVar[dict[str, str]] = {**StageManifest.BODY_FIELDS, "histogram": "object", "identity": "object",
                                             "inputs": "object", "views_manifest": "str",
                                             "views_files": "object"}  # fmt: skip
    SCENE_FIELDS: ClassVar[dict[str, str]] = {**StageManifest.SCENE_FIELDS, "pairs": "int", "views": "int",
                                              "candidates": "int", "computed": "int", "in_band": "int"}  # fmt: skip
    NESTED_FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "totals": {"pairs": "int", "shards": "int", "scenes": "int", "scenes_failed": "int",
                   "scenes_not_rendered": "int", "datasets": "strs"},
        "histogram": {"bins": "numbers", "counts": "ints"}}  # fmt: skip
    SHARD_FIELDS: ClassVar[dict[str, str]] = {"file": "str", "pairs": "int", "bytes": "int", "sha256": "str"}

    def validate(self) -> None:
        shards = self.body.get("shards", [])
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "file" in s for s in shards):
            raise ManifestError(f"{self.path}: field 'shards' is not a list of {{file, {self.ITEMS}, sha256}}")
        for shard in shards:
            check_fields(self.path, shard, self.SHARD_FIELDS, f" of shard {_shown(shard['file'])}")
        inputs = self.body.get("inputs", {})  # scene key -> its views file's SHA-256, null for a scene not rendered
        check_fields(self.path, inputs, dict.fromkeys(inputs, "str?"), " of 'inputs'")

    @property
    def complete(self) -> bool:
        return bool(self.body.get("complete"))

    @property
    def shards(self) -> list[dict]:
        return list(self.body.get("shards", []))

    def incomplete_warning(self, doing: str) -> str | None:
        """The one line of every reader that goes on with the shards an incomplete manifest lists (``doing``:
        "Training on", "Exporting"), or None when it is complete (pairgen 0.1's, which says nothing of it, too).
        The listed shards are whole either way: written atomically, checked."""
        if self.body.get("complete", True) is not False:
            return None
        return (f"{self.path}: marked incomplete: {self.why_incomplete(shown=1)}. {doing} the {len(self.shards)} "
                "shard(s) it lists")  # fmt: skip

    def why_incomplete(self, shown: int = 3) -> str:
        """Why this manifest is not marked complete: the scenes that failed (from its entries, the first
        ``shown`` with their reasons), or, with none failed, a `pairgen filter` that stopped before its end."""
        failed = sorted(k for k, e in self.scenes.items() if e.get("status") == "failed")
        if not failed:
            return "the `pairgen filter` that wrote it was interrupted before its end; run it again to finish it"
        first = "; ".join(f"{k}: {str(self.scenes[k].get('reason') or 'no reason recorded')[:120]}"
                          for k in failed[:shown])  # fmt: skip
        more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
        return (f"{len(failed)} scene(s) failed in `pairgen filter` ({first}{more}), their pairs are not in the "
                "shards; the reasons are in the manifest: fix them and run `pairgen filter` again")  # fmt: skip

    def shard_paths(self) -> Iterator[tuple[dict, Path]]:
        """Each shard entry with its path, resolved inside the folder."""
        for entry in self.shards:
            yield entry, self.file(str(entry["file"]))

    def missing_shard(self, name: str, listed: str = "") -> str:
        """The one message of every reader for a shard this manifest lists that is not on disk, and what to do
        (``listed``: what the entry says of it, `` (40 pairs)``)."""
        return (f"{name}: listed in {self.path.name}{listed} but missing from {self.folder.name}/; run the "
                "`pairgen filter` that wrote the folder again (same options): it writes the missing shards")  # fmt: skip

    def verify_shard(self, entry: dict, path: Path) -> str | None:
        """Why the shard at ``path`` is not the one ``entry`` records (missing, other checksum), or None."""
        if not path.is_file():
            return self.missing_shard(path.name)
        recorded = entry.get("sha256")
        if recorded and sha256_file(path) != recorded:
            return f"{path.name}: its SHA-256 differs from the manifest's (altered or truncated after it was written)"
        return None


@dataclass
class SamplesManifest(PairsManifest):
    """``OUT/<shape><N>.manifest.json``: as the pairs' (shards with their sample counts and SHA-256, totals,
    histogram of the edges' covisibility, ``complete``), for a folder of samples (:mod:`manifests.samples`)."""

    KIND: ClassVar[str] = "samples"
    ITEMS: ClassVar[str] = "samples"
    SCENE_FIELDS: ClassVar[dict[str, str]] = {**StageManifest.SCENE_FIELDS, "samples": "int", "views": "int",
                                              "candidates": "int", "computed": "int", "tried": "int"}  # fmt: skip
    NESTED_FIELDS: ClassVar[dict[str, dict[str, str]]] = {
        "totals": {**{k: v for k, v in PairsManifest.NESTED_FIELDS["totals"].items() if k != "pairs"}, "samples": "int"},
        "histogram": PairsManifest.NESTED_FIELDS["histogram"]}  # fmt: skip
    SHARD_FIELDS: ClassVar[dict[str, str]] = {"file": "str", "samples": "int", "bytes": "int", "sha256": "str"}

