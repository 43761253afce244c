"""Which covisibility band pre-trains the best encoder? Bands x seeds, each run probed for depth.

CroCo's paper found pairs of about 50 % covisibility pre-train the best
encoders. This script tests that on pairgen's own data, with the real command
lines as subprocesses:

1. ``pairgen render``: the training apartments into ``WORK/train``, the
   held-out apartments (other seeds, so other scene ids) into
   ``WORK/heldout``, with one set of options for both;
2. for each band, ``pairgen filter`` on the training views into
   ``WORK/band-LO-HI`` (:func:`band_out` prepares that folder): the same
   pairs a scene in every band (when a band falls short, every band is
   filtered again at the smallest count any scene reached);
3. for each band and seed, ``pretrain run`` with the same training budget
   (model, steps, batch, learning rate), then ``pretrain probe`` of its last
   checkpoint on both renders' views with the held-out apartments held out
   (the probe's random-init baseline comes with each call);
4. a table of mean ± sample std over the seeds per band, the random-init
   row, the verdicts, and one JSON object last.

The defaults are the size run for the README (about 20 min on the 2-core
reference machine)::

    python benchmarks/band_ablation.py --work /tmp/bands

At full size on GPUs: prepare the data once, then one invocation a band,
each on its own GPU (each ``pretrain run`` and ``pretrain probe`` uses the
visible GPU), then the table (the runs and probes are found done)::

    SIZE="--work /scratch/bands --preset large --train-scenes 64 --heldout-scenes 8 --views-per-scene 1000
          --resolution 256 --pairs-per-scene 500 --model croco-base --img-size 224 --batch-size 256
          --steps 20000 --base-lr 1.5e-4 --workers 8 --probe-views 256 --threads 0"
    python benchmarks/band_ablation.py $SIZE --ray --prepare-only
    for i in 0 1 2; do
        band=$(echo 0.1-0.3,0.5-0.8,0.8-1.0 | cut -d, -f$((i + 1)))
        CUDA_VISIBLE_DEVICES=$i python benchmarks/band_ablation.py $SIZE --skip-data --bands $band &
    done; wait
    python benchmarks/band_ablation.py $SIZE --skip-data

Running the same command again reuses what is done: render and filter find
their outputs complete, ``pretrain run`` finds its runs trained, and a probe
whose JSON is there with the same probe options is read, not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manifests.layout import manifest_path  # noqa: E402
from manifests.manifest import PairsManifest  # noqa: E402

METRICS = ("abs_rel", "rmse", "rmse_log", "delta1")
HIGHER_BETTER = {"abs_rel": False, "rmse": False, "rmse_log": False, "delta1": True}


def band_out(work: Path, band: tuple[float, float], train_out: Path) -> Path:
    """The working folder ``pairgen filter`` runs on for ``band``: the training render's views, its own pairs.

    The one place that knows the on-disk layout (``OUT/views`` and its manifest ``OUT/views.manifest.json``
    read, ``OUT/pairs`` written): the views folder and its manifest are symlinks to the training render's.
    """
    out = work / f"band-{band[0]:g}-{band[1]:g}"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("views", manifest_path(Path("views")).name):
        link = out / name
        if not link.is_symlink():
            link.symlink_to((train_out / name).resolve(), target_is_directory=name == "views")
    return out


THREADS = {"n": 1}  # --threads: OpenMP/BLAS threads of each command


def run(cmd: list[str], log: Path) -> float:
    """Run a command line of this repository; its output to ``log``. Seconds taken; a failure ends the script."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if THREADS["n"]:
        env.update(OMP_NUM_THREADS=str(THREADS["n"]), MKL_NUM_THREADS=str(THREADS["n"]))
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        sys.exit(f"band_ablation: `{' '.join(cmd)}` failed (exit {done.returncode}); the end of {log}:\n{tail}")
    return time.perf_counter() - start


