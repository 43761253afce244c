"""The output folder as the usual tools open it (docs/design.md, "On-disk layout"; manifests/layout.py, card.py).

Five readers open ``pairs/`` and each ``views/<dataset>/`` by name, with no
glob and no file list: pyarrow's ``dataset()``, ``polars.scan_parquet``,
Hugging Face ``datasets`` (``data_dir=`` and the card's configs), DuckDB's
``read_parquet`` on the folder, Ray Data's ``read_parquet``. Also: the data
folders hold Parquet only, the views carry their scene, the card parses as
the Hub's, depth comes out in metres, and a folder of pairgen 0.1 is read
and migrated.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests.codecs import decode_depth, depth_metres, encode_depth
from manifests.views import VIEWS_FORMAT, VIEWS_SCHEMA, read_views_meta
from pairgen.cli import main
from tests.conftest import FILTER_SMALL, RENDER_SMALL


@pytest.fixture(scope="module")
def out(small_pairs) -> Path:
    return small_pairs


def _counts(out: Path) -> dict[str, int]:
    """Rows each data folder must give: from the manifests, not from any reader."""
    views = json.loads((out / "views.manifest.json").read_text())
    pairs = json.loads((out / "pairs.manifest.json").read_text())
    counts = {"pairs": sum(s["pairs"] for s in pairs["shards"])}
    for entry in views["scenes"].values():
        if entry["status"] == "ok":
            folder = f"views/{entry['dataset']}"
            counts[folder] = counts.get(folder, 0) + entry["views"]
    return counts


def _pyarrow(folder: Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet").count_rows()


def _polars(folder: Path) -> int:
    import polars as pl

    return pl.scan_parquet(folder).select(pl.len()).collect().item()


def _duckdb(folder: Path) -> int:
    import duckdb

    with duckdb.connect() as con:
        return con.execute("select count(*) from read_parquet(?)", [f"{folder}/*.parquet"]).fetchone()[0]


def _datasets(folder: Path, cache: Path) -> int:
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("parquet", data_dir=str(folder), split="train", cache_dir=str(cache)).num_rows


def _ray(folder: Path) -> int:
    import ray

    return ray.data.read_parquet(str(folder)).count()


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


@pytest.mark.parametrize("reader", ["pyarrow", "polars", "duckdb", "datasets", "ray"])
def test_every_reader_opens_each_data_folder_by_name(out, reader, tmp_path, request):
    if reader == "ray":
        request.getfixturevalue("ray_local")
    read = {"pyarrow": _pyarrow, "polars": _polars, "duckdb": _duckdb, "ray": _ray,
            "datasets": lambda f: _datasets(f, tmp_path / "hf")}[reader]  # fmt: skip
    expected = _counts(out)
    assert len(expected) >= 2 and all(expected.values())  # pairs/ and at least one views/<dataset>/
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = {name: read(out / name) for name in expected}
    assert got == expected


@pytest.mark.parametrize("config", ["pairs", "views"])
def test_the_card_makes_the_folder_a_datasets_dataset(out, config, tmp_path):
    import datasets

    datasets.disable_progress_bars()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / "hf"))
    counts = _counts(out)
    assert ds.num_rows == (counts["pairs"] if config == "pairs" else sum(v for k, v in counts.items() if k != "pairs"))
    # the card's features are the ones datasets derives from the files themselves (their huggingface metadata)
    first = next((out / config).rglob("*.parquet"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = datasets.load_dataset("parquet", data_files=str(first), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.features == plain.features
    if config == "pairs":  # the default config: the folder alone loads the pairs (not both schemas merged)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            default = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
        assert default.num_rows == ds.num_rows and default.features == ds.features
    image = "image1" if config == "pairs" else "image"
    assert isinstance(ds.features[image], datasets.Image) and ds[0][image].size == (ds[0]["width"], ds[0]["height"])


def test_the_card_parses_as_the_hubs_and_names_the_licences(out):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    configs = {c["config_name"]: c for c in data["configs"]}
    assert configs["pairs"]["data_files"] == [{"split": "train", "path": "pairs/shard-*.parquet"}]
    assert configs["views"]["data_files"] == [{"split": "train", "path": "views/*/*.parquet"}]
    assert configs["pairs"].get("default") is True and data["license"] == "mit"  # synthetic scenes only
    info = {i["config_name"]: i for i in data["dataset_info"]}
    assert [f["name"] for f in info["views"]["features"]] == VIEWS_SCHEMA.names
    text = (out / "README.md").read_text()
    views = json.loads((out / "views.manifest.json").read_text())
    for key, entry in views["scenes"].items():
        assert f"`{key}` | MIT" in text  # each scene's licence
        assert entry["sha256"] in text  # and its file's checksum
    for shard in json.loads((out / "pairs.manifest.json").read_text())["shards"]:
        assert shard["sha256"] in text
    assert json.dumps(views["config"]["sampling"]["views_per_scene"]) in text and "## Statistics" in text


def test_the_card_licences_mixed_sources(tmp_path):
    from huggingface_hub import DatasetCard

    from manifests.card import write_card
    from manifests.manifest import ViewsManifest

    scenes = {"hm3d/00800-TEEsavR23oF": {"status": "ok", "file": "hm3d/00800-TEEsavR23oF.parquet", "views": 3,
                                         "dataset": "hm3d"},
              "scannet/scene0000_00": {"status": "ok", "file": "scannet/scene0000_00.parquet", "views": 2,
                                       "dataset": "scannet"}}  # fmt: skip
    ViewsManifest(tmp_path / "views", "h", {"seed": 0}, scenes).write()
    card = DatasetCard.load(write_card(tmp_path))
    assert card.data.license == "other" and "Matterport" in card.data.license_name and "ScanNet" in card.data.license_name
    text = card.text
    assert "https://matterport.com/legal/" in text and "ScanNet_TOS.pdf" in text
    assert "`hm3d/00800-TEEsavR23oF` | Matterport End User License Agreement" in text
    assert [c["config_name"] for c in card.data.configs] == ["views"] and card.data.configs[0]["default"]


def test_data_folders_hold_parquet_only_and_manifests_sit_beside_them(out):
    for folder in (out / "pairs", out / "views"):
        others = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".parquet"]
        assert others == [], others
        assert not [p for p in folder.rglob(".*")]  # no hidden file or folder either (Polars reads those)
    assert (out / "views.manifest.json").is_file() and (out / "pairs.manifest.json").is_file()
    assert sorted(p.name for p in (out / "_pairgen").iterdir()) == ["selections"]  # no lock or temporary left
    assert sorted(p.name for p in (out / "_pairgen" / "selections" / "synthetic").iterdir()) == [
        "apartment_0000.json", "apartment_0001.json", "apartment_0002.json"]  # fmt: skip


def test_views_name_their_scene_on_every_row(out):
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = ds.dataset(out / "views", format="parquet").to_table(columns=["dataset", "scene_id", "view_id"])
    assert table.schema.field("dataset").type == pa.dictionary(pa.int32(), pa.string())
    keys = set(zip(*(table.column(c).to_pylist() for c in ("dataset", "scene_id", "view_id"))))
    assert len(keys) == table.num_rows  # unique once concatenated (view_id alone repeats across scenes)
    assert len(set(table.column("view_id").to_pylist())) < table.num_rows
    for path in (out / "views").rglob("*.parquet"):
        meta = read_views_meta(path)
        t = pq.read_table(path, columns=["dataset", "scene_id"])
        assert meta.format == VIEWS_FORMAT and set(t.column("dataset").to_pylist()) == {meta.dataset}
        assert set(t.column("scene_id").to_pylist()) == {meta.scene_id} == {path.stem}


def test_depth_metres_from_every_form_a_reader_gives(out, tmp_path):
    import datasets
    import torch

    datasets.disable_progress_bars()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = datasets.load_dataset(str(out), "pairs", split="train", cache_dir=str(tmp_path / "hf"))
    raw = pq.read_table(next((out / "pairs").glob("*.parquet")), columns=["pair_id", "depth1"]).to_pylist()[0]
    row = ds.filter(lambda r: r["pair_id"] == raw["pair_id"])
    expected = decode_depth(raw["depth1"]["bytes"])
    torch_row = row.with_format("torch")[0]["depth1"]
    assert torch_row.dtype == torch.uint16  # as datasets gives it: max() and mean() fail on it
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch_row.max()
    metres = depth_metres(torch_row)
    assert metres.dtype == torch.float32 and metres.shape == (1, *expected.shape)
    assert float(metres.max()) == pytest.approx(float(expected.max())) and float(metres.mean()) > 0
    for form in (raw["depth1"]["bytes"], raw["depth1"], row[0]["depth1"], row.with_format("numpy")[0]["depth1"]):
        got = depth_metres(form)
        assert got.dtype == np.float32 and np.array_equal(np.squeeze(np.asarray(got)), expected)
    assert np.array_equal(depth_metres(torch_row).numpy()[0], expected)
    with pytest.raises(TypeError, match="metres already"):
        depth_metres(expected)


def test_depth_metres_keeps_invalid_as_zero():
    depth = np.array([[0.0, 1.234], [65.6, 2.0]], np.float32)  # 65.6 m does not fit 16-bit millimetres: invalid
    assert depth_metres(encode_depth(depth)).tolist() == [[0.0, pytest.approx(1.234)], [0.0, 2.0]]


def _as_pairgen_0_1(src: Path, dest: Path) -> Path:
    """A copy of ``src`` in pairgen 0.1's layout: manifests and selections inside the data folders, views format 1."""
    import pyarrow as pa

    from manifests.views import VIEWS_SCHEMA_V1

    shutil.copytree(src / "views", dest / "views")
    shutil.copytree(src / "pairs", dest / "pairs")
    shutil.copytree(src / "_pairgen" / "selections", dest / "pairs" / "scenes")
    (dest / "pairs" / "contact_sheet.png").write_bytes(b"\x89PNG old")
    for folder in ("views", "pairs"):  # a killed 0.1 run's lock files, inside the data folders
        (dest / folder / ".lock").write_text("")
        (dest / folder / ".lock-holder.json").write_text('{"pid": 999999, "host": "gone", "command": "x", "since": 0}')
    views = json.loads((src / "views.manifest.json").read_text())
    for entry in views["scenes"].values():
        path = dest / "views" / entry["file"]
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"pairgen"])
        meta["format"] = "pairgen-views/1"
        old = table.select(VIEWS_SCHEMA_V1.names).replace_schema_metadata(
            {**table.schema.metadata, b"pairgen": json.dumps(meta).encode()})  # fmt: skip
        pq.write_table(old, path)
        assert pa.types.is_int32(pq.read_schema(path).field("view_id").type)
        from manifests.manifest import sha256_file

        entry["sha256"] = sha256_file(path)
    (dest / "views" / "manifest.json").write_text(json.dumps(views))
    pairs = json.loads((src / "pairs.manifest.json").read_text())
    pairs["inputs"] = {k: e.get("sha256") for k, e in views["scenes"].items()}
    (dest / "pairs" / "manifest.json").write_text(json.dumps(pairs))
    return dest


