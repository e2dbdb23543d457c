//! Putting a planned repository on disk, streaming shard data through one 4 MiB buffer so that
//! memory stays flat whatever the model size.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytesize::ByteSize;

use super::error::GenerateError;
use super::plan::{PlannedContent, RepoPlan, INDEX_FILE, SINGLE_FILE};
use super::stream;

/// Size of the buffer shard data is generated into.
const CHUNK: usize = 4 << 20;

/// What a write did.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    pub dir: PathBuf,
    pub files: usize,
    pub shards: usize,
    /// Sum of file sizes (apparent sizes for sparse files).
    pub bytes: u64,
    pub sparse: bool,
    /// Nothing but `.hubsim-virtual.json` was written (`generate --virtual`).
    pub virtual_repo: bool,
    pub elapsed: Duration,
}

impl fmt::Display for WriteSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        if self.virtual_repo {
            return write!(
                f,
                "planned and hashed {} files ({} shards, {}, virtual: served from the seed, \
                 nothing but .hubsim-virtual.json written) in {} in {:.2}s",
                self.files,
                self.shards,
                ByteSize(self.bytes).display().iec(),
                self.dir.display(),
                secs
            );
        }
        write!(
            f,
            "wrote {} files ({} shards, {}{}) to {} in {:.2}s",
            self.files,
            self.shards,
            ByteSize(self.bytes).display().iec(),
            if self.sparse { ", sparse" } else { "" },
            self.dir.display(),
            secs
        )?;
        if !self.sparse && secs > 0.0 {
            write!(
                f,
                " ({}/s)",
                ByteSize((self.bytes as f64 / secs) as u64).display().iec()
            )?;
        }
        Ok(())
    }
}

/// Writes every file of `plan` into `dir` (created if missing; files of the same names are
/// overwritten). With `sparse`, shard data regions are left as holes: the files have their full
/// size and valid headers but take almost no disk, and their data reads as zeros (so their
/// hashes are those of zeros, not of the dense files).
pub fn write_repo(
    plan: &RepoPlan,
    dir: &Path,
    sparse: bool,
) -> Result<WriteSummary, GenerateError> {
    let start = Instant::now();
    fs::create_dir_all(dir).map_err(GenerateError::io("create directory", dir))?;
    refuse_stale_weights(plan, dir)?;

    let mut buf = Vec::new();
    for file in &plan.files {
        let path = dir.join(&file.path);
        let mut out = File::create(&path).map_err(GenerateError::io("create", &path))?;
        match &file.content {
            PlannedContent::Bytes(bytes) => {
                out.write_all(bytes)
                    .map_err(GenerateError::io("write", &path))?;
            }
            PlannedContent::Safetensors {
                header,
                data_len,
                key,
            } => {
                out.write_all(header)
                    .map_err(GenerateError::io("write", &path))?;
                if sparse {
                    out.set_len(file.size)
                        .map_err(GenerateError::io("extend (sparse)", &path))?;
                    continue;
                }
                if buf.is_empty() {
                    buf = vec![0u8; CHUNK];
                }
                let mut offset = 0;
                while offset < *data_len {
                    let n = (*data_len - offset).min(CHUNK as u64) as usize;
                    stream::fill(*key, offset, &mut buf[..n]);
                    out.write_all(&buf[..n])
                        .map_err(GenerateError::io("write", &path))?;
                    offset += n as u64;
                }
            }
        }
    }
    Ok(WriteSummary {
        dir: dir.to_path_buf(),
        files: plan.files.len(),
        shards: plan.shards().count(),
        bytes: plan.total_file_bytes(),
        sparse,
        virtual_repo: false,
        elapsed: start.elapsed(),
    })
}

/// Weight files of an earlier run with other flags (say 163 shards where this run writes 8)
/// would make the directory a mix of two repositories that a server would happily serve.
pub(crate) fn refuse_stale_weights(plan: &RepoPlan, dir: &Path) -> Result<(), GenerateError> {
    let entries = fs::read_dir(dir).map_err(GenerateError::io("list", dir))?;
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.map_err(GenerateError::io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let weights = name.ends_with(".safetensors") || name == INDEX_FILE || name == SINGLE_FILE;
        if weights && plan.file(&name).is_none() {
            stale.push(name);
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    stale.sort();
    Err(GenerateError::StaleFiles {
        dir: dir.to_path_buf(),
        files: stale,
    })
}
