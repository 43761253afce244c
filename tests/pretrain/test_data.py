"""pretrain.data: the streaming pairs dataset on tiny shards written here (the pairs shard layout)."""

from __future__ import annotations

import fnmatch
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from manifests.pairs import ID_COLUMN, IMAGE_COLUMNS, PAIRS_SCHEMA, SHARD_GLOB, SIZE_COLUMNS, shard_name
from pretrain.augment import IMAGENET_MEAN, IMAGENET_STD, LUMA, Augment, sample_uniforms, to_float
from pretrain.data import PairStream, worker_context
from pretrain.memory import BatchMemory
from pretrain.shards import ShardError, find_shards

SIZE = 64
CROP = 48


def picture(rng: np.random.Generator, size: int = SIZE, low: int = 0, high: int = 256) -> np.ndarray:
    """An (size, size, 3) uint8 RGB picture with structure: a gradient and rectangles."""
    y, x = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(low, high - 1, 3), rng.uniform(low, high - 1, 3)
    img = (c0 * (1 - x[..., None]) + c1 * y[..., None] * 0 + c1 * x[..., None]).astype(np.uint8)
    for _ in range(4):
        p0, p1 = rng.integers(0, size, (2, 2))
        cv2.rectangle(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1),
                      tuple(int(v) for v in rng.integers(low, high, 3)), -1)  # fmt: skip
    return img


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def shard_table(first: int, n: int, *, size: int = SIZE, seed: int = 0, same_views: bool = False,
                image: bytes | None = None, **picture_range) -> pa.Table:  # fmt: skip
    """``n`` pairs in the pairs schema, ids ``p{first + i:04d}``."""
    rng = np.random.default_rng([seed, first])
    cols: dict[str, list] = {name: [] for name in PAIRS_SCHEMA.names}
    for i in range(first, first + n):
        a = image or jpeg(picture(rng, size, **picture_range))
        b = a if same_views else image or jpeg(picture(rng, size, **picture_range))
        cols["pair_id"].append(f"p{i:04d}")
        cols["dataset"].append("test")
        cols["scene_id"].append("s")
        cols["view1_id"].append(2 * i)
        cols["view2_id"].append(2 * i + 1)
        for k, data in (("1", a), ("2", b)):
            cols["image" + k].append({"bytes": data, "path": f"s/{i}-{k}.jpg"})
            cols["depth" + k].append({"bytes": b"", "path": f"s/{i}-{k}.depth.png"})
            cols["K" + k].append(np.eye(3, dtype=np.float32).reshape(-1))
            cols["cam2world" + k].append(np.eye(4, dtype=np.float32).reshape(-1))
        for name in ("covis_1in2", "covis_2in1", "covisibility"):
            cols[name].append(0.6)
        cols["width"].append(size)
        cols["height"].append(size)
    return pa.table(cols, schema=PAIRS_SCHEMA)


def write_shard(path: Path, groups: list[int], first: int = 0, **kw) -> int:
    """A shard with row groups of the given sizes; returns the pairs written."""
    with pq.ParquetWriter(path, PAIRS_SCHEMA) as writer:
        for n in groups:
            writer.write_table(shard_table(first, n, **kw))
            first += n
    return sum(groups)


LAYOUT = [[5, 5, 3], [7], [4, 6, 1]]  # 31 pairs, row groups of uneven sizes


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    first = 0
    for k, groups in enumerate(LAYOUT):
        first += write_shard(folder / f"shard-{k:05d}.parquet", groups, first)
    return folder


ALL_IDS = {f"p{i:04d}" for i in range(sum(map(sum, LAYOUT)))}


def run(stream: PairStream, workers: int = 0) -> list[dict]:
    return list(DataLoader(stream, batch_size=None, num_workers=workers,
                           multiprocessing_context=worker_context() if workers else None))


def ids(batches: list[dict]) -> list[str]:
    return [i for b in batches for i in b["pair_id"]]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["pair_id"] == y["pair_id"]
        assert torch.equal(x["img1"], y["img1"]) and torch.equal(x["img2"], y["img2"])


