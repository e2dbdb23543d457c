"""Fixtures for the real-client tests: a hubsim server over a small generated repo.

The `hub` session fixture builds, under a temporary root:

* `org/tiny`   - `hubsim generate` output (3 shards, ~3 MiB) plus `extra/notes.txt` (nested dir);
                 refs: `dev` (a tree with a different config.json), tag-like alias `v1.0` -> main
* `org/private`- private, authorized token `hf_alice`
* `org/gated`  - gated, authorized token `hf_alice`
* `org/big`    - one 12 MiB LFS file, for ranged retries after a cut

and runs `hubsim serve --root ROOT --listen 127.0.0.1:0 --token hf_alice --token hf_bob`
(binary: $HUBSIM_BIN, default target/debug/hubsim; build with `cargo build -p hubsim`).

Client libraries read some settings at import time (huggingface_hub's HF_ENDPOINT and cache
paths), so the session fixture sets the environment before the test modules import them (they
import lazily), and the per-test `hf_env` / `ms_env` fixtures also point every setting at fresh
temporary directories. Nothing is fetched from the internet: both endpoints are the local hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HUBSIM = Path(os.environ.get("HUBSIM_BIN", REPO_ROOT / "target" / "debug" / "hubsim"))
VENV_BIN = REPO_ROOT / ".venv" / "bin"

GOOD_TOKEN = "hf_alice"  # authorized for org/private and org/gated
OTHER_TOKEN = "hf_bob"  # valid, but not authorized there
UNKNOWN_TOKEN = "hf_nobody"  # not known to the server at all
BIG_SIZE = 12 * 1024 * 1024 + 12345  # org/big/big.safetensors

# Settings every client run gets (library and CLI).
QUIET_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",
    "MODELSCOPE_LOG_LEVEL": "40",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Never let a developer's own token or proxy settings leak into these runs.
SCRUBBED_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_XET",
    "HUGGINGFACE_CO_STAGING",
    "MODELSCOPE_API_TOKEN",
    "MODELSCOPE_DOMAIN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@dataclass
class Hub:
    url: str
    root: Path
    process: subprocess.Popen

    def repo_dir(self, repo: str) -> Path:
        return self.root / repo

    def _call(self, path: str, body: bytes | None = None) -> dict:
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            return json.load(resp)

    def stats(self) -> dict:
        return self._call("/_hubsim/stats")

    def reset_stats(self) -> dict:
        return self._call("/_hubsim/stats/reset", b"")

    def set_faults(self, faults: dict) -> dict:
        return self._call("/_hubsim/faults", json.dumps(faults).encode())

    def requests(self) -> list[dict]:
        """The request log (method, host, path, authorization, accept_encoding, range, status)."""
        return self._call("/_hubsim/requests")


def _run_hubsim(*args: str) -> None:
    result = subprocess.run([str(HUBSIM), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"hubsim {' '.join(args)} failed:\n{result.stderr}"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _build_root(root: Path) -> None:
    tiny = root / "org" / "tiny"
    _run_hubsim("generate", "--out", str(tiny), "--repo", "org/tiny", "--shards", "3", "--total-size", "3MiB")
    _write(tiny / "extra" / "notes.txt", b"a nested regular file\n")
    dev = root / "trees" / "tiny-dev"
    shutil.copytree(tiny, dev)
    config = json.loads((tiny / "config.json").read_text())
    config["hubsim_branch"] = "dev"
    (dev / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tiny / ".hubsim.json").write_text(json.dumps({"refs": {"dev": "trees/tiny-dev", "v1.0": "main"}}))

    # One file over huggingface_hub's 10 MiB write chunk, so its retry after a cut uses Range.
    big = bytearray()
    block = hashlib.sha256(b"hubsim-big").digest()
    while len(big) < BIG_SIZE:
        block = hashlib.sha256(block).digest()
        big += block * 64
    _write(root / "org" / "big" / "big.safetensors", bytes(big[:BIG_SIZE]))

    for name, access in (("private", {"private": True}), ("gated", {"gated": True})):
        repo = root / "org" / name
        _write(repo / "config.json", b'{"model_type": "tiny"}\n')
        _write(repo / "model.safetensors", (tiny / "model-00001-of-000003.safetensors").read_bytes()[:200_000])
        (repo / ".hubsim.json").write_text(json.dumps({**access, "authorized_tokens": [GOOD_TOKEN]}))


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory):
    if not HUBSIM.is_file():
        pytest.fail(f"{HUBSIM} does not exist: run `cargo build -p hubsim` or set HUBSIM_BIN")
    root = tmp_path_factory.mktemp("hubsim-root")
    _build_root(root)
    proc = subprocess.Popen(
        [str(HUBSIM), "serve", "--root", str(root), "--listen", "127.0.0.1:0",
         "--token", GOOD_TOKEN, "--token", OTHER_TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # Bounded wait for the one ready line; a hung or crashed server fails the session fast.
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if not line or not line[0].startswith("hubsim listening on http://"):
        proc.kill()
        pytest.fail(f"hubsim serve did not report readiness: {line!r}")
    url = line[0].strip().removeprefix("hubsim listening on ")

    saved = {k: os.environ.get(k) for k in (*QUIET_ENV, *SCRUBBED_ENV, "HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "HF_HOME", "MODELSCOPE_CACHE")}
    home = tmp_path_factory.mktemp("client-home")
    # Set before any client library is imported (huggingface_hub reads these at import time).
    os.environ.update(QUIET_ENV)
    for k in SCRUBBED_ENV:
        os.environ.pop(k, None)
    os.environ["HF_ENDPOINT"] = url
    os.environ["MODELSCOPE_ENDPOINT"] = url
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["MODELSCOPE_CACHE"] = str(home / "modelscope")
    try:
        yield Hub(url=url, root=root, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def hf_env(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HF_HOME for one test, in the environment and in huggingface_hub's constants."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    hub.set_faults({})
    return home


@pytest.fixture
def ms_env(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MODELSCOPE_CACHE (and config dir) for one test."""
    cache = tmp_path / "ms-cache"
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    hub.set_faults({})
    return cache


def cli(name: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs a client CLI from the venv with the current (fixture-set) environment."""
    return subprocess.run([str(VENV_BIN / name), *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def same_tree(src: Path, dst: Path, files: list[str] | None = None) -> list[str]:
    """Asserts every listed file (default: all served files of src) is byte-identical in dst."""
    if files is None:
        files = sorted(
            str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and p.name != ".hubsim.json"
        )
    for rel in files:
        got = dst / rel
        assert got.is_file(), f"{rel} missing in {dst}"
        assert got.read_bytes() == (src / rel).read_bytes(), f"{rel} differs"
    return files
