"""`pairgen inspect --samples FOLDER` on the small stars of 5 views: statistics, the contact sheet, damaged inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from covisibility.measures import combine_directions
from manifests.codecs import decode_rgb
from manifests.manifest import sha256_file
from pairgen.cli import main
from pairgen.inspect import (CAPTION_HEIGHT, EDGE_COLOUR, HEAT_MARGIN, LABEL_HEIGHT, MIN_PANEL, PAD, heat_colours,
                             samples_contact_sheet, samples_sheet_path, samples_statistics)  # fmt: skip
from tests.conftest import FILTER_SMALL, copy_stage
from tests.pairgen.conftest import damage_shard

SIZE = 64  # --resolution of the small views
VIEWS = 5  # star5


@pytest.fixture
def out(small_samples) -> Path:
    return small_samples


@pytest.fixture(scope="module")
def embedded(small_samples, tmp_path_factory) -> Path:
    """A copy of the set with chains of 3 views that carry their views (OUT/chain3, --embed) beside star5."""
    copy = tmp_path_factory.mktemp("pg-embedded") / "pg"
    shutil.copytree(small_samples, copy)
    assert main([*FILTER_SMALL, "--views", "3", "--shape", "chain", "--embed", "--pairs-per-scene", "5",
                 "--out", str(copy)]) == 0  # fmt: skip
    return copy


def manifest(out: Path, folder: str = "star5") -> dict:
    return json.loads((out / f"{folder}.manifest.json").read_text())


def all_rows(out: Path, folder: str = "star5") -> dict[str, dict]:
    return {r["sample_id"]: r for s in manifest(out, folder)["shards"]
            for r in pq.read_table(out / folder / s["file"]).to_pylist()}  # fmt: skip


def views_of(out: Path, dataset: str, scene_id: str) -> dict[int, np.ndarray]:
    table = pq.read_table(out / "views" / dataset / f"{scene_id}.parquet", columns=["view_id", "image"])
    return {v: decode_rgb(i["bytes"]) for v, i in zip(table.column("view_id").to_pylist(), table.column("image").to_pylist())}


def edges_of(row: dict, rule: str = "min") -> list[float]:
    n = len(row["view_ids"])
    m = np.asarray(row["covis"], np.float32).reshape(n, n)
    return [float(combine_directions(m[k, p], m[p, k], rule)) for k, p in enumerate(row["parents"]) if p >= 0]


def test_statistics_agree_with_manifest_and_shards(out):
    m, stats = manifest(out), samples_statistics(out / "star5")
    assert stats["problems"] == []
    rows = all_rows(out)
    t = stats["totals"]
    assert t["samples"] == m["totals"]["samples"] == len(rows) == 60
    assert t["scenes"] == 3 and t["datasets"] == 1 and t["shards"] == len(m["shards"])
    assert stats["datasets"] == {"synthetic": {"samples": 60, "scenes": 3}}
    assert stats["shape"] == "star" and stats["views_per_sample"] == VIEWS and stats["embedded"] is False
    assert stats["folder"] == "star5" and stats["config_hash"] == m["config_hash"]
    per_scene: dict[str, int] = {}
    for r in rows.values():
        per_scene[f"{r['dataset']}/{r['scene_id']}"] = per_scene.get(f"{r['dataset']}/{r['scene_id']}", 0) + 1
    assert stats["scenes"] == per_scene
    edges = [e for r in rows.values() for e in edges_of(r)]
    assert t["edges"] == len(edges) == 60 * (VIEWS - 1)
    assert stats["histogram"] == m["histogram"] and sum(stats["histogram"]["counts"]) == len(edges)
    assert stats["edges"]["min"] == pytest.approx(min(edges)) and stats["edges"]["max"] == pytest.approx(max(edges))
    assert 0.3 <= min(edges) and max(edges) <= 0.9 and stats["band"] == [0.3, 0.9]
    assert stats["others"]["count"] == 60 * (VIEWS * (VIEWS - 1) // 2 - (VIEWS - 1)) and stats["others"]["max"] <= 0.9
    assert stats["views"] == {"referenced": True, "files": 3, "missing": [], "changed": []}
    sizes = [(out / "star5" / s["file"]).stat().st_size for s in m["shards"]]
    assert t["mib"] == pytest.approx(sum(sizes) / 2**20, abs=1e-3)
    assert stats["shard_sizes"]["samples"]["max"] == 40


def test_contact_sheet_rows_of_views_and_their_matrix(out, tmp_path):
    n = 4
    sheet = samples_contact_sheet(out / "star5", tmp_path / "sheet.png", n=n, seed=1)
    scale = -(-MIN_PANEL // SIZE)
    panel = SIZE * scale
    assert sheet["panel"] == (panel, panel) and sheet["skipped"] == []
    cell = sheet["cell"]
    assert cell >= 20  # large enough to write each value in its cell
    body = max(panel, HEAT_MARGIN + VIEWS * cell)
    assert sheet["row_height"] == LABEL_HEIGHT + body + CAPTION_HEIGHT + PAD
    with Image.open(tmp_path / "sheet.png") as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels.shape[1], pixels.shape[0]) == sheet["size"]
    assert sheet["size"][1] == n * sheet["row_height"] + PAD  # a row a sample
    assert sheet["heat_x"] >= PAD + VIEWS * (panel + PAD) + HEAT_MARGIN  # the matrix right of the views
    assert sheet["heat_x"] + VIEWS * cell < sheet["size"][0]
    rows = all_rows(out)
    assert len({s["sample_id"] for s in sheet["samples"]}) == n
    for drawn in sheet["samples"]:
        row = rows[drawn["sample_id"]]
        assert drawn["view_ids"] == row["view_ids"] and drawn["parents"] == row["parents"] == [-1, 0, 0, 0, 0]
        assert drawn["edges"] == pytest.approx(edges_of(row))
        top = drawn["top"]
        views = views_of(out, row["dataset"], row["scene_id"])
        for j, v in enumerate(row["view_ids"]):  # the views in the sample's order, reference first
            x = PAD + j * (panel + PAD)
            np.testing.assert_array_equal(pixels[top : top + panel : scale, x : x + panel : scale], views[v])
        m = np.asarray(row["covis"], np.float32).reshape(VIEWS, VIEWS)
        colours = heat_colours(m)
        edge_cells = {(k, p) for k, p in enumerate(row["parents"]) if p >= 0}
        edge_cells |= {(p, k) for k, p in edge_cells}
        for i in range(VIEWS):
            for j in range(VIEWS):
                x, y = sheet["heat_x"] + j * cell, top + HEAT_MARGIN + i * cell
                np.testing.assert_array_equal(pixels[y + 3, x + 3], colours[i, j])  # the cell's colour: covis[i, j]
                border = tuple(pixels[y + cell // 2, x])
                assert (border == EDGE_COLOUR) == ((i, j) in edge_cells)  # edges outlined, no other cell


def test_heat_colours_run_from_dark_to_bright():
    c = heat_colours(np.array([0.0, 0.5, 1.0, np.nan]))
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    assert c[0].sum() < c[1].sum() < c[2].sum() and tuple(c[3]) == (160, 160, 160)


def test_contact_sheet_is_deterministic(out, tmp_path):
    a = samples_contact_sheet(out / "star5", tmp_path / "a.png", n=3, seed=7)
    again = samples_contact_sheet(out / "star5", tmp_path / "b.png", n=3, seed=7)
    c = samples_contact_sheet(out / "star5", tmp_path / "c.png", n=3, seed=8)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() and again["samples"] == a["samples"]
    assert [s["sample_id"] for s in c["samples"]] != [s["sample_id"] for s in a["samples"]]


def test_cli_table_and_default_sheet(damaged, capsys):
    out = damaged  # a copy: the sheet goes into OUT
    assert main(["inspect", "--out", str(out), "--samples", "star5", "--pairs", "3"]) == 0
    text = capsys.readouterr().out
    assert f"{out / 'star5'}  (config {manifest(out)['config_hash']}; star of 5 views a sample, referenced)" in text
    assert "60 samples, 3 scenes, 1 dataset(s), 2 shard(s)" in text and "240 edges" in text
    assert "synthetic: 60 samples from 3 scenes" in text and "samples a scene: min 20" in text
    assert "views files named: 3, all present and unchanged" in text
    assert "covisibility of the edges" in text and "#" in text and "shards  samples: min 20" in text
    sheet = samples_sheet_path(out, "star5")
    assert sheet == out / "contact_sheet_star5.png" and f"contact sheet: {sheet} (3 samples, seed 0)" in text
    with Image.open(sheet) as image:
        assert image.height == 3 * (LABEL_HEIGHT + 2 * SIZE + CAPTION_HEIGHT + PAD) + PAD
    assert not (out / "contact_sheet.png").exists()  # the pairs' sheet is another file
    assert sorted(p.name for p in (out / "star5").iterdir()) == ["shard-00000.parquet", "shard-00001.parquet"]


def test_cli_json(out, tmp_path, capsys):
    assert main(["inspect", "--out", str(out), "--samples", "star5", "--json", "--sheet", str(tmp_path / "s.png"),
                 "--pairs", "2"]) == 0  # fmt: skip
    stats = json.loads(capsys.readouterr().out)
    assert stats["totals"]["samples"] == 60 and stats["problems"] == []
    assert stats["contact_sheet"] == {"path": str(tmp_path / "s.png"), "samples": 2, "seed": 0, "skipped": []}


def test_embedded_samples(embedded, tmp_path, capsys):
    stats = samples_statistics(embedded / "chain3")
    assert stats["problems"] == [] and stats["embedded"] is True and stats["shape"] == "chain"
    assert stats["views"] == {"referenced": False, "files": 0, "missing": [], "changed": []}
    assert stats["totals"]["samples"] == manifest(embedded, "chain3")["totals"]["samples"] == 15
    assert stats["others"]["max"] < 0.3  # a chain's other pairs stay under --cap (min_covis)
    sheet = samples_contact_sheet(embedded / "chain3", tmp_path / "c.png", n=2)
    rows = all_rows(embedded, "chain3")
    with Image.open(tmp_path / "c.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    for drawn in sheet["samples"]:
        row = rows[drawn["sample_id"]]
        assert drawn["parents"] == [-1, 0, 1]
        for j, image in enumerate(row["images"]):  # the rows' own bytes
            x = PAD + j * (sheet["panel"][0] + PAD)
            np.testing.assert_array_equal(pixels[drawn["top"] : drawn["top"] + 2 * SIZE : 2, x : x + 2 * SIZE : 2],
                                          decode_rgb(image["bytes"]))  # fmt: skip
    assert main(["inspect", "--out", str(embedded), "--samples", "chain3", "--sheet", str(tmp_path / "s.png")]) == 0
    assert "views: embedded in the rows" in capsys.readouterr().out


@pytest.mark.parametrize("damage, phrase", [("delete", "listed in star5.manifest.json (20 samples) but missing"),
                                            ("truncate", "truncated"),
                                            ("rows", "5 rows, the manifest says 20 samples")])  # fmt: skip
def test_damaged_shard_is_a_problem_naming_it(damaged, tmp_path, capsys, damage, phrase):
    name = manifest(damaged)["shards"][1]["file"]
    path = damaged / "star5" / name
    damage_shard(path, damage)
    problems = samples_statistics(damaged / "star5")["problems"]
    assert any(p.startswith(f"{name}: ") and phrase in p for p in problems), problems
    assert main(["inspect", "--out", str(damaged), "--samples", "star5", "--sheet", str(tmp_path / "s.png")]) == 1
    err = capsys.readouterr().err
    assert f"PROBLEM {name}: " in err and "problem(s) in" in err and "Traceback" not in err


def test_changed_or_missing_views_file_is_named_and_not_drawn(damaged, tmp_path, capsys):
    changed = damaged / "views" / "synthetic" / "apartment_0001.parquet"
    pq.write_table(pq.read_table(changed), changed, compression="gzip")  # the same rows, other bytes
    (damaged / "views" / "synthetic" / "apartment_0002.parquet").unlink()
    stats = samples_statistics(damaged / "star5")
    assert stats["views"]["changed"] == ["views/synthetic/apartment_0001.parquet"]
    assert stats["views"]["missing"] == ["views/synthetic/apartment_0002.parquet"]
    assert any(p.startswith("views/synthetic/apartment_0001.parquet: changed since its samples were drawn")
               and "20 samples" in p for p in stats["problems"])  # fmt: skip
    assert any(p.startswith("views/synthetic/apartment_0002.parquet: missing") for p in stats["problems"])
    sheet = samples_contact_sheet(damaged / "star5", tmp_path / "s.png", n=60)
    assert {s["sample_id"].split("/")[1] for s in sheet["samples"]} == {"apartment_0000"}
    assert len(sheet["skipped"]) == 40 and all("apartment_0001" in s["reason"] or "apartment_0002" in s["reason"]
                                               for s in sheet["skipped"])  # fmt: skip
    assert main(["inspect", "--out", str(damaged), "--samples", "star5", "--sheet", str(tmp_path / "t.png")]) == 1
    captured = capsys.readouterr()
    assert "PROBLEM views/synthetic/apartment_0001.parquet: changed" in captured.err
    assert "views files named: 3, 1 missing, 1 changed" in captured.out and "left out" in captured.out


def test_a_row_that_breaks_the_shape_is_named(damaged):
    """A shard rewritten with an edge out of the band (and recorded in the manifest as if the filter wrote it)."""
    m = manifest(damaged)
    entry = m["shards"][0]
    path = damaged / "star5" / entry["file"]
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[3]["covis"][1 * VIEWS + 0] = 0.05  # view 2 in view 1: its edge now below min_covis
    pq.write_table(table.from_pylist(rows, schema=table.schema), path)
    entry.update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (damaged / "star5.manifest.json").write_text(json.dumps(m))
    problems = samples_statistics(damaged / "star5")["problems"]
    assert any(p.startswith(f"{entry['file']}: 1 sample(s) break the star's rules (first: {rows[3]['sample_id']}: "
                            "an edge's covisibility") for p in problems), problems  # fmt: skip


def test_shard_not_in_the_manifest_is_a_problem(damaged):
    shutil.copy(damaged / "star5" / "shard-00000.parquet", damaged / "star5" / "shard-00099.parquet")
    assert any(p.startswith("shard-00099.parquet: on disk but not in the manifest")
               for p in samples_statistics(damaged / "star5")["problems"])  # fmt: skip


def test_unknown_folder_and_samples_only_are_one_message(out, capsys):
    assert main(["inspect", "--out", str(out), "--samples", "tree9"]) == 1
    err = capsys.readouterr().err
    assert "tree9.manifest.json: not found" in err and "samples folders here: star5" in err and "Traceback" not in err
    assert main(["inspect", "--out", str(out), "--samples", "../views"]) == 1
    assert "not a folder name" in capsys.readouterr().err
    assert main(["inspect", "--out", str(out)]) == 1  # no pairs here: today's message, and where the samples are
    err = capsys.readouterr().err
    assert "run `pairgen filter" in err and "pairgen inspect --samples star5" in err and "Traceback" not in err


def test_pairs_beside_samples_say_so(small_pairs, small_samples, tmp_path, capsys):
    out = tmp_path / "pg"
    for folder in ("views", "pairs"):
        copy_stage(small_pairs, out, folder)
    copy_stage(small_samples, out, "star5")
    assert main(["inspect", "--out", str(out), "--sheet", str(tmp_path / "s.png")]) == 0
    captured = capsys.readouterr()
    assert "pairs, 3 scenes" in captured.out and "samples here too: star5 (pairgen inspect --samples star5)" in captured.err
