"""Compare two pairs folders shard by shard: file SHA-256, rows and columns, and footer metadata.

    .venv/bin/python scripts/compare_pairs.py OLD/pairs NEW/pairs

For each shard it prints whether the files are byte-identical, whether their
rows and columns are equal, and which ``pairgen`` metadata keys differ (a
renamed config field changes the config hash stored in the footer, and so the
file's SHA-256, without changing a row). Exits with status 1 when a shard's
content differs.
"""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from manifests.manifest import PairsManifest


def main(old: Path, new: Path) -> int:
    # the manifest beside each folder (OUT/pairs.manifest.json), or pairgen 0.1's inside it
    ma, mb = ({"shards": PairsManifest.read(d).shards} for d in (old, new))
    print(f"shards: {len(ma['shards'])} and {len(mb['shards'])}")
    bad = len(ma["shards"]) != len(mb["shards"])
    for sa, sb in zip(ma["shards"], mb["shards"]):
        ta, tb = pq.read_table(old / sa["file"]), pq.read_table(new / sb["file"])
        same = ta.schema.remove_metadata().equals(tb.schema.remove_metadata()) and ta.equals(tb)
        meta_a, meta_b = (json.loads(t.schema.metadata[b"pairgen"]) for t in (ta, tb))
        differ = {k: (meta_a.get(k), meta_b.get(k)) for k in meta_a.keys() | meta_b.keys() if meta_a.get(k) != meta_b.get(k)}
        print(f"{sa['file']}: sha256 {sa['sha256'][:12]} {sb['sha256'][:12]} "
              f"({'equal' if sa['sha256'] == sb['sha256'] else 'differ'}); "
              f"rows and columns {'equal' if same else 'DIFFER'}; metadata differing: {differ or 'none'}")
        bad |= not same
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
