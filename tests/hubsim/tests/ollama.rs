//! The Ollama registry emulation: manifest v2 JSON with Ollama media types, blobs behind a 307 to
//! the other origin (as the puller of ollama v0.33 expects), ranges, digests, body faults.

mod serve_util;

use hubsim::serve::{ollama, ServeConfig};
use serde_json::{json, Value};
use serve_util::{client, header, sha256_hex};

#[tokio::test]
async fn manifest_and_blobs_as_the_ollama_puller_reads_them() {
    let root = tempfile::tempdir().unwrap();
    let dir = ollama::write_model(root.path(), "deepseek-r1:7b", 300_000, 1).unwrap();
    let hub = hubsim::serve::start(ServeConfig::new(root.path()))
        .await
        .unwrap();
    let c = client();
    let resp = c
        .get(format!("{}/v2/library/deepseek-r1/manifests/7b", hub.url()))
        .header("accept", ollama::MANIFEST_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), ollama::MANIFEST_TYPE);
    let digest = header(&resp, "docker-content-digest");
    let text = resp.text().await.unwrap();
    assert_eq!(digest, format!("sha256:{}", sha256_hex(text.as_bytes())));
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.ollama.image.model",
            "application/vnd.ollama.image.template",
            "application/vnd.ollama.image.params",
            "application/vnd.ollama.image.license"
        ]
    );
    let model = std::fs::read(dir.join("model")).unwrap();
    assert_eq!(&model[..4], b"GGUF");
    let layer = &m["layers"][0];
    assert_eq!(layer["digest"], format!("sha256:{}", sha256_hex(&model)));
    assert_eq!(layer["size"], model.len());

    // The blob URL answers 307 to the other origin; HEAD there gives the length, ranges work.
    let blob_url = format!(
        "{}/v2/library/deepseek-r1/blobs/{}",
        hub.url(),
        layer["digest"].as_str().unwrap()
    );
    let resp = c.get(&blob_url).bearer_auth("t").send().await.unwrap();
    assert_eq!(resp.status(), 307);
    let direct = header(&resp, "location");
    assert!(direct.starts_with("http://localhost:"), "{direct}");
    let head = c.head(&direct).send().await.unwrap();
    assert_eq!(header(&head, "content-length"), model.len().to_string());
    let part = c
        .get(&direct)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert!(part.bytes().await.unwrap()[..] == model[1000..2000]);
    // The config blob is served too and hashes to its digest.
    let cfg = m["config"]["digest"].as_str().unwrap();
    let resp = c
        .get(format!("{}/v2/library/deepseek-r1/blobs/{cfg}", hub.url()))
        .send()
        .await
        .unwrap();
    let body = c
        .get(header(&resp, "location"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), cfg);
    assert_eq!(hub.stats().cdn_requests_with_auth, 0);

    // Unknown names and digests: the registry's error codes.
    let resp = c
        .get(format!("{}/v2/library/nope/manifests/latest", hub.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let resp = c
        .get(format!(
            "{}/v2/library/deepseek-r1/blobs/sha256:{}",
            hub.url(),
            "0".repeat(64)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Body faults reach blobs: a corrupted byte at a file offset.
    hub.set_faults(
        serde_json::from_value(json!({"rules": [{"kind": "corrupt", "offset": 5000, "count": 1}]}))
            .unwrap(),
    )
    .unwrap();
    let bad = c.get(&direct).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bad.len(), model.len());
    assert_ne!(bad[5000], model[5000]);
    assert!(bad[..5000] == model[..5000] && bad[5001..] == model[5001..]);
}
