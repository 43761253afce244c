"""The typed manifests' one rule for their fields, and the one message for a shard they list that is missing."""

from __future__ import annotations

import json

import pytest

from manifests.io import write_json_atomic
from manifests.manifest import KINDS, ManifestError, PairsManifest, SamplesManifest, StageManifest, ViewsManifest

GOOD = {"int": 3, "number": 1.5, "str": "x", "bool": True, "object": {}, "list": [], "ints": [1, 2],
        "numbers": [0.0, 0.5], "strs": ["synthetic"]}  # fmt: skip
SCENE = "synthetic/apartment_0000"
SHARD = "shard-00000.parquet"


def _document(cls: type[StageManifest]) -> dict:
    """A manifest of ``cls`` holding every field it declares, each of its kind."""
    doc = {"format": cls.format_name(), "pairgen_version": "0", "config_hash": "h", "config": {},
           **{name: GOOD[kind.rstrip("?")] for name, kind in cls.BODY_FIELDS.items()},
           **{name: {k: GOOD[kind.rstrip("?")] for k, kind in fields.items()} for name, fields in cls.NESTED_FIELDS.items()},
           "scenes": {SCENE: {name: GOOD[kind.rstrip("?")] for name, kind in cls.SCENE_FIELDS.items()}}}  # fmt: skip
    if issubclass(cls, PairsManifest):
        doc["shards"] = [{**{name: GOOD[kind.rstrip("?")] for name, kind in cls.SHARD_FIELDS.items()}, "file": SHARD}]
        doc["inputs"] = {SCENE: "abc", "synthetic/not_rendered": None}
    return doc


def _places(cls: type[StageManifest]):
    """``(id, where in the document, field, kind, whose field the message says)`` of every declared field."""
    for name, kind in cls.BODY_FIELDS.items():
        yield f"{cls.KIND}-{name}", (), name, kind, ""
    for outer, fields in cls.NESTED_FIELDS.items():
        for name, kind in fields.items():
            yield f"{cls.KIND}-{outer}-{name}", (outer,), name, kind, f" of {outer!r}"
    for name, kind in cls.SCENE_FIELDS.items():
        yield f"{cls.KIND}-scene-{name}", ("scenes", SCENE), name, kind, f" of scene {SCENE!r}"
    if issubclass(cls, PairsManifest):
        for name, kind in cls.SHARD_FIELDS.items():
            if name != "file":
                yield f"{cls.KIND}-shard-{name}", ("shards", 0), name, kind, f" of shard {SHARD!r}"
        yield f"{cls.KIND}-inputs", ("inputs",), SCENE, "str?", " of 'inputs'"


CASES = [(cls, *case) for cls in (ViewsManifest, PairsManifest, SamplesManifest) for case in _places(cls)]


def _write(folder, cls, doc) -> None:
    write_json_atomic(cls.path_in(folder), doc)


@pytest.mark.parametrize("cls", [ViewsManifest, PairsManifest, SamplesManifest])
def test_a_manifest_with_every_field_of_its_kind_is_read(tmp_path, cls):
    _write(tmp_path / "folder", cls, _document(cls))
    manifest = cls.read(tmp_path / "folder")
    assert manifest.scenes[SCENE]["status"] == "x"


@pytest.mark.parametrize("cls, where, name, kind, of", [c[:1] + c[2:] for c in CASES], ids=[c[1] for c in CASES])
def test_a_field_of_the_wrong_kind_names_the_file_the_field_its_value_and_the_kind(tmp_path, cls, where, name, kind,
                                                                                     of):  # fmt: skip
    doc = _document(cls)
    target = doc
    for step in where:
        target = target[step]
    target[name] = bad = "many" if kind.rstrip("?") != "str" else 5  # "pairs": "many", as a user's edit leaves it
    _write(tmp_path / "folder", cls, doc)
    with pytest.raises(ManifestError) as info:
        cls.read(tmp_path / "folder")
    expected = KINDS[kind.rstrip("?")][1]
    shown = repr(bad) if isinstance(bad, str) else json.dumps(bad)
    assert str(info.value) == (f"{cls.path_in(tmp_path / 'folder')}: field {name!r}{of} is {shown}, expected "
                               f"{expected}{' or null' if kind.endswith('?') else ''}")  # fmt: skip


@pytest.mark.parametrize("value", [True, 2.5, None, [1]])
def test_an_integer_is_an_integer_not_true_a_float_or_null(tmp_path, value):
    doc = _document(PairsManifest)
    doc["shards"][0]["pairs"] = value
    _write(tmp_path / "pairs", PairsManifest, doc)
    with pytest.raises(ManifestError, match=r"field 'pairs' of shard 'shard-00000.parquet' is .*, expected an integer"):
        PairsManifest.read(tmp_path / "pairs")


@pytest.mark.parametrize("cls", [PairsManifest, SamplesManifest])
def test_a_listed_shard_that_is_missing_is_named_with_what_to_do(tmp_path, cls):
    folder = tmp_path / ("pairs" if cls is PairsManifest else "star5")
    folder.mkdir()
    _write(folder, cls, _document(cls))
    manifest = cls.read(folder)
    ((entry, path),) = manifest.shard_paths()
    problem = manifest.verify_shard(entry, path)  # every reader's words: inspect, export, pretrain's check
    assert problem == (f"{SHARD}: listed in {folder.name}.manifest.json but missing from {folder.name}/; run the "
                       "`pairgen filter` that wrote the folder again (same options): it writes the missing shards")
    assert "Errno" not in problem


def test_a_scene_that_had_no_mesh_has_no_source(tmp_path):
    """A scene discovered without its mesh fails in render with ``source`` null; the filter reads that manifest."""
    doc = _document(ViewsManifest)
    doc["scenes"][SCENE] = {"status": "failed", "reason": "no mesh", "source": None}
    _write(tmp_path / "folder", ViewsManifest, doc)
    assert ViewsManifest.read(tmp_path / "folder").scenes[SCENE]["source"] is None
