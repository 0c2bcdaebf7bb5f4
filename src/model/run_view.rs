//! What one runbook step sees of the swarm right before it decides: read narrowly for the
//! one run (its service, that service's tasks, the run's current job), never a whole
//! snapshot. Plain data, so the step transitions stay pure and are tested without a daemon.

use super::Mount;

/// The run's view of the swarm, read for one transition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunView {
    /// The run's service, read by ID; `None` when it is gone.
    pub service: Option<ServiceView>,
    /// The run's current job (the job named by the journal's `pad_job` or `copy_job`
    /// fact); `None` when no job is recorded or no service of that name exists.
    pub job: Option<JobView>,
}

/// The run's service as the Engine returned it just now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceView {
    /// The replica count of its spec; `None` when it is not a replicated service.
    pub replicas: Option<u64>,
    /// The SHA-256 of its spec (see `observe::spec_hash`): a change by anyone shows here.
    pub spec_hash: String,
    /// Its tasks whose desired state is running and that run.
    pub running: usize,
    /// Its tasks that have not ended (state not `shutdown`, `complete`, `failed`,
    /// `rejected`, `orphaned` or `remove`) and are not counted in `running`, whatever their
    /// desired state: a container flushing through its `stop_grace_period`, a task on a
    /// node that does not answer, one still being created or started. Its container may
    /// run, or be about to.
    pub unsettled: usize,
    /// The mounts of its containers, in spec order.
    pub mounts: Vec<ObservedMount>,
    /// The IDs of the nodes its running tasks (counted in `running`) run on, sorted, each
    /// once.
    pub nodes: Vec<String>,
    /// Its placement constraints, as written in its spec.
    pub constraints: Vec<String>,
}

/// One mount of a service, with the Engine's own definition of it kept whole (JSON), so a
/// rollback can put back exactly what was there, fields this build does not model included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedMount {
    /// The mount as the planner models it.
    pub mount: Mount,
    /// The Engine's JSON of the mount (`Mount` of the Engine API), as read.
    pub spec: String,
}

/// A runbook job (a one-shot replicated job) and its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobView {
    /// The states of its tasks, in the Engine's list order.
    pub tasks: Vec<JobTaskState>,
}

/// Where one task of a runbook job stands, as far as a step cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTaskState {
    /// It ran to the end with exit code 0 (`complete`).
    Complete,
    /// It ended without completing (`failed`, `rejected`, `orphaned`).
    Failed,
    /// Anything else: not started yet, starting, running, shutting down.
    Active,
}

impl JobView {
    /// Some task completed.
    pub fn completed(&self) -> bool {
        self.tasks.contains(&JobTaskState::Complete)
    }

    /// Some task failed (a job's tasks are never restarted: one failure is the attempt's).
    pub fn failed(&self) -> bool {
        self.tasks.contains(&JobTaskState::Failed)
    }
}

impl ServiceView {
    /// The mount whose container path is `target`.
    pub fn mount_at(&self, target: &str) -> Option<&ObservedMount> {
        self.mounts.iter().find(|m| m.mount.target == target)
    }

    /// The first mount of volume `source`.
    pub fn mount_of(&self, source: &str) -> Option<&ObservedMount> {
        self.mounts.iter().find(|m| m.mount.source == source)
    }
}
