"""The real huggingface_hub client (library and `hf` CLI) against hubsim.

Every download is compared byte for byte with the files hubsim serves; every error case asserts
the exact exception class huggingface_hub raises. The client is imported lazily, after the `hub`
fixture has pointed HF_ENDPOINT at the local server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GOOD_TOKEN, OTHER_TOKEN, UNKNOWN_TOKEN, cli, same_tree

REPO = "org/tiny"


def _hf():
    import huggingface_hub

    return huggingface_hub


def _commit(rev: str = "main") -> str:
    return _hf().HfApi().model_info(REPO, revision=rev, token=False).sha


def test_snapshot_download_full_repo_is_byte_identical(hub, hf_env):
    hf = _hf()
    path = Path(hf.snapshot_download(REPO, token=False))
    files = same_tree(hub.repo_dir(REPO), path)
    assert "extra/notes.txt" in files and any(f.endswith(".safetensors") for f in files)
    # The snapshot is named by the commit hubsim reports, and refs/main records it.
    assert path.name == _commit()
    assert (hf_env / "hub" / "models--org--tiny" / "refs" / "main").read_text() == path.name


def test_single_file_and_nested_file(hub, hf_env):
    hf = _hf()
    for name in ("config.json", "extra/notes.txt"):
        got = Path(hf.hf_hub_download(REPO, name, token=False))
        assert got.read_bytes() == (hub.repo_dir(REPO) / name).read_bytes()
    shard = sorted(p.name for p in hub.repo_dir(REPO).glob("*.safetensors"))[0]
    got = Path(hf.hf_hub_download(REPO, shard, token=False))
    assert got.read_bytes() == (hub.repo_dir(REPO) / shard).read_bytes()


def test_include_patterns_fetch_only_matching_files(hub, hf_env, tmp_path):
    hf = _hf()
    hub.reset_stats()
    out = tmp_path / "out"
    hf.snapshot_download(REPO, allow_patterns=["*.json"], local_dir=out, token=False)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts)
    want = sorted(p.name for p in hub.repo_dir(REPO).glob("*.json") if p.name != ".hubsim.json")
    assert got == want
    same_tree(hub.repo_dir(REPO), out, want)
    # Nothing but JSON bodies was transferred.
    paths = hub.stats()["paths"]
    assert not any(p.endswith(".safetensors") for p in paths), paths


def test_branch_and_commit_revisions(hub, hf_env):
    hf = _hf()
    dev_sha = _commit("dev")
    assert dev_sha != _commit("main")
    assert _commit("v1.0") == _commit("main")
    dev_dir = hub.root / "trees" / "tiny-dev"
    path = Path(hf.snapshot_download(REPO, revision="dev", token=False))
    assert path.name == dev_sha
    same_tree(dev_dir, path)
    by_commit = Path(hf.snapshot_download(REPO, revision=dev_sha, token=False))
    assert by_commit == path
    got = Path(hf.hf_hub_download(REPO, "config.json", revision=dev_sha, token=False))
    assert got.read_bytes() == (dev_dir / "config.json").read_bytes()
    assert b"hubsim_branch" in got.read_bytes()


def test_private_repo_with_an_authorized_token(hub, hf_env):
    path = Path(_hf().snapshot_download("org/private", token=GOOD_TOKEN))
    same_tree(hub.repo_dir("org/private"), path)


def _errors():
    from huggingface_hub import errors

    return errors


@pytest.mark.parametrize(
    "case, call, expected",
    [
        ("wrong token (valid, no access) on a private repo", lambda hf: hf.snapshot_download("org/private", token=OTHER_TOKEN), "RepositoryNotFoundError"),
        ("no token on a private repo", lambda hf: hf.snapshot_download("org/private", token=False), "RepositoryNotFoundError"),
        ("unknown token", lambda hf: hf.snapshot_download(REPO, token=UNKNOWN_TOKEN), "HfHubHTTPError"),
        ("gated repo, no token", lambda hf: hf.snapshot_download("org/gated", token=False), "GatedRepoError"),
        ("gated repo, token not approved", lambda hf: hf.hf_hub_download("org/gated", "config.json", token=OTHER_TOKEN), "GatedRepoError"),
        ("missing repo", lambda hf: hf.snapshot_download("org/nope", token=False), "RepositoryNotFoundError"),
        ("missing revision", lambda hf: hf.snapshot_download(REPO, revision="nope", token=False), "RevisionNotFoundError"),
        ("missing revision, single file", lambda hf: hf.hf_hub_download(REPO, "config.json", revision="nope", token=False), "RevisionNotFoundError"),
        ("missing file", lambda hf: hf.hf_hub_download(REPO, "nope.bin", token=False), "RemoteEntryNotFoundError"),
    ],
)
def test_errors_raise_the_clients_own_exception(hub, hf_env, case, call, expected):
    with pytest.raises(Exception) as info:
        call(_hf())
    assert type(info.value) is getattr(_errors(), expected), f"{case}: {type(info.value)!r}: {info.value}"


def test_gated_repo_downloads_with_an_approved_token(hub, hf_env):
    got = Path(_hf().hf_hub_download("org/gated", "config.json", token=GOOD_TOKEN))
    assert got.read_bytes() == (hub.repo_dir("org/gated") / "config.json").read_bytes()


def test_cli_download_with_include_and_revision(hub, hf_env, tmp_path):
    out = tmp_path / "cli"
    r = cli("hf", "download", REPO, "--include", "*.safetensors", "--local-dir", str(out))
    assert r.returncode == 0, r.stderr
    shards = sorted(p.name for p in hub.repo_dir(REPO).glob("*.safetensors"))
    assert len(shards) == 3
    same_tree(hub.repo_dir(REPO), out, shards)
    assert not (out / "config.json").exists()
    r = cli("hf", "download", REPO, "config.json", "--revision", "dev")
    assert r.returncode == 0, r.stderr
    # The CLI prints a small report whose last line is "  path: <file>".
    printed = Path(r.stdout.strip().splitlines()[-1].split("path:", 1)[-1].strip())
    assert printed.read_bytes() == (hub.root / "trees" / "tiny-dev" / "config.json").read_bytes()
    r = cli("hf", "download", "org/private")
    assert r.returncode != 0 and "not found" in (r.stdout + r.stderr).lower()


def test_hf_cache_verify_accepts_hubsim_hashes(hub, hf_env):
    _hf().snapshot_download(REPO, token=False)
    r = cli("hf", "cache", "verify", REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    # Corrupt one cached blob: verify must now fail, so the pass above was a real check.
    snap = next((hf_env / "hub" / "models--org--tiny" / "snapshots").iterdir())
    blob = (snap / "config.json").resolve()
    blob.write_bytes(blob.read_bytes() + b" ")
    r = cli("hf", "cache", "verify", REPO)
    assert r.returncode != 0, r.stdout + r.stderr


def test_redirect_to_cdn_drops_the_token_and_keeps_bytes_right(hub, hf_env):
    hub.set_faults({"rules": [{"kind": "redirect"}]})
    hub.reset_stats()
    path = Path(_hf().snapshot_download(REPO, token=GOOD_TOKEN))
    same_tree(hub.repo_dir(REPO), path)
    stats = hub.stats()
    assert stats["faults_fired"].get("redirect", 0) >= 3, stats["faults_fired"]
    assert any(p.startswith("/_cdn/") for p in stats["paths"]), stats["paths"]
    assert stats["cdn_requests_with_auth"] == 0


def test_a_reset_mid_body_is_retried_by_the_client(hub, hf_env):
    shard = sorted(p.name for p in hub.repo_dir(REPO).glob("*.safetensors"))[1]
    hub.set_faults({"rules": [{"kind": "reset", "after_bytes": 100_000, "count": 1, "path_contains": shard}]})
    got = Path(_hf().hf_hub_download(REPO, shard, token=False))
    assert got.read_bytes() == (hub.repo_dir(REPO) / shard).read_bytes()
    assert hub.stats()["faults_fired"]["reset"] == 1


def test_a_cut_large_file_is_resumed_with_a_range_request(hub, hf_env):
    """Over 10 MiB the client retries from its last written 10 MiB chunk with Range: the 206 answer
    must be exact for the result to be right."""
    hub.set_faults({"rules": [{"kind": "reset", "after_bytes": 11 * 1024 * 1024, "count": 1}]})
    hub.reset_stats()
    got = Path(_hf().hf_hub_download("org/big", "big.safetensors", token=False))
    assert got.read_bytes() == (hub.repo_dir("org/big") / "big.safetensors").read_bytes()
    stats = hub.stats()
    assert stats["faults_fired"]["reset"] == 1
    assert stats["statuses"].get("206", 0) == 1, stats["statuses"]
