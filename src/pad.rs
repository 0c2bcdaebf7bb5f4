//! `swarm-warden pad`: fills a directory with real (not sparse) files of zeros, each
//! fsynced and renamed into place only once complete, so that a run interrupted at any
//! point resumes by counting what exists. This is how an EFS file system is padded to
//! raise its baseline throughput (50 KiB/s per GiB stored).
//!
//! Before it writes padding, it checks the filesystem's free space: on EFS it is
//! practically unbounded, so a padding that would leave less than [`KEEP_FREE_PERCENT`] of
//! the filesystem free is not on EFS (a node-local volume of the same name, say) and would
//! fill a node's disk: no padding is written. (A node-local disk that holds it with room to
//! spare is not caught here: the runbook refuses mounts that do not define their volume.) `swarm-warden unpad` ([`unpad`]) removes what
//! padding wrote (files `pad-NNNNNN.bin` in the padding directory) to give the space back.
//!
//! It reports its progress as it goes (bytes and files of the padding, see
//! [`crate::copy::Reporter`] for the lines the job prints).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::copy::Tally;
use crate::model::journal::JobPhase;

/// Why padding stopped.
#[derive(Debug, thiserror::Error)]
pub enum PadError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Writing the padding would leave less than [`KEEP_FREE_PERCENT`] of the filesystem
    /// free: it is not EFS (whose free space is practically unbounded). Nothing written.
    #[error("{} has {available} bytes free of {size}: padding {needed} more bytes would leave less than {KEEP_FREE_PERCENT}% free, so it is not an EFS file system (a node-local volume of the same name?); nothing written", dir.display())]
    NoSpace {
        /// The padding directory.
        dir: PathBuf,
        /// Bytes still to write.
        needed: u64,
        /// Bytes available to this user.
        available: u64,
        /// The filesystem's size, bytes.
        size: u64,
    },
}

/// The share of its filesystem (percent) padding always leaves free.
pub const KEEP_FREE_PERCENT: u64 = 10;

/// What a padding run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadOutcome {
    /// Complete files found when it started.
    pub existing: u64,
    /// Files it wrote.
    pub written: u64,
    /// Complete files now.
    pub total_files: u64,
}

const CHUNK: usize = 1 << 20;

/// Ensures `total` bytes of padding in `dir`, in files of `file_size` bytes (the last one
/// rounded up to a whole file). `progress` is told how far it is (phase
/// [`JobPhase::Padding`]: complete files among those wanted, and the bytes they and the
/// file being written hold) before it writes, after every MiB and after every file.
///
/// # Errors
/// A zero `file_size` ([`PadError::Usage`]), too little free space
/// ([`PadError::NoSpace`]), or a file operation failed.
pub fn pad(
    dir: &Path,
    total: u64,
    file_size: u64,
    mut progress: impl FnMut(&Tally),
) -> Result<PadOutcome, PadError> {
    if file_size == 0 {
        return Err(PadError::Usage("--file-size must be more than 0".into()));
    }
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PadError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let wanted = total.div_ceil(file_size);
    let mut existing = 0;
    // Complete files among the `wanted` (numbered below it): what is left to write.
    let mut complete = 0;
    for entry in fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") {
            // Interrupted mid-file: written again below.
            fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
        } else if name.starts_with("pad-") && name.ends_with(".bin") {
            let size = entry.metadata().map_err(io("stat", &entry.path()))?.len();
            if size == file_size {
                existing += 1;
                let index = name
                    .trim_start_matches("pad-")
                    .trim_end_matches(".bin")
                    .parse::<u64>();
                if index.is_ok_and(|i| i < wanted) {
                    complete += 1;
                }
            }
        }
    }
    check_space(dir, (wanted - complete).saturating_mul(file_size))?;
    let mut tally = Tally {
        phase: JobPhase::Padding,
        bytes_done: complete.saturating_mul(file_size),
        bytes_total: wanted.saturating_mul(file_size),
        files_done: complete,
        files_total: wanted,
    };
    progress(&tally);
    let zeros = vec![0u8; CHUNK];
    let mut written = 0;
    for index in 0..wanted {
        let done = dir.join(format!("pad-{index:06}.bin"));
        if done.exists()
            && fs::metadata(&done)
                .map(|m| m.len() == file_size)
                .unwrap_or(false)
        {
            continue;
        }
        let partial = dir.join(format!("pad-{index:06}.bin.partial"));
        let mut file = File::create(&partial).map_err(io("create", &partial))?;
        let mut left = file_size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            file.write_all(&zeros[..n]).map_err(io("write", &partial))?;
            left -= n as u64;
            progress(&Tally {
                bytes_done: tally.bytes_done + (file_size - left),
                ..tally
            });
        }
        file.sync_all().map_err(io("fsync", &partial))?;
        drop(file);
        fs::rename(&partial, &done).map_err(io("rename", &done))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))?;
        written += 1;
        tally.files_done += 1;
        tally.bytes_done += file_size;
        progress(&tally);
    }
    Ok(PadOutcome {
        existing,
        written,
        total_files: wanted.max(existing),
    })
}

/// Fails with [`PadError::NoSpace`] when writing `needed` more bytes into `dir` would
/// leave less than [`KEEP_FREE_PERCENT`] of its filesystem free.
fn check_space(dir: &Path, needed: u64) -> Result<(), PadError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| PadError::Io {
        action: "statvfs",
        path: dir.to_path_buf(),
        source: std::io::Error::from(e),
    })?;
    let block = stat.fragment_size() as u64;
    let available = (stat.blocks_available() as u64).saturating_mul(block);
    let size = (stat.blocks() as u64).saturating_mul(block);
    let keep = size / 100 * KEEP_FREE_PERCENT;
    if needed.saturating_add(keep) > available {
        return Err(PadError::NoSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
            size,
        });
    }
    Ok(())
}

