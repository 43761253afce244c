"""Time of ``pretrain probe``: the depth task alone (the baseline), both tasks in one call, correspondence alone.

Runs the real command line (``python -m pretrain.cli probe``) on a checkpoint and its views, the tasks alternated
within each repeat so that the machine's load falls on all of them alike, and reports the median wall time of each.

    python benchmarks/probe.py --checkpoint runs/demo/checkpoint-last.pt --views data/pairgen/views
    python benchmarks/probe.py --checkpoint ... --views ... --repeats 5 --threads 0

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

TASKS = ("depth", "depth,correspondence", "correspondence")


def run_once(checkpoint: Path, views: Path, task: str, out: Path, threads: int) -> float:
    """Wall seconds of one ``pretrain probe --task task``, the interpreter's start included."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "pretrain.cli", "probe", "--checkpoint", str(checkpoint), "--views", str(views),
           "--task", task, "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"probe --task {task} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a `pretrain run` checkpoint")
    parser.add_argument("--views", type=Path, required=True, help="its views folder (OUT/views)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each task, alternated (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (0: the default)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {t: [] for t in TASKS}
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        for r in range(args.repeats):
            for task in TASKS:
                seconds = run_once(args.checkpoint, args.views, task, Path(tmp) / task.replace(",", "+"),
                                         args.threads)  # fmt: skip
                times[task].append(seconds)
                print(f"repeat {r + 1}/{args.repeats}: --task {task}: {seconds:.1f} s", file=sys.stderr, flush=True)
    median = {t: statistics.median(v) for t, v in times.items()}
    for task in TASKS:
        print(f"--task {task}: median {median[task]:.1f} s (min {min(times[task]):.1f}, max {max(times[task]):.1f})")
    base = median["depth"]
    print(f"both tasks in one call: {median['depth,correspondence'] / base:.2f}x the depth task alone "
          f"(+{median['depth,correspondence'] - base:.1f} s)")
    print(json.dumps({"checkpoint": str(args.checkpoint), "views": str(args.views), "repeats": args.repeats,
                      "threads": args.threads, "seconds": times, "median_s": median,
                      "both_over_depth": median["depth,correspondence"] / base}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
