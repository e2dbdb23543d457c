#!/usr/bin/env python3
"""One node of a tensor-parallel load: N rank processes, each loading its TP slice, from one page cache.

What a DeepSeek-R1 node does at engine start-up: every rank opens every shard and copies its
slice of each tensor to its GPU. This script runs the ranks of node 0 of a deployment (`2x8`:
ranks 0-7 of TP16 over 2 nodes of 8 GPUs; `4x4`: ranks 0-3 of TP16 over 4 nodes of 4) as
processes, all on the GPUs the machine has (one H200 here: every rank process on cuda:0), and
measures, per case, with the page cache dropped first:

  cold  - the load alone;
  warm  - `ferry warm DIR` (the whole model), then the load;
  plan  - `ferry warm DIR --plan plan.json --node-rank 0` (this node's share), then the load.

Per case: per-rank and total seconds from the synchronised start (every rank has torch and CUDA
up and waits on one event) to its last tensor on the GPU (`torch.cuda.synchronize()`); bytes read
from the block device (/sys/dev/block/M:m/stat) and /proc/vmstat pgpgin during the warm and
during the load; the page cache over the weight files (mincore) after the warm and after the
load; and which of the bytes the ranks load were already resident when the load began.

The slicing rules mirror the engines' weight loaders as `ferry plan warm` models them
(sharder/src/loader.rs): the engines' safetensors iterator hands out lazy mmap views
(`safe_open(...).get_tensor`, vLLM model_loader/weight_utils.py `safetensors_weights_iterator`,
SGLang's fork of it) and each layer's `weight_loader` narrows them (vLLM layers/linear.py:
ColumnParallelLinear/MergedColumnParallelLinear narrow dim 0 (`output_dim`), RowParallelLinear
narrows dim 1 (`input_dim`); VocabParallelEmbedding/ParallelLMHead split the vocabulary (dim 0);
FusedMoE narrows w1/w3 (gate/up) on dim 0 and w2 (down) on dim 1; ReplicatedLinear, norms and the
router gate are loaded whole). `--api get_slice` reads the same slices through
`safe_open(...).get_slice(name)[...]`, which touches the same pages.

`--device numpy` is a dry run without torch or a GPU: the same slices are copied out of an mmap
of each shard with numpy (for testing the script on a CPU-only machine).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import mmap
import multiprocessing as mp
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import REPO, drop_cache, model_files, sh  # noqa: E402

TP = 16
CONFIGS = {"2x8": (2, 8), "4x4": (4, 4), "1x16": (1, 16)}
ROWS = {"q_proj", "k_proj", "v_proj", "qkv_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj",
        "gate_up_proj", "embed_tokens", "lm_head"}
COLS = {"o_proj", "down_proj", "dense"}
LAYER = re.compile(r"^model\.layers\.(\d+)\.")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- what a rank loads

def split_of(name: str) -> str:
    """'rows' (dim 0), 'cols' (dim 1) or 'whole', by the module the tensor belongs to."""
    parts = name.split(".")
    module = "lm_head" if name == "lm_head.weight" else (parts[-2] if len(parts) >= 2 else "")
    if module in ROWS or (module == "head" and "shared_head.head" in name):
        return "rows"
    if module in COLS:
        return "cols"
    return "whole"


def header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))
    meta.pop("__metadata__", None)
    return 8 + n, meta


def rank_slices(path: Path, layers: int, tp: int, rank: int) -> list[tuple[str, str, int, int]]:
    """(name, split, start, stop) of every tensor of the shard that tp rank `rank` loads; split
    is 'whole' when the tensor is loaded whole (replicated, or not divisible by tp)."""
    _, meta = header(path)
    out = []
    for name, t in meta.items():
        m = LAYER.match(name)
        if m and int(m.group(1)) >= layers:
            continue  # the MTP layer: only loaded with speculative decoding (plan default: off)
        shape = t["shape"]
        how = split_of(name)
        dim = 0 if how == "rows" else 1
        if how == "whole" or len(shape) <= dim or shape[dim] % tp:
            out.append((name, "whole", 0, 0))
            continue
        n = shape[dim] // tp
        out.append((name, how, rank * n, (rank + 1) * n))
    return out


def byte_ranges(path: Path, layers: int, tp: int, ranks: range) -> list[tuple[int, int]]:
    """Byte ranges of the shard the ranks read (the pages they touch, before read-ahead): the
    header, rows of dim-0 slices, and whole dim-1-split tensors (a rank's share of each row is
    strided through every page of it; exact when the share is under a page, as in R1)."""
    data0, meta = header(path)
    want: list[tuple[int, int]] = []
    for r in ranks:
        for name, how, a, b in rank_slices(path, layers, tp, r):
            s, e = meta[name]["data_offsets"]
            s, e = s + data0, e + data0
            if how == "rows":
                row = (e - s) // meta[name]["shape"][0]
                want.append((s + a * row, s + b * row))
            else:
                want.append((s, e))
    if want:
        want.append((0, data0))
    want.sort()
    merged: list[tuple[int, int]] = []
    for s, e in want:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


# ---------------------------------------------------------------- page cache and disk counters

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_pages(path: Path) -> bytes:
    """mincore of the whole file: one byte per page, bit 0 set when the page is in the cache."""
    size = path.stat().st_size
    if size == 0:
        return b""
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = ctypes.create_string_buffer((size + PAGE - 1) // PAGE)
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return vec.raw
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def residency(files: list[Path], wanted: dict[Path, list[tuple[int, int]]]) -> dict:
    """Resident bytes of the weight files, and of the byte ranges the node's ranks load."""
    total = in_wanted = 0
    for f in files:
        vec = resident_pages(f)
        size = f.stat().st_size
        n = len(vec) - vec.count(0)
        total += n * PAGE - (PAGE * len(vec) - size if vec and vec[-1] & 1 else 0)
        for s, e in wanted.get(f, []):
            p0, p1 = s // PAGE, (e - 1) // PAGE
            got = (p1 + 1 - p0 - vec.count(0, p0, p1 + 1)) * PAGE
            if vec[p0] & 1:
                got -= s - p0 * PAGE
            if vec[p1] & 1:
                got -= (p1 + 1) * PAGE - e
            in_wanted += got
    return {"resident_bytes": total, "resident_wanted_bytes": in_wanted}


