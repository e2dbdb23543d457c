#!/usr/bin/env bash
# bench/verify.sh on a synthetic DeepSeek-R1-layout model: generated with hubsim, fetched with
# ferry from hubsim on loopback (so it has a manifest), then compared with sha256sum.
#   bench/verify-synthetic.sh [SIZE] [REPS]      # default 4GiB, 3; BIN_DIR (default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-4GiB}
reps=${2:-3}
bin=$(realpath "${BIN_DIR:-target/release}")
work=${WORK:-.work/verify-bench}
repo=deepseek-ai/DeepSeek-R1
rm -rf "$work"; mkdir -p "$work"
. bench/synthetic-hub.sh
trap 'kill ${hub_pid:-} 2>/dev/null || true' EXIT
serve_synthetic_hub
"$bin/ferry" fetch "$repo" --to "$work/model" --endpoint "$url" --quiet
kill "$hub_pid"; rm -rf "$work/hub"
FERRY="$bin/ferry" bench/verify.sh "$work/model" "$reps"
