//! One cgroup per node (cgroup v1): the freezer holds the node's boot process, so dockerd,
//! containerd, every shim and — through `dockerd --cgroup-parent` — every container sit in
//! one tree. Freezing that tree is a stuck host; killing every process in it is node loss;
//! nothing the node started can outlive it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{LabError, Result};
use crate::remove::remove_retrying;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const FREEZER: &str = "/sys/fs/cgroup/freezer";

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

/// The cgroup of one node, by name (the same name in every hierarchy).
#[derive(Debug, Clone)]
pub struct NodeCgroup {
    name: String,
}

impl NodeCgroup {
    /// The cgroup called `name` (a top-level cgroup in each hierarchy).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Checks that the machine has what this module relies on.
    pub fn check_supported() -> Result<()> {
        if Path::new(FREEZER).join("freezer.state").exists()
            || Path::new(FREEZER).join("cgroup.procs").exists()
        {
            Ok(())
        } else {
            Err(LabError::Prerequisite(format!(
                "the lab needs the cgroup v1 freezer hierarchy at {FREEZER} (cgroup v1 host)"
            )))
        }
    }

    /// The `--cgroup-parent` that puts the node's containers into this tree.
    pub fn parent_arg(&self) -> String {
        format!("/{}", self.name)
    }

    fn freezer_dir(&self) -> PathBuf {
        Path::new(FREEZER).join(&self.name)
    }

    /// The file the boot script writes its own PID into, before it execs dockerd.
    pub fn procs_file(&self) -> PathBuf {
        self.freezer_dir().join("cgroup.procs")
    }

    /// Creates the freezer cgroup (idempotent).
    pub fn create(&self) -> Result<()> {
        let dir = self.freezer_dir();
        std::fs::create_dir_all(&dir).map_err(LabError::io("create cgroup", &dir))
    }

    /// Every process in the node's tree.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in subtree(&self.freezer_dir()) {
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
        match std::fs::read_to_string(self.freezer_dir().join("freezer.state")) {
            Ok(s) if s.trim() != "THAWED" => ProcessState::Frozen,
            _ => ProcessState::Running,
        }
    }

    /// Freezes every process of the node and waits until the kernel says FROZEN.
    pub fn freeze(&self) -> Result<()> {
        self.write_state("FROZEN")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(self.freezer_dir().join("freezer.state"))
                .map_err(LabError::io("read freezer state", self.freezer_dir()))?;
            if state.trim() == "FROZEN" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Prerequisite(format!(
                    "cgroup {} stuck in {} after 10s",
                    self.name,
                    state.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets a frozen node run again.
    pub fn thaw(&self) -> Result<()> {
        self.write_state("THAWED")
    }

    fn write_state(&self, state: &str) -> Result<()> {
        let file = self.freezer_dir().join("freezer.state");
        std::fs::write(&file, state).map_err(LabError::io("write freezer state", &file))
    }

    /// Kills every process of the node at once, frozen first so that nothing forks or
    /// restarts a sibling in between, and waits until the tree is empty.
    pub fn kill_all(&self) -> Result<()> {
        if !self.freezer_dir().exists() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.pids().is_empty() {
                return Ok(());
            }
            // A tree that cannot be frozen is still killed: SIGKILL is what matters.
            let _ = self.freeze();
            for pid in self.pids() {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => tracing::warn!(pid, error = %e, "Could not kill a node process"),
                }
            }
            // NOTE: a frozen task dies only once thawed (cgroup v1).
            self.thaw()?;
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() > deadline {
                return Err(LabError::Prerequisite(format!(
                    "processes {:?} of cgroup {} survived SIGKILL for 20s",
                    self.pids(),
                    self.name
                )));
            }
        }
    }

    /// Kills what is left and removes the cgroup from every hierarchy, deepest folders
    /// first (dockerd made one per container in each).
    pub fn remove(&self) -> Result<()> {
        self.kill_all()?;
        for hierarchy in hierarchies() {
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
    let mut names: Vec<String> = hierarchies()
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

fn hierarchies() -> Vec<PathBuf> {
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
