//! How the lab's EFS volume enforces its permitted rate and counts its bytes, on either
//! cgroup layout:
//!
//! - **blkio** (cgroup v1, also on hybrid hosts): throttle rules are flat (a rule binds
//!   only the tasks of its own cgroup), so one goes on the root and on every cgroup of the
//!   lab's nodes, again each tick as containers come. Bytes from the root's recursive
//!   service counters.
//! - **io.max** (cgroup v2 only hosts): limits are hierarchical, so one line on each of the
//!   lab's top-level node cgroups covers the node and its containers; the `io` controller
//!   is enabled in the root's `cgroup.subtree_control` first. Bytes from the device's own
//!   counters (`/sys/dev/block/MAJ:MIN/stat`, 512-byte sectors).
//!
//! NOTE: this machine is hybrid with `io` bound to v1, so CI runs the blkio path on the
//! kernel and the io.max path only against a scratch folder (the files it writes and
//! their format, see the tests): README, "cgroup v1 and v2".

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupMode;
use crate::error::{LabError, Result};

/// The v1 blkio hierarchy.
pub(crate) const BLKIO: &str = "/sys/fs/cgroup/blkio";

/// Reads are metered at a third by EFS: three times the write rate.
const READ_FACTOR: u64 = 3;

/// Where and how the rate is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// cgroup v1 blkio under `root`.
    Blkio {
        /// The blkio hierarchy.
        root: PathBuf,
    },
    /// cgroup v2 `io.max` under `root` (the cgroup2 mount).
    IoMax {
        /// The cgroup2 mount.
        root: PathBuf,
        /// Where the device counters are (`/sys/dev/block`).
        devices: PathBuf,
    },
}

impl Throttle {
    /// This host's way: blkio where the v1 controller is mounted, else io.max on a unified
    /// host whose root offers the `io` controller.
    ///
    /// # Errors
    /// Neither is available, with the host's layout.
    pub(crate) fn for_host() -> Result<Throttle> {
        let mode = CgroupMode::of_host();
        if Path::new(BLKIO)
            .join("blkio.throttle.write_bps_device")
            .exists()
        {
            return Ok(Throttle::Blkio { root: BLKIO.into() });
        }
        if let Some(root) = mode.unified_root().filter(|_| mode == CgroupMode::Unified) {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "io") {
                return Ok(Throttle::IoMax {
                    root,
                    devices: "/sys/dev/block".into(),
                });
            }
        }
        Err(LabError::Prerequisite(format!(
            "the lab's EFS volume needs a block I/O throttle: the cgroup v1 blkio controller at {BLKIO}, or cgroup v2's io controller at /sys/fs/cgroup; this host ({mode}) has neither"
        )))
    }

    /// Holds writes on device `maj_min` to `write_bps` bytes/s (reads to three times
    /// that) for every process of the lab (top-level cgroups named `prefix*`).
    pub(crate) fn limit(&self, prefix: &str, maj_min: &str, write_bps: u64) {
        let read_bps = write_bps.saturating_mul(READ_FACTOR);
        match self {
            Throttle::Blkio { root } => {
                // The root cgroup's I/O on the device is the kernel's writeback of metadata:
                // a quarter share keeps it from doubling what the workloads get.
                set_blkio(root, maj_min, (write_bps / 4).max(1), (read_bps / 4).max(1));
                for dir in lab_cgroups(root, prefix, true) {
                    set_blkio(&dir, maj_min, write_bps, read_bps);
                }
            }
            Throttle::IoMax { root, .. } => {
                enable_io(root);
                let line = format!("{maj_min} rbps={read_bps} wbps={write_bps}");
                for dir in lab_cgroups(root, prefix, false) {
                    set_io_max(&dir, maj_min, &line);
                }
            }
        }
    }

    /// Lifts the limits on `maj_min`: the root's blkio rule (the lab's own cgroups and
    /// their rules go with the lab), or the lab's io.max lines.
    pub(crate) fn lift(&self, prefix: &str, maj_min: &str) {
        match self {
            Throttle::Blkio { root } => set_blkio(root, maj_min, 0, 0),
            Throttle::IoMax { root, .. } => {
                let line = format!("{maj_min} rbps=max wbps=max");
                for dir in lab_cgroups(root, prefix, false) {
                    set_io_max(&dir, maj_min, &line);
                }
            }
        }
    }

    /// Read and written bytes of the device so far, over every process.
    pub(crate) fn counters(&self, maj_min: &str) -> (u64, u64) {
        match self {
            Throttle::Blkio { root } => blkio_counters(root, maj_min),
            Throttle::IoMax { devices, .. } => device_counters(devices, maj_min),
        }
    }
}

