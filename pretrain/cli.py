"""The ``pretrain`` command line: ``run`` (train CroCo on pair shards), ``probe`` and ``export``.

Single process (CPU or one GPU)::

    pretrain run --shards data/pairgen/pairs --model croco-base

One node, 8 GPUs, and two nodes of 8 (same command on each node)::

    torchrun --standalone --nproc_per_node 8 -m pretrain.cli run --shards data/pairgen/pairs
    torchrun --nnodes 2 --node_rank N --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HEAD:29500 -m pretrain.cli run --shards /shared/pairs

Errors end in one message and a non-zero exit (``--debug`` shows the traceback): 1 for a bad input file (a
checkpoint, shards, views) or failed work, 2 for a bad option value, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from manifests.commands import EXIT_OK
from manifests.layout import refuse_inside_data
from manifests import store
from manifests.store import local_path, location

__all__ = ["build_parser", "main"]

log = logging.getLogger("pretrain")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, keeps the epilog's examples as written."""


def build_parser() -> argparse.ArgumentParser:
    from manifests.options import add_options
    from manifests.version import VERSION
    from pretrain.probe import ProbeConfig
    from pretrain.train import TrainConfig

    parser = argparse.ArgumentParser(prog="pretrain", description="Pre-train CroCo on pairgen's Parquet pair (or "
                                     "samples) shards.", formatter_class=_Formatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"pretrain {VERSION}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "run",
        help="train CroCo on pair shards",
        description="Train CroCo (cross-view completion) on pair shards: view 1 of each pair is 90 %% masked "
        "and reconstructed from its visible patches and view 2. Samples shards (pairgen filter --views N --shape S, "
        "--reference) give one pair a sample each epoch: a view and its parent as view 1 (a star: its reference and "
        "one other view), the views read from the views files the samples name. Writes checkpoints, log.jsonl, "
        "TensorBoard events and reconstruction PNGs to runs/NAME. Under torchrun it trains with DDP.",
        epilog="examples:\n"
        "  pretrain run --shards data/pairgen/pairs\n"
        "  pretrain run --shards data/pairgen/pairs --model tiny --steps 200 --batch-size 16 --name smoke\n"
        "  pretrain run --shards data/pairgen/pairs --resume runs/croco/checkpoint-last.pt\n"
        "  pretrain run --shards data/pairgen/star5 --name stars   # samples: reference + one other view\n"
        "  torchrun --standalone --nproc_per_node 8 -m pretrain.cli run --shards data/pairgen/pairs",
        formatter_class=_Formatter,
    )
    p.add_argument("--shards", required=True, type=location,
                   help="a pairs folder (OUT/pairs), a samples folder (OUT/star5, OUT/pair2: one pair a sample, "
                   "view 1 its reference or a view's parent) or one shard file")
    p.add_argument("--name", default=None,
                   help="run name: outputs go to RUNS/NAME (None: the model's name). Running the same command "
                   "again resumes from RUNS/NAME/checkpoint-last.pt")
    p.add_argument("--runs", default=Path("runs"), type=local_path, help="folder holding the runs")
    add_options(p, TrainConfig)
    p.add_argument("--resume", type=local_path, default=None,
                   help="continue from this checkpoint, in its folder (a run folder's last checkpoint is used "
                   "without this option)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in RUNS/NAME even if it holds a run of another config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "probe",
        help="probe a checkpoint's frozen encoder on held-out scenes (depth, correspondence), against a random-init "
        "encoder",
        description="Freeze CHECKPOINT's encoder and probe it on held-out scenes (split by scene, never by view), "
        "against a randomly initialised encoder of the same architecture in the same call. --task depth (the "
        "default): train a small head on its patch features to predict depth on the views of training scenes, "
        "evaluate it on held-out scenes (NYUv2 metrics, each prediction scale-aligned per image by the median "
        "ratio), and measure the held-out cross-view completion loss with the true view 2 and with another "
        "scene's. --task correspondence: pair held-out views by their covisibility (from their own depth, "
        "intrinsics and poses), match each patch of view 1 to the patch of view 2 with the most similar features "
        "(cosine), and report the share whose true position (reprojected with depth and poses) is within 1, 2 "
        "and 4 patches, by covisibility band; raw pixels (normalised patches), the patch at the same place and "
        "chance are the other baselines. --task depth,correspondence runs both. Writes "
        "OUT/probe-STEP-seedSEED.json (and, for depth, .png: predicted against true depth) and prints the "
        "summary lines. Views files are found as **/*.parquet under --views, each named by its metadata.",
        epilog="examples:\n"
        "  pretrain probe --checkpoint runs/demo/checkpoint-last.pt --views data/pairgen/views\n"
        "  pretrain probe --checkpoint runs/demo/checkpoint-last.pt --views data/pairgen/views "
        "--task depth,correspondence\n"
        "  pretrain probe --checkpoint runs/tiny/checkpoint-last.pt --views data/pairgen/views --holdout medium-3 "
        "--seed 1 --out probes/",
        formatter_class=_Formatter,
    )
    p.add_argument("--checkpoint", required=True, type=local_path, help="a checkpoint written by pretrain run")
    p.add_argument("--views", required=True, type=location, nargs="+", metavar="FOLDER",
                   help="views folders (OUT/views): every **/*.parquet views file under them")
    p.add_argument("--out", type=local_path, default=None, help="folder for the results (None: the checkpoint's folder)")
    add_options(p, ProbeConfig)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "export",
        help="write the encoder (and the whole model) under the reference's key names",
        description="Write CHECKPOINT's weights for downstream use, loadable by naver/croco's CroCoNet: "
        "OUT/croco.pth ({'model': state_dict, 'croco_kwargs': constructor arguments}) and OUT/croco_encoder.pth "
        "(the encoder's weights only: patch_embed, enc_blocks, enc_norm, enc_pos_embed).",
        epilog="examples:\n  pretrain export runs/croco/checkpoint-last.pt --out exported/",
        formatter_class=_Formatter,
    )
    p.add_argument("checkpoint", type=local_path, help="a checkpoint written by pretrain run")
    p.add_argument("--out", type=local_path, default=Path("exported"), help="folder to write into")
    p.set_defaults(func=cmd_export)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from manifests.lock import folder_lock
    from manifests.options import from_args
    from pretrain.train import TrainConfig

    resume = args.resume
    run_dir = resume.parent if resume is not None else args.runs / (args.name or args.model)
    refuse_inside_data(run_dir, "a run")
    # a store's folders recorded by their URIs (a resume elsewhere is the same run), read through the mirrors
    config = from_args(TrainConfig, args, shards=store.shown(str(args.shards)), run_dir=str(run_dir),
                       views=store.shown(str(args.views)) if args.views is not None else None)  # fmt: skip
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with folder_lock(run_dir) if rank0 else contextlib.nullcontext():  # one run per run folder
        last = _resume_and_train(config, run_dir, resume, args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        if "loss" in last:
            print(f"trained to step {last['step']}, loss {last['loss']:.4f}", file=sys.stderr)
        else:
            print(f"already trained to step {last['step']}: nothing to do", file=sys.stderr)
        print(f"run: {run_dir}  (checkpoint-last.pt, log.jsonl, tb/, recon-*.png)", file=sys.stderr)
    return EXIT_OK


def _resume_and_train(config, run_dir: Path, resume: Path | None, overwrite: bool) -> dict:
    """Check the run folder's checkpoint against ``config``, verify the shards, train; the last record."""
    from manifests.config import config_changes
    from manifests.progress import Progress
    from pretrain.checkpoint import load_checkpoint
    from pretrain.shards import verify_shards
    from pretrain.train import train

    last_ckpt = run_dir / "checkpoint-last.pt"
    source = resume if resume is not None else (last_ckpt if last_ckpt.is_file() else None)
    checkpoint = load_checkpoint(source) if source is not None else None
    if checkpoint is not None:
        before = {**ADDED_SINCE, **checkpoint["config"]}  # a checkpoint older than an option ran its default
        drift = "; ".join(config_changes(before, config.to_dict(), ignore=RESUMABLE))
        if drift and resume is not None:
            raise ValueError(f"{resume}: written by a run of another config ({drift}); resume with the same options")
        if drift and not overwrite:
            raise ValueError(
                f"{run_dir} holds a run of another config ({drift}). Use another --name, or --overwrite to "
                "start afresh there."
            )
        if drift:
            log.warning("%s: starting afresh over a run of another config (%s)", run_dir, drift)
            last_ckpt.unlink()
            checkpoint = None
        elif resume is None:
            print(f"pretrain: resuming from {last_ckpt}", file=sys.stderr)
    if config.verify and int(os.environ.get("RANK", "0")) == 0:
        checked = verify_shards(store.path_of(config.shards), Path(run_dir) / "verified-shards.json")
        if checked:
            log.info("verified the SHA-256 of %d shard(s) against their manifest", checked)
    with Progress(None, "training", "step") as bar:
        return train(config, resume=checkpoint, progress=bar)


EXPORT_TEMPORARIES = ".pretrain-export.tmp"  # pretrain export's temporaries, a folder of --out

# what may change between a run and its resumption (the rest decides the result)
RESUMABLE = ("run_dir", "num_workers", "compile", "amp", "log_every", "ckpt_every", "image_every", "keep_checkpoints",
             "verify", "views")  # views: where they are; their SHA-256 pins what they are
# options added after checkpoints were first written, with what those checkpoints' runs did (not resumable: a run
# keeps its --view2)
ADDED_SINCE = {"view2": "pair"}


def cmd_probe(args: argparse.Namespace) -> int:
    from manifests.options import from_args
    from pretrain.probe import ProbeConfig, probe, summary_lines

    config = from_args(ProbeConfig, args)
    refuse_inside_data(args.out if args.out is not None else args.checkpoint.parent, "the probe's results")
    record, path = probe(args.checkpoint, args.views, config, args.out)
    for line in summary_lines(record):
        print(line, file=sys.stderr)
    png = f"  (depth PNG: {path.with_suffix('.png')})" if "png" in record else ""
    print(f"results: {path}{png}", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from manifests.io import remove_stale_temporaries
    from pretrain.checkpoint import checkpoint_model_args, croco_kwargs, load_checkpoint, save_checkpoint

    refuse_inside_data(args.out, "exported weights")
    ckpt = load_checkpoint(args.checkpoint)
    kwargs = croco_kwargs(checkpoint_model_args(ckpt))  # the checkpoint's own, not today's preset
    state = ckpt["model"]
    encoder = {k: v for k, v in state.items() if k.split(".")[0] in ("patch_embed", "enc_blocks", "enc_norm", "enc_pos_embed")}
    # temporaries in a folder of their own: a killed export's are cleared here (only those of processes that are
    # gone), without searching a --out that may be any folder of the user's
    temporaries = args.out / EXPORT_TEMPORARIES
    if remove_stale_temporaries(temporaries):
        log.info("%s: removed the unfinished files of an interrupted export", temporaries)
    for name, weights in (("croco.pth", state), ("croco_encoder.pth", encoder)):
        # Ctrl-C: the old file or none, never half
        save_checkpoint({"model": weights, "croco_kwargs": kwargs, "step": ckpt["step"]}, args.out / name, temporaries)
    with contextlib.suppress(OSError):  # empty unless another export writes into --out meanwhile
        temporaries.rmdir()
    print(f"wrote {args.out / 'croco.pth'} ({len(state)} tensors) and {args.out / 'croco_encoder.pth'} "
          f"({len(encoder)} tensors)", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)  # fmt: skip
    from manifests.commands import run_command
    from pretrain.data import ShardError
    from pretrain.engine import TrainingError
    from pretrain.probe import ProbeOptionError

    # a bad file (checkpoint, shards, views) is a failure, exit 1, in every subcommand; 2 is for option values
    return run_command("pretrain", args, args.func, usage=(ProbeOptionError,),
                       failures=(ShardError, TrainingError, ValueError, OSError),
                       interrupted="interrupted (resume with --resume RUN/checkpoint-last.pt)"
                       if args.command == "run" else "interrupted")


if __name__ == "__main__":
    sys.exit(main())
