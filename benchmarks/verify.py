"""What verifying a pairs folder's shards costs: SHA-256 of every shard against reading them.

``pretrain run`` checks the shards against their manifest's SHA-256 once a
run (``--no-verify`` skips it). This script times, in the same run,

* **verify**: :func:`pretrain.shards.verify_shards` over the folder (every
  shard hashed, no record kept);
* **read** (the baseline): ``pyarrow.parquet.read_table`` of every shard's
  image columns, which one epoch of training reads at least once.

    python benchmarks/verify.py data/pairgen/pairs

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from pretrain.shards import find_shards, verify_shards  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="a pairs folder with its manifest (OUT/pairs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each (best kept)")
    args = parser.parse_args()
    files = find_shards(args.pairs)
    gib = sum(f.stat().st_size for f in files) / 2**30
    verify, read = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        hashed = verify_shards(args.pairs)
        verify.append(time.perf_counter() - t)
        t = time.perf_counter()
        for f in files:
            pq.read_table(f, columns=["image1", "image2"])
        read.append(time.perf_counter() - t)
    result = {"shards": len(files), "hashed": hashed, "gib": round(gib, 3), "verify_s": round(min(verify), 3),
              "read_s": round(min(read), 3), "verify_gib_per_s": round(gib / min(verify), 2),
              "verify_over_read": round(min(verify) / min(read), 2)}  # fmt: skip
    print(f"{len(files)} shards, {gib:.2f} GiB: verify {result['verify_s']} s ({result['verify_gib_per_s']} GiB/s), "
          f"reading their images {result['read_s']} s; verify / read = {result['verify_over_read']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
