//! Reads manifests: multi-document YAML from files, directories and stdin, `kind: List` flattened,
//! and kustomization directories built with `kubectl kustomize`.
//!
//! Inputs are grouped into sets that are linted together, because rules look across objects (a
//! Service against the pods in its namespace, a PVC against the pods that share it): each
//! kustomization directory is a set of its own; every other file and stdin form one set.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::objects::Object;
use crate::{Error, Result};

/// File names kustomize treats as a kustomization.
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Parses every document in `text`; `source` names it in errors and findings.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| Error::Yaml {
            source_name: source.to_string(),
            index,
            message: e.to_string(),
        })?;
        match value {
            Value::Null => {}
            Value::Object(_) => flatten(source, value, &mut out),
            _ => {
                return Err(Error::Yaml {
                    source_name: source.to_string(),
                    index,
                    message: "expected a mapping (a Kubernetes object), found a scalar or a list"
                        .into(),
                })
            }
        }
    }
    Ok(out)
}

/// `kind: List` (what `kubectl get -o yaml` prints) holds objects in `items`.
fn flatten(source: &str, value: Value, out: &mut Vec<Object>) {
    let is_list = value["kind"]
        .as_str()
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && value["items"].is_array();
    if is_list {
        if let Value::Array(items) = value["items"].clone() {
            for item in items.into_iter().filter(Value::is_object) {
                flatten(source, item, out);
            }
        }
    } else {
        out.push(Object::new(source, value));
    }
}

/// The kustomization file of a directory, if it has one.
pub fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Builds a kustomization directory with `kubectl kustomize` and parses the result.
pub fn kustomize(dir: &Path) -> Result<Vec<Object>> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| Error::Kustomize {
            dir: dir.to_path_buf(),
            message: format!("cannot run kubectl: {e}"),
        })?;
    if !output.status.success() {
        return Err(Error::Kustomize {
            dir: dir.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_documents(&dir.display().to_string(), &text)
}

/// Reads one file.
pub fn read_file(path: &Path) -> Result<Vec<Object>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&path.display().to_string(), &text)
}

/// Reads `inputs` (files, directories, `-` for `stdin`) into sets linted together.
pub fn load_inputs(inputs: &[PathBuf], stdin: &str) -> Result<Vec<Vec<Object>>> {
    let mut loose = Vec::new();
    let mut sets = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            loose.extend(parse_documents("-", stdin)?);
        } else if input.is_dir() {
            walk(input, &mut loose, &mut sets)?;
        } else {
            loose.extend(read_file(input)?);
        }
    }
    if !loose.is_empty() {
        sets.insert(0, loose);
    }
    Ok(sets)
}

/// Collects the YAML under `dir`: a kustomization stops the walk and is built as one set.
fn walk(dir: &Path, loose: &mut Vec<Object>, sets: &mut Vec<Vec<Object>>) -> Result<()> {
    if kustomization_in(dir).is_some() {
        sets.push(kustomize(dir)?);
        return Ok(());
    }
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    // Sorted, so findings come out in the same order on every machine.
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, loose, sets)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            loose.extend(read_file(&path)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_skips_empty_documents_and_flattens_lists() {
        let text = "---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: b}\n";
        let objs = parse_documents("t.yaml", text).expect("parses");
        let ids: Vec<String> = objs.iter().map(Object::id).collect();
        assert_eq!(ids, ["Service/a", "Pod/b"]);
    }

    #[test]
    fn a_scalar_document_is_an_error_naming_the_source() {
        let err = parse_documents("bad.yaml", "kind: Pod\n---\njust text\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.yaml") && msg.contains("document 1"),
            "{msg}"
        );
    }

    #[test]
    fn directories_are_read_recursively_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(
            dir.path().join("b.yaml"),
            "kind: Service\nmetadata: {name: b}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("sub/a.yml"),
            "kind: Service\nmetadata: {name: a}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "kind: Service\n").expect("write");
        let sets = load_inputs(&[dir.path().to_path_buf()], "").expect("loads");
        assert_eq!(sets.len(), 1);
        let ids: Vec<String> = sets[0].iter().map(Object::id).collect();
        assert_eq!(ids, ["Service/b", "Service/a"]);
    }
}
