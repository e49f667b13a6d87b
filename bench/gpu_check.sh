#!/usr/bin/env bash
# GPU check (<= 5 minutes on one H100): GAN training rows/s per GPU with bf16 and the GPU utilisation
# sampled while it runs. Run on a GPU machine from the repo root
# after ./scripts/setup (which installs a CUDA build of torch when nvidia-smi works).
# Extra arguments go to bench/train_scaling.py (e.g. --data TABLE where ../shared is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
log=$(mktemp)
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$log" &
smi=$!
trap 'kill $smi 2>/dev/null || true' EXIT
timeout 240 "$PY" bench/train_scaling.py --gpu --workers 1 --epochs 4 --batch-size 4000 "$@"
kill $smi 2>/dev/null || true
awk -F', ' '{u+=$1; if ($1>m) m=$1; if ($2>mem) mem=$2; n++} END {printf "GPU utilisation: mean %.0f%%, max %d%%, peak memory %d MiB over %d samples\n", u/n, m, mem, n}' "$log"
