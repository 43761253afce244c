"""Throughput of the pre-training loader (:class:`pretrain.data.PairStream`).

Writes (or reuses) a synthetic pairs set in the shard layout pairgen writes
(``manifests.pairs.PAIRS_SCHEMA``, row groups of 256, image and depth bytes
uncompressed): each pair two overlapping 256x256 windows of one picture made
of smooth gradients, soft lighting, striped and tiled surfaces and shapes
drawn with OpenCV (not noise), JPEG quality 95 with Pillow as pairgen encodes
them, and a 16-bit PNG depth each. Then, in this process and one core at a
time,

* **decode**: Pillow against ``cv2.imdecode`` on the set's JPEGs;
* **transforms**: CroCo's crop 224 + asymmetric colour jitter + ImageNet
  normalisation (:class:`pretrain.augment.Augment`) on decoded images, into a
  reused output (float32, or uint8 for ``output="uint8"``);
* **stream**: whole batches through :class:`PairStream` (float32 output,
  then uint8) with ``num_workers`` 0 (this process), 1 and 2 (``DataLoader``
  workers): reading, decoding, transforms, batch tensors and, with workers,
  the hand-over to the main process, which copies each batch into a reused
  buffer as a trainer copies it to pinned memory. Per worker = per core (with
  ``num_workers=0`` the one core also does that copy).

Every figure is the best of a few runs (other load only ever slows a run).

    python benchmarks/loader.py                       # 4 shards x 1000 pairs, batch 64
    python benchmarks/loader.py --shards data/pairgen/pairs   # a real pairs folder

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manifests.io import write_json_atomic, write_parquet_atomic
from manifests.pairs import PAIRS_SCHEMA, pairs_metadata, shard_name
from pretrain.augment import Augment, decode_bgr, sample_uniforms
from pretrain.data import PairStream, worker_context
from pretrain.shards import find_shards

SIZE = 256
FORMAT = "loader-bench/1"


# --------------------------------------------------------------------------- synthetic set


def synthetic_picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """An (size, size, 3) uint8 indoor-looking picture: gradients, lighting, textures, shapes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t  # (size, size, 3) wall gradient
    for _ in range(2):  # soft lights
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.2, 0.6)
        img *= (1.0 + 0.35 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2))[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(8, 14)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        if kind == 0:  # textured panel: stripes (wood, blinds) or tiles
            x0, y0 = rng.integers(0, size - 32, 2)
            w, h = rng.integers(24, size // 2, 2)
            period = rng.uniform(4, 16)
            yy, xx = np.mgrid[0:h, 0:w]
            wave = np.sin(2 * np.pi * (xx if rng.random() < 0.5 else xx + yy) / period)
            if rng.random() < 0.5:
                wave = np.maximum(wave, np.sin(2 * np.pi * yy / period))
            patch = np.asarray(colour, np.float32) * (0.8 + 0.2 * wave[..., None])
            region = img[y0 : y0 + h, x0 : x0 + w]
            region[...] = np.clip(patch[: region.shape[0], : region.shape[1]], 0, 255).astype(np.uint8)
        elif kind == 1:
            p0 = tuple(int(v) for v in rng.integers(0, size, 2))
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(img, p0, p1, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(img, centre, int(rng.integers(8, size // 4)), colour, -1, cv2.LINE_AA)
        else:
            pts = rng.integers(0, size, (int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    for _ in range(rng.integers(3, 8)):  # edges, cables, frames
        p0 = tuple(int(v) for v in rng.integers(0, size, 2))
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(img, p0, p1, tuple(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(1, 4)), cv2.LINE_AA)
    return cv2.GaussianBlur(img, (3, 3), 0.7)  # a renderer's antialiasing


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)  # as pairgen's manifests.codecs.encode_rgb
    return buf.getvalue()


def _depth_png(rng: np.random.Generator, size: int) -> bytes:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = 1500 + 2000 * (y / size) + 300 * np.sin(x / rng.uniform(20, 60))
    return cv2.imencode(".png", depth.astype(np.uint16))[1].tobytes()


def write_synthetic_set(folder: Path, shards: int, pairs_per_shard: int, seed: int = 0) -> None:
    """``shards`` shard files of ``pairs_per_shard`` pairs and a manifest in ``folder`` (pairs layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    K = np.array([SIZE / 2 / np.tan(np.pi / 6), 0, (SIZE - 1) / 2, 0, SIZE / 2 / np.tan(np.pi / 6),
                  (SIZE - 1) / 2, 0, 0, 1], np.float32)  # fmt: skip
    entries = []
    for s in range(shards):
        cols: dict[str, list] = {name: [] for name in PAIRS_SCHEMA.names}
        for i in range(pairs_per_shard):
            n = s * pairs_per_shard + i
            scene = f"bench_{n // 100:04d}"
            canvas = synthetic_picture(rng, SIZE + 96)
            (y1, x1), (y2, x2) = rng.integers(0, 97, (2, 2))
            cols["pair_id"].append(f"synthetic/{scene}/{2 * n:06d}-{2 * n + 1:06d}")
            cols["dataset"].append("synthetic")
            cols["scene_id"].append(scene)
            cols["view1_id"].append(2 * n)
            cols["view2_id"].append(2 * n + 1)
            for k, (yy, xx) in (("1", (y1, x1)), ("2", (y2, x2))):
                view = 2 * n + int(k) - 1
                cols["image" + k].append({"bytes": _jpeg(canvas[yy : yy + SIZE, xx : xx + SIZE]),
                                          "path": f"{scene}/{view:06d}.jpg"})  # fmt: skip
                cols["depth" + k].append({"bytes": _depth_png(rng, SIZE), "path": f"{scene}/{view:06d}.depth.png"})
                cols["K" + k].append(K)
                cols["cam2world" + k].append(np.eye(4, dtype=np.float32).reshape(-1))
            c12, c21 = rng.uniform(0.5, 0.8, 2)
            cols["covis_1in2"].append(c12)
            cols["covis_2in1"].append(c21)
            cols["covisibility"].append(min(c12, c21))
            cols["width"].append(SIZE)
            cols["height"].append(SIZE)
        path = folder / shard_name(s)
        write_parquet_atomic(path, pa.table(cols, schema=PAIRS_SCHEMA),
                             metadata=pairs_metadata(FORMAT, pairs_per_shard), row_group_size=256)  # fmt: skip
        entries.append({"file": path.name, "pairs": pairs_per_shard})
        print(f"  wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    write_json_atomic(folder / "manifest.json", {"format": FORMAT, "seed": seed, "shards": entries})


def synthetic_set(folder: Path, shards: int, pairs_per_shard: int) -> Path:
    manifest = folder / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("format") == FORMAT and [e["pairs"] for e in m["shards"]] == [pairs_per_shard] * shards:
            print(f"reusing the synthetic set in {folder}")
            return folder
    print(f"writing a synthetic set of {shards} x {pairs_per_shard} pairs to {folder} ...", flush=True)
    write_synthetic_set(folder, shards, pairs_per_shard)
    return folder


# --------------------------------------------------------------------------- measurements


def _best_rate(fn, items: int, repeats: int) -> float:
    """Best of ``repeats`` runs of ``fn``, in seconds an item."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / items


def sample_jpegs(shards: list[Path], count: int) -> list[bytes]:
    with pq.ParquetFile(shards[0]) as pf:
        table = pf.read_row_group(0, columns=["image1", "image2"])
    out = [r["bytes"] for name in ("image1", "image2") for r in table.column(name).to_pylist()]
    return out[:count]


def stream_rate(shards: Path, workers: int, batch_size: int, batches: int, crop: int | None,
                output: str) -> tuple[float, int]:  # fmt: skip
    """Pairs/s of ``batches`` batches through the stream (after one warm-up batch), and pairs timed.

    The main process copies each batch into a reused buffer, as a trainer
    copies it to pinned memory or the GPU: the batch's pages are touched
    where they are consumed.
    """
    stream = PairStream(shards, batch_size=batch_size, crop=crop, seed=0, output=output)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         multiprocessing_context=worker_context() if workers else None)
    it = iter(loader)
    first = next(it)  # warm-up: workers started, first row groups read
    staging = [torch.empty_like(first["img1"]), torch.empty_like(first["img2"])]
    start = time.perf_counter()
    pairs = 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        staging[0].copy_(batch["img1"])
        staging[1].copy_(batch["img2"])
        pairs += len(batch["pair_id"])
    seconds = time.perf_counter() - start
    del it
    return pairs / seconds, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, help="a pairs folder to read instead of the synthetic set")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "pairgen-loader-bench",
                    help="where the synthetic set is written (reused when present)")  # fmt: skip
    ap.add_argument("--synthetic-shards", type=int, default=4)
    ap.add_argument("--pairs-per-shard", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="batches timed per worker count")
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to time")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; the best is reported")
    ap.add_argument("--crop", type=int, default=224)
    args = ap.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    folder = args.shards or synthetic_set(args.out, args.synthetic_shards, args.pairs_per_shard)
    files = find_shards(folder)
    pairs = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(f.stat().st_size for f in files)
    jpegs = sample_jpegs(files, 256)
    kib = np.mean([len(b) for b in jpegs]) / 1024
    print(f"{folder}: {pairs} pairs in {len(files)} shards ({size / 2**20:.0f} MiB), JPEG {kib:.1f} KiB on average; "
          f"{os.cpu_count()} CPUs")  # fmt: skip

    pil = _best_rate(lambda: [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpegs], len(jpegs), 5)
    ocv = _best_rate(lambda: [decode_bgr(b) for b in jpegs], len(jpegs), 5)
    print(f"decode, ms a pair (2 JPEGs): Pillow {2e3 * pil:.3f}, cv2.imdecode {2e3 * ocv:.3f}")

    images = [decode_bgr(b) for b in jpegs]
    u = sample_uniforms(0, 0, np.arange(len(images)), 5)
    transforms = {}
    for name, aug, dtype in (("crop+jitter+normalize", Augment(crop=args.crop), np.float32),
                             ("crop+normalize", Augment(crop=args.crop, jitter=False), np.float32),
                             ("crop", Augment(crop=args.crop, jitter=False, normalize=False), np.float32),
                             ("crop+jitter to uint8", Augment(crop=args.crop), np.uint8)):  # fmt: skip
        out = np.empty((len(images), 3, *aug.out_size(SIZE, SIZE)), dtype)

        def transform_all(aug: Augment = aug, out: np.ndarray = out) -> None:
            for i, im in enumerate(images):
                aug.apply(im, out[i], u[i])

        transforms[name] = 2e3 * _best_rate(transform_all, len(images), 5)
    print("transforms, ms a pair (2 views): " + ", ".join(f"{k} {v:.3f}" for k, v in transforms.items()))

    rates: dict[str, dict[int, float]] = {}
    for output in ("float32", "uint8"):
        rates[output] = {}
        for w in [int(v) for v in args.workers.split(",")]:
            runs = [stream_rate(folder, w, args.batch_size, args.batches, args.crop, output)
                    for _ in range(args.repeats)]  # fmt: skip
            rate, timed = max(runs)
            rates[output][w] = rate
            print(f"stream {output:>7}, num_workers={w}: {rate:6.0f} pairs/s, {rate / max(w, 1):6.0f} a worker "
                  f"({timed} pairs timed)", flush=True)  # fmt: skip
    if max(rates["float32"]) >= (os.cpu_count() or 1):
        print(f"note: with {max(rates['float32'])} workers on {os.cpu_count()} CPUs the main process shares their "
              "cores: per-worker figures there are lower bounds")  # fmt: skip

    def by_workers(output: str, per_worker: bool) -> dict[str, float]:
        return {str(w): round(r / max(w, 1) if per_worker else r, 1) for w, r in rates[output].items()}

    summary = {
        "pairs_per_s_per_worker": by_workers("float32", True),
        "pairs_per_s": by_workers("float32", False),
        "uint8": {"pairs_per_s_per_worker": by_workers("uint8", True), "pairs_per_s": by_workers("uint8", False)},
        "decode_ms_per_pair": {"pillow": round(2e3 * pil, 4), "cv2": round(2e3 * ocv, 4)},
        "transform_ms_per_pair": {k: round(v, 4) for k, v in transforms.items()},
        "jpeg_kib": round(float(kib), 2),
        "batch_size": args.batch_size,
        "crop": args.crop,
        "cpus": os.cpu_count(),
        "shards": str(folder),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
