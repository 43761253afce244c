"""The pair shards: ``pairs/shard-NNNNN.parquet``, one row a pair (docs/design.md)."""

from __future__ import annotations

import json

import pyarrow as pa

from manifests.views import IMAGE_STRUCT, MAT3, MAT4, huggingface_metadata

__all__ = ["PAIRS_FORMAT", "PAIRS_SCHEMA", "pairs_metadata", "shard_name"]

PAIRS_FORMAT = "pairgen-pairs/1"
SHARD_GLOB = "shard-*.parquet"  # matches every shard_name()
IMAGE_COLUMNS = ("image1", "image2")  # the two views' encoded images (IMAGE_STRUCT: bytes, path)
ID_COLUMN = "pair_id"
SIZE_COLUMNS = ("width", "height")  # pixels of both views
META_KEY = "pairgen"

PAIRS_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("dataset", pa.string()),
        ("scene_id", pa.string()),
        ("view1_id", pa.int32()),
        ("view2_id", pa.int32()),
        ("image1", IMAGE_STRUCT),
        ("image2", IMAGE_STRUCT),
        ("depth1", IMAGE_STRUCT),
        ("depth2", IMAGE_STRUCT),
        ("K1", MAT3),
        ("K2", MAT3),
        ("cam2world1", MAT4),
        ("cam2world2", MAT4),
        ("covis_1in2", pa.float32()),
        ("covis_2in1", pa.float32()),
        ("covisibility", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def pairs_metadata(config_hash: str, pairs: int, digest: str | None = None) -> dict[str, str]:
    """Schema metadata of a shard: ``pairgen`` (format, config hash, pair count, and the digest of
    its rows, which tells a rerun whether the shard holds what it would write) and ``huggingface``."""
    meta = {"format": PAIRS_FORMAT, "config_hash": config_hash, "pairs": pairs}
    if digest is not None:
        meta["rows_digest"] = digest
    return {
        META_KEY: json.dumps(meta, sort_keys=True),
        **huggingface_metadata(PAIRS_SCHEMA, ("image1", "image2", "depth1", "depth2")),
    }