def io_counters(dev_stat: Path | None) -> dict:
    vm = dict(l.split() for l in open("/proc/vmstat"))
    out = {"pgpgin_bytes": int(vm["pgpgin"]) * 1024}  # pgpgin counts KiB
    if dev_stat is not None:
        out["disk_read_bytes"] = int(dev_stat.read_text().split()[2]) * 512
    return out


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a}


def block_stat_of(path: Path) -> Path | None:
    st = os.stat(path)
    p = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat")
    return p if p.exists() else None


# ---------------------------------------------------------------- the rank processes

def bytes_slice(t, how: str, a: int, b: int):
    """The same slice of a tensor's bytes (a uint8 view): for dtypes torch cannot copy on the CPU."""
    import torch

    es = t.element_size()
    u = t.reshape(t.shape[0], -1).view(torch.uint8) if t.dim() > 1 else t.view(torch.uint8)
    if how == "rows":
        return u.narrow(0, a, b - a)
    if how == "cols":
        cols = t.shape[1]
        return u.reshape(t.shape[0], cols, -1 if t.dim() > 2 else es).narrow(1, a, b - a)
    return u


def worker(rank_slot: int, device: str, api: str, jobs, results, go) -> None:
    """One persistent rank process: reports a failure instead of dying silently."""
    try:
        _worker(rank_slot, device, api, jobs, results, go)
    except BaseException:
        import traceback

        results.put(("error", rank_slot, traceback.format_exc()))
        raise