/// What [`unpad`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnpadOutcome {
    /// Padding files removed (complete and partial).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Removes the padding in `dir`: files `pad-NNNNNN.bin` and their `.partial`s, then the
/// directory if nothing else is left in it. Anything else there is left alone. A missing
/// `dir` is nothing to remove.
///
/// # Errors
/// Listing or removing failed.
pub fn unpad(dir: &Path) -> Result<UnpadOutcome, PadError> {
    let mut outcome = UnpadOutcome::default();
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(outcome),
        other => other.map_err(|source| PadError::Io {
            action: "read",
            path: dir.to_path_buf(),
            source,
        })?,
    };
    let mut others = 0;
    for entry in entries {
        let entry = entry.map_err(|source| PadError::Io {
            action: "read",
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.starts_with("pad-") && (name.ends_with(".bin") || name.ends_with(".bin.partial"));
        if !ours {
            others += 1;
            continue;
        }
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&path).map_err(|source| PadError::Io {
            action: "remove",
            path: path.clone(),
            source,
        })?;
        outcome.files += 1;
        outcome.bytes += len;
    }
    if others == 0 {
        fs::remove_dir(dir).map_err(|source| PadError::Io {
            action: "remove",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(outcome)
}

/// Parses a byte size: `1048576`, `512MiB`, `1GiB`, `200G`, `1.5TiB` (binary units; `k`,
/// `M`, `G`, `T` with or without `i`/`B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let factor: f64 = match unit
        .trim()
        .trim_end_matches('B')
        .trim_end_matches('i')
        .to_ascii_lowercase()
        .as_str()
    {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?} (use KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((value * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("swarm-warden-pad-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn padding_writes_whole_real_files() {
        let dir = tmp("whole");
        let outcome = pad(&dir, 5 * 4096 + 1, 4096, |_| {}).unwrap();
        assert_eq!(
            outcome,
            PadOutcome {
                existing: 0,
                written: 6,
                total_files: 6
            }
        );
        for i in 0..6 {
            let file = dir.join(format!("pad-{i:06}.bin"));
            let meta = fs::metadata(&file).unwrap();
            assert_eq!(meta.len(), 4096);
            use std::os::unix::fs::MetadataExt;
            assert!(meta.blocks() * 512 >= 4096, "not sparse");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    /// The job's progress: the files already there count as done from the start; every
    /// MiB moves the bytes; the last report is the whole padding.
    #[test]
    fn padding_reports_its_progress_from_what_exists_to_the_whole() {
        let dir = tmp("progress");
        pad(&dir, 2 * CHUNK as u64, 2 * CHUNK as u64, |_| {}).unwrap();
        let mut seen = Vec::new();
        pad(&dir, 6 * CHUNK as u64, 2 * CHUNK as u64, |t| seen.push(*t)).unwrap();
        let mib = CHUNK as u64;
        let done: Vec<(u64, u64)> = seen
            .iter()
            .map(|t| (t.files_done, t.bytes_done / mib))
            .collect();
        assert_eq!(
            done,
            [(1, 2), (1, 3), (1, 4), (2, 4), (2, 5), (2, 6), (3, 6)],
            "{seen:?}"
        );
        assert!(seen.iter().all(|t| t.phase == JobPhase::Padding
            && t.files_total == 3
            && t.bytes_total == 6 * mib));
        assert!(seen.last().unwrap().finished());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_interrupted_run_resumes_without_rewriting_finished_files() {
        let dir = tmp("resume");
        pad(&dir, 2 * 4096, 4096, |_| {}).unwrap();
        fs::write(dir.join("pad-000002.bin.partial"), b"half").unwrap();
        let outcome = pad(&dir, 4 * 4096, 4096, |_| {}).unwrap();
        assert_eq!(
            outcome,
            PadOutcome {
                existing: 2,
                written: 2,
                total_files: 4
            }
        );
        assert!(!dir.join("pad-000002.bin.partial").exists());
        let again = pad(&dir, 4 * 4096, 4096, |_| {}).unwrap();
        assert_eq!(again.written, 0, "nothing repeated");
        fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 14 item 14: a padding its filesystem cannot hold with 10% to spare is not
    /// on EFS; it writes nothing.
    #[test]
    fn a_padding_that_would_fill_the_filesystem_writes_nothing() {
        let dir = tmp("full");
        let err = pad(&dir, u64::MAX / 2, 1 << 30, |_| {}).unwrap_err();
        assert!(matches!(err, PadError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("not an EFS file system"), "{err}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unpad_removes_the_padding_and_only_the_padding() {
        let dir = tmp("unpad");
        pad(&dir, 3 * 4096, 4096, |_| {}).unwrap();
        fs::write(dir.join("pad-000003.bin.partial"), b"half").unwrap();
        assert_eq!(
            unpad(&dir).unwrap(),
            UnpadOutcome {
                files: 4,
                bytes: 3 * 4096 + 4
            }
        );
        assert!(!dir.exists(), "the empty padding directory is removed");
        assert_eq!(unpad(&dir).unwrap(), UnpadOutcome::default());
        pad(&dir, 4096, 4096, |_| {}).unwrap();
        fs::write(dir.join("notes.txt"), b"someone's").unwrap();
        assert_eq!(unpad(&dir).unwrap().files, 1);
        assert!(dir.join("notes.txt").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("200G").unwrap(), 200 << 30);
        assert_eq!(parse_size("1.5TiB").unwrap(), 3 << 39);
        assert!(parse_size("12 parsecs").is_err());
    }
}
