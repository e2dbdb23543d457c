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
"$bin/hubsim" generate --out "$work/hub/$repo" --repo "$repo" --shards 163 --total-size "$size" >/dev/null
"$bin/hubsim" serve --root "$work/hub" --listen 127.0.0.1:0 > "$work/hubsim.log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/hubsim.log" && break; sleep 0.1; done
url=$(sed -n 's/^hubsim listening on //p' "$work/hubsim.log")
"$bin/ferry" fetch "$repo" --to "$work/model" --endpoint "$url" --quiet
kill $hub; rm -rf "$work/hub"
FERRY="$bin/ferry" bench/verify.sh "$work/model" "$reps"