def _worker(rank_slot: int, device: str, api: str, jobs, results, go) -> None:
    """One persistent rank process: CUDA up once, then one load per job it is sent."""
    if device in ("cuda", "cpu"):
        import torch
        from safetensors import safe_open

        if device == "cuda":
            torch.cuda.set_device(rank_slot % torch.cuda.device_count())
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()
    results.put(("ready", rank_slot))
    while True:
        job = jobs.get()
        if job is None:
            return
        files, layers, tp, rank = job["files"], job["layers"], job["tp"], job["rank"]
        # Headers are parsed inside the timed part, as the engine's safe_open does: read from a
        # cold cache, a header read also starts the kernel's read-ahead into the tensors.
        plan = ((Path(f), lambda f=f: rank_slices(Path(f), layers, tp, rank)) for f in files)
        results.put(("armed", rank_slot))
        go.wait()
        t0 = time.monotonic()
        nbytes, kept, fallbacks = 0, [], 0
        if device in ("cuda", "cpu"):
            for f, slices in plan:
                with safe_open(str(f), framework="pt", device="cpu") as st:
                    for name, how, a, b in slices():
                        if api == "get_slice" and how != "whole":
                            sl = st.get_slice(name)
                            t = sl[a:b] if how == "rows" else sl[:, a:b]
                        else:
                            t = st.get_tensor(name)  # a lazy view of the mmap, as the engines get it
                            if how != "whole":
                                t = t.narrow(0 if how == "rows" else 1, a, b - a)
                        try:
                            g = t.to(device, copy=True)
                        except (RuntimeError, TypeError):  # no CPU copy kernel for the dtype
                            fallbacks += 1
                            g = bytes_slice(st.get_tensor(name), how, a, b).to(device, copy=True)
                        nbytes += g.numel() * g.element_size()
                        kept.append(g)
            if device == "cuda":
                torch.cuda.synchronize()
        else:
            import numpy as np

            for f, slices in plan:
                data0, meta = header(f)
                buf = np.memmap(f, dtype=np.uint8, mode="r")
                for name, how, a, b in slices():
                    s, e = meta[name]["data_offsets"]
                    t = buf[data0 + s:data0 + e]
                    shape = meta[name]["shape"]
                    if how == "rows":
                        t = t.reshape(shape[0], -1)[a:b]
                    elif how == "cols":
                        t = t.reshape(shape[0], shape[1], -1)[:, a:b]
                    c = np.array(t, copy=True)
                    nbytes += c.nbytes
                    kept.append(c)
                del buf
        t1 = time.monotonic()
        del kept
        if device == "cuda":
            torch.cuda.empty_cache()
        results.put(("done", rank_slot, {"rank": rank, "t0": t0, "t1": t1, "bytes": nbytes, "fallbacks": fallbacks}))


class Ranks:
    def __init__(self, n: int, device: str, api: str):
        ctx = mp.get_context("spawn")
        self.go = ctx.Event()
        self.results = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=worker, args=(i, device, api, self.jobs[i], self.results, self.go), daemon=True)
                      for i in range(n)]
        for p in self.procs:
            p.start()
        self._collect("ready", n)

    def _collect(self, kind: str, n: int) -> list:
        got = []
        while len(got) < n:
            msg = self.results.get(timeout=600)
            if msg[0] != kind:
                raise RuntimeError(f"rank process said {msg} while waiting for {kind}")
            got.append(msg)
        return got

    def load(self, files: list[Path], layers: int, tp: int, ranks: int) -> dict:
        self.go.clear()
        for r in range(ranks):
            self.jobs[r].put({"files": [str(f) for f in files], "layers": layers, "tp": tp, "rank": r})
        self._collect("armed", ranks)
        t_go = time.monotonic()
        self.go.set()  # the barrier: every rank is armed, all start now
        done = [m[2] for m in self._collect("done", ranks)]
        done.sort(key=lambda d: d["rank"])
        return {
            "total_s": max(d["t1"] for d in done) - t_go,
            "start_skew_s": max(d["t0"] for d in done) - t_go,
            "rank_s": [d["t1"] - t_go for d in done],
            "rank_bytes": [d["bytes"] for d in done],
            "dtype_fallbacks": sum(d["fallbacks"] for d in done),
        }

    def close(self) -> None:
        for q in self.jobs:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)


