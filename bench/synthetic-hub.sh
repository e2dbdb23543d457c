# Sourced by the bench scripts: generate the synthetic DeepSeek-R1-layout model into $work/hub
# and serve it with hubsim on loopback. Needs $bin, $work, $repo, $size; sets $url and $hub_pid.
serve_synthetic_hub() {
  "$bin/hubsim" generate --out "$work/hub/$repo" --repo "$repo" --shards 163 --total-size "$size" >/dev/null
  "$bin/hubsim" serve --root "$work/hub" --listen 127.0.0.1:0 > "$work/hubsim.log" 2>&1 &
  hub_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/hubsim.log" && break; sleep 0.1; done
  url=$(sed -n 's/^hubsim listening on //p' "$work/hubsim.log")
  [ -n "$url" ] || { echo "hubsim did not start:" >&2; cat "$work/hubsim.log" >&2; return 1; }
}
