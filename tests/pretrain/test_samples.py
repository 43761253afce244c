"""pretrain on samples shards (OUT/star5, OUT/pair2): the pair drawn, the views resolved, runs, resume, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from manifests.samples import samples_schema
from pretrain.cli import main
from pretrain.data import PairStream, worker_context
from pretrain.shards import ShardError, find_shards, pick_views, read_group, verify_shards
from tests.referenced import write_by_reference
from tests.conftest import FILTER_SMALL, copy_stage

TINY = ["--model", "tiny", "--img-size", "48", "--batch-size", "8", "--workers", "0", "--warmup-steps", "2",
        "--log-every", "1"]  # fmt: skip
PLAIN = dict(crop=None, jitter=False, normalize=False, shuffle=False, output="uint8")  # the decoded pixels


@pytest.fixture(scope="module")
def out(small_pairs, small_samples, tmp_path_factory) -> Path:
    """An OUT with views/, pairs/ (embedded), star5/ (referenced), pair2/ (--reference) and pairs-by-reference/."""
    from pairgen.cli import main as pairgen

    out = tmp_path_factory.mktemp("pg-out")
    for source, folder in ((small_pairs, "views"), (small_pairs, "pairs"), (small_samples, "star5")):
        copy_stage(source, out, folder)
    assert pairgen([*FILTER_SMALL, "--reference", "--out", str(out)]) == 0
    write_by_reference(out / "pairs", out / "pairs-by-reference", out / "views")
    return out


def run(stream: PairStream, workers: int = 0) -> list[dict]:
    return list(DataLoader(stream, batch_size=None, num_workers=workers,
                           multiprocessing_context=worker_context() if workers else None))


def pixels(batches: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """pair id -> (view 1, view 2) as (3, H, W) uint8."""
    return {pid: (b["img1"][i].numpy(), b["img2"][i].numpy()) for b in batches for i, pid in enumerate(b["pair_id"])}


def view_images(views: Path) -> dict[tuple[str, int], np.ndarray]:
    """(scene key, view id) -> the views file's image, decoded as the loader does, (3, H, W) uint8 RGB."""
    found = {}
    for path in views.glob("*/*.parquet"):
        table = pq.read_table(path, columns=["view_id", "image"])
        for v, image in zip(table.column("view_id").to_pylist(), table.column("image").to_pylist()):
            bgr = cv2.imdecode(np.frombuffer(image["bytes"], np.uint8), cv2.IMREAD_COLOR)
            found[(f"{path.parent.name}/{path.stem}", v)] = np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))
    return found


def samples_of(folder: Path) -> list[dict]:
    columns = ["sample_id", "view_ids", "parents"]
    return [r for f in find_shards(folder) for r in pq.read_table(f, columns=columns).to_pylist()]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())}


# --------------------------------------------------------------------------- the pair a sample gives


def test_pick_views_is_a_function_of_seed_epoch_and_index():
    index = np.arange(20_000)
    five = np.full(len(index), 5)
    k = pick_views(five, 0, 0, index)
    assert k.min() == 1 and k.max() == 4 and np.array_equal(k, pick_views(five, 0, 0, index))
    assert np.allclose(np.bincount(k)[1:] / len(k), 0.25, atol=0.02)  # uniform over the other views
    assert not np.array_equal(k, pick_views(five, 0, 1, index))  # another epoch, other pairs
    assert not np.array_equal(k, pick_views(five, 1, 0, index))
    # each index alone decides: a resumed epoch draws alike
    assert np.array_equal(pick_views(five[123:456], 0, 0, index[123:456]), k[123:456])
    assert (pick_views(np.full(100, 2), 3, 4, np.arange(100)) == 1).all()  # a pair is its view 1 and view 2


def test_a_star_gives_its_reference_as_view_1_and_one_other_view(out):
    truth = view_images(out / "views")
    samples = {s["sample_id"]: s for s in samples_of(out / "star5")}
    stream = PairStream(out / "star5", batch_size=6, **PLAIN)
    batches = run(stream)
    assert len(batches) == stream.batches_per_epoch() == len(samples) // 6
    others = set()
    for pid, (img1, img2) in pixels(batches).items():
        scene, views = pid.rsplit("/", 1)
        v1, v2 = (int(v) for v in views.split("-"))
        star = [s for s in samples.values() if s["sample_id"].startswith(scene + "/") and s["view_ids"][0] == v1
                and v2 in s["view_ids"][1:]]  # fmt: skip
        assert star, f"{pid}: not a star's reference and one of its other views"
        others.add(star[0]["view_ids"].index(v2))
        assert np.array_equal(img1, truth[(scene, v1)]) and np.array_equal(img2, truth[(scene, v2)])
    assert others == {1, 2, 3, 4}  # every other view is drawn somewhere


