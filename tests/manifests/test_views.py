"""Views files are checked on read (``manifests.views.check_views``), through `pairgen filter`.

Each case damages one scene of a copy of the session's ``small_pairs`` views
in a way that used to give wrong pairs silently (a views file that still reads
as Parquet with the right schema and metadata) and asserts that the filter
fails that scene with one reason naming the file and the problem, that the
other scenes finish, that the exit status is 1, and that no pair of the bad
scene reaches a shard.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.codecs import encode_depth, encode_rgb
from manifests.views import ROTATION_TOLERANCE, ViewsFileMeta, read_views, write_views
from tests.conftest import FILTER_SMALL
from tests.commands import assert_no_temporaries, copy_views, pairgen, parquet_is_whole

# -- rewriting one views file --------------------------------------------------------


def _edit(path: Path, change: Callable[[pa.Table], pa.Table], **meta_changes) -> None:
    """Rewrite the views file at ``path`` with ``change(table)``, its metadata kept (views count updated)."""
    table, meta = read_views(path)
    table = change(table)
    fields = {**meta.__dict__, "views": table.num_rows, **meta_changes}
    write_views(path, table, ViewsFileMeta(**fields))


def _set(name: str, values: list) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index(name)
        return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))

    return change


def _matrices(name: str, edit: Callable[[np.ndarray], None], row: int = 3) -> Callable[[pa.Table], pa.Table]:
    """Change ``name`` (K or cam2world) of one row with ``edit(matrix)`` (in place, float64)."""

    def change(table: pa.Table) -> pa.Table:
        size = table.schema.field(name).type.list_size
        m = np.asarray(table.column(name).to_pylist(), np.float64).reshape(table.num_rows, -1)
        side = {9: 3, 16: 4}[size]
        one = m[row].reshape(side, side)
        edit(one)
        m[row] = one.reshape(-1)
        return _set(name, [list(r) for r in m.astype(np.float32)])(table)

    return change


def _depth_bytes(table: pa.Table, row: int, data: bytes | None) -> pa.Table:
    items = table.column("depth").to_pylist()
    items[row] = None if data is None else {"bytes": data, "path": items[row]["path"]}
    return _set("depth", items)(table)


def _scale_rotation(m: np.ndarray) -> None:
    m[:3, :3] *= 1.5


def _reflect(m: np.ndarray) -> None:
    m[:3, 0] *= -1  # orthonormal, but det -1: a mirror, not a camera


def _nearly_rigid(m: np.ndarray) -> None:
    m[:3, :3] *= 1 + ROTATION_TOLERANCE / 10  # within the tolerance: accepted


def _png_of_another_size(table: pa.Table) -> pa.Table:
    h, w = table.column("height")[0].as_py(), table.column("width")[0].as_py()
    return _depth_bytes(table, 2, encode_depth(np.ones((h // 2, w), np.float32)))


def _image_bytes(table: pa.Table, row: int, data: bytes) -> pa.Table:
    items = table.column("image").to_pylist()
    items[row] = {"bytes": data, "path": items[row]["path"]}
    return _set("image", items)(table)


def _file_of_another_scene(views: Path, key: str, entry: dict, manifest: dict) -> None:
    other = next(e for k, e in sorted(manifest["scenes"].items()) if k != key)
    shutil.copy(views / other["file"], views / entry["file"])  # copied under this scene's name


def _entry_pointing_at_another_scene(views: Path, key: str, entry: dict, manifest: dict) -> None:
    other = next(e for k, e in sorted(manifest["scenes"].items()) if k != key)
    entry["file"] = other["file"]  # a whole, self-consistent file, of another scene


def _entry_of_another_scene_id(views: Path, key: str, entry: dict, manifest: dict) -> None:
    entry["scene_id"] = "apartment_9999"


def _on_file(change: Callable[[pa.Table], pa.Table], **meta) -> Callable[[Path, str, dict, dict], None]:
    return lambda views, key, entry, manifest: _edit(views / entry["file"], change, **meta)


def _truncate_png(table: pa.Table) -> pa.Table:
    return _depth_bytes(table, 1, table.column("depth")[1].as_py()["bytes"][:40])


# defect -> (damage(views folder, key, entry, manifest), phrases the scene's reason holds besides the file name)
DEFECTS = {
    "every-view-id-0": (_on_file(lambda t: _set("view_id", [0] * t.num_rows)(t)), ("view_id 0 appears", "unique")),
    "one-repeated-view-id": (_on_file(lambda t: _set("view_id", [*range(t.num_rows - 1), 0])(t)),
                             ("view_id 0 appears 2 times", "unique")),
    "negative-view-id": (_on_file(lambda t: _set("view_id", [-1, *range(1, t.num_rows)])(t)), ("negative view_id",)),
    "file-of-another-scene": (_file_of_another_scene, ("metadata says", "another scene")),
    "metadata-of-another-dataset": (_on_file(lambda t: t, dataset="replica"), ("metadata says", "'replica/")),
    "manifest-entry-points-at-another-scene": (_entry_pointing_at_another_scene, ("manifest's entry is for",)),
    "scene-column-of-another-scene": (_on_file(lambda t: _set("scene_id", ["apartment_0009"] * t.num_rows)(t)),
                                      ("row 0: scene_id is 'apartment_0009'", "metadata says")),
    "dataset-column-of-another-row": (_on_file(lambda t: _set("dataset", [*["synthetic"] * (t.num_rows - 1), "hm3d"])(t)),
                                      ("dataset is 'hm3d'", "metadata says 'synthetic'")),
    "manifest-entry-names-another-scene": (_entry_of_another_scene_id, ("says scene_id", "apartment_9999")),
    "nan-in-K": (_on_file(_matrices("K", lambda m: m.__setitem__((0, 2), np.nan))), ("K holds NaN",)),
    "inf-in-cam2world": (_on_file(_matrices("cam2world", lambda m: m.__setitem__((1, 3), np.inf))),
                         ("cam2world holds NaN or infinite",)),
    "zero-focal-length": (_on_file(_matrices("K", lambda m: m.__setitem__((0, 0), 0.0))), ("focal length",)),
    "negative-focal-length": (_on_file(_matrices("K", lambda m: m.__setitem__((1, 1), -50.0))), ("focal length",)),
    "K-not-pinhole": (_on_file(_matrices("K", lambda m: m.__setitem__((2, 2), 0.0))), ("not a pinhole",)),
    "scaled-rotation": (_on_file(_matrices("cam2world", _scale_rotation)), ("not a rigid pose", "tolerance")),
    "mirrored-rotation": (_on_file(_matrices("cam2world", _reflect)), ("not a rigid pose", "det -1")),
    "pose-bottom-row": (_on_file(_matrices("cam2world", lambda m: m.__setitem__((3, 0), 0.5))), ("not a rigid pose",)),
    "depth-of-another-size": (_on_file(_png_of_another_size), ("row 2", "depth PNG is 64x32", "the image is 64x64")),
    "width-column-wrong": (_on_file(lambda t: _set("width", [32] * t.num_rows)(t)), ("the image is 32x64",)),
    "sizes-differ-between-views": (_on_file(lambda t: _set("height", [64] * (t.num_rows - 1) + [48])(t)),
                                   ("height 48", "shared by every view")),
    "depth-not-a-png": (_on_file(lambda t: _depth_bytes(t, 1, b"not a png")), ("row 1", "not a readable 16-bit PNG")),
    "depth-truncated": (_on_file(_truncate_png), ("row 1", "not a readable 16-bit PNG")),
    "image-of-another-size": (_on_file(lambda t: _image_bytes(t, 5, encode_rgb(np.zeros((32, 48, 3), np.uint8)))),
                              ("row 5", "image is 48x32", "say 64x64")),
    "image-not-an-image": (_on_file(lambda t: _image_bytes(t, 6, b"\xff\xd8 not a jpeg")),
                           ("row 6", "image is not a readable image")),
    "depth-null": (_on_file(lambda t: _depth_bytes(t, 4, None)), ("row 4", "depth is missing")),
    "K-null": (_on_file(lambda t: _set("K", [None, *t.column("K").to_pylist()[1:]])(t)), ("row 0", "K is missing")),
    "one-view": (_on_file(lambda t: t.slice(0, 1)), ("1 view(s), a pair needs two",)),
    "no-views": (_on_file(lambda t: t.slice(0, 0)), ("0 view(s), a pair needs two",)),
}  # fmt: skip


def _record_checksum(views: Path, entry: dict) -> None:
    from manifests.manifest import sha256_file

    path = views / str(entry.get("file", ""))
    if "sha256" in entry and path.is_file():
        entry["sha256"] = sha256_file(path)


def _damaged(small_pairs: Path, tmp_path: Path, damage) -> tuple[Path, str, Path]:
    out = copy_views(small_pairs, tmp_path / "pg")
    views = out / "views"
    manifest = json.loads((views.parent / "views.manifest.json").read_text())
    key, entry = min(manifest["scenes"].items())
    damage(views, key, entry, manifest)
    _record_checksum(views, entry)  # as if render had written the bad file: the checks, not the checksum, refuse it
    (views.parent / "views.manifest.json").write_text(json.dumps(manifest))
    return out, key, views / entry["file"]


def _pair_ids(out: Path) -> list[str]:
    ids: list[str] = []
    for shard in json.loads((out / "pairs.manifest.json").read_text())["shards"]:
        assert parquet_is_whole(out / "pairs" / shard["file"])
        ids += pq.read_table(out / "pairs" / shard["file"], columns=["pair_id"]).column("pair_id").to_pylist()
    return ids


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_filter_fails_the_scene_of_a_bad_views_file(small_pairs, tmp_path, defect):
    damage, phrases = DEFECTS[defect]
    out, key, victim = _damaged(small_pairs, tmp_path, damage)
    ran = pairgen(*FILTER_SMALL, "--out", out)
    assert "Traceback" not in ran.err, ran.err
    assert ran.code == 1, ran.err
    pairs = json.loads((out / "pairs.manifest.json").read_text())
    scene = pairs["scenes"][key]
    reason = scene.get("reason") or ""
    assert scene["status"] == "failed", scene
    assert "manifest" in defect or reason.count(victim.name) == 1, reason  # the file, named once
    for phrase in phrases:
        assert phrase in reason, (phrase, reason)
    assert "\n" not in reason
    assert [line for line in ran.err.splitlines() if "FAILED" in line] == [f"  FAILED {key}: {reason}"], ran.err
    others = [k for k in pairs["scenes"] if k != key]
    assert others and all(pairs["scenes"][k]["status"] == "ok" for k in others), pairs["scenes"]
    ids = _pair_ids(out)
    assert ids and not any(i.startswith(key + "/") for i in ids)
    assert len(ids) == len(set(ids))
    assert_no_temporaries(out)


def test_the_good_files_pass_the_checks_unchanged(small_pairs, tmp_path):
    """Unique view ids that are not 0..N-1 and poses within the tolerance are accepted, their ids kept."""
    out = copy_views(small_pairs, tmp_path / "pg")
    manifest = json.loads((out / "views.manifest.json").read_text())
    key, entry = min(manifest["scenes"].items())
    _edit(out / "views" / entry["file"], lambda t: _matrices("cam2world", _nearly_rigid)(
        _set("view_id", [100 + 3 * i for i in range(t.num_rows)])(t)))  # fmt: skip
    _record_checksum(out / "views", entry)
    (out / "views.manifest.json").write_text(json.dumps(manifest))
    ran = pairgen(*FILTER_SMALL, "--out", out)
    assert ran.code == 0, ran.err
    ids = [i for i in _pair_ids(out) if i.startswith(key + "/")]
    assert ids, "the scene kept no pair"
    for pair_id in ids:
        v1, v2 = (int(v) for v in pair_id.rsplit("/", 1)[1].split("-"))
        assert v1 != v2 and (v1 - 100) % 3 == 0 and (v2 - 100) % 3 == 0, pair_id


def test_a_views_file_changed_after_the_render_is_refused(small_pairs, tmp_path):
    """A sound views file that is not the one render recorded (another scene's, edited) fails its scene."""
    out = copy_views(small_pairs, tmp_path / "pg")
    manifest = json.loads((out / "views.manifest.json").read_text())
    key, entry = min(manifest["scenes"].items())
    _edit(out / "views" / entry["file"], lambda t: t, source="another/mesh.glb")  # the same rows, edited metadata
    ran = pairgen(*FILTER_SMALL, "--out", out)
    assert ran.code == 1 and f"FAILED {key}: " in ran.err and "SHA-256 differs" in ran.err, ran.err


def test_every_defect_is_tested():
    assert len(DEFECTS) == 28


def test_a_views_folder_that_is_a_file_is_said_to_be_one(tmp_path):
    from manifests.views import views_folder_problem

    (tmp_path / "apartment_0000.parquet").write_bytes(b"PAR1")
    assert views_folder_problem(tmp_path) is None
    assert views_folder_problem(tmp_path / "apartment_0000.parquet") == (
        f"{tmp_path / 'apartment_0000.parquet'}: is a file, not a views folder (the folder of "
        "<dataset>/<scene_id>.parquet views files)")  # fmt: skip
    assert views_folder_problem(tmp_path / "gone") == f"{tmp_path / 'gone'}: no such views folder"
