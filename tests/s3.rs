//! `ferry fetch` with S3 on either side, against a real S3 server (SeaweedFS on loopback, SigV4
//! enforced) and hubsim as the hub.

#[allow(dead_code)]
#[path = "support/s3.rs"]
mod s3support;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_fetcher::s3::aws_sdk_s3;
use hubsim::generate::Layout;
use s3support::{Weed, BUCKET, READER_KEY, READER_SECRET, SECRET_KEY};
use serde_json::json;
use support::*;

const MIB: u64 = 1 << 20;
const PREFIX: &str = "deepseek-ai/DeepSeek-R1";

/// A few multi-part shards (5 MiB parts) and the small JSON files.
fn hub(shards: u32, total: u64) -> Hub {
    Hub::with_config(
        |root| {
            generate(root, REPO, shards, total, Layout::R1);
        },
        |cfg| cfg.lfs_threshold = 64 * 1024,
    )
}

fn upload(hub: &Hub, weed: &Weed, extra: &[&str]) -> Command {
    let mut c = hub.ferry();
    weed.env(&mut c);
    c.args(["fetch", REPO, "--to", &format!("s3://{BUCKET}/{PREFIX}")])
        .args(["--chunk-size", "5MiB"])
        .args(extra);
    c
}

fn download(weed: &Weed, dir: &std::path::Path) -> std::process::Output {
    let mut c = ferry();
    weed.env(&mut c);
    run(c
        .args([
            "fetch",
            &format!("s3://{BUCKET}/{PREFIX}"),
            "--json",
            "--to",
        ])
        .arg(dir))
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary line:\n{}", text(out)))
}

/// "s3 sink: N parts uploaded, K parts kept from an earlier run" from the log.
fn part_counts(out: &std::process::Output) -> (u64, u64) {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("s3 sink:"))
        .unwrap_or_else(|| panic!("no part counts:\n{}", text(out)));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // The timestamp's numbers come first; the counts are the last three.
    let n = nums.len();
    (nums[n - 3], nums[n - 2])
}

