"""The real ModelScope client (modelscope 1.40.2 on modelscope-hub 0.5.1, library and CLI)
against hubsim.

Downloads are compared byte for byte with the served files. Errors: `modelscope.snapshot_download`
and `model_file_download` re-raise as `requests.exceptions.HTTPError` with the modelscope_hub
exception (`NotExistError`, `AuthenticationError`, `PermissionDeniedError`) as `__cause__`
(hub-protocols.md §2.5); per-file failures inside a snapshot come as `FileDownloadError`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GOOD_TOKEN, OTHER_TOKEN, UNKNOWN_TOKEN, cli, same_tree

REPO = "org/tiny"


def _ms():
    import modelscope

    return modelscope


def _file_download(*args, **kwargs):
    from modelscope.hub.file_download import model_file_download

    return model_file_download(*args, **kwargs)


def _served(hub) -> list[str]:
    root = hub.repo_dir(REPO)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".hubsim.json")


def test_snapshot_download_full_repo_is_byte_identical(hub, ms_env):
    path = Path(_ms().snapshot_download(REPO, cache_dir=str(ms_env)))
    files = same_tree(hub.repo_dir(REPO), path)
    assert "extra/notes.txt" in files and len(files) == len(_served(hub))


def test_single_file(hub, ms_env):
    got = Path(_file_download(REPO, "config.json", cache_dir=str(ms_env)))
    assert got.read_bytes() == (hub.repo_dir(REPO) / "config.json").read_bytes()
    got = Path(_file_download(REPO, "extra/notes.txt", cache_dir=str(ms_env)))
    assert got.read_bytes() == (hub.repo_dir(REPO) / "extra" / "notes.txt").read_bytes()


def test_include_patterns(hub, ms_env, tmp_path):
    out = tmp_path / "out"
    hub.reset_stats()
    _ms().snapshot_download(REPO, allow_patterns=["*.safetensors"], local_dir=str(out))
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts)
    want = [f for f in _served(hub) if f.endswith(".safetensors")]
    assert got == want and len(want) == 3
    assert not (out / "config.json").exists()
    same_tree(hub.repo_dir(REPO), out, want)
    downloads = [p for p in hub.stats()["paths"] if "FilePath=" in p]
    assert sorted(p.split("FilePath=")[1] for p in downloads) == want


def test_branch_and_commit_revisions(hub, ms_env):
    from huggingface_hub import HfApi  # the same server answers the HF API: take the commit id

    dev_sha = HfApi().model_info(REPO, revision="dev", token=False).sha
    dev_dir = hub.root / "trees" / "tiny-dev"
    path = Path(_ms().snapshot_download(REPO, revision="dev", cache_dir=str(ms_env)))
    same_tree(dev_dir, path)
    path = Path(_ms().snapshot_download(REPO, revision=dev_sha, cache_dir=str(ms_env)))
    same_tree(dev_dir, path)
    got = Path(_file_download(REPO, "config.json", revision=dev_sha, cache_dir=str(ms_env)))
    assert b"hubsim_branch" in got.read_bytes()


def test_private_repo_with_an_authorized_token(hub, ms_env):
    path = Path(_ms().snapshot_download("org/private", token=GOOD_TOKEN, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir("org/private"), path)


@pytest.mark.parametrize(
    "case, call, cause",
    [
        ("wrong token (valid, no access) on a private repo", lambda d: _ms().snapshot_download("org/private", token=OTHER_TOKEN, cache_dir=d), "NotExistError"),
        ("no token on a private repo", lambda d: _ms().snapshot_download("org/private", cache_dir=d), "AuthenticationError"),
        ("unknown token", lambda d: _ms().snapshot_download(REPO, token=UNKNOWN_TOKEN, cache_dir=d), "AuthenticationError"),
        ("gated repo, no token", lambda d: _file_download("org/gated", "config.json", cache_dir=d), "AuthenticationError"),
        ("gated repo, token not approved", lambda d: _file_download("org/gated", "config.json", token=OTHER_TOKEN, cache_dir=d), "PermissionDeniedError"),
        ("missing repo", lambda d: _ms().snapshot_download("org/nope", cache_dir=d), "NotExistError"),
        ("missing revision", lambda d: _ms().snapshot_download(REPO, revision="nope", cache_dir=d), "NotExistError"),
        ("missing file", lambda d: _file_download(REPO, "nope.bin", cache_dir=d), "NotExistError"),
    ],
)
def test_errors_raise_the_clients_own_exception(hub, ms_env, case, call, cause):
    import requests
    from modelscope_hub import errors

    with pytest.raises(Exception) as info:
        call(str(ms_env))
    assert type(info.value) is requests.exceptions.HTTPError, f"{case}: {type(info.value)!r}: {info.value}"
    assert type(info.value.__cause__) is getattr(errors, cause), f"{case}: cause {type(info.value.__cause__)!r}"


def test_gated_snapshot_fails_per_file(hub, ms_env):
    from modelscope_hub.errors import FileDownloadError

    with pytest.raises(FileDownloadError) as info:
        _ms().snapshot_download("org/gated", cache_dir=str(ms_env))
    assert "401" in str(info.value)
    path = Path(_ms().snapshot_download("org/gated", token=GOOD_TOKEN, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir("org/gated"), path)


def test_sha256_check_passes_on_download_and_on_the_warm_cache(hub, ms_env):
    path = Path(_ms().snapshot_download(REPO, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir(REPO), path)
    # The rerun re-hashes every cached file against the listing's Sha256 and downloads nothing.
    hub.reset_stats()
    again = Path(_ms().snapshot_download(REPO, cache_dir=str(ms_env)))
    assert again == path
    assert not any("FilePath=" in p for p in hub.stats()["paths"]), hub.stats()["paths"]


def test_sha256_check_catches_a_corrupted_byte(hub, ms_env):
    """Proves the check above is real: a flipped byte with the right length is refused."""
    from modelscope_hub.errors import FileDownloadError, FileIntegrityError

    hub.set_faults({"rules": [{"kind": "corrupt", "offset": 3, "path_contains": "FilePath=tokenizer.json"}]})
    hub.reset_stats()
    with pytest.raises(FileDownloadError) as info:
        _ms().snapshot_download(REPO, allow_patterns=["tokenizer.json"], cache_dir=str(ms_env))
    failure = info.value.failed_files["tokenizer.json"]
    assert type(failure) is FileIntegrityError and "Hash mismatch" in str(failure), repr(failure)
    # Same length, one flipped byte: only the sha256 can tell. The client tried 3 times.
    assert hub.stats()["faults_fired"]["corrupt"] == 3
    hub.set_faults({})
    path = Path(_ms().snapshot_download(REPO, allow_patterns=["tokenizer.json"], cache_dir=str(ms_env)))
    same_tree(hub.repo_dir(REPO), path, ["tokenizer.json"])


def test_cli_download(hub, ms_env, tmp_path):
    out = tmp_path / "cli"
    r = cli("modelscope", "download", "--model", REPO, "--local_dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    same_tree(hub.repo_dir(REPO), out, _served(hub))
    one = tmp_path / "one"
    r = cli("modelscope", "download", "--model", REPO, "config.json", "--revision", "dev", "--local_dir", str(one))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (one / "config.json").read_bytes() == (hub.root / "trees" / "tiny-dev" / "config.json").read_bytes()
    r = cli("modelscope", "download", "--model", "org/nope", "--local_dir", str(tmp_path / "nope"))
    assert r.returncode != 0


def test_redirect_and_a_mid_body_reset_are_survived(hub, ms_env):
    shard = sorted(p.name for p in hub.repo_dir(REPO).glob("*.safetensors"))[0]
    hub.set_faults({"rules": [
        {"kind": "redirect"},
        {"kind": "reset", "after_bytes": 200_000, "count": 1, "path_contains": shard},
    ]})
    hub.reset_stats()
    path = Path(_ms().snapshot_download(REPO, token=GOOD_TOKEN, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir(REPO), path)
    stats = hub.stats()
    assert stats["faults_fired"]["reset"] == 1
    assert stats["faults_fired"]["redirect"] >= len(_served(hub))
    assert stats["cdn_requests_with_auth"] == 0


def test_a_truncated_body_is_resumed_from_the_exact_byte(hub, ms_env):
    hub.set_faults({"rules": [{"kind": "truncate", "after_bytes": 5_000_000, "count": 1}]})
    hub.reset_stats()
    path = Path(_ms().snapshot_download("org/big", cache_dir=str(ms_env)))
    same_tree(hub.repo_dir("org/big"), path)
    stats = hub.stats()
    assert stats["faults_fired"]["truncate"] == 1
    assert stats["statuses"].get("206", 0) == 1, stats["statuses"]
    key = "/api/v1/models/org/big/repo?FilePath=big.safetensors"
    # 5,000,000 bytes, then the rest: no byte sent twice.
    assert stats["paths"][key]["bytes_sent"] == (hub.repo_dir("org/big") / "big.safetensors").stat().st_size
