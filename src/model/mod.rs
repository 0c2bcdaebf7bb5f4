//! What one reconcile observed: plain data, no Docker client types, so the planner and its
//! tests never need a daemon.

use std::collections::BTreeMap;
use std::time::SystemTime;

pub mod journal;
pub mod run_view;
pub mod stored;

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
    /// Tasks that should be running: those on managers, those of services that reserve
    /// resources and those of services with watched volumes.
    pub tasks: Vec<Task>,
    /// Telemetry of the watched EFS volumes (from Prometheus).
    pub telemetry: Vec<VolumeTelemetry>,
    /// Runbook journals stored in the swarm.
    pub runbooks: Vec<journal::Journal>,
    /// What of the runbook journals could not be read.
    pub runbook_problems: RunbookProblems,
    /// Placement fixes in flight, recorded in the swarm before their write.
    pub placement_records: PlacementRecords,
}

/// Runbook journals that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunbookProblems {
    /// Configs marked as journals whose journal cannot be read: left alone, reported;
    /// their volumes get no new run.
    pub unreadable: Vec<journal::UnreadableJournal>,
    /// Why the journals could not be listed, if they could not: no run starts (one could
    /// be in flight), the rest of the reconcile goes on.
    pub error: Option<String>,
}

/// What the swarm holds of placement fixes in flight.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementRecords {
    /// The readable records.
    pub records: Vec<PlacementRecord>,
    /// Configs marked as records whose labels cannot be read (names): left alone,
    /// reported.
    pub unreadable: Vec<String>,
    /// Why the records could not be listed, if they could not: placement then writes
    /// nothing (a fix in flight could be missed), the rest of the reconcile goes on.
    pub error: Option<String>,
}

/// A placement fix in flight, as recorded in the swarm (a Swarm config) right before the
/// service was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// The config holding the record.
    pub config_id: String,
    /// The service.
    pub service_id: String,
    /// Its name then.
    pub service_name: String,
    /// Hash of the spec written ([`Service::spec_hash`]).
    pub spec_hash: String,
    /// When it was written, by the writer's clock.
    pub written_at: SystemTime,
}

/// What Prometheus says about one EFS file system.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeTelemetry {
    /// File-system ID.
    pub efs_id: String,
    /// Burst credit balance, bytes.
    pub credits: Option<f64>,
    /// Permitted throughput, bytes/s.
    pub permitted: Option<f64>,
    /// Metered throughput, bytes/s.
    pub metered_rate: Option<f64>,
    /// Metered size, bytes.
    pub storage: Option<f64>,
    /// I/O wait (0..1) by node hostname, where node_exporter data exists.
    pub iowait: BTreeMap<String, f64>,
    /// Why some quantity is missing.
    pub error: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// Operating system and architecture the node reports.
    pub platform: Platform,
    /// CPU and memory the node offers to reservations.
    pub resources: Resources,
    /// Labels of the node's Docker Engine (`engine.labels.*` constraints).
    pub engine_labels: BTreeMap<String, String>,
    /// Generic resources the node offers (`--node-generic-resource`), by kind: a discrete
    /// count, or the number of named resources of that kind.
    pub generic_resources: BTreeMap<String, i64>,
    /// Plugins the node's Engine reports (`Description.Engine.Plugins`); empty when it
    /// reports none, which the capacity check reads as "unknown", not "none".
    pub plugins: Vec<EnginePlugin>,
}

/// A plugin an Engine has: SwarmKit's plugin filter needs the volume and log drivers a
/// task uses on the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnginePlugin {
    /// `Volume`, `Network`, `Log`, ... as the Engine spells it.
    pub kind: String,
    /// `local`, `json-file`, `rexray/ebs`, ...
    pub name: String,
}

/// An OS / architecture pair, as nodes report it and services may require it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    /// `linux`, `windows`; empty when unknown or unconstrained.
    pub os: String,
    /// `x86_64`, `amd64`, `aarch64`, ...; empty when unknown or unconstrained.
    pub architecture: String,
}

/// CPU (in billionths of a CPU) and memory (bytes), as Swarm counts reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// CPU in units of 10^-9 CPUs.
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
}

impl Resources {
    /// Whether nothing is reserved.
    pub fn is_zero(&self) -> bool {
        self.nano_cpus <= 0 && self.memory_bytes <= 0
    }
}

/// A raft member's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerStatus {
    /// Whether this manager is the leader.
    pub leader: bool,
    /// Whether the leader can reach it.
    pub reachability: Reachability,
    /// The raft address it was admitted with (`ManagerStatus.Addr`, `host:2377`); two
    /// members with one address mean a rebuilt host rejoined where the old member was.
    pub addr: String,
}

