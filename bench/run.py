#!/usr/bin/env python3
"""ferry against its peers on the same hubsim, the same synthetic DeepSeek-R1-layout models.

Entry point: `bench/run` (creates the venv, then runs this file). See docs/BENCHMARKS.md.

Two models: the main one (--repo/--shards/--size: many small shards), which every fault scenario and
the warm part use, and a second one with few large shards (--big-repo/--big-shards/--big-size), which
only the big-shards scenario fetches (and which is generated only when that scenario runs).
For every repetition x scenario x tool: a cold, empty destination; the source's page cache dropped
(posix_fadvise DONTNEED on hubsim's files); hubsim's fault knobs set; its stats reset; the tool run
as a child process (wall time; CPU seconds from wait4's rusage of the whole reaped tree; peak RSS
= the largest sum of RSS over the process tree, sampled from /proc every 0.05 s, or GNU time's %M for
the tool's largest process, if larger: see measure()); hubsim's bytes_sent read back; then, outside the timed part, every file's sha256 compared
with the source's. Timings are measured and tabulated, never asserted: the exit status says only
whether every tool produced a verified result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench"
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024

# ---------------------------------------------------------------------------------------------
# scenarios (hubsim fault sets)

CAP_BPS = 50_000_000  # 400 Mbit/s: the seed's 100 Mbit/s link scaled x4 for a loopback box
PER_BODY_BPS = 20_000_000  # 20 MB/s per body: CDN-style per-connection throttling


BIG_SHARD_MIN = 256_000_000  # the big-shards scenario's aim: every safetensors shard at least 256 MB


def scenarios(reset_after: int) -> dict[str, dict]:
    """Scenario name -> {"model": the model it fetches ("main" or "big"), "faults": hubsim's fault set}."""
    main = {
        "plain": {},
        "cap-400Mbit": {"bandwidth_total_bps": CAP_BPS},
        "per-conn-20MB/s": {"bandwidth_per_body_bps": PER_BODY_BPS},
        "latency-50ms": {"latency_ms": 50},
        "reset-1%": {"rules": [{"kind": "reset", "after_bytes": reset_after, "probability": 0.01}]},
    }
    out = {name: {"model": "main", "faults": faults} for name, faults in main.items()}
    out["big-shards"] = {"model": "big", "faults": {}}
    return out


SCENARIO_NOTES = {
    "plain": "loopback, no faults",
    "cap-400Mbit": f"bandwidth_total_bps={CAP_BPS} (400 Mbit/s shared by all bodies)",
    "per-conn-20MB/s": f"bandwidth_per_body_bps={PER_BODY_BPS} (20 MB/s per response body)",
    "latency-50ms": "latency_ms=50 before the headers of every request",
    "reset-1%": "rule reset, probability 0.01 per file GET, mid-body",
    "big-shards": "the second model (few shards of >= 256 MB each), loopback, no faults",
}

ALL_TOOLS = ["ferry", "ferry-c16", "ferry-64MiB", "hf", "hf_transfer", "modelscope", "aria2c"]
TOOL_NOTES = {
    "ferry": "`ferry fetch --chunk-size C` (adaptive connections: starts at 8, doubles while it pays (every 0.65 s at first, then every 1.25 s), up to 128 (fewer when memory is short), halves on 429/503)",
    "ferry-c16": "`ferry fetch --chunk-size C --connections 16` (fixed count, no ramp-up)",
    "ferry-64MiB": "`ferry fetch` with every default (64 MiB ranges: one request per shard of the main model "
                   "at its default size)",
    "hf": "`hf download --local-dir D --max-workers W` (huggingface_hub 2.4.0, plain HTTP, one GET per file)",
    "hf_transfer": "hf_transfer 0.1.9 `download(url, filename, max_files=100, chunk_size=C, parallel_failures=3, "
                   "max_retries=5)` per file from 8 Python threads, as huggingface_hub < 1.0 called it",
    "modelscope": "`modelscope download --local-dir D --max-workers 8` (modelscope 1.40.2 / modelscope-hub 0.5.1) with "
                  "MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS=16 (its maximum), PARALLEL_THRESHOLD_MB=1, PART_SIZE_MB=C",
    "aria2c": "`aria2c -j 8 -x 16 -s 16 -k C --file-allocation=none --max-tries=20 --retry-wait=1` on a URL list "
              "(resolve URLs of the commit, listed by the harness outside the timing)",
}
WARM_METHODS = ["ferry warm", "cat", "xargs -P8 cat", "vmtouch -t"]
# A warm method counts as done when this share of the pages is resident right after it (not 100 %:
# on a shared machine other processes' memory use can evict a few pages in between).
WARM_RESIDENT = 0.95

# ---------------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(s: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r}")
    num, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if binary or not unit else 1000
    return int(num * base ** " KMGT".index(unit or " "))


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def http_json(url: str, body: bytes | None = None, timeout: float = 60) -> object:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.load(resp)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def drop_cache(paths: list[Path]) -> None:
    """Evicts files from the page cache (clean pages only: callers fsync first if needed)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def machine() -> dict:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        head += " + uncommitted changes" if dirty else ""
    except OSError:
        head = "?"
    return {
        "git": head,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": human(mem),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


# ---------------------------------------------------------------------------------------------
# process measurement


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Measured:
    def __init__(self, rc: int, wall: float, cpu: float, peak_rss: int, timed_out: bool):
        self.rc, self.wall, self.cpu, self.peak_rss, self.timed_out = rc, wall, cpu, peak_rss, timed_out


CURRENT_CHILD: list[int] = []  # the process group being measured, for the signal handler


TIME_BIN = "/usr/bin/time"


def measure(cmd: list[str], env: dict, cwd: Path, stdout: Path, stderr: Path, timeout: float) -> Measured:
    """Runs cmd; wall time, CPU seconds of the reaped tree, peak RSS.

    Peak RSS is the larger of (a) the largest sum of RSS over the tool's process tree, sampled from
    /proc every 0.05 s, and (b) GNU time's %M (ru_maxrss of the tool's largest process) when
    /usr/bin/time exists. The tool is started through /usr/bin/time rather than straight from this
    harness because Linux carries a process's RSS high-water mark across exec: a tool forked from
    this Python process would report at least the harness's own RSS as its ru_maxrss.
    """
    timefile = stdout.with_name("time.txt")
    wrapped = os.access(TIME_BIN, os.X_OK)
    full = [TIME_BIN, "-f", "%M", "-o", str(timefile), *cmd] if wrapped else cmd
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    CURRENT_CHILD.append(proc.pid)
    peak = [0]
    done = threading.Event()
    timed_out = [False]

    def sample() -> None:
        while not done.wait(0.05):
            tree = _tree(proc.pid)
            if wrapped:
                tree = tree[1:]  # not /usr/bin/time itself
            peak[0] = max(peak[0], sum(_rss(p) for p in tree))
            if time.monotonic() - t0 > timeout and not timed_out[0]:
                timed_out[0] = True
                _killpg(proc.pid)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        done.set()
        th.join()
        _killpg(proc.pid)  # leftovers of the tool (none expected)
        CURRENT_CHILD.remove(proc.pid)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    if wrapped:
        try:
            lines = timefile.read_text().split()
            peak[0] = max(peak[0], int(lines[-1]) * 1024)
            # GNU time reports a failing child as "Command exited with non-zero status N" + exit N
        except (OSError, ValueError, IndexError):
            pass
    return Measured(proc.returncode, wall, cpu, peak[0], timed_out[0])


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------------
# hubsim


class Hubsim:
    def __init__(self, binary: Path, root: Path, logfile: Path):
        self.proc = subprocess.Popen([str(binary), "serve", "--root", str(root), "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=open(logfile, "wb"), text=True,
                                     start_new_session=True)
        line: list[str] = []
        t = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(30)
        if not line or not line[0].startswith("hubsim listening on http://"):
            self.stop()
            raise RuntimeError(f"hubsim serve did not report readiness: {line!r} (log: {logfile})")
        self.url = line[0].strip().removeprefix("hubsim listening on ")

    def faults(self, faults: dict) -> None:
        http_json(self.url + "/_hubsim/faults", json.dumps(faults).encode())

    def reset_stats(self) -> None:
        http_json(self.url + "/_hubsim/stats/reset", b"")

    def stats(self) -> dict:
        return http_json(self.url + "/_hubsim/stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# setup: binaries, aria2c/vmtouch, model


def find_bins(args: argparse.Namespace) -> tuple[Path, Path]:
    """$FERRY_BIN/$HUBSIM_BIN, else target/release (target/debug first with --smoke, as CI just built
    it), else a build."""
    cands = []
    if os.environ.get("FERRY_BIN") and os.environ.get("HUBSIM_BIN"):
        cands.append((Path(os.environ["FERRY_BIN"]), Path(os.environ["HUBSIM_BIN"])))
    profiles = ["debug", "release"] if args.smoke else ["release"]
    for prof in profiles:
        cands.append((REPO_ROOT / f"target/{prof}/ferry", REPO_ROOT / f"target/{prof}/hubsim"))
    for ferry, hubsim in cands:
        if ferry.is_file() and hubsim.is_file():
            return ferry.resolve(), hubsim.resolve()
    prof = profiles[0]
    log(f"building ferry and hubsim ({prof})")
    subprocess.run(["cargo", "build", *(["--release"] if prof == "release" else []), "-p", "ferry", "-p", "hubsim"],
                   cwd=REPO_ROOT, check=True)
    return REPO_ROOT / f"target/{prof}/ferry", REPO_ROOT / f"target/{prof}/hubsim"


def ensure_system_tools(need: list[str]) -> None:
    missing = [t for t in need if shutil.which(t) is None]
    if not missing:
        return
    pkgs = {"aria2c": "aria2", "vmtouch": "vmtouch"}
    if os.geteuid() != 0:
        sys.exit(f"bench: {', '.join(missing)} missing and not root: run "
                 f"`apt-get install -y {' '.join(pkgs[m] for m in missing)}` or leave those tools out (--tools/--warm)")
    log(f"installing {' '.join(pkgs[m] for m in missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *[pkgs[m] for m in missing]], check=True, env=env,
                   stdout=subprocess.DEVNULL)


class Model:
    """One synthetic model on hubsim: what a scenario's runs fetch and are verified against.

    key is "main" or "big" (what scenarios() names); files maps each path to (size, sha256), filled by
    load(); url_list / aria2_list are this model's resolve-URL lists, written by write_url_lists().
    """

    def __init__(self, key: str, repo: str, shards: int, size: int):
        self.key, self.repo, self.shards, self.size = key, repo, shards, size
        self.files: dict[str, tuple[int, str]] = {}
        self.dir = Path()
        self.url_list = self.aria2_list = Path()

    def load(self, hubsim: Path, root: Path) -> None:
        self.dir = root / self.repo
        self.files = ensure_model(hubsim, root, self.repo, self.shards, self.size)

    @property
    def total(self) -> int:
        return sum(s for s, _ in self.files.values())

    def sources(self) -> list[Path]:
        return [self.dir / p for p in self.files]

    def shard_sizes(self) -> list[int]:
        return sorted(s for p, (s, _) in self.files.items() if p.endswith(".safetensors"))

    def describe(self) -> dict:
        """What the report says about the model (kept in the results JSON)."""
        shards = self.shard_sizes()
        return {"repo": self.repo, "shards": len(shards), "total_bytes": self.total, "files": len(self.files),
                "min_shard": shards[0] if shards else 0, "max_shard": shards[-1] if shards else 0}


def models_needed(args: argparse.Namespace) -> dict[str, Model]:
    """The models this run's scenarios (and warm methods: always the main model) fetch, unloaded."""
    scen = scenarios(0)
    keys = {scen[s]["model"] for s in args.scenarios} | ({"main"} if args.warm else set())
    specs = {"main": (args.repo, args.shards, args.size), "big": (args.big_repo, args.big_shards, args.big_size)}
    return {k: Model(k, *specs[k]) for k in ("main", "big") if k in keys}