def test_chains_and_trees_give_a_view_and_its_parent(tmp_path):
    """Embedded samples written here: view 1 is the drawn view's parent, the bytes those of the two views."""
    rng = np.random.default_rng(0)
    schema = samples_schema(True)
    parents = {"chain": [-1, 0, 1, 2], "tree": [-1, 0, 0, 1]}
    cols: dict[str, list] = {name: [] for name in schema.names}
    images = {}
    for i in range(24):
        shape = ("chain", "tree")[i % 2]
        ids = [10 * i + v for v in range(4)]
        jpegs = []
        for v in ids:
            images[v] = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            jpegs.append({"bytes": cv2.imencode(".png", images[v])[1].tobytes(), "path": f"{v}.png"})  # lossless
        row = {"sample_id": f"test/s/{i}", "dataset": "test", "scene_id": "s", "shape": shape, "view_ids": ids,
               "parents": parents[shape], "covis": [0.5] * 16, "width": 48, "height": 48, "views_sha256": "0" * 64,
               "images": jpegs, "depths": [{"bytes": b"", "path": ""}] * 4, "K": [[1.0] * 9] * 4,
               "cam2world": [[1.0] * 16] * 4}  # fmt: skip
        for name in schema.names:
            cols[name].append(row[name])
    folder = tmp_path / "tree4"
    folder.mkdir()
    pq.write_table(pa.table(cols, schema=schema), folder / "shard-00000.parquet", row_group_size=10)
    stream = PairStream(folder, batch_size=4, **PLAIN)  # embedded: no views folder needed
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        got = pixels(run(stream))
        assert len(got) == 24
        for pid, (img1, img2) in got.items():
            v1, v2 = (int(v) for v in pid.rsplit("/", 1)[1].split("-"))
            i, k = divmod(v2, 10)
            assert k >= 1 and v1 == 10 * i + parents[("chain", "tree")[i % 2]][k]
            assert np.array_equal(img1, images[v1][..., ::-1].transpose(2, 0, 1))  # BGR written, RGB read
            assert np.array_equal(img2, images[v2][..., ::-1].transpose(2, 0, 1))


# --------------------------------------------------------------------------- referenced against embedded


@pytest.mark.parametrize("workers", [0, 2])
def test_referenced_pairs_yield_the_embedded_pairs_batches(out, workers):
    """The pairs' rows by reference: the same batches, crops, jitter and shuffle included, pixel for pixel."""
    embedded = PairStream(out / "pairs", batch_size=8, crop=48, seed=5, shuffle_buffer=16)
    referenced = PairStream(out / "pairs-by-reference", batch_size=8, crop=48, seed=5, shuffle_buffer=16)
    assert referenced.index.kind(0) == "referenced" and embedded.index.kind(0) == "pairs"
    for stream in (embedded, referenced):
        stream.set_epoch(2)
    a, b = run(embedded, workers), run(referenced, workers)
    assert len(a) == len(b) == embedded.batches_per_epoch() > 3
    for x, y in zip(a, b):
        assert x["pair_id"] == y["pair_id"]
        assert torch.equal(x["img1"], y["img1"]) and torch.equal(x["img2"], y["img2"])


def test_pairgen_reference_pairs_give_the_same_images_as_embedded_pairs(out):
    """OUT/pair2 (pairgen filter --reference): each pair its sample, view 1 first; shared pairs, same pixels."""
    referenced = pixels(run(PairStream(out / "pair2", batch_size=1, **PLAIN)))
    embedded = pixels(run(PairStream(out / "pairs", batch_size=1, **PLAIN)))
    assert set(referenced) <= {s["sample_id"] for s in samples_of(out / "pair2")}  # the pair is the sample
    shared = set(referenced) & set(embedded)
    assert len(shared) >= 20
    for pid in shared:
        assert all(np.array_equal(r, e) for r, e in zip(referenced[pid], embedded[pid])), pid


def test_embedded_and_referenced_stars_give_the_same_batches(out, tmp_path):
    from pairgen.cli import main as pairgen

    other = tmp_path / "embedded"
    other.mkdir()
    copy_stage(out, other, "views")
    assert pairgen([*FILTER_SMALL, "--views", "5", "--shape", "star", "--pairs-per-scene", "20", "--embed",
                    "--out", str(other)]) == 0  # fmt: skip
    a = PairStream(out / "star5", batch_size=8, crop=48, seed=1)
    b = PairStream(other / "star5", batch_size=8, crop=48, seed=1)
    assert a.index.kind(0) == "referenced" and b.index.kind(0) == "embedded"
    for x, y in zip(run(a), run(b), strict=True):
        assert x["pair_id"] == y["pair_id"] and torch.equal(x["img1"], y["img1"]) and torch.equal(x["img2"], y["img2"])


# --------------------------------------------------------------------------- pretrain run