def test_a_pairgen_0_1_folder_is_read_then_migrated(out, tmp_path, capsys):
    old = _as_pairgen_0_1(out, tmp_path / "old")
    # read as it is: inspect and pretrain's shard list find the manifests inside the folders
    assert main(["inspect", "--out", str(old), "--sheet", str(tmp_path / "sheet.png")]) == 0
    from pretrain.shards import find_shards

    assert [p.name for p in find_shards(old / "pairs")] == [p.name for p in find_shards(out / "pairs")]
    # migrated by the next render and filter: no scene rendered again, the shards unchanged
    assert main([*RENDER_SMALL, "--out", str(old)]) == 0
    assert "0 scenes rendered, 3 already done" in capsys.readouterr().err
    assert main([*FILTER_SMALL, "--out", str(old)]) == 0
    assert not (old / "views" / "manifest.json").exists() and not (old / "pairs" / "manifest.json").exists()
    assert (old / "contact_sheet.png").read_bytes() == b"\x89PNG old"  # moved out, not lost
    for folder in ("views", "pairs"):
        assert all(p.suffix == ".parquet" for p in (old / folder).rglob("*") if p.is_file())
        ours, theirs = (json.loads((d / f"{folder}.manifest.json").read_text()) for d in (old, out))
        assert ours["config_hash"] == theirs["config_hash"] and ours["scenes"].keys() == theirs["scenes"].keys()
    for shard in (out / "pairs").glob("*.parquet"):
        assert (old / "pairs" / shard.name).read_bytes() == shard.read_bytes()
    for path in (out / "views").rglob("*.parquet"):  # format 2 again, the same rows
        assert pq.read_table(old / "views" / path.relative_to(out / "views")).equals(pq.read_table(path))
    assert (old / "README.md").is_file()
    again = (old / "README.md").stat().st_mtime_ns
    assert main([*FILTER_SMALL, "--out", str(old)]) == 0 and "already complete" in capsys.readouterr().err
    assert (old / "README.md").stat().st_mtime_ns == again  # the same command again writes nothing