def per_scene_pairs(out: Path) -> dict[str, int]:
    """Pairs kept per scene, from the pairs manifest ``pairgen filter`` wrote."""
    if not PairsManifest.exists(out / "pairs"):
        sys.exit(f"band_ablation: no pairs under {out}: run with --prepare-only (or without --skip-data) first")
    manifest = PairsManifest.read(out / "pairs")
    return {key: int(entry.get("pairs") or 0) for key, entry in manifest.scenes.items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def parse_band(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split("-"))
    if not 0 <= lo < hi <= 1:
        raise argparse.ArgumentTypeError(f"a band is LO-HI with 0 <= LO < HI <= 1, got {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/band-ablation"), help="working folder")
    ap.add_argument("--bands", default="0.1-0.3,0.5-0.8,0.8-1.0", help="covisibility bands, LO-HI,LO-HI,...")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the runs (and of their probes)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenMP threads of each command (0: the library default). One: on a machine shared with "
                    "other jobs, torch's spinning OpenMP threads slow down many times when the cores are "
                    "oversubscribed (a tiny step: 0.29 s on one thread against 2.6 s on two, measured under load)")
    ap.add_argument("--prepare-only", action="store_true", help="render and filter, then stop")
    ap.add_argument("--skip-data", action="store_true", help="use the renders and pair sets already in --work "
                    "(for parallel invocations, one a GPU, after a --prepare-only run)")
    g = ap.add_argument_group("render (pairgen render)")
    g.add_argument("--preset", default="medium", help="synthetic apartment preset")
    g.add_argument("--train-scenes", type=int, default=8, help="apartments pre-trained on (seeds 0..N-1)")
    g.add_argument("--heldout-scenes", type=int, default=2, help="apartments held out (the next seeds)")
    g.add_argument("--views-per-scene", type=int, default=300, help="views rendered per apartment")
    g.add_argument("--resolution", type=int, default=128, help="view side, pixels")
    g.add_argument("--step", default="0,0.4", help="metres between a view and its parent (near views for the "
                   "high band)")
    g.add_argument("--turn", type=float, default=10.0, help="largest yaw change from the parent, degrees")
    g.add_argument("--ray", action="store_true", help="render and filter on Ray (default: in process, --no-ray)")
    g = ap.add_argument_group("pairs (pairgen filter)")
    g.add_argument("--pairs-per-scene", type=int, default=80, help="pairs a scene in every band")
    g = ap.add_argument_group("pre-training (pretrain run), the same in every band")
    g.add_argument("--model", default="tiny", help="model preset")
    g.add_argument("--img-size", type=int, default=112, help="crop size")
    g.add_argument("--batch-size", type=int, default=16, help="pairs a step")
    g.add_argument("--steps", type=int, default=600, help="optimizer steps")
    g.add_argument("--base-lr", type=float, default=0.016, help="learning rate per 256 pairs (0.016 at batch 16: "
                   "a peak of 1e-3)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: in process, best on 2 cores)")
    g = ap.add_argument_group("probe (pretrain probe)")
    g.add_argument("--probe-views", type=int, default=64, help="views a scene the probe uses")
    g.add_argument("--head-steps", type=int, default=300, help="steps of the probe's depth head")
    args = ap.parse_args(argv)
    THREADS["n"] = args.threads
    bands = [parse_band(b) for b in args.bands.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ray = [] if args.ray else ["--no-ray"]
    timing: dict[str, float] = {}
    start = time.perf_counter()

    # 1. renders: training and held-out apartments, one set of options
    view_opts = ["--scenes", "synthetic", "--synthetic-preset", args.preset, "--views-per-scene",
                 str(args.views_per_scene), "--resolution", str(args.resolution), "--step", args.step,
                 "--turn", str(args.turn), *ray]  # fmt: skip
    train_out, held_out = work / "train", work / "heldout"
    heldout = [f"apartment_{args.train_scenes + i:04d}" for i in range(args.heldout_scenes)]
    if args.skip_data:  # the renders and band folders of an earlier --prepare-only run
        counts = {band: per_scene_pairs(band_out(work, band, train_out)) for band in bands}
        per_scene = min(min(c.values()) for c in counts.values())
        timing["render"] = timing["filter"] = 0.0
    else:
        timing["render"] = run(["pairgen", "render", *view_opts, "--synthetic-count", str(args.train_scenes),
                                "--seed", "0", "--out", str(train_out)], logs / "render-train.log")  # fmt: skip
        timing["render"] += run(["pairgen", "render", *view_opts, "--synthetic-count", str(args.heldout_scenes),
                                 "--seed", str(args.train_scenes), "--out", str(held_out)], logs / "render-heldout.log")
        print(f"rendered {args.train_scenes} training and {args.heldout_scenes} held-out apartments "
              f"({timing['render']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

        # 2. one pair set a band, the same pairs a scene in each
        def filter_all(per_scene: int) -> dict[tuple[float, float], dict[str, int]]:
            """Every band at ``per_scene`` pairs a scene (--overwrite: the band folders are this script's own, and a
            rerun first asks for --pairs-per-scene again)."""
            counts = {}
            for band in bands:
                out = band_out(work, band, train_out)
                cmd = ["pairgen", "filter", "--out", str(out), "--min-covis", str(band[0]), "--max-covis",
                       str(band[1]), "--pairs-per-scene", str(per_scene), "--overwrite", *ray]  # fmt: skip
                timing["filter"] = timing.get("filter", 0.0) + run(cmd, logs / f"filter-{band[0]:g}-{band[1]:g}.log")
                counts[band] = per_scene_pairs(out)
            return counts

        per_scene = args.pairs_per_scene
        counts = filter_all(per_scene)
        fewest = min(min(c.values()) for c in counts.values())
        if fewest < per_scene:
            print(f"a band has only {fewest} pairs in some scene: filtering every band again at {fewest} a scene",
                  file=sys.stderr, flush=True)  # fmt: skip
            if fewest == 0:
                sys.exit("band_ablation: a band has no pair in some scene; render more views or change --bands")
            per_scene = fewest
            counts = filter_all(per_scene)
    totals = {band: sum(c.values()) for band, c in counts.items()}
    if len(set(totals.values())) != 1:
        sys.exit(f"band_ablation: unequal pair counts across bands: {totals}")
    pairs = next(iter(totals.values()))
    print(f"{pairs} pairs a band ({per_scene} a scene; {timing['filter']:.0f} s)", file=sys.stderr, flush=True)
    if args.prepare_only:
        return 0

    # 3. pre-train and probe every (band, seed)
    results: dict[str, list[dict]] = {}
    timing["train"] = timing["probe"] = 0.0
    for band in bands:
        label = f"[{band[0]:g}, {band[1]:g}]"
        for seed in seeds:
            name = f"band-{band[0]:g}-{band[1]:g}-seed{seed}"
            timing["train"] += run(["pretrain.cli", "run", "--shards", str(band_out(work, band, train_out) / "pairs"),
                                    "--model", args.model, "--img-size", str(args.img_size), "--batch-size",
                                    str(args.batch_size), "--steps", str(args.steps), "--base-lr", str(args.base_lr),
                                    "--seed", str(seed), "--workers", str(args.workers), "--image-every", "0",
                                    "--ckpt-every", "0", "--runs", str(work / "runs"), "--name", name],
                                   logs / f"{name}.log")  # fmt: skip
            probe_dir = work / "probes" / name
            done = probe_dir / f"probe-{args.steps:07d}-seed{seed}.json"
            record = json.loads(done.read_text()) if done.is_file() else None
            if record is None or (record["config"]["views_per_scene"], record["config"]["head_steps"],
                                  record["heldout_scenes"]) != (args.probe_views, args.head_steps,
                                                                [f"synthetic/{h}" for h in heldout]):  # fmt: skip
                timing["probe"] += run(["pretrain.cli", "probe", "--checkpoint",
                                        str(work / "runs" / name / "checkpoint-last.pt"), "--views",
                                        str(train_out / "views"), str(held_out / "views"), "--holdout",
                                        ",".join(heldout), "--seed", str(seed), "--views-per-scene",
                                        str(args.probe_views), "--head-steps", str(args.head_steps), "--out",
                                        str(probe_dir)], logs / f"probe-{name}.log")  # fmt: skip
                record = json.loads(done.read_text())
            results.setdefault(label, []).append(record)
            d = record["pretrained"]["depth"]
            print(f"{label} seed {seed}: AbsRel {d['abs_rel']:.3f}, δ<1.25 {d['delta1']:.3f} "
                  f"(random-init {record['random_init']['depth']['abs_rel']:.3f}, "
                  f"{record['random_init']['depth']['delta1']:.3f}); {time.perf_counter() - start:.0f} s so far",
                  file=sys.stderr, flush=True)  # fmt: skip

    # 4. the table
    def summarise(records: list[dict], which: str) -> dict:
        row = {m: mean_std([r[which]["depth"][m] for r in records]) for m in METRICS}
        if all("cvc_loss" in r[which] for r in records):
            for k in ("true", "shuffled"):
                row[f"cvc_{k}"] = mean_std([r[which]["cvc_loss"][k] for r in records])
        return row

    rows = {label: summarise(records, "pretrained") for label, records in results.items()}
    first = next(iter(results.values()))  # the random-init baseline depends on the seed only: one per seed
    rows["random init"] = summarise(first, "random_init")
    cols = [*METRICS, "cvc_true", "cvc_shuffled"]
    heads = {"abs_rel": "AbsRel ↓", "rmse": "RMSE (m) ↓", "rmse_log": "RMSE log ↓", "delta1": "δ<1.25 ↑",
             "cvc_true": "CVC loss, true view 2 ↓", "cvc_shuffled": "CVC loss, other-scene view 2"}  # fmt: skip
    print(f"\n{len(seeds)} seeds a band, mean ± std; {pairs} pairs a band, {args.steps} steps of {args.batch_size}, "
          f"{args.model} at {args.img_size} px; probe on {args.heldout_scenes} held-out apartments")  # fmt: skip
    print("| band | " + " | ".join(heads[c] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for label, row in rows.items():
        cells = [f"{row[c][0]:.3f} ± {row[c][1]:.3f}" if c in row else "–" for c in cols]
        print(f"| {label} | " + " | ".join(cells) + " |")

    # paired by seed: a seed fixes the probe's views, head and random-init weights, so differences between
    # rows of one seed cancel the probe's own variation
    def paired(label: str, other: str | None) -> dict:
        def value(r: dict, m: str, which: str) -> float:
            return r[which]["depth"][m]

        out = {}
        for r_idx, r in enumerate(results[label]):
            base = results[other][r_idx] if other else r
            which = "pretrained" if other else "random_init"
            out.setdefault("delta1_points", []).append(100 * (value(r, "delta1", "pretrained") - value(base, "delta1", which)))
            out.setdefault("abs_rel_percent", []).append(100 * (value(r, "abs_rel", "pretrained") / value(base, "abs_rel", which) - 1))
        return {k: mean_std(v) for k, v in out.items()}

    print("\npaired by seed, mean ± std of the per-seed differences")
    print("| band | against | δ<1.25 (points) | AbsRel (%) |")
    print("|---|---|---|---|")
    pairs_table = {}
    for label in results:
        for other in [None, *[o for o in results if o != label]]:
            d = paired(label, other)
            pairs_table[f"{label} - {other or 'random init'}"] = d
            if other is None or label == list(results)[len(results) // 2]:
                print(f"| {label} | {other or 'random init'} | {d['delta1_points'][0]:+.1f} ± {d['delta1_points'][1]:.1f} | "
                      f"{d['abs_rel_percent'][0]:+.1f} ± {d['abs_rel_percent'][1]:.1f} |")  # fmt: skip

    def beats(a: dict, b: dict, metric: str) -> bool:  # a better than b beyond both spreads
        (ma, sa), (mb, sb) = a[metric], b[metric]
        return ma - sa > mb + sb if HIGHER_BETTER[metric] else ma + sa < mb - sb

    labels = list(results)
    verdict = {}
    if len(labels) == 3:
        mid, ends = labels[1], (labels[0], labels[2])
        verdict["middle_beats_both_beyond_spread"] = {m: all(beats(rows[mid], rows[e], m) for e in ends) for m in METRICS}
    verdict["pretrained_vs_random"] = {
        label: {"delta1_points": 100 * (rows[label]["delta1"][0] - rows["random init"]["delta1"][0]),
                "abs_rel_change": rows[label]["abs_rel"][0] / rows["random init"]["abs_rel"][0] - 1}
        for label in labels
    }  # fmt: skip
    for label, v in verdict["pretrained_vs_random"].items():
        met = v["delta1_points"] >= 5 or v["abs_rel_change"] <= -0.10
        print(f"{label} vs random init: δ<1.25 {v['delta1_points']:+.1f} points, AbsRel {100 * v['abs_rel_change']:+.1f} % "
              f"(target: +5 points or -10 %: {'met' if met else 'not met'})")  # fmt: skip
    if "middle_beats_both_beyond_spread" in verdict:
        print("middle band beats both extremes beyond the seeds' spread: "
              + ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in verdict["middle_beats_both_beyond_spread"].items()))
    timing["total"] = time.perf_counter() - start
    print(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pairs_per_band": pairs, "pairs_per_scene": per_scene, "heldout": heldout,
        "rows": {label: {k: {"mean": m, "std": s} for k, (m, s) in row.items()} for label, row in rows.items()},
        "runs": {label: [{"seed": r["config"]["seed"], "pretrained": r["pretrained"], "random_init": r["random_init"]}
                         for r in records] for label, records in results.items()},
        "paired": {k: {m: {"mean": a, "std": b} for m, (a, b) in v.items()} for k, v in pairs_table.items()},
        "verdict": verdict, "seconds": {k: round(v, 1) for k, v in timing.items()},
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
