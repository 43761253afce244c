"""The pre-training loader on samples shards: referenced pairs against embedded pairs of the same views.

Renders (or reuses, with ``--out``) a small synthetic set with pairgen itself,
``views`` of ``--scenes`` procedural apartments, then filters it three ways:
embedded pairs (``OUT/pairs``, today's default), referenced pairs
(``pairgen filter --reference``: ``OUT/pair2``) and referenced 5-view stars
(``pairgen filter --views 5 --shape star``: ``OUT/star5``). It also writes
``OUT/pairs-by-reference``: the rows of ``OUT/pairs``, same pairs, same
order, same row groups, as referenced samples, so that the one difference
from ``OUT/pairs`` is where the bytes come from (the cleanest A/B).

Then, in one process, alternating the folders ``--alternations`` times (other
load on the machine hits every folder alike), each time one epoch of each
through :class:`pretrain.data.PairStream` as ``pretrain run`` builds it
(crop, colour jitter, uint8 output, ``num_workers`` DataLoader workers,
forkserver), the main process copying every batch once as a trainer copies
it to pinned memory; the timer starts after the first batch (workers started,
first row groups read). Each shard file is listed ``--repeat`` times so an
epoch is long enough to time (a repeated row is another canonical index:
other crops, another pair of a star). Figures: the median pairs/s of each
folder, and the median of the per-alternation ratios referenced/embedded.

``cold``: the referenced copy of the pairs with ``views_keep=1`` (a process
keeps one scene's views): every row group opens again the views file of
each of its scenes, as when a worker's row groups come from more scenes than
it keeps (many scenes, blocks of 16 a row group). The views files opened and
their cost (hash + image column, ms and MB) are printed, so the cold cost of
another dataset can be estimated: scenes a row group x (hash + read) a
views file, against the row group's decoding.

    python benchmarks/loader_samples.py                   # 2 apartments, 200 views each at 128 px (about 2 min)
    python benchmarks/loader_samples.py --out /data/pg --crop 224 --workers 4   # a rendered OUT with all three

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manifests.manifest import sha256_file  # noqa: E402
from manifests.samples import ViewsLookup  # noqa: E402
from pretrain.data import PairStream, worker_context  # noqa: E402
from pretrain.shards import find_shards  # noqa: E402
from tests.referenced import write_by_reference  # noqa: E402

BY_REFERENCE = "pairs-by-reference"
PAIRGEN = [sys.executable, "-c", "import sys; from pairgen.cli import main; sys.exit(main(sys.argv[1:]))"]


def pairgen(*args: str, out: Path) -> None:
    cmd = [*PAIRGEN, *args, "--no-ray", "--out", str(out)]
    print("  $ pairgen " + " ".join(cmd[len(PAIRGEN):]), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise SystemExit(f"pairgen failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stderr.strip().splitlines()
    print("    " + (lines[-2] if len(lines) > 1 else "".join(lines)), flush=True)


def make_set(out: Path, scenes: int, views: int, resolution: int) -> None:
    """Render and filter unless ``out`` already holds them (each pairgen stage skips what is complete)."""
    t = time.perf_counter()
    if not (out / "views.manifest.json").is_file():
        pairgen("render", "--scenes", "synthetic", "--synthetic-count", str(scenes), "--views-per-scene", str(views),
                "--resolution", str(resolution), out=out)  # fmt: skip
    for folder, flags in (("pairs", []), ("pair2", ["--reference"]), ("star5", ["--views", "5", "--shape", "star"])):
        if not (out / f"{folder}.manifest.json").is_file():
            pairgen("filter", *flags, out=out)
    if not (out / BY_REFERENCE).is_dir():
        write_by_reference(out / "pairs", out / BY_REFERENCE, out / "views")
    print(f"  data ready in {time.perf_counter() - t:.1f} s", flush=True)


def epoch_rate(files: list[Path], workers: int, batch_size: int, crop: int, views_keep: int,
               seed: int) -> tuple[float, float | None]:  # fmt: skip
    """Pairs/s of one epoch through the stream (after its first batch), as ``pretrain run`` reads it.

    Returns (pairs a wall-clock second, pairs a CPU second of this process);
    the second only in process (``workers == 0``), where it counts all the
    loader's work (pyarrow's threads too) and nothing of other processes.
    """
    stream = PairStream(files, batch_size=batch_size, crop=crop, seed=seed, lanes=max(1, workers), output="uint8",
                        views_keep=views_keep)  # fmt: skip
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         multiprocessing_context=worker_context() if workers else None)
    it = iter(loader)
    first = next(it)
    staging = [torch.empty_like(first["img1"]), torch.empty_like(first["img2"])]
    wall, cpu, pairs = time.perf_counter(), time.process_time(), 0
    for batch in it:
        staging[0].copy_(batch["img1"])
        staging[1].copy_(batch["img2"])
        pairs += len(batch["pair_id"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return pairs / wall, (pairs / cpu if workers == 0 else None)


def views_costs(out: Path, stars: Path) -> dict:
    """Per views file: its size, its image bytes (what a process keeps), and the time to open it cold."""
    files = sorted((out / "views").glob("*/*.parquet"))
    sizes = [f.stat().st_size for f in files]
    lookup = ViewsLookup(out / "views", keep=1, columns=("image",))
    seconds, hashing, kept = [], [], []
    for f in files:
        dataset, scene = f.parent.name, f.stem
        digest = sha256_file(f)
        best, best_hash = float("inf"), float("inf")
        for _ in range(3):
            lookup = ViewsLookup(out / "views", keep=1, columns=("image",))
            t = time.perf_counter()
            views = lookup.get(dataset, scene, digest)
            best = min(best, time.perf_counter() - t)
            t = time.perf_counter()
            sha256_file(f)
            best_hash = min(best_hash, time.perf_counter() - t)
        seconds.append(best)
        hashing.append(best_hash)
        kept.append(views.image.nbytes)
    with pq.ParquetFile(find_shards(stars)[0]) as pf:
        row_group = pf.read_row_group(0, columns=["dataset", "scene_id"])
    scenes_a_group = len(set(zip(*(row_group.column(c).to_pylist() for c in ("dataset", "scene_id")))))
    return {"files": len(files), "mib_a_file": round(float(np.mean(sizes)) / 2**20, 2),
            "image_mib_a_scene": round(float(np.mean(kept)) / 2**20, 2),
            "open_ms_a_file": round(1e3 * float(np.mean(seconds)), 2),
            "sha256_ms_a_file": round(1e3 * float(np.mean(hashing)), 2),
            "scenes_a_row_group": scenes_a_group}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "pairgen-loader-samples-bench",
                    help="OUT folder: rendered and filtered here unless it already holds views, pairs, pair2, star5")
    ap.add_argument("--scenes", type=int, default=2, help="synthetic apartments to render")
    ap.add_argument("--views", type=int, default=200, help="views a scene")
    ap.add_argument("--resolution", type=int, default=128, help="view side, pixels")
    ap.add_argument("--crop", type=int, default=112, help="crop side (pretrain run --img-size)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers (pretrain run --workers); 0: in process, where CPU time is measured too")
    ap.add_argument("--repeat", type=int, default=4, help="each shard listed this many times an epoch")
    ap.add_argument("--alternations", type=int, default=5, help="rounds over the folders; medians are reported")
    ap.add_argument("--keep", type=int, default=32, help="scenes a process keeps (PairStream views_keep)")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    out = args.out
    make_set(out, args.scenes, args.views, args.resolution)
    folders = {"pairs": (out / "pairs", args.keep), "pairs-by-reference": (out / BY_REFERENCE, args.keep),
               "pair2": (out / "pair2", args.keep), "star5": (out / "star5", args.keep),
               "pairs-by-reference cold": (out / BY_REFERENCE, 1)}  # fmt: skip
    files = {name: find_shards(folder) * args.repeat for name, (folder, _) in folders.items()}
    counts = {name: sum(pq.ParquetFile(f).metadata.num_rows for f in fs) for name, fs in files.items()}
    costs = views_costs(out, out / "star5")
    print(f"{out}: {costs['files']} views files ({costs['mib_a_file']} MiB each, {costs['image_mib_a_scene']} MiB "
          f"of images), rows an epoch (x{args.repeat}): " + ", ".join(f"{k} {v}" for k, v in counts.items()) +
          f"; crop {args.crop}, batch {args.batch_size}, {args.workers} worker(s), {os.cpu_count()} CPUs", flush=True)

    walls: dict[str, list[float]] = {name: [] for name in folders}
    cpus: dict[str, list[float]] = {name: [] for name in folders}
    for a in range(args.alternations):
        order = list(folders) if a % 2 == 0 else list(reversed(folders))  # no folder always first
        for name in order:
            wall, cpu = epoch_rate(files[name], args.workers, args.batch_size, args.crop, folders[name][1], seed=a)
            walls[name].append(wall)
            if cpu is not None:
                cpus[name].append(cpu)
        shown = cpus if args.workers == 0 else walls
        print(f"  round {a + 1}, pairs a {'CPU' if args.workers == 0 else 'wall-clock'} second: "
              + ", ".join(f"{n} {shown[n][-1]:.0f}" for n in folders), flush=True)  # fmt: skip

    def figures(rates: dict[str, list[float]]) -> dict:
        return {"median": {n: round(statistics.median(r), 1) for n, r in rates.items()},
                "ratio_to_embedded": {n: round(statistics.median(x / y for x, y in zip(r, rates["pairs"])), 3)
                                      for n, r in rates.items() if n != "pairs"},
                "rounds": {n: [round(v, 1) for v in r] for n, r in rates.items()}}  # fmt: skip

    measured = {"pairs_per_s": figures(walls)}
    if args.workers == 0:
        measured["pairs_per_cpu_s"] = figures(cpus)
    for key, label in (("pairs_per_cpu_s", "pairs a CPU second of the loader (in process: other load does not count)"),
                       ("pairs_per_s", "pairs a wall-clock second")):  # fmt: skip
        if key not in measured:
            continue
        m = measured[key]
        print(f"{label}, median of {args.alternations}; against embedded pairs, the median of the rounds' ratios:")
        for name in folders:
            ratio = m["ratio_to_embedded"].get(name, 1.0)
            print(f"  {name:>24}: {m['median'][name]:7.0f}  x{ratio:.3f}")
    kept = args.keep * costs["image_mib_a_scene"]
    print(f"views files: {costs['open_ms_a_file']} ms to open one cold (SHA-256 of {costs['mib_a_file']} MiB, "
          f"{costs['sha256_ms_a_file']} ms, and its image column); a process keeps {args.keep} scenes: about "
          f"{kept:.0f} MiB at {costs['image_mib_a_scene']} MiB of images a scene; {costs['scenes_a_row_group']} "
          "scene(s) a row group")  # fmt: skip
    summary = {
        **measured,
        "rows_an_epoch": counts,
        "views_files": costs,
        "crop": args.crop, "batch_size": args.batch_size, "workers": args.workers, "repeat": args.repeat,
        "alternations": args.alternations, "keep": args.keep, "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2), "out": str(out),
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
