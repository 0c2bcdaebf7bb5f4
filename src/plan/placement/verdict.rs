//! What placement concluded about a service, with typed reasons: reports render them,
//! tests and metrics match on them.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::model::UpdateState;
use crate::plan::human;

use super::intent::Exemption;

/// A service as actions and reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Service ID.
    pub id: String,
    /// Service name.
    pub name: String,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Where a service stands with respect to managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementStatus {
    /// No manager can run its tasks.
    Compliant,
    /// May run on managers, and why.
    Exempt(Exemption),
    /// May run on managers and should not; a fix is planned.
    Violating,
    /// May run on managers, and placement leaves it so: why.
    Blocked(Hold),
    /// No node at all satisfies its constraints: its tasks stay Pending. The finding says
    /// why.
    Unschedulable(String),
}

impl PlacementStatus {
    /// The status as reports name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlacementStatus::Compliant => "compliant",
            PlacementStatus::Exempt(_) => "exempt",
            PlacementStatus::Violating => "violating",
            PlacementStatus::Blocked(_) => "blocked",
            PlacementStatus::Unschedulable(_) => "unschedulable",
        }
    }

    /// A stable code for the reason, for machines (`None` for compliant and violating).
    pub fn reason_code(&self) -> Option<&'static str> {
        match self {
            PlacementStatus::Exempt(e) => Some(e.code()),
            PlacementStatus::Blocked(h) => Some(h.code()),
            PlacementStatus::Unschedulable(_) => Some("constraint-matches-no-node"),
            PlacementStatus::Compliant | PlacementStatus::Violating => None,
        }
    }

    /// The reason, for people.
    pub fn reason(&self) -> Option<String> {
        match self {
            PlacementStatus::Exempt(e) => Some(e.to_string()),
            PlacementStatus::Blocked(h) => Some(h.to_string()),
            PlacementStatus::Unschedulable(why) => Some(why.clone()),
            PlacementStatus::Compliant | PlacementStatus::Violating => None,
        }
    }
}

/// Why placement does not (now) add the constraint to a service that may run on managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// A job: any spec update starts a new job iteration, running it again.
    Job,
    /// Its data would stay behind: the node-local mounts, described.
    NodeLocalData(Vec<String>),
    /// A `swarm-warden.*` label it carries cannot be read.
    LabelUnreadable {
        /// The label.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Its constraints cannot be parsed.
    ConstraintsUnreadable(String),
    /// `placement.mode: audit`.
    Audit,
    /// The records of fixes in flight could not be listed: no write this round.
    RecordsUnknown(String),
    /// The manager swarm-warden talks to is not a reachable raft member.
    LocalNotReachable,
    /// A rolling update (or rollback) of the service is running.
    UpdateInProgress(UpdateState),
    /// Its last update or rollback paused.
    UpdatePaused {
        /// `Paused` or `RollbackPaused`.
        state: UpdateState,
        /// What SwarmKit said.
        message: String,
    },
    /// Its last update was rolled back (by swarm-warden after a fix that did not converge,
    /// by SwarmKit's `failure_action: rollback`, or by hand); not tried again until the
    /// service is updated again or a worker joins.
    RolledBack {
        /// What SwarmKit said.
        message: String,
        /// The command to add the constraint by hand once workers can run it.
        cli: String,
    },
    /// Workers cannot host it: the numbers.
    Capacity(String),
    /// It lost the constraint again after a fix; the `nth` fix waits `wait`.
    DriftBackoff {
        /// Which fix this would be.
        nth: u32,
        /// How long it still waits.
        wait: Duration,
    },
    /// `placement.max_updates_per_cycle` reached.
    Budget(usize),
}

impl Hold {
    /// A stable code for machines (the JSON report's `reason_code`).
    pub fn code(&self) -> &'static str {
        match self {
            Hold::Job => "job",
            Hold::NodeLocalData(_) => "node-local-data",
            Hold::LabelUnreadable { .. } => "label-unreadable",
            Hold::ConstraintsUnreadable(_) => "constraints-unreadable",
            Hold::Audit => "audit",
            Hold::RecordsUnknown(_) => "records-unknown",
            Hold::LocalNotReachable => "local-manager-not-reachable",
            Hold::UpdateInProgress(_) => "update-in-progress",
            Hold::UpdatePaused { .. } => "update-paused",
            Hold::RolledBack { .. } => "rolled-back",
            Hold::Capacity(_) => "capacity",
            Hold::DriftBackoff { .. } => "drift-backoff",
            Hold::Budget(_) => "budget",
        }
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Job => f.write_str(
                "A job: updating its spec starts a new job iteration and runs it again; add the constraint to its definition.",
            ),
            Hold::NodeLocalData(mounts) => write!(
                f,
                "It keeps node-local data ({}); moving it would leave the data behind. Mark it {}=disposable to allow the move.",
                mounts.join("; "),
                super::DATA_LABEL
            ),
            Hold::LabelUnreadable { key, value } => {
                write!(f, "Its label {key}={value:?} cannot be read.")
            }
            Hold::ConstraintsUnreadable(error) => {
                write!(f, "Its constraints cannot be read: {error}.")
            }
            Hold::Audit => f.write_str("placement.mode is audit: report only."),
            Hold::RecordsUnknown(error) => write!(
                f,
                "Placement records could not be read ({error}): no placement write this round."
            ),
            Hold::LocalNotReachable => f.write_str(
                "This manager is not a reachable raft member: it may be cut off in a minority.",
            ),
            Hold::UpdateInProgress(state) => write!(
                f,
                "A rolling update of the service is in progress ({state:?}): waiting for it to finish."
            ),
            Hold::UpdatePaused { state, message } => write!(
                f,
                "Its last update is {state:?}: \"{message}\". Resolve that first (docker service update / rollback)."
            ),
            Hold::RolledBack { message, cli } => write!(
                f,
                "Its last update was rolled back (\"{message}\"): not tried again until the service is updated or a worker joins. Once workers can run it: {cli}"
            ),
            Hold::Capacity(why) => f.write_str(why),
            Hold::DriftBackoff { nth, wait } => write!(
                f,
                "It lost the constraint again after swarm-warden added it: fix #{nth} waits {} (backoff against a redeploy loop).",
                human(*wait)
            ),
            Hold::Budget(max) => write!(
                f,
                "placement.max_updates_per_cycle ({max}) reached for this cycle."
            ),
        }
    }
}

/// A task on a manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOnManager {
    /// Task ID.
    pub task_id: String,
    /// The manager's node ID.
    pub node_id: String,
    /// The manager's hostname.
    pub hostname: String,
}

/// The placement verdict for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlacement {
    /// The service.
    pub service: ServiceRef,
    /// Its stack, if deployed with `docker stack deploy`.
    pub stack: Option<String>,
    /// The verdict.
    pub status: PlacementStatus,
    /// Its tasks that should be running on managers right now.
    pub tasks_on_managers: Vec<TaskOnManager>,
}

/// What swarm-warden remembers of a placement fix it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementFix {
    /// When it was made.
    pub at: SystemTime,
    /// How many times the constraint had been lost again before this fix.
    pub drifts: u32,
}