/// The lab's top-level cgroups under `root` (and, for flat v1 rules, every folder below).
fn lab_cgroups(root: &Path, prefix: &str, recursive: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut stack: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    if !recursive {
        return stack;
    }
    let mut out = Vec::new();
    while let Some(dir) = stack.pop() {
        if let Ok(children) = std::fs::read_dir(&dir) {
            stack.extend(
                children
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        out.push(dir);
    }
    out
}

fn set_blkio(cgroup: &Path, maj_min: &str, write_bps: u64, read_bps: u64) {
    for (file, rate) in [
        ("blkio.throttle.write_bps_device", write_bps),
        ("blkio.throttle.read_bps_device", read_bps),
    ] {
        let path = cgroup.join(file);
        // Rewriting a rule restarts the throttle's slice and lets queued I/O through:
        // write only what changed.
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let unchanged = current.lines().any(|l| {
            l.split_whitespace()
                .eq([maj_min, rate.to_string().as_str()])
        });
        let absent = !current
            .lines()
            .any(|l| l.starts_with(&format!("{maj_min} ")));
        if unchanged || (rate == 0 && absent) {
            continue;
        }
        if let Err(e) = std::fs::write(&path, format!("{maj_min} {rate}")) {
            // A container's cgroup may vanish between listing and writing.
            tracing::debug!(path = %path.display(), error = %e, "Could not set the blkio throttle");
        }
    }
}

/// Adds `io` to the root's `cgroup.subtree_control` unless it is there (the root is
/// exempt from the no-internal-processes rule, so this is always allowed).
fn enable_io(root: &Path) {
    let control = root.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "io") {
        return;
    }
    if let Err(e) = std::fs::write(&control, "+io") {
        tracing::warn!(path = %control.display(), error = %e, "Could not enable the io controller");
    }
}

/// Writes `line` (`MAJ:MIN rbps=R wbps=W`) to the cgroup's `io.max` unless the device's
/// line already says so. The kernel reads it back with `riops=max wiops=max` added.
fn set_io_max(cgroup: &Path, maj_min: &str, line: &str) {
    let path = cgroup.join("io.max");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let wanted: Vec<&str> = line.split_whitespace().collect();
    let unchanged = current.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.first() == Some(&maj_min) && wanted.iter().all(|w| words.contains(w))
    });
    let lifting_nothing = line.ends_with("rbps=max wbps=max")
        && !current
            .lines()
            .any(|l| l.starts_with(&format!("{maj_min} ")));
    if unchanged || lifting_nothing {
        return;
    }
    if let Err(e) = std::fs::write(&path, line) {
        // A node's cgroup may vanish between listing and writing; a node that stays and
        // refuses the limit is a volume that does not slow down: say so.
        if path.parent().is_some_and(Path::exists) {
            tracing::warn!(path = %path.display(), error = %e, "Could not set io.max: the EFS volume is not throttled for this node");
        }
    }
}

fn blkio_counters(root: &Path, maj_min: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(root.join("blkio.throttle.io_service_bytes_recursive"))
        .unwrap_or_default();
    let mut read = 0;
    let mut write = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some(maj_min) {
            continue;
        }
        match (
            parts.next(),
            parts.next().and_then(|v| v.parse::<u64>().ok()),
        ) {
            (Some("Read"), Some(v)) => read = v,
            (Some("Write"), Some(v)) => write = v,
            _ => {}
        }
    }
    (read, write)
}

/// `/sys/dev/block/MAJ:MIN/stat`: field 3 is sectors read, field 7 sectors written
/// (the kernel's Documentation/block/stat.rst), 512 bytes each whatever the device's
/// sector size.
fn device_counters(devices: &Path, maj_min: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(devices.join(maj_min).join("stat")).unwrap_or_default();
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let sectors = |i: usize| fields.get(i).copied().unwrap_or(0).saturating_mul(512);
    (sectors(2), sectors(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("efs-throttle-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn io_max_enables_the_controller_and_limits_each_lab_cgroup_only() {
        let root = scratch("iomax");
        for dir in ["swc_lab_m1/node", "swc_lab_w1", "other"] {
            std::fs::create_dir_all(root.join(dir)).expect("cgroup");
        }
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory").expect("control");
        let throttle = Throttle::IoMax {
            root: root.clone(),
            devices: root.join("dev"),
        };
        throttle.limit("swc_lab_", "7:3", 1_000);
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        // The scratch folder is a plain file system: "+io" replaces the file's content.
        assert_eq!(read("cgroup.subtree_control"), "+io");
        assert_eq!(read("swc_lab_m1/io.max"), "7:3 rbps=3000 wbps=1000");
        assert_eq!(read("swc_lab_w1/io.max"), "7:3 rbps=3000 wbps=1000");
        assert_eq!(
            read("swc_lab_m1/node/io.max"),
            "",
            "hierarchical: the top is enough"
        );
        assert_eq!(read("other/io.max"), "", "not the lab's");

        // As the kernel reads it back: unchanged, not rewritten.
        std::fs::write(
            root.join("swc_lab_m1/io.max"),
            "7:3 rbps=3000 wbps=1000 riops=max wiops=max\n",
        )
        .expect("kernel form");
        throttle.limit("swc_lab_", "7:3", 1_000);
        assert!(read("swc_lab_m1/io.max").contains("riops=max"));

        throttle.lift("swc_lab_", "7:3");
        assert_eq!(read("swc_lab_w1/io.max"), "7:3 rbps=max wbps=max");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn device_counters_are_the_sectors_read_and_written_in_bytes() {
        let root = scratch("stat");
        std::fs::create_dir_all(root.join("7:3")).expect("device");
        std::fs::write(
            root.join("7:3/stat"),
            "     120        0     2048      10      300        0     8192      40        0      50      50\n",
        )
        .expect("stat");
        let throttle = Throttle::IoMax {
            root: root.clone(),
            devices: root.clone(),
        };
        assert_eq!(throttle.counters("7:3"), (2048 * 512, 8192 * 512));
        assert_eq!(throttle.counters("7:9"), (0, 0), "no such device");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn blkio_rules_go_on_the_root_at_a_quarter_and_on_every_lab_folder() {
        let root = scratch("blkio");
        std::fs::create_dir_all(root.join("swc_lab_m1/abc")).expect("cgroup");
        let throttle = Throttle::Blkio { root: root.clone() };
        throttle.limit("swc_lab_", "7:3", 1_000);
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        assert_eq!(read("blkio.throttle.write_bps_device"), "7:3 250");
        assert_eq!(
            read("swc_lab_m1/abc/blkio.throttle.read_bps_device"),
            "7:3 3000"
        );
        throttle.lift("swc_lab_", "7:3");
        assert_eq!(read("blkio.throttle.write_bps_device"), "7:3 0");
        let _ = std::fs::remove_dir_all(&root);
    }
}
