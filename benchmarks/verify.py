"""What verifying shards costs: SHA-256 against the manifest, or the checksums a shard carries, against reading them.

``pretrain run`` checks the shards once a run (``--no-verify`` skips it):
against their manifest's SHA-256, or, without a manifest beside them,
against the CRC-32s in each shard's own footer
(:func:`manifests.io.check_parquet`). On a pairs folder this script times,
in the same run,

* **verify**: :func:`pretrain.shards.verify_shards` over the folder (every
  shard hashed, no record kept);
* **check**: :func:`manifests.io.check_parquet` of every shard (when they
  carry checksums: every row group read, every column hashed);
* **read** (the baseline): ``pyarrow.parquet.read_table`` of every shard's
  image columns, which one epoch of training reads at least once.

With ``--synthetic`` it first writes shards of real size (``--shards`` x
``--pairs`` pairs, row groups of 256, random bytes the size of a 256 px
view's JPEG and depth PNG: about 90 KB a pair, as the demo's) twice, with
and without checksums, and times besides

* **write**: :func:`manifests.io.write_parquet_atomic` of the same tables
  with ``checksums`` off and on (fsync included), and the CRC-32s alone;
* **load**: every row group through the loader's reader
  (:func:`pretrain.shards.read_group`), shards with against without
  checksums (a larger footer is opened for each row group);
* **page CRC** (the alternative not taken): Parquet's own page checksums,
  written (``write_page_checksum``) and read with verification
  (``page_checksum_verification``).

    python benchmarks/verify.py data/pairgen/pairs
    python benchmarks/verify.py --synthetic --shards 4 --pairs 1000

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from manifests.io import check_parquet, parquet_checksums, write_parquet_atomic  # noqa: E402
from manifests.manifest import sha256_file  # noqa: E402
from manifests.pairs import PAIRS_SCHEMA, pairs_metadata, shard_name  # noqa: E402
from pretrain.shards import ShardIndex, find_shards, read_group, verify_shards  # noqa: E402

GROUP = 256  # pairs a row group, as the filter writes them
IMAGE_KB, DEPTH_KB = 22, 23  # a 256 px view's JPEG (quality 95) and 16-bit depth PNG, about


def best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds (other load only ever slows a run)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def synthetic_table(rng: np.random.Generator, first: int, n: int) -> pa.Table:
    """``n`` pairs in the pairs schema: random (incompressible, as encoded images are) bytes of real sizes."""
    def blobs(kb: int, name: str) -> list[dict]:
        sizes = rng.integers(kb * 768, kb * 1280, n)
        return [{"bytes": rng.integers(0, 256, int(s), np.uint8).tobytes(), "path": f"{name}/{first + i}"}
                for i, s in enumerate(sizes)]  # fmt: skip

    ids = np.arange(first, first + n)
    cols = {"pair_id": [f"bench/s{i % 16}/{i:06d}-{i + 1:06d}" for i in ids], "dataset": ["bench"] * n,
            "scene_id": [f"s{i % 16}" for i in ids], "view1_id": ids, "view2_id": ids + 1,
            "image1": blobs(IMAGE_KB, "image1"), "image2": blobs(IMAGE_KB, "image2"),
            "depth1": blobs(DEPTH_KB, "depth1"), "depth2": blobs(DEPTH_KB, "depth2"),
            "K1": [np.eye(3, dtype=np.float32).ravel()] * n, "K2": [np.eye(3, dtype=np.float32).ravel()] * n,
            "cam2world1": list(rng.standard_normal((n, 16), dtype=np.float32)),
            "cam2world2": list(rng.standard_normal((n, 16), dtype=np.float32)),
            "covis_1in2": rng.uniform(0.3, 0.9, n), "covis_2in1": rng.uniform(0.3, 0.9, n),
            "covisibility": rng.uniform(0.3, 0.9, n), "width": [256] * n, "height": [256] * n}  # fmt: skip
    return pa.table(cols, schema=PAIRS_SCHEMA)


def load_all(files: list[Path]) -> None:
    """Every row group through the loader's reader (image bytes and pair ids)."""
    index = ShardIndex.build(files)
    for g in range(len(index.group_rows)):
        read_group(index, g)


