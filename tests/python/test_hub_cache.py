"""`ferry fetch --cache-dir`: the real clients open what ferry wrote, offline, as their own cache.

Each test checks the hub saw zero requests while the client read the cache (the request counter
of hubsim), that a kill -9 mid-fetch leaves nothing a client would open, that a second revision
shares the stored contents (same inodes), and that a cache the client filled itself is adopted
with zero bytes transferred.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, Hub, same_tree

FERRY = Path(os.environ.get("FERRY_BIN", REPO_ROOT / "target" / "debug" / "ferry"))


def ferry_env(hub: Hub, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_TOKEN", "MODELSCOPE_API", "HF_HUB_CACHE"))}
    env["HF_ENDPOINT"] = hub.url
    env["MODELSCOPE_ENDPOINT"] = hub.url
    env.update(extra)
    return env


def ferry(hub: Hub, *args: str, env: dict | None = None) -> dict:
    """Runs `ferry fetch ARGS --json` to success and returns its summary line."""
    result = subprocess.run(
        [str(FERRY), "fetch", *args, "--json"],
        capture_output=True, text=True, timeout=120, env=env or ferry_env(hub),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return next(line for line in lines if line.get("event") == "summary")


def served_files(hub: Hub, repo: str) -> list[str]:
    src = hub.repo_dir(repo)
    return sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and p.name != ".hubsim.json")


def commit_of(repo_dir: Path, ref: str) -> str:
    return (repo_dir / "refs" / ref).read_text()


def offline_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


# --- Hugging Face -------------------------------------------------------------------------


def test_huggingface_hub_opens_a_ferry_cache_offline(hub: Hub, hf_env: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

    cache = tmp_path / "cache"
    summary = ferry(hub, "org/tiny", "--cache-dir", str(cache))
    repo_dir = cache / "models--org--tiny"
    commit = commit_of(repo_dir, "main")
    assert len(commit) == 40 and summary["commit"] == commit
    assert Path(summary["dir"]) == repo_dir / "snapshots" / commit

    offline_hf(monkeypatch)
    hub.reset_stats()
    path = snapshot_download("org/tiny", cache_dir=cache, local_files_only=True)
    assert Path(path) == repo_dir / "snapshots" / commit
    same_tree(hub.repo_dir("org/tiny"), Path(path))
    one = hf_hub_download("org/tiny", "extra/notes.txt", cache_dir=cache, local_files_only=True)
    assert Path(one).read_bytes() == (hub.repo_dir("org/tiny") / "extra/notes.txt").read_bytes()
    # By commit too, as engines pin it.
    assert snapshot_download("org/tiny", revision=commit, cache_dir=cache, local_files_only=True) == path
    assert hub.stats()["requests"] == 0

    # Relative symlinks into blobs/ (they survive a remount at another path, NFS and CFS alike).
    for rel in served_files(hub, "org/tiny"):
        link = Path(path) / rel
        assert link.is_symlink(), rel
        target = os.readlink(link)
        assert not os.path.isabs(target) and target.startswith("../../"), target
    # The client's own cache tooling sees one clean revision.
    info = scan_cache_dir(cache)
    assert not info.warnings, info.warnings
    (repo,) = [r for r in info.repos if r.repo_id == "org/tiny"]
    assert [r.commit_hash for r in repo.revisions] == [commit]
    assert "main" in next(iter(repo.revisions)).refs

    # The ferry manifest sits in the snapshot, so `ferry verify` checks it.
    ok = subprocess.run([str(FERRY), "verify", path, "--full"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_without_to_ferry_writes_the_default_cache_like_hf_download(hub: Hub, hf_env: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import snapshot_download

    ferry(hub, "org/tiny", env=ferry_env(hub, HF_HOME=str(hf_env)))
    offline_hf(monkeypatch)
    hub.reset_stats()
    path = snapshot_download("org/tiny", local_files_only=True)
    assert Path(path).is_relative_to(hf_env / "hub" / "models--org--tiny" / "snapshots")
    same_tree(hub.repo_dir("org/tiny"), Path(path))
    assert hub.stats()["requests"] == 0

    # HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub (online again: ferry honours
    # HF_HUB_OFFLINE too).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    other = tmp_path / "hub-cache"
    ferry(hub, "org/tiny", "--include", "config.json", env=ferry_env(hub, HF_HOME=str(hf_env), HF_HUB_CACHE=str(other)))
    assert (other / "models--org--tiny" / "refs" / "main").is_file()


def test_a_second_revision_shares_the_blobs(hub: Hub, hf_env: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import snapshot_download

    cache = tmp_path / "cache"
    ferry(hub, "org/tiny", "--cache-dir", str(cache))
    blobs = cache / "models--org--tiny" / "blobs"
    before = sorted(p.name for p in blobs.iterdir())
    hub.reset_stats()
    summary = ferry(hub, "org/tiny@dev", "--cache-dir", str(cache))
    # Only dev's config.json differs: one new blob, and only its bytes moved.
    after = sorted(p.name for p in blobs.iterdir())
    assert len(after) == len(before) + 1, (before, after)
    dev_config = (hub.root / "trees" / "tiny-dev" / "config.json").read_bytes()
    assert hub.stats()["bytes_sent"] == len(dev_config) == summary["bytes_downloaded"]

    offline_hf(monkeypatch)
    main = Path(snapshot_download("org/tiny", cache_dir=cache, local_files_only=True))
    dev = Path(snapshot_download("org/tiny", revision="dev", cache_dir=cache, local_files_only=True))
    assert main != dev
    assert (dev / "config.json").read_bytes() == dev_config
    shard = "model-00001-of-000003.safetensors"
    assert os.stat(main / shard).st_ino == os.stat(dev / shard).st_ino


def test_kill_9_mid_fetch_leaves_nothing_the_client_opens_and_resumes(hub: Hub, hf_env: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = tmp_path / "cache"
    hub.set_faults({"bandwidth_total_bps": 2 * 1024 * 1024})
    proc = subprocess.Popen(
        # (org/big's one file is random bytes, not safetensors: a selection makes that a warning.)
        [str(FERRY), "fetch", "org/big", "--include", "*", "--cache-dir", str(cache), "--quiet", "--chunk-size", "1MiB", "--sync-every", "1MiB", "--connections", "2"],
        env=ferry_env(hub), stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while hub.stats()["bytes_sent"] < 6 * 1024 * 1024 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the fetch ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub.set_faults({})
    repo_dir = cache / "models--org--big"
    assert not (repo_dir / "snapshots").exists() and not (repo_dir / "refs").exists()

    offline_hf(monkeypatch)
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("org/big", cache_dir=cache, local_files_only=True)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("org/big", "big.safetensors", cache_dir=cache, local_files_only=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    hub.reset_stats()
    summary = ferry(hub, "org/big", "--include", "*", "--cache-dir", str(cache), "--chunk-size", "1MiB")
    size = (hub.repo_dir("org/big") / "big.safetensors").stat().st_size
    # Resumed from the journal: what was synced before the kill did not move again.
    # (6 MiB had been sent; at most the 2 ranges in flight were lost.)
    assert summary["bytes_reused"] >= 3 * 1024 * 1024, summary
    assert hub.stats()["bytes_sent"] <= size - 3 * 1024 * 1024
    path = snapshot_download("org/big", cache_dir=cache, local_files_only=True)
    same_tree(hub.repo_dir("org/big"), Path(path))


def test_a_cache_the_client_filled_is_adopted_with_zero_transfer(hub: Hub, hf_env: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import snapshot_download

    cache = tmp_path / "cache"
    by_client = snapshot_download("org/tiny", cache_dir=cache)
    hub.reset_stats()
    summary = ferry(hub, "org/tiny", "--cache-dir", str(cache))
    assert hub.stats()["bytes_sent"] == 0
    assert summary["bytes_downloaded"] == 0 and summary["bytes_reused"] == summary["bytes_total"] > 0
    assert summary["dir"] == by_client
    assert (Path(by_client) / ".ferry" / "manifest.json").is_file()
    offline_hf(monkeypatch)
    same_tree(hub.repo_dir("org/tiny"), Path(snapshot_download("org/tiny", cache_dir=cache, local_files_only=True)))


# --- ModelScope ---------------------------------------------------------------------------


def ms_snapshot(cache: Path, **kw) -> Path:
    from modelscope import snapshot_download

    return Path(snapshot_download("org/tiny", cache_dir=str(cache), local_files_only=True, **kw))


def test_modelscope_opens_a_ferry_cache_offline(hub: Hub, ms_env: Path, tmp_path: Path) -> None:
    from modelscope.hub.file_download import model_file_download

    cache = tmp_path / "ms"
    summary = ferry(hub, "org/tiny", "--source", "modelscope", "--cache-dir", str(cache))
    hub.reset_stats()
    path = ms_snapshot(cache)
    assert path == cache / "models" / "org--tiny" / "snapshots" / "master" == Path(summary["dir"])
    same_tree(hub.repo_dir("org/tiny"), path)
    assert hub.stats()["requests"] == 0, [(r["method"], r["path"]) for r in hub.requests()[-3:]]
    # (Without a revision, the modelscope shim asks the hub for its revisions first, even offline.)
    one = model_file_download("org/tiny", "extra/notes.txt", revision="master", cache_dir=str(cache), local_files_only=True)
    assert Path(one).read_bytes() == b"a nested regular file\n"
    assert hub.stats()["requests"] == 0, [(r["method"], r["path"]) for r in hub.requests()[-3:]]
    # Plain files, as the client writes them; ferry's own store only adds links.
    assert not any(p.is_symlink() for p in path.rglob("*"))
    ok = subprocess.run([str(FERRY), "verify", str(path), "--full"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_modelscope_default_cache_is_modelscope_cache(hub: Hub, ms_env: Path) -> None:
    ferry(hub, "org/tiny", "--source", "modelscope", env=ferry_env(hub, MODELSCOPE_CACHE=str(ms_env)))
    hub.reset_stats()
    same_tree(hub.repo_dir("org/tiny"), ms_snapshot(ms_env))
    assert hub.stats()["requests"] == 0


def test_modelscope_kill_9_leaves_no_snapshot_then_a_second_revision_shares_files(hub: Hub, ms_env: Path, tmp_path: Path) -> None:
    from modelscope_hub.errors import CacheNotFound

    cache = tmp_path / "ms"
    hub.set_faults({"bandwidth_total_bps": 512 * 1024})
    proc = subprocess.Popen(
        [str(FERRY), "fetch", "org/tiny", "--source", "modelscope", "--cache-dir", str(cache), "--quiet", "--chunk-size", "1MiB"],
        env=ferry_env(hub), stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while hub.stats()["bytes_sent"] < 1024 * 1024 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the fetch ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub.set_faults({})
    with pytest.raises(CacheNotFound):
        ms_snapshot(cache)

    ferry(hub, "org/tiny", "--source", "modelscope", "--cache-dir", str(cache))
    hub.reset_stats()
    ferry(hub, "org/tiny@dev", "--source", "modelscope", "--cache-dir", str(cache))
    dev_config = (hub.root / "trees" / "tiny-dev" / "config.json").read_bytes()
    assert hub.stats()["bytes_sent"] == len(dev_config)
    master, dev = ms_snapshot(cache), ms_snapshot(cache, revision="dev")
    assert (dev / "config.json").read_bytes() == dev_config
    shard = "model-00001-of-000003.safetensors"
    assert os.stat(master / shard).st_ino == os.stat(dev / shard).st_ino
    assert os.stat(master / shard).st_nlink == 3  # master, dev and ferry's store


def test_modelscope_cache_the_client_filled_is_adopted_with_zero_transfer(hub: Hub, ms_env: Path, tmp_path: Path) -> None:
    from modelscope import snapshot_download

    cache = tmp_path / "ms"
    by_client = snapshot_download("org/tiny", cache_dir=str(cache))
    hub.reset_stats()
    summary = ferry(hub, "org/tiny", "--source", "modelscope", "--cache-dir", str(cache))
    assert hub.stats()["bytes_sent"] == 0
    assert summary["bytes_downloaded"] == 0 and summary["bytes_reused"] == summary["bytes_total"] > 0
    assert Path(summary["dir"]) == Path(by_client)
    same_tree(hub.repo_dir("org/tiny"), ms_snapshot(cache))