/// `Spec.Role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// A manager (or being promoted).
    Manager,
    /// A worker (or being demoted).
    #[default]
    Worker,
}

/// `Spec.Availability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Availability {
    /// Takes tasks.
    #[default]
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Tasks moved away.
    Drain,
}

/// `Status.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeState {
    /// Not heard from since a leader change.
    #[default]
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

    /// Down while the raft calls it reachable: the two signals disagree (a rebuilt host
    /// answering on the old member's raft address looks like this).
    pub fn is_down_but_reachable(&self) -> bool {
        self.state == NodeState::Down
            && self
                .manager
                .as_ref()
                .is_some_and(|m| !m.leader && m.reachability == Reachability::Reachable)
    }

    /// Role manager in its spec but no raft membership: a promotion under way (Ready), a
    /// promotion that never joined the raft, or a manager `--force-new-cluster` left out.
    pub fn is_manager_outside_raft(&self) -> bool {
        self.role == Role::Manager && self.manager.is_none()
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    /// The image, as written in the spec.
    pub image: String,
    /// CPU and memory each task reserves.
    pub reservations: Resources,
    /// Most tasks of this service per node; 0 = no limit.
    pub max_replicas_per_node: u64,
    /// Platforms the image runs on; empty = any.
    pub platforms: Vec<Platform>,
    /// The state of its latest rolling update, if it had one.
    pub update: Option<UpdateStatus>,
    /// Its mounts.
    pub mounts: Vec<Mount>,
    /// Labels of its containers (`--container-label`), not of the service.
    pub container_labels: BTreeMap<String, String>,
    /// Ports published in host mode with a fixed published port: SwarmKit's port filter
    /// lets one task per node bind each.
    pub host_ports: Vec<HostPort>,
    /// Generic resources each task reserves (`--generic-resource`), by kind.
    pub generic_reservations: BTreeMap<String, i64>,
    /// The log driver its tasks use, when the spec names one.
    pub log_driver: Option<String>,
    /// SHA-256 (hex) of its spec in canonical JSON: equal hashes, equal specs. Tells a spec
    /// swarm-warden wrote (or rolled back to) from one changed since.
    pub spec_hash: String,
}

/// A port published in host mode (`--publish mode=host,published=P`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The published port on the node.
    pub port: u32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// A mount of a service's containers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, ...
    pub kind: String,
    /// Volume name or host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Volume driver (`local` when empty).
    pub driver: String,
    /// Volume driver options (`type=nfs`, `device=...`).
    pub driver_options: BTreeMap<String, String>,
    /// Volume labels (`swarm-warden.*` settings).
    pub labels: BTreeMap<String, String>,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// Where a service's rolling update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    /// The update's state.
    pub state: UpdateState,
    /// What SwarmKit said about it.
    pub message: String,
    /// When it started, by the raft leader's clock.
    pub started_at: Option<SystemTime>,
}

/// `UpdateStatus.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    /// Tasks are being replaced.
    Updating,
    /// Stopped after failures (`update_config.failure_action: pause`).
    Paused,
    /// Done.
    Completed,
    /// Rolling back.
    RollbackStarted,
    /// Rollback stopped after failures.
    RollbackPaused,
    /// Rolled back to the previous spec.
    RollbackCompleted,
}

/// Label `docker stack deploy` puts on the services of a stack.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

impl Service {
    /// The stack the service belongs to, if it was deployed with `docker stack deploy`.
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(STACK_LABEL).map(String::as_str)
    }

    /// How many tasks must run at once: replicas, or a job's concurrency.
    pub fn concurrent_tasks(&self) -> Option<u64> {
        match self.mode {
            ServiceMode::Replicated { replicas } => Some(replicas),
            ServiceMode::ReplicatedJob { max_concurrent } => Some(max_concurrent),
            ServiceMode::Global | ServiceMode::GlobalJob => None,
        }
    }
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
    ReplicatedJob {
        /// Tasks running at once.
        max_concurrent: u64,
    },
    /// Run to completion on every eligible node.
    GlobalJob,
}

impl Default for ServiceMode {
    /// Docker's default: one replica.
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

impl ServiceMode {
    /// A job (replicated or global): its tasks run to completion, and any spec update
    /// starts a new job iteration, running it again.
    pub fn is_job(self) -> bool {
        matches!(
            self,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
        )
    }
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
