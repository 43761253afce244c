"""Train-step throughput of the CroCo model: pairs/s, FLOPs, TFLOP/s, MFU.

Times full optimizer steps (forward, masked loss, backward, AdamW) on random
pairs already on the device, so the figure is the model's, not the loader's
(``benchmarks/loader.py`` measures that). In the same run it times the same
step with the reference formulation of attention (explicit softmax, as
naver/croco's ``Attention``) to show what ``scaled_dot_product_attention``
buys.

    python benchmarks/train.py                              # croco-base; on CPU 8 pairs a step (about 1 min)
    python benchmarks/train.py --model croco-base --batch-size 256 --compile   # on a GPU, bf16

FLOPs per pair are counted analytically (:func:`pretrain.model.flops_per_pair`:
every matmul, forward and backward); MFU divides the achieved FLOP/s by the
GPU's dense bf16 peak. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.model import build_model, flops_per_pair, masked_patch_loss  # noqa: E402
from pretrain.engine import param_groups  # noqa: E402

# dense bf16 peak, TFLOP/s, by device-name fragment
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "V100": 125.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def time_steps(model, device, batch, steps, warmup, amp) -> float:
    """Seconds per optimizer step (median of ``steps`` after ``warmup``)."""
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95))
    s = model.img_size
    img1 = torch.randn(batch, 3, s, s, device=device)
    img2 = torch.randn(batch, 3, s, s, device=device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out, mask, target = model(img1, img2)
            loss = masked_patch_loss(out.float(), target.float(), mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="croco-base", help="model preset")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-reference", action="store_true", help="skip the explicit-softmax comparison")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = args.model or "croco-base"
    batch = args.batch_size or (128 if device.type == "cuda" else 8)
    amp = device.type == "cuda"
    torch.manual_seed(0)
    results = {}
    for impl in ["sdpa"] + ([] if args.no_reference else ["math"]):
        model = build_model(name, img_size=args.img_size, attn_impl=impl).to(device)
        runner = torch.compile(model) if args.compile else model
        runner.img_size = model.img_size
        sec = time_steps(runner, device, batch, args.steps, args.warmup, amp)
        results[impl] = batch / sec
        print(f"{name} {impl:>4} attention: {sec * 1e3:.1f} ms a step of {batch} pairs = {batch / sec:,.1f} pairs/s")
        del model, runner
    flops = flops_per_pair(build_model(name, img_size=args.img_size), args.img_size)
    tflops = results["sdpa"] * flops / 1e12
    peak = peak_tflops(device)
    mfu = tflops / peak if peak else None
    line = f"{flops / 1e9:.1f} GFLOPs a pair (forward + backward); {tflops:.3f} TFLOP/s achieved"
    if mfu is not None:
        line += f"; MFU {mfu:.1%} of {peak:.0f} TFLOP/s bf16"
    print(line)
    if "math" in results:
        print(f"SDPA against the explicit-softmax reference: {results['sdpa'] / results['math']:.2f}x")
    print(json.dumps({
        "model": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": batch,
        "img_size": args.img_size,
        "pairs_per_s": round(results["sdpa"], 2),
        "reference_pairs_per_s": round(results["math"], 2) if "math" in results else None,
        "speedup_vs_reference": round(results["sdpa"] / results["math"], 3) if "math" in results else None,
        "gflops_per_pair": round(flops / 1e9, 2),
        "tflops": round(tflops, 4),
        "mfu": round(mfu, 4) if mfu is not None else None,
        "bf16": amp,
        "compile": args.compile,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
