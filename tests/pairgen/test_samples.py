"""``pairgen filter --views N --shape S``: the samples stage (pairgen/samples.py) and the samples format it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests.samples import SAMPLES_FORMAT, SampleError, read_samples, samples_schema
from tests.commands import assert_one_message, pairgen
from tests.conftest import FILTER_SMALL, SAMPLES_SMALL, copy_stage


def views_copy(small_pairs: Path, dest: Path) -> Path:
    copy_stage(small_pairs, dest, "views")
    return dest


def test_stars_are_written_by_reference_and_read_back(small_samples):
    out = small_samples
    shards = sorted((out / "star5").glob("shard-*.parquet"))
    assert shards and sorted(p.name for p in (out / "star5").iterdir()) == [p.name for p in shards]  # Parquet only
    assert pq.read_schema(shards[0]).remove_metadata() == samples_schema(embed=False)
    meta = json.loads(pq.read_schema(shards[0]).metadata[b"pairgen"])
    assert meta["format"] == SAMPLES_FORMAT and meta["shape"] == "star" and meta["views"] == 5
    manifest = json.loads((out / "star5.manifest.json").read_text())
    assert manifest["format"] == "pairgen-samples-manifest/1" and manifest["complete"]
    assert manifest["totals"]["samples"] == sum(s["samples"] for s in manifest["shards"]) == 60
    samples = list(read_samples(out / "star5"))
    assert len(samples) == 60 and len({s.sample_id for s in samples}) == 60
    for s in samples[:10]:
        assert s.rgb.shape == (5, 64, 64, 3) and s.depth.shape == (5, 64, 64) and s.covis.shape == (5, 5)
        assert (s.parents == [-1, 0, 0, 0, 0]).all() and s.sample_id.endswith("-".join(f"{v:06d}" for v in s.view_ids))
        edges = np.minimum(s.covis[0, 1:], s.covis[1:, 0])
        assert ((edges >= 0.3) & (edges <= 0.9)).all()


def test_embedded_stars_carry_the_same_views(small_pairs, small_samples, tmp_path):
    out = views_copy(small_pairs, tmp_path / "pg")
    assert pairgen(*SAMPLES_SMALL, "--embed", "--out", out).code == 0
    assert "images" in pq.read_schema(next((out / "star5").glob("*.parquet"))).names
    referenced = {s.sample_id: s for s in read_samples(small_samples / "star5")}
    embedded = list(read_samples(out / "star5"))
    assert {s.sample_id for s in embedded} == set(referenced)  # the same samples (the config differs by --embed only)
    for s in embedded[:5]:
        r = referenced[s.sample_id]
        for name in ("rgb", "depth", "K", "cam2world", "covis"):
            np.testing.assert_array_equal(getattr(s, name), getattr(r, name))


@pytest.mark.parametrize("shape, n", [("chain", 4), ("tree", 5)])
def test_chains_and_trees_record_their_parents(small_pairs, tmp_path, shape, n):
    out = views_copy(small_pairs, tmp_path / "pg")
    ran = pairgen(*FILTER_SMALL, "--views", n, "--shape", shape, "--pairs-per-scene", "8", "--out", out)
    assert ran.code == 0, ran.err
    assert f"{shape}s of {n} views from 3 scenes" in ran.err
    for s in read_samples(out / f"{shape}{n}"):
        assert s.parents[0] == -1 and all(0 <= p < k for k, p in enumerate(s.parents) if k)
        if shape == "chain":
            assert (s.parents[1:] == np.arange(n - 1)).all()


def test_the_defaults_keep_todays_pairs(small_pairs, tmp_path):
    """--views 2 --shape pair (the defaults) is today's filter: the same pairs folder, the same shards."""
    out = views_copy(small_pairs, tmp_path / "pg")
    assert pairgen(*FILTER_SMALL, "--views", "2", "--shape", "pair", "--out", out).code == 0
    ours = sorted((out / "pairs").glob("*.parquet"))
    theirs = sorted((small_pairs / "pairs").glob("*.parquet"))
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, theirs))
    assert not (out / "pair2").exists()


