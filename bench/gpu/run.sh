#!/usr/bin/env bash
# Entry point on the device machine (from the repo root, with release binaries carried):
#   bash bench/gpu/run.sh [SIZE] [REPS]
set -euo pipefail
export PYTHONUNBUFFERED=1
python3 bench/gpu/measure.py --bin "${FERRY_BIN_DIR:-target/release}" --work "${WORK:-$PWD/.work/gpu-model}" --size "${1:-20GiB}" --reps "${2:-3}" --out "${OUT:-.work/gpu}"
