//! The planner: pure functions from what was observed (and remembered) to findings and
//! actions, each with its reason. No I/O and no clock reads: the time is passed in.

pub mod block;
pub mod constraint;
mod memory;
mod migrated;
pub(crate) mod placement;
mod quorum;
pub mod readings;
pub mod volumes;

#[cfg(test)]
pub(crate) use quorum::tests as quorum_test_support;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use block::{Block, BlockKind};
pub use memory::{Handoff, Memory};
pub use placement::{
    classify, compose_snippet, node_local_data, parse_bool, pauses_an_update,
    services_needing_tasks, strands, worker_set, Exemption, Hold, Locality, MountData,
    PlacementFix, PlacementStatus, ServicePlacement, ServiceRef, TaskOnManager,
    ALLOW_MANAGERS_LABEL, DATA_LABEL, SELF_LABEL,
};
pub use quorum::{can_remove_member, ClusterSummary, DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL};

use crate::config::Policy;
use crate::model::Snapshot;

/// What the planner concluded from one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Raft arithmetic of the observed cluster; `None` when no leader answered.
    pub cluster: Option<ClusterSummary>,
    /// What is wrong or worth knowing.
    pub findings: Vec<Finding>,
    /// What to do about it, in order; at most one membership change is `planned`.
    pub actions: Vec<PlannedAction>,
    /// The placement verdict of every service (empty when placement is off).
    pub services: Vec<ServicePlacement>,
    /// The watched EFS volume mounts (empty when volumes are off), for the report.
    pub volumes: Vec<volumes::Watched>,
    /// `managers.desired`: the raft size the policy aims for, for the report.
    pub desired_managers: usize,
    /// When a reconcile should run again even if nothing happens (a manager crosses
    /// `dead_after`, a settle period ends).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Actions that may be carried out now.
    pub fn runnable(&self) -> impl Iterator<Item = &PlannedAction> {
        self.actions
            .iter()
            .filter(|a| a.status == ActionStatus::Planned)
    }

    fn requeue_at_most(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// Plans everything the policy enables for one snapshot.
pub fn plan(snapshot: &Snapshot, policy: &Policy, memory: &Memory, now: SystemTime) -> Plan {
    let mut plan = Plan {
        cluster: ClusterSummary::of(snapshot),
        findings: Vec::new(),
        actions: Vec::new(),
        services: Vec::new(),
        volumes: Vec::new(),
        desired_managers: policy.managers.desired.get(),
        requeue_after: None,
    };
    quorum::plan_managers(
        snapshot,
        &policy.managers,
        &policy.placement,
        memory,
        now,
        &mut plan,
    );
    placement::plan_placement(snapshot, policy, memory, now, &mut plan);
    volumes::plan_volumes(snapshot, policy, memory, now, &mut plan);
    plan
}

/// A node as actions and findings name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    /// Node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hostname, short_id(&self.id))
    }
}

/// The first 12 characters of an ID, as the docker CLI prints them.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A change swarm-warden can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Demote a dead manager, wait until it left the raft, then `node rm --force` it.
    RemoveDeadManager(NodeRef),
    /// Promote a healthy worker to manager.
    PromoteWorker(NodeRef),
    /// Add `node.role != manager` to a service's placement constraints.
    EnforcePlacement(ServiceRef),
    /// Roll a stuck placement fix back to the service's previous spec (one a process that
    /// died or stopped left in flight).
    RollBackPlacement(ServiceRef),
    /// Remove the record of a placement fix that is over (converged, or its spec changed).
    ClearPlacementRecord {
        /// The service.
        service: ServiceRef,
        /// The config holding the record.
        config_id: String,
    },
    /// Start a remediation runbook for a watched volume.
    StartRunbook {
        /// Which runbook.
        kind: crate::model::journal::RunbookKind,
        /// The EFS file system.
        efs_id: String,
        /// The service using it.
        service: ServiceRef,
        /// The volume (mount source).
        volume: String,
    },
}