# --------------------------------------------------------------------------- shards


def test_find_shards_folder_manifest_and_list(shards, tmp_path):
    names = [f"shard-{k:05d}.parquet" for k in range(len(LAYOUT))]
    assert [p.name for p in find_shards(shards)] == names
    assert find_shards([shards / names[1]]) == [shards / names[1]]
    assert find_shards(str(shards / names[0])) == [shards / names[0]]
    listed = tmp_path / "listed"
    listed.mkdir()
    for name in names:
        shutil.copy(shards / name, listed / name)  # a link out of the folder would be refused
    _write_manifest(listed, [names[2], names[0]])
    assert [p.name for p in find_shards(listed)] == [names[2], names[0]]  # the manifest's list and order


def _write_manifest(folder: Path, files: list[str]) -> None:
    """A pairs manifest listing ``files`` (the typed writer: format, version, config hash)."""
    from manifests.manifest import PairsManifest

    PairsManifest(folder, "0" * 16, {}, body={"complete": True, "shards": [{"file": f} for f in files]}).write()


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: None, "no shard-"),
        (lambda d: _write_manifest(d, ["shard-00007.parquet"]), "shard-00007.parquet, which is missing"),
        (lambda d: _write_manifest(d, ["../x.parquet"]), "points outside"),
        (lambda d: (d / "manifest.json").write_text(json.dumps({"format": "pairgen-views-manifest/1"})),
         "not a pairs manifest"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not a readable pairs manifest"),
    ],
)  # fmt: skip
def test_find_shards_refuses_with_the_path(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(ValueError, match=match):
        find_shards(tmp_path)
    with pytest.raises(ValueError, match="nowhere"):
        find_shards(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no shard files"):
        find_shards([])


def test_corrupt_and_truncated_shards_name_the_file(shards, tmp_path):
    garbage = tmp_path / "shard-00000.parquet"
    garbage.write_bytes(b"this is not parquet" * 100)
    with pytest.raises(ShardError, match=r"shard-00000\.parquet: not a readable Parquet file"):
        PairStream(tmp_path, batch_size=2, crop=CROP)
    good = (shards / "shard-00000.parquet").read_bytes()
    truncated = tmp_path / "cut" / "shard-00003.parquet"
    truncated.parent.mkdir()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ShardError, match=r"shard-00003\.parquet: not a readable Parquet file"):
        PairStream([shards / "shard-00001.parquet", truncated], batch_size=2, crop=CROP)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda t: t.drop_columns(["image2"]), "column 'image2' is missing"),
        (lambda t: t.set_column(t.schema.get_field_index("image1"), "image1", pa.array(["x"] * t.num_rows)),
         "column 'image1' is string"),
        (lambda t: t.set_column(t.schema.get_field_index("pair_id"), "pair_id", pa.array(range(t.num_rows))),
         "column 'pair_id' is int64"),
    ],
)  # fmt: skip
def test_schema_problems_name_the_file(tmp_path, change, match):
    path = tmp_path / "shard-00004.parquet"
    pq.write_table(change(shard_table(0, 6)), path)
    with pytest.raises(ShardError, match=rf"shard-00004\.parquet: {match}"):
        PairStream(tmp_path, batch_size=2, crop=CROP)


def test_undecodable_image_names_file_row_group_and_pair(tmp_path):
    write_shard(tmp_path / "shard-00000.parquet", [4, 4], image=b"not a jpeg")
    stream = PairStream(tmp_path, batch_size=2, crop=CROP)
    with pytest.raises(ShardError, match=r"shard-00000\.parquet: row group \d, row \d: image1 of pair 'p000\d' is not"):
        run(stream)
    with pytest.raises(ShardError, match=r"shard-00000\.parquet.*not a decodable image"):
        run(stream, workers=1)  # raised in a worker, same type and message in the main process


