//! One cgroup per node: it holds the node's boot process, so dockerd, containerd, every
//! shim and — through `dockerd --cgroup-parent` — every container sit in one tree.
//! Freezing that tree is a stuck host; killing every process in it is node loss; nothing
//! the node started can outlive it.
//!
//! The tree is the v1 freezer hierarchy or the cgroup2 mount ([`Tree`], chosen per lab,
//! see [`host`]). On cgroup2 the node's own processes sit in a leaf (`node/`) beside the
//! containers' cgroups, since a cgroup2 folder whose children use controllers may hold no
//! process itself (the "no internal processes" rule).

pub mod host;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{LabError, Result};
use crate::remove::remove_retrying;

pub use host::{CgroupMode, Tree, CGROUP_ENV};

/// The cgroup2 leaf that holds a node's own processes (dockerd, containerd, shims).
const NODE_LEAF: &str = "node";

/// What a node's cgroup says about its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// No process left: the node is down (killed, or never started).
    Stopped,
    /// Processes running.
    Running,
    /// Processes frozen.
    Frozen,
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ProcessState::Stopped => "stopped",
            ProcessState::Running => "running",
            ProcessState::Frozen => "frozen",
        })
    }
}

/// How [`NodeCgroup::kill_all_by`] kills a cgroup2 tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMethod {
    /// `cgroup.kill` (Linux 5.14+): the kernel kills every process of the subtree, new
    /// forks included.
    CgroupKill,
    /// Freeze, SIGKILL every listed process, thaw: what kernels without `cgroup.kill`
    /// (and cgroup v1) allow.
    Signals,
}

/// The cgroup of one node, by name (the same name in every hierarchy).
#[derive(Debug, Clone)]
pub struct NodeCgroup {
    name: String,
    tree: Tree,
    root: PathBuf,
}

impl NodeCgroup {
    /// The cgroup called `name` (top level) in `tree` (whether the host has that tree is
    /// [`Tree::check`]'s question, asked when a lab starts).
    pub fn new(name: impl Into<String>, tree: Tree) -> Self {
        Self {
            name: name.into(),
            tree,
            root: tree.path(),
        }
    }

    /// The cgroup called `name` in every tree of this host where it exists: what a
    /// teardown that does not know the lab's tree (a lost state file) must clean.
    pub fn everywhere(name: &str) -> Vec<NodeCgroup> {
        [Tree::V1, Tree::V2]
            .into_iter()
            .map(|tree| NodeCgroup::new(name, tree))
            .filter(|c| c.dir().exists())
            .collect()
    }

    /// Which tree it is in.
    pub fn tree(&self) -> Tree {
        self.tree
    }

    /// The `--cgroup-parent` that puts the node's containers into this tree.
    pub fn parent_arg(&self) -> String {
        format!("/{}", self.name)
    }

    /// The node's folder in its tree.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// The file the boot script writes its own PID into, before it execs dockerd.
    pub fn procs_file(&self) -> PathBuf {
        match self.tree {
            Tree::V1 => self.dir().join("cgroup.procs"),
            Tree::V2 => self.dir().join(NODE_LEAF).join("cgroup.procs"),
        }
    }

    /// Creates the cgroup (idempotent).
    ///
    /// # Errors
    /// The folder cannot be made, or a cgroup2 kernel without `cgroup.freeze` (Linux 5.2).
    pub fn create(&self) -> Result<()> {
        let dir = match self.tree {
            Tree::V1 => self.dir(),
            Tree::V2 => self.dir().join(NODE_LEAF),
        };
        std::fs::create_dir_all(&dir).map_err(LabError::io("create cgroup", &dir))?;
        if self.tree == Tree::V2 && !self.dir().join("cgroup.freeze").exists() {
            return Err(LabError::Prerequisite(format!(
                "{} has no cgroup.freeze: the lab's cgroup v2 tree needs Linux 5.2 or later",
                self.dir().display()
            )));
        }
        Ok(())
    }

