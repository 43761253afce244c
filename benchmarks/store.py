"""What an object store costs the pipeline: render, filter and the loader on ``s3://`` against a local folder.

A folder given as a URI is mirrored locally (:mod:`manifests.store`: stubs
for what the store lists, bytes fetched whole on first read, every written
file uploaded before it appears in the mirror). On one medium synthetic
apartment this script times, in the same run (so the baseline shares the
machine's load), against an S3 API on loopback (``tests/s3.py``'s
``S3Server``: ``python -m moto.server`` on a free 127.0.0.1 port, stopped at
the end):

1. **render**: ``pairgen render --scenes synthetic --synthetic-count 1
   --synthetic-preset medium --views-per-scene N --no-ray --out OUT`` in a
   subprocess, ``OUT`` a fresh local folder or a fresh ``s3://bucket/rK``
   prefix (with the ``AWS_*`` variables and a fresh, empty ``PAIRGEN_CACHE``
   in its environment, so nothing is reused); wall time of the whole command.
2. **filter**: ``pairgen filter --no-ray --out OUT`` (default options) in a
   subprocess, timed the same way. A filter into a folder already filtered
   does nothing, so each timed run starts from a copy holding only the
   views: the scene is rendered once locally and once into the store
   (untimed), then before each run ``views/`` and ``views.manifest.json``
   are copied to a fresh folder (``shutil.copyfile``: new mtimes) or, with
   ``copy_object``, to a fresh prefix (new LastModified), again with a fresh
   ``PAIRGEN_CACHE``. Both copies thus differ from the ``stat`` the views
   manifest recorded, so both filters hash the views file once, as they
   would after any copy; the store's filter also fetches it first (it is a
   stub in its new mirror).
3. **loader**: :func:`benchmarks.loader.stream_rate` (a
   :class:`pretrain.data.PairStream` through a ``DataLoader``, crop 224,
   float32, ``--loader-workers`` workers) over the pairs of the last filter
   run: the local ``OUT/pairs``, and the mirror of the store's,
   ``manifests.store.mount("s3://bucket/fK") / "pairs"``, first in a fresh
   ``PAIRGEN_CACHE`` (**cold**: ``ShardIndex.build`` reads each shard's
   footer with ranged reads, and each shard is fetched whole when its
   first row group is read),
   then mounted again (listed again) in the same cache (**warm**: the
   fetched files are kept). ``stream_rate``'s own figure (after one warm-up
   batch: reading, decoding, augmenting) is reported, and the end-to-end
   rate: every pair yielded, warm-up batch included, over the whole call
   plus the mount, which is where a cold start pays for its fetch.

Render and filter alternate local and store runs, ``--repeats`` times each
(min and median per side, and store / local of the medians; ``os.sync()``
before each, so that one run's writeback does not fall into the next; and
the moto server's own CPU seconds during each store run, which it takes
from the same 2 cores); the loader takes the best and the median of
``--repeats`` passes per side.

moto's server is pure Python and keeps the objects in its own process: it
writes roughly 8-10x slower than a local disk (and reads slower than S3 or
MinIO on loopback would), so the store overhead measured against it is an
upper bound, not what S3 or MinIO would show. The issue's target for the
overhead is 1.3x (store / local).

    python benchmarks/store.py                 # 500 views at 256x256, 3 repeats (about 5 min on 2 cores)
    python benchmarks/store.py --quick         # 100 views, 1 repeat: a check that everything runs
    python benchmarks/store.py --views 250 --resolution 128 --repeats 2

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGET_RATIO = 1.3  # the bound on store / local


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux' /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _noted(out: str) -> list[str]:
    """The lines of a command's output that warn or complain (reported, not fatal)."""
    words = ("warning", "error", "traceback", "refus", "failed=1")
    return [line.strip() for line in out.splitlines() if any(w in line.lower() for w in words)]


