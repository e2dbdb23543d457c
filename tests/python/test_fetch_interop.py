"""A directory made by `ferry fetch` is one the real clients accept as already downloaded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO_ROOT, Hub, same_tree

FERRY = Path(os.environ.get("FERRY_BIN", REPO_ROOT / "target" / "debug" / "ferry"))


def ferry_fetch(hub: Hub, repo: str, dest: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_TOKEN", "MODELSCOPE_API"))}
    env["HF_ENDPOINT"] = hub.url
    env["MODELSCOPE_ENDPOINT"] = hub.url
    result = subprocess.run(
        [str(FERRY), "fetch", repo, "--to", str(dest), "--quiet", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr


def resolve_requests(stats: dict) -> int:
    return sum(s["requests"] for path, s in stats["paths"].items() if "/resolve/" in path or "FilePath=" in path)


def test_huggingface_hub_uses_a_ferry_directory_as_local_dir_without_downloading(hub: Hub, hf_env: Path, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    dest = tmp_path / "model"
    ferry_fetch(hub, "org/tiny", dest)
    hub.reset_stats()
    path = snapshot_download("org/tiny", local_dir=dest)
    assert Path(path) == dest
    stats = hub.stats()
    assert resolve_requests(stats) == 0, stats["paths"]
    assert stats["bytes_sent"] == 0
    same_tree(hub.repo_dir("org/tiny"), dest)


def test_modelscope_accepts_a_ferry_directory_without_downloading(hub: Hub, ms_env: Path, tmp_path: Path) -> None:
    from modelscope import snapshot_download

    dest = tmp_path / "model"
    ferry_fetch(hub, "org/tiny", dest, "--source", "modelscope")
    hub.reset_stats()
    snapshot_download("org/tiny", local_dir=str(dest))
    stats = hub.stats()
    assert stats["bytes_sent"] == 0, stats["paths"]
    same_tree(hub.repo_dir("org/tiny"), dest)


def test_ferry_verify_checks_a_huggingface_hub_download_against_the_hub(hub: Hub, hf_env: Path, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    dest = tmp_path / "by-hf"
    snapshot_download("org/tiny", local_dir=dest)
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    ok = subprocess.run([str(FERRY), "verify", str(dest), "--against", "org/tiny", "--full"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    shard = dest / "model-00002-of-000003.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    bad = subprocess.run([str(FERRY), "verify", str(dest), "--against", "org/tiny", "--full"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 5, bad.stdout + bad.stderr
    assert "model-00002-of-000003.safetensors" in bad.stdout + bad.stderr
