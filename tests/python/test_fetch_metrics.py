"""`ferry fetch --metrics-listen` and the sidecar's download progress, read by real Prometheus code.

A fetch from hubsim with a bandwidth cap runs for a few seconds; its /metrics is scraped twice
during the download and parsed with prometheus_client's OpenMetrics parser (the format served)
and its classic text parser: the downloaded-bytes counter grows between the scrapes, the totals
match the repo, and an Indexed-Job slice carries its labels. A sidecar waiting on the same
directory reports the download's bytes and files from `.ferry/` while it waits. Where the
Debian `prometheus` server is installed (.ci/run installs it), it scrapes ferry for real and its
query API returns the fetch's series; elsewhere that test is skipped, saying why.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FERRY = Path(os.environ.get("FERRY_BIN", REPO_ROOT / "target" / "debug" / "ferry"))
TINY = "org/tiny"
# 3 MiB at 512 KiB/s: about 6 s, time for several scrapes.
CAP = {"bandwidth_total_bps": 512 * 1024}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with NO_PROXY.open(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def tiny_bytes(hub) -> tuple[int, int]:
    files = [p for p in hub.repo_dir(TINY).rglob("*") if p.is_file() and p.name != ".hubsim.json"]
    return len(files), sum(p.stat().st_size for p in files)


class Proc:
    """A ferry process whose stderr is collected by a thread, so it never blocks on a full pipe."""

    def __init__(self, args: list[str]):
        if not FERRY.exists():
            pytest.fail(f"{FERRY} not found: build it with `cargo build -p ferry` or set FERRY_BIN")
        self.proc = subprocess.Popen([str(FERRY), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(l) for l in self.proc.stderr], daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        self.proc.kill()
        pytest.fail(f"no line matching {pattern!r}:\n" + "".join(self.seen))

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_fetch(dest: Path, *extra: str) -> tuple[Proc, str]:
    p = Proc(["fetch", TINY, "--to", str(dest), "--metrics-listen", "127.0.0.1:0", *extra])
    m = p.wait_for(r"metrics at (http://\S+/metrics)")
    return p, m.group(1)


def families(text: str) -> list:
    """Every sample of an OpenMetrics exposition, parsed by prometheus_client."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: list, name: str, **labels) -> float:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name}{labels} in {sorted({s.name for s in samples})}")


def test_fetch_metrics_grow_while_the_download_runs(hub, tmp_path):
    hub.set_faults(CAP)
    nfiles, nbytes = tiny_bytes(hub)
    fetch, url = start_fetch(tmp_path / "m")
    try:
        scrapes = []
        deadline = time.monotonic() + 30
        while len(scrapes) < 2 and time.monotonic() < deadline:
            code, body = get(url)
            assert code == 200, body
            s = families(body)
            downloaded = value(s, "ferry_fetch_downloaded_bytes_total", repo=TINY)
            if downloaded > 0 and (not scrapes or downloaded > scrapes[-1][0]):
                scrapes.append((downloaded, s))
            time.sleep(1.2)
        assert len(scrapes) == 2, "the byte counter did not grow between two scrapes"
        (first, _), (second, s) = scrapes
        assert 0 < first < second <= nbytes * 1.5
        assert value(s, "ferry_fetch_size_bytes") == nbytes
        assert value(s, "ferry_fetch_files") == nfiles
        assert 0 <= value(s, "ferry_fetch_done_bytes") <= nbytes
        assert value(s, "ferry_fetch_bytes_per_second") > 0
        assert value(s, "ferry_fetch_average_bytes_per_second") > 0
        assert value(s, "ferry_fetch_eta_seconds") >= 0
        assert value(s, "ferry_fetch_transferring") == 1
        assert value(s, "ferry_fetch_connections") >= 0
        assert value(s, "ferry_fetch_retries_total") == 0
        assert value(s, "ferry_fetch_throttled_total", cause="429") == 0
        assert value(s, "ferry_fetch_throttled_total", cause="503") == 0
        assert value(s, "ferry_fetch_downloaded_bytes_total", slice="", slices="") == second

        # The classic Prometheus text parser reads the same exposition.
        from prometheus_client.parser import text_string_to_metric_families

        classic = {x.name for f in text_string_to_metric_families(get(url)[1]) for x in f.samples}
        assert "ferry_fetch_size_bytes" in classic
        assert fetch.finish() == 0
    finally:
        fetch.kill()
        hub.set_faults({})


