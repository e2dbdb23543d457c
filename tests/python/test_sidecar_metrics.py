"""`ferry sidecar` /metrics read by a real Prometheus parser.

Starts the ferry binary ($FERRY_BIN, default target/debug/ferry; build with `cargo build -p ferry`)
in serve mode on an empty directory, checks /readyz and /healthz, commits a small model (files
first, manifest last, the way `ferry fetch` does), waits for the gate, and parses /metrics with
prometheus_client's OpenMetrics parser (the format the sidecar serves) and its classic
Prometheus text parser (what older scrapers assume), checking the named series and their values.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FERRY = Path(os.environ.get("FERRY_BIN", REPO_ROOT / "target" / "debug" / "ferry"))

SERIES = [
    "ferry_gate_open",
    "ferry_state",
    "ferry_wait_seconds",
    "ferry_model_files",
    "ferry_model_bytes",
    "ferry_model_info",
    "ferry_verify_seconds",
    "ferry_warm_target_bytes",
    "ferry_warm_bytes",
    "ferry_warm_duration_seconds",
    "ferry_warm_bytes_per_second",
    "ferry_residency_ratio",
]


def model_files() -> dict[str, bytes]:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    shard = struct.pack("<Q", len(header)) + header + bytes(16)
    return {"config.json": b'{"num_hidden_layers": 1}', "model.safetensors": shard}


def commit(dir: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (dir / name).write_bytes(data)
    manifest = {
        "format": 1,
        "repo": "test-org/tiny",
        "source": "hf",
        "revision": "main",
        "commit": "ab" * 20,
        "ferry_version": "test",
        "completed_at": "2026-01-01T00:00:00Z",
        "files": [
            {"path": n, "size": len(d), "hash": {"sha256": hashlib.sha256(d).hexdigest()}}
            for n, d in files.items()
        ],
    }
    state = dir / ".ferry"
    state.mkdir(exist_ok=True)
    tmp = state / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    tmp.rename(state / "manifest.json")  # atomic, like the real commit


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def sidecar(tmp_path, request):
    extra = list(getattr(request, "param", []))
    if not FERRY.exists():
        pytest.fail(f"{FERRY} not found: build it with `cargo build -p ferry` or set FERRY_BIN")
    model = tmp_path / "model"
    model.mkdir()
    proc = subprocess.Popen(
        [str(FERRY), "sidecar", "--model-dir", str(model), "--mode", "serve", "--warm",
         "--listen", "127.0.0.1:0", "--poll-max", "200ms", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stderr], daemon=True).start()
    base = None
    deadline = time.monotonic() + 30
    seen = []
    while base is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if "serving /healthz" in line:
            base = line.rsplit("http://", 1)[1].strip()
    if base is None:
        proc.kill()
        pytest.fail("sidecar did not start:\n" + "".join(seen))
    try:
        yield model, f"http://{base}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def parse_openmetrics(text: str) -> dict:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict, family: str, name: str | None = None, **labels) -> float:
    for s in families[family].samples:
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name or family}{labels} in {families[family]}")


def test_metrics_parse_with_the_named_series(sidecar):
    model, base, proc = sidecar
    assert get(base + "/healthz")[0] == 200
    code, body = get(base + "/readyz")
    assert code == 503 and "manifest.json" in body, body

    # Before the model: every series is there already, the gate shut, the state "waiting".
    fams = parse_openmetrics(get(base + "/metrics")[1])
    # The OpenMetrics parser names a family without its unit suffix only when a UNIT is declared;
    # look them up by the sample names the scraper stores.
    names = {s.name for f in fams.values() for s in f.samples}
    for series in SERIES:
        if series != "ferry_model_info":  # labels unknown until the manifest is read
            assert series in names, f"{series} missing from {sorted(names)}"
    by_sample = {s.name: f for f in fams.values() for s in f.samples}
    assert sample(by_sample, "ferry_gate_open") == 0
    assert sample(by_sample, "ferry_state", state="waiting") == 1
    assert sample(by_sample, "ferry_state", state="open") == 0

    files = model_files()
    commit(model, files)
    deadline = time.monotonic() + 30
    while get(base + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, get(base + "/readyz")
        assert proc.poll() is None, "sidecar exited"
        time.sleep(0.05)

    resp = urllib.request.urlopen(base + "/metrics", timeout=5)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    text = resp.read().decode()
    fams = parse_openmetrics(text)
    by_sample = {s.name: f for f in fams.values() for s in f.samples}
    for series in SERIES:
        assert series in by_sample, f"{series} missing after open"
    total = sum(len(d) for d in files.values())
    assert sample(by_sample, "ferry_gate_open") == 1
    assert sample(by_sample, "ferry_state", state="open") == 1
    assert sample(by_sample, "ferry_state", state="waiting") == 0
    assert sample(by_sample, "ferry_model_bytes") == total
    assert sample(by_sample, "ferry_model_files") == len(files)
    assert sample(by_sample, "ferry_model_info", repo="test-org/tiny", commit="ab" * 20) == 1
    assert sample(by_sample, "ferry_warm_bytes") == total
    assert sample(by_sample, "ferry_residency_ratio") > 0.95
    assert sample(by_sample, "ferry_wait_seconds") > 0
    assert sample(by_sample, "ferry_verify_seconds") >= 0
    assert by_sample["ferry_gate_open"].type == "gauge"

    # The classic text parser (Prometheus 0.0.4 format) reads the same series.
    from prometheus_client.parser import text_string_to_metric_families

    classic = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert classic["ferry_gate_open"] == 1
    assert classic["ferry_model_bytes"] == total

    # Graceful shutdown on SIGTERM.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("sidecar", [["--recheck-every", "300ms"]], indirect=True)
def test_a_shard_deleted_after_open_shows_in_metrics(sidecar):
    model, base, proc = sidecar
    commit(model, model_files())
    deadline = time.monotonic() + 30
    while get(base + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, get(base + "/readyz")
        time.sleep(0.05)
    fams = parse_openmetrics(get(base + "/metrics")[1])
    assert fams["ferry_recheck_failures"].type == "counter"
    assert sample(fams, "ferry_recheck_failures", "ferry_recheck_failures_total") == 0

    (model / "model.safetensors").unlink()
    deadline = time.monotonic() + 5
    while True:
        fams = parse_openmetrics(get(base + "/metrics")[1])
        if sample(fams, "ferry_gate_open") == 0:
            break
        assert time.monotonic() < deadline, "gate still open 5 s after a shard was deleted"
        time.sleep(0.05)
    assert sample(fams, "ferry_recheck_failures", "ferry_recheck_failures_total") == 1
    assert sample(fams, "ferry_state", state="failed") == 1
    [failed] = fams["ferry_recheck_failed"].samples
    assert failed.value == 1 and "model.safetensors" in failed.labels["reason"], failed
    code, body = get(base + "/readyz")
    assert code == 503 and "model.safetensors" in body, body
