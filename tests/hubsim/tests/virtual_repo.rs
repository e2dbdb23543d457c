//! Virtual repos (`hubsim generate --virtual`): served byte for byte like the same repo written
//! to disk, any range at any offset, with the hashes stored at generate time; the directory holds
//! only `.hubsim-virtual.json`.

mod serve_util;

use hubsim::generate::{write_repo, write_virtual, Layout, ModelSpec, VIRTUAL_FILE};
use hubsim::serve::ServeConfig;
use serde_json::Value;
use serve_util::{client, sha256_hex};

fn spec() -> ModelSpec {
    ModelSpec {
        layout: Layout::Distill,
        ..ModelSpec::new("org/virt", 3, 12 << 20)
    }
}

#[tokio::test]
async fn a_virtual_repo_serves_the_same_bytes_and_hashes_as_the_written_one() {
    let virt = tempfile::tempdir().unwrap();
    let disk = tempfile::tempdir().unwrap();
    let summary = write_virtual(&spec(), &virt.path().join("org/virt")).unwrap();
    assert!(summary.to_string().contains("virtual"), "{summary}");
    let entries: Vec<_> = std::fs::read_dir(virt.path().join("org/virt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, [VIRTUAL_FILE], "nothing but the spec file on disk");
    let plan = hubsim::generate::plan(&spec()).unwrap();
    write_repo(&plan, &disk.path().join("org/virt"), false).unwrap();

    let hub = hubsim::serve::start(ServeConfig::new(virt.path()))
        .await
        .unwrap();
    let c = client();
    let listing: Value = c
        .get(format!(
            "{}/api/v1/models/org/virt/repo/files?Revision=master&Recursive=True",
            hub.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = listing["Data"]["Files"].as_array().unwrap();
    assert_eq!(files.len(), plan.files.len());
    for f in files {
        let path = f["Path"].as_str().unwrap();
        let want = std::fs::read(disk.path().join("org/virt").join(path)).unwrap();
        assert_eq!(f["Sha256"], sha256_hex(&want), "{path}");
        let got = c
            .get(format!("{}/org/virt/resolve/main/{path}", hub.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == want[..], "{path} differs");
        if want.len() > 3_000_000 {
            // A range deep inside, not on any block boundary.
            let (a, b) = (2_345_677usize, 2_999_999usize);
            let resp = c
                .get(format!("{}/org/virt/resolve/main/{path}", hub.url()))
                .header("range", format!("bytes={a}-{b}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206);
            assert!(resp.bytes().await.unwrap()[..] == want[a..=b]);
        }
    }
    // The HF tree agrees: LFS shards carry the sha256, small files their git blob sha1.
    let tree: Value = c
        .get(format!(
            "{}/api/models/org/virt/tree/main?recursive=true",
            hub.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for e in tree.as_array().unwrap() {
        let path = e["path"].as_str().unwrap();
        let want = std::fs::read(disk.path().join("org/virt").join(path)).unwrap();
        if path.ends_with(".safetensors") {
            assert_eq!(e["lfs"]["oid"], sha256_hex(&want));
        } else {
            assert_eq!(e["oid"], hubsim::serve::git_blob_sha1(&want), "{path}");
        }
    }
}

#[test]
fn a_virtual_file_from_another_spec_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("org/virt");
    write_virtual(&spec(), &repo).unwrap();
    let path = repo.join(VIRTUAL_FILE);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["files"][0]["size"] = Value::from(1);
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = hubsim::generate::load_virtual(&repo)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hubsim generate --virtual"), "{err}");
}