def test_throttle_answers_are_counted_by_cause(hub, tmp_path):
    # Every body request answered 429 a few times, then served.
    hub.set_faults({"rules": [{"kind": "rate_limit", "count": 3, "retry_after_secs": 0}],
                    "bandwidth_total_bps": 1024 * 1024})
    fetch, url = start_fetch(tmp_path / "m")
    try:
        deadline = time.monotonic() + 30
        seen = 0.0
        while time.monotonic() < deadline and fetch.proc.poll() is None:
            code, body = get(url)
            if code == 200:
                seen = max(seen, value(families(body), "ferry_fetch_throttled_total", cause="429"))
                if seen:
                    break
            time.sleep(0.3)
        assert seen >= 1, "no 429 counted"
        fetch.finish()
    finally:
        fetch.kill()
        hub.set_faults({})


def test_a_slice_is_labelled(hub, tmp_path):
    hub.set_faults(CAP)
    fetch, url = start_fetch(tmp_path / "m", "--slice", "1/2")
    try:
        s = families(get(url)[1])
        assert value(s, "ferry_fetch_downloaded_bytes_total", repo=TINY, slice="1", slices="2") >= 0
        assert fetch.finish() == 0
    finally:
        fetch.kill()
        hub.set_faults({})


def test_the_waiting_sidecar_reports_the_downloads_progress(hub, tmp_path):
    hub.set_faults(CAP)
    nfiles, nbytes = tiny_bytes(hub)
    model = tmp_path / "m"
    model.mkdir()
    sidecar = Proc(["sidecar", "--model-dir", str(model), "--mode", "serve", "--listen", "127.0.0.1:0",
                    "--poll-max", "200ms"])
    base = "http://" + sidecar.wait_for(r"serving /healthz.*http://(\S+)").group(1)
    fetch = Proc(["fetch", TINY, "--to", str(model)])
    try:
        done = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fetch.proc.poll() is None:
            s = families(get(base + "/metrics")[1])
            if value(s, "ferry_state", state="waiting") == 1 and value(s, "ferry_download_size_bytes") > 0:
                assert value(s, "ferry_download_size_bytes") == nbytes
                assert value(s, "ferry_download_files") == nfiles
                done.append(value(s, "ferry_download_done_bytes"))
            time.sleep(0.5)
        assert fetch.finish() == 0
        assert done and max(done) > 0, f"no download progress while waiting: {done}"
        assert done[-1] >= done[0], done
        deadline = time.monotonic() + 30
        while get(base + "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        s = families(get(base + "/metrics")[1])
        assert value(s, "ferry_download_done_bytes") == value(s, "ferry_download_size_bytes") == nbytes
        assert value(s, "ferry_download_files_done") == nfiles
    finally:
        fetch.kill()
        sidecar.kill()
        hub.set_faults({})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROMETHEUS = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None,
                    reason="no Prometheus server: $PROMETHEUS_BIN unset and `prometheus` not on PATH "
                           "(.ci/run unpacks the Debian package's binary)")
def test_a_real_prometheus_scrapes_the_fetch(hub, tmp_path):
    hub.set_faults({"bandwidth_total_bps": 256 * 1024})
    ferry_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: ferry-fetch\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{ferry_port}']\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fetch = Proc(["fetch", TINY, "--to", str(tmp_path / "m"), "--metrics-listen", f"127.0.0.1:{ferry_port}"])
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        query = urllib.parse.quote('ferry_fetch_downloaded_bytes_total{repo="org/tiny"}')
        values, health = [], set()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and fetch.proc.poll() is None:
            try:
                code, body = get(f"{api}/query?query={query}")
            except OSError:
                code = 0  # not listening yet
            if code == 200:
                result = json.loads(body)["data"]["result"]
                if result:
                    values.append(float(result[0]["value"][1]))
                    targets = json.loads(get(f"{api}/targets")[1])["data"]["activeTargets"]
                    health |= {t["health"] for t in targets}
            time.sleep(1)
        assert len(set(values)) >= 2 and values == sorted(values), f"Prometheus saw {values}"
        assert "up" in health, health
        assert fetch.finish() == 0
    finally:
        fetch.kill()
        prom.terminate()
        prom.wait(timeout=20)
        hub.set_faults({})
