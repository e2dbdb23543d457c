//! Every fault knob of `hubsim serve` is really seen by an HTTP client (reqwest).
//! Timing assertions are one-sided and generous so a loaded 2-core machine cannot flake them.

mod serve_util;

use std::time::{Duration, Instant};

use serde_json::json;
use serve_util::*;

fn big_url(hub: &Hub) -> String {
    format!("{}/{REPO}/resolve/main/{BIG}", hub.url)
}

fn source(hub: &Hub) -> Vec<u8> {
    std::fs::read(hub.dir.path().join(REPO).join(BIG)).unwrap()
}

#[tokio::test]
async fn reset_aborts_the_body_after_n_bytes_then_disarms() {
    let hub = start_with(
        faults(json!({"rules": [{"kind": "reset", "after_bytes": 1_000_000, "count": 1}]})),
        1000,
    )
    .await;
    let c = client();
    // A HEAD does not use up the count: body faults only hit bodies.
    assert_eq!(c.head(big_url(&hub)).send().await.unwrap().status(), 200);
    let resp = c.get(big_url(&hub)).send().await.unwrap();
    assert_eq!(header(&resp, "content-length"), BIG_LEN.to_string());
    let (got, err) = read_body(resp).await;
    assert!(err.is_some(), "the client must see the reset as an error");
    assert_eq!(
        got.len(),
        1_000_000,
        "exactly N bytes arrive before the reset"
    );
    assert!(
        got[..] == source(&hub)[..got.len()],
        "bytes before the reset are right"
    );
    let (again, err) = read_body(c.get(big_url(&hub)).send().await.unwrap()).await;
    assert!(err.is_none(), "count 1: the retry succeeds");
    assert_eq!(again.len(), BIG_LEN);
    assert_eq!(hub.handle.stats().faults_fired["reset"], 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_status_faults_disarm_after_count() {
    let hub = start_with(
        faults(json!({"rules": [
            {"kind": "rate_limit", "retry_after_secs": 7, "count": 1, "path_contains": "config"},
            {"kind": "status", "status": 503, "count": 2, "path_contains": "README"}
        ]})),
        1000,
    )
    .await;
    let c = client();
    let cfg = format!("{}/{REPO}/resolve/main/config.json", hub.url);
    let resp = c.get(&cfg).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "7");
    assert_eq!(header(&resp, "ratelimit"), "\"resolvers\";r=0;t=7");
    assert_eq!(c.get(&cfg).send().await.unwrap().status(), 200);

    let readme = format!(
        "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath=README.md",
        hub.url
    );
    let statuses = [
        c.get(&readme).send().await.unwrap().status().as_u16(),
        c.get(&readme).send().await.unwrap().status().as_u16(),
        c.get(&readme).send().await.unwrap().status().as_u16(),
    ];
    assert_eq!(statuses, [503, 503, 200]);
    // API listings are not hit unless the rule says api: true.
    let listing = format!("{}/api/models/{REPO}/tree/main?recursive=true", hub.url);
    hub.handle
        .set_faults(faults(
            json!({"rules": [{"kind": "status", "status": 500, "count": 1}]}),
        ))
        .unwrap();
    assert_eq!(c.get(&listing).send().await.unwrap().status(), 200);
    hub.handle
        .set_faults(faults(
            json!({"rules": [{"kind": "status", "status": 500, "count": 1, "api": true}]}),
        ))
        .unwrap();
    assert_eq!(c.get(&listing).send().await.unwrap().status(), 500);
    assert_eq!(c.get(&listing).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn stall_before_headers_and_mid_body_time_the_client_out() {
    let hub = start_with(
        faults(json!({"rules": [{"kind": "stall", "count": 1}]})),
        1000,
    )
    .await;
    let c = client();
    let t = Instant::now();
    let err = c
        .get(big_url(&hub))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(500));

    hub.handle
        .set_faults(faults(
            json!({"rules": [{"kind": "stall", "after_bytes": 65536, "count": 1}]}),
        ))
        .unwrap();
    let mut resp = c.get(big_url(&hub)).send().await.unwrap();
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(700), resp.chunk()).await {
            Ok(Ok(Some(chunk))) => got += chunk.len(),
            Ok(other) => panic!("body ended instead of stalling: {other:?}"),
            Err(_) => break,
        }
    }
    assert_eq!(got, 65536, "stalled exactly after 64 KiB");
    assert_eq!(hub.handle.stats().faults_fired["stall"], 2);
}

