#!/usr/bin/env bash
# Probe LightGCN and BPR-MF trained on MovieLens-100k, then render the LightGCN report as a PNG.
#
#   bash examples/probe_ml100k.sh [OUT_DIR]        (default: runs/probe-example)
#
# Needs the project's .venv (make demo / make test) and, for the screenshot, Debian's chromium:
#   apt-get install -y chromium
set -euo pipefail

OUT="${1:-runs/probe-example}"
RECSYS="${RECSYS:-.venv/bin/recsys}"

# 1. train both models (RecBole protocol; about 2 minutes together on 2 CPU cores)
for model in lightgcn bpr; do
  if [ ! -f "$OUT/$model/checkpoints/best.pt" ]; then
    "$RECSYS" train --model "$model" --dataset ml-100k -o "$OUT" --quiet \
      --set run_name="$model" --set train.epochs=500
  fi
done

# 2. probe the user representation right before scoring (TopK SAE, defaults k=16, expansion 4);
#    the report and an MLflow child run of the training run are written
"$RECSYS" probe "$OUT/lightgcn" -o "$OUT/lightgcn/probe-user"
#    BPR-MF, compared with LightGCN by ITDA Jaccard; the item site too
"$RECSYS" probe "$OUT/bpr/checkpoints/best.pt" --compare "$OUT/lightgcn" -o "$OUT/bpr/probe-user"
"$RECSYS" probe "$OUT/lightgcn" --site item -o "$OUT/lightgcn/probe-item"

# 3. render the page in headless Chromium (a fresh profile, no network services)
if command -v chromium > /dev/null; then
  PROFILE="$(mktemp -d)"
  # Chromium wants absolute paths; OUT may be relative or absolute
  OUT_ABS="$(cd "$OUT" && pwd)"
  # (chromium logs D-Bus complaints on a headless server; they are harmless and hidden here)
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$PROFILE" \
    --screenshot="$OUT_ABS/lightgcn-probe.png" --window-size=1280,14000 \
    "file://$OUT_ABS/lightgcn/probe-user/report.html" 2> /dev/null
  rm -rf "$PROFILE"
  test -s "$OUT/lightgcn-probe.png"
  echo "screenshot: $OUT/lightgcn-probe.png"
fi
