#!/usr/bin/env bash
# Tensor-parallel load of one node (see bench/gpu/tp_load.py), from the repo root on a GPU machine
# with PyTorch and safetensors, release binaries in $FERRY_BIN_DIR (default target/release), root
# (to drop the page cache):
#   bash bench/gpu/tp_run.sh [SIZE] [REPS] [CONFIGS]      # defaults: 37GiB 3 2x8,4x4
# Writes tp_results.json and the warm plans to $OUT (default .work/tp); BUDGET_S caps the run.
set -euo pipefail
export PYTHONUNBUFFERED=1
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/tp_load.py" --bin "${FERRY_BIN_DIR:-target/release}" --work "${WORK:-$PWD/.work/tp-model}" \
  --size "${1:-37GiB}" --reps "${2:-3}" --configs "${3:-2x8,4x4}" --out "${OUT:-.work/tp}" \
  --budget-s "${BUDGET_S:-0}" ${TP_LOAD_ARGS:-}
