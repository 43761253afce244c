"""The rows of a pairs folder written as referenced samples of shape pair: the same pairs, in the same order and
row groups, so a loader reading both folders sees the same pairs and differs only in where the bytes come from
(the tests of ``pretrain`` on samples and ``benchmarks/loader_samples.py``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.manifest import sha256_file
from manifests.samples import SAMPLES_SCHEMA, samples_metadata
from pretrain.shards import find_shards

__all__ = ["write_by_reference"]


def write_by_reference(pairs: Path, dest: Path, views: Path) -> None:
    """The rows of the pairs shards as referenced samples (shape pair): same pairs, order and row groups."""
    dest.mkdir(parents=True)
    digests: dict[tuple[str, str], str] = {}
    for path in find_shards(pairs):
        with pq.ParquetFile(path) as pf, pq.ParquetWriter(dest / path.name, SAMPLES_SCHEMA.with_metadata(
                samples_metadata("bench", pf.metadata.num_rows, "pair", 2, False))) as writer:  # fmt: skip
            for g in range(pf.metadata.num_row_groups):
                t = pf.read_row_group(g, columns=["pair_id", "dataset", "scene_id", "view1_id", "view2_id",
                                                  "covis_1in2", "covis_2in1", "width", "height"]).to_pydict()
                for key in zip(t["dataset"], t["scene_id"]):
                    if key not in digests:
                        digests[key] = sha256_file(views / key[0] / f"{key[1]}.parquet")
                n = len(t["pair_id"])
                writer.write_table(pa.table({
                    "sample_id": t["pair_id"], "dataset": t["dataset"], "scene_id": t["scene_id"],
                    "shape": ["pair"] * n, "view_ids": [list(v) for v in zip(t["view1_id"], t["view2_id"])],
                    "parents": [[-1, 0]] * n,
                    "covis": [[1.0, a, b, 1.0] for a, b in zip(t["covis_1in2"], t["covis_2in1"])],
                    "width": t["width"], "height": t["height"],
                    "views_sha256": [digests[k] for k in zip(t["dataset"], t["scene_id"])],
                }, schema=SAMPLES_SCHEMA), row_group_size=n)  # fmt: skip
