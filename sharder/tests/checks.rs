//! Each kind of damage is caught, named precisely; a clean model passes.

mod common;

use common::*;
use ferry_sharder::verify::{self, Options};
use ferry_sharder::{validate, ErrorKind, Finding, Manifest};
use std::path::Path;

fn full(dir: &Path, m: &Manifest) -> verify::Report {
    verify::verify(
        dir,
        m,
        &Options {
            full: true,
            jobs: 2,
        },
    )
    .unwrap()
}

fn errors(r: &verify::Report) -> Vec<String> {
    r.errors().map(Finding::to_string).collect()
}

fn assert_one_error(r: &verify::Report, needles: &[&str]) {
    let e = errors(r);
    assert!(
        e.iter()
            .any(|line| needles.iter().all(|n| line.contains(n))),
        "no error containing {needles:?} in {e:#?}"
    );
}

#[test]
fn clean_model_passes_quick_and_full() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    verify::quick_check(d.path(), &m).unwrap();
    let r = full(d.path(), &m);
    assert!(r.ok(), "{:#?}", r.findings);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let h = r.hashed.unwrap();
    assert_eq!(h.files, m.files.len());
    assert_eq!(h.bytes, m.total_bytes());
}

#[test]
fn corrupted_byte_is_caught_by_full_only() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    let p = d.path().join(SHARD2);
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 3; // inside lm_head's data: header and size stay intact
    bytes[last] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
    // Sizes and headers cannot see it...
    verify::quick_check(d.path(), &m).unwrap();
    // ...the re-hash does, and names the file.
    let r = full(d.path(), &m);
    assert_one_error(&r, &[SHARD2, "does not match the manifest", "sha256"]);
    assert_eq!(r.errors().count(), 1, "{:#?}", r.findings);
    let err = r.into_result(d.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Verify);
    assert!(err.to_string().contains(SHARD2), "{err}");
}

#[test]
fn truncated_shard_is_caught_by_size_and_by_header() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    let p = d.path().join(SHARD1);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let err = verify::quick_check(d.path(), &m).unwrap_err().to_string();
    assert!(err.contains(SHARD1) && err.contains("truncated"), "{err}");

    // Without a manifest (validation alone), the header still tells: the last tensor is cut.
    let f = validate::validate(d.path(), &[SHARD1]);
    assert!(
        f.iter().any(|f| f.file == SHARD1
            && f.problem.contains("truncated")
            && f.problem
                .contains("tensor model.layers.0.mlp.down_proj.weight is the first past the end")),
        "{f:#?}"
    );
}

#[test]
fn tensor_missing_from_index_is_named() {
    let d = tempfile::tempdir().unwrap();
    clean_model(d.path());
    let mut e: Vec<(String, &str)> = shard1().into_iter().map(|t| (t.name, SHARD1)).collect();
    e.extend(
        shard2()
            .into_iter()
            .filter(|t| t.name != "model.norm.weight")
            .map(|t| (t.name, SHARD2)),
    );
    let refs: Vec<(&str, &str)> = e.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    let total: u64 = shard1().iter().chain(shard2().iter()).map(|t| t.len).sum();
    write_index(d.path(), &refs, total);
    let m = manifest_of(d.path());
    let r = full(d.path(), &m);
    assert_one_error(
        &r,
        &[
            "model.safetensors.index.json",
            "tensor model.norm.weight",
            "missing from the weight_map",
            SHARD2,
        ],
    );
}

#[test]
fn index_naming_a_missing_shard_is_named() {
    let d = tempfile::tempdir().unwrap();
    clean_model(d.path());
    let mut e: Vec<(String, &str)> = shard1().into_iter().map(|t| (t.name, SHARD1)).collect();
    e.extend(shard2().into_iter().map(|t| (t.name, SHARD2)));
    e.push((
        "model.layers.2.mlp.up_proj.weight".into(),
        "model-00003-of-00003.safetensors",
    ));
    let refs: Vec<(&str, &str)> = e.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    let total: u64 = shard1().iter().chain(shard2().iter()).map(|t| t.len).sum();
    write_index(d.path(), &refs, total);
    let m = manifest_of(d.path());
    let r = full(d.path(), &m);
    assert_one_error(
        &r,
        &[
            "model.safetensors.index.json",
            "model-00003-of-00003.safetensors",
            "does not exist",
        ],
    );
}

#[test]
fn overlapping_offsets_are_named() {
    let d = tempfile::tempdir().unwrap();
    write_raw_shard(
        d.path(),
        "model.safetensors",
        r#"{"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
            "b.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        12,
    );
    let m = manifest_of(d.path());
    let r = full(d.path(), &m);
    assert_one_error(
        &r,
        &[
            "model.safetensors",
            "tensor b.weight",
            "overlap",
            "a.weight",
        ],
    );
}

#[test]
fn bad_dtype_and_wrong_length_are_named() {
    let d = tempfile::tempdir().unwrap();
    write_raw_shard(
        d.path(),
        "model.safetensors",
        r#"{"a.weight":{"dtype":"F7","shape":[2],"data_offsets":[0,8]},
            "b.weight":{"dtype":"BF16","shape":[3],"data_offsets":[8,16]}}"#,
        16,
    );
    let m = manifest_of(d.path());
    let r = full(d.path(), &m);
    assert_one_error(
        &r,
        &["model.safetensors", "tensor a.weight", "unknown dtype `F7`"],
    );
    assert_one_error(
        &r,
        &["tensor b.weight", "BF16 × shape [3] is 6 bytes", "span 8"],
    );
}