impl Action {
    /// The kind, as reports and metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::RemoveDeadManager(_) => "remove-dead-manager",
            Action::PromoteWorker(_) => "promote-worker",
            Action::EnforcePlacement(_) => "enforce-placement",
            Action::RollBackPlacement(_) => "roll-back-placement",
            Action::ClearPlacementRecord { .. } => "clear-placement-record",
            Action::StartRunbook { kind, .. } => kind.as_str(),
        }
    }

    /// What the action changes, as reports name it: a node ID, or a service name.
    pub fn target(&self) -> &str {
        match self {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => &n.id,
            Action::EnforcePlacement(s) | Action::RollBackPlacement(s) => &s.name,
            Action::ClearPlacementRecord { service, .. } => &service.name,
            Action::StartRunbook { efs_id, .. } => efs_id,
        }
    }

    /// A readable name of the target: hostname or service name.
    pub fn target_name(&self) -> &str {
        match self {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => &n.hostname,
            Action::EnforcePlacement(s) | Action::RollBackPlacement(s) => &s.name,
            Action::ClearPlacementRecord { service, .. } => &service.name,
            Action::StartRunbook { volume, .. } => volume,
        }
    }

    /// Identifies the action across reconciles (for backoff and re-checks), by object ID.
    pub fn key(&self) -> String {
        let id = match self {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => &n.id,
            Action::EnforcePlacement(s) | Action::RollBackPlacement(s) => &s.id,
            Action::ClearPlacementRecord { service, .. } => &service.id,
            Action::StartRunbook { efs_id, .. } => efs_id,
        };
        format!("{}/{id}", self.kind())
    }

    /// Whether the action changes raft membership (one such change at a time).
    pub fn is_membership_change(&self) -> bool {
        matches!(
            self,
            Action::RemoveDeadManager(_) | Action::PromoteWorker(_)
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => {
                write!(f, "{} {n}", self.kind())
            }
            Action::EnforcePlacement(s) | Action::RollBackPlacement(s) => {
                write!(f, "{} {s}", self.kind())
            }
            Action::ClearPlacementRecord { service, .. } => {
                write!(f, "{} {service}", self.kind())
            }
            Action::StartRunbook {
                efs_id, service, ..
            } => write!(f, "{} {efs_id} ({service})", self.kind()),
        }
    }
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    /// Would be (or is about to be) carried out.
    Planned,
    /// A guard stops it; `blocked_by` says which.
    Blocked,
    /// Written, and still converging (a node leaving the raft, a rolling update): the
    /// loop goes on meanwhile, and a later reconcile reports how it ended.
    InProgress,
    /// Carried out and converged.
    Done,
    /// Tried and failed; `detail` says why.
    Failed,
    /// Carried out, did not converge, and was undone (a placement update rolled back to
    /// the previous spec); `detail` says why.
    RolledBack,
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActionStatus::Planned => "planned",
            ActionStatus::Blocked => "blocked",
            ActionStatus::InProgress => "in-progress",
            ActionStatus::Done => "done",
            ActionStatus::Failed => "failed",
            ActionStatus::RolledBack => "rolled-back",
        })
    }
}

/// An action with why it is wanted and whether it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    /// The change.
    pub action: Action,
    /// Why it is wanted.
    pub reason: String,
    /// Where it stands.
    pub status: ActionStatus,
    /// The guard that stops it, when blocked.
    pub blocked_by: Option<Block>,
    /// What happened when it was carried out (or why it was not).
    pub detail: Option<String>,
}

impl PlannedAction {
    /// What blocks it, for people (`None` when nothing does).
    pub fn blocked_message(&self) -> Option<&str> {
        self.blocked_by.as_ref().map(|b| b.message.as_str())
    }

    /// What kind of reason blocks it.
    pub fn blocked_kind(&self) -> Option<BlockKind> {
        self.blocked_by.as_ref().map(|b| b.kind)
    }

