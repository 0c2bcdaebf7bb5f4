//! A lab's state file: what the CLI needs to find a lab again (its nodes, roles and
//! addresses, who owns it). Process state is never stored: it is read from the cgroups.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::Tree;

use crate::error::{LabError, Result};
use crate::names::{LabName, NodeName, Role};

/// Everything about a lab that cannot be read back from the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: LabName,
    /// First three octets of the lab's private /24.
    pub subnet: [u8; 3],
    /// Nodes in the order they were created.
    pub nodes: Vec<NodeRecord>,
    /// The process that tears the lab down when it ends; `None` for a lab left running on
    /// purpose (`swarm-chaos up`).
    pub owner: Option<Owner>,
    /// The partition in force, as given to `partition`.
    pub partition: Option<String>,
    /// The cgroup tree that holds the nodes (v1 for labs made before it was recorded).
    #[serde(default)]
    pub cgroup: Tree,
}

/// One node of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name and hostname.
    pub name: NodeName,
    /// The role it joined with (it may have been promoted or demoted since).
    pub role: Role,
    /// Its address on the lab network.
    pub addr: Ipv4Addr,
}

/// A process, identified robustly against PID reuse by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process ID.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

impl Owner {
    /// The current process.
    pub fn this_process() -> Option<Self> {
        let pid = std::process::id();
        start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// Whether that very process still runs.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl LabState {
    /// A lab with no nodes yet on the given subnet.
    pub fn new(name: LabName, subnet: [u8; 3], owner: Option<Owner>) -> Self {
        Self {
            name,
            subnet,
            nodes: Vec::new(),
            owner,
            partition: None,
            cgroup: Tree::default(),
        }
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(LabError::io("read lab state", path))?;
        serde_json::from_str(&text).map_err(|source| LabError::State {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the state file atomically (write then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| LabError::State {
            path: path.to_owned(),
            source,
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(LabError::io("write lab state", &tmp))?;
        std::fs::rename(&tmp, path).map_err(LabError::io("write lab state", path))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeRecord> {
        self.nodes
            .iter()
            .find(|n| n.name.as_str() == name)
            .ok_or_else(|| {
                LabError::Usage(format!(
                    "lab {} has no node {name:?} (nodes: {})",
                    self.name,
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Adds a node with the next free address of its role's range (managers from .11,
    /// workers from .101), so `m2` is at .12 and `w1` at .101 in a fresh lab.
    pub fn add_node(&mut self, name: NodeName, role: Role) -> Result<NodeRecord> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(LabError::Usage(format!(
                "lab {} already has a node {name}",
                self.name
            )));
        }
        let base: u8 = match role {
            Role::Manager => 11,
            Role::Worker => 101,
        };
        let used: Vec<Ipv4Addr> = self.nodes.iter().map(|n| n.addr).collect();
        let [a, b, c] = self.subnet;
        let addr = (base..=254)
            .chain(11..base)
            .map(|host| Ipv4Addr::new(a, b, c, host))
            .find(|addr| !used.contains(addr))
            .ok_or_else(|| {
                LabError::Usage(format!("lab {} has no free address left", self.name))
            })?;
        let record = NodeRecord { name, role, addr };
        self.nodes.push(record.clone());
        Ok(record)
    }
}

/// Picks the lab's /24 inside 172.29.0.0/16 from its name, skipping those of other labs
/// under `root`. Addresses only exist inside the lab's own namespaces, so this is for
/// readability of mixed logs, not for isolation.
pub fn pick_subnet(root: &Path, name: &LabName) -> [u8; 3] {
    let taken: Vec<[u8; 3]> = list_labs(root)
        .iter()
        .filter_map(|lab| LabState::load(&root.join(lab.as_str()).join("lab.json")).ok())
        .map(|s| s.subnet)
        .collect();
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let hash = name.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (0..256u32)
        .map(|i| [172, 29, ((hash + i) % 256) as u8])
        .find(|s| !taken.contains(s))
        .unwrap_or([172, 29, (hash % 256) as u8])
}

/// Names of the labs that have a folder under `root`.
pub fn list_labs(root: &Path) -> Vec<LabName> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut labs: Vec<LabName> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| LabName::new(&n).ok())
        .collect();
    labs.sort();
    labs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> LabState {
        LabState::new(LabName::new("t").unwrap(), [172, 29, 7], None)
    }

    #[test]
    fn nodes_get_addresses_by_role_in_creation_order() {
        let mut s = lab();
        let m1 = s
            .add_node(NodeName::new("m1").unwrap(), Role::Manager)
            .unwrap();
        let w1 = s
            .add_node(NodeName::new("w1").unwrap(), Role::Worker)
            .unwrap();
        let m2 = s
            .add_node(NodeName::new("m2").unwrap(), Role::Manager)
            .unwrap();
        assert_eq!(m1.addr, Ipv4Addr::new(172, 29, 7, 11));
        assert_eq!(m2.addr, Ipv4Addr::new(172, 29, 7, 12));
        assert_eq!(w1.addr, Ipv4Addr::new(172, 29, 7, 101));
    }

    #[test]
    fn a_node_name_is_taken_only_once() {
        let mut s = lab();
        s.add_node(NodeName::new("m1").unwrap(), Role::Manager)
            .unwrap();
        assert!(s
            .add_node(NodeName::new("m1").unwrap(), Role::Worker)
            .is_err());
    }

    #[test]
    fn the_current_process_is_alive_and_a_made_up_one_is_not() {
        let me = Owner::this_process().unwrap();
        assert!(me.is_alive());
        let other = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_alive(),
            "same PID, other start time: PID was reused"
        );
    }

    #[test]
    fn state_survives_a_round_trip_through_its_file() {
        let dir = std::env::temp_dir().join(format!("swc-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = lab();
        s.add_node(NodeName::new("m1").unwrap(), Role::Manager)
            .unwrap();
        s.save(&dir.join("lab.json")).unwrap();
        let back = LabState::load(&dir.join("lab.json")).unwrap();
        assert_eq!(back.nodes, s.nodes);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
