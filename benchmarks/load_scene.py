"""Load time and peak memory of scene loading, for the large synthetic preset.

Each measured load runs in a fresh Python process, so its peak resident memory
is its own: the process imports pairgen, records its resident set (the
baseline), then loads one scene, reporting wall time and the peak resident
set. A second fresh process loads the same scene under tracemalloc, for the
peak of numpy/Python allocations during the load (tracing slows it down, so
its time is not reported).

    python benchmarks/load_scene.py                 # large preset, 3 seeds
    python benchmarks/load_scene.py --preset medium --seeds 5

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {root!r})
from renderers.sources import load_scene
import numpy  # noqa: F401  (imports are not part of the load)

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = rss_mib()
if {trace!r}:
    tracemalloc.start()
t0 = time.perf_counter()
scene = load_scene({source!r}, {location!r}, scene_id="bench", up="y")
seconds = time.perf_counter() - t0
traced_peak = tracemalloc.get_traced_memory()[1] if {trace!r} else 0
print(json.dumps(dict(
    seconds=seconds, triangles=scene.num_triangles, vertices=len(scene.vertices),
    materials=len(scene.materials), scene_mib=scene.nbytes / 2**20,
    baseline_rss_mib=base,
    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    traced_peak_mib=traced_peak / 2**20,
)))
"""


def _child(source: str, location: str, trace: bool) -> dict:
    code = CHILD.format(root=str(ROOT), source=source, location=location, trace=trace)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(source: str, location: str) -> dict:
    """One untraced load (time, resident memory) and one traced load (allocations)."""
    result = _child(source, location, trace=False)
    result["traced_peak_mib"] = _child(source, location, trace=True)["traced_peak_mib"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large", help="synthetic preset")
    parser.add_argument("--seeds", type=int, default=3, help="scenes (seeds 0..N-1), each in its own process")
    args = parser.parse_args()
    runs = []
    for seed in range(args.seeds):
        r = measure("synthetic", f"{args.preset}/{seed}")
        runs.append(r)
        print(
            f"seed {seed}: {r['triangles']:,} triangles, {r['seconds']:.3f} s, scene {r['scene_mib']:.0f} MiB, "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (baseline {r['baseline_rss_mib']:.0f} MiB), "
            f"peak allocations during load {r['traced_peak_mib']:.0f} MiB"
        )
    summary = {
        "preset": args.preset,
        "scenes": len(runs),
        "triangles_median": int(statistics.median(r["triangles"] for r in runs)),
        "load_s_median": round(statistics.median(r["seconds"] for r in runs), 4),
        "load_s_max": round(max(r["seconds"] for r in runs), 4),
        "scene_mib_median": round(statistics.median(r["scene_mib"] for r in runs), 1),
        "peak_rss_mib_max": round(max(r["peak_rss_mib"] for r in runs), 1),
        "peak_rss_over_baseline_mib_max": round(max(r["peak_rss_mib"] - r["baseline_rss_mib"] for r in runs), 1),
        "peak_alloc_during_load_mib_max": round(max(r["traced_peak_mib"] for r in runs), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
