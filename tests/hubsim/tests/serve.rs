//! `hubsim serve` speaks both hub protocols: what the real clients read is there and consistent.

mod serve_util;

use std::collections::BTreeSet;

use hubsim::serve::git_blob_sha1;
use serde_json::Value;
use serve_util::*;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test]
async fn hf_info_tree_and_resolve_agree_with_the_files() {
    let hub = start().await;
    let c = client();
    let info = json(
        c.get(format!("{}/api/models/{REPO}/revision/main", hub.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sha = info["sha"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 40);
    assert_eq!(info["id"], REPO);
    let siblings: BTreeSet<&str> = info["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    assert!(siblings.contains(BIG) && siblings.contains("extra/notes.txt"));
    assert!(
        !siblings.contains(".hubsim.json"),
        "the config file is never listed"
    );

    let tree: Vec<Value> = c
        .get(format!(
            "{}/api/models/{REPO}/tree/{sha}?recursive=true&expand=false",
            hub.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = hub.dir.path().join(REPO);
    let mut files = 0;
    for e in &tree {
        let path = e["path"].as_str().unwrap();
        if e["type"] == "directory" {
            assert_eq!(path, "extra");
            continue;
        }
        files += 1;
        let data = std::fs::read(root.join(path)).unwrap();
        assert_eq!(e["size"].as_u64().unwrap(), data.len() as u64, "{path}");
        let head = c
            .head(format!("{}/{REPO}/resolve/{sha}/{path}", hub.url))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(&head, "x-repo-commit"), sha);
        assert_eq!(header(&head, "content-length"), data.len().to_string());
        if path.ends_with(".safetensors") {
            let lfs = &e["lfs"];
            assert_eq!(lfs["oid"], sha256_hex(&data), "{path}");
            assert_eq!(lfs["size"].as_u64().unwrap(), data.len() as u64);
            let pointer = hubsim::serve::lfs_pointer(&sha256_hex(&data), data.len() as u64);
            assert_eq!(lfs["pointerSize"].as_u64().unwrap(), pointer.len() as u64);
            assert_eq!(e["oid"], git_blob_sha1(pointer.as_bytes()));
            assert_eq!(
                header(&head, "x-linked-etag"),
                format!("\"{}\"", sha256_hex(&data))
            );
            assert_eq!(header(&head, "x-linked-size"), data.len().to_string());
        } else {
            assert!(e.get("lfs").is_none(), "{path} is not LFS");
            assert_eq!(e["oid"], git_blob_sha1(&data));
            assert_eq!(
                header(&head, "etag"),
                format!("\"{}\"", git_blob_sha1(&data))
            );
            assert!(head.headers().get("x-linked-etag").is_none());
        }
        let body = c
            .get(format!("{}/{REPO}/resolve/main/{path}", hub.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(body[..] == data[..], "{path} body differs");
    }
    assert_eq!(files, 6);
    for h in ["x-xet-hash", "link"] {
        let head = c
            .head(format!("{}/{REPO}/resolve/main/{BIG}", hub.url))
            .send()
            .await
            .unwrap();
        assert!(head.headers().get(h).is_none(), "never advertise xet ({h})");
    }
}

#[tokio::test]
async fn tree_pages_follow_link_next_to_the_full_listing() {
    let hub = start_with(Default::default(), 2).await;
    let c = client();
    let mut url = format!(
        "{}/api/models/{REPO}/tree/main?recursive=true&expand=false",
        hub.url
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = c.get(&url).send().await.unwrap();
        let link = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|e| e["path"].as_str().unwrap().to_string()));
        pages += 1;
        match link {
            Some(l) => {
                assert!(l.ends_with("rel=\"next\""), "{l}");
                url = l[1..l.find('>').unwrap()].to_string();
                assert!(url.starts_with("http://127.0.0.1:"), "absolute: {url}");
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "6 files + 1 directory: {seen:?}");
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        7,
        "no duplicates"
    );
    assert_eq!(pages, 4);
    let shallow: Vec<Value> = c
        .get(format!("{}/api/models/{REPO}/tree/main/extra", hub.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shallow.len(), 2, "{shallow:?}");
}

#[tokio::test]
async fn ranges_answer_206_or_416_with_exact_content_range() {
    let hub = start().await;
    let c = client();
    let data = std::fs::read(hub.dir.path().join(REPO).join(BIG)).unwrap();
    let total = data.len();
    let url = format!("{}/{REPO}/resolve/main/{BIG}", hub.url);
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=4000000-", 4_000_000, total - 1),
        ("bytes=-5", total - 5, total - 1),
        ("bytes=100-99999999", 100, total - 1),
    ] {
        let resp = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes {start}-{end}/{total}")
        );
        assert_eq!(
            header(&resp, "content-length"),
            (end + 1 - start).to_string()
        );
        let body = resp.bytes().await.unwrap();
        assert!(body[..] == data[start..=end], "{range}");
    }
    let resp = c
        .get(&url)
        .header("range", format!("bytes={total}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range"), format!("bytes */{total}"));
    // ModelScope takes ranges on its download URL too.
    let resp = c
        .get(format!(
            "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath={BIG}",
            hub.url
        ))
        .header("range", "bytes=1048576-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes 1048576-{}/{total}", total - 1)
    );
}

#[tokio::test]
async fn branches_tags_and_commits_resolve_and_unknown_ones_do_not() {
    let hub = start().await;
    let c = client();
    let sha = |rev: &'static str| {
        let c = c.clone();
        let url = hub.url.clone();
        async move {
            let resp = c
                .get(format!("{url}/api/models/{REPO}/revision/{rev}"))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.headers().clone(),
                json(resp).await,
            )
        }
    };
    let (_, _, main) = sha("main").await;
    let (_, _, master) = sha("master").await;
    let (_, _, tag) = sha("v1.0").await;
    let (_, _, dev) = sha("dev").await;
    let (_, _, spaced) = sha("feature%2Fx%20y").await;
    assert_eq!(main["sha"], master["sha"]);
    assert_eq!(main["sha"], tag["sha"]);
    assert_ne!(main["sha"], dev["sha"]);
    assert_eq!(dev["sha"], spaced["sha"]);
    let dev_sha = dev["sha"].as_str().unwrap().to_string();

    let config = c
        .get(format!("{}/{REPO}/resolve/{dev_sha}/config.json", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&config, "x-repo-commit"), dev_sha);
    assert_eq!(config.text().await.unwrap(), "{\"hidden_size\": 16}\n");

    let (status, headers, body) = sha("nope").await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-error-code"], "RevisionNotFound");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("Invalid rev id: nope"));
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let resp = c
        .head(format!("{}/{REPO}/resolve/{unknown}/config.json", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "x-error-code"), "RevisionNotFound");
    let resp = c
        .head(format!("{}/{REPO}/resolve/main/missing.bin", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "x-error-code"), "EntryNotFound");
    assert_eq!(
        header(&resp, "x-repo-commit"),
        main["sha"].as_str().unwrap()
    );

    // ModelScope: the same refs by query parameter, quote_plus encoded.
    let files = json(
        c.get(format!(
            "{}/api/v1/models/{REPO}/repo/files?Revision=feature%2Fx+y&Recursive=True",
            hub.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let listed = files["Data"]["Files"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["Revision"], dev_sha);
}

#[tokio::test]
async fn access_rules_give_each_client_its_error() {
    let hub = start().await;
    let c = client();
    let hf = |path: String, token: Option<&'static str>| {
        let mut r = c.get(format!("{}{path}", hub.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let resp = r.send().await.unwrap();
            let code = resp
                .headers()
                .get("x-error-code")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (resp.status().as_u16(), code)
        }
    };
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        ("/api/models/org/nope".into(), None, 401, "RepoNotFound"),
        (
            "/api/models/org/nope".into(),
            Some("alice"),
            404,
            "RepoNotFound",
        ),
        ("/api/models/org/private".into(), None, 401, "RepoNotFound"),
        (
            "/api/models/org/private".into(),
            Some("bob"),
            404,
            "RepoNotFound",
        ),
        ("/api/models/org/private".into(), Some("alice"), 200, ""),
        (
            "/org/private/resolve/main/config.json".into(),
            Some("bob"),
            404,
            "RepoNotFound",
        ),
        ("/api/models/org/gated".into(), None, 200, ""),
        ("/api/models/org/gated/tree/main".into(), None, 200, ""),
        (
            "/org/gated/resolve/main/config.json".into(),
            None,
            401,
            "GatedRepo",
        ),
        (
            "/org/gated/resolve/main/config.json".into(),
            Some("bob"),
            200,
            "",
        ),
        ("/api/models/org/tiny".into(), Some("eve"), 401, ""),
        ("/api/models/org/tiny".into(), Some("bob"), 200, ""),
    ];
    for (path, token, status, code) in cases {
        let got = hf(path.clone(), token).await;
        assert_eq!(got, (status, code.to_string()), "{path} with {token:?}");
    }

    let ms = |path: &'static str, token: Option<&'static str>| {
        let mut r = c.get(format!("{}{path}", hub.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }
    };
    for (path, token, status) in [
        (
            "/api/v1/models/org/nope/repo/files?Recursive=True",
            None,
            404,
        ),
        (
            "/api/v1/models/org/private/repo/files?Recursive=True",
            None,
            401,
        ),
        (
            "/api/v1/models/org/private/repo/files?Recursive=True",
            Some("bob"),
            404,
        ),
        (
            "/api/v1/models/org/private/repo/files?Recursive=True",
            Some("alice"),
            200,
        ),
        (
            "/api/v1/models/org/gated/repo?FilePath=config.json",
            None,
            401,
        ),
        (
            "/api/v1/models/org/tiny/repo/files?Revision=nope",
            None,
            404,
        ),
        (
            "/api/v1/models/org/tiny/repo?FilePath=missing.bin",
            None,
            404,
        ),
        ("/api/v1/models/org/tiny/repo/files", Some("eve"), 401),
    ] {
        let (got, body) = ms(path, token).await;
        assert_eq!(got, status, "{path} with {token:?}: {body}");
        if status != 200 {
            assert_eq!(body["Success"], false, "{body}");
            assert!(body["Message"].is_string(), "{body}");
        }
    }
    // Gated with a valid token that the repo does not authorize: 403 on both hubs.
    std::fs::write(
        hub.dir.path().join("org/gated/.hubsim.json"),
        br#"{"gated": true, "authorized_tokens": ["alice"]}"#,
    )
    .unwrap();
    assert_eq!(
        hf("/org/gated/resolve/main/config.json".into(), Some("bob")).await,
        (403, "GatedRepo".to_string())
    );
    let (got, _) = ms(
        "/api/v1/models/org/gated/repo?FilePath=config.json",
        Some("bob"),
    )
    .await;
    assert_eq!(got, 403);
}

#[tokio::test]
async fn modelscope_listing_hashes_and_bodies_match_the_files() {
    let hub = start().await;
    let c = client();
    let body = json(
        c.get(format!(
            "{}/api/v1/models/{REPO}/repo/files?Revision=master&Recursive=True",
            hub.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(body["Code"], 200);
    assert_eq!(body["Success"], true);
    let entries = body["Data"]["Files"].as_array().unwrap();
    let root = hub.dir.path().join(REPO);
    let mut blobs = 0;
    for e in entries {
        let path = e["Path"].as_str().unwrap();
        if e["Type"] == "tree" {
            assert_eq!(path, "extra");
            continue;
        }
        blobs += 1;
        let data = std::fs::read(root.join(path)).unwrap();
        assert_eq!(e["Sha256"], sha256_hex(&data));
        assert_eq!(e["Size"].as_u64().unwrap(), data.len() as u64);
        let resp = c
            .get(format!(
                "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath={}",
                hub.url,
                path.replace('/', "%2F")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-linked-etag"),
            format!("\"{}\"", sha256_hex(&data))
        );
        assert!(resp.bytes().await.unwrap()[..] == data[..], "{path}");
    }
    assert_eq!(blobs, 6);

    let scoped = json(
        c.get(format!(
            "{}/api/v1/models/{REPO}/repo/files?Revision=master&Recursive=True&Root=extra",
            hub.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(scoped["Data"]["Files"].as_array().unwrap().len(), 2);

    let revs = json(
        c.get(format!("{}/api/v1/models/{REPO}/revisions", hub.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revs["Data"]["RevisionMap"]["Tags"], serde_json::json!([]));
    assert_eq!(
        revs["Data"]["RevisionMap"]["Branches"][0]["Revision"],
        "master"
    );
    let probe = c
        .get(format!("{}/api/v1/repos/internalAccelerationInfo", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 404);
}

#[tokio::test]
async fn stats_count_requests_and_body_bytes_per_path() {
    let hub = start().await;
    let c = client();
    let url = format!("{}/{REPO}/resolve/main/{BIG}", hub.url);
    c.head(&url).send().await.unwrap();
    let n = c
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert_eq!(n, BIG_LEN);
    c.get(format!(
        "{}/api/v1/models/{REPO}/repo?FilePath=config.json",
        hub.url
    ))
    .send()
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let stats: hubsim::serve::StatsSnapshot = c
        .get(format!("{}/_hubsim/stats", hub.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.bytes_sent, BIG_LEN as u64 + 19);
    let p = &stats.paths[&format!("/{REPO}/resolve/main/{BIG}")];
    assert_eq!((p.requests, p.bytes_sent), (2, BIG_LEN as u64));
    let ms = &stats.paths[&format!("/api/v1/models/{REPO}/repo?FilePath=config.json")];
    assert_eq!((ms.requests, ms.bytes_sent), (1, 19));
    assert_eq!(stats.max_concurrent_bodies, 1);
    assert_eq!(stats.cdn_requests_with_auth, 0);
    let reset: hubsim::serve::StatsSnapshot = c
        .post(format!("{}/_hubsim/stats/reset", hub.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset.requests, 0);
    assert_eq!(hub.handle.stats().bytes_sent, 0);
}

#[tokio::test]
async fn fault_set_round_trips_and_rejects_nonsense() {
    let hub = start().await;
    let c = client();
    let set = serde_json::json!({
        "bandwidth_total_bps": 1000000,
        "latency_ms": 5,
        "rules": [{"kind": "reset", "after_bytes": 10, "count": 2, "path_contains": "model"}]
    });
    let resp = c
        .post(format!("{}/_hubsim/faults", hub.url))
        .json(&set)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = c
        .get(format!("{}/_hubsim/faults", hub.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["rules"], set["rules"]);
    assert_eq!(got["bandwidth_total_bps"], 1000000);
    for bad in [
        serde_json::json!({"rules": [{"kind": "explode"}]}),
        serde_json::json!({"rules": [{"kind": "status", "status": 200}]}),
        serde_json::json!({"bandwith_total_bps": 5}),
    ] {
        let resp = c
            .post(format!("{}/_hubsim/faults", hub.url))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let cleared = c
        .post(format!("{}/_hubsim/faults", hub.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert!(hub.handle.faults().rules.is_empty());
}