def ensure_model(hubsim: Path, root: Path, repo: str, shards: int, size: int) -> dict:
    """Generates the model once per (repo, shards, size); returns {path: (size, sha256)}."""
    repo_dir = root / repo
    stamp = root / f".bench-model-{repo.replace('/', '--')}.json"
    want = {"repo": repo, "shards": shards, "size": size}
    if stamp.is_file():
        data = json.loads(stamp.read_text())
        if data.get("spec") == want and all((repo_dir / p).is_file() and (repo_dir / p).stat().st_size == s
                                            for p, (s, _) in data["files"].items()):
            return data["files"]
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    log(f"generating {repo}: {shards} shards, {human(size)}")
    subprocess.run([str(hubsim), "generate", "--out", str(repo_dir), "--repo", repo, "--shards", str(shards),
                    "--total-size", str(size)], check=True, stdout=subprocess.DEVNULL)
    files = {}
    for p in sorted(repo_dir.rglob("*")):
        if p.is_file() and p.name != ".hubsim.json":
            rel = str(p.relative_to(repo_dir))
            files[rel] = (p.stat().st_size, sha256_file(p))
    stamp.write_text(json.dumps({"spec": want, "files": files}))
    return files


def verify_dest(dest: Path, files: dict) -> tuple[bool, str]:
    bad = []
    for rel, (size, digest) in files.items():
        p = dest / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
        elif p.stat().st_size != size:
            bad.append(f"{rel}: {p.stat().st_size} bytes, want {size}")
        elif sha256_file(p) != digest:
            bad.append(f"{rel}: sha256 differs")
    return (not bad, "; ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""))


# ---------------------------------------------------------------------------------------------
# tools


def base_env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "MODELSCOPE_")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(work / "hf-home"),
        "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false", "MODELSCOPE_LOG_LEVEL": "40",
        "MODELSCOPE_CACHE": str(work / "ms-cache"), "MODELSCOPE_HOME": str(work / "ms-home"),
        "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1",
    })
    return env


