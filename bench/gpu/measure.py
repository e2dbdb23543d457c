#!/usr/bin/env python3
"""What pre-warming buys on a real GPU node: model load time cold vs after `ferry warm`.

Runs on the device machine (see bench/gpu/run.sh): generates a synthetic DeepSeek-R1-layout model
with hubsim, fetches it with ferry (so it has a manifest), then per repetition:
  cold  - page cache dropped, then every tensor loaded to the GPU the way SGLang/vLLM's default
          loader does (safetensors safe_open per shard, get_tensor on CPU, copy to CUDA);
  warm  - page cache dropped, `ferry warm` (timed on its own), then the same load;
  verify- `ferry verify --full` from a cold cache and from a warm one.
Writes results.json and results.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = "deepseek-ai/DeepSeek-R1"


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, text=True, capture_output=True, **kw)


def model_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and ".ferry" not in p.parts and ".cache" not in p.parts)


def drop_cache(files: list[Path]) -> str:
    """drop_caches where permitted (root on a VM), else fadvise(DONTNEED) on every file."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"


def load_to_gpu(files: list[Path]) -> tuple[float, int]:
    import torch
    from safetensors import safe_open

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    nbytes = 0
    kept = []
    for f in files:
        if f.suffix != ".safetensors":
            continue
        with safe_open(str(f), framework="pt", device="cpu") as st:
            for name in st.keys():
                t = st.get_tensor(name)
                g = t.to("cuda", non_blocking=False)
                nbytes += g.numel() * g.element_size()
                kept.append(g)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    del kept
    torch.cuda.empty_cache()
    return elapsed, nbytes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--size", default="20GiB")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/ferry-gpu")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    bin_ = Path(a.bin).resolve()
    work = Path(a.work)
    hub, model = work / "hub", work / "model"
    sh("rm", "-rf", str(work))
    work.mkdir(parents=True)

    t = time.perf_counter()
    sh(str(bin_ / "hubsim"), "generate", "--out", str(hub / REPO), "--repo", REPO, "--shards", "163", "--total-size", a.size)
    gen_s = time.perf_counter() - t
    srv = subprocess.Popen([str(bin_ / "hubsim"), "serve", "--root", str(hub), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    url = srv.stdout.readline().strip().removeprefix("hubsim listening on ")
    try:
        fetch = sh(str(bin_ / "ferry"), "fetch", REPO, "--to", str(model), "--endpoint", url, "--json")
    finally:
        srv.terminate()
        srv.wait()
    summary = [json.loads(l) for l in fetch.stdout.splitlines() if l.startswith("{") and '"summary"' in l][-1]
    sh("rm", "-rf", str(hub))  # free the disk and the page cache of the source copy
    files = model_files(model)
    total = sum(f.stat().st_size for f in files)
    print(f"model: {len(files)} files, {total/1e9:.2f} GB; fetch {summary['seconds']:.1f} s", flush=True)

    import torch

    rows = []
    for rep in range(a.reps):
        how = drop_cache(files)
        cold_s, nbytes = load_to_gpu(files)
        drop_cache(files)
        t = time.perf_counter()
        warm = json.loads(sh(str(bin_ / "ferry"), "warm", str(model), "--json").stdout)
        warm_s = time.perf_counter() - t
        warmed_s, _ = load_to_gpu(files)
        verify_hot = time.perf_counter()
        sh(str(bin_ / "ferry"), "verify", str(model), "--full", "--json")
        verify_hot = time.perf_counter() - verify_hot
        drop_cache(files)
        verify_cold = time.perf_counter()
        sh(str(bin_ / "ferry"), "verify", str(model), "--full", "--json")
        verify_cold = time.perf_counter() - verify_cold
        row = {
            "rep": rep, "evict": how, "bytes": total, "tensor_bytes": nbytes,
            "cold_load_s": cold_s, "warm_s": warm_s, "warm_report": warm, "warm_load_s": warmed_s,
            "verify_full_hot_s": verify_hot, "verify_full_cold_s": verify_cold,
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "warm_report"}), flush=True)

    def med(k: str) -> float:
        return statistics.median(r[k] for r in rows)

    def spread(k: str) -> str:
        v = [r[k] for r in rows]
        return f"{min(v):.2f}–{max(v):.2f}"

    gb = total / 1e9
    machine = {
        "gpu": torch.cuda.get_device_name(0),
        "cpus": os.cpu_count(),
        "mem_total_kb": int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))),
        "kernel": platform.release(),
        "disk": sh("df", "-h", str(work)).stdout.strip().splitlines()[-1],
        "torch": torch.__version__,
    }
    result = {"machine": machine, "size_bytes": total, "generate_s": gen_s, "fetch": summary, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    md = [
        f"Model: synthetic DeepSeek-R1 layout, 163 shards, {gb:.1f} GB; {a.reps} repetitions, median (min–max).",
        f"Machine: {machine['gpu']}, {machine['cpus']} cores, {machine['mem_total_kb']//1024//1024} GiB RAM, kernel {machine['kernel']}, disk `{machine['disk']}`.",
        "",
        "| step | seconds | GB/s |",
        "|---|---|---|",
        f"| cold load to GPU (cache dropped) | {med('cold_load_s'):.2f} ({spread('cold_load_s')}) | {gb/med('cold_load_s'):.2f} |",
        f"| `ferry warm` (cache dropped) | {med('warm_s'):.2f} ({spread('warm_s')}) | {gb/med('warm_s'):.2f} |",
        f"| load to GPU after `ferry warm` | {med('warm_load_s'):.2f} ({spread('warm_load_s')}) | {gb/med('warm_load_s'):.2f} |",
        f"| `ferry verify --full`, cold cache | {med('verify_full_cold_s'):.2f} ({spread('verify_full_cold_s')}) | {gb/med('verify_full_cold_s'):.2f} |",
        f"| `ferry verify --full`, warm cache | {med('verify_full_hot_s'):.2f} ({spread('verify_full_hot_s')}) | {gb/med('verify_full_hot_s'):.2f} |",
        f"| `ferry fetch` from hubsim on loopback (once) | {summary['seconds']:.2f} | {summary['bytes_downloaded']/1e9/summary['seconds']:.2f} |",
    ]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
