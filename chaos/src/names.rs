//! Names of labs and nodes, and every host-side name derived from them.
//!
//! Everything a lab creates on the host (network namespaces, cgroups, folders) carries the
//! prefix [`HOST_PREFIX`] plus the lab name, so that a teardown — or a reap after a crashed
//! run — can find all of it by name alone, without trusting any state file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Prefix of every network namespace and cgroup a lab creates.
pub const HOST_PREFIX: &str = "swc_";

/// Where labs keep their state and per-node data unless told otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/swarm-chaos";

/// Longest lab name: keeps `<root>/<lab>/<node>/run/docker.sock` well under the 108-byte
/// limit of a unix socket path with the default root.
const MAX_LAB_NAME: usize = 24;
/// Longest node name: the node's veth end on the bridge is named after it (IFNAMSIZ is 16).
const MAX_NODE_NAME: usize = 12;

/// A validated lab name: `[a-z0-9][a-z0-9-]*`, at most 24 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabName(String);

impl LabName {
    /// Validates a lab name.
    pub fn new(name: &str) -> Result<Self, LabError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_LAB_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(LabError::InvalidName {
                what: "lab",
                name: name.to_owned(),
                rule: "1-24 characters of a-z, 0-9 and '-', starting with a letter or digit",
            })
        }
    }

    /// A name no other run on this machine uses: test labs get one each.
    pub fn unique(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let raw = format!("{prefix}{}-{n}-{:x}", std::process::id(), nanos % 0x10000);
        let mut s: String = raw
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        s.truncate(MAX_LAB_NAME);
        Self(s)
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Prefix of every host object of this lab: `swc_<lab>_`.
    pub fn host_prefix(&self) -> String {
        format!("{HOST_PREFIX}{}_", self.0)
    }

    /// Network namespace (and cgroup) name of one node.
    pub fn node_host_name(&self, node: &NodeName) -> String {
        format!("{}{}", self.host_prefix(), node.0)
    }

    /// Network namespace that holds the lab's bridge. Node names start with a letter, so
    /// `0br` can never be a node's name.
    pub fn bridge_netns(&self) -> String {
        format!("{}0br", self.host_prefix())
    }

    /// Network namespace of the lab's observer host (Prometheus, probes): on the lab's
    /// network like a node, but running no Docker.
    pub fn observer_netns(&self) -> String {
        format!("{}0obs", self.host_prefix())
    }
}

impl TryFrom<String> for LabName {
    type Error = LabError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<LabName> for String {
    fn from(n: LabName) -> String {
        n.0
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A validated node name: a lowercase letter then letters or digits (`m1`, `w2`), at most
/// 12 characters. It is also the node's hostname, as `docker node ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// Validates a node name.
    pub fn new(name: &str) -> Result<Self, LabError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NODE_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(LabError::InvalidName {
                what: "node",
                name: name.to_owned(),
                rule: "1-12 characters of a-z and 0-9, starting with a letter",
            })
        }
    }

    /// The conventional name of the `index`-th (1-based) node of a role: `m1`, `w3`.
    pub fn numbered(role: Role, index: usize) -> Self {
        let letter = match role {
            Role::Manager => 'm',
            Role::Worker => 'w',
        };
        Self(format!("{letter}{index}"))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = LabError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The role a node joined the swarm with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A raft member.
    Manager,
    /// Runs tasks only.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}

/// Folders and files of one lab under the labs' root folder.
#[derive(Debug, Clone)]
pub struct LabPaths {
    root: PathBuf,
    lab: LabName,
}

impl LabPaths {
    /// Paths of `lab` under `root`.
    pub fn new(root: impl Into<PathBuf>, lab: LabName) -> Self {
        Self {
            root: root.into(),
            lab,
        }
    }

    /// The lab this is about.
    pub fn lab(&self) -> &LabName {
        &self.lab
    }

    /// The labs' root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lab's own folder.
    pub fn dir(&self) -> PathBuf {
        self.root.join(self.lab.as_str())
    }

    /// The lab's state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir().join("lab.json")
    }

    /// One node's folder.
    pub fn node_dir(&self, node: &NodeName) -> PathBuf {
        self.dir().join(node.as_str())
    }

    /// Bind-mounted over `/run` inside the node.
    pub fn node_run(&self, node: &NodeName) -> PathBuf {
        self.node_dir(node).join("run")
    }

    /// Bind-mounted over `/var/lib/docker` inside the node.
    pub fn node_data(&self, node: &NodeName) -> PathBuf {
        self.node_dir(node).join("docker")
    }

    /// Bind-mounted over `/etc/docker` inside the node, so the host's `daemon.json` and
    /// engine key are not shared.
    pub fn node_etc(&self, node: &NodeName) -> PathBuf {
        self.node_dir(node).join("etc-docker")
    }

    /// The node's Docker socket as seen from the host.
    pub fn socket(&self, node: &NodeName) -> PathBuf {
        self.node_run(node).join("docker.sock")
    }

    /// The node's dockerd log.
    pub fn log(&self, node: &NodeName) -> PathBuf {
        self.node_dir(node).join("dockerd.log")
    }

    /// The script the node boots with.
    pub fn boot_script(&self, node: &NodeName) -> PathBuf {
        self.node_dir(node).join("boot.sh")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_reject_what_would_break_host_names() {
        assert!(LabName::new("lab").is_ok());
        assert!(LabName::new("ci-42").is_ok());
        for bad in ["", "-x", "Lab", "a_b", "a/b", "a.b", &"x".repeat(25)] {
            assert!(LabName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_names_must_start_with_a_letter_so_they_never_clash_with_the_bridge() {
        assert!(NodeName::new("m1").is_ok());
        assert!(NodeName::new("0br").is_err());
        assert!(NodeName::new("m-1").is_err());
        assert!(NodeName::new(&"m".repeat(13)).is_err());
    }

    #[test]
    fn unique_lab_names_are_valid_and_differ() {
        let a = LabName::unique("t");
        let b = LabName::unique("t");
        assert_ne!(a, b);
        assert!(LabName::new(a.as_str()).is_ok());
    }

    #[test]
    fn host_names_of_two_labs_never_share_a_prefix() {
        let a = LabName::new("a").unwrap();
        let ab = LabName::new("a-b").unwrap();
        let node = NodeName::new("m1").unwrap();
        assert!(!ab.node_host_name(&node).starts_with(&a.host_prefix()));
        assert_eq!(a.node_host_name(&node), "swc_a_m1");
        assert_eq!(a.bridge_netns(), "swc_a_0br");
    }

    #[test]
    fn socket_path_fits_a_unix_socket_address() {
        let lab = LabName::new(&"x".repeat(24)).unwrap();
        let node = NodeName::new(&"m".repeat(12)).unwrap();
        let path = LabPaths::new(DEFAULT_ROOT, lab).socket(&node);
        assert!(path.as_os_str().len() < 108, "{}", path.display());
    }
}