def test_referenced_pairs_are_todays_pairs_named_not_copied(small_pairs, tmp_path):
    out = views_copy(small_pairs, tmp_path / "pg")
    assert pairgen(*FILTER_SMALL, "--reference", "--out", out).code == 0
    pairs = list(read_samples(out / "pair2"))
    embedded = pq.read_table(small_pairs / "pairs").to_pylist()
    assert sorted((s.dataset, s.scene_id, *s.view_ids.tolist()) for s in pairs) == sorted(
        (r["dataset"], r["scene_id"], r["view1_id"], r["view2_id"]) for r in embedded)
    by_id = {(r["dataset"], r["scene_id"], r["view1_id"], r["view2_id"]): r for r in embedded}
    for s in pairs:
        r = by_id[(s.dataset, s.scene_id, *s.view_ids.tolist())]
        assert s.shape == "pair" and (s.parents == [-1, 0]).all()
        assert (s.covis[0, 1], s.covis[1, 0]) == (np.float32(r["covis_1in2"]), np.float32(r["covis_2in1"]))
    ran = pairgen(*FILTER_SMALL, "--reference", "--rule", "mean", "--overwrite", "--out", out)
    assert_one_message(ran, "argument --rule", "pairs are chosen by the min", code=2)


def test_a_rerun_reuses_and_writes_nothing(small_samples, tmp_path):
    out = tmp_path / "pg"
    copy_stage(small_samples, out, "views")
    copy_stage(small_samples, out, "star5")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "star5").iterdir()}
    ran = pairgen(*SAMPLES_SMALL, "--out", out)
    assert ran.code == 0 and "already complete: 60 stars of 5 views" in ran.err, ran.err
    assert {p: p.stat().st_mtime_ns for p in (out / "star5").iterdir()} == stamps


@pytest.mark.parametrize(
    "args, phrases",
    [
        (["--views", "5", "--shape", "pair"], ["argument --views", "a pair has 2 views"]),
        (["--views", "4", "--shape", "tree", "--cap", "0.5"], ["argument --cap", "above the band's floor --min-covis"]),
        (["--views", "5", "--shape", "star", "--search", "exhaustive"], ["argument --search", "applies to pairs"]),
        (["--views", "1", "--shape", "star"], ["argument --views", "at least 2"]),
        (["--views", "5", "--shape", "star", "--embed", "--reference"], ["argument --reference", "--embed"]),
    ],
)
def test_bad_sample_options_are_refused_with_exit_2(small_pairs, tmp_path, args, phrases):
    out = views_copy(small_pairs, tmp_path / "pg")
    ran = pairgen(*FILTER_SMALL, *args, "--out", out)
    assert_one_message(ran, *phrases, code=2)
    assert not [p for p in out.iterdir() if p.name not in ("views", "views.manifest.json")]


def test_a_scene_with_too_few_views_or_no_such_sample_fails_and_the_others_go_on(small_pairs, tmp_path):
    out = views_copy(small_pairs, tmp_path / "pg")
    ran = pairgen(*FILTER_SMALL, "--views", "30", "--shape", "star", "--out", out)  # 24 views a scene
    assert ran.code == 1 and "Traceback" not in ran.err
    assert ran.err.count("fewer than the 30 a sample takes (--views)") == 3
    ran = pairgen(*FILTER_SMALL, "--views", "12", "--shape", "star", "--overwrite", "--out", out)
    assert ran.code == 1 and "Traceback" not in ran.err and "no star of 12 views among its 24" in ran.err


def test_a_changed_views_file_is_named_never_read_wrong(small_samples, tmp_path):
    out = tmp_path / "pg"
    copy_stage(small_samples, out, "views")
    copy_stage(small_samples, out, "star5")
    victim = sorted((out / "views").rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")  # another file under the same name
    with pytest.raises(SampleError, match=f"{victim}: changed since its samples were drawn.*scene synthetic/"):
        list(read_samples(out / "star5"))
    victim.unlink()
    with pytest.raises(SampleError, match=f"{victim}: missing: the views file of scene synthetic/"):
        list(read_samples(out / "star5"))
