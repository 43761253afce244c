"""pretrain.shards.verify_shards: what `pretrain run` checks once a run, with and without a manifest beside the shards.

A folder copied without its sibling manifest (``cp -r OUT/pairs elsewhere/``)
is checked against the checksums each shard carries in its footer (issue 23):
a shard whose bytes were altered stops the run with one message naming it;
shards that carry none (written before the checksums existed) train, and one
warning line says how many could not be verified.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.io import CHECKSUMS_KEY
from tests.commands import PRETRAIN_TINY, assert_one_message, files_under, pretrain, rewrite_image
from tests.conftest import copy_stage


def flip_image_byte(shard: Path) -> None:
    """One byte in the middle of the first row's view-1 JPEG, changed in the file: it stays valid Parquet (images are
    stored uncompressed, without page checksums)."""
    image = pq.read_table(shard, columns=["image1"]).column("image1")[0]["bytes"].as_py()
    data = bytearray(shard.read_bytes())
    at = data.find(image)  # row 0's: image1 is the first image column, row 0 its first value
    assert at > 0
    data[at + len(image) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def strip_checksums(shard: Path) -> None:
    """The shard as pairgen wrote it before shards carried checksums: the same rows, no checksums in the footer."""
    table = pq.read_table(shard)
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != CHECKSUMS_KEY.encode()}
    pq.write_table(table.replace_schema_metadata(meta), shard)


def copied(out: Path, folder: str, dest: Path) -> Path:
    """``OUT/<folder>`` copied to ``dest`` without its sibling manifest (``cp -r OUT/pairs elsewhere/``)."""
    copy = dest / folder
    shutil.copytree(out / folder, copy)
    assert not (dest / f"{folder}.manifest.json").exists()
    return copy


def run(shards: Path, runs: Path, *extra: str | Path):
    return pretrain("run", "--shards", shards, *PRETRAIN_TINY, "--runs", runs, "--name", "r", *extra)


@pytest.mark.parametrize("damage", [flip_image_byte, rewrite_image], ids=["byte-flipped", "rewritten"])
def test_a_copied_folder_without_manifest_refuses_a_shard_with_altered_image_bytes(small_pairs, tmp_path, damage):
    pairs = copied(small_pairs, "pairs", tmp_path / "elsewhere")
    victim = sorted(pairs.glob("shard-*.parquet"))[1]
    damage(victim)
    ran = run(pairs, tmp_path / "runs")
    assert_one_message(ran, str(victim), "row group 0", "'image1'", "checksum", "--no-verify")
    assert files_under(tmp_path / "runs") == []


def test_a_copied_folder_without_manifest_trains_verified_and_silent(small_pairs, tmp_path, caplog):
    pairs = copied(small_pairs, "pairs", tmp_path / "elsewhere")
    ran = run(pairs, tmp_path / "runs")
    assert ran.code == 0, ran.err
    assert "cannot be verified" not in ran.err + caplog.text, caplog.text
    record = json.loads((tmp_path / "runs" / "r" / "verified-shards.json").read_text())
    assert sorted(Path(p).name for p in record) == sorted(p.name for p in pairs.glob("shard-*.parquet"))


def test_shards_without_manifest_or_checksums_train_with_one_warning(small_pairs, tmp_path, caplog):
    pairs = copied(small_pairs, "pairs", tmp_path / "elsewhere")
    shards = sorted(pairs.glob("shard-*.parquet"))
    for shard in shards:
        strip_checksums(shard)
    for _ in range(2):  # once a run, every run: nothing was verified, so nothing is remembered
        caplog.clear()
        ran = run(pairs, tmp_path / "runs")
        assert ran.code == 0, ran.err
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warned) == 1 and f"{len(shards)} shard(s) cannot be verified" in warned[0], warned
        assert "no manifest" in warned[0] and "no checksums" in warned[0] and "\n" not in warned[0], warned


def test_a_single_shard_file_is_checked_too(small_pairs, tmp_path):
    pairs = copied(small_pairs, "pairs", tmp_path / "elsewhere")
    victim = min(pairs.glob("shard-*.parquet"))
    flip_image_byte(victim)
    assert_one_message(run(victim, tmp_path / "runs"), str(victim), "checksum")


def test_with_the_manifest_the_sha256_decides_as_before(small_pairs, tmp_path):
    pairs = copy_stage(small_pairs, tmp_path, "pairs")
    victim = min(pairs.glob("shard-*.parquet"))
    rewrite_image(victim)
    assert_one_message(run(pairs, tmp_path / "runs"), str(victim), "SHA-256 differs", "--no-verify")


def test_a_copied_samples_folder_without_manifest_refuses_an_altered_shard(small_samples, tmp_path):
    star5 = copied(small_samples, "star5", tmp_path / "elsewhere")
    victim = min(star5.glob("shard-*.parquet"))
    table = pq.read_table(victim)
    views = table.column("view_ids").to_pylist()
    views[3] = views[3][::-1]  # the same views in another order: the rows still read, but are not the ones written
    column = pa.array(views, table.schema.field("view_ids").type)
    pq.write_table(table.set_column(table.schema.get_field_index("view_ids"), "view_ids", column), victim)
    ran = run(star5, tmp_path / "runs", "--views", small_samples / "views")
    assert_one_message(ran, str(victim), "'view_ids'", "checksum")