def test_a_run_on_stars_trains_and_verifies_the_shards(out, tmp_path, capsys):
    assert main(["run", "--shards", str(out / "star5"), *TINY, "--steps", "3", "--runs", str(tmp_path),
                 "--name", "stars"]) == 0  # fmt: skip
    run_dir = tmp_path / "stars"
    got = losses(run_dir)
    assert sorted(got) == [1, 2, 3] and all(math.isfinite(v) for v in got.values())
    assert (run_dir / "checkpoint-last.pt").is_file()
    verified = json.loads((run_dir / "verified-shards.json").read_text())
    assert sorted(Path(k).name for k in verified) == [p.name for p in find_shards(out / "star5")]
    assert "trained to step 3" in capsys.readouterr().err


def test_resume_of_a_samples_run_reproduces_the_next_losses(out, tmp_path):
    """Across an epoch boundary (60 stars, 7 batches of 8 an epoch): the pairs drawn, crops and masks alike."""
    shards = str(out / "star5")
    common = ["run", "--shards", shards, *TINY, "--steps", "8", "--ckpt-every", "5", "--keep-checkpoints"]
    assert main([*common, "--runs", str(tmp_path), "--name", "straight"]) == 0
    straight = tmp_path / "straight"
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "checkpoint-0000005.pt", resumed / "checkpoint-0000005.pt")
    assert main([*common, "--resume", str(resumed / "checkpoint-0000005.pt")]) == 0
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == [6, 7, 8]  # step 8 is epoch 1's first
    for step in b:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6)


def _copy(out: Path, dest: Path) -> Path:
    copy_stage(out, dest, "views")
    copy_stage(out, dest, "star5")
    return dest


def _change(dest: Path) -> tuple[Path, str]:
    path = sorted((dest / "views").glob("*/*.parquet"))[0]
    with open(path, "ab") as f:
        f.write(b"\0")  # another SHA-256, still a readable Parquet file
    return path, "changed since its samples were drawn"


def _remove(dest: Path) -> tuple[Path, str]:
    path = sorted((dest / "views").glob("*/*.parquet"))[0]
    path.unlink()
    return path, "missing: the views file of scene"


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("damage", [_change, _remove])
def test_a_changed_or_missing_views_file_is_one_message(out, tmp_path, capsys, damage, workers):
    dest = _copy(out, tmp_path / "out")
    path, problem = damage(dest)
    scene = f"{path.parent.name}/{path.stem}"
    code = main(["run", "--shards", str(dest / "star5"), *TINY, "--workers", workers, "--steps", "2",
                 "--runs", str(tmp_path / "runs")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert str(path) in err and problem in err and f"scene {scene}" in err
    assert "star5/shard-0000" in err and "its pair's views" in err  # the shard, its row and the views it named


def test_a_view_missing_from_its_views_file_is_named(out, tmp_path, capsys):
    folder = tmp_path / "star5"
    folder.mkdir()
    table = pq.read_table(find_shards(out / "star5")[0])
    ids = pa.array([[900 + v for v in range(5)]] * table.num_rows, pa.list_(pa.int32()))
    pq.write_table(table.set_column(table.schema.get_field_index("view_ids"), "view_ids", ids),
                   folder / "shard-00000.parquet")  # fmt: skip
    with pytest.raises(ShardError, match="its samples name their views.*not a folder.*--views"):
        PairStream(folder, batch_size=8)  # no views/ beside the samples folder
    run = ["run", "--shards", str(folder), "--views", str(out / "views"), *TINY, "--steps", "1",
           "--runs", str(tmp_path / "runs")]  # fmt: skip
    assert main(run) == 1  # the rows differ from the checksums the shard carries: refused before training
    assert "row group 0, column 'view_ids': its values differ from the checksum" in capsys.readouterr().err
    code = main([*run, "--no-verify"])  # the loader's own check, behind the checksums
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "shard-00000.parquet: row group 0, row 0" in err and "has no view 900 that a sample names" in err


def test_verify_names_an_altered_samples_shard(out, tmp_path):
    dest = _copy(out, tmp_path / "out")
    assert verify_shards(dest / "star5") == len(find_shards(dest / "star5"))
    shard = find_shards(dest / "star5")[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{shard.name}: its SHA-256 differs from the manifest's"):
        verify_shards(dest / "star5")


def test_read_group_of_samples_without_a_views_cache(out):
    """read_group alone (a views cache of its own): the RowGroup of pairs, ids naming the pair."""
    stream = PairStream(out / "pair2", batch_size=4, crop=None)
    group = read_group(stream.index, 0)
    assert len(group.ids) == int(stream.index.group_rows[0]) and len(group.offsets[0]) == len(group.ids) + 1
    assert all(pid.count("/") == 2 for pid in group.ids)