    /// An action planned for `reason`: blocked when `blocked_by` says why.
    pub fn new(action: Action, reason: String, blocked_by: Option<Block>) -> Self {
        Self {
            action,
            reason,
            status: if blocked_by.is_some() {
                ActionStatus::Blocked
            } else {
                ActionStatus::Planned
            },
            blocked_by,
            detail: None,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The severity as reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Kinds of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A manager has been Down and unreachable for at least `dead_after`.
    DeadManager,
    /// A manager is unreachable but not (yet) dead.
    ManagerUnreachable,
    /// No raft leader reachable: quorum lost, or this manager is in a minority.
    QuorumLost,
    /// An even number of managers tolerates no more failures than one fewer.
    EvenManagerCount,
    /// Losing one more manager would lose quorum.
    NoFaultTolerance,
    /// Fewer raft members than `managers.desired`.
    ManagersBelowDesired,
    /// More raft members than `managers.desired` (never reduced automatically).
    ManagersAboveDesired,
    /// A promotion is wanted but no worker qualifies.
    NoPromotionCandidate,
    /// A promotion swarm-warden made never joined the raft: the node is role manager, no
    /// raft member, and not Ready. SwarmKit cannot demote it back; it is left in place and
    /// no other worker is promoted until it is resolved.
    PromotionFailed,
    /// A node in promotion (role manager, Ready, not yet a raft member): no other
    /// membership change until it converges.
    PromotionInProgress,
    /// Role manager, no raft membership, not Ready, and not a promotion of swarm-warden's:
    /// a manager `--force-new-cluster` left out (or someone else's failed promotion);
    /// removed by ID once Down for `dead_after`.
    ExManager,
    /// A Down manager the raft calls reachable because a live manager holds its raft
    /// address (a rebuilt host rejoined there): counted unreachable, removed by ID after
    /// `dead_after`.
    GhostManager,
    /// A manager is Down while the raft calls it reachable, with no evidence either way:
    /// counted unreachable, never removed on that alone.
    ManagerStatusDisagrees,
    /// Two node entries share a hostname (a rebuilt host rejoined under its old name).
    DuplicateHostname,
    /// A dead manager swarm-warden demoted is still in the node list (a process stopped
    /// between the demotion and the `node rm`): the removal is finished, or, if the node is
    /// Ready again, left alone and reported.
    RemovalUnfinished,
    /// A workload service may run (or runs) on managers.
    WorkloadOnManager,
    /// A stack service lost the constraint swarm-warden added (a stack deploy overwrote it).
    StackDrift,
    /// A service with node-local data (local volumes, bind mounts) runs on a manager; it is
    /// never moved automatically.
    StatefulOnManager,
    /// A job may run on managers; jobs are never updated (an update runs them again).
    JobOnManager,
    /// No node satisfies a service's constraints: its tasks stay Pending.
    ConstraintMatchesNoNode,
    /// A `swarm-warden.*` service label has a value swarm-warden cannot read.
    LabelValueInvalid,
    /// A `swarm-warden.*` label is set on a service's containers instead of the service.
    LabelOnContainers,
    /// A placement fix left in flight is stuck (paused, or updating past
    /// `placement.update_timeout`): it is rolled back.
    PlacementUpdateStuck,
    /// Placement records (fixes in flight) cannot be read or listed.
    PlacementRecordUnreadable,
    /// A service that does not support NFS keeps its data on an NFS/EFS volume.
    StatefulOnNfs,
    /// An EFS volume out of credits, running at its baseline, for a while.
    VolumeThrottled,
    /// An EFS volume will run out of credits soon.
    VolumeCreditsLow,
    /// A watched volume has no (complete) telemetry.
    VolumeTelemetryMissing,
    /// A runbook journal that cannot be read (or the journals could not be listed).
    RunbookJournalUnreadable,
    /// A run in flight that does not advance because `volumes.mode` is not `enforce`.
    RunbookPaused,
    /// A failed migration whose rollback left something for the operator.
    RunbookRollbackIncomplete,
    /// A migrated service whose mount or pin is no longer what its migration left.
    MigrationDrift,
}

impl FindingKind {
    /// The kind as reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DeadManager => "dead-manager",
            FindingKind::ManagerUnreachable => "manager-unreachable",
            FindingKind::QuorumLost => "quorum-lost",
            FindingKind::EvenManagerCount => "even-manager-count",
            FindingKind::NoFaultTolerance => "no-fault-tolerance",
            FindingKind::ManagersBelowDesired => "managers-below-desired",
            FindingKind::ManagersAboveDesired => "managers-above-desired",
            FindingKind::NoPromotionCandidate => "no-promotion-candidate",
            FindingKind::PromotionFailed => "promotion-failed",
            FindingKind::PromotionInProgress => "promotion-in-progress",
            FindingKind::ExManager => "ex-manager",
            FindingKind::GhostManager => "ghost-manager",
            FindingKind::ManagerStatusDisagrees => "manager-status-disagrees",
            FindingKind::DuplicateHostname => "duplicate-hostname",
            FindingKind::RemovalUnfinished => "removal-unfinished",
            FindingKind::WorkloadOnManager => "workload-on-manager",
            FindingKind::StackDrift => "stack-drift",
            FindingKind::StatefulOnManager => "stateful-on-manager",
            FindingKind::JobOnManager => "job-on-manager",
            FindingKind::ConstraintMatchesNoNode => "constraint-matches-no-node",
            FindingKind::LabelValueInvalid => "label-value-invalid",
            FindingKind::LabelOnContainers => "label-on-containers",
            FindingKind::PlacementUpdateStuck => "placement-update-stuck",
            FindingKind::PlacementRecordUnreadable => "placement-record-unreadable",
            FindingKind::StatefulOnNfs => "stateful-on-nfs",
            FindingKind::VolumeThrottled => "volume-throttled",
            FindingKind::VolumeCreditsLow => "volume-credits-low",
            FindingKind::VolumeTelemetryMissing => "volume-telemetry-missing",
            FindingKind::RunbookJournalUnreadable => "runbook-journal-unreadable",
            FindingKind::RunbookPaused => "runbook-paused",
            FindingKind::RunbookRollbackIncomplete => "runbook-rollback-incomplete",
            FindingKind::MigrationDrift => "migration-drift",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Something the planner noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// How bad.
    pub severity: Severity,
    /// What it is about (a node ID, or `cluster`).
    pub subject: String,
    /// The explanation, for people.
    pub message: String,
}

impl Finding {
    /// A finding about `subject`.
    pub fn new(kind: FindingKind, severity: Severity, subject: &str, message: String) -> Self {
        Self {
            kind,
            severity,
            subject: subject.to_owned(),
            message,
        }
    }
}

/// A duration as people read it, to the second.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
