//! Each "like the real hub" quirk (issue 14) as seen by an HTTP client, and the issue-15 answer
//! shapes (ignored Range, short 206, wrong Content-Range total, a storm that ends by itself).

mod serve_util;

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};
use serve_util::*;

async fn quirky(quirks: Value) -> Hub {
    start_with(faults(json!({ "quirks": quirks })), 1000).await
}

fn listing_url(hub: &Hub, query: &str) -> String {
    format!("{}/api/v1/models/{REPO}/repo/files?{query}", hub.url)
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

fn entries(v: &Value) -> Vec<Value> {
    match &v["Data"] {
        Value::Array(a) => a.clone(),
        d => d["Files"].as_array().unwrap().clone(),
    }
}

#[tokio::test]
async fn modelscope_without_commit_ids_has_per_file_revisions_and_refuses_hex_revisions() {
    let hub = quirky(
        json!({"ms_no_commit_ids": true, "ms_per_file_revision": true,
                            "ms_revision_names_only": true}),
    )
    .await;
    let c = client();
    let revs = json_of(
        c.get(format!("{}/api/v1/models/{REPO}/revisions", hub.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let branches = revs["Data"]["RevisionMap"]["Branches"].as_array().unwrap();
    assert!(branches.iter().any(|b| b["Revision"] == "master"));
    assert!(
        branches.iter().all(|b| b.get("CommitId").is_none()),
        "{revs}"
    );

    let list = json_of(
        c.get(listing_url(&hub, "Revision=master&Recursive=True"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let files = entries(&list);
    let revs: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| f["Revision"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(revs.len(), files.len(), "every file has its own revision");
    assert!(revs.iter().all(|r| r.len() == 40));

    let url = format!(
        "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath=config.json",
        hub.url
    );
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-repo-commit").is_none());
    // A commit id (here: a per-file revision) is not a revision the service takes.
    let hex = revs.iter().next().unwrap();
    for u in [
        listing_url(&hub, &format!("Revision={hex}&Recursive=True")),
        url.replace("Revision=master", &format!("Revision={hex}")),
    ] {
        assert_eq!(c.get(&u).send().await.unwrap().status(), 404, "{u}");
    }
}

#[tokio::test]
async fn modelscope_small_files_ignore_range_but_lfs_files_honour_it() {
    let hub = quirky(json!({"ms_small_files_ignore_range": true})).await;
    let c = client();
    let base = format!(
        "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath=",
        hub.url
    );
    let resp = c
        .get(format!("{base}config.json"))
        .header("range", "bytes=3-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), &b"{\"hidden_size\": 8}\n"[..]);
    let resp = c
        .get(format!("{base}{BIG}"))
        .header("range", "bytes=3-9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().len(), 7);
}

#[tokio::test]
async fn modelscope_listing_403_comes_after_a_good_listing_then_heals() {
    let hub = quirky(json!({"ms_listing_403": {"skip": 1, "count": 2}})).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let u = listing_url(&hub, "Revision=master&Recursive=True");
        statuses.push(c.get(u).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 403, 403, 200]);
    assert_eq!(hub.handle.stats().faults_fired["ms_listing_403"], 2);
}

#[tokio::test]
async fn modelscope_listing_cap_truncates_silently_and_root_relists_a_directory() {
    let hub = quirky(json!({"ms_listing_cap": 3})).await;
    let c = client();
    let whole = entries(
        &json_of(
            c.get(listing_url(&hub, "Revision=master&Recursive=True"))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // org/tiny has 7 entries (6 files, 1 directory): the first 3 by path, nothing says so.
    let paths: Vec<&str> = whole.iter().map(|e| e["Path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["README.md", "config.json", "extra"]);
    let sub = entries(
        &json_of(
            c.get(listing_url(
                &hub,
                "Revision=master&Recursive=True&Root=extra",
            ))
            .send()
            .await
            .unwrap(),
        )
        .await,
    );
    let paths: Vec<&str> = sub.iter().map(|e| e["Path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["extra/adapter.safetensors", "extra/notes.txt"]);
}

#[tokio::test]
async fn modelscope_listing_variants() {
    let hub = quirky(json!({"ms_listing_variants":
        ["bare_list", "lowercase_keys", "name_only", "empty_sha256"]}))
    .await;
    let c = client();
    let v = json_of(
        c.get(listing_url(&hub, "Revision=master&Recursive=True"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let list = v["Data"].as_array().expect("Data is a bare list");
    let notes = list
        .iter()
        .find(|e| e["Name"] == "extra/notes.txt")
        .expect("Name holds the path");
    assert!(notes.get("Path").is_none() && notes.get("path").is_none());
    assert_eq!(notes["sha256"], "");
    assert_eq!(notes["size"], 6);
    assert_eq!(notes["type"], "blob");
    // The hash is still there, on the download.
    let resp = c
        .get(format!(
            "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath=extra/notes.txt",
            hub.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "x-linked-etag"),
        format!("\"{}\"", sha256_hex(b"hello\n"))
    );
}

#[tokio::test]
async fn hf_ratelimit_headers_and_api_429_with_retry_after() {
    let hub = quirky(json!({"hf_ratelimit_headers": true,
                            "hf_api_429": {"count": 2, "secs": 7}}))
    .await;
    let c = client();
    let info = format!("{}/api/models/{REPO}/revision/main", hub.url);
    let tree = format!("{}/api/models/{REPO}/tree/main?recursive=true", hub.url);
    for u in [&info, &tree] {
        let resp = c.get(u).send().await.unwrap();
        assert_eq!(resp.status(), 429, "{u}");
        assert_eq!(header(&resp, "ratelimit"), "\"api\";r=0;t=7");
        assert_eq!(header(&resp, "retry-after"), "7");
    }
    for u in [&info, &tree] {
        let resp = c.get(u).send().await.unwrap();
        assert_eq!(resp.status(), 200, "count 2: healed");
        assert_eq!(header(&resp, "ratelimit"), "\"resolvers\";r=2999;t=172");
    }
    let resp = c
        .get(format!("{}/{REPO}/resolve/main/config.json", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "ratelimit"), "\"resolvers\";r=2999;t=172");
    assert!(header(&resp, "ratelimit-policy").contains("q=3000"));

    // Scoped to tree listings only.
    hub.handle
        .set_faults(faults(json!({"quirks": {"hf_api_429": {"calls": "tree"}}})))
        .unwrap();
    assert_eq!(c.get(&info).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&tree).send().await.unwrap().status(), 429);
    assert_eq!(hub.handle.stats().faults_fired["hf_api_429"], 3);
}

#[tokio::test]
async fn hf_small_files_redirect_to_resolve_cache_and_lfs_files_to_the_cdn() {
    let hub = quirky(json!({"hf_resolve_cache_redirect": true, "hf_lfs_cdn_redirect": true})).await;
    let c = client();
    let resp = c
        .head(format!("{}/{REPO}/resolve/main/extra/notes.txt", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    let location = header(&resp, "location");
    let commit = header(&resp, "x-repo-commit");
    assert_eq!(
        location,
        format!("/api/resolve-cache/models/{REPO}/{commit}/extra/notes.txt")
    );
    let resp = c
        .get(format!("{}{location}", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-repo-commit"), commit);
    assert_eq!(
        header(&resp, "etag"),
        format!("\"{}\"", hubsim::serve::git_blob_sha1(b"hello\n"))
    );
    assert_eq!(resp.bytes().await.unwrap(), &b"hello\n"[..]);

    let resp = c
        .get(format!("{}/{REPO}/resolve/main/{BIG}", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(header(&resp, "location").contains("/_cdn/"));
}

#[tokio::test]
async fn hf_mis_cased_and_renamed_repos_redirect_to_the_canonical_id() {
    let hub = quirky(json!({"hf_case_redirect": true,
                            "hf_renamed": {"old-org/tiny-v0": "org/tiny"}}))
    .await;
    let c = client();
    let cases = [
        (
            "/api/models/ORG/Tiny/revision/main",
            "/api/models/org/tiny/revision/main",
        ),
        (
            "/api/models/Org/TINY/tree/main?recursive=true",
            "/api/models/org/tiny/tree/main?recursive=true",
        ),
        (
            "/ORG/tiny/resolve/main/config.json",
            "/org/tiny/resolve/main/config.json",
        ),
        (
            "/old-org/tiny-v0/resolve/main/config.json",
            "/org/tiny/resolve/main/config.json",
        ),
    ];
    for (from, to) in cases {
        let resp = c.get(format!("{}{from}", hub.url)).send().await.unwrap();
        assert_eq!(resp.status(), 307, "{from}");
        assert_eq!(header(&resp, "location"), to, "{from}");
    }
    // A repo that exists under neither spelling is still not found.
    let resp = c
        .get(format!("{}/api/models/org/nope", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn gzip_only_when_the_client_accepts_it() {
    let hub = quirky(json!({"gzip": true})).await;
    let c = client();
    let url = format!("{}/{REPO}/resolve/main/config.json", hub.url);
    let resp = c
        .get(&url)
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-encoding"), "gzip");
    let packed = resp.bytes().await.unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, b"{\"hidden_size\": 8}\n");
    let resp = c
        .get(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(resp.bytes().await.unwrap(), &b"{\"hidden_size\": 8}\n"[..]);
    // API JSON too; LFS bodies never.
    let resp = c
        .get(format!("{}/api/models/{REPO}", hub.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-encoding"), "gzip");
    let resp = c
        .get(format!("{}/{REPO}/resolve/main/{BIG}", hub.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn origin_redirect_hands_over_to_the_other_origin_and_the_log_shows_who_saw_a_token() {
    let hub = quirky(json!({"origin_redirect": "other"})).await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = c
        .get(format!("{}/{REPO}/resolve/main/config.json", hub.url))
        .bearer_auth("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), &b"{\"hidden_size\": 8}\n"[..]);
    let log = hub.handle.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].status, 307);
    assert!(log[0].host.starts_with("127.0.0.1:") && log[0].authorization);
    assert!(log[1].host.starts_with("localhost:"));
    // reqwest drops the token on the cross-origin hop: the log proves it.
    assert!(!log[1].authorization, "{log:?}");
    // The same log over HTTP.
    let via_http: Value = client()
        .get(format!("{}/_hubsim/requests", hub.handle.other_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_http.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn ignore_range_short_partial_and_wrong_total() {
    let hub = start_with(
        faults(json!({"rules": [
            {"kind": "ignore_range", "count": 1},
            {"kind": "short_partial", "missing_bytes": 10, "count": 1},
            {"kind": "wrong_total", "delta": -1, "count": 1}
        ]})),
        1000,
    )
    .await;
    let c = client();
    let url = format!("{}/{REPO}/resolve/main/{BIG}", hub.url);
    let get = || c.get(&url).header("range", "bytes=100-199").send();
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200, "ignored range: the whole file");
    assert_eq!(resp.bytes().await.unwrap().len(), BIG_LEN);
    // The next rule in order fires on the next ranged request; count 1 each.
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 206);
    let cr = header(&resp, "content-range");
    let body = resp.bytes().await.unwrap();
    // short_partial and wrong_total fire together on this one.
    assert_eq!(cr, format!("bytes 100-189/{}", BIG_LEN - 1));
    assert_eq!(body.len(), 90);
    let resp = get().await.unwrap();
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes 100-199/{BIG_LEN}")
    );
    let fired = hub.handle.stats().faults_fired;
    assert_eq!(
        (
            fired["ignore_range"],
            fired["short_partial"],
            fired["wrong_total"]
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_storm_with_for_secs_ends_by_itself() {
    let hub = start_with(
        faults(json!({"rules": [
            {"kind": "status", "status": 503, "probability": 1.0, "for_secs": 1}
        ]})),
        1000,
    )
    .await;
    let c = client();
    let url = format!("{}/{REPO}/resolve/main/config.json", hub.url);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
}