# ---------------------------------------------------------------- the run

def prepare(bin_: Path, work: Path, size: str) -> Path:
    """A synthetic R1-layout model fetched with ferry from hubsim on loopback. The hub copy is
    sparse (holes that read as zeros, no disk), so the whole disk is for the fetched model."""
    hub, model = work / "hub", work / "model"
    sh("rm", "-rf", str(work))
    work.mkdir(parents=True)
    sh(str(bin_ / "hubsim"), "generate", "--out", str(hub / REPO), "--repo", REPO, "--shards", "163",
       "--total-size", size, "--sparse")
    srv = subprocess.Popen([str(bin_ / "hubsim"), "serve", "--root", str(hub), "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, text=True)
    url = srv.stdout.readline().strip().removeprefix("hubsim listening on ")
    t = time.perf_counter()
    try:
        sh(str(bin_ / "ferry"), "fetch", REPO, "--to", str(model), "--endpoint", url, "--json")
    finally:
        srv.terminate()
        srv.wait()
    print(f"fetched in {time.perf_counter() - t:.1f} s", flush=True)
    sh("rm", "-rf", str(hub))
    return model


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["config"], r["case"]) for r in rows}, key=lambda k: (k[0], ["cold", "warm", "plan"].index(k[1])))
    for cfg, case in keys:
        rs = [r for r in rows if r["config"] == cfg and r["case"] == case]

        def stat(f) -> dict:
            v = [f(r) for r in rs]
            return {"median": statistics.median(v), "min": min(v), "max": max(v)}

        out.append({
            "config": cfg, "case": case, "reps": len(rs),
            "warm_s": stat(lambda r: r.get("warm_s", 0.0)),
            "load_s": stat(lambda r: r["load"]["total_s"]),
            "slowest_rank_s": stat(lambda r: max(r["load"]["rank_s"])),
            "fastest_rank_s": stat(lambda r: min(r["load"]["rank_s"])),
            "load_disk_read_bytes": stat(lambda r: r["load_io"].get("disk_read_bytes", r["load_io"]["pgpgin_bytes"])),
            "warm_disk_read_bytes": stat(lambda r: r.get("warm_io", {}).get("disk_read_bytes", 0)),
            "resident_after_load_bytes": stat(lambda r: r["after_load"]["resident_bytes"]),
            "cached_by_load_bytes": stat(lambda r: r["after_load"]["resident_bytes"] - r["before_load"]["resident_bytes"]),
            "resident_after_warm_bytes": stat(lambda r: r["before_load"]["resident_bytes"]),
            "wanted_resident_before_load_bytes": stat(lambda r: r["before_load"]["resident_wanted_bytes"]),
        })
    return out


