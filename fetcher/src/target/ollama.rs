//! An Ollama models directory (`OLLAMA_MODELS`) as the [`Target`]: the blobs move like any
//! file of a [`DirTarget`] (staged under `.ferry/partial`, journaled, verified against their
//! digest, renamed to `blobs/sha256-HEX`), and the tag's manifest
//! (`manifests/HOST/NAMESPACE/MODEL/TAG`, the registry's bytes) is written last, atomically and
//! only once every blob is durable in place: the Ollama server lists models by their manifests,
//! so it never sees one whose blobs are missing or partial. Then the ferry manifest commits, so
//! `ferry verify` and the sidecar gate work on the directory as on any other.
//!
//! Nothing of ferry's lies under `blobs/` or `manifests/` meanwhile: the server deletes files
//! there whose names are not digests (`PruneLayers`) and reads every `manifests/*/*/*/*`.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_sharder::layout;

use super::dir::DirTarget;
use super::publish::sync_dirs;
use super::Target;
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::origin::ollama::Pulled;
use crate::origin::Ranges;
use crate::snapshot::{RemoteFile, Snapshot};

/// A models directory receiving one tag.
pub struct OllamaTarget {
    dir: DirTarget,
    /// The manifest file as a snapshot file (path, size, digest).
    manifest: RemoteFile,
    bytes: Arc<[u8]>,
}

impl OllamaTarget {
    /// The tag `pulled` (resolved into `snapshot`) into `dir`.
    pub fn new(dir: DirTarget, snapshot: &Snapshot, pulled: &Pulled) -> Result<OllamaTarget> {
        let manifest = snapshot
            .files
            .iter()
            .find(|f| f.hash.hex() == pulled.digest && f.path.starts_with("manifests/"))
            .cloned()
            .ok_or_else(|| Error::Task {
                task: "ollama target",
                message: "the snapshot lists no manifest file".into(),
            })?;
        Ok(OllamaTarget {
            dir,
            manifest,
            bytes: Arc::clone(&pulled.bytes),
        })
    }

    /// Writes the manifest under `.ferry/partial`, fsyncs it, renames it into place and fsyncs
    /// its directory: the server reads either no manifest (or the previous tag's) or this one.
    fn write_manifest(&self) -> Result<()> {
        let root = self.dir.dir();
        let target = root.join(&self.manifest.path);
        if std::fs::read(&target).is_ok_and(|b| *b == *self.bytes) {
            return Ok(());
        }
        let tmp = layout::partial_path(
            root,
            &format!("ollama-manifest-{}", &self.manifest.hash.hex()[..16]),
        );
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.bytes)?;
            f.sync_all()
        })();
        written.map_err(|e| Error::io(&tmp, e))?;
        let parent = target.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        // A writer whose lease was taken over stops here, as it does before publishing a blob.
        crate::lock::still_held(root)?;
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        Ok(ferry_sharder::manifest::sync_dir(&parent)?)
    }
}

impl Target for OllamaTarget {
    fn location(&self) -> PathBuf {
        self.dir.location()
    }

    fn heartbeat(&self) -> Option<PathBuf> {
        self.dir.heartbeat()
    }

    async fn is_complete(&self, snapshot: &Snapshot, source: &str) -> Result<bool> {
        self.dir.is_complete(snapshot, source).await
    }

    /// Withdraws the ferry manifest only: an older tag's Ollama manifest and its blobs stay
    /// whole, so the server keeps serving the old model until the new manifest replaces it.
    async fn withdraw(&self) -> Result<()> {
        self.dir.withdraw().await
    }

    async fn reuse(
        &self,
        snapshot: &Snapshot,
        files: &[RemoteFile],
    ) -> Result<(Vec<RemoteFile>, Vec<RemoteFile>)> {
        self.dir.reuse(snapshot, files).await
    }

    /// The blobs through the directory's transfer; the manifest's bytes came with the resolve
    /// and are counted as downloaded here, written at commit.
    async fn transfer(
        &self,
        ranges: Arc<dyn Ranges>,
        snapshot: &Arc<Snapshot>,
        todo: Vec<RemoteFile>,
        meter: &Arc<Meter>,
    ) -> Result<()> {
        let (manifest, blobs): (Vec<_>, Vec<_>) =
            todo.into_iter().partition(|f| f.path == self.manifest.path);
        self.dir.transfer(ranges, snapshot, blobs, meter).await?;
        if !manifest.is_empty() {
            meter.add_downloaded(self.manifest.size);
            meter.file_ended(&self.manifest.path, true);
        }
        Ok(())
    }

    /// Every blob matched its digest on the way in and the manifest parsed at resolve; the
    /// checkpoint checks of a directory (safetensors headers, index, config.json) do not apply
    /// to GGUF blobs named by digest.
    async fn validate(&self, _snapshot: &Snapshot, _filtered: bool) -> Result<()> {
        Ok(())
    }

    /// Blob renames made durable, then the Ollama manifest, then the ferry manifest.
    async fn commit(&self, snapshot: &Snapshot, source: &str) -> Result<()> {
        let root = self.dir.dir().to_path_buf();
        sync_dirs(
            &root,
            snapshot
                .files
                .iter()
                .filter(|f| f.path != self.manifest.path)
                .map(|f| f.path.as_str()),
        )?;
        self.write_manifest()?;
        self.dir.commit(snapshot, source).await
    }
}