def test_images_smaller_than_the_crop(tmp_path):
    write_shard(tmp_path / "shard-00000.parquet", [4], size=32)
    with pytest.raises(ShardError, match=r"shard-00000\.parquet: images as small as 32x32 .* than the 48x48 crop"):
        PairStream(tmp_path, batch_size=2, crop=CROP)
    bare = tmp_path / "bare"
    bare.mkdir()
    pq.write_table(shard_table(0, 4, size=32).drop_columns(["width", "height"]), bare / "shard-00000.parquet")
    stream = PairStream(bare, batch_size=2, crop=CROP)  # no sizes in the footer: found when decoding
    with pytest.raises(ShardError, match=r"shard-00000\.parquet: row group 0, row \d: image1 of pair .* is 32x32"):
        run(stream)


def test_too_few_pairs_for_one_batch_a_rank(shards):
    with pytest.raises(ValueError, match="31 pairs in 3 shard.* do not fill one batch of 16 on each of 2 rank"):
        PairStream(shards, batch_size=16, crop=CROP, world_size=2)


# --------------------------------------------------------------------------- batches and the plan


@pytest.mark.parametrize("output", ["float32", "uint8"])
def test_batch_shapes_and_types(shards, output):
    stream = PairStream(shards, batch_size=4, crop=CROP, output=output)
    batches = run(stream)
    assert len(batches) == stream.batches_per_epoch() == len(stream) == 31 // 4
    dtype = torch.float32 if output == "float32" else torch.uint8
    for b in batches:
        assert set(b) == {"img1", "img2", "pair_id"}
        for key in ("img1", "img2"):
            assert b[key].shape == (4, 3, CROP, CROP) and b[key].dtype == dtype
        assert len(b["pair_id"]) == 4 and all(isinstance(i, str) for i in b["pair_id"])


