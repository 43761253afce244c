"""Which covisibility band pre-trains the best encoder? Bands x seeds and a control, each run probed for depth and
correspondence.

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
   (model, steps, batch, learning rate), then ``pretrain probe --task
   depth,correspondence`` of its last checkpoint on both renders' views with
   the held-out apartments held out (the probe's random-init, raw-pixel,
   same-place and chance baselines come with each call). The **control**
   (``LO-HI:other-scene`` in ``--bands``, by default the middle band's) trains
   on that band's pairs with ``pretrain run --view2 other-scene``: each view 2
   is another scene's, so there is no geometry between the views to learn
   from; the same images, steps and seeds;
4. tables of mean ± sample std over the seeds per band (depth, then
   correspondence recall within 1, 2 and 4 patches by the probe's
   covisibility band), the control and the baselines, differences paired by
   seed, the verdicts, and one JSON object last.

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
    for i in 0 1 2 3; do
        band=$(echo 0.1-0.3,0.5-0.8,0.8-1.0,0.5-0.8:other-scene | cut -d, -f$((i + 1)))
        CUDA_VISIBLE_DEVICES=$i python benchmarks/band_ablation.py $SIZE --skip-data --bands $band &
    done; wait
    python benchmarks/band_ablation.py $SIZE --skip-data

A smoke run of every step at the smallest size (about 2 minutes on 2 cores; its numbers mean nothing)::

    python benchmarks/band_ablation.py --work /tmp/band-smoke --preset small --train-scenes 2 --heldout-scenes 1 \
        --views-per-scene 24 --resolution 64 --bands 0.1-0.3,0.3-0.6,0.6-0.9,0.3-0.6:other-scene \
        --pairs-per-scene 5 --seeds 0 --img-size 64 --batch-size 4 --steps 2 --probe-views 8 --head-steps 5 \
        --probe-pairs 4

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
RADII = ("1", "2", "4")  # the correspondence probe's recall radii, patches (its JSON's keys)
CONTROL = "other-scene"  # a --bands entry LO-HI:other-scene: pretrain run --view2 other-scene on that band's pairs
BASELINES = {"random_init": "random init", "pixels": "raw pixels", "same_place": "same place"}  # probe JSON keys


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


def parse_band(text: str) -> tuple[tuple[float, float], str]:
    """``LO-HI`` -> ((lo, hi), "pair"); ``LO-HI:other-scene`` -> ((lo, hi), "other-scene"): the control."""
    spec, _, view2 = text.partition(":")
    try:
        lo, hi = (float(v) for v in spec.split("-"))
    except ValueError:
        lo = hi = -1.0
    if not 0 <= lo < hi <= 1 or view2 not in ("", CONTROL):
        raise SystemExit(f"band_ablation: a --bands entry is LO-HI or LO-HI:{CONTROL} with 0 <= LO < HI <= 1, "
                         f"got {text!r}")  # fmt: skip
    return (lo, hi), view2 or "pair"


def arm_label(band: tuple[float, float], view2: str) -> str:
    """``[0.5, 0.8]``, or ``[0.5, 0.8] other-scene view 2 (control)``."""
    return f"[{band[0]:g}, {band[1]:g}]" + (" other-scene view 2 (control)" if view2 == CONTROL else "")


def arm_name(band: tuple[float, float], view2: str, seed: int) -> str:
    """The run's name: ``band-0.5-0.8-seed0``, the control's ``control-0.5-0.8-seed0``."""
    return f"{'control' if view2 == CONTROL else 'band'}-{band[0]:g}-{band[1]:g}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/band-ablation"), help="working folder")
    ap.add_argument("--bands", default=f"0.1-0.3,0.5-0.8,0.8-1.0,0.5-0.8:{CONTROL}",
                    help=f"covisibility bands, LO-HI,LO-HI,...; LO-HI:{CONTROL} is the control: that band's pairs "
                    "trained with view 2 from another scene (pretrain run --view2 other-scene)")
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
    g.add_argument("--probe-pairs", type=int, default=32, help="held-out pairs a covisibility band of the "
                   "correspondence probe (pretrain probe --corr-pairs)")
    args = ap.parse_args(argv)
    THREADS["n"] = args.threads
    arms = [parse_band(b) for b in args.bands.split(",")]
    bands = list(dict.fromkeys(band for band, _ in arms))  # the pair sets to filter, each once
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

    # 3. pre-train and probe every (band, seed), the control with view 2 from another scene
    results: dict[str, list[dict]] = {}
    timing["train"] = timing["probe"] = 0.0
    probe_opts = {"views_per_scene": args.probe_views, "head_steps": args.head_steps, "task": "depth,correspondence",
                  "corr_pairs": args.probe_pairs}  # fmt: skip
    for band, view2 in arms:
        label = arm_label(band, view2)
        for seed in seeds:
            name = arm_name(band, view2, seed)
            timing["train"] += run(["pretrain.cli", "run", "--shards", str(band_out(work, band, train_out) / "pairs"),
                                    "--model", args.model, "--img-size", str(args.img_size), "--batch-size",
                                    str(args.batch_size), "--steps", str(args.steps), "--base-lr", str(args.base_lr),
                                    "--seed", str(seed), "--workers", str(args.workers), "--image-every", "0",
                                    "--ckpt-every", "0", "--view2", view2, "--runs", str(work / "runs"), "--name",
                                    name], logs / f"{name}.log")  # fmt: skip
            probe_dir = work / "probes" / name
            done = probe_dir / f"probe-{args.steps:07d}-seed{seed}.json"
            record = json.loads(done.read_text()) if done.is_file() else None
            if record is None or any(record["config"].get(k) != v for k, v in probe_opts.items()) or \
                    record["heldout_scenes"] != [f"synthetic/{h}" for h in heldout]:  # fmt: skip
                timing["probe"] += run(["pretrain.cli", "probe", "--checkpoint",
                                        str(work / "runs" / name / "checkpoint-last.pt"), "--views",
                                        str(train_out / "views"), str(held_out / "views"), "--holdout",
                                        ",".join(heldout), "--seed", str(seed), "--views-per-scene",
                                        str(args.probe_views), "--head-steps", str(args.head_steps), "--task",
                                        probe_opts["task"], "--corr-pairs", str(args.probe_pairs), "--out",
                                        str(probe_dir)], logs / f"probe-{name}.log")  # fmt: skip
                record = json.loads(done.read_text())
            results.setdefault(label, []).append(record)
            d, c = record["pretrained"]["depth"], record["pretrained"]["correspondence"]["all"]
            print(f"{label} seed {seed}: AbsRel {d['abs_rel']:.3f}, δ<1.25 {d['delta1']:.3f} "
                  f"(random-init {record['random_init']['depth']['abs_rel']:.3f}, "
                  f"{record['random_init']['depth']['delta1']:.3f}); correspondence recall within 1/2/4 patches "
                  f"{'/'.join(f'{c[r]:.3f}' for r in RADII)}; {time.perf_counter() - start:.0f} s so far",
                  file=sys.stderr, flush=True)  # fmt: skip

    # 4. the tables
    first = next(iter(results.values()))  # the baselines depend on the seed only (views, pairs, head, weights)
    pair_labels = [arm_label(band, view2) for band, view2 in arms if view2 == "pair"]
    middle = pair_labels[len(pair_labels) // 2] if len(pair_labels) == 3 else None
    controls = {arm_label(band, view2): arm_label(band, "pair") for band, view2 in arms if view2 == CONTROL}

    def summarise(records: list[dict], which: str) -> dict:
        row = {m: mean_std([r[which]["depth"][m] for r in records]) for m in METRICS}
        if all("cvc_loss" in r[which] for r in records):
            for k in ("true", "shuffled"):
                row[f"cvc_{k}"] = mean_std([r[which]["cvc_loss"][k] for r in records])
        return row

    rows = {label: summarise(records, "pretrained") for label, records in results.items()}
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

    # correspondence recall: per training arm and baseline, per covisibility band of the probe's held-out pairs
    probe_bands = list(first[0]["correspondence"]["bands"])  # "[0.1, 0.3)", ..., "all"

    def recall_row(records: list[dict], get) -> dict:
        """{probe band: {radius: (mean, std)} or None (a seed without pairs in that band)}."""
        out = {}
        for b in probe_bands:
            per_seed = [get(r)[b] for r in records]
            missing = any(v is None for v in per_seed)
            out[b] = None if missing else {k: mean_std([v[k] for v in per_seed]) for k in RADII}
        return out

    corr_rows = {label: recall_row(records, lambda r: r["pretrained"]["correspondence"])
                 for label, records in results.items()}  # fmt: skip
    for key, name in BASELINES.items():
        corr_rows[name] = recall_row(first, lambda r, key=key: r[key]["correspondence"])
    corr_rows["chance"] = recall_row(first, lambda r: r["correspondence"]["chance"])
    counts = first[0]["correspondence"]["bands"]
    print(f"\ncorrespondence: recall within 1 / 2 / 4 patches of the true position, by covisibility band of the "
          f"held-out pairs (pairs at seed {first[0]['config']['seed']}: "
          + ", ".join(f"{b} {counts[b]['pairs']}" for b in probe_bands) + f"; {first[0]['correspondence']['grid']}"
          f" patches a side); mean ± std over seeds")  # fmt: skip
    for radius in RADII:
        print(f"\nwithin {radius} patch{'es' if radius != '1' else ''}")
        print("| encoder | " + " | ".join(probe_bands) + " |")
        print("|---" * (len(probe_bands) + 1) + "|")
        for label, row in corr_rows.items():
            cells = ["–" if row[b] is None else f"{row[b][radius][0]:.3f} ± {row[b][radius][1]:.3f}"
                     for b in probe_bands]  # fmt: skip
            print(f"| {label} | " + " | ".join(cells) + " |")

    # paired by seed: a seed fixes the probe's views, pairs, head and random-init weights, so differences between
    # rows of one seed cancel the probe's own variation
    def paired(label: str, other: str | None) -> dict:
        out: dict[str, list[float]] = {}
        for r_idx, r in enumerate(results[label]):
            base, which = (results[other][r_idx], "pretrained") if other else (r, "random_init")
            a, b = r["pretrained"], base[which]
            out.setdefault("delta1_points", []).append(100 * (a["depth"]["delta1"] - b["depth"]["delta1"]))
            out.setdefault("abs_rel_percent", []).append(100 * (a["depth"]["abs_rel"] / b["depth"]["abs_rel"] - 1))
            for k in RADII:
                out.setdefault(f"recall{k}_points", []).append(
                    100 * (a["correspondence"]["all"][k] - b["correspondence"]["all"][k]))
        return {k: mean_std(v) for k, v in out.items()}

    comparisons = [(label, None) for label in results]
    comparisons += [(middle, other) for other in pair_labels if middle and other != middle]
    comparisons += [(band, control) for control, band in controls.items() if band in results]
    print("\npaired by seed, mean ± std of the per-seed differences (recall: all held-out pairs)")
    print("| band | against | δ<1.25 (points) | AbsRel (%) | " + " | ".join(f"recall@{k} (points)" for k in RADII) + " |")
    print("|---|---|---|---|---|---|---|")
    pairs_table = {}
    for label, other in comparisons:
        d = pairs_table[f"{label} - {other or 'random init'}"] = paired(label, other)
        keys = ["delta1_points", "abs_rel_percent", *[f"recall{k}_points" for k in RADII]]
        print(f"| {label} | {other or 'random init'} | " + " | ".join(f"{d[k][0]:+.1f} ± {d[k][1]:.1f}" for k in keys)
              + " |")

    def beats(a: tuple[float, float], b: tuple[float, float], higher: bool) -> bool:  # beyond both spreads
        (ma, sa), (mb, sb) = a, b
        return ma - sa > mb + sb if higher else ma + sa < mb - sb

    verdict: dict = {}
    if middle:
        ends = [label for label in pair_labels if label != middle]
        verdict["middle_beats_both_beyond_spread"] = {
            m: all(beats(rows[middle][m], rows[e][m], HIGHER_BETTER[m]) for e in ends) for m in METRICS}
        verdict["middle_beats_both_beyond_spread"].update({
            f"recall{k}": all(beats(corr_rows[middle]["all"][k], corr_rows[e]["all"][k], True) for e in ends)
            for k in RADII})  # fmt: skip
    for control, band in controls.items():
        if band in results:  # the band trained on its pairs against the same pairs with view 2 of another scene
            verdict.setdefault("band_beats_control_beyond_spread", {})[band] = {
                **{f"recall{k}": beats(corr_rows[band]["all"][k], corr_rows[control]["all"][k], True) for k in RADII},
                **{m: beats(rows[band][m], rows[control][m], HIGHER_BETTER[m]) for m in METRICS}}  # fmt: skip
    verdict["pretrained_vs_random"] = {
        label: {"delta1_points": 100 * (rows[label]["delta1"][0] - rows["random init"]["delta1"][0]),
                "abs_rel_change": rows[label]["abs_rel"][0] / rows["random init"]["abs_rel"][0] - 1,
                **{f"recall{k}_points": 100 * (corr_rows[label]["all"][k][0] - corr_rows["random init"]["all"][k][0])
                   for k in RADII}}
        for label in results
    }  # fmt: skip
    for label, v in verdict["pretrained_vs_random"].items():
        met = v["delta1_points"] >= 5 or v["abs_rel_change"] <= -0.10
        print(f"{label} vs random init: δ<1.25 {v['delta1_points']:+.1f} points, AbsRel {100 * v['abs_rel_change']:+.1f} % "
              f"(target: +5 points or -10 %: {'met' if met else 'not met'}); correspondence recall@1/2/4 "
              + "/".join(f"{v[f'recall{k}_points']:+.1f}" for k in RADII) + " points")  # fmt: skip
    if "middle_beats_both_beyond_spread" in verdict:
        print("middle band beats both extremes beyond the seeds' spread: "
              + ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in verdict["middle_beats_both_beyond_spread"].items()))
    for band, v in verdict.get("band_beats_control_beyond_spread", {}).items():
        print(f"{band} beats its control (other-scene view 2) beyond the seeds' spread: "
              + ", ".join(f"{m} {'yes' if ok else 'no'}" for m, ok in v.items()))
    timing["total"] = time.perf_counter() - start
    print(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pairs_per_band": pairs, "pairs_per_scene": per_scene, "heldout": heldout,
        "rows": {label: {k: {"mean": m, "std": s} for k, (m, s) in row.items()} for label, row in rows.items()},
        "correspondence_rows": {label: {b: None if v is None else {k: {"mean": m, "std": s} for k, (m, s) in v.items()}
                                        for b, v in row.items()} for label, row in corr_rows.items()},
        "runs": {label: [{"seed": r["config"]["seed"], "pretrained": r["pretrained"], "random_init": r["random_init"],
                          **{key: r[key] for key in ("pixels", "same_place", "correspondence") if key in r}}
                         for r in records] for label, records in results.items()},
        "paired": {k: {m: {"mean": a, "std": b} for m, (a, b) in v.items()} for k, v in pairs_table.items()},
        "verdict": verdict, "seconds": {k: round(v, 1) for k, v in timing.items()},
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
