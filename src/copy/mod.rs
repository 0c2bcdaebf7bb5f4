//! `swarm-warden copy`: copies a directory tree to another, writes a manifest and verifies
//! every entry on the target against the source — the data move of the `ebs-migration`
//! runbook, run inside a Swarm job with the source mounted read-only. Besides the bytes
//! (SHA-256) it keeps owners, modes, times and extended attributes ([`meta`]), symbolic
//! links, and hard links (as hard links). Resumable: a file already on the target with the
//! source's checksum is not copied again. It reports its progress as it goes
//! ([`copy_tree_reporting`], [`Reporter`]).

mod meta;
mod progress;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use meta::Meta;
pub use progress::{Reporter, Tally};

use crate::model::journal::JobPhase;

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
    /// A copied entry does not match its source (its bytes, its link, or its metadata).
    #[error("{0} does not match its source: {1}")]
    Mismatch(String, String),
    /// The source holds nothing. A service's data volume that is empty is most likely not
    /// the service's volume: a volume defined outside the service spec, created empty by
    /// Docker on the node the copy ran on. Nothing is migrated.
    #[error("the source {} is empty: it is not the service's data (a volume defined outside the service spec is created empty on a node that never had it); nothing to migrate", .0.display())]
    EmptySource(PathBuf),
    /// The target holds an entry the source does not: it is not the new, empty volume a
    /// run copies into (a volume of that name existed). Merging would keep files the
    /// source deleted (stale WAL segments and blocks).
    #[error("the target holds {0}, which the source does not have: it is not a new volume, and merging into it would keep stale files")]
    Extraneous(String),
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
    checksum_reporting(path, &mut |_| {})
}

/// The bytes read and written at a time (1 MiB); also how often a long file's progress
/// is taken.
const CHUNK: usize = 1 << 20;

/// [`checksum`], telling `read` how far into the file it is (bytes) after each chunk.
fn checksum_reporting(path: &Path, read: &mut dyn FnMut(u64)) -> Result<String, CopyError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
        read(at);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// One entry of the tree, as the manifest records it.
#[derive(Debug)]
enum Kind {
    /// A regular file, its SHA-256 and its size (bytes).
    File(String, u64),
    /// A second name of a file copied earlier (a hard link to that path).
    HardLink(PathBuf),
    /// A symbolic link and what it points to.
    Link(PathBuf),
    /// A directory.
    Dir,
}

/// Copies `from` into `to` and verifies it; see the module docs.
///
/// # Errors
/// A read or write failed, the target cannot hold what the source has (an owner, an
/// extended attribute), an entry on the target does not match its source, the source is
/// empty ([`CopyError::EmptySource`]) or the target holds what the source does not
/// ([`CopyError::Extraneous`]).
pub fn copy_tree(from: &Path, to: &Path) -> Result<CopyOutcome, CopyError> {
    copy_tree_reporting(from, to, &mut |_| {})
}

/// A copy's progress, added up as it goes and handed to its reporter: whole files done,
/// and how far into the current one the copy is (the furthest of its passes — checksum
/// of the source, of a target already there, the copy itself — so it never goes back).
struct Meter<'a> {
    tally: Tally,
    /// Bytes into the current file.
    current: u64,
    report: &'a mut dyn FnMut(&Tally),
}

impl Meter<'_> {
    fn begin(&mut self, phase: JobPhase, files_total: u64, bytes_total: u64) {
        self.tally = Tally {
            phase,
            bytes_done: 0,
            bytes_total,
            files_done: 0,
            files_total,
        };
        self.current = 0;
        (self.report)(&self.tally);
    }

    fn within(&mut self, at: u64) {
        self.current = self.current.max(at);
        let tally = Tally {
            bytes_done: self.tally.bytes_done + self.current,
            ..self.tally
        };
        (self.report)(&tally);
    }

    fn file_done(&mut self, len: u64) {
        self.tally.bytes_done += len;
        self.tally.files_done += 1;
        self.current = 0;
        (self.report)(&self.tally);
    }
}