def synthetic(args: argparse.Namespace) -> dict:
    """Write the shards with and without checksums, and time writing, checking and loading them."""
    rng = np.random.default_rng(0)
    tables = [synthetic_table(rng, k * args.pairs, args.pairs) for k in range(args.shards)]
    meta = [pairs_metadata("bench", args.pairs, f"{k:016x}") for k in range(args.shards)]
    folder = Path(tempfile.mkdtemp(prefix="verify-bench-", dir=args.tmp))
    plain, checked, paged = (folder / "plain", folder / "checked", folder / "paged")
    for d in (plain, checked, paged):
        d.mkdir()

    def write(into: Path, checksums: bool) -> None:
        for k, table in enumerate(tables):
            write_parquet_atomic(into / shard_name(k), table, metadata=meta[k], row_group_size=GROUP,
                                 checksums=checksums, tmp_dir=folder / "_tmp")  # fmt: skip

    def write_paged() -> None:  # write_parquet_atomic's options, plus Parquet's page CRCs
        blob = {"image1.bytes", "image2.bytes", "depth1.bytes", "depth2.bytes"}
        leaves = [c.path for c in pq.ParquetFile(plain / shard_name(0)).metadata.schema]
        for k, table in enumerate(tables):
            pq.write_table(table.replace_schema_metadata({**table.schema.metadata, **meta[k]} if table.schema.metadata
                                                         else meta[k]),
                           paged / shard_name(k), row_group_size=GROUP, write_page_checksum=True,
                           compression={p: "none" if p in blob else "zstd" for p in leaves},
                           use_dictionary=[p for p in leaves if p not in blob],
                           write_statistics=[p for p in leaves if p not in blob])  # fmt: skip

    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # alternated, so that other load falls on both
        for name, fn in (("write_plain_s", lambda: write(plain, False)), ("write_checksums_s", lambda: write(checked, True)),
                         ("write_page_crc_s", write_paged),
                         ("crc_alone_s", lambda: [parquet_checksums(t, GROUP) for t in tables])):  # fmt: skip
            t = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - t)
    files = {d.name: sorted(d.glob("shard-*.parquet")) for d in (plain, checked, paged)}
    gib = sum(f.stat().st_size for f in files["checked"]) / 2**30
    for _ in range(args.repeats):
        for name, fn in (("check_s", lambda: [check_parquet(f) for f in files["checked"]]),
                         ("sha256_s", lambda: [sha256_file(f) for f in files["checked"]]),
                         ("read_images_s", lambda: [pq.read_table(f, columns=["image1", "image2"]) for f in files["checked"]]),
                         ("read_all_s", lambda: [pq.read_table(f) for f in files["checked"]]),
                         ("read_all_page_crc_s", lambda: [pq.read_table(f, page_checksum_verification=True)
                                                          for f in files["paged"]]),
                         ("load_plain_s", lambda: load_all(files["plain"])),
                         ("load_checksums_s", lambda: load_all(files["checked"]))):  # fmt: skip
            t = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - t)
    result = {name: round(min(v), 3) for name, v in times.items()}
    footer = {name: pq.ParquetFile(fs[0]).metadata.serialized_size for name, fs in files.items()}
    result.update({"shards": args.shards, "pairs": args.pairs, "gib": round(gib, 3),
                   "bytes_plain": sum(f.stat().st_size for f in files["plain"]),
                   "bytes_checksums": sum(f.stat().st_size for f in files["checked"]),
                   "footer_bytes_plain": footer["plain"], "footer_bytes_checksums": footer["checked"],
                   "write_ratio": round(result["write_checksums_s"] / result["write_plain_s"], 3),
                   "load_ratio": round(result["load_checksums_s"] / result["load_plain_s"], 3),
                   "check_gib_per_s": round(gib / result["check_s"], 2),
                   "sha256_gib_per_s": round(gib / result["sha256_s"], 2)})  # fmt: skip
    for d in (plain, checked, paged):
        for f in d.iterdir():
            f.unlink()
    print(f"{args.shards} shards x {args.pairs} pairs, {gib:.2f} GiB (best of {args.repeats}):")
    print(f"  write: {result['write_plain_s']} s without checksums, {result['write_checksums_s']} s with "
          f"(x{result['write_ratio']}; the CRC-32s alone {result['crc_alone_s']} s), "
          f"{result['write_page_crc_s']} s with Parquet page CRCs instead")
    print(f"  check once a run: footer checksums {result['check_s']} s ({result['check_gib_per_s']} GiB/s), "
          f"SHA-256 {result['sha256_s']} s ({result['sha256_gib_per_s']} GiB/s); reading every column "
          f"{result['read_all_s']} s, with page CRC verification {result['read_all_page_crc_s']} s; "
          f"the image columns {result['read_images_s']} s")
    print(f"  loader, every row group: {result['load_plain_s']} s without checksums, {result['load_checksums_s']} s "
          f"with (x{result['load_ratio']}); footer {footer['plain']} -> {footer['checked']} bytes")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, nargs="?", help="a pairs folder with its manifest (OUT/pairs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each (best kept)")
    parser.add_argument("--synthetic", action="store_true", help="write real-size shards with and without checksums")
    parser.add_argument("--shards", type=int, default=4, help="--synthetic: shards")
    parser.add_argument("--pairs", dest="pairs_a_shard", type=int, default=1000, help="--synthetic: pairs a shard")
    parser.add_argument("--tmp", type=Path, default=None, help="--synthetic: where to write them (default: TMPDIR)")
    args = parser.parse_args()
    if args.synthetic:
        args.pairs = args.pairs_a_shard
        print(json.dumps(synthetic(args)))
        return
    if args.pairs is None:
        parser.error("give a pairs folder, or --synthetic")
    files = find_shards(args.pairs)
    gib = sum(f.stat().st_size for f in files) / 2**30
    verify, read, check = [], [], []
    carried = 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        hashed = verify_shards(args.pairs)
        verify.append(time.perf_counter() - t)
        t = time.perf_counter()
        carried = sum(check_parquet(f) for f in files)  # False (0) for shards written before the checksums
        check.append(time.perf_counter() - t)
        t = time.perf_counter()
        for f in files:
            pq.read_table(f, columns=["image1", "image2"])
        read.append(time.perf_counter() - t)
    result = {"shards": len(files), "hashed": hashed, "carry_checksums": carried, "gib": round(gib, 3),
              "verify_s": round(min(verify), 3), "check_s": round(min(check), 3) if carried else None,
              "read_s": round(min(read), 3), "verify_gib_per_s": round(gib / min(verify), 2),
              "verify_over_read": round(min(verify) / min(read), 2)}  # fmt: skip
    print(f"{len(files)} shards, {gib:.2f} GiB: verify {result['verify_s']} s ({result['verify_gib_per_s']} GiB/s), "
          f"their own checksums {result['check_s']} s ({carried} carry them), reading their images "
          f"{result['read_s']} s; verify / read = {result['verify_over_read']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