#[tokio::test]
async fn truncate_ends_the_body_short_of_content_length() {
    let hub = start_with(
        faults(json!({"rules": [{"kind": "truncate", "after_bytes": 300000, "count": 1}]})),
        1000,
    )
    .await;
    let resp = client().get(big_url(&hub)).send().await.unwrap();
    assert_eq!(header(&resp, "content-length"), BIG_LEN.to_string());
    let (got, err) = read_body(resp).await;
    assert!(
        err.is_some(),
        "a short body must be an error for the client"
    );
    assert_eq!(got.len(), 300000, "exactly N bytes arrive before the cut");
}

#[tokio::test]
async fn corrupt_flips_exactly_one_byte_at_the_file_offset() {
    let offset = 3_000_001u64;
    let hub = start_with(
        faults(json!({"rules": [{"kind": "corrupt", "offset": offset, "count": 1}]})),
        1000,
    )
    .await;
    let c = client();
    let src = source(&hub);
    // A range that does not contain the offset is untouched and does not use up the count.
    let head = c
        .get(big_url(&hub))
        .header("range", "bytes=0-999")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(head[..] == src[..1000]);
    let body = c
        .get(big_url(&hub))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), src.len());
    let diffs: Vec<usize> = (0..src.len()).filter(|&i| body[i] != src[i]).collect();
    assert_eq!(diffs, vec![offset as usize]);
    let clean = c
        .get(big_url(&hub))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(clean[..] == src[..], "count 1: the next download is clean");
}