def test_uint8_output_is_the_float_output_before_normalisation(shards):
    floats = run(PairStream(shards, batch_size=4, crop=CROP, seed=3))
    bytes_ = run(PairStream(shards, batch_size=4, crop=CROP, seed=3, output="uint8"))
    for f, u in zip(floats, bytes_):
        assert f["pair_id"] == u["pair_id"]
        torch.testing.assert_close(to_float(u["img1"]), f["img1"], atol=1e-5, rtol=0)
        torch.testing.assert_close(to_float(u["img2"], normalize=True), f["img2"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("world_size, workers, batch_size", [(2, 2, 3), (2, 2, 4), (3, 2, 2), (1, 2, 5), (2, 0, 3)])
def test_each_pair_once_an_epoch_and_equal_batches_on_every_rank(shards, world_size, workers, batch_size):
    seen: list[str] = []
    counts = []
    for rank in range(world_size):
        stream = PairStream(shards, batch_size=batch_size, crop=CROP, seed=1, rank=rank, world_size=world_size)
        stream.set_epoch(2)
        batches = run(stream, workers)
        assert all(len(b["pair_id"]) == batch_size for b in batches)
        counts.append(len(batches))
        seen += ids(batches)
    n = 31 // (world_size * batch_size)
    assert counts == [n] * world_size  # every rank the same number of batches
    assert len(seen) == len(set(seen)) == n * world_size * batch_size  # nothing twice
    assert set(seen) <= ALL_IDS and len(ALL_IDS - set(seen)) == stream.dropped_per_epoch() < world_size * batch_size


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_the_order_does_not_depend_on_the_worker_count_for_fixed_lanes(shards):
    runs = [run(PairStream(shards, batch_size=3, crop=CROP, seed=5, lanes=2), w) for w in (0, 1, 2, 3)]
    for other in runs[1:]:
        assert_same_batches(runs[0], other)
    plan = PairStream(shards, batch_size=3, crop=CROP, seed=5, lanes=2).plan()
    assert ids(runs[0]) == [f"p{i:04d}" for j in range(plan.batches) for i in plan.batch(j)]


def test_each_worker_reads_one_lane(shards):
    """With lanes = workers, the row groups one worker reads are disjoint from the other's but at their seam."""
    stream = PairStream(shards, batch_size=2, crop=CROP, seed=0, shuffle_buffer=2)
    plan = stream.plan(lanes=2)
    groups = [set(stream.index.locate(np.concatenate([plan.batch(j) for j in range(w, plan.batches, 2)]))[0])
              for w in (0, 1)]  # fmt: skip
    assert len(groups[0] & groups[1]) <= 1


def test_epochs_reshuffle_and_same_seed_and_epoch_repeat(shards):
    def epoch(seed: int, e: int, workers: int = 2) -> list[dict]:
        stream = PairStream(shards, batch_size=3, crop=CROP, seed=seed)
        stream.set_epoch(e)
        return run(stream, workers)

    first = epoch(0, 0)
    assert_same_batches(first, epoch(0, 0))
    for other in (epoch(0, 1), epoch(1, 0)):
        assert ids(other) != ids(first)
        assert not torch.equal(other[0]["img1"], first[0]["img1"])
    full = PairStream(shards, batch_size=1, crop=CROP)  # 31 batches of one: nothing dropped
    orders = []
    for e in (0, 1):
        full.set_epoch(e)
        orders.append(ids(run(full)))
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(ALL_IDS) and orders[0] != orders[1]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_the_tail_of_the_uninterrupted_epoch(shards, workers):
    stream = PairStream(shards, batch_size=2, crop=CROP, seed=7, rank=1, world_size=2)
    stream.set_epoch(3)
    full = run(stream, workers)
    assert len(full) == stream.batches_per_epoch() == 7
    for k in (1, 2, 3, 6, 7):
        stream.set_epoch(3)
        stream.set_position(k)
        assert len(stream) == 7 - k
        assert_same_batches(run(stream, workers), full[k:])
    stream.set_epoch(3)  # a new epoch starts at its beginning
    assert_same_batches(run(stream, workers), full)
    with pytest.raises(ValueError, match="position 8 is not in 0..7"):
        stream.set_position(8)


# --------------------------------------------------------------------------- transforms


def test_everything_off_gives_the_decoded_pixels(tmp_path):
    write_shard(tmp_path / "shard-00000.parquet", [3, 3])
    table = pq.read_table(tmp_path / "shard-00000.parquet")
    truth = {r["pair_id"]: (decoded(r["image1"]["bytes"]), decoded(r["image2"]["bytes"])) for r in table.to_pylist()}
    stream = PairStream(tmp_path, batch_size=3, crop=None, jitter=False, normalize=False)
    for b in run(stream):
        assert b["img1"].shape == (3, 3, SIZE, SIZE)
        for i, pid in enumerate(b["pair_id"]):
            for view, key in enumerate(("img1", "img2")):
                expected = truth[pid][view].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
                np.testing.assert_array_equal(b[key][i].numpy(), expected)


def test_normalisation_uses_imagenet_mean_and_std(tmp_path):
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    write_shard(tmp_path / "shard-00000.parquet", [4])
    table = pq.read_table(tmp_path / "shard-00000.parquet")
    truth = {r["pair_id"]: decoded(r["image1"]["bytes"]) for r in table.to_pylist()}
    (b,) = run(PairStream(tmp_path, batch_size=4, crop=None, jitter=False))
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    for i, pid in enumerate(b["pair_id"]):
        expected = (truth[pid].transpose(2, 0, 1) / 255.0 - mean) / std
        np.testing.assert_allclose(b["img1"][i].numpy(), expected, atol=2e-6)


def test_crops_are_independent_windows_of_each_view(tmp_path):
    write_shard(tmp_path / "shard-00000.parquet", [8, 8], same_views=True)
    table = pq.read_table(tmp_path / "shard-00000.parquet")
    truth = {r["pair_id"]: decoded(r["image1"]["bytes"]) for r in table.to_pylist()}
    offsets = []
    for b in run(PairStream(tmp_path, batch_size=4, crop=CROP, jitter=False, normalize=False)):
        for i, pid in enumerate(b["pair_id"]):
            full = truth[pid].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
            found = []
            for key in ("img1", "img2"):
                view = b[key][i].numpy()
                hits = [(y, x) for y in range(SIZE - CROP + 1) for x in range(SIZE - CROP + 1)
                        if np.array_equal(full[:, y : y + CROP, x : x + CROP], view)]  # fmt: skip
                assert hits, f"{pid} {key} is not a {CROP}x{CROP} window of the image"
                found.append(hits[0])
            offsets.append(tuple(found))
    assert sum(a != b for a, b in offsets) > len(offsets) // 2  # the two views' crops differ (same image)
    assert len({a for a, _ in offsets}) > len(offsets) // 2  # and vary from pair to pair


def torchvision_jitter(x: np.ndarray, b: float, c: float, s: float, order: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """torchvision's ColorJitter on a float (3, H, W) image in [0, 1], ops in ``order``, clamped after each.

    Returns the image and whether any clamp changed a value.
    """
    w = np.array(LUMA)[:, None, None]
    clamped = False

    def clamp(v):
        nonlocal clamped
        clamped |= bool((v < 0).any() or (v > 1).any())
        return np.clip(v, 0, 1)

    for op in order:
        if op == 0:
            x = clamp(b * x)
        elif op == 1:
            x = clamp(c * x + (1 - c) * (w * x).sum(0).mean())
        else:
            x = clamp(s * x + (1 - s) * (w * x).sum(0, keepdims=True))
    return x, clamped


@pytest.mark.parametrize("factors", [(1.2, 0.8, 1.3), (0.7, 1.3, 0.6), (1.0, 1.0, 1.0), (0.6, 0.6, 1.4)])
def test_jitter_is_torchvision_colour_jitter_in_any_order(factors):
    rng = np.random.default_rng(4)
    rgb = (picture(rng, 40, low=90, high=150) + np.array([25, -25, 0])).astype(np.uint8)  # reddish, never clamped
    lo, hi = Augment().jitter_range
    u = np.array([0, 0, *[(f - lo) / (hi - lo) for f in factors]])
    out = np.empty((3, 40, 40), np.float32)
    Augment(crop=None, normalize=False).apply(np.ascontiguousarray(rgb[..., ::-1]), out, u)
    x = rgb.transpose(2, 0, 1) / 255.0
    for order in itertools.permutations(range(3)):
        expected, clamped = torchvision_jitter(x, *factors, order)
        assert not clamped
        np.testing.assert_allclose(out, expected, atol=0.8 / 255)  # rounding to uint8 once, at the end


def test_jitter_is_asymmetric_and_within_range(tmp_path):
    write_shard(tmp_path / "shard-00000.parquet", [6], same_views=True)
    (b,) = run(PairStream(tmp_path, batch_size=6, crop=None, normalize=False))
    for i in range(6):
        assert not torch.equal(b["img1"][i], b["img2"][i])  # one image, two different jitters
    (plain,) = run(PairStream(tmp_path, batch_size=6, crop=None, normalize=False, jitter=False))
    assert torch.equal(plain["img1"], plain["img2"])
    ratio = b["img1"].mean((1, 2, 3)) / plain["img1"].mean((1, 2, 3))
    assert ((ratio > 0.6 * 0.6) & (ratio < 1.4 * 1.4)).all()


def test_random_numbers_depend_on_seed_epoch_and_index_only():
    u = sample_uniforms(0, 0, np.arange(1000))
    assert u.shape == (1000, 10) and (u >= 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - 12**-0.5) < 0.01
    np.testing.assert_array_equal(sample_uniforms(0, 0, np.array([7, 3]))[1], u[3])
    assert not np.array_equal(sample_uniforms(0, 1, np.arange(1000)), u)
    assert not np.array_equal(sample_uniforms(1, 0, np.arange(1000)), u)


def test_batch_memory_is_reused_only_when_nothing_holds_it(shards):
    stream = PairStream(shards, batch_size=2, crop=CROP, seed=2)
    kept = []
    pointers = []
    for k, b in enumerate(stream):
        pointers.append(b["img1"].data_ptr())
        if k % 3 == 0:  # a view and a numpy array of some batches outlive them
            kept.append((b["img1"][1:], b["img2"].numpy(), b["img1"][1:].clone(), b["img2"].clone()))
        del b
    for view, array, view_copy, array_copy in kept:
        assert torch.equal(view, view_copy) and torch.equal(torch.from_numpy(array), array_copy)
    assert len(set(pointers)) < len(pointers)  # the batches nothing held were written again in place


@pytest.mark.parametrize(
    "hold",
    [lambda t: t[1:], lambda t: t.detach(), lambda t: t.numpy(), lambda t: t.untyped_storage(),
     lambda t: t.view(-1), lambda t: torch.empty(0).set_(t.untyped_storage())],
    ids=["view", "detach", "numpy", "storage", "reshaped", "set_"],
)
def test_batch_memory_is_not_reused_while_anything_shares_the_storage(hold):
    memory = BatchMemory(shared=False)
    first = memory.empty((2, 3, 4, 4), torch.float32)
    pointer, held = first.data_ptr(), hold(first)
    del first
    assert memory.empty((2, 3, 4, 4), torch.float32).data_ptr() != pointer
    del held
    again = memory.empty((2, 3, 4, 4), torch.float32)
    assert again.data_ptr() == pointer and again.shape == (2, 3, 4, 4) and again.is_contiguous()
    assert memory.empty((2, 3, 4, 4), torch.uint8).dtype == torch.uint8  # another size: new memory


def test_batch_memory_in_workers_is_shared_and_moving_a_tensor_frees_its_buffer():
    shared = BatchMemory(shared=True)
    a, b = shared.empty((2, 3, 4, 4), torch.float32), shared.empty((2, 3, 4, 4), torch.float32)
    assert a.is_shared() and b.is_shared() and a.data_ptr() != b.data_ptr()
    a.fill_(1.0)
    b.fill_(2.0)
    assert a.sum() == 96 and b.sum() == 192
    private = BatchMemory(shared=False)
    c = private.empty((4,), torch.float32)
    pointer = c.data_ptr()
    c.share_memory_()  # as a trainer may: the tensor leaves the buffer, which is free again
    assert private.empty((4,), torch.float32).data_ptr() == pointer != c.data_ptr()


def test_the_shard_schema_names_come_from_manifests():
    for name in (*IMAGE_COLUMNS, ID_COLUMN, *SIZE_COLUMNS):
        assert name in PAIRS_SCHEMA.names
    assert fnmatch.fnmatch(shard_name(0), SHARD_GLOB) and fnmatch.fnmatch(shard_name(12345), SHARD_GLOB)


def test_pretrain_imports_no_pairgen_and_of_renderers_the_camera_only():
    """The trainer runs where no renderer does: of renderers it loads the camera's projection only (the probe's
    geometry, with covisibility's pixel rule), and none of the renderers' engines (Open3D, numba) or Ray."""
    modules = ["pretrain.data", "pretrain.shards", "pretrain.plan", "pretrain.augment", "pretrain.memory",
               "pretrain.model", "pretrain.engine", "pretrain.checkpoint", "pretrain.outputs", "pretrain.train",
               "pretrain.probe", "pretrain.correspondence", "pretrain.cli"]  # fmt: skip
    code = f"import sys\nfor m in {modules!r}: __import__(m)\n" + (
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pairgen', 'renderers')"
        " and m not in ('renderers', 'renderers.camera')), [m for m in ('open3d', 'numba', 'ray') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert out.stdout.strip() == "[] []"
    for path in (Path(__file__).resolve().parents[2] / "pretrain").glob("*.py"):
        assert "torch._C" not in path.read_text() and "._new_shared" not in path.read_text(), path