def markdown(result: dict) -> str:
    """The summary as the table of docs/BENCHMARKS.md: median (min-max) of the repetitions."""
    def f(st: dict, scale: float = 1.0, d: int = 2) -> str:
        return f"{st['median'] / scale:.{d}f} ({st['min'] / scale:.{d}f}–{st['max'] / scale:.{d}f})"

    lines = ["| node (ranks) | case | warm s | load s, all ranks | fastest–slowest rank s (median) | warm + load s "
             "| GB read from disk by the load | GB of the load's bytes cached at its start | GB cached after the load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        tot = [r.get("warm_s", 0.0) + r["load"]["total_s"] for r in result["rows"]
               if r["config"] == s["config"] and r["case"] == s["case"]]
        lines.append(
            f"| {s['config']} node 0 ({result['plans'][s['config']]['ranks']}) | {s['case']} "
            f"| {f(s['warm_s']) if s['case'] != 'cold' else '–'} | {f(s['load_s'])} "
            f"| {s['fastest_rank_s']['median']:.2f}–{s['slowest_rank_s']['median']:.2f} "
            f"| {statistics.median(tot):.2f} ({min(tot):.2f}–{max(tot):.2f}) "
            f"| {f(s['load_disk_read_bytes'], 1e9)} | {f(s['wanted_resident_before_load_bytes'], 1e9)} "
            f"| {f(s['resident_after_load_bytes'], 1e9)} |")
    lines += ["", "| node | plan: node 0 bytes (weights) | this loader's ranks' bytes | cached by a cold load (mincore) |",
              "|---|---|---|---|"]
    for cfg, p in result["plans"].items():
        cold = [s for s in result["summary"] if s["config"] == cfg and s["case"] == "cold"]
        touched = f(cold[0]["cached_by_load_bytes"], 1e9) if cold else "–"
        lines.append(f"| {cfg} | {p['plan_node0_weight_bytes'] / 1e9:.2f} GB ({p['plan_node0_bytes'] / 1e9:.2f} with the small files) "
                     f"| {p['loader_node0_bytes'] / 1e9:.2f} GB | {touched} GB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--size", default="37GiB", help="37GiB: hubsim scales R1 by 3/8, so the split widths divide by 16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default="2x8,4x4")
    ap.add_argument("--device", choices=["cuda", "cpu", "numpy"], default="cuda",
                    help="where the ranks copy their slices: cuda (the GPUs), cpu (torch, a dry run), numpy (no torch)")
    ap.add_argument("--api", choices=["narrow", "get_slice"], default="narrow")
    ap.add_argument("--work", default="/tmp/ferry-tp")
    ap.add_argument("--model", help="use this fetched model directory instead of making one")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--cases", default="cold,warm,plan",
                    help="which cases to run, in order (a cold TP load through mmap faults can take minutes: see BENCHMARKS.md)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless the plan's node-0 bytes equal this loader's and a planned warm caches every byte the ranks load")
    ap.add_argument("--budget-s", type=float, default=0, help="start no repetition after this many seconds (0: no limit)")
    a = ap.parse_args()
    began = time.monotonic()
    bin_ = Path(a.bin).resolve()
    model = Path(a.model) if a.model else prepare(bin_, Path(a.work), a.size)
    files = [f for f in model_files(model) if f.suffix == ".safetensors"]
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    model_bytes = sum(f.stat().st_size for f in model_files(model))
    dev_stat = block_stat_of(model)
    configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    plans = {}
    for cfg in configs:
        nnodes, gpn = CONFIGS[cfg]
        pf = out / f"plan-{cfg}.json"
        sh(str(bin_ / "ferry"), "plan", "warm", "--nnodes", str(nnodes), "--gpus-per-node", str(gpn), "--tp", str(TP),
           "--dir", str(model), "--json", "--out", str(pf))
        plan = json.loads(pf.read_text())
        wanted = {f: byte_ranges(f, layers, TP, range(gpn)) for f in files}
        mine = sum(e - s for rs in wanted.values() for s, e in rs)
        weights = {f.name for f in files}
        plan_w = sum(r["len"] for r in plan["nodes"][0]["ranges"] if Path(r["path"]).name in weights)
        plans[cfg] = {"file": pf, "ranks": gpn, "wanted": wanted, "plan_node0_bytes": plan["nodes"][0]["bytes"],
                      "plan_node0_weight_bytes": plan_w,
                      "loader_node0_bytes": mine, "plan_nodes_bytes": [n["bytes"] for n in plan["nodes"]]}
        print(f"{cfg}: plan says node 0 reads {plan['nodes'][0]['bytes']/1e9:.2f} GB; "
              f"this loader's ranks 0-{gpn-1} read {mine/1e9:.2f} GB", flush=True)

    def write(rows: list[dict]) -> dict:
        if "machine" in machine_once:
            machine = machine_once["machine"]
        else:
            machine = machine_once["machine"] = _machine()
        result = {
            "machine": machine, "model_bytes": model_bytes, "weight_files": len(files), "layers": layers, "tp": TP,
            "plans": {c: {k: v for k, v in p.items() if k not in ("wanted", "file")} for c, p in plans.items()},
            "summary": summarize(rows), "rows": rows,
        }
        (out / "tp_results.json").write_text(json.dumps(result, indent=1))
        (out / "tp_results.md").write_text(markdown(result))
        return result

    machine_once: dict = {}

    def _machine() -> dict:
        machine = {"cpus": os.cpu_count(), "page": PAGE, "device": a.device, "api": a.api,
                   "mem_total_kb": int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))),
                   "kernel": os.uname().release, "disk": sh("df", "-h", str(model)).stdout.strip().splitlines()[-1],
                   "block_stat": str(dev_stat), "read_ahead_kb": None}
        if dev_stat is not None:
            ra = dev_stat.parent / "queue" / "read_ahead_kb"
            ra = ra if ra.exists() else dev_stat.parent.parent / "queue" / "read_ahead_kb"
            machine["read_ahead_kb"] = int(ra.read_text()) if ra.exists() else None
        if a.device == "cuda":
            import torch

            machine.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), torch=torch.__version__)
        return machine

    ranks = Ranks(max(p["ranks"] for p in plans.values()), a.device, a.api)
    reps_began = time.monotonic()
    rows = []
    try:
        for rep in range(a.reps):
            per_rep = (time.monotonic() - reps_began) / rep if rep else 0.0
            if a.budget_s and rep and time.monotonic() - began + per_rep > a.budget_s:
                print(f"stopping after {rep} repetitions: --budget-s {a.budget_s}", flush=True)
                break
            for cfg in configs:
                p = plans[cfg]
                for case in [c.strip() for c in a.cases.split(",") if c.strip()]:
                    row = {"rep": rep, "config": cfg, "case": case, "ranks": p["ranks"]}
                    row["evict"] = drop_cache(files)
                    c0 = io_counters(dev_stat)
                    if case != "cold":
                        cmd = [str(bin_ / "ferry"), "warm", str(model), "--json"]
                        if case == "plan":
                            cmd += ["--plan", str(p["file"]), "--node-rank", "0"]
                        t = time.perf_counter()
                        row["warm_report"] = json.loads(sh(*cmd).stdout)
                        row["warm_s"] = time.perf_counter() - t
                    c1 = io_counters(dev_stat)
                    row["warm_io"] = delta(c0, c1)
                    row["before_load"] = residency(files, p["wanted"])
                    c1 = io_counters(dev_stat)
                    row["load"] = ranks.load(files, layers, TP, p["ranks"])
                    row["load_io"] = delta(c1, io_counters(dev_stat))
                    row["after_load"] = residency(files, p["wanted"])
                    rows.append(row)
                    brief = {k: row[k] for k in ("rep", "config", "case")}
                    brief.update(warm_s=round(row.get("warm_s", 0.0), 2), load_s=round(row["load"]["total_s"], 2),
                                 load_read_GB=round(row["load_io"].get("disk_read_bytes", row["load_io"]["pgpgin_bytes"]) / 1e9, 2),
                                 resident_after_GB=round(row["after_load"]["resident_bytes"] / 1e9, 2),
                                 wanted_warm_GB=round(row["before_load"]["resident_wanted_bytes"] / 1e9, 2))
                    print(json.dumps(brief), flush=True)
                    write(rows)
    finally:
        ranks.close()

    result = write(rows)
    print(json.dumps(result["summary"], indent=1))
    problems = []
    for cfg, p in plans.items():
        if p["plan_node0_weight_bytes"] != p["loader_node0_bytes"]:
            problems.append(f"{cfg}: the plan's node 0 reads {p['plan_node0_weight_bytes']} bytes of weights, "
                            f"its ranks load {p['loader_node0_bytes']}")
        for r in rows:
            if r["config"] == cfg and r["case"] in ("warm", "plan") and r["before_load"]["resident_wanted_bytes"] != p["loader_node0_bytes"]:
                problems.append(f"{cfg} rep {r['rep']} {r['case']}: {r['before_load']['resident_wanted_bytes']} of the "
                                f"{p['loader_node0_bytes']} bytes the ranks load were cached when the load began")
    for msg in problems:
        print(f"tp_load: {msg}", file=sys.stderr)
    return 1 if a.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
