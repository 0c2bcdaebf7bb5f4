//! What one reconcile observed: plain data, no Docker client types, so the planner and its
//! tests never need a daemon.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Everything one reconcile knows about the swarm, read by list calls at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When the observation was made (the reconcile's clock, passed in).
    pub observed_at: SystemTime,
    /// The manager swarm-warden talks to.
    pub local: LocalNode,
    /// Whether that manager reached a raft leader (without one, lists fail).
    pub control: Control,
    /// Every node, when a leader answered; empty otherwise.
    pub nodes: Vec<Node>,
    /// Every service.
    pub services: Vec<Service>,
    /// Tasks that should be running on manager nodes (the only ones the planner needs).
    pub tasks: Vec<Task>,
}

/// The manager swarm-warden's Docker API belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalNode {
    /// Its swarm node ID.
    pub node_id: String,
    /// The address it advertises.
    pub addr: String,
}

/// Whether the local manager could reach a raft leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A leader answered: node and service lists are complete.
    Leader,
    /// No leader answered. Either the swarm lost quorum or this manager is in a minority.
    NoLeader {
        /// What the Engine said.
        error: String,
    },
}

/// A swarm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node ID.
    pub id: String,
    /// Object version, for optimistic-concurrency updates.
    pub version: u64,
    /// Hostname reported by the node.
    pub hostname: String,
    /// `Spec.Name`, kept so updates write the spec back unchanged.
    pub spec_name: Option<String>,
    /// Desired role (`Spec.Role`).
    pub role: Role,
    /// Scheduling availability.
    pub availability: Availability,
    /// Status as the dispatcher sees it.
    pub state: NodeState,
    /// Status message (`heartbeat failure`, ...).
    pub message: String,
    /// Status address.
    pub addr: String,
    /// Raft membership; `None` for workers.
    pub manager: Option<ManagerStatus>,
    /// Node labels (`Spec.Labels`).
    pub labels: BTreeMap<String, String>,
    /// Last change of the node object: status changes move it, so it bounds how long the
    /// current state has lasted (from below).
    pub updated_at: Option<SystemTime>,
}

/// A raft member's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerStatus {
    /// Whether this manager is the leader.
    pub leader: bool,
    /// Whether the leader can reach it.
    pub reachability: Reachability,
}

/// `Spec.Role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A manager (or being promoted).
    Manager,
    /// A worker (or being demoted).
    Worker,
}

/// `Spec.Availability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Takes tasks.
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Tasks moved away.
    Drain,
}

/// `Status.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not heard from since a leader change.
    Unknown,
    /// Missed its heartbeats.
    Down,
    /// Healthy.
    Ready,
    /// Left the swarm.
    Disconnected,
}

/// `ManagerStatus.Reachability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet.
    Unknown,
    /// The leader cannot reach it.
    Unreachable,
    /// The leader reaches it.
    Reachable,
}

impl Node {
    /// Whether the node is a raft member (has a manager status).
    pub fn is_manager(&self) -> bool {
        self.manager.is_some()
    }

    /// Whether this is the raft leader.
    pub fn is_leader(&self) -> bool {
        self.manager.as_ref().is_some_and(|m| m.leader)
    }

    /// A raft member the leader can reach (the leader itself included).
    pub fn is_reachable_manager(&self) -> bool {
        self.manager
            .as_ref()
            .is_some_and(|m| m.leader || m.reachability == Reachability::Reachable)
    }

    /// Down and, as a manager, unreachable: what a dead manager looks like right now.
    pub fn is_down_and_unreachable(&self) -> bool {
        self.state == NodeState::Down
            && self
                .manager
                .as_ref()
                .is_some_and(|m| !m.leader && m.reachability == Reachability::Unreachable)
    }

    /// Positive evidence that the node is alive.
    pub fn shows_life(&self) -> bool {
        self.state == NodeState::Ready || self.is_reachable_manager()
    }

    /// A label value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A service, with what placement decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Service ID.
    pub id: String,
    /// Object version, for optimistic-concurrency updates.
    pub version: u64,
    /// Service name.
    pub name: String,
    /// Service labels.
    pub labels: BTreeMap<String, String>,
    /// Replicated, global, or a job.
    pub mode: ServiceMode,
    /// Placement constraints, as written.
    pub constraints: Vec<String>,
}

/// How a service schedules its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// A fixed number of tasks.
    Replicated {
        /// Desired tasks.
        replicas: u64,
    },
    /// One task per eligible node.
    Global,
    /// Run to completion, a number of times.
    ReplicatedJob,
    /// Run to completion on every eligible node.
    GlobalJob,
}

/// A task that should be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Task ID.
    pub id: String,
    /// Its service.
    pub service_id: String,
    /// The node it is assigned to.
    pub node_id: Option<String>,
    /// Its current state (`running`, `pending`, ...).
    pub state: String,
}

/// Raft arithmetic: the majority needed out of `members`.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }
}
