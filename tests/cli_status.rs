//! `ferry status` on a directory mid-fetch: heartbeat, partial files, slices, a held lock.

use std::os::fd::AsRawFd;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn mid_fetch_directory() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let state = dir.join(".ferry");
    std::fs::create_dir_all(state.join("partial")).unwrap();
    std::fs::create_dir_all(state.join("slices")).unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    std::fs::write(
        dir.join("model-00001-of-00004.safetensors"),
        vec![0u8; 4096],
    )
    .unwrap();
    std::fs::write(state.join("partial/0123abcd"), vec![1u8; 8192]).unwrap();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    std::fs::write(
        state.join("progress.json"),
        serde_json::json!({
            "pid": std::process::id(), "host": "somewhere", "started_at": now, "updated_at": now,
            "repo": "deepseek-ai/DeepSeek-R1", "commit": "f".repeat(40),
            "files_total": 5, "files_done": 2, "bytes_total": 100000, "bytes_done": 12288,
            "in_progress": ["model-00002-of-00004.safetensors"]
        })
        .to_string(),
    )
    .unwrap();
    for i in [0, 2] {
        std::fs::write(
            state.join(format!("slices/{i}-of-4.json")),
            serde_json::json!({"index": i, "count": 4, "commit": "f".repeat(40), "pieces": [],
                "bytes": 0, "host": "h", "pid": 1, "finished_at": now})
            .to_string(),
        )
        .unwrap();
    }
    // Hold the lock the way the fetcher does (flock), with its content naming us.
    let lock = std::fs::File::create(state.join("lock")).unwrap();
    std::fs::write(
        state.join("lock"),
        serde_json::json!({"pid": std::process::id(), "host": "somewhere", "started_at": now})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );

    let out = ferry(&["status", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["files_total"], 5);
    assert_eq!(v["files_done"], 2);
    assert_eq!(v["missing_count"], 3);
    assert_eq!(v["in_progress"][0], "model-00002-of-00004.safetensors");
    assert_eq!(v["partial_files"], 1);
    assert_eq!(v["slices"][0]["pending"], serde_json::json!([1, 3]));
    assert_eq!(v["lock"][0]["state"], "held", "{v:#}");
    assert_eq!(v["repo"], "deepseek-ai/DeepSeek-R1");
    assert!(v["last_progress_seconds"].as_u64().unwrap() < 60);
    assert!(
        v["verdict"].as_str().unwrap().starts_with("fetching"),
        "{v:#}"
    );

    // Human output says the same, and status never changed anything.
    let out = ferry(&["status", dir.to_str().unwrap()]);
    let t = text(&out.stdout);
    assert!(
        t.contains("2 / 5 done") && t.contains("pending: [1, 3]") && t.contains("held"),
        "{t}"
    );
    assert!(!dir.join(".ferry/manifest.json").exists());

    // Once the holder is gone, the lock reads as free or stale and the verdict says resume.
    drop(lock);
    std::fs::write(
        state.join("lock"),
        serde_json::json!({"pid": 999_999_999u64, "host": "elsewhere", "started_at": now})
            .to_string(),
    )
    .unwrap();
    let out = ferry(&["status", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["lock"][0]["state"], "held");
    assert!(v["verdict"].as_str().unwrap().contains("resume"), "{v:#}");
}

#[test]
fn missing_directory_is_not_found() {
    let out = ferry(&["status", "/nonexistent/ferry-model"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}

#[test]
fn an_io_error_names_the_os_error_once() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-model");
    let out = ferry(&["status", missing.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the OS error is printed more than once: {err}"
    );
}
