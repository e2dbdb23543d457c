#!/usr/bin/env python3
"""ferry at real shard size: a synthetic DeepSeek-R1-layout model with ~4.3 GB shards, served by
hubsim from a virtual repo (content generated on the fly, so the disk holds only the destination),
fetched by ferry and by huggingface_hub (plain HTTP) in the same run, beside the physical limits
measured in that run:

  disk write   dd of zeros with O_DIRECT, and buffered + fdatasync (what a durable fetch pays)
  loopback     one and N parallel curl streams of a shard from hubsim into /dev/null
  sha256       hashlib (OpenSSL) over an in-memory buffer, one core
  disk read    parallel readers of the fetched model with a cold page cache (the warm limit)

then `ferry warm` (default readers and --jobs 16/32) beside `xargs -P16 cat`, and `ferry verify
--full` cold. Where the fetch's time goes is read from its CPU time (user/sys from rusage) and
from a second fetch into a tmpfs when one can be mounted (no disk, same network and hashing).

Runs on the device machine: `python3 bench/gpu/real_shard.py --bin DIR --shards 8` with release
`ferry` and `hubsim` in DIR. Writes results.json and results.md to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path

REPO = "deepseek-ai/DeepSeek-R1"
GB = 1e9


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, text=True, capture_output=True, **kw)


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time, user/sys seconds and peak RSS of one command (rusage of that child alone)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_parts: list[str] = []
    err_parts: list[str] = []
    to = threading.Thread(target=lambda: out_parts.append(p.stdout.read()))
    te = threading.Thread(target=lambda: err_parts.append(p.stderr.read()))
    hwm = [0]
    done = threading.Event()

    def watch() -> None:
        # VmHWM of the process itself: wait4's ru_maxrss would include the forked copy of this
        # Python process the child was exec'ed from.
        while not done.is_set():
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm[0] = max(hwm[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)

    tw = threading.Thread(target=watch)
    to.start()
    te.start()
    tw.start()
    _, status, ru = os.wait4(p.pid, 0)
    done.set()
    wall = time.perf_counter() - t
    to.join()
    te.join()
    tw.join()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {code}: {''.join(err_parts)[-2000:]}")
    return {
        "s": wall,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "peak_rss_mib": hwm[0] / 1024,
        "stdout": "".join(out_parts),
    }


def drop_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def dd_rate(path: Path, gib: int, flags: list[str]) -> float:
    t = time.perf_counter()
    sh("dd", "if=/dev/zero", f"of={path}", "bs=16M", f"count={gib * 64}", *flags)
    s = time.perf_counter() - t
    path.unlink()
    return gib * (1 << 30) / s


def dd_parallel_rate(dir_: Path, streams: int, gib: int, flags: list[str]) -> float:
    """`streams` dd writers at once (ferry writes several files at once too)."""
    t = time.perf_counter()
    procs = [subprocess.Popen(["dd", "if=/dev/zero", f"of={dir_}/dd{i}.bin", "bs=16M", f"count={gib * 64}", *flags],
                              stderr=subprocess.DEVNULL) for i in range(streams)]
    for p in procs:
        p.wait()
    s = time.perf_counter() - t
    for i in range(streams):
        (dir_ / f"dd{i}.bin").unlink()
    return streams * gib * (1 << 30) / s


def curl_rate(urls: list[str]) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", u]) for u in urls]
    for p in procs:
        if p.wait():
            raise RuntimeError(f"curl failed on {urls}")
    return 0.0 if not urls else time.perf_counter() - t


def sha256_rate() -> float:
    buf = os.urandom(64 << 20)
    h = hashlib.sha256()
    t = time.perf_counter()
    for _ in range(32):
        h.update(buf)
    return 32 * len(buf) / (time.perf_counter() - t)


def parallel_read_rate(files: list[Path], readers: int, block: int = 8 << 20) -> float:
    """Cold-cache read of every file by `readers` threads taking 64 MiB chunks (fio-like)."""
    drop_cache()
    chunks = [(f, off) for f in files for off in range(0, f.stat().st_size, 64 << 20)]
    lock = threading.Lock()
    total = [0]

    def work() -> None:
        buf = bytearray(block)
        mv = memoryview(buf)
        while True:
            with lock:
                if not chunks:
                    return
                f, off = chunks.pop(0)
            fd = os.open(f, os.O_RDONLY)
            try:
                end = min(off + (64 << 20), f.stat().st_size)
                pos = off
                while pos < end:
                    n = os.preadv(fd, [mv[: min(block, end - pos)]], pos)
                    if n <= 0:
                        break
                    pos += n
                with lock:
                    total[0] += pos - off
            finally:
                os.close(fd)

    t = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(readers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return total[0] / (time.perf_counter() - t)


def model_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and ".ferry" not in p.parts and ".cache" not in p.parts)


def try_tmpfs(path: Path, size_gb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_gb}g", "tmpfs", str(path)]).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--shard-size", type=float, default=4.3e9, help="bytes per shard")
    ap.add_argument("--work", default="/tmp/ferry-real")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-warm", action="store_true")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:ENV=V,ENV=V:ARGS — an extra ferry fetch with this environment and extra args")
    a = ap.parse_args()
    bin_ = Path(a.bin).resolve()
    ferry, hubsim = str(bin_ / "ferry"), str(bin_ / "hubsim")
    work = Path(a.work)
    hub, model = work / "hub", work / "model"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    total_size = int(a.shards * a.shard_size)
    res: dict = {"shards": a.shards, "total_bytes": total_size, "cores": os.cpu_count(), "kernel": platform.release()}

    sh(hubsim, "generate", "--out", str(hub / REPO), "--repo", REPO, "--shards", str(a.shards),
       "--total-size", str(total_size), "--virtual")
    srv = subprocess.Popen([hubsim, "serve", "--root", str(hub), "--listen", "127.0.0.1:0", "--prehash"],
                           stdout=subprocess.PIPE, text=True)
    t = time.perf_counter()
    url = srv.stdout.readline().strip().removeprefix("hubsim listening on ")
    res["hubsim_prehash_s"] = time.perf_counter() - t
    try:
        info = json.loads(sh("curl", "-sf", f"{url}/api/models/{REPO}/tree/main").stdout)
        shards = sorted(f["path"] for f in info if f["path"].endswith(".safetensors"))
        urls = [f"{url}/{REPO}/resolve/main/{p}" for p in shards]
        shard_bytes = [f["size"] for f in info if f["path"].endswith(".safetensors")]
        res["shard_bytes_max"] = max(shard_bytes)

        # The limits, in this run.
        lim = res["limits"] = {}
        lim["disk_write_odirect_Bps"] = dd_rate(work / "dd.bin", 8, ["oflag=direct"])
        lim["disk_write_fdatasync_Bps"] = dd_rate(work / "dd.bin", 8, ["conv=fdatasync"])
        lim["disk_write_odirect_8streams_Bps"] = dd_parallel_rate(work, 8, 1, ["oflag=direct"])
        lim["disk_write_fdatasync_8streams_Bps"] = dd_parallel_rate(work, 8, 1, ["conv=fdatasync"])
        lim["loopback_1stream_Bps"] = shard_bytes[0] / curl_rate(urls[:1])
        lim["loopback_all_Bps"] = sum(shard_bytes) / curl_rate(urls)
        lim["sha256_1core_Bps"] = sha256_rate()
        print(json.dumps(lim), flush=True)

        # ferry into the disk, twice (the second after removing the first).
        res["ferry"] = []
        for rep in range(a.reps):
            shutil.rmtree(model, ignore_errors=True)
            drop_cache()
            r = run_measured([ferry, "fetch", REPO, "--to", str(model), "--endpoint", url, "--quiet"])
            r.pop("stdout")
            r["Bps"] = total_size / r["s"]
            res["ferry"].append(r)
            print("ferry", json.dumps(r), flush=True)

        res["variants"] = {}
        for v in a.variant:
            name, envs, args = (v.split(":", 2) + ["", ""])[:3]
            env = dict(os.environ, **dict(e.split("=", 1) for e in envs.split(",") if e))
            shutil.rmtree(model, ignore_errors=True)
            drop_cache()
            r = run_measured([ferry, "fetch", REPO, "--to", str(model), "--endpoint", url, "--quiet", *args.split()], env=env)
            r.pop("stdout")
            r["Bps"] = total_size / r["s"]
            res["variants"][name] = r
            print("variant", name, json.dumps(r), flush=True)

        files = model_files(model)
        w = res["warm"] = {}
        if not a.skip_warm:
            # Warm and the disk's parallel-read limit, on ferry's copy.
            for n in (16, 64):
                w[f"read_limit_{n}_Bps"] = parallel_read_rate(files, n)
            for jobs in (None, 16, 32):
                drop_cache()
                cmd = [ferry, "warm", str(model), "--json"] + ([] if jobs is None else ["--jobs", str(jobs)])
                r = run_measured(cmd)
                rep = json.loads(r["stdout"])
                w[f"ferry_warm_{jobs or 'default'}"] = {"s": r["s"], "jobs": rep.get("jobs"), "peak_rss_mib": r["peak_rss_mib"]}
            drop_cache()
            t = time.perf_counter()
            subprocess.run(f"find {model} -name '*.safetensors' -print0 | xargs -0 -P16 -n1 cat > /dev/null", shell=True, check=True)
            w["xargs_P16_cat_s"] = time.perf_counter() - t
            drop_cache()
            r = run_measured([ferry, "verify", str(model), "--full", "--json"])
            res["verify_full_cold"] = {"s": r["s"], "peak_rss_mib": r["peak_rss_mib"], "user_s": r["user_s"]}
            print("warm", json.dumps(w), flush=True)
        shutil.rmtree(model, ignore_errors=True)

        # The same fetch into memory: network + hashing without the disk.
        shm = work / "tmpfs"
        if try_tmpfs(shm, int(total_size / GB) + 4):
            try:
                r = run_measured([ferry, "fetch", REPO, "--to", str(shm / "m"), "--endpoint", url, "--quiet"])
                r.pop("stdout")
                r["Bps"] = total_size / r["s"]
                res["ferry_tmpfs"] = r
                print("ferry tmpfs", json.dumps(r), flush=True)
            finally:
                subprocess.run(["umount", str(shm)])

        if not a.skip_hf:
            env = dict(os.environ, HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HUB_ENABLE_HF_TRANSFER="0",
                       HF_HOME=str(work / "hfhome"), HF_HUB_DISABLE_TELEMETRY="1")
            hf = shutil.which("hf") or "hf"
            drop_cache()
            r = run_measured([hf, "download", REPO, "--local-dir", str(work / "hf"), "--max-workers", "16"], env=env)
            r.pop("stdout")
            r["Bps"] = total_size / r["s"]
            res["hf_download"] = r
            print("hf", json.dumps(r), flush=True)
            shutil.rmtree(work / "hf", ignore_errors=True)
    finally:
        srv.terminate()
        srv.wait()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "results.md").write_text(report(res))
    print(report(res))
    return 0


def report(r: dict) -> str:
    lim = r["limits"]
    limit = min(lim.get("disk_write_fdatasync_8streams_Bps", lim["disk_write_fdatasync_Bps"]), lim["loopback_all_Bps"])
    best = min(r["ferry"], key=lambda x: x["s"])
    lines = [
        f"model: {r['shards']} shards, {r['total_bytes']/GB:.1f} GB (largest shard {r['shard_bytes_max']/GB:.2f} GB), {r['cores']} cores",
        "",
        "| limit | GB/s |",
        "|---|---|",
    ]
    lines += [f"| {k.removesuffix('_Bps')} | {v/GB:.2f} |" for k, v in lim.items()]
    lines += ["", "| fetch | s | GB/s | of min(disk fdatasync ×8, loopback) | user s | sys s | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    rows = [("ferry", x) for x in r["ferry"]] + [(f"ferry, {k}", v) for k, v in r.get("variants", {}).items()]
    if "ferry_tmpfs" in r:
        rows.append(("ferry → tmpfs", r["ferry_tmpfs"]))
    if "hf_download" in r:
        rows.append(("hf download (16 workers)", r["hf_download"]))
    for name, x in rows:
        lines.append(f"| {name} | {x['s']:.1f} | {x['Bps']/GB:.2f} | {x['Bps']/limit:.0%} | {x['user_s']:.1f} | {x['sys_s']:.1f} | {x['peak_rss_mib']:.0f} |")
    if "hf_download" in r:
        lines.append(f"\nferry / hf: {r['hf_download']['s'] / best['s']:.2f}× faster")
    w = r["warm"]
    if not w:
        return "\n".join(lines) + "\n"
    lines += ["", "| warm (cold cache) | s or GB/s |", "|---|---|"]
    lines += [f"| {k} | {v/GB:.2f} GB/s |" if k.endswith("_Bps") else f"| {k} | {v['s']:.1f} s (jobs {v['jobs']}, RSS {v['peak_rss_mib']:.0f} MiB) |" if isinstance(v, dict) else f"| {k} | {v:.1f} s |" for k, v in w.items()]
    v = r["verify_full_cold"]
    lines.append(f"\nverify --full, cold: {v['s']:.1f} s ({r['total_bytes']/v['s']/GB:.2f} GB/s), peak RSS {v['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