#[tokio::test]
async fn bandwidth_caps_bound_the_rate_per_body_and_in_total() {
    let cap: u64 = 1 << 20;
    let hub = start_with(faults(json!({"bandwidth_per_body_bps": cap})), 1000).await;
    let c = client();
    let len = 1_500_000u64;
    let t = Instant::now();
    let body = c
        .get(big_url(&hub))
        .header("range", format!("bytes=0-{}", len - 1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rate = body.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(body.len() as u64, len);
    assert!(
        rate < 3.0 * cap as f64,
        "per-body rate {rate:.0} B/s vs cap {cap}"
    );

    hub.handle
        .set_faults(faults(json!({"bandwidth_total_bps": cap})))
        .unwrap();
    let t = Instant::now();
    let fetch = |start: u64| {
        let c = c.clone();
        let url = big_url(&hub);
        async move {
            c.get(url)
                .header("range", format!("bytes={start}-{}", start + 749_999))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len()
        }
    };
    let (a, b) = tokio::join!(fetch(0), fetch(2_000_000));
    let rate = (a + b) as f64 / t.elapsed().as_secs_f64();
    assert_eq!(a + b, 1_500_000);
    assert!(
        rate < 3.0 * cap as f64,
        "total rate {rate:.0} B/s vs cap {cap}"
    );
    assert_eq!(hub.handle.stats().max_concurrent_bodies, 2);
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let hub = start_with(faults(json!({"latency_ms": 300})), 1000).await;
    let t = Instant::now();
    let resp = client()
        .get(format!("{}/api/models/{REPO}", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn redirect_sends_lfs_files_to_a_signed_url_on_the_other_origin() {
    let hub = start_with(faults(json!({"rules": [{"kind": "redirect"}]})), 1000).await;
    let c = client();
    let head = c
        .head(big_url(&hub))
        .bearer_auth("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);
    let location = header(&head, "location");
    let port = hub.handle.addr.port();
    assert!(
        location.starts_with(&format!("http://localhost:{port}/_cdn/{REPO}/")),
        "{location}"
    );
    let src = source(&hub);
    assert_eq!(header(&head, "x-linked-size"), src.len().to_string());
    assert_eq!(
        header(&head, "x-linked-etag"),
        format!("\"{}\"", sha256_hex(&src))
    );
    assert_eq!(header(&head, "x-repo-commit").len(), 40);
    // Regular files are served directly, as on the real hub.
    let cfg = c
        .head(format!("{}/{REPO}/resolve/main/config.json", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(cfg.status(), 200);

    let body = c
        .get(&location)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body[..] == src[..]);
    assert_eq!(hub.handle.stats().cdn_requests_with_auth, 0);
    // A client that leaks its token to the CDN is counted.
    let ranged = c
        .get(&location)
        .bearer_auth("alice")
        .header("range", "bytes=5-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(hub.handle.stats().cdn_requests_with_auth, 1);
    // Tampered URLs are refused.
    let tampered = location.replace("signature=", "signature=0");
    assert_eq!(c.get(&tampered).send().await.unwrap().status(), 403);

    // ModelScope downloads are redirected too (any file).
    let ms = c
        .get(format!(
            "{}/api/v1/models/{REPO}/repo?Revision=master&FilePath=config.json",
            hub.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ms.status(), 302);
}

#[tokio::test]
async fn expired_cdn_urls_answer_403() {
    let hub = start_with(
        faults(json!({"cdn_expiry_secs": 0, "rules": [{"kind": "redirect", "count": 1}]})),
        1000,
    )
    .await;
    let c = client();
    let head = c.head(big_url(&hub)).send().await.unwrap();
    assert_eq!(head.status(), 302);
    let location = header(&head, "location");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = c.get(&location).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("expired"));
    // count 1: re-resolving now answers directly.
    assert_eq!(c.head(big_url(&hub)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn over_limit_rejects_or_throttles_extra_bodies() {
    // Slow bodies keep the first download streaming while the second one arrives.
    let hub = start_with(
        faults(json!({
            "bandwidth_per_body_bps": 262144,
            "body_limit": {"max_bodies": 1, "mode": "reject", "retry_after_secs": 3}
        })),
        1000,
    )
    .await;
    let c = client();
    let first = c.get(big_url(&hub)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = c.get(big_url(&hub)).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "retry-after"), "3");
    drop(first);

    hub.handle
        .set_faults(faults(json!({
            // Capped so the first body is still streaming when the second arrives: uncapped,
            // 4 MiB fits in loopback socket buffers before the second request is sent.
            "bandwidth_per_body_bps": 1048576,
            "body_limit": {"max_bodies": 1, "mode": "throttle", "throttle_bps": 65536}
        })))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.handle.reset_stats();
    let a = c.get(big_url(&hub)).send().await.unwrap();
    let b = c.get(big_url(&hub)).send().await.unwrap();
    let (mut a, mut b) = (a, b);
    // Both bodies exist; while both stream each is held to 64 KiB/s.
    let t = Instant::now();
    let mut got = 0usize;
    while t.elapsed() < Duration::from_millis(800) {
        tokio::select! {
            Ok(Some(c)) = a.chunk() => got += c.len(),
            Ok(Some(c)) = b.chunk() => got += c.len(),
            else => break,
        }
    }
    let stats = hub.handle.stats();
    assert!(stats.max_concurrent_bodies >= 2);
    assert!(
        stats
            .faults_fired
            .get("over_limit_throttle")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert!(
        got < BIG_LEN,
        "throttled bodies cannot finish 4 MiB in 0.8 s: {got}"
    );
}

#[tokio::test]
async fn probability_and_path_filters_scope_the_faults() {
    let hub = start_with(
        faults(json!({"rules": [
            {"kind": "status", "status": 500, "probability": 0.0},
            {"kind": "status", "status": 502, "path_contains": "adapter", "probability": 1.0}
        ]})),
        1000,
    )
    .await;
    let c = client();
    for _ in 0..20 {
        let s = c
            .get(format!("{}/{REPO}/resolve/main/config.json", hub.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200);
    }
    let hf = c
        .get(format!(
            "{}/{REPO}/resolve/main/extra/adapter.safetensors",
            hub.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(hf.status(), 502);
    let ms = c
        .get(format!(
            "{}/api/v1/models/{REPO}/repo?FilePath=extra%2Fadapter.safetensors",
            hub.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ms.status(),
        502,
        "path_contains matches the decoded ModelScope FilePath"
    );
}