#[test]
fn stray_partial_file_is_named_but_ferry_state_is_not() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    std::fs::write(
        d.path().join("model-00001-of-00002.safetensors.partial"),
        b"xx",
    )
    .unwrap();
    std::fs::create_dir_all(d.path().join(".ferry/partial")).unwrap();
    std::fs::write(d.path().join(".ferry/partial/abc.partial"), b"ok").unwrap();
    std::fs::write(d.path().join("README.md"), b"hi").unwrap();
    let r = verify::verify(d.path(), &m, &Options::default()).unwrap();
    assert_one_error(
        &r,
        &["model-00001-of-00002.safetensors.partial", "stray partial"],
    );
    assert_eq!(r.errors().count(), 1, "{:#?}", r.findings);
    // An extra, non-partial file is only a warning.
    let w: Vec<String> = r.warnings().map(Finding::to_string).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("README.md") && w.contains("extra")),
        "{w:?}"
    );
}

#[test]
fn a_listed_file_with_a_partial_name_is_not_a_stray() {
    let d = tempfile::tempdir().unwrap();
    clean_model(d.path());
    // Real model files that happen to carry download-ish suffixes, listed in the manifest.
    let listed = [
        "notes.tmp",
        "sub/weights.part",
        "log.incomplete",
        "x.download",
    ];
    for rel in listed {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"legit").unwrap();
    }
    let m = manifest_of(d.path());
    m.write_atomic(d.path()).unwrap();
    // An unlisted one still is a stray.
    std::fs::write(d.path().join("other.tmp"), b"xx").unwrap();
    let r = verify::verify(d.path(), &m, &Options::default()).unwrap();
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("other.tmp") && e[0].contains("stray"),
        "{e:#?}"
    );
    let s = ferry_sharder::status::status(d.path()).unwrap();
    assert_eq!(s.stray, vec!["other.tmp".to_string()]);
    std::fs::remove_file(d.path().join("other.tmp")).unwrap();
    verify::quick_check(d.path(), &m).unwrap();
    let s = ferry_sharder::status::status(d.path()).unwrap();
    assert!(s.stray.is_empty(), "{:?}", s.stray);
}

#[test]
fn missing_file_wrong_total_bad_config_and_duplicates() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    std::fs::remove_file(d.path().join(SHARD2)).unwrap();
    std::fs::write(d.path().join("config.json"), b"{oops").unwrap();
    let r = verify::verify(d.path(), &m, &Options::default()).unwrap();
    assert_one_error(&r, &[SHARD2, "missing"]);
    // config.json changed size too, so it is reported by size; validation alone sees the JSON.
    let f = validate::validate(d.path(), &["config.json"]);
    assert!(
        f.iter()
            .any(|f| f.file == "config.json" && f.problem.contains("JSON")),
        "{f:#?}"
    );

    let d = tempfile::tempdir().unwrap();
    clean_model(d.path());
    write_index(d.path(), &[("model.norm.weight", SHARD2)], 12345);
    let f = validate::validate(d.path(), &[SHARD2, "model.safetensors.index.json"]);
    assert!(
        f.iter().any(|f| f.problem.contains("total_size is 12345")),
        "{f:#?}"
    );

    // A JSON map cannot hold a key twice, but a file can: the index lists a tensor twice.
    let d = tempfile::tempdir().unwrap();
    write_shard(
        d.path(),
        "model.safetensors",
        &[spec("x.weight", "F32", &[2])],
        0,
    );
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        br#"{"metadata":{"total_size":8},"weight_map":{"x.weight":"model.safetensors","x.weight":"model.safetensors"}}"#,
    )
    .unwrap();
    let f = validate::validate(
        d.path(),
        &["model.safetensors", "model.safetensors.index.json"],
    );
    assert!(
        f.iter().any(
            |f| f.tensor.as_deref() == Some("x.weight") && f.problem.contains("more than once")
        ),
        "{f:#?}"
    );
}

#[test]
fn every_finding_is_collected_not_only_the_first() {
    let d = tempfile::tempdir().unwrap();
    let m = clean_model(d.path());
    std::fs::remove_file(d.path().join(SHARD1)).unwrap();
    std::fs::write(d.path().join("x.tmp"), b"").unwrap();
    std::fs::write(
        d.path().join("model.safetensors.index.json.incomplete"),
        b"",
    )
    .unwrap();
    let r = verify::verify(d.path(), &m, &Options::default()).unwrap();
    let e = errors(&r);
    assert!(e.len() >= 3, "{e:#?}");
    let msg = r.into_result(d.path()).unwrap_err().to_string();
    for name in [SHARD1, "x.tmp", ".incomplete"] {
        assert!(msg.contains(name), "{name} not in {msg}");
    }
}

#[test]
fn a_shard_the_index_does_not_name_is_only_a_warning() {
    // Mistral ships consolidated.safetensors beside the sharded copy; engines load through the
    // index and ignore it, so its repeated tensors are not an error.
    let d = tempfile::tempdir().unwrap();
    clean_model(d.path());
    let mut all = shard1();
    all.extend(shard2());
    write_shard(d.path(), "consolidated.safetensors", &all, 9);
    let m = manifest_of(d.path());
    let r = verify::verify(d.path(), &m, &Options::default()).unwrap();
    assert!(r.ok(), "{:#?}", r.findings);
    let w: Vec<String> = r.warnings().map(Finding::to_string).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("consolidated.safetensors") && w.contains("not named by")),
        "{w:?}"
    );
}
