"""Check a folder of samples against its own config, recomputing every matrix by another path.

For each sample of ``OUT/<shape><N>`` (its config from ``OUT/<shape><N>.manifest.json``):
its views are read from the views files (:func:`manifests.samples.read_samples`:
the views file's SHA-256 as recorded), the directed covisibility of every
pair is computed again by :func:`covisibility.reprojection.covisibility_pairs`
(every pair, no pruning: not the path the search took) and compared with the
stored matrix exactly; every edge (a view and its parent) must lie in the
band and every other pair under its bound (``max_covis`` in a star, below
``cap`` in a chain or tree), each by the config's pair rule; a chain's
parents are its previous views, a star's the reference. Exit 1 with the
first problems when any fails.

    python scripts/check_samples.py data/pairgen/star5 data/pairgen/tree12

Last line: one JSON object per folder, with the counts checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covisibility.measures import combine_directions  # noqa: E402
from covisibility.reprojection import covisibility_pairs  # noqa: E402
from manifests.samples import read_samples  # noqa: E402


def check(folder: Path) -> dict:
    manifest = json.loads((folder.parent / f"{folder.name}.manifest.json").read_text())
    config = manifest["config"]
    if config["measure"] != "reprojection":
        raise SystemExit(f"{folder}: made with the {config['measure']!r} measure; this check recomputes reprojection")
    lo, hi, cap, rule, shape = config["min_covis"], config["max_covis"], config["cap"], config["rule"], config["shape"]
    problems, counts = [], {"samples": 0, "entries": 0, "edges": 0, "non_edges": 0}
    for s in read_samples(folder):
        n = len(s.view_ids)
        again = covisibility_pairs(s.depth, s.K.astype(np.float64), s.cam2world.astype(np.float64))
        for (a, b), ab, ba in zip(again.pairs, again.covis_1in2, again.covis_2in1):
            if s.covis[a, b] != ab or s.covis[b, a] != ba:
                problems.append(f"{s.sample_id}: stored ({s.covis[a, b]}, {s.covis[b, a]}) for views {a}, {b}, "
                                f"recomputed ({ab}, {ba})")  # fmt: skip
        counts["entries"] += n * (n - 1)
        valid = (s.depth > 0).mean(axis=(1, 2)).astype(np.float32)
        if not np.array_equal(np.diag(s.covis), valid):
            problems.append(f"{s.sample_id}: the diagonal is not the views' valid fractions")
        pair = combine_directions(s.covis, s.covis.T, rule)
        if s.parents[0] != -1 or any(not 0 <= p < k for k, p in enumerate(s.parents) if k):
            problems.append(f"{s.sample_id}: parents {s.parents.tolist()} do not point to earlier views")
            continue
        if shape in ("star", "pair") and (s.parents[1:] != 0).any() or shape == "chain" and (
                s.parents[1:] != np.arange(n - 1)).any():  # fmt: skip
            problems.append(f"{s.sample_id}: parents {s.parents.tolist()} are not a {shape}'s")
        for k in range(1, n):
            counts["edges"] += 1
            if not lo <= pair[k, s.parents[k]] <= hi:
                problems.append(f"{s.sample_id}: edge {k}-{s.parents[k]} at {pair[k, s.parents[k]]:.4f}, "
                                f"outside [{lo}, {hi}]")  # fmt: skip
            for j in range(k):
                if j == s.parents[k]:
                    continue
                counts["non_edges"] += 1
                bad = pair[k, j] > hi if shape in ("star", "pair") else pair[k, j] >= cap
                if bad:
                    problems.append(f"{s.sample_id}: views {k}, {j} overlap {pair[k, j]:.4f}, over their bound")
        counts["samples"] += 1
    return {"folder": str(folder), "shape": shape, "views": config["views"], **counts, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="samples folders (OUT/<shape><N>)")
    args = parser.parse_args()
    results = [check(folder) for folder in args.folders]
    bad = 0
    for r in results:
        print(f"{r['folder']}: {r['samples']} {r['shape']}s of {r['views']} views, {r['entries']} matrix entries, "
              f"{r['edges']} edges, {r['non_edges']} other pairs checked; {len(r['problems'])} problem(s)")
        for problem in r["problems"][:10]:
            print(f"  PROBLEM {problem}")
        bad += len(r["problems"])
    print(json.dumps([{k: v for k, v in r.items() if k != "problems"} | {"problems": len(r["problems"])}
                      for r in results]))  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