/// [`copy_tree`], handing `report` its progress after every file and every MiB read
/// (phase [`JobPhase::Copying`], then [`JobPhase::Verifying`]; the totals of the first
/// counted before it begins). A [`Reporter`] turns it into lines on the job's log.
///
/// # Errors
/// As [`copy_tree`].
pub fn copy_tree_reporting(
    from: &Path,
    to: &Path,
    report: &mut dyn FnMut(&Tally),
) -> Result<CopyOutcome, CopyError> {
    let mut top = fs::read_dir(from).map_err(io("read", from))?;
    if top.all(|e| e.is_ok_and(|e| skipped_at_root(&e.file_name()))) {
        return Err(CopyError::EmptySource(from.to_path_buf()));
    }
    fs::create_dir_all(to).map_err(io("create", to))?;
    // Before anything is written: a target that holds what the source does not is not
    // this run's new volume.
    no_extraneous(from, to, Path::new(""))?;
    let (files_total, bytes_total) = count(from)?;
    let mut meter = Meter {
        tally: Tally {
            phase: JobPhase::Copying,
            bytes_done: 0,
            bytes_total,
            files_done: 0,
            files_total,
        },
        current: 0,
        report,
    };
    meter.begin(JobPhase::Copying, files_total, bytes_total);
    let mut outcome = CopyOutcome::default();
    let mut manifest: Vec<(PathBuf, Kind)> = vec![(PathBuf::new(), Kind::Dir)];
    // Files with more than one name, by (device, inode): their first name.
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
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
            if rel.as_os_str().is_empty() && skipped_at_root(&entry.file_name()) {
                continue;
            }
            let source = from.join(&rel_path);
            let target = to.join(&rel_path);
            let md = fs::symlink_metadata(&source).map_err(io("stat", &source))?;
            let kind = md.file_type();
            if kind.is_dir() {
                fs::create_dir_all(&target).map_err(io("create", &target))?;
                stack.push(rel_path.clone());
                manifest.push((rel_path, Kind::Dir));
            } else if kind.is_symlink() {
                let link = fs::read_link(&source).map_err(io("readlink", &source))?;
                let _ = fs::remove_file(&target);
                std::os::unix::fs::symlink(&link, &target).map_err(io("symlink", &target))?;
                Meta::read(&source)?.apply(&target)?;
                manifest.push((rel_path, Kind::Link(link)));
            } else if kind.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = first_names.get(&key) {
                        let first_target = to.join(first);
                        if !same_inode(&first_target, &target) {
                            let _ = fs::remove_file(&target);
                            fs::hard_link(&first_target, &target).map_err(io("link", &target))?;
                        }
                        manifest.push((rel_path, Kind::HardLink(first.clone())));
                        continue;
                    }
                    first_names.insert(key, rel_path.clone());
                }
                let mut read = |at| meter.within(at);
                let sum = checksum_reporting(&source, &mut read)?;
                let present = target.exists() && checksum_reporting(&target, &mut read)? == sum;
                if !present {
                    copy_file(&source, &target, &mut read)?;
                    outcome.copied += 1;
                }
                Meta::read(&source)?.apply(&target)?;
                outcome.files += 1;
                outcome.bytes += md.len();
                meter.file_done(md.len());
                manifest.push((rel_path, Kind::File(sum, md.len())));
            }
        }
    }
    // Directories last, deepest first (writing into one moves its times), the root last
    // of all: the service finds its volume's root as it left it (its owner above all).
    let mut dirs: Vec<&PathBuf> = manifest
        .iter()
        .filter(|(_, kind)| matches!(kind, Kind::Dir))
        .map(|(rel, _)| rel)
        .collect();
    dirs.sort_by_key(|rel| std::cmp::Reverse(rel.components().count()));
    let mut lines = String::new();
    meter.begin(JobPhase::Verifying, outcome.files, outcome.bytes);
    for (rel, kind) in &manifest {
        lines.push_str(&verify(from, to, rel, kind, &mut meter)?);
    }
    // Written before the root gets its times back (writing it would move them); its
    // presence means the copy was verified.
    let path = to.join(MANIFEST);
    let mut file = File::create(&path).map_err(io("create", &path))?;
    file.write_all(lines.as_bytes())
        .map_err(io("write", &path))?;
    file.sync_all().map_err(io("fsync", &path))?;
    for rel in dirs {
        let meta = Meta::read(&from.join(rel))?;
        meta.apply(&to.join(rel))?;
        if let Some(what) = meta.differs(&Meta::read(&to.join(rel))?) {
            return Err(CopyError::Mismatch(shown(rel), what));
        }
    }
    Ok(outcome)
}

