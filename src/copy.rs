//! `swarm-warden copy`: copies a directory tree to another, writes a checksum manifest
//! and verifies every file on the target against it — the data move of the
//! `ebs-migration` runbook, run inside a Swarm job with the source mounted read-only.
//! Resumable: a file already on the target with the source's checksum is not copied again.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Name of the manifest written at the target's root.
pub const MANIFEST: &str = ".swarm-warden-manifest.sha256";

/// Why the copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
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
    /// A copied file does not match its source.
    #[error("checksum mismatch for {0}")]
    Mismatch(String),
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyOutcome {
    /// Files in the manifest.
    pub files: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Files copied now (the rest were already there).
    pub copied: u64,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io {
        action,
        path,
        source,
    }
}

/// SHA-256 of a file, hex.
pub fn checksum(path: &Path) -> Result<String, CopyError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Copies `from` into `to` and verifies it; see the module docs.
pub fn copy_tree(from: &Path, to: &Path) -> Result<CopyOutcome, CopyError> {
    fs::create_dir_all(to).map_err(io("create", to))?;
    let mut outcome = CopyOutcome::default();
    let mut manifest = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = from.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(io("read", &dir))?
            .collect::<Result<_, _>>()
            .map_err(io("read", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel_path = rel.join(entry.file_name());
            if rel.as_os_str().is_empty() && entry.file_name() == MANIFEST {
                continue;
            }
            let source = from.join(&rel_path);
            let target = to.join(&rel_path);
            let kind = entry.file_type().map_err(io("stat", &source))?;
            if kind.is_dir() {
                fs::create_dir_all(&target).map_err(io("create", &target))?;
                stack.push(rel_path);
            } else if kind.is_symlink() {
                let link = fs::read_link(&source).map_err(io("readlink", &source))?;
                let _ = fs::remove_file(&target);
                std::os::unix::fs::symlink(&link, &target).map_err(io("symlink", &target))?;
            } else if kind.is_file() {
                let sum = checksum(&source)?;
                let present = target.exists() && checksum(&target)? == sum;
                if !present {
                    copy_file(&source, &target)?;
                    outcome.copied += 1;
                }
                let len = fs::metadata(&source).map_err(io("stat", &source))?.len();
                outcome.files += 1;
                outcome.bytes += len;
                manifest.push((sum, rel_path));
            }
        }
    }
    // Verify the target against the manifest, then write it (last: its presence means done).
    for (sum, rel) in &manifest {
        if &checksum(&to.join(rel))? != sum {
            return Err(CopyError::Mismatch(rel.display().to_string()));
        }
    }
    let text: String = manifest
        .iter()
        .map(|(sum, rel)| format!("{sum}  {}\n", rel.display()))
        .collect();
    let path = to.join(MANIFEST);
    let mut file = File::create(&path).map_err(io("create", &path))?;
    file.write_all(text.as_bytes())
        .map_err(io("write", &path))?;
    file.sync_all().map_err(io("fsync", &path))?;
    Ok(outcome)
}

fn copy_file(source: &Path, target: &Path) -> Result<(), CopyError> {
    let partial = target.with_extension("swarm-warden-partial");
    {
        let mut input = File::open(source).map_err(io("open", source))?;
        let mut output = File::create(&partial).map_err(io("create", &partial))?;
        std::io::copy(&mut input, &mut output).map_err(io("copy", source))?;
        output.sync_all().map_err(io("fsync", &partial))?;
        let mode = fs::metadata(source)
            .map_err(io("stat", source))?
            .permissions();
        fs::set_permissions(&partial, mode).map_err(io("chmod", &partial))?;
    }
    fs::rename(&partial, target).map_err(io("rename", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("swarm-warden-copy-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_tree_is_copied_with_a_verified_manifest_and_a_rerun_copies_nothing() {
        let (from, to) = (tmp("from"), tmp("to"));
        fs::create_dir_all(from.join("chunks/01")).unwrap();
        fs::write(from.join("wal"), vec![7u8; 300_000]).unwrap();
        fs::write(from.join("chunks/01/index"), b"index").unwrap();
        std::os::unix::fs::symlink("wal", from.join("latest")).unwrap();
        let first = copy_tree(&from, &to).unwrap();
        assert_eq!((first.files, first.copied, first.bytes), (2, 2, 300_005));
        assert_eq!(fs::read(to.join("chunks/01/index")).unwrap(), b"index");
        assert_eq!(
            fs::read_link(to.join("latest")).unwrap(),
            PathBuf::from("wal")
        );
        let manifest = fs::read_to_string(to.join(MANIFEST)).unwrap();
        assert_eq!(manifest.lines().count(), 2);
        assert!(manifest.contains(&checksum(&from.join("wal")).unwrap()));
        let again = copy_tree(&from, &to).unwrap();
        assert_eq!(again.copied, 0, "resumed: nothing copied twice");
        fs::remove_dir_all(from).unwrap();
        fs::remove_dir_all(to).unwrap();
    }

    #[test]
    fn a_damaged_target_file_is_copied_again() {
        let (from, to) = (tmp("from2"), tmp("to2"));
        fs::create_dir_all(&from).unwrap();
        fs::write(from.join("a"), b"hello").unwrap();
        copy_tree(&from, &to).unwrap();
        fs::write(to.join("a"), b"hellx").unwrap();
        assert_eq!(copy_tree(&from, &to).unwrap().copied, 1);
        assert_eq!(fs::read(to.join("a")).unwrap(), b"hello");
        fs::remove_dir_all(from).unwrap();
        fs::remove_dir_all(to).unwrap();
    }
}
