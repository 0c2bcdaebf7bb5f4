//! The cluster as one manager sees it: `docker node ls`, plus addresses.

use std::fmt;

use bollard::models::{Node, NodeSpecRoleEnum};

/// One row of the node table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Swarm node ID.
    pub id: String,
    /// Hostname (the lab node name).
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    /// Manager reachability (`reachable`, `unreachable`, `unknown`); empty for workers.
    pub reachability: String,
    /// Whether this manager is the raft leader.
    pub leader: bool,
    /// The address the node reported.
    pub addr: String,
}

impl NodeRow {
    /// Whether this is a manager.
    pub fn is_manager(&self) -> bool {
        self.role == "manager"
    }

    /// Whether the node is Ready.
    pub fn is_ready(&self) -> bool {
        self.state == "ready"
    }

    /// Whether the node is a reachable manager.
    pub fn is_reachable_manager(&self) -> bool {
        self.is_manager() && self.reachability == "reachable"
    }

    /// Down and, for a manager, unreachable: what the lab calls "seen dead".
    pub fn is_down(&self) -> bool {
        self.state == "down" && (!self.is_manager() || self.reachability == "unreachable")
    }
}

impl From<&Node> for NodeRow {
    fn from(node: &Node) -> Self {
        let text = |v: Option<String>| v.unwrap_or_default();
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let manager = node.manager_status.as_ref();
        Self {
            id: text(node.id.clone()),
            hostname: text(node.description.as_ref().and_then(|d| d.hostname.clone())),
            role: match spec.and_then(|s| s.role) {
                Some(NodeSpecRoleEnum::MANAGER) => "manager".into(),
                Some(NodeSpecRoleEnum::WORKER) => "worker".into(),
                _ => String::new(),
            },
            state: text(status.and_then(|s| s.state).map(|s| s.to_string())),
            availability: text(spec.and_then(|s| s.availability).map(|a| a.to_string())),
            reachability: text(manager.and_then(|m| m.reachability).map(|r| r.to_string())),
            leader: manager.and_then(|m| m.leader).unwrap_or(false),
            addr: text(status.and_then(|s| s.addr.clone())),
        }
    }
}

/// All nodes, sorted by hostname.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTable {
    /// The rows.
    pub rows: Vec<NodeRow>,
}

impl NodeTable {
    /// A table of the given nodes, sorted by hostname then ID.
    pub fn new(nodes: &[Node]) -> Self {
        let mut rows: Vec<NodeRow> = nodes.iter().map(NodeRow::from).collect();
        rows.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
        Self { rows }
    }

    /// Rows with this hostname (a node that left and rejoined has two).
    pub fn by_hostname<'a>(&'a self, hostname: &'a str) -> impl Iterator<Item = &'a NodeRow> + 'a {
        self.rows.iter().filter(move |r| r.hostname == hostname)
    }

    /// The current row of a hostname: the one not Down if any, else the first.
    pub fn node<'a>(&'a self, hostname: &'a str) -> Option<&'a NodeRow> {
        self.by_hostname(hostname)
            .find(|r| r.state != "down")
            .or_else(|| self.by_hostname(hostname).next())
    }

    /// Managers in the raft.
    pub fn managers(&self) -> impl Iterator<Item = &NodeRow> {
        self.rows.iter().filter(|r| r.is_manager())
    }

    /// The raft leader, if one is known.
    pub fn leader(&self) -> Option<&NodeRow> {
        self.rows.iter().find(|r| r.leader)
    }
}

impl fmt::Display for NodeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<27} {:<9} {:<8} {:<8} {:<7} {:<12} ADDR",
            "ID", "HOSTNAME", "ROLE", "STATE", "AVAIL", "MANAGER"
        )?;
        for r in &self.rows {
            let manager = match (r.is_manager(), r.leader) {
                (_, true) => "leader".to_owned(),
                (true, false) => r.reachability.clone(),
                (false, _) => String::new(),
            };
            writeln!(
                f,
                "{:<27} {:<9} {:<8} {:<8} {:<7} {:<12} {}",
                r.id, r.hostname, r.role, r.state, r.availability, manager, r.addr
            )?;
        }
        Ok(())
    }
}