/// Checks one entry of the target against its source; returns its manifest line:
/// `<sha256 | dir | link | hardlink>  <uid:gid mode mtime>  <path>`.
fn verify(
    from: &Path,
    to: &Path,
    rel: &Path,
    kind: &Kind,
    meter: &mut Meter<'_>,
) -> Result<String, CopyError> {
    let (source, target) = (from.join(rel), to.join(rel));
    let mismatch = |what: String| CopyError::Mismatch(shown(rel), what);
    let first = match kind {
        Kind::File(sum, len) => {
            if &checksum_reporting(&target, &mut |at| meter.within(at))? != sum {
                return Err(mismatch("its bytes (SHA-256)".into()));
            }
            meter.file_done(*len);
            sum.clone()
        }
        Kind::HardLink(first) => {
            if !same_inode(&to.join(first), &target) {
                return Err(mismatch(format!("not a hard link to {}", shown(first))));
            }
            format!("hardlink:{}", shown(first))
        }
        Kind::Link(link) => {
            if &fs::read_link(&target).map_err(io("readlink", &target))? != link {
                return Err(mismatch(format!("not a link to {}", link.display())));
            }
            "link".into()
        }
        Kind::Dir => "dir".into(),
    };
    let meta = Meta::read(&source)?;
    // Directories get theirs at the end (their contents move their times until then).
    if !matches!(kind, Kind::Dir) {
        if let Some(what) = meta.differs(&Meta::read(&target)?) {
            return Err(mismatch(what));
        }
    }
    Ok(format!("{first}  {meta}  {}\n", shown(rel)))
}

/// The files (first names of hard-linked ones) and their bytes that a copy of `from` will
/// go through: the totals of its progress. A walk of `stat`s, cheap beside the copy.
fn count(from: &Path) -> Result<(u64, u64), CopyError> {
    let (mut files, mut bytes) = (0, 0);
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = from.join(&rel);
        for entry in fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            if rel.as_os_str().is_empty() && skipped_at_root(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let md = fs::symlink_metadata(&path).map_err(io("stat", &path))?;
            if md.is_dir() {
                stack.push(rel.join(entry.file_name()));
            } else if md.is_file() && (md.nlink() < 2 || seen.insert((md.dev(), md.ino()))) {
                files += 1;
                bytes += md.len();
            }
        }
    }
    Ok((files, bytes))
}

/// Entries at the root of a volume that are not its data: the manifest, and the padding
/// the `efs-padding` runbook wrote (terabytes of zeros, maybe: never copied to a
/// node-local target).
fn skipped_at_root(name: &std::ffi::OsStr) -> bool {
    name == MANIFEST || Some(name) == Path::new(crate::runbook::PAD_DIR).file_name()
}

/// Fails on the first entry under `to/rel` that `from` does not have (the manifest and an
/// empty `lost+found` at the root aside: a freshly made ext4 filesystem has one). Partial
/// files an interrupted attempt left (ours) are removed.
fn no_extraneous(from: &Path, to: &Path, rel: &Path) -> Result<(), CopyError> {
    let dir = to.join(rel);
    for entry in fs::read_dir(&dir).map_err(io("read", &dir))? {
        let entry = entry.map_err(io("read", &dir))?;
        let rel_path = rel.join(entry.file_name());
        let path = entry.path();
        let at_root = rel.as_os_str().is_empty();
        if at_root && entry.file_name() == MANIFEST {
            continue;
        }
        if fs::symlink_metadata(from.join(&rel_path)).is_err() {
            if path.extension().is_some_and(|e| e == PARTIAL) {
                fs::remove_file(&path).map_err(io("remove", &path))?;
                continue;
            }
            let empty = || fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
            if at_root && entry.file_name() == "lost+found" && empty() {
                continue;
            }
            return Err(CopyError::Extraneous(shown(&rel_path)));
        }
        if entry.file_type().map_err(io("stat", &path))?.is_dir() {
            no_extraneous(from, to, &rel_path)?;
        }
    }
    Ok(())
}

/// The extension of a file being copied (renamed to its name once complete).
const PARTIAL: &str = "swarm-warden-partial";

/// A path as the manifest and errors show it (`.` for the root).
fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    }
}

