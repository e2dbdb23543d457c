#!/usr/bin/env bash
# `ferry verify --full` beside sha256sum on the same files, from the page cache (what a re-check
# of a just-downloaded model reads) so the hash rate, not the disk, is compared.
#   bench/verify.sh DIR [REPS]     # DIR: a model directory ferry fetched (it has .ferry/manifest.json)
# Prints one line per run and a Markdown table of medians (GB/s = model bytes / wall seconds).
set -euo pipefail
dir=${1:?usage: bench/verify.sh DIR [REPS]}
reps=${2:-3}
ferry=${FERRY:-target/release/ferry}
[ -f "$dir/.ferry/manifest.json" ] || { echo "$dir has no ferry manifest: fetch it with ferry first" >&2; exit 2; }
mapfile -d '' files < <(cd "$dir" && find . \( -path ./.ferry -o -path ./.cache \) -prune -o -type f -print0 | sort -z)
bytes=$(cd "$dir" && cat "${files[@]}" | wc -c)   # also brings every file into the page cache
cores=$(nproc)
declare -A runs
time_one() { # label command...
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N); (cd "$dir" && "$@") >/dev/null; t1=$(date +%s.%N)
  local gbps; gbps=$(python3 -c "print(f'{$bytes / ($t1 - $t0) / 1e9:.2f}')")
  echo "$label: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, $gbps GB/s"
  runs[$label]+="$gbps "
}
abs_ferry=$(realpath "$ferry")
for r in $(seq "$reps"); do
  time_one "sha256sum (one process, file by file)" sha256sum "${files[@]}"
  time_one "xargs -P$cores sha256sum (one file per process)" bash -c 'printf "%s\0" "$@" | xargs -0 -P"$(nproc)" -n1 sha256sum' _ "${files[@]}"
  time_one "ferry verify --full ($cores workers)" "$abs_ferry" verify . --full
done
echo
echo "$(nproc) cores, $(python3 -c "print(f'{$bytes/1e9:.2f}')") GB in ${#files[@]} files, page cache warm, $reps repetitions"
echo
echo "| method | GB/s median (min–max) |"
echo "|---|---|"
for label in "sha256sum (one process, file by file)" "xargs -P$cores sha256sum (one file per process)" "ferry verify --full ($cores workers)"; do
  python3 -c "
import statistics,sys
v=sorted(float(x) for x in sys.argv[2].split())
print(f'| {sys.argv[1]} | {statistics.median(v):.2f} ({v[0]:.2f}–{v[-1]:.2f}) |')" "$label" "${runs[$label]}"
done
