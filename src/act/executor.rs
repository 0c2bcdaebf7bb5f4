//! Runs the runnable actions of a plan: re-plans on a fresh snapshot right before each
//! one (so every guard is checked against the cluster as it is now), writes, and waits for
//! the change to show in the node list before the next round may change anything.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoffs;
use super::inflight::InflightStore;
use crate::config::Policy;
use crate::lease::{Claim, Handover};
use crate::model::{Node, Role, Snapshot};
use crate::observe::{ObserveError, Observer};
use crate::plan::constraint::NOT_ON_MANAGERS;
use crate::plan::{
    self, human, Action, ActionStatus, Memory, Plan, PlannedAction, DEMOTED_FOR_REMOVAL_LABEL,
    PROMOTED_AT_LABEL,
};
use crate::writer::{WriteError, Writer};

/// How often convergence is polled.
const CONVERGENCE_POLL: Duration = Duration::from_secs(1);

/// Why an action did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The Engine refused or failed a write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The swarm could not be read while checking or waiting.
    #[error("could not observe the swarm: {0}")]
    Observe(#[from] ObserveError),
    /// The change did not show in the node list in time.
    #[error("{what} did not happen within {}", human(*after))]
    NotConverged {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A placement record could not be written.
    #[error("placement record: {0}")]
    Record(String),
    /// A runbook journal could not be written.
    #[error("runbook journal: {0}")]
    Runbook(String),
    /// A service's rolling update paused or rolled back.
    #[error("the rolling update of {service} ended {state}: {message}")]
    UpdateFailed {
        /// The service.
        service: String,
        /// `Paused`, `RollbackCompleted`, ...
        state: String,
        /// What SwarmKit said.
        message: String,
    },
    /// A placement update could not be seen to its end (reads failed): nothing was rolled
    /// back; its placement record stays for the next reconcile to judge on fresh reads.
    #[error("the placement update of {service} could not be seen to its end ({reason}); it is left as it is, and its placement record stays for the next reconcile")]
    Unobserved {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
    /// A placement update did not converge and was rolled back to the previous spec.
    #[error("the placement update of {service} was rolled back: {reason}")]
    RolledBack {
        /// The service.
        service: String,
        /// Why: the update's state and its tasks' errors.
        reason: String,
    },
    /// The lease did not carry a membership change before its first write: nothing was
    /// written (the next holder would not know to wait out its stabilization).
    #[error("the lease did not carry the membership change within {}: nothing written", human(*.0))]
    HandoffNotCarried(Duration),
    /// Shutdown was requested while waiting.
    #[error("interrupted by shutdown while waiting for {0}")]
    Interrupted(String),
}

/// Carries out plans against one swarm.
#[derive(Debug)]
pub struct Executor {
    pub(super) observer: Observer,
    pub(super) writer: Writer,
    /// Where placement fixes in flight are recorded.
    pub(super) records: InflightStore,
    dry_run: bool,
    /// The exchange of memory with the lease (none without a lease).
    handover: Option<Arc<Handover>>,
    backoffs: Backoffs,
    pub(super) cancel: CancellationToken,
}

impl Executor {
    /// An executor; in `dry_run` it records what it would do and writes nothing.
    pub fn new(
        observer: Observer,
        dry_run: bool,
        policy: &Policy,
        cancel: CancellationToken,
    ) -> Self {
        let writer = Writer::new(observer.docker().clone(), Claim::unconditional());
        let records = InflightStore::new(observer.docker().clone());
        Self {
            records,
            observer,
            writer,
            dry_run,
            handover: None,
            backoffs: Backoffs::new(policy.controller.backoff_min, policy.controller.backoff_max),
            cancel,
        }
    }

    /// Writes only under `claim` (checked right before every write); `handover` passes
    /// memory between lease holders.
    pub fn with_claim(mut self, claim: Claim, handover: Option<Arc<Handover>>) -> Self {
        self.writer = Writer::new(self.observer.docker().clone(), claim);
        self.handover = handover;
        self
    }

    /// The one writer, for the other parts that change the swarm (runbooks).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Changes when the lease is taken or lost.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.writer.claim().changes()
    }

    /// Adopts what the previous lease holder passed on (once, after a takeover) and
    /// publishes what this replica would pass on. Called after every observation, so the
    /// plan that follows already waits where the previous holder would have. Returns the
    /// publication's number (none without a lease).
    pub fn sync_handover(&self, memory: &mut Memory) -> Option<u64> {
        let handover = self.handover.as_ref()?;
        if let Some((previous, taken_at)) = handover.take_incoming() {
            tracing::info!(
                raft_leader = ?previous.raft_leader,
                last_membership_change = ?previous.last_membership_change,
                "Took over from the previous lease holder: keeping its settle and stabilization times"
            );
            memory.adopt(previous, taken_at);
        }
        Some(handover.publish(memory.handoff()))
    }

    /// Whether this replica may act now: it holds the lease and its claim has not run out
    /// on the local clock.
    pub fn is_leader(&self) -> bool {
        self.writer.claim().is_held()
    }

    /// Whether this executor only records.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Carries out every runnable action of `plan`, updating each one's status.
    pub async fn execute(&mut self, plan: &mut Plan, policy: &Policy, memory: &mut Memory) {
        for i in 0..plan.actions.len() {
            if plan.actions[i].status != ActionStatus::Planned {
                continue;
            }
            let key = plan.actions[i].action.key();
            let entry = &mut plan.actions[i];
            if self.dry_run {
                entry.detail = Some(format!("Dry run: would {}.", describe(&entry.action)));
                tracing::info!(action = %entry.action, reason = %entry.reason, "Dry run: not carrying out");
                continue;
            }
            if !self.is_leader() {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(
                    "Not the leader: another replica holds the lease; this one observes only."
                        .into(),
                );
                continue;
            }
            if let Some(wait) = self.backoffs.remaining(&key, Instant::now()) {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(format!(
                    "Backing off after a failure: next attempt in {}.",
                    human(wait)
                ));
                continue;
            }
            let outcome = self.recheck_and_run(entry, policy, memory).await;
            match outcome {
                Ok(Some(detail)) => {
                    self.backoffs.succeeded(&key);
                    tracing::info!(action = %entry.action, kind = entry.action.kind(), target = entry.action.target(), %detail, "Action done");
                    entry.status = ActionStatus::Done;
                    entry.detail = Some(detail);
                }
                Ok(None) => {} // blocked on re-check; the entry says why
                Err(e @ ActError::RolledBack { .. }) => {
                    // No backoff: the planner holds the service while its rollback stands.
                    tracing::warn!(action = %entry.action, kind = entry.action.kind(), target = entry.action.target(), error = %e, "Action rolled back");
                    entry.status = ActionStatus::RolledBack;
                    entry.detail = Some(e.to_string());
                }
                Err(e) => {
                    let wait = self.backoffs.failed(&key, Instant::now());
                    tracing::warn!(action = %entry.action, kind = entry.action.kind(), target = entry.action.target(), error = %e, retry_in = ?wait, "Action failed");
                    entry.status = ActionStatus::Failed;
                    entry.detail = Some(format!(
                        "{e}; next attempt in {} at the earliest",
                        human(wait)
                    ));
                }
            }
        }
    }

    /// Re-plans on a fresh snapshot; runs the action only if it is still planned there.
    /// `Ok(None)`: the fresh plan blocks or drops it (recorded on `entry`).
    async fn recheck_and_run(
        &mut self,
        entry: &mut PlannedAction,
        policy: &Policy,
        memory: &mut Memory,
    ) -> Result<Option<String>, ActError> {
        let now = SystemTime::now();
        let fresh = self.observer.snapshot(now).await?;
        memory.observe(&fresh);
        self.sync_handover(memory);
        let replan = plan::plan(&fresh, policy, memory, now);
        match replan.actions.iter().find(|a| a.action == entry.action) {
            Some(again) if again.status == ActionStatus::Planned => {}
            Some(again) => {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = again
                    .blocked_by
                    .as_ref()
                    .map(|b| format!("On re-check: {b}"));
                return Ok(None);
            }
            None => {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some("On re-check: no longer needed.".into());
                return Ok(None);
            }
        }
        // `kind` and `target` (a node ID or service name) are for machines: the nemesis
        // checker reads them from the JSON log.
        tracing::info!(action = %entry.action, kind = entry.action.kind(), target = entry.action.target(), reason = %entry.reason, "Carrying out");
        match &entry.action {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => {
                let Some(node) = fresh.nodes.iter().find(|x| x.id == n.id).cloned() else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by = Some("On re-check: the node is gone.".into());
                    return Ok(None);
                };
                // The change is in the lease before its first write: whoever holds the
                // lease next (after a crash, a SIGTERM, a takeover) waits out its
                // stabilization instead of making a second change at once.
                memory.record_membership_change(SystemTime::now());
                if let (Some(number), Some(handover)) = (self.sync_handover(memory), &self.handover)
                {
                    if !handover.carried(number, policy.lease.renew).await {
                        return Err(ActError::HandoffNotCarried(policy.lease.renew));
                    }
                }
                let result = if matches!(entry.action, Action::RemoveDeadManager(_)) {
                    self.remove_dead_manager(&node, policy).await
                } else {
                    self.promote(&node, policy).await
                };
                // Even a half-done change (demoted, not yet removed) changed membership.
                memory.record_membership_change(SystemTime::now());
                self.sync_handover(memory);
                result.map(Some)
            }
            Action::StartRunbook {
                kind,
                efs_id,
                service,
                volume,
            } => {
                let journal = crate::runbook::Journal::new(
                    *kind,
                    efs_id,
                    &service.id,
                    &service.name,
                    volume,
                    crate::runbook::steps(*kind),
                    SystemTime::now(),
                );
                let run_id = journal.run_id.clone();
                crate::runbook::JournalStore::new(self.observer.docker().clone())
                    .create(&self.writer, journal)
                    .await
                    .map_err(|e| ActError::Runbook(e.to_string()))?;
                Ok(Some(format!(
                    "Runbook {run_id} started; its steps advance on the next reconciles."
                )))
            }
            Action::EnforcePlacement(s) => {
                let Some(service) = fresh.services.iter().find(|x| x.id == s.id).cloned() else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by = Some("On re-check: the service is gone.".into());
                    return Ok(None);
                };
                let managers = manager_ids(&fresh);
                let workers = plan::worker_set(&fresh);
                let result = self.enforce_placement(&service, &managers, policy).await;
                match &result {
                    Ok(_) => memory.record_placement_fix(&service.id, SystemTime::now()),
                    Err(ActError::RolledBack { .. }) => memory.record_placement_rollback(
                        &service.id,
                        service.spec_hash.clone(),
                        workers,
                    ),
                    Err(_) => {}
                }
                result.map(Some)
            }
            Action::RollBackPlacement(s) => {
                let (Some(service), Some(record)) = (
                    fresh.services.iter().find(|x| x.id == s.id),
                    fresh
                        .placement_records
                        .records
                        .iter()
                        .find(|r| r.service_id == s.id),
                ) else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by =
                        Some("On re-check: the service or its record is gone.".into());
                    return Ok(None);
                };
                let managers = manager_ids(&fresh);
                self.roll_back_stuck(service, record, &managers, policy)
                    .await
                    .map(Some)
            }
            Action::ClearPlacementRecord { config_id, .. } => {
                self.clear_record(config_id).await.map(Some)
            }
        }
    }

    /// One poll interval, cut short by shutdown.
    pub(super) async fn pause(&self, what: &str) -> Result<(), ActError> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(ActError::Interrupted(what.to_owned())),
            _ = tokio::time::sleep(CONVERGENCE_POLL) => Ok(()),
        }
    }

    /// Removes a dead entry by ID: a raft member is demoted first (labelled, so a process
    /// that dies before the `node rm` leaves a removal the next one finishes) and must
    /// have left the raft; an entry outside the raft is removed at once.
    async fn remove_dead_manager(&self, node: &Node, policy: &Policy) -> Result<String, ActError> {
        let start = Instant::now();
        if node.is_manager() {
            let label = (DEMOTED_FOR_REMOVAL_LABEL, rfc3339(SystemTime::now()));
            match self.writer.set_role(node, Role::Worker, label).await {
                Ok(()) => {}
                // The member left the raft since the re-check (SwarmKit: "can't find
                // manager in raft memberlist"): nothing to demote, remove the entry.
                Err(e)
                    if e.engine_message()
                        .is_some_and(|m| m.contains("can't find manager in raft memberlist")) =>
                {
                    tracing::info!(node = %node.id, error = %e, "Not a raft member any more: removing");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let id = node.id.clone();
        self.wait_for(
            &format!("{} leaving the raft", node.hostname),
            policy.managers.convergence_timeout,
            |s| {
                s.nodes
                    .iter()
                    .find(|n| n.id == id)
                    .is_none_or(|n| !n.is_manager())
            },
        )
        .await?;
        let left_after = start.elapsed();
        self.writer.remove_node(node).await?;
        self.wait_for(
            &format!("{} disappearing from the node list", node.hostname),
            policy.managers.convergence_timeout,
            |s| s.nodes.iter().all(|n| n.id != id),
        )
        .await?;
        Ok(if node.is_manager() {
            format!(
                "Demoted {}; it left the raft after {:.1}s and was removed after {:.1}s.",
                node.hostname,
                left_after.as_secs_f64(),
                start.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "Removed the entry {} of {} (no raft member) after {:.1}s.",
                node.id,
                node.hostname,
                start.elapsed().as_secs_f64()
            )
        })
    }

    async fn promote(&self, node: &Node, policy: &Policy) -> Result<String, ActError> {
        let start = Instant::now();
        let label = (PROMOTED_AT_LABEL, rfc3339(SystemTime::now()));
        self.writer.set_role(node, Role::Manager, label).await?;
        let id = node.id.clone();
        self.wait_for(
            &format!("{} becoming a reachable manager", node.hostname),
            policy.managers.convergence_timeout,
            |s| {
                s.nodes
                    .iter()
                    .any(|n| n.id == id && n.is_reachable_manager())
            },
        )
        .await?;
        // The label marks a promotion in flight; once it has converged it would only
        // mislead a later process (an ex-manager is not a failed promotion).
        if let Err(e) = self.writer.remove_label(&node.id, PROMOTED_AT_LABEL).await {
            tracing::warn!(node = %node.id, error = %e, "Could not clear the promotion label");
        }
        Ok(format!(
            "Promoted {}; reachable manager after {:.1}s.",
            node.hostname,
            start.elapsed().as_secs_f64()
        ))
    }

    /// Polls the node list until `done` holds. Snapshots without a leader (an election
    /// during the change) just mean "not yet".
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<(), ActError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = tolerate(self.observer.snapshot(SystemTime::now()).await)? {
                if s.control == crate::model::Control::Leader && done(&s) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ActError::NotConverged {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            self.pause(what).await?;
        }
    }
}

/// An observation made while waiting: a transient failure is "not yet" (`None`), any other
/// ends the wait.
pub(super) fn tolerate<T>(observed: Result<T, ObserveError>) -> Result<Option<T>, ActError> {
    match observed {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_transient() => {
            tracing::debug!(error = %e, "Observation failed while waiting");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `at` as RFC 3339 (seconds), as node labels carry times.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The IDs of the raft members.
fn manager_ids(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .nodes
        .iter()
        .filter(|n| n.is_manager())
        .map(|n| n.id.clone())
        .collect()
}

fn describe(action: &Action) -> String {
    match action {
        Action::RemoveDeadManager(n) => {
            format!("demote {n} if it is a raft member (labelled {DEMOTED_FOR_REMOVAL_LABEL}), wait until it has left the raft, then docker node rm it by ID (refused if it is Ready)")
        }
        Action::PromoteWorker(n) => {
            format!("promote {n} to manager (labelled {PROMOTED_AT_LABEL}) and wait until it is reachable")
        }
        Action::EnforcePlacement(s) => format!(
            "add `{NOT_ON_MANAGERS}` to service {s} (version-checked update), wait for its rolling update, and roll it back if it pauses or has not converged within placement.update_timeout"
        ),
        Action::RollBackPlacement(s) => format!(
            "roll service {s} back to its previous spec (its placement fix is stuck) and wait for its tasks"
        ),
        Action::ClearPlacementRecord { service, config_id } => {
            format!("remove the record {config_id} of the finished placement fix of {service}")
        }
        Action::StartRunbook { kind, efs_id, .. } => format!(
            "start the {} runbook for {efs_id}: steps {}",
            kind.as_str(),
            crate::runbook::steps(*kind).join(", ")
        ),
    }
}