/// Whether `a` and `b` both exist and are one file.
fn same_inode(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Copies `source` to `target` through a partial file renamed once complete, telling
/// `written` how far it is (bytes) after each chunk.
fn copy_file(source: &Path, target: &Path, written: &mut dyn FnMut(u64)) -> Result<(), CopyError> {
    let partial = target.with_extension(PARTIAL);
    {
        let mut input = File::open(source).map_err(io("open", source))?;
        let mut output = File::create(&partial).map_err(io("create", &partial))?;
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(io("read", source))?;
            if n == 0 {
                break;
            }
            output.write_all(&buf[..n]).map_err(io("write", &partial))?;
            at += n as u64;
            written(at);
        }
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
        // The root, two directories, two files and a link.
        assert_eq!(manifest.lines().count(), 6, "{manifest}");
        assert!(manifest.contains(&checksum(&from.join("wal")).unwrap()));
        let again = copy_tree(&from, &to).unwrap();
        assert_eq!(again.copied, 0, "resumed: nothing copied twice");
        fs::remove_dir_all(from).unwrap();
        fs::remove_dir_all(to).unwrap();
    }

    /// Prometheus runs as nobody: on the new volume it must find its files, directories
    /// and the volume's root as they were — owners, modes, times, extended attributes,
    /// links and hard links. (Run as root, as the copy job is.)
    #[test]
    fn owners_modes_times_xattrs_symlinks_and_hard_links_are_kept_and_verified() {
        use std::os::unix::fs::{lchown, PermissionsExt};
        let (from, to) = (tmp("from3"), tmp("to3"));
        fs::create_dir_all(from.join("wal/checkpoint")).unwrap();
        fs::write(from.join("wal/00000001"), vec![1u8; 70_000]).unwrap();
        fs::write(from.join("queries.active"), b"").unwrap();
        fs::hard_link(
            from.join("wal/00000001"),
            from.join("wal/checkpoint/00000001"),
        )
        .unwrap();
        std::os::unix::fs::symlink("wal/00000001", from.join("head")).unwrap();
        xattr::set(from.join("queries.active"), "user.origin", b"prometheus").unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        for (path, mode) in [
            ("wal/00000001", 0o600),
            ("queries.active", 0o640),
            ("wal/checkpoint", 0o750),
            ("wal", 0o750),
            ("", 0o700),
        ] {
            let p = from.join(path);
            lchown(&p, Some(65534), Some(65534)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            File::open(&p)
                .unwrap()
                .set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
                .unwrap();
        }
        lchown(from.join("head"), Some(65534), Some(65534)).unwrap();

        copy_tree(&from, &to).unwrap();
        for path in [
            "",
            "wal",
            "wal/checkpoint",
            "wal/00000001",
            "wal/checkpoint/00000001",
            "queries.active",
            "head",
        ] {
            let (a, b) = (
                Meta::read(&from.join(path)).unwrap(),
                Meta::read(&to.join(path)).unwrap(),
            );
            assert_eq!(a.differs(&b), None, "{path:?}");
            assert_eq!((b.uid, b.gid), (65534, 65534), "{path:?}");
        }
        assert_eq!(Meta::read(&to.join("wal")).unwrap().modified, Some(old));
        assert_eq!(Meta::read(&to).unwrap().mode, 0o700);
        assert!(same_inode(
            &to.join("wal/00000001"),
            &to.join("wal/checkpoint/00000001")
        ));
        assert_eq!(
            xattr::get(to.join("queries.active"), "user.origin").unwrap(),
            Some(b"prometheus".to_vec())
        );
        let manifest = fs::read_to_string(to.join(MANIFEST)).unwrap();
        assert!(
            manifest.contains("65534:65534 0600 1700000000.123456789  wal/00000001"),
            "{manifest}"
        );
        assert!(manifest.contains("hardlink:wal/00000001"), "{manifest}");
        // A target whose owner was changed is put right by a rerun, and verified.
        lchown(to.join("wal/00000001"), Some(0), Some(0)).unwrap();
        assert_eq!(copy_tree(&from, &to).unwrap().copied, 0);
        assert_eq!(Meta::read(&to.join("wal/00000001")).unwrap().uid, 65534);
        fs::remove_dir_all(from).unwrap();
        fs::remove_dir_all(to).unwrap();
    }

    /// The copy's progress: totals counted before it begins (a hard link's second name and
    /// the padding not counted), every file and MiB on the way, and each phase ending at
    /// its totals; as lines, the last of each phase parses back to the totals.
    #[test]
    fn a_copy_reports_its_progress_through_both_phases() {
        let (from, to) = (tmp("from6"), tmp("to6"));
        fs::create_dir_all(from.join("wal")).unwrap();
        fs::write(from.join("wal/big"), vec![1u8; 3 * CHUNK + 5]).unwrap();
        fs::write(from.join("small"), b"abc").unwrap();
        fs::hard_link(from.join("small"), from.join("wal/small")).unwrap();
        fs::create_dir_all(from.join(".swarm-warden-padding")).unwrap();
        fs::write(from.join(".swarm-warden-padding/pad-000000.bin"), b"0").unwrap();
        let mut seen: Vec<Tally> = Vec::new();
        let outcome = copy_tree_reporting(&from, &to, &mut |t| seen.push(*t)).unwrap();
        let total = 3 * CHUNK as u64 + 8;
        assert_eq!((outcome.files, outcome.bytes), (2, total));
        for phase in [JobPhase::Copying, JobPhase::Verifying] {
            let of: Vec<&Tally> = seen.iter().filter(|t| t.phase == phase).collect();
            assert_eq!((of[0].bytes_done, of[0].files_done), (0, 0), "{phase:?}");
            assert!(of
                .iter()
                .all(|t| (t.bytes_total, t.files_total) == (total, 2)));
            assert!(of.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
            assert!(of.last().unwrap().finished(), "{phase:?}: {of:?}");
            assert!(of.len() > 4, "within the big file too: {of:?}");
        }
        // Again, as the job prints it (a rerun: every file already there, still verified).
        let mut log: Vec<u8> = Vec::new();
        let mut reporter = Reporter::new(&mut log);
        copy_tree_reporting(&from, &to, &mut |t| reporter.update(t)).unwrap();
        let last = crate::runbook::progress::ProgressLine::last_in(&log).unwrap();
        assert_eq!(last.phase, JobPhase::Verifying);
        assert_eq!(
            (last.bytes_done, last.bytes_total, last.files_done),
            (total, total, 2)
        );
        fs::remove_dir_all(from).unwrap();
        fs::remove_dir_all(to).unwrap();
    }

    #[test]
    fn an_empty_source_is_refused_and_nothing_is_written() {
        let (from, to) = (tmp("from4"), tmp("to4"));
        fs::create_dir_all(&from).unwrap();
        assert!(matches!(
            copy_tree(&from, &to),
            Err(CopyError::EmptySource(_))
        ));
        assert!(!to.exists());
        fs::remove_dir_all(from).unwrap();
    }

    /// A run's target must be new: files the source does not have (a volume of that name
    /// existed, or the source deleted them since an earlier copy) fail the copy.
    #[test]
    fn a_target_holding_files_the_source_lacks_fails_the_copy() {
        let (from, to) = (tmp("from5"), tmp("to5"));
        fs::create_dir_all(from.join("wal")).unwrap();
        fs::write(from.join("wal/00000002"), b"new").unwrap();
        fs::create_dir_all(to.join("wal")).unwrap();
        fs::write(to.join("wal/00000001"), b"stale").unwrap();
        // Left by an interrupted attempt: ours, removed.
        fs::write(to.join("wal/00000002.swarm-warden-partial"), b"ne").unwrap();
        match copy_tree(&from, &to) {
            Err(CopyError::Extraneous(path)) => assert_eq!(path, "wal/00000001"),
            other => panic!("{other:?}"),
        }
        assert!(!to.join("wal/00000002").exists(), "refused before copying");
        fs::remove_file(to.join("wal/00000001")).unwrap();
        // A new ext4 filesystem's empty lost+found is not data; the padding is not copied.
        fs::create_dir_all(to.join("lost+found")).unwrap();
        fs::create_dir_all(from.join(".swarm-warden-padding")).unwrap();
        fs::write(from.join(".swarm-warden-padding/pad-000000.bin"), b"0").unwrap();
        copy_tree(&from, &to).unwrap();
        assert!(!to.join(".swarm-warden-padding").exists());
        assert!(!to.join("wal/00000002.swarm-warden-partial").exists());
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