def test_pretrain_takes_the_folder_a_glob_or_a_list(out):
    from pretrain.shards import find_shards

    folder = [p.name for p in find_shards(out / "pairs")]
    assert folder == sorted(p.name for p in (out / "pairs").glob("shard-*.parquet"))
    assert [p.name for p in find_shards(str(out / "pairs" / "shard-*.parquet"))] == folder
    two = f"{out / 'pairs' / folder[1]},{out / 'pairs' / folder[0]}"
    assert [p.name for p in find_shards(two)] == [folder[1], folder[0]]
    with pytest.raises(ValueError, match="no shard file matches"):
        find_shards(str(out / "pairs" / "nothing-*.parquet"))


def _upload_folder(s3, out: Path, prefix: str) -> None:
    client = s3.client()
    for path in out.rglob("*"):
        if path.is_file() and "_pairgen" not in path.parts:
            client.upload_file(str(path), s3.name, f"{prefix}/{path.relative_to(out).as_posix()}")


@pytest.mark.parametrize("reader", ["pyarrow", "polars", "ray", "duckdb", "datasets"])
def test_the_readers_open_the_stored_folders_by_uri(out, reader, s3, request):
    """The same folders in a store, opened by URI: pyarrow, Polars and Ray Data here; DuckDB's httpfs and
    ``datasets``' s3fs are plug-ins this machine cannot install offline (skipped, saying so)."""
    if reader == "duckdb":
        pytest.skip("DuckDB reads s3:// through its httpfs extension, downloaded at first use (no network here)")
    if reader == "datasets":
        pytest.importorskip("s3fs", reason="datasets reads s3:// through s3fs (not a dependency)")
    import pyarrow.fs as pafs

    _upload_folder(s3, out, "stored")
    endpoint = s3.server.endpoint
    fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                           region="us-east-1", scheme="http")  # fmt: skip
    expected = _counts(out)
    got = {}
    for name in expected:
        uri = f"{s3.uri('stored')}/{name}"
        if reader == "pyarrow":
            import pyarrow.dataset as ds

            got[name] = ds.dataset(uri, format="parquet").count_rows()  # the endpoint from AWS_ENDPOINT_URL
        elif reader == "polars":
            import polars as pl

            options = {"aws_endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                       "aws_region": "us-east-1", "aws_allow_http": "true"}  # fmt: skip
            got[name] = pl.scan_parquet(uri + "/", storage_options=options).select(pl.len()).collect().item()
        elif reader == "ray":
            request.getfixturevalue("ray_local")
            import ray

            got[name] = ray.data.read_parquet(uri, filesystem=fs).count()  # the workers' own filesystem object
        else:
            import datasets

            got[name] = datasets.load_dataset("parquet", data_dir=uri, split="train").num_rows
    assert got == expected
