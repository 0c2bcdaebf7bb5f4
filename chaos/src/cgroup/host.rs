//! Which cgroup hierarchies this host has, read once, and which of them holds a lab's
//! nodes (the *tree*).
//!
//! Three layouts are found in the field (systemd's names, `systemd.unified_cgroup_hierarchy`):
//! - **legacy** (cgroup v1 only): one hierarchy per controller under `/sys/fs/cgroup`;
//! - **hybrid**: the v1 controller hierarchies plus a controller-less cgroup2 mount at
//!   `/sys/fs/cgroup/unified` (where `cgroup.freeze` and `cgroup.kill` still work);
//! - **unified** (cgroup v2 only): `/sys/fs/cgroup` itself is the cgroup2 mount — the
//!   default of current Debian, Ubuntu, Fedora and of Docker Desktop's VM.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// Where every cgroup filesystem is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The v1 freezer hierarchy.
pub const FREEZER: &str = "/sys/fs/cgroup/freezer";
/// Where a hybrid host mounts cgroup2.
pub const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";
/// Chooses the tree of a new lab: `v1` or `v2` (default: the host's own, see
/// [`Tree::for_new_lab`]).
pub const CGROUP_ENV: &str = "SWARM_CHAOS_CGROUP";

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1 only.
    Legacy,
    /// cgroup v1 controllers plus a cgroup2 mount at [`HYBRID_UNIFIED`].
    Hybrid,
    /// cgroup v2 only, mounted at [`CGROUP_ROOT`].
    Unified,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            CgroupMode::Legacy => "v1 (legacy)",
            CgroupMode::Hybrid => "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)",
            CgroupMode::Unified => "v2 (unified)",
        })
    }
}

impl CgroupMode {
    /// This host's layout, read once per process (`statfs` of the mount points).
    pub fn of_host() -> CgroupMode {
        static MODE: OnceLock<CgroupMode> = OnceLock::new();
        *MODE.get_or_init(|| {
            if is_cgroup2(Path::new(CGROUP_ROOT)) {
                CgroupMode::Unified
            } else if is_cgroup2(Path::new(HYBRID_UNIFIED)) {
                CgroupMode::Hybrid
            } else {
                CgroupMode::Legacy
            }
        })
    }

    /// Where cgroup2 is mounted, if it is.
    pub fn unified_root(self) -> Option<PathBuf> {
        match self {
            CgroupMode::Legacy => None,
            CgroupMode::Hybrid => Some(PathBuf::from(HYBRID_UNIFIED)),
            CgroupMode::Unified => Some(PathBuf::from(CGROUP_ROOT)),
        }
    }

    /// The roots of every cgroup hierarchy: the v1 ones (and a hybrid host's cgroup2
    /// mount) under [`CGROUP_ROOT`], or [`CGROUP_ROOT`] alone on a unified host (whose
    /// subfolders are cgroups, not hierarchies).
    pub fn hierarchies(self) -> Vec<PathBuf> {
        if self == CgroupMode::Unified {
            return vec![PathBuf::from(CGROUP_ROOT)];
        }
        std::fs::read_dir(CGROUP_ROOT)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.join("cgroup.procs").exists())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The hierarchy that holds a lab's nodes, and so how a node is frozen and killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tree {
    /// The v1 freezer hierarchy: `freezer.state`, and SIGKILL to every listed process.
    /// What labs made before the tree was recorded used.
    #[default]
    V1,
    /// The cgroup2 mount: `cgroup.freeze`, `cgroup.kill` (Linux 5.14+; SIGKILL to every
    /// listed process before).
    V2,
}

impl std::fmt::Display for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Tree::V1 => "v1",
            Tree::V2 => "v2",
        })
    }
}

impl std::str::FromStr for Tree {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Tree> {
        match s.trim() {
            "v1" | "1" => Ok(Tree::V1),
            "v2" | "2" => Ok(Tree::V2),
            other => Err(LabError::Usage(format!(
                "{CGROUP_ENV}={other:?}: expected v1 or v2"
            ))),
        }
    }
}

impl Tree {
    /// The tree a new lab uses: `$SWARM_CHAOS_CGROUP` if set, else v2 on a unified host
    /// and v1 on the others (on a hybrid host dockerd runs its containers under v1, the
    /// layout the lab was first built and tested on).
    ///
    /// # Errors
    /// `$SWARM_CHAOS_CGROUP` is neither `v1` nor `v2`.
    pub fn for_new_lab() -> Result<Tree> {
        match std::env::var(CGROUP_ENV) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            _ => Ok(Tree::default_for(CgroupMode::of_host())),
        }
    }

    /// The tree a host of layout `mode` uses by default.
    pub fn default_for(mode: CgroupMode) -> Tree {
        match mode {
            CgroupMode::Unified => Tree::V2,
            CgroupMode::Legacy | CgroupMode::Hybrid => Tree::V1,
        }
    }

    /// The folder under which this tree's node cgroups are made (where it would be, on a
    /// host without it).
    pub fn path(self) -> PathBuf {
        match self {
            Tree::V1 => PathBuf::from(FREEZER),
            Tree::V2 => CgroupMode::of_host()
                .unified_root()
                .unwrap_or_else(|| PathBuf::from(CGROUP_ROOT)),
        }
    }

    /// Checks that the host has this tree.
    ///
    /// # Errors
    /// It has not, with what to do instead.
    pub fn check(self) -> Result<()> {
        let mode = CgroupMode::of_host();
        match self {
            Tree::V1 if Path::new(FREEZER).join("cgroup.procs").exists() => Ok(()),
            Tree::V1 => Err(LabError::Prerequisite(format!(
                "cgroup v1 was asked for, but this host ({mode}) has no v1 freezer hierarchy \
                 at {FREEZER}: unset {CGROUP_ENV} or set it to v2"
            ))),
            Tree::V2 if mode.unified_root().is_some() => Ok(()),
            Tree::V2 => Err(LabError::Prerequisite(format!(
                "cgroup v2 was asked for, but this host ({mode}) has no cgroup2 mount at \
                 {CGROUP_ROOT} or {HYBRID_UNIFIED}: unset {CGROUP_ENV} or set it to v1"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_host_defaults_to_v2_and_the_others_to_v1() {
        assert_eq!(Tree::default_for(CgroupMode::Unified), Tree::V2);
        assert_eq!(Tree::default_for(CgroupMode::Hybrid), Tree::V1);
        assert_eq!(Tree::default_for(CgroupMode::Legacy), Tree::V1);
    }

    #[test]
    fn trees_are_named_v1_and_v2_and_nothing_else() {
        assert_eq!("v2".parse::<Tree>().expect("v2"), Tree::V2);
        assert_eq!(" v1\n".parse::<Tree>().expect("v1"), Tree::V1);
        let refused = "unified".parse::<Tree>().expect_err("refused").to_string();
        assert!(refused.contains(CGROUP_ENV), "{refused}");
    }

    #[test]
    fn a_lab_state_without_a_tree_reads_as_v1() {
        #[derive(Deserialize)]
        struct Old {
            #[serde(default)]
            cgroup: Tree,
        }
        let old: Old = serde_json::from_str("{}").expect("old state");
        assert_eq!(old.cgroup, Tree::V1);
        let new: Old = serde_json::from_str(r#"{"cgroup":"v2"}"#).expect("new state");
        assert_eq!(new.cgroup, Tree::V2);
    }
}
