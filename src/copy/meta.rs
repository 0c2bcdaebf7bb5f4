//! What a copy keeps besides the bytes: owner and group, mode, modification and access
//! times, extended attributes. A service that runs as `nobody` (Prometheus' image does)
//! must find its files as it left them, or it fails with "permission denied" on the new
//! volume. Symbolic links keep their owner (`lchown`) but not their times: the standard
//! library sets times through an open file, which follows the link.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{io, CopyError};

/// The metadata of one file, directory or symbolic link, as a copy keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Owner (numeric: the job's `/etc/passwd` is not the service's).
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits, setuid/setgid/sticky included (`0o7777`).
    pub mode: u32,
    /// Last modification; `None` for symbolic links (not kept).
    pub modified: Option<SystemTime>,
    /// Last access; `None` for symbolic links.
    pub accessed: Option<SystemTime>,
    /// Extended attributes (name, value), sorted by name; none read for symbolic links.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    /// Reads the metadata of `path` (not following a symbolic link).
    ///
    /// # Errors
    /// `stat` or reading an extended attribute failed.
    pub fn read(path: &Path) -> Result<Self, CopyError> {
        let md = fs::symlink_metadata(path).map_err(io("stat", path))?;
        let link = md.file_type().is_symlink();
        let time = |secs: i64, nanos: i64| {
            let nanos = u32::try_from(nanos).unwrap_or(0);
            match u64::try_from(secs) {
                Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
                Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
            }
        };
        let mut xattrs = Vec::new();
        if !link {
            // A file system without extended attributes (EFS is one) has none to keep.
            let names = match xattr::list(path) {
                Ok(names) => names.collect(),
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Vec::new(),
                Err(e) => return Err(io("list xattrs of", path)(e)),
            };
            for name in names {
                if let Some(value) = xattr::get(path, &name).map_err(io("read xattr of", path))? {
                    xattrs.push((name, value));
                }
            }
            xattrs.sort();
        }
        Ok(Self {
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o7777,
            modified: (!link).then(|| time(md.mtime(), md.mtime_nsec())),
            accessed: (!link).then(|| time(md.atime(), md.atime_nsec())),
            xattrs,
        })
    }

    /// Gives `path` this metadata: owner first (a `chown` clears setuid bits), then the
    /// mode, the extended attributes, and the times last (the others would not change
    /// them, but writing into a directory would: directories are done after their
    /// contents).
    ///
    /// # Errors
    /// A `chown`, `chmod`, `setxattr` or `utimensat` failed (the target's file system
    /// cannot hold what the source had, say).
    pub fn apply(&self, path: &Path) -> Result<(), CopyError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(io("chown", path))?;
        let (Some(modified), Some(accessed)) = (self.modified, self.accessed) else {
            return Ok(()); // a symbolic link: its owner only
        };
        fs::set_permissions(path, fs::Permissions::from_mode(self.mode))
            .map_err(io("chmod", path))?;
        for (name, value) in &self.xattrs {
            xattr::set(path, name, value).map_err(io("set xattr of", path))?;
        }
        File::open(path)
            .and_then(|f| {
                f.set_times(
                    FileTimes::new()
                        .set_modified(modified)
                        .set_accessed(accessed),
                )
            })
            .map_err(io("set times of", path))
    }

    /// How this differs from `other` in what a copy keeps, except access times (reading
    /// a file to verify it may move them); `None` when it does not.
    pub fn differs(&self, other: &Meta) -> Option<String> {
        let mut what = Vec::new();
        if (self.uid, self.gid) != (other.uid, other.gid) {
            what.push(format!(
                "owner {}:{} (source {}:{})",
                other.uid, other.gid, self.uid, self.gid
            ));
        }
        if self.mode != other.mode && self.modified.is_some() {
            what.push(format!("mode {:o} (source {:o})", other.mode, self.mode));
        }
        if self.modified != other.modified {
            what.push("modification time".into());
        }
        if self.xattrs != other.xattrs {
            what.push("extended attributes".into());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

impl fmt::Display for Meta {
    /// `uid:gid mode mtime` as the manifest records it (`mtime` in Unix seconds with
    /// nanoseconds; `-` for a symbolic link), then `+xattrs` when it has any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} {:04o} ", self.uid, self.gid, self.mode)?;
        match self
            .modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        {
            Some(d) => write!(f, "{}.{:09}", d.as_secs(), d.subsec_nanos())?,
            None => f.write_str("-")?,
        }
        if !self.xattrs.is_empty() {
            write!(f, " +{}xattr", self.xattrs.len())?;
        }
        Ok(())
    }
}
