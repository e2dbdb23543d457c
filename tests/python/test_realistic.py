"""The real huggingface_hub and modelscope clients against hubsim in "like the real hub" mode
(the quirks of `hubsim serve --realistic`, hub-protocols.md §2.8, issue 14): every download stays
byte-identical, and the server log shows each quirk was really met.

One quirk the client cannot take: huggingface_hub 2.4 sends repo info (`/api/models/R/revision/X`)
without its retry helper, so a 429 there fails `snapshot_download` although the real hub sends
such 429s; realistic mode therefore rate-limits the tree listing only (which the client retries,
honouring `RateLimit: "api";r=0;t=N`), and a test below shows the repo-info case fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GOOD_TOKEN, same_tree

REPO = "org/tiny"
MANY = "org/many"
# Quirks::realistic() of tests/hubsim/src/serve/quirks.rs (checked against `--realistic` by
# tests/hubsim/tests/serve_cli.rs).
REALISTIC = {
    "ms_no_commit_ids": True,
    "ms_per_file_revision": True,
    "ms_revision_names_only": True,
    "ms_small_files_ignore_range": True,
    "ms_listing_403": {"skip": 1, "count": 1},
    "ms_listing_cap": 3000,
    "hf_ratelimit_headers": True,
    "hf_api_429": {"count": 1, "secs": 1, "calls": "tree"},
    "hf_resolve_cache_redirect": True,
    "hf_lfs_cdn_redirect": True,
    "hf_case_redirect": True,
    "gzip": True,
}


def _realistic(hub, **rules) -> None:
    hub.set_faults({"quirks": REALISTIC, **rules})
    hub.reset_stats()


def _served(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".hubsim.json")


@pytest.fixture(scope="module")
def many(hub) -> Path:
    """3 directories of 1100 small files: 3303 entries, over ModelScope's 3000 cap."""
    root = hub.repo_dir(MANY)
    for d in range(3):
        sub = root / f"d{d}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(1100):
            (sub / f"f{i:04}.txt").write_bytes(f"{d}/{i}\n".encode())
    return root


def test_hf_snapshot_download_meets_every_hf_quirk(hub, hf_env):
    from huggingface_hub import snapshot_download

    _realistic(hub)
    path = Path(snapshot_download(REPO, token=GOOD_TOKEN))
    same_tree(hub.repo_dir(REPO), path)
    log = hub.requests()
    statuses = [(r["status"], r["path"].split("?")[0]) for r in log]
    assert any(s == 429 and "/tree/" in p for s, p in statuses), statuses
    assert any(s == 307 and "/resolve/" in p for s, p in statuses)
    assert any("/api/resolve-cache/" in p for _, p in statuses)
    cdn = [r for r in log if r["path"].startswith("/_cdn/")]
    assert cdn and not any(r["authorization"] for r in cdn), "the token never reaches the CDN origin"
    # huggingface_hub 2.4 asks for identity on HEAD only; its GETs accept gzip, and small files
    # came gzipped (yet byte-identical above: the client decodes them).
    assert any(r.get("content_encoding") == "gzip" and "/api/resolve-cache/" in r["path"] for r in log)
    assert all(r.get("accept_encoding") == "identity" for r in log if r["method"] == "HEAD")


def test_hf_follows_a_mis_cased_repo_id(hub, hf_env):
    from huggingface_hub import hf_hub_download

    _realistic(hub)
    got = Path(hf_hub_download("ORG/Tiny", "config.json"))
    assert got.read_bytes() == (hub.repo_dir(REPO) / "config.json").read_bytes()
    assert any(r["status"] == 307 and r["path"].startswith("/ORG/Tiny/") for r in hub.requests())


def test_hf_cannot_take_a_429_on_repo_info(hub, hf_env):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub.set_faults({"quirks": {**REALISTIC, "hf_api_429": {"count": 1, "secs": 1, "calls": "revision"}}})
    # One 429 on repo info, no retry: the client looks for a cached copy and gives up.
    with pytest.raises(LocalEntryNotFoundError) as e:
        snapshot_download(REPO)
    assert "429" in str(e.value) and "'api' rate limit" in str(e.value)


def test_modelscope_snapshot_meets_every_modelscope_quirk(hub, ms_env):
    import modelscope

    _realistic(hub)
    path = Path(modelscope.snapshot_download(REPO, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir(REPO), path)
    log = hub.requests()
    assert all("/revisions" not in r["path"] for r in log)


def test_modelscope_restarts_a_cut_small_file_from_byte_zero(hub, ms_env):
    import modelscope

    _realistic(hub, rules=[{"kind": "truncate", "after_bytes": 100, "count": 1, "path_contains": "tokenizer.json"}])
    path = Path(modelscope.snapshot_download(REPO, cache_dir=str(ms_env)))
    same_tree(hub.repo_dir(REPO), path)
    again = [r for r in hub.requests() if "FilePath=tokenizer.json" in r["path"]]
    assert len(again) == 2 and again[1]["range"] == "bytes=100-" and again[1]["status"] == 200, again


def test_modelscope_walks_a_listing_over_the_3000_cap_through_a_403(hub, ms_env, many, tmp_path):
    import modelscope

    _realistic(hub)
    out = tmp_path / "out"
    modelscope.snapshot_download(MANY, allow_patterns=["*/f0007.txt"], local_dir=str(out))
    want = [f"d{d}/f0007.txt" for d in range(3)]
    same_tree(many, out, want)
    listings = [r for r in hub.requests() if "/repo/files" in r["path"]]
    assert listings[0]["status"] == 200 and "Root=" not in listings[0]["path"]
    assert any(r["status"] == 403 for r in listings), "the intermittent 403 was met and retried"
    assert any("Root=d2" in r["path"] and r["status"] == 200 for r in listings), listings
