#!/usr/bin/env python3
"""Fetch at real shard size against the machine's own limits, measured in the same run.

    python3 bench/real_shards.py [--shard-size 1GiB] [--shards 2] [--reps 2] [--peers hf]

hubsim serves a virtual repo (`hubsim generate --virtual`: the bytes are generated as they are
served, valid safetensors, hashes computed once at generation), so shards of real size (4.3 GB on
DeepSeek-R1) need disk only at the destination. In the same run, before the fetches:

- disk: sequential buffered writes of the model's size into the destination's filesystem,
  then fdatasync (`dd conv=fdatasync`: ferry also writes buffered and syncs before publishing);
- hub: hubsim's serve rate alone, every shard fetched by curl at once into /dev/null
  (loopback + hubsim's generation; no disk, no hashing);
- sha256: hashlib (OpenSSL) over 256 MiB, per core, times the cores.

ferry's rate is reported as a fraction of min(disk, hub, sha256 x cores). Peak RSS is the
kernel's `ru_maxrss` of the fetch process (wait4). Measured, never asserted: the exit status says
only whether every fetch produced verified files. Binaries: $FERRY_BIN/$HUBSIM_BIN, else
target/release.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from run import parse_size  # noqa: E402  (the harness's size parser: 1GiB, 512MiB, 4.3GB)

REPO = "deepseek-ai/DeepSeek-R1"
MiB = 1 << 20


def log(msg):
    print(f"[real-shards {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def binaries():
    if os.environ.get("FERRY_BIN") and os.environ.get("HUBSIM_BIN"):
        return Path(os.environ["FERRY_BIN"]), Path(os.environ["HUBSIM_BIN"])
    rel = ROOT / "target" / "release"
    return rel / "ferry", rel / "hubsim"


def start_hub(hubsim, root, log_path):
    proc = subprocess.Popen([str(hubsim), "serve", "--root", str(root), "--listen", "127.0.0.1:0"],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        text = log_path.read_text() if log_path.exists() else ""
        m = re.search(r"hubsim listening on (\S+)", text)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"hubsim did not start:\n{log_path.read_text()}")


def disk_write_rate(dest_dir, size):
    """Buffered sequential writes of `size` bytes, then fdatasync: bytes per second."""
    path = dest_dir / "dd-probe"
    bs = 16 * MiB
    t = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={bs}", f"count={max(1, size // bs)}",
                    "conv=fdatasync", "status=none"], check=True)
    secs = time.monotonic() - t
    path.unlink()
    return max(1, size // bs) * bs / secs


def hub_rate(url, files):
    """Every file at once from hubsim into /dev/null with curl: bytes per second."""
    t = time.monotonic()
    procs = [subprocess.Popen(["curl", "-sf", "--noproxy", "*", "-o", "/dev/null",
                               f"{url}/{REPO}/resolve/main/{f['path']}"]) for f in files]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("curl from hubsim failed")
    return sum(f["size"] for f in files) / (time.monotonic() - t)


def sha256_rate():
    buf = os.urandom(256 * MiB)
    t = time.monotonic()
    hashlib.sha256(buf).digest()
    return len(buf) / (time.monotonic() - t)


def peak_rss_run(cmd, env, stderr_path):
    """Runs cmd; returns (seconds, exit code, peak RSS bytes of the process itself)."""
    t = time.monotonic()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
    secs = time.monotonic() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    return secs, proc.returncode, ru.ru_maxrss * 1024


def verify(dest, files):
    """Sizes match, and the shards' sha256 is the hub's (outside the timing)."""
    for f in files:
        p = dest / f["path"]
        if not p.is_file() or p.stat().st_size != f["size"]:
            return False
    for f in files:
        h = hashlib.sha256()
        with open(dest / f["path"], "rb") as fh:
            while chunk := fh.read(8 * MiB):
                h.update(chunk)
        if h.hexdigest() != f["sha256"]:
            return False
    return True


def peer_cmd(peer, url, dest):
    venv = ROOT / ".work" / "bench-venv" / "bin"
    if peer == "hf":
        return [str(venv / "hf"), "download", REPO, "--local-dir", str(dest), "--max-workers", "16"], \
            {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_ENABLE_HF_TRANSFER": "0"}
    raise SystemExit(f"unknown peer {peer}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard-size", type=parse_size, default=parse_size("1GiB"))
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--peers", default="", help="comma list: hf (needs .work/bench-venv)")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir under .work)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    ferry, hubsim = binaries()
    for b in (ferry, hubsim):
        if not b.is_file():
            raise SystemExit(f"{b} missing: cargo build --release -p ferry -p hubsim, or set FERRY_BIN/HUBSIM_BIN")
    (ROOT / ".work").mkdir(exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="real-shards-", dir=ROOT / ".work"))
    hub_root, dest = work / "hub", work / "dest"
    shutil.rmtree(work / "hub", ignore_errors=True)
    total = args.shard_size * args.shards
    log(f"virtual repo: {args.shards} shard(s), {total / 1e9:.2f} GB (hashing it once)")
    subprocess.run([str(hubsim), "generate", "--virtual", "--out", str(hub_root / REPO), "--repo", REPO,
                    "--shards", str(args.shards), "--total-size", str(total)], check=True,
                   stdout=subprocess.DEVNULL)
    files = json.loads((hub_root / REPO / ".hubsim-virtual.json").read_text())["files"]
    shards = [f for f in files if f["path"].endswith(".safetensors")]
    model_bytes = sum(f["size"] for f in files)
    proc, url = start_hub(hubsim, hub_root, work / "hubsim.log")
    results = {"shards": len(shards), "shard_bytes": max(f["size"] for f in shards), "model_bytes": model_bytes,
               "cores": os.cpu_count(), "runs": []}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        la0 = loadavg()
        results["disk_Bps"] = disk_write_rate(dest, model_bytes)
        results["hub_Bps"] = hub_rate(url, files)
        results["sha256_Bps_core"] = sha256_rate()
        limit = min(results["disk_Bps"], results["hub_Bps"], results["sha256_Bps_core"] * (os.cpu_count() or 1))
        results["limit_Bps"] = limit
        log(f"limits: disk {results['disk_Bps'] / 1e9:.2f} GB/s, hub {results['hub_Bps'] / 1e9:.2f} GB/s, "
            f"sha256 {results['sha256_Bps_core'] / 1e9:.2f} GB/s/core (load {la0:.1f})")
        tools = ["ferry"] + [p for p in args.peers.split(",") if p]
        for rep in range(args.reps):
            for tool in tools:
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELSCOPE_"))}
                if tool == "ferry":
                    cmd, extra = [str(ferry), "fetch", REPO, "--to", str(dest)], {"HF_ENDPOINT": url}
                else:
                    cmd, extra = peer_cmd(tool, url, dest)
                la = loadavg()
                secs, code, rss = peak_rss_run(cmd, {**base_env, **extra}, work / f"{tool}-{rep}.log")
                ok = code == 0 and verify(dest, files)
                run = {"tool": tool, "rep": rep, "seconds": secs, "ok": ok, "peak_rss": rss, "load": la,
                       "Bps": model_bytes / secs}
                results["runs"].append(run)
                log(f"{tool} rep {rep}: {secs:.1f} s, {model_bytes / secs / 1e9:.2f} GB/s "
                    f"({model_bytes / secs / limit:.0%} of the limit), peak RSS {rss / MiB:.0f} MiB, "
                    f"{'verified' if ok else 'FAILED'} (load {la:.1f})")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(dest, ignore_errors=True)
    print(f"\n{len(shards)} shard(s) of {results['shard_bytes'] / 1e9:.2f} GB, model {model_bytes / 1e9:.2f} GB, "
          f"{results['cores']} cores")
    print(f"limits (same run): disk write+fdatasync {results['disk_Bps'] / 1e9:.2f} GB/s, hubsim alone "
          f"{results['hub_Bps'] / 1e9:.2f} GB/s, sha256 {results['sha256_Bps_core'] / 1e9:.2f} GB/s per core "
          f"-> limit {results['limit_Bps'] / 1e9:.2f} GB/s\n")
    print("| tool | rep | time | rate | of limit | peak RSS | load avg | verified |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['tool']} | {r['rep']} | {r['seconds']:.1f} s | {r['Bps'] / 1e9:.2f} GB/s | "
              f"{r['Bps'] / results['limit_Bps']:.0%} | {r['peak_rss'] / MiB:.0f} MiB | {r['load']:.1f} | "
              f"{'yes' if r['ok'] else 'NO'} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["ok"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