#[test]
fn hub_to_s3_to_local_round_trip_is_byte_exact() {
    let weed = Weed::start();
    let hub = hub(3, 36 * MIB);
    let out = run(&mut upload(&hub, &weed, &["--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let s = summary(&out);
    assert!(s["bytes_downloaded"].as_u64().unwrap() >= 36 * MIB - MIB);
    let (uploaded, kept) = part_counts(&out);
    assert_eq!(kept, 0);
    assert!(
        uploaded >= 3 * 2,
        "shards of ~12 MiB take several 5 MiB parts"
    );

    // The manifest object is the commit point and names the hub's commit and hashes.
    let m: serde_json::Value =
        serde_json::from_slice(&weed.get(&format!("{PREFIX}/.ferry/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["repo"], REPO);
    assert_eq!(m["source"], "hf");
    assert!(m["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["hash"]["sha256"].is_string()));
    // No multipart upload left open, no checkpoint left behind.
    assert!(weed.open_uploads(PREFIX).is_empty());
    assert!(weed
        .keys(PREFIX)
        .iter()
        .all(|k| !k.contains(".ferry/uploads/")));

    // Down again: the same bytes, verified against the hub's hashes from the manifest object.
    let dir = tempfile::tempdir().unwrap();
    let out = download(&weed, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
    let local: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".ferry/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(local["source"], "s3");
    assert_eq!(local["commit"], m["commit"]);
    assert_eq!(local["files"], m["files"]);

    // Both directions are idempotent: nothing moves the second time.
    let again = run(&mut upload(&hub, &weed, &["--json"]));
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(summary(&again)["bytes_downloaded"], 0);
    let again = download(&weed, dir.path());
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(summary(&again)["bytes_downloaded"], 0);
}

#[test]
fn kill_9_during_a_multipart_upload_resumes_without_uploading_parts_twice() {
    let weed = Weed::start();
    // One shard of 40 MiB: 8 parts of 5 MiB.
    let hub = hub(1, 40 * MIB);
    let shard_size =
        std::fs::metadata(hub.repo_dir(REPO).join("model-00001-of-000001.safetensors"))
            .unwrap()
            .len();
    let total_parts = shard_size.div_ceil(5 * MIB) as usize;
    hub.faults_json(json!({"bandwidth_total_bps": 3 * MIB}));
    let in_flight = 2;
    let mut child = upload(
        &hub,
        &weed,
        &["--connections", &in_flight.to_string(), "--jobs", "1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let parts: usize = weed.open_uploads(PREFIX).iter().map(|(_, p)| p.len()).sum();
        // Kill once the server holds parts and ferry has checkpointed its hash at least once.
        let checkpointed = !weed.keys(&format!("{PREFIX}/.ferry/uploads/")).is_empty();
        if parts >= 3 && checkpointed {
            break parts;
        }
        assert!(Instant::now() < deadline, "no parts uploaded within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "ferry ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(
        weed.get(&format!("{PREFIX}/.ferry/manifest.json"))
            .is_none(),
        "no manifest before the upload is complete"
    );
    let on_server: usize = weed.open_uploads(PREFIX).iter().map(|(_, p)| p.len()).sum();
    assert!(
        on_server >= seen && on_server < total_parts,
        "{on_server} of {total_parts}"
    );

    hub.faults_json(json!({}));
    let served_before = hub.stats().bytes_sent;
    let out = run(&mut upload(&hub, &weed, &["--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let (uploaded, kept) = part_counts(&out);
    eprintln!("{seen} parts seen before kill -9, {on_server} after; resumed run: {kept} kept, {uploaded} uploaded of {total_parts}");
    // Every part is on the server once the run is over, and only parts that were in flight at
    // the kill (uploading, or uploaded but not yet checkpointed: SeaweedFS reports no part
    // checksums to re-verify them by) go up a second time.
    assert_eq!(uploaded + kept, total_parts as u64, "{}", text(&out));
    assert!(kept >= 1, "the checkpointed parts were kept");
    assert!(
        uploaded as usize <= total_parts - seen + in_flight,
        "uploaded {uploaded} of {total_parts} after {seen} were on the server"
    );
    // The hash checkpoint spared re-downloading the uploaded prefix just to hash it.
    let served = hub.stats().bytes_sent - served_before;
    assert!(
        served <= shard_size - 5 * MIB,
        "resumed run fetched {served} of {shard_size} bytes from the hub"
    );
    assert!(weed.open_uploads(PREFIX).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let out = download(&weed, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_same_files(&hub.repo_dir(REPO), dir.path());
}

#[test]
fn wrong_secret_missing_bucket_and_rejected_checksum_are_clear_errors() {
    let weed = Weed::start();
    let hub = hub(1, 6 * MIB);
    let wrong = "wrong-secret-ferry-7f3a";
    let out = run(upload(&hub, &weed, &[]).env("AWS_SECRET_ACCESS_KEY", wrong));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(
        !err.contains(wrong) && !err.contains(SECRET_KEY),
        "a secret was printed: {err}"
    );
    assert!(
        weed.keys("").is_empty(),
        "nothing written with bad credentials"
    );

    let mut c = hub.ferry();
    weed.env(&mut c);
    let out = run(c.args(["fetch", REPO, "--to", "s3://no-such-bucket/x"]));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"no-such-bucket\" does not exist"));

    // A part whose bytes do not match the sha256 sent with it is refused by the server, and
    // ferry says so as a verification failure.
    let err = weed.rt.block_on(async {
        let e = weed
            .s3
            .client
            .put_object()
            .bucket(BUCKET)
            .key("x/checksum")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(ferry_fetcher::s3::b64_encode(&[7u8; 32]))
            .body(aws_sdk_s3::primitives::ByteStream::from(
                b"not those bytes".to_vec(),
            ))
            .send()
            .await
            .expect_err("the server must check x-amz-checksum-sha256");
        weed.s3.error("s3:PutObject", BUCKET, "x/checksum", e)
    });
    assert!(
        matches!(err, ferry_fetcher::Error::S3ChecksumRejected { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ferry_sharder::ErrorKind::Verify);
    assert!(weed.get("x/checksum").is_none());
}

#[test]
fn bytes_corrupted_on_the_way_up_or_on_the_server_are_caught() {
    let weed = Weed::start();
    let hub = hub(2, 24 * MIB);
    let shard = "model-00002-of-000002.safetensors";

    // The hub serves bytes that do not match its own hash: the upload is aborted, never
    // completed, and no manifest is written.
    hub.faults_json(json!({"rules": [{"kind": "corrupt", "offset": 6 * MIB + 17,
                                      "path_contains": "model-00002"}]}));
    let out = run(&mut upload(&hub, &weed, &[]));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(shard),
        "{}",
        text(&out)
    );
    assert!(weed.get(&format!("{PREFIX}/{shard}")).is_none());
    assert!(weed
        .get(&format!("{PREFIX}/.ferry/manifest.json"))
        .is_none());
    assert!(
        weed.open_uploads(PREFIX)
            .iter()
            .all(|(key, _)| !key.ends_with(shard)),
        "the bad upload was aborted"
    );

    hub.faults_json(json!({}));
    let out = run(&mut upload(&hub, &weed, &[]));
    assert!(out.status.success(), "{}", text(&out));

    // Same size, different bytes, written behind ferry's back: caught on the way down.
    let key = format!("{PREFIX}/{shard}");
    let mut bytes = weed.get(&key).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    weed.put(&key, bytes);
    let dir = tempfile::tempdir().unwrap();
    let out = download(&weed, dir.path());
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(shard) && err.contains("sha256 mismatch"),
        "{err}"
    );
    assert!(!dir.path().join(shard).exists(), "a bad file was published");
    assert!(!dir.path().join(".ferry/manifest.json").exists());
}

#[test]
fn access_denied_missing_prefix_and_unreachable_endpoint_are_clear_errors() {
    let weed = Weed::start();
    let hub = hub(1, 6 * MIB);

    // Credentials that are valid but may not write: an access error, not a credentials one.
    let out = run(upload(&hub, &weed, &[])
        .env("AWS_ACCESS_KEY_ID", READER_KEY)
        .env("AWS_SECRET_ACCESS_KEY", READER_SECRET));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("denied"), "{err}");
    assert!(!err.contains(READER_SECRET), "a secret was printed: {err}");
    assert!(
        weed.keys(PREFIX).is_empty(),
        "a denied upload wrote {:?}",
        weed.keys(PREFIX)
    );

    // Nothing under the prefix: not found, and nothing published locally.
    let dir = tempfile::tempdir().unwrap();
    let out = download(&weed, dir.path());
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(PREFIX),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join(".ferry/manifest.json").exists());

    // No S3 server at the endpoint: a network error that names it, within the retry budget.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut c = ferry();
    weed.env(&mut c);
    let started = Instant::now();
    let out = run(c
        .env("AWS_ENDPOINT_URL_S3", &dead_url)
        .args(["fetch", &format!("s3://{BUCKET}/{PREFIX}"), "--to"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&dead_url),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn a_prefix_ferry_did_not_write_is_fetched_with_s3_checksums_or_a_size_warning() {
    let weed = Weed::start();
    let plain = b"{\"architectures\": [\"DeepseekV3ForCausalLM\"]}".to_vec();
    let checked: Vec<u8> = (0..3 * MIB as u32).map(|i| (i % 251) as u8).collect();
    weed.put(&format!("{PREFIX}/config.json"), plain.clone());
    // Uploaded with a full-object sha256 checksum, as `aws s3 cp --checksum-algorithm SHA256`
    // does: ferry takes the server's sha256 as the expected hash.
    weed.rt
        .block_on(
            weed.s3
                .client
                .put_object()
                .bucket(BUCKET)
                .key(format!("{PREFIX}/weights/model.bin"))
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(aws_sdk_s3::primitives::ByteStream::from(checked.clone()))
                .send(),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = download(&weed, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.path().join("config.json")).unwrap(),
        plain
    );
    assert_eq!(
        std::fs::read(dir.path().join("weights/model.bin")).unwrap(),
        checked
    );
    // Both objects carry a hash ferry recomputes (the sha256 checksum; a single-part ETag,
    // which is the MD5), so there is nothing to warn about.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("checked by size only"), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".ferry/manifest.json")).unwrap())
            .unwrap();
    let hash_of = |path: &str| {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {manifest}"))
            .clone()
    };
    use sha2::Digest as _;
    assert_eq!(
        hash_of("config.json")["hash"]["md5"],
        hex::encode(md5::Md5::digest(&plain))
    );
    assert_eq!(
        hash_of("weights/model.bin")["hash"]["sha256"],
        hex::encode(sha2::Sha256::digest(&checked))
    );

    // The MD5 is a real check: `ferry verify --full` recomputes it and names a changed byte.
    let local = dir.path().join("config.json");
    let mut bytes = std::fs::read(&local).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&local, bytes).unwrap();
    let out = run(ferry().args(["verify", "--full"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("config.json")
            || String::from_utf8_lossy(&out.stderr).contains("config.json"),
        "{}",
        text(&out)
    );

    // A multipart object's ETag ("…-N") is no MD5 of the bytes: size only, and a warning.
    let big: Vec<u8> = (0..11 * MIB as u32).map(|i| (i % 241) as u8).collect();
    weed.rt.block_on(async {
        let c = &weed.s3.client;
        let key = format!("{PREFIX}/weights/multi.bin");
        let up = c
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        let id = up.upload_id().unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in big.chunks(6 * MIB as usize).enumerate() {
            let n = i as i32 + 1;
            let p = c
                .upload_part()
                .bucket(BUCKET)
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .body(aws_sdk_s3::primitives::ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(p.e_tag().map(str::to_string))
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .upload_id(id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let third = tempfile::tempdir().unwrap();
    let out = download(&weed, third.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(third.path().join("weights/multi.bin")).unwrap(),
        big
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no ferry manifest")
            && err.contains("checked by size only")
            && err.contains("weights/multi.bin"),
        "no warning about the size-only check: {err}"
    );
}