def _summary(local: list[float], store: list[float]) -> dict:
    row = {"local_s": [round(t, 3) for t in local], "store_s": [round(t, 3) for t in store],
           "local_min_s": round(min(local), 3), "local_median_s": round(statistics.median(local), 3),
           "store_min_s": round(min(store), 3), "store_median_s": round(statistics.median(store), 3)}  # fmt: skip
    row["ratio"] = round(row["store_median_s"] / row["local_median_s"], 3)
    row["ratio_min"] = round(row["store_min_s"] / row["local_min_s"], 3)
    return row


def _print_summary(name: str, row: dict) -> None:
    print(f"{name}: local min {row['local_min_s']:.2f} s, median {row['local_median_s']:.2f} s; "
          f"store min {row['store_min_s']:.2f} s, median {row['store_median_s']:.2f} s; "
          f"store / local {row['ratio']:.3f} (medians), {row['ratio_min']:.3f} (mins); "
          f"target <= {TARGET_RATIO}; moto's CPU during the store runs {row['server_cpu_s']} s",
          flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, default=None, help="views of the apartment (default 500; --quick: 100)")
    ap.add_argument("--resolution", default=None, help="WxH or SIZE (default: pairgen render's, 256x256)")
    ap.add_argument("--preset", default="medium", help="synthetic preset")
    ap.add_argument("--repeats", type=int, default=None, help="runs per side of each step (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="100 views, 1 repeat: a quick check that it all runs")
    ap.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers of the loader step")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="batches timed by stream_rate (fewer if the set ends)")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--workdir", type=Path, default=None, help="where local outputs and caches go (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (removed by default)")
    args = ap.parse_args()
    views = args.views or (100 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 3)

    import cv2
    import torch

    from loader import stream_rate  # benchmarks/loader.py
    from pipeline import timed_run  # benchmarks/pipeline.py
    from manifests import store
    from tests.s3 import S3Server, s3_env

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    made_work = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="pairgen-store-bench-")) if made_work else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != store.CACHE_ENV}
    render_cmd = [sys.executable, "-m", "pairgen", "render", "--scenes", "synthetic", "--synthetic-count", "1",
                  "--synthetic-preset", args.preset, "--views-per-scene", str(views), "--no-ray",
                  *(["--resolution", args.resolution] if args.resolution else [])]  # fmt: skip
    filter_cmd = [sys.executable, "-m", "pairgen", "filter", "--no-ray"]
    notes: list[str] = []
    server = None
    counter = iter(range(10**6))

    def fresh(name: str) -> Path:
        return work / f"{name}{next(counter)}"

    try:
        server = S3Server()
        bucket = server.bucket()
        client = server.client()

        def store_env() -> tuple[dict, Path]:
            cache = fresh("cache")
            return {**base_env, **server.env, store.CACHE_ENV: str(cache)}, cache

        server_cpu: dict[str, list[float]] = {"render": [], "filter": []}

        def run(cmd: list[str], out: str, env: dict, what: str) -> float:
            os.sync()  # the previous run's dirty pages written back before this one starts, not during it
            cpu = _cpu_seconds(server.process.pid)
            seconds, _, text = timed_run([*cmd, "--out", out], env)
            notes.extend(f"{what} {out}: {line}" for line in _noted(text))
            after = _cpu_seconds(server.process.pid)
            if out.startswith("s3://") and what in server_cpu and cpu is not None and after is not None:
                server_cpu[what].append(round(after - cpu, 2))  # moto's share of the 2 cores during the run
            return seconds

        def store_has(prefix: str, folder: str) -> None:
            keys = server.keys(bucket, f"{prefix}/{folder}/")
            manifest = server.keys(bucket, f"{prefix}/{folder}.manifest.json")
            if not any(k.endswith(".parquet") for k in keys) or not manifest:
                raise RuntimeError(f"s3://{bucket}/{prefix}: no {folder} shards or manifest in the store ({keys})")

        def local_has(out: Path, folder: str) -> None:
            if not list((out / folder).rglob("*.parquet")) or not (out / f"{folder}.manifest.json").is_file():
                raise RuntimeError(f"{out}: no {folder} files or manifest")

        print(f"one {args.preset} synthetic apartment, {views} views, resolution "
              f"{args.resolution or 'default (256x256)'}, {repeats} repeat(s); moto S3 on {server.endpoint}, "
              f"bucket {bucket}; work folder {work}; {os.cpu_count()} CPUs", flush=True)  # fmt: skip

        # ---- 1. render
        times: dict[str, list[float]] = {"local": [], "store": []}
        for k in range(repeats):
            out = fresh("render")
            t = run(render_cmd, str(out), base_env, "render")
            local_has(out, "views")
            times["local"].append(t)
            shutil.rmtree(out)
            prefix = f"r{next(counter)}"
            env, cache = store_env()
            t = run(render_cmd, f"s3://{bucket}/{prefix}", env, "render")
            store_has(prefix, "views")
            times["store"].append(t)
            shutil.rmtree(cache)
            print(f"  render {k + 1}/{repeats}: local {times['local'][-1]:.2f} s, store {t:.2f} s", flush=True)
        render = _summary(times["local"], times["store"])
        render["server_cpu_s"] = server_cpu["render"]
        _print_summary("render", render)

        # ---- 2. filter: render once each side (untimed), then filter fresh copies of the views
        source_local = fresh("views-src")
        run(render_cmd, str(source_local), base_env, "render (filter's source)")
        source_prefix = f"src{next(counter)}"
        env, cache = store_env()
        run(render_cmd, f"s3://{bucket}/{source_prefix}", env, "render (filter's source)")
        shutil.rmtree(cache)
        source_keys = [*server.keys(bucket, f"{source_prefix}/views/"), f"{source_prefix}/views.manifest.json"]
        times = {"local": [], "store": []}
        last_local, last_prefix = None, None
        for k in range(repeats):
            out = fresh("filter")
            out.mkdir()
            shutil.copytree(source_local / "views", out / "views", copy_function=shutil.copyfile)
            shutil.copyfile(source_local / "views.manifest.json", out / "views.manifest.json")
            t = run(filter_cmd, str(out), base_env, "filter")
            local_has(out, "pairs")
            times["local"].append(t)
            if last_local is not None:
                shutil.rmtree(last_local)
            last_local = out
            prefix = f"f{next(counter)}"
            for key in source_keys:
                client.copy_object(Bucket=bucket, Key=prefix + key[len(source_prefix):],
                                   CopySource={"Bucket": bucket, "Key": key})  # fmt: skip
            env, cache = store_env()
            t = run(filter_cmd, f"s3://{bucket}/{prefix}", env, "filter")
            store_has(prefix, "pairs")
            times["store"].append(t)
            shutil.rmtree(cache)
            last_prefix = prefix
            print(f"  filter {k + 1}/{repeats}: local {times['local'][-1]:.2f} s, store {t:.2f} s", flush=True)
        filter_ = _summary(times["local"], times["store"])
        filter_["server_cpu_s"] = server_cpu["filter"]
        _print_summary("filter", filter_)

        # ---- 3. the loader over the last filter's pairs
        pairs_local = last_local / "pairs"
        shards = sorted(pairs_local.glob("*.parquet"))
        pairs_bytes = sum(f.stat().st_size for f in shards)
        crop = args.crop
        if args.resolution:
            side = min(int(v) for v in args.resolution.lower().split("x"))
            crop = min(crop, side)
        uri = f"s3://{bucket}/{last_prefix}"

        def timed_stream(folder: Path) -> tuple[float, int, float]:
            t = time.perf_counter()
            rate, pairs = stream_rate(folder, args.loader_workers, args.batch_size, args.batches, crop, "float32")
            return rate, pairs, time.perf_counter() - t

        rows: dict[str, list[dict]] = {"local": [], "store_cold": [], "store_warm": []}
        for k in range(repeats):
            rate, pairs, seconds = timed_stream(pairs_local)
            rows["local"].append({"rate": rate, "pairs": pairs, "mount_s": 0.0, "seconds": seconds})
            cache = fresh("cache")
            with s3_env(server, str(cache)):
                try:
                    for side in ("store_cold", "store_warm"):
                        store.unmount_all()  # warm: mounted (listed) again, as by the next command
                        t = time.perf_counter()
                        folder = store.mount(uri) / "pairs"
                        mount_s = time.perf_counter() - t
                        rate, pairs, seconds = timed_stream(folder)
                        rows[side].append({"rate": rate, "pairs": pairs, "mount_s": mount_s, "seconds": seconds})
                finally:
                    store.unmount_all()
            shutil.rmtree(cache)
            print("  loader {}/{}: {}".format(k + 1, repeats, ", ".join(
                f"{side} {r[-1]['rate']:.0f} pairs/s" for side, r in rows.items())), flush=True)  # fmt: skip
        loader = {"pairs_folder_mib": round(pairs_bytes / 2**20, 1), "shards": len(shards),
                  "workers": args.loader_workers, "batch_size": args.batch_size, "crop": crop}  # fmt: skip
        for side, runs in rows.items():
            rates = [r["rate"] for r in runs]
            # end to end: every pair yielded (the warm-up batch too) over the mount and the whole stream_rate call
            e2e = [(r["pairs"] + args.batch_size) / (r["mount_s"] + r["seconds"]) for r in runs]
            loader[side] = {"pairs_per_s": round(max(rates), 1),
                            "pairs_per_s_median": round(statistics.median(rates), 1),
                            "end_to_end_pairs_per_s": round(max(e2e), 1),
                            "end_to_end_median": round(statistics.median(e2e), 1),
                            "mount_s": round(min(r["mount_s"] for r in runs), 3),
                            "seconds": round(min(r["seconds"] for r in runs), 3),
                            "pairs_timed": runs[0]["pairs"]}  # fmt: skip
        for side in ("store_cold", "store_warm"):  # local rate / store rate: above 1, the store is slower
            loader[side]["slowdown"] = round(loader["local"]["pairs_per_s"] / loader[side]["pairs_per_s"], 3)
            loader[side]["end_to_end_slowdown"] = round(
                loader["local"]["end_to_end_pairs_per_s"] / loader[side]["end_to_end_pairs_per_s"], 3)
        print(f"loader ({len(shards)} shard(s), {loader['pairs_folder_mib']} MiB, {args.loader_workers} workers, "
              f"batch {args.batch_size}, crop {crop}; best of {repeats}):", flush=True)  # fmt: skip
        for side in rows:
            r = loader[side]
            print(f"  {side:>10}: {r['pairs_per_s']:7.1f} pairs/s after the first batch, end to end "
                  f"{r['end_to_end_pairs_per_s']:7.1f} pairs/s (mount {r['mount_s']:.2f} s, stream "
                  f"{r['seconds']:.2f} s, {r['pairs_timed']} pairs timed)"
                  + (f"; local / store {r['slowdown']:.3f}, end to end {r['end_to_end_slowdown']:.3f}"
                     if "slowdown" in r else ""), flush=True)  # fmt: skip
        for line in notes:
            print(f"note: {line}")
    finally:
        if server is not None:
            server.stop()
        store_module = sys.modules.get("manifests.store")
        if store_module is not None:
            store_module.unmount_all()
        if made_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary = {"views": views, "resolution": args.resolution or "256x256", "preset": args.preset, "repeats": repeats,
               "cpus": os.cpu_count(), "server": "moto (loopback)", "target_ratio": TARGET_RATIO,
               "render": render, "filter": filter_, "loader": loader,
               "within_target": {"render": render["ratio"] <= TARGET_RATIO, "filter": filter_["ratio"] <= TARGET_RATIO},
               "notes": notes}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
