"""The dataset card with samples folders (manifests/card.py): one config a folder, features ``datasets`` accepts.

``small_samples`` holds views/ and star5/ (stars of 5 views that name their
views); a module copy adds chain3/ (chains of 3 views that carry them,
``--embed``) and pairs/. The views' and pairs' configs and features stay what
they are without samples (tests/manifests/test_readers.py checks those).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests.card import card_text, features_yaml, samples_folders, write_card
from manifests.samples import samples_schema
from pairgen.cli import main
from tests.conftest import FILTER_SMALL, copy_stage


@pytest.fixture(scope="module")
def out(small_samples, small_pairs, tmp_path_factory) -> Path:
    """views/, pairs/, star5/ (referenced) and chain3/ (embedded), the card written by the last filter."""
    copy = tmp_path_factory.mktemp("pg-card") / "pg"
    shutil.copytree(small_samples, copy)
    copy_stage(small_pairs, copy, "pairs")
    assert main([*FILTER_SMALL, "--views", "3", "--shape", "chain", "--embed", "--pairs-per-scene", "5",
                 "--out", str(copy)]) == 0  # fmt: skip
    return copy


def total(out: Path, folder: str) -> int:
    return json.loads((out / f"{folder}.manifest.json").read_text())["totals"]["samples"]


def load(path: Path, config: str | None, cache: Path, **kw):
    import datasets

    datasets.disable_progress_bars()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return datasets.load_dataset(str(path), config, split="train", cache_dir=str(cache), **kw)


def test_samples_folders_are_found_by_their_manifests(out, tmp_path):
    assert samples_folders(out) == ["chain3", "star5"]
    (out / "_pairgen" / "x.manifest.json").write_text("{}")  # not beside the data folders: not a config
    (tmp_path / "pairs.manifest.json").write_text(json.dumps({"format": "pairgen-pairs-manifest/1"}))
    (tmp_path / "odd.manifest.json").write_text("not json")
    (tmp_path / "tree4.manifest.json").write_text(json.dumps({"format": "pairgen-samples-manifest/1"}))
    assert samples_folders(tmp_path) == ["tree4"] and samples_folders(tmp_path / "absent") == []


def test_the_filter_writes_the_card_with_every_samples_config(small_samples, out):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(small_samples / "README.md")  # written by `pairgen filter --views 5 --shape star`
    configs = {c["config_name"]: c for c in card.data.to_dict()["configs"]}
    assert configs["star5"]["data_files"] == [{"split": "train", "path": "star5/shard-*.parquet"}]
    assert configs["views"].get("default") is True and "default" not in configs["star5"]  # no pairs there
    data = DatasetCard.load(out / "README.md").data.to_dict()
    assert [c["config_name"] for c in data["configs"]] == ["pairs", "views", "chain3", "star5"]
    assert data["configs"][0]["default"] is True and sum(bool(c.get("default")) for c in data["configs"]) == 1
    text = (out / "README.md").read_text()
    for folder in ("star5", "chain3"):
        m = json.loads((out / f"{folder}.manifest.json").read_text())
        assert f"config `{folder}` (config hash `{m['config_hash']}`" in text
        assert json.dumps(m["config"], indent=2, sort_keys=True) in text
        for shard in m["shards"]:
            assert f"| `{folder}/{shard['file']}` | {shard['samples']} | `{shard['sha256']}` |" in text
    assert "| `star5` | star | 5 | referenced | synthetic | 3 | 60 |" in text
    assert "| `chain3` | chain | 3 | embedded | synthetic | 3 | 15 |" in text
    assert "Covisibility of the edges of `star5` (each view with its parent):" in text
    assert write_card(out) == out / "README.md" and (out / "README.md").read_text() == text  # stable


def test_views_and_pairs_configs_are_unchanged_by_samples(out, small_pairs, tmp_path):
    import yaml

    def front(text: str) -> dict:
        return yaml.safe_load(text.split("---")[1])

    plain = tmp_path / "plain"
    for folder in ("views", "pairs"):
        copy_stage(out, plain, folder)
    without, with_samples = front(card_text(plain)), front(card_text(out))
    assert card_text(plain) == card_text(small_pairs)  # the same manifests: the same card
    for key in ("configs", "dataset_info"):
        kept = [c for c in with_samples[key] if c["config_name"] in ("pairs", "views")]
        assert kept == without[key]
    assert {k: v for k, v in with_samples.items() if k not in ("configs", "dataset_info")} == \
        {k: v for k, v in without.items() if k not in ("configs", "dataset_info")}  # fmt: skip


@pytest.mark.parametrize("embed", [False, True])
def test_samples_features_are_datasets_own(embed):
    from datasets import Features, Image, List, Value

    features = Features._from_yaml_list(features_yaml(samples_schema(embed), ("images", "depths")))
    assert features["view_ids"] == List(Value("int32")) and features["covis"] == List(Value("float32"))
    if embed:
        assert features["images"] == List(Image()) and features["depths"] == List(Image())
        assert features["K"] == List(List(Value("float32"), length=9))
        assert features["cam2world"] == List(List(Value("float32"), length=16))
    assert features._to_yaml_list() == features_yaml(samples_schema(embed), ("images", "depths"))


@pytest.mark.parametrize("folder", ["star5", "chain3"])
def test_the_card_makes_each_samples_folder_a_config(out, folder, tmp_path):
    ds = load(out, folder, tmp_path / "hf")
    assert ds.num_rows == total(out, folder)
    n = 5 if folder == "star5" else 3
    row = ds[0]
    assert len(row["view_ids"]) == len(row["parents"]) == n and len(row["covis"]) == n * n
    first = next((out / folder).glob("*.parquet"))
    plain = load(Path("parquet"), None, tmp_path / "hf", data_files=str(first))
    images = {"images", "depths"} if folder == "chain3" else set()
    assert {k: v for k, v in ds.features.items() if k not in images} == \
        {k: v for k, v in plain.features.items() if k not in images}  # fmt: skip
    if folder == "chain3":  # embedded: the card declares the views as images, datasets decodes them
        import datasets

        assert ds.features["images"] == datasets.List(datasets.Image())
        assert [im.size for im in row["images"]] == [(row["width"], row["height"])] * n
        assert len(row["K"]) == n and len(row["K"][0]) == 9


@pytest.mark.parametrize("reader", ["pyarrow", "polars", "duckdb", "datasets"])
def test_every_reader_opens_a_samples_folder_by_name(out, reader, tmp_path):
    def read(folder: Path) -> int:
        if reader == "pyarrow":
            import pyarrow.dataset as ds

            return ds.dataset(folder, format="parquet").count_rows()
        if reader == "polars":
            import polars as pl

            return pl.scan_parquet(folder).select(pl.len()).collect().item()
        if reader == "duckdb":
            import duckdb

            with duckdb.connect() as con:
                return con.execute("select count(*) from read_parquet(?)", [f"{folder}/*.parquet"]).fetchone()[0]
        return load(Path("parquet"), None, tmp_path / "hf", data_dir=str(folder)).num_rows

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert {f: read(out / f) for f in ("star5", "chain3")} == {f: total(out, f) for f in ("star5", "chain3")}
    assert all(p.suffix == ".parquet" for f in ("star5", "chain3") for p in (out / f).iterdir())
    assert pq.read_schema(next((out / "star5").glob("*.parquet"))).names == samples_schema(False).names