def tool_command(tool: str, args: argparse.Namespace, ctx: dict, model: Model, dest: Path,
                 work: Path) -> tuple[list[str], dict]:
    """The command line and environment that fetch model into dest with tool."""
    env = base_env(work)
    url, repo, chunk = ctx["url"], model.repo, args.chunk_size
    py = sys.executable
    if tool in ("ferry", "ferry-c16", "ferry-64MiB"):
        cmd = [str(ctx["ferry"]), "fetch", repo, "--to", str(dest), "--endpoint", url, "--json"]
        if tool != "ferry-64MiB":
            cmd += ["--chunk-size", str(chunk)]
        if tool == "ferry-c16":
            cmd += ["--connections", "16"]
        if args.ferry_jobs:
            cmd += ["--jobs", str(args.ferry_jobs)]
        if args.ferry_connections:
            cmd += ["--connections", str(args.ferry_connections)]
        return cmd, env
    if tool == "hf":
        env["HF_ENDPOINT"] = url
        hf = Path(sys.executable).parent / "hf"
        return [str(hf), "download", repo, "--local-dir", str(dest), "--max-workers", str(args.hf_workers)], env
    if tool == "hf_transfer":
        return [py, str(BENCH / "peers.py"), "hf_transfer", "--list", str(model.url_list), "--to", str(dest),
                "--workers", "8", "--max-files", "100", "--chunk-size", str(chunk)], env
    if tool == "modelscope":
        env["MODELSCOPE_ENDPOINT"] = url
        env["MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS"] = "16"  # its maximum (min(value, 16) in modelscope_hub)
        env["MODELSCOPE_DOWNLOAD_PARALLEL_THRESHOLD_MB"] = "1"  # files > 1 MiB are split into parts
        env["MODELSCOPE_DOWNLOAD_PART_SIZE_MB"] = str(max(1, chunk // MiB))
        ms = Path(sys.executable).parent / "modelscope"
        return [str(ms), "download", repo, "--local-dir", str(dest), "--max-workers", "8"], env
    if tool == "aria2c":
        return ["aria2c", "--input-file", str(model.aria2_list), "--dir", str(dest),
                "-j", "8", "-x", "16", "-s", "16", "-k", f"{max(1, chunk // MiB)}M",
                "--file-allocation=none", "--auto-file-renaming=false", "--allow-overwrite=true",
                "--max-tries=20", "--retry-wait=1", "--timeout=30", "--connect-timeout=10",
                "--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
                "--no-conf", "--check-integrity=false"], env
    raise ValueError(tool)


def write_url_lists(url: str, model: Model, work: Path) -> None:
    """Resolve main -> commit and list the model's tree like the hub client does (outside the timing);
    writes its URL lists for hf_transfer and aria2c."""
    info = http_json(f"{url}/api/models/{model.repo}/revision/main")
    commit = info["sha"]
    tree = http_json(f"{url}/api/models/{model.repo}/tree/{commit}?recursive=true&expand=false")
    entries = []
    for e in tree:
        if e["type"] != "file":
            continue
        entries.append({"path": e["path"], "size": e["size"],
                        "url": f"{url}/{model.repo}/resolve/{commit}/{urllib.request.quote(e['path'])}"})
    model.url_list = work / f"urls-{model.key}.json"
    model.url_list.write_text(json.dumps(entries))
    model.aria2_list = work / f"aria2-input-{model.key}.txt"
    model.aria2_list.write_text("".join(f"{e['url']}\n  out={e['path']}\n" for e in entries))


def ferry_summary(stdout: Path) -> dict:
    summary = {}
    try:
        for line in stdout.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{") and '"summary"' in line:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if d.get("event") == "summary":
                    summary = d
    except OSError:
        pass
    return summary


# ---------------------------------------------------------------------------------------------
# runs


def run_fetches(args, ctx, hub: Hubsim, models: dict[str, Model], work: Path) -> list[dict]:
    scen = scenarios(args.reset_after)
    results = []
    n_runs = args.reps * len(args.scenarios) * len(args.tools)
    i = 0
    for rep in range(args.reps):
        for sname in args.scenarios:
            model = models[scen[sname]["model"]]
            total = model.total
            # rotate the tool order per repetition so no tool always runs right after another
            tools = args.tools[rep % len(args.tools):] + args.tools[:rep % len(args.tools)]
            for tool in tools:
                i += 1
                run_dir = work / "runs" / f"r{rep}-{sname.replace('/', '_')}-{tool}"
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir(parents=True)
                dest = work / "dest"
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                cmd, env = tool_command(tool, args, ctx, model, dest, run_dir)
                hub.faults(scen[sname]["faults"])
                drop_cache(model.sources())
                hub.reset_stats()
                m = measure(cmd, env, run_dir, run_dir / "stdout", run_dir / "stderr", args.timeout)
                stats = hub.stats()
                hub.faults({})
                ok, why = (False, "timed out") if m.timed_out else (False, f"exit {m.rc}") if m.rc else (True, "")
                if ok:
                    ok, why = verify_dest(dest, model.files)
                if not ok:
                    tail = (run_dir / "stderr").read_text(errors="replace")[-600:]
                    why += f" | stderr: {tail.strip()}" if tail.strip() else ""
                r = {
                    "rep": rep, "scenario": sname, "model": model.repo, "tool": tool, "rc": m.rc, "wall_s": round(m.wall, 3),
                    "cpu_s": round(m.cpu, 2), "peak_rss": m.peak_rss, "bytes_sent": stats.get("bytes_sent", 0),
                    "requests": stats.get("requests", 0), "max_concurrent_bodies": stats.get("max_concurrent_bodies"),
                    "faults_fired": stats.get("faults_fired", {}), "total_bytes": total,
                    "verified": ok, "error": why, "command": " ".join(cmd),
                }
                if tool.startswith("ferry"):
                    s = ferry_summary(run_dir / "stdout")
                    r["ferry_summary"] = {k: v for k, v in s.items() if k not in ("event", "files")}
                results.append(r)
                log(f"[{i}/{n_runs}] rep {rep} {sname:16s} {tool:12s} {m.wall:7.2f} s "
                    f"{total / m.wall / 1e6:8.1f} MB/s cpu {m.cpu:6.2f} s rss {human(m.peak_rss):>10s} "
                    f"sent {stats.get('bytes_sent', 0) / total:5.3f}x {'ok' if ok else 'FAILED: ' + why[:300]}")
                shutil.rmtree(dest, ignore_errors=True)
                if ok:
                    shutil.rmtree(run_dir / "hf-home", ignore_errors=True)
                    shutil.rmtree(run_dir / "ms-cache", ignore_errors=True)
    return results


def run_warm(args, ctx, model: Model, work: Path) -> list[dict]:
    src = model.dir
    paths = model.sources()
    total = model.total
    results = []
    listfile = work / "warm-files.txt"
    listfile.write_bytes(b"\0".join(str(p).encode() for p in paths) + b"\0")
    for rep in range(args.reps):
        for method in args.warm:
            if method == "ferry warm":
                cmd = [str(ctx["ferry"]), "warm", str(src), "--json"]
            elif method == "cat":
                cmd = ["sh", "-c", f"xargs -0 cat < '{listfile}' > /dev/null"]  # one cat, files in order
            elif method.startswith("xargs"):
                cmd = ["sh", "-c", f"xargs -0 -P 8 -n 8 cat < '{listfile}' > /dev/null"]
            elif method == "vmtouch -t":
                cmd = ["vmtouch", "-q", "-t", *map(str, paths)]
            else:
                raise ValueError(method)
            run_dir = work / "warm" / f"r{rep}-{method.replace(' ', '_')}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            drop_cache(paths)
            before = resident_fraction(paths)
            m = measure(cmd, dict(os.environ), run_dir, run_dir / "stdout", run_dir / "stderr", args.timeout)
            after = resident_fraction(paths)
            ok = m.rc == 0 and not m.timed_out and after is not None and after >= WARM_RESIDENT
            results.append({"rep": rep, "method": method, "wall_s": round(m.wall, 3), "cpu_s": round(m.cpu, 2),
                            "peak_rss": m.peak_rss, "total_bytes": total, "rc": m.rc,
                            "resident_before": before, "resident_after": after, "verified": ok,
                            "command": " ".join(cmd)})
            log(f"warm rep {rep} {method:14s} {m.wall:7.2f} s {total / m.wall / 1e9:6.2f} GB/s "
                f"resident {before if before is None else round(before, 3)} -> {after if after is None else round(after, 3)}"
                f" {'ok' if ok else 'FAILED rc=' + str(m.rc)}")
    return results


def resident_fraction(paths: list[Path]) -> float | None:
    """Share of the files' pages in the page cache (mincore over a private mapping), None if unknown."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    resident = pages = 0
    for p in paths:
        size = p.stat().st_size
        if size == 0:
            continue
        with open(p, "rb") as f:
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)  # private: never written back
        try:
            n = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(n)
            anchor = ctypes.c_char.from_buffer(mm)
            rc = libc.mincore(ctypes.addressof(anchor), size, vec)
            del anchor
            if rc != 0:
                return None
            resident += sum(b & 1 for b in vec.raw)
            pages += n
        finally:
            mm.close()
    return resident / pages if pages else 1.0


# ---------------------------------------------------------------------------------------------
# report


def med_span(vals: list[float]) -> tuple[float, float, float]:
    return statistics.median(vals), min(vals), max(vals)


def fmt_span(vals: list[float], fmt: str = "{:.1f}") -> str:
    m, lo, hi = med_span(vals)
    if len(vals) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(lo)}–{fmt.format(hi)})"


def summarize(fetch: list[dict], args) -> list[dict]:
    rows = []
    for sname in args.scenarios:
        ferry_ok = [r["wall_s"] for r in fetch if r["scenario"] == sname and r["tool"] == "ferry" and r["verified"]]
        ferry_med = statistics.median(ferry_ok) if ferry_ok else None
        for tool in args.tools:
            rs = [r for r in fetch if r["scenario"] == sname and r["tool"] == tool]
            if not rs:
                continue
            ok = [r for r in rs if r["verified"]]
            row = {"scenario": sname, "tool": tool, "n": len(rs), "n_ok": len(ok)}
            if ok:
                walls = [r["wall_s"] for r in ok]
                tput = [r["total_bytes"] / r["wall_s"] / 1e6 for r in ok]
                row.update({
                    "wall": walls, "mbps": tput, "wall_med": statistics.median(walls),
                    "mbps_med": statistics.median(tput),
                    "ratio": statistics.median(walls) / ferry_med if ferry_med else None,
                    "cap_pct": [t * 1e6 / CAP_BPS * 100 for t in tput] if sname.startswith("cap") else None,
                    "rss": [r["peak_rss"] / MiB for r in ok], "cpu": [r["cpu_s"] for r in ok],
                    "sent": [r["bytes_sent"] / r["total_bytes"] for r in ok],
                    "bodies": [r["max_concurrent_bodies"] or 0 for r in ok],
                    "requests": [r["requests"] for r in ok],
                    "resets": [r["faults_fired"].get("reset", 0) for r in ok],
                })
                if tool.startswith("ferry"):
                    row["retries"] = [r.get("ferry_summary", {}).get("retries") for r in ok]
            row["errors"] = sorted({r["error"][:160] for r in rs if not r["verified"]})
            rows.append(row)
    return rows


def fetch_table(rows: list[dict]) -> str:
    out = ["| scenario | tool | wall s, median (min–max) | MB/s | time ÷ ferry's | % of cap | peak RSS MiB | CPU s | "
           "hubsim sent ÷ size | peak bodies | requests | verified |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "wall" not in r:
            out.append(f"| {r['scenario']} | {r['tool']} | – | – | – | – | – | – | – | – | – | {r['n_ok']}/{r['n']} ✗ |")
            continue
        ratio = "1.00" if r["tool"] == "ferry" else (f"{r['ratio']:.2f}" if r["ratio"] else "–")
        cap = fmt_span(r["cap_pct"], "{:.0f}") + " %" if r["cap_pct"] else ""
        out.append(
            f"| {r['scenario']} | {r['tool']} | {fmt_span(r['wall'], '{:.2f}')} | {fmt_span(r['mbps'], '{:.0f}')} | "
            f"{ratio} | {cap} | {fmt_span(r['rss'], '{:.0f}')} | {fmt_span(r['cpu'], '{:.1f}')} | "
            f"{fmt_span(r['sent'], '{:.3f}')} | {statistics.median(r['bodies']):.0f} | "
            f"{statistics.median(r['requests']):.0f} | {r['n_ok']}/{r['n']}{'' if r['n_ok'] == r['n'] else ' ✗'} |")
    return "\n".join(out)


def warm_table(warm: list[dict], methods: list[str]) -> str:
    out = ["| method | wall s, median (min–max) | GB/s | peak RSS MiB | CPU s | resident after | ok |",
           "|---|---|---|---|---|---|---|"]
    for m in methods:
        rs = [r for r in warm if r["method"] == m]
        ok = [r for r in rs if r["verified"]]
        if not ok:
            out.append(f"| `{m}` | – | – | – | – | – | 0/{len(rs)} ✗ |")
            continue
        out.append(
            f"| `{m}` | {fmt_span([r['wall_s'] for r in ok], '{:.2f}')} | "
            f"{fmt_span([r['total_bytes'] / r['wall_s'] / 1e9 for r in ok], '{:.2f}')} | "
            f"{fmt_span([r['peak_rss'] / MiB for r in ok], '{:.0f}')} | {fmt_span([r['cpu_s'] for r in ok], '{:.2f}')} | "
            f"{min(r['resident_after'] for r in ok) * 100:.0f} % | {len(ok)}/{len(rs)} |")
    return "\n".join(out)


def plot(rows: list[dict], args, models: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / max(1, len(args.tools))
    for ti, tool in enumerate(args.tools):
        xs, ys, lo, hi = [], [], [], []
        for si, sname in enumerate(args.scenarios):
            r = next((r for r in rows if r["scenario"] == sname and r["tool"] == tool and "mbps" in r), None)
            if not r:
                continue
            m, a, b = med_span(r["mbps"])
            xs.append(si + (ti - (len(args.tools) - 1) / 2) * width)
            ys.append(m)
            lo.append(m - a)
            hi.append(b - m)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=tool)
    ax.set_xticks(range(len(args.scenarios)))
    scen, labels = scenarios(0), []
    for s in args.scenarios:
        d = models.get(scen[s]["model"]) if scen[s]["model"] != "main" else None
        labels.append(f"{s}\n({d['shards']} shards of {d['min_shard'] / 1e6:.0f} MB+)" if d else s)
    ax.set_xticklabels(labels)
    ax.set_ylabel("throughput, MB/s (median; bars: min–max)")
    ax.axhline(CAP_BPS / 1e6, color="grey", lw=0.6, ls="--")
    ax.set_title("; ".join(model_words(k, d, brief=True) for k, d in models.items()) +
                 f"; {args.reps} rep(s); hubsim on loopback", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_words(key: str, d: dict, brief: bool = False) -> str:
    """How the run header (and, brief, the plot's title) names a model: the main one by its layout, the
    big one by the scenario that fetches it and its shard sizes."""
    if key == "main":
        words = f"model {d['repo']} layout, {d['shards']} shards, {human(d['total_bytes'])}"
        return words if brief else words + f" ({d['total_bytes']:,} bytes)"
    users = "/".join(s for s, v in scenarios(0).items() if v["model"] == key)
    if brief:
        return f"{users}: {d['shards']} shards of {d['min_shard'] / 1e6:.0f} MB+, {human(d['total_bytes'])}"
    return (f"{users}: model {d['repo']}, {d['shards']} shards of {d['min_shard']:,}–{d['max_shard']:,} bytes, "
            f"{human(d['total_bytes'])} ({d['total_bytes']:,} bytes)")


def set_notes(args, models: dict[str, dict]) -> None:
    """Scenario notes that depend on this run's models and flags."""
    SCENARIO_NOTES["reset-1%"] = f"rule reset, probability 0.01 per file GET, {human(args.reset_after)} into the body"
    big = models.get("big")
    if big:
        aim = ("every safetensors shard ≥ 256 MB = 256,000,000 bytes" if big["min_shard"] >= BIG_SHARD_MIN else
               "**below the 256 MB aim** (a small --big-size)")
        SCENARIO_NOTES["big-shards"] = (
            f"a second model, {big['repo']} (`hubsim generate --shards {big['shards']} --total-size "
            f"{human(args.big_size).replace(' ', '')}`: the total splits about evenly over the shards), "
            f"{big['shards']} shards of {big['min_shard']:,}–{big['max_shard']:,} bytes, {aim}; loopback, no faults; "
            "every tool as in the other scenarios, its own URL lists, hashes and MB/s from its own size")


def render_sections(data: dict, rows: list[dict], args) -> tuple[str, str]:
    m = data["machine"]
    fetch = [
        "<!-- bench:fetch:begin (generated by bench/run; edit the notes below the markers) -->",
        f"Run: {data['finished']} · `{data['command']}` · {args.reps} repetition(s) · "
        + " · ".join(model_words(k, d) for k, d in data["models"].items())
        + f" · chunk/part size {human(args.chunk_size)} for every tool that has one",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {m['loadavg_at_start']}; checkout at {m['git']}, ferry binary {data['ferry_bin']} built {data.get('ferry_built', '?')} — **shared with other engineers' builds and tests "
        "(CPU contention): absolute numbers are noisy, compare within a row group.**",
        "",
        "Tools: " + "; ".join(f"**{t}**: {TOOL_NOTES[t]}" for t in args.tools) +
        f" (C = {human(args.chunk_size)}, W = {args.hf_workers}).",
        "",
        "Scenarios: " + "; ".join(f"**{s}**: {SCENARIO_NOTES[s]}" for s in args.scenarios) + ".",
        "",
        fetch_table(rows),
        "",
        f"![fetch throughput]({Path(args.plot).name if args.plot else 'bench-fetch.png'})",
        "",
    ]
    errs = [(r["scenario"], r["tool"], e) for r in rows for e in r.get("errors", [])]
    if errs:
        fetch.append("Failures:")
        fetch += [f"- {s} / {t}: `{e}`" for s, t, e in errs]
        fetch.append("")
    fr = [r for r in rows if r["tool"].startswith("ferry") and r.get("retries")]
    if fr:
        fetch.append("ferry's own `--json` summary, retries per run: " + "; ".join(
            f"{r['scenario']} ({r['tool']}): {r['retries']}" for r in fr))
        fetch.append("")
    fetch.append("<!-- bench:fetch:end -->")
    warm = ["<!-- bench:warm:begin (generated by bench/run) -->"]
    if data.get("warm"):
        warm += [f"Same machine and run; the source model ({human(data['total_bytes'])}, {len(data['files'])} files) "
                 "evicted with posix_fadvise(DONTNEED) before each method; residency checked with mincore after.", "",
                 warm_table(data["warm"], args.warm), ""]
    warm.append("<!-- bench:warm:end -->")
    return "\n".join(fetch), "\n".join(warm)


def update_doc(doc: Path, fetch: str, warm: str) -> None:
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"

    def put(text: str, heading: str, tag: str, body: str) -> str:
        pat = re.compile(rf"<!-- bench:{tag}:begin.*?<!-- bench:{tag}:end -->", re.S)
        if pat.search(text):
            return pat.sub(lambda _: body, text)
        if re.search(rf"^{re.escape(heading)}\s*$", text, re.M):
            return re.sub(rf"^({re.escape(heading)}\s*\n)", lambda mm: mm.group(1) + "\n" + body + "\n", text,
                          count=1, flags=re.M)
        return text.rstrip("\n") + f"\n\n{heading}\n\n{body}\n"

    text = put(text, "## Fetch", "fetch", fetch)
    text = put(text, "## Warm: peers", "warm", warm)
    doc.write_text(text)


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, default=parse_size("2GiB"),
                   help="total size of the main model's shards (default 2GiB, 163 shards of ~13 MB; every "
                        "scenario but big-shards, and the warm part, use it). The whole default run, big-shards "
                        "included, takes ~40 min on 2 cores; --size 512MiB for a quicker look")
    p.add_argument("--shards", type=int, default=163, help="the main model's shard count (default 163)")
    p.add_argument("--repo", default="deepseek-ai/DeepSeek-R1", help="the main model's repository id")
    p.add_argument("--big-size", type=parse_size, default=None,
                   help="total size of the big-shards scenario's second model (default 1GiB, 4 shards of "
                        "~268 MB: hubsim splits the total about evenly, so keep it >= 256 MB x --big-shards; "
                        "64MiB with --smoke). Generated only when big-shards runs")
    p.add_argument("--big-shards", type=int, default=4, help="the second model's shard count (default 4)")
    p.add_argument("--big-repo", default=None, help="the second model's repository id (default: --repo + '-big-shards')")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma list of {ALL_TOOLS}")
    p.add_argument("--scenarios", default=None, help=f"comma list of {', '.join(scenarios(0))} (default: all)".replace("%", "%%"))
    p.add_argument("--warm", default=",".join(WARM_METHODS), help="comma list of warm methods, '' for none")
    p.add_argument("--chunk-size", type=parse_size, default=parse_size("1MiB"),
                   help="ranged-request / part size given to every tool that has one (default 1MiB: "
                        "the real shards' 64 MiB scaled to the small model; aria2c's minimum)")
    p.add_argument("--hf-workers", type=int, default=16, help="hf download --max-workers")
    p.add_argument("--ferry-jobs", type=int, default=0)
    p.add_argument("--ferry-connections", type=int, default=0)
    p.add_argument("--reset-after", type=parse_size, default=0,
                   help="bytes into a body before a reset fault fires (default: min(512KiB, median shard / 2))")
    p.add_argument("--timeout", type=float, default=300, help="seconds per tool run before it counts as failed")
    p.add_argument("--work", default=str(REPO_ROOT / ".work" / "bench"))
    p.add_argument("--doc", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"), help="'' to write no doc")
    p.add_argument("--plot", default=str(REPO_ROOT / "docs" / "bench-fetch.png"), help="'' for no plot")
    p.add_argument("--smoke", action="store_true", help="CI variant: allow target/debug binaries")
    p.add_argument("--report", metavar="RESULTS_JSON", help="only re-render tables/plot/doc from an earlier run's results")
    args = p.parse_args()
    args.tools = [t for t in args.tools.split(",") if t]
    bad = set(args.tools) - set(ALL_TOOLS)
    if bad:
        p.error(f"unknown tools {bad}")
    all_s = list(scenarios(0))
    args.scenarios = [s for s in (args.scenarios.split(",") if args.scenarios else all_s) if s]
    if set(args.scenarios) - set(all_s):
        p.error(f"unknown scenarios {set(args.scenarios) - set(all_s)}; have {all_s}")
    args.warm = [w for w in args.warm.split(",") if w]
    if set(args.warm) - set(WARM_METHODS):
        p.error(f"unknown warm methods; have {WARM_METHODS}")
    if args.big_size is None:
        args.big_size = parse_size("64MiB" if args.smoke else "1GiB")
    args.big_repo = args.big_repo or args.repo + "-big-shards"
    if args.big_repo == args.repo:
        p.error("--big-repo must differ from --repo (each model has its own repository)")
    return args


def main() -> int:
    args = parse_args()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started in the background (SIGINT ignored)
    if args.report:
        return report_only(Path(args.report), args)

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    need = (["aria2c"] if "aria2c" in args.tools else []) + (["vmtouch"] if "vmtouch -t" in args.warm else [])
    ensure_system_tools(need)
    ferry, hubsim = find_bins(args)
    root = work / "hub"
    root.mkdir(exist_ok=True)
    models = models_needed(args)
    for model in models.values():
        model.load(hubsim, root)
    if "big" in models and models["big"].shard_sizes()[0] < BIG_SHARD_MIN:
        log(f"note: {args.big_repo}'s smallest shard is {models['big'].shard_sizes()[0]:,} bytes, under 256 MB "
            f"(--big-size {human(args.big_size)} over {args.big_shards} shards)")
    if not args.reset_after and "main" in models:
        args.reset_after = int(min(512 * 1024, statistics.median(models["main"].shard_sizes()) // 2))
    described = {k: m.describe() for k, m in models.items()}
    set_notes(args, described)
    started = datetime.now(timezone.utc)
    main_model = models.get("main")
    data = {"machine": machine(), "started": started.isoformat(timespec="seconds"),
            "command": shlex.join(["bench/run", *sys.argv[1:]]),
            "ferry_bin": str(ferry.relative_to(REPO_ROOT)) if ferry.is_relative_to(REPO_ROOT) else str(ferry),
            "ferry_built": datetime.fromtimestamp(ferry.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "models": described, "total_bytes": main_model.total if main_model else None,
            "args": {k: v for k, v in vars(args).items()}}
    hub = Hubsim(hubsim, root, work / "hubsim.log")
    ctx = {"url": hub.url, "ferry": ferry}
    fetch, warm = [], []
    try:
        for model in models.values():
            log(f"hubsim at {hub.url}; hashing {model.repo} once (first request)")
            http_json(f"{hub.url}/api/models/{model.repo}/revision/main", timeout=600)
            write_url_lists(hub.url, model, work)
        fetch = run_fetches(args, ctx, hub, models, work)
    except KeyboardInterrupt:
        for pid in list(CURRENT_CHILD):
            _killpg(pid)
        log("interrupted: hubsim stopped, no report written")
        return 130
    finally:
        hub.stop()
    try:
        if args.warm:
            warm = run_warm(args, ctx, models["main"], work)
    except KeyboardInterrupt:
        for pid in list(CURRENT_CHILD):
            _killpg(pid)
        log("interrupted during warm: no report written")
        return 130
    data["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data["fetch"], data["warm"] = fetch, warm
    data["files"] = main_model.files if main_model else {}
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results = work / f"results-{stamp}.json"
    results.write_text(json.dumps(data, indent=1, default=str))
    log(f"results: {results}")
    return report(data, args)


def report(data: dict, args) -> int:
    rows = summarize(data["fetch"], args)
    warm = data["warm"]
    print(fetch_table(rows))
    if warm:
        print()
        print(warm_table(warm, args.warm))
    if args.plot:
        plot(rows, args, data["models"], Path(args.plot))
    if args.doc:
        f_sec, w_sec = render_sections(data, rows, args)
        update_doc(Path(args.doc), f_sec, w_sec)
        log(f"wrote {args.doc}" + (f" and {args.plot}" if args.plot else ""))
    failed = [r for r in data["fetch"] if not r["verified"]] + [r for r in warm if not r["verified"]]
    if failed:
        log(f"{len(failed)} run(s) did not produce a verified result")
        return 1
    return 0


def report_only(path: Path, args) -> int:
    """Re-renders the tables, plot and doc from a results-*.json of an earlier run."""
    data = json.loads(path.read_text())
    for k in ("tools", "scenarios", "warm", "reps", "repo", "shards", "size", "chunk_size", "hf_workers",
              "reset_after"):
        setattr(args, k, data["args"][k])
    for k in ("big_repo", "big_shards", "big_size"):  # absent from results of runs before big-shards
        setattr(args, k, data["args"].get(k, getattr(args, k)))
    if "models" not in data:  # one model, described by the run's flags
        data["models"] = {"main": {"repo": args.repo, "shards": args.shards, "total_bytes": data["total_bytes"],
                                   "files": len(data["files"])}}
    set_notes(args, data["models"])
    for r in data["warm"]:  # the criterion as it is now
        r["verified"] = r["rc"] == 0 and r["resident_after"] is not None and r["resident_after"] >= WARM_RESIDENT
    return report(data, args)


if __name__ == "__main__":
    sys.exit(main())