    /// Every process in the node's tree.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in subtree(&self.dir()) {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids
    }

    /// Whether the node's processes run, are frozen, or are gone.
    pub fn state(&self) -> ProcessState {
        if self.pids().is_empty() {
            return ProcessState::Stopped;
        }
        if self.is_frozen() {
            ProcessState::Frozen
        } else {
            ProcessState::Running
        }
    }

    /// v1: `freezer.state` is not THAWED (FREEZING counts: it is on its way). v2:
    /// `cgroup.events` says `frozen 1`.
    fn is_frozen(&self) -> bool {
        match self.tree {
            Tree::V1 => std::fs::read_to_string(self.dir().join("freezer.state"))
                .is_ok_and(|s| s.trim() != "THAWED"),
            Tree::V2 => self.v2_frozen() || self.v2_freeze_asked(),
        }
    }

    fn v2_frozen(&self) -> bool {
        std::fs::read_to_string(self.dir().join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|l| l.trim() == "frozen 1"))
    }

    fn v2_freeze_asked(&self) -> bool {
        std::fs::read_to_string(self.dir().join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Freezes every process of the node and waits until the kernel says it is frozen.
    ///
    /// # Errors
    /// The freeze file cannot be written, or the tree is not frozen within 10 s.
    pub fn freeze(&self) -> Result<()> {
        self.write_freeze(true)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frozen = match self.tree {
                Tree::V1 => {
                    let state = std::fs::read_to_string(self.dir().join("freezer.state"))
                        .map_err(LabError::io("read freezer state", self.dir()))?;
                    state.trim() == "FROZEN"
                }
                Tree::V2 => self.v2_frozen(),
            };
            if frozen {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Prerequisite(format!(
                    "cgroup {} ({}) not frozen after 10s",
                    self.name, self.tree
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets a frozen node run again.
    ///
    /// # Errors
    /// The freeze file cannot be written.
    pub fn thaw(&self) -> Result<()> {
        self.write_freeze(false)
    }

    fn write_freeze(&self, frozen: bool) -> Result<()> {
        let (file, value) = match (self.tree, frozen) {
            (Tree::V1, true) => ("freezer.state", "FROZEN"),
            (Tree::V1, false) => ("freezer.state", "THAWED"),
            (Tree::V2, true) => ("cgroup.freeze", "1"),
            (Tree::V2, false) => ("cgroup.freeze", "0"),
        };
        let file = self.dir().join(file);
        std::fs::write(&file, value).map_err(LabError::io("write freezer state", &file))
    }

    /// Kills every process of the node at once and waits until the tree is empty: by
    /// `cgroup.kill` where the kernel has it, else frozen first so that nothing forks or
    /// restarts a sibling in between.
    ///
    /// # Errors
    /// Processes survive SIGKILL for 20 s, or the freezer cannot be written.
    pub fn kill_all(&self) -> Result<()> {
        let method = if self.tree == Tree::V2 && self.dir().join("cgroup.kill").exists() {
            KillMethod::CgroupKill
        } else {
            KillMethod::Signals
        };
        self.kill_all_by(method)
    }

    /// [`NodeCgroup::kill_all`] by the given method ([`KillMethod::CgroupKill`] only on
    /// cgroup2; v1 always signals).
    ///
    /// # Errors
    /// As [`NodeCgroup::kill_all`]; `cgroup.kill` cannot be written.
    pub fn kill_all_by(&self, method: KillMethod) -> Result<()> {
        if !self.dir().exists() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.pids().is_empty() {
                // A node killed while frozen must not stay frozen: its restart would join
                // a frozen tree and hang (cgroup.kill does not thaw).
                if self.tree == Tree::V2 && self.v2_freeze_asked() {
                    self.thaw()?;
                }
                return Ok(());
            }
            match (self.tree, method) {
                (Tree::V2, KillMethod::CgroupKill) => {
                    let file = self.dir().join("cgroup.kill");
                    std::fs::write(&file, "1").map_err(LabError::io("write", &file))?;
                }
                _ => self.kill_listed()?,
            }
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() > deadline {
                return Err(LabError::Prerequisite(format!(
                    "processes {:?} of cgroup {} ({}) survived SIGKILL for 20s",
                    self.pids(),
                    self.name,
                    self.tree
                )));
            }
        }
    }

    fn kill_listed(&self) -> Result<()> {
        // A tree that cannot be frozen is still killed: SIGKILL is what matters.
        let _ = self.freeze();
        for pid in self.pids() {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!(pid, error = %e, "Could not kill a node process"),
            }
        }
        // A frozen task dies only once thawed on v1; v2 delivers SIGKILL to frozen tasks,
        // but a tree left frozen would freeze the next node started under this name.
        self.thaw()
    }

    /// Kills what is left and removes the cgroup from every hierarchy, deepest folders
    /// first (dockerd made one per container in each).
    ///
    /// # Errors
    /// As [`NodeCgroup::kill_all`]; a folder cannot be removed.
    pub fn remove(&self) -> Result<()> {
        self.kill_all()?;
        for hierarchy in CgroupMode::of_host().hierarchies() {
            let top = hierarchy.join(&self.name);
            if !top.exists() {
                continue;
            }
            let mut dirs = subtree(&top);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                remove_dir_retrying(&dir)?;
            }
        }
        Ok(())
    }
}

/// Names of top-level cgroups starting with `prefix`, in any hierarchy.
pub fn list_cgroups(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = CgroupMode::of_host()
        .hierarchies()
        .into_iter()
        .filter_map(|h| std::fs::read_dir(h).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `dir` and every folder below it.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
            out.push(d);
        }
    }
    out
}

fn remove_dir_retrying(dir: &Path) -> Result<()> {
    remove_retrying("remove cgroup", dir, |d| std::fs::remove_dir(d))
}
