#!/usr/bin/env bash
# The README's first command: install, then run pairgen on the embedded
# default (procedural apartments, no dataset download).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${PAIRGEN_VENV:-.venv}
OUT=${PAIRGEN_DEMO_OUT:-data/pairgen}
echo "demo: the synthetic scenes pairgen builds by default" >&2
"$VENV/bin/pairgen" scenes --scenes synthetic --triangles
echo "demo: rendering their views into $OUT/views" >&2
"$VENV/bin/pairgen" render --scenes synthetic --out "$OUT"
echo "demo: keeping pairs with covisibility in [0.5, 0.8] into $OUT/pairs" >&2
"$VENV/bin/pairgen" filter --min-covis 0.5 --out "$OUT"
echo "demo: statistics and a contact sheet" >&2
"$VENV/bin/pairgen" inspect --out "$OUT"
RUNS=${PAIRGEN_DEMO_RUNS:-runs}
echo "demo: a short CroCo run of the tiny model on the pairs (CPU)" >&2
# --base-lr 0.016: a peak rate of 1e-3 at batch 16 (CroCo's 1.5e-4 per 256 pairs gives 9.4e-6, too little
# for 60 steps to move the weights)
"$VENV/bin/pretrain" run --shards "$OUT/pairs" --model tiny --img-size 224 --batch-size 16 --steps 60 \
    --base-lr 0.016 --workers 2 --log-every 10 --image-every 30 --runs "$RUNS" --name demo
echo "demo: depth and correspondence probes of its encoder against a random one, on a held-out apartment" >&2
"$VENV/bin/pretrain" probe --checkpoint "$RUNS/demo/checkpoint-last.pt" --views "$OUT/views" --task depth,correspondence
echo "demo: outputs" >&2
echo "  views:          $OUT/views/synthetic/*.parquet  (manifest: $OUT/views.manifest.json)" >&2
echo "  pairs:          $OUT/pairs/shard-*.parquet  (manifest: $OUT/pairs.manifest.json)" >&2
echo "  dataset card:   $OUT/README.md  (datasets.load_dataset(\"$OUT\", \"pairs\") or \"views\")" >&2
echo "  contact sheet:  $OUT/contact_sheet.png" >&2
echo "  training run:   $RUNS/demo/  (checkpoint-last.pt, log.jsonl, tb/)" >&2
echo "  reconstruction: $RUNS/demo/recon-last.png  (masked view 1 | view 2 | reconstruction | target)" >&2
echo "  probes:         $RUNS/demo/probe-*.json (depth, correspondence), probe-*.png  (RGB | true depth | pretrained | random init)" >&2
