"""`pairgen inspect` on a small rendered and filtered synthetic set: statistics, contact sheet, damaged shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from covisibility.reference import covisible_mask
from manifests.codecs import decode_depth, decode_rgb
from pairgen.cli import main
from tests.commands import assert_one_message, pairgen
from tests.conftest import FILTER_SMALL
from tests.pairgen.conftest import damage_shard
from pairgen.inspect import LABEL_HEIGHT, MIN_PANEL, PAD, contact_sheet, highlight, pairs_statistics

FILTER = FILTER_SMALL
SIZE = 64  # --resolution


@pytest.fixture
def out(small_pairs) -> Path:
    return small_pairs


def manifest(out: Path) -> dict:
    return json.loads((out / "pairs.manifest.json").read_text())


def all_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for shard in manifest(out)["shards"]:
        for row in pq.read_table(out / "pairs" / shard["file"]).to_pylist():
            rows[row["pair_id"]] = row
    return rows


def test_statistics_agree_with_manifest_and_shards(out):
    m, stats = manifest(out), pairs_statistics(out / "pairs")
    assert stats["problems"] == []
    rows = all_rows(out)
    t = stats["totals"]
    assert t["pairs"] == m["totals"]["pairs"] == len(rows) > 20
    assert t["shards"] == len(m["shards"]) and t["scenes"] == m["totals"]["scenes"] == 3
    assert t["datasets"] == 1 and stats["datasets"] == {"synthetic": {"pairs": len(rows), "scenes": 3}}
    per_scene = {}
    for r in rows.values():
        per_scene[f"{r['dataset']}/{r['scene_id']}"] = per_scene.get(f"{r['dataset']}/{r['scene_id']}", 0) + 1
    assert stats["scenes"] == per_scene
    assert stats["histogram"] == m["histogram"] and sum(stats["histogram"]["counts"]) == len(rows)
    assert [s["pairs"] for s in stats["shards"]] == [s["pairs"] for s in m["shards"]]
    sizes = [(out / "pairs" / s["file"]).stat().st_size for s in m["shards"]]
    assert t["mib"] == pytest.approx(sum(sizes) / 2**20, abs=1e-3)
    assert stats["shard_sizes"]["pairs"]["max"] == 40 and stats["shard_sizes"]["pairs"]["min"] >= 1


def test_contact_sheet_layout_and_highlight(out, tmp_path):
    n = 5
    sheet = contact_sheet(out / "pairs", tmp_path / "sheet.png", n=n, seed=1)
    scale = -(-MIN_PANEL // SIZE)
    panel = SIZE * scale
    with Image.open(tmp_path / "sheet.png") as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    expected = (3 * panel + 4 * PAD, n * (LABEL_HEIGHT + panel + PAD) + PAD)  # three panels wide, a row a pair
    assert sheet["size"] == expected and (pixels.shape[1], pixels.shape[0]) == expected
    rows = all_rows(out)
    assert len({p["pair_id"] for p in sheet["pairs"]}) == n
    for i, drawn in enumerate(sheet["pairs"]):
        row = rows[drawn["pair_id"]]
        mask = covisible_mask(
            decode_depth(row["depth1"]["bytes"]), np.reshape(row["K1"], (3, 3)), np.reshape(row["cam2world1"], (4, 4)),
            decode_depth(row["depth2"]["bytes"]), np.reshape(row["K2"], (3, 3)), np.reshape(row["cam2world2"], (4, 4)),
        )  # fmt: skip
        assert mask.mean() == pytest.approx(row["covis_1in2"], abs=1e-6)  # the filter's own measure
        assert drawn["mask_fraction"] == pytest.approx(row["covis_1in2"], abs=1e-6)
        assert 0 < mask.mean() < 1
        top = PAD + i * (LABEL_HEIGHT + panel + PAD) + LABEL_HEIGHT
        cells = [pixels[top : top + panel : scale, PAD + j * (panel + PAD) :][:, :panel:scale] for j in range(3)]
        rgb1 = decode_rgb(row["image1"]["bytes"])
        np.testing.assert_array_equal(cells[0], rgb1)
        np.testing.assert_array_equal(cells[1], decode_rgb(row["image2"]["bytes"]))
        np.testing.assert_array_equal(cells[2], highlight(rgb1, mask))
        lit = cells[2].astype(int) - rgb1.astype(int)
        assert (lit[mask] != 0).any(axis=-1).mean() > 0.9  # covisible pixels changed...
        assert lit[mask][:, 1].mean() > 0 and lit[~mask][:, 1].mean() < 0  # ...greener; the others darker


def test_contact_sheet_is_deterministic(out, tmp_path):
    a = contact_sheet(out / "pairs", tmp_path / "a.png", n=4, seed=7)
    b = contact_sheet(out / "pairs", tmp_path / "b.png", n=4, seed=7)
    c = contact_sheet(out / "pairs", tmp_path / "c.png", n=4, seed=8)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert a["pairs"] == b["pairs"] and [p["pair_id"] for p in c["pairs"]] != [p["pair_id"] for p in a["pairs"]]


def test_cli_table_and_default_sheet(out, capsys):
    assert main(["inspect", "--out", str(out), "--pairs", "3"]) == 0
    text = capsys.readouterr().out
    total = manifest(out)["totals"]["pairs"]
    assert f"{total} pairs, 3 scenes, 1 dataset(s)" in text and "covisibility" in text and "#" in text
    sheet = out / "contact_sheet.png"
    assert f"contact sheet: {sheet}" in text
    with Image.open(sheet) as image:
        assert image.height == 3 * (LABEL_HEIGHT + 2 * SIZE + PAD) + PAD


def test_cli_json(out, tmp_path, capsys):
    assert main(["inspect", "--out", str(out), "--json", "--sheet", str(tmp_path / "s.png"), "--pairs", "2"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["totals"]["pairs"] == manifest(out)["totals"]["pairs"] and stats["problems"] == []
    assert stats["contact_sheet"]["path"] == str(tmp_path / "s.png") and (tmp_path / "s.png").is_file()


def test_missing_pairs_is_one_message(tmp_path, capsys):
    assert main(["inspect", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "run `pairgen filter" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "damage, phrase", [("delete", "but missing"), ("truncate", "truncated"), ("rows", "5 rows, the manifest says 40")]
)
def test_damaged_shard_is_a_problem_naming_it(damaged, capsys, damage, phrase):
    name = manifest(damaged)["shards"][1]["file"]
    path = damaged / "pairs" / name
    damage_shard(path, damage)
    problems = pairs_statistics(damaged / "pairs")["problems"]
    assert any(p.startswith(f"{name}: ") and phrase in p for p in problems)
    assert main(["inspect", "--out", str(damaged)]) == 1
    assert f"PROBLEM {name}: " in capsys.readouterr().err


def test_shard_not_in_the_manifest_is_a_problem(damaged):
    shutil.copy(damaged / "pairs" / "shard-00000.parquet", damaged / "pairs" / "shard-00099.parquet")
    assert any(p.startswith("shard-00099.parquet: on disk but not in the manifest")
               for p in pairs_statistics(damaged / "pairs")["problems"])  # fmt: skip


def test_every_problem_is_listed_when_no_clean_shard_is_left(damaged):
    """Statistics and every damaged shard first; the sheet, which has nothing clean to draw, is the last problem."""
    for shard in sorted((damaged / "pairs").glob("shard-*.parquet")):
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside the image bytes: readable, but not what the manifest recorded
        shard.write_bytes(bytes(data))
    ran = pairgen("inspect", "--out", damaged)
    assert ran.code == 1 and "Traceback" not in ran.err, ran.err
    problems = [line for line in ran.err.splitlines() if line.startswith("  PROBLEM")]
    shards = sorted(p.name for p in (damaged / "pairs").glob("shard-*.parquet"))
    assert all(any(name in p and "SHA-256" in p for p in problems) for name in shards), ran.err
    assert problems[-1].startswith("  PROBLEM contact sheet not drawn:") and "no readable pair to draw" in problems[-1]
    assert " pairs, " in ran.out  # the statistics were printed



def test_a_field_of_the_wrong_kind_is_one_message_naming_it(damaged):
    path = damaged / "pairs.manifest.json"
    doc = json.loads(path.read_text())
    doc["shards"][0]["pairs"] = "many"  # was Python's "invalid literal for int()"
    path.write_text(json.dumps(doc))
    ran = pairgen("inspect", "--out", damaged)
    assert_one_message(ran, f"{path}: field 'pairs' of shard 'shard-00000.parquet' is 'many', expected an integer")
    assert "invalid literal" not in ran.err


@pytest.mark.parametrize("failed", [2, 5, 0])
def test_not_complete_says_which_scenes_failed_or_that_the_filter_was_interrupted(damaged, failed):
    path = damaged / "pairs.manifest.json"
    doc = json.loads(path.read_text())
    doc["complete"] = False
    keys = [f"synthetic/broken_{k}" for k in range(failed)]
    for key in keys:  # a scene the filter failed: the manifest has its entry and reason
        doc["scenes"][key] = {"file": f"{key}.parquet", "status": "failed", "reason": f"{key}.parquet: bad depth"}
    path.write_text(json.dumps(doc))
    (problem,) = [p for p in pairs_statistics(damaged / "pairs")["problems"] if "not marked complete" in p]
    if failed:
        assert f"{failed} scene(s) failed in `pairgen filter` (synthetic/broken_0: synthetic/broken_0.parquet: bad " \
               "depth; " in problem
        assert "interrupted" not in problem and ("and 2 more" in problem) == (failed == 5)
    else:
        assert "the `pairgen filter` that wrote it was interrupted before its end; run it again" in problem


@pytest.mark.parametrize("name, magic", [("sheet.jpg", b"\xff\xd8\xff"), ("sheet.JPEG", b"\xff\xd8\xff"),
                                         ("sheet.png", b"\x89PNG")])  # fmt: skip
def test_the_sheets_suffix_names_its_format(out, tmp_path, name, magic):
    ran = pairgen("inspect", "--out", out, "--sheet", tmp_path / name, "--pairs", "2")
    assert ran.code == 0, ran.err
    assert (tmp_path / name).read_bytes().startswith(magic)  # was PNG bytes under any name


@pytest.mark.parametrize("sheet, phrase", [("folder", "is a folder, not a file"), ("sheet.gif", "not '.gif'"),
                                           ("sheet", "not 'a name without a suffix'")])  # fmt: skip
def test_a_sheet_that_is_a_folder_or_of_no_format_is_a_usage_error(out, tmp_path, sheet, phrase):
    (tmp_path / "folder").mkdir()
    ran = pairgen("inspect", "--out", out, "--sheet", tmp_path / sheet)
    assert_one_message(ran, "argument --sheet: ", phrase, code=2)  # was a traceback (a folder), or PNG bytes
    assert list((tmp_path / "folder").iterdir()) == [] and not (tmp_path / sheet).is_file()


@pytest.mark.parametrize("where", ["pairs", "views/synthetic", "_pairgen"])
def test_a_sheet_inside_a_data_folder_is_refused(out, where):
    before = sorted(p.name for p in (out / where).iterdir())
    ran = pairgen("inspect", "--out", out, "--sheet", out / where / "sheet.png")
    assert_one_message(ran, f"{out / where / 'sheet.png'}: inside pairgen's folder", "write the contact sheet outside")
    assert sorted(p.name for p in (out / where).iterdir()) == before
