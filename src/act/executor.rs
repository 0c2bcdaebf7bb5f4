//! Runs the runnable actions of a plan: re-plans on a fresh snapshot right before each
//! one (so every guard is checked against the cluster as it is now), then writes. Quick
//! actions finish inline; long ones (a removal, a promotion, a placement fix and its
//! rolling update) run in their own task, and the loop goes on: a later reconcile collects
//! how they ended. One membership change runs at a time, one action per service.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::actor::Actor;
use super::backoff::Backoffs;
use super::error::ActError;
use super::running::{Ended, Remember, Running, Task};
use crate::config::Policy;
use crate::events::Event;
use crate::lease::{Claim, Handover};
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::observe::{Observer, Trigger};
use crate::plan::constraint::NOT_ON_MANAGERS;
use crate::plan::{
    self, human, Action, ActionStatus, Block, BlockKind, Memory, Plan, PlannedAction,
    DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL,
};
use crate::writer::Writer;

/// What the re-check let happen.
enum Started {
    /// The fresh plan blocks or drops it (recorded on the entry).
    Blocked,
    /// Finished inline.
    Done(String),
    /// Running in its own task.
    Running,
}

/// Carries out plans against one swarm.
#[derive(Debug)]
pub struct Executor {
    actor: Actor,
    dry_run: bool,
    /// The exchange of memory with the lease (none without a lease).
    handover: Option<Arc<Handover>>,
    backoffs: Backoffs,
    running: Running,
    /// Where a running action says it ended, so the loop looks at once.
    wake: Option<mpsc::UnboundedSender<Trigger>>,
    /// Where events are counted.
    metrics: Arc<Metrics>,
}

impl Executor {
    /// An executor; in `dry_run` it records what it would do and writes nothing.
    pub fn new(
        observer: Observer,
        dry_run: bool,
        policy: &Policy,
        cancel: CancellationToken,
    ) -> Self {
        let actor = Actor {
            writer: Writer::new(observer.docker().clone(), Claim::unconditional()),
            observer,
            cancel,
            metrics: Arc::new(Metrics::new()),
        };
        let actor_metrics = actor.metrics.clone();
        Self {
            actor,
            dry_run,
            handover: None,
            backoffs: Backoffs::new(policy.controller.backoff_min, policy.controller.backoff_max),
            running: Running::default(),
            wake: None,
            metrics: actor_metrics,
        }
    }

    /// Counts its events in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.actor.metrics = metrics.clone();
        self.metrics = metrics;
        self
    }

    /// Writes only under `claim` (checked right before every write); `handover` passes
    /// memory between lease holders.
    pub fn with_claim(mut self, claim: Claim, handover: Option<Arc<Handover>>) -> Self {
        self.actor.writer = Writer::new(self.actor.observer.docker().clone(), claim);
        self.handover = handover;
        self
    }

    /// A running action that ends sends [`Trigger::ActionEnded`] here.
    pub fn wake_with(&mut self, wake: mpsc::UnboundedSender<Trigger>) {
        self.wake = Some(wake);
    }

    /// The one writer, for the other parts that change the swarm (runbooks).
    pub fn writer(&self) -> &Writer {
        &self.actor.writer
    }

    /// Changes when the lease is taken or lost.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.actor.writer.claim().changes()
    }

    /// Adopts what the previous lease holder passed on (once, after a takeover) and
    /// publishes what this replica would pass on. Called after every observation, so the
    /// plan that follows already waits where the previous holder would have. Returns the
    /// publication's number (none without a lease).
    pub fn sync_handover(&self, memory: &mut Memory) -> Option<u64> {
        let handover = self.handover.as_ref()?;
        if let Some((previous, taken_at)) = handover.take_incoming() {
            tracing::debug!(raft_leader = ?previous.raft_leader, last_membership_change = ?previous.last_membership_change, "Handover adopted");
            Event::TookOver.emit(&self.metrics);
            memory.adopt(previous, taken_at);
        }
        Some(handover.publish(memory.handoff()))
    }

    /// Whether this replica may act now: it holds the lease and its claim has not run out
    /// on the local clock.
    pub fn is_leader(&self) -> bool {
        self.actor.writer.claim().is_held()
    }

    /// Whether this executor only records.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// How many actions run in their own tasks now.
    pub fn in_progress(&self) -> usize {
        self.running.len()
    }

    /// The IDs of the services a running action is changing (runbooks leave them alone
    /// meanwhile).
    pub fn busy_services(&self) -> Vec<String> {
        self.running.services()
    }

    /// The actions that ended since the last call, as plan entries with their outcome;
    /// their effects are in `memory` (call before planning, so the plan sees them).
    pub fn collect(&mut self, memory: &mut Memory) -> Vec<PlannedAction> {
        let ended = self.running.ended();
        ended
            .into_iter()
            .map(|e| self.conclude(e, memory))
            .collect()
    }

    /// Waits until every running action has ended (`--once`, shutdown); as
    /// [`Executor::collect`].
    pub async fn finish(&mut self, memory: &mut Memory) -> Vec<PlannedAction> {
        let ended = self.running.all_ended().await;
        ended
            .into_iter()
            .map(|e| self.conclude(e, memory))
            .collect()
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
                Event::DryRun(entry).emit(&self.metrics);
                continue;
            }
            if !self.is_leader() {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(Block::new(
                    BlockKind::NotLeader,
                    "Not the lease holder (another replica holds it, or this one's last lease round failed): this replica observes only.",
                ));
                continue;
            }
            if let Some(why) = self
                .running
                .in_the_way(&entry.action, policy.placement.max_updates_per_cycle)
            {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(Block::new(BlockKind::InProgress, why));
                continue;
            }
            if let Some(wait) = self.backoffs.remaining(&key, Instant::now()) {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(Block::new(
                    BlockKind::BackingOff,
                    format!(
                        "Backing off after a failure: next attempt in {}.",
                        human(wait)
                    ),
                ));
                continue;
            }
            match self.recheck_and_start(entry, policy, memory).await {
                Ok(Started::Blocked) => {}
                Ok(Started::Running) => {
                    entry.status = ActionStatus::InProgress;
                    entry.detail = Some(
                        "Written; it converges while the loop goes on (a later reconcile reports the end)."
                            .into(),
                    );
                }
                Ok(Started::Done(detail)) => self.settle(entry, &key, Ok(detail)),
                Err(e) => self.settle(entry, &key, Err(e)),
            }
        }
    }

    /// Records how an action ended: status, detail, backoff, log.
    fn settle(&mut self, entry: &mut PlannedAction, key: &str, outcome: Result<String, ActError>) {
        match outcome {
            Ok(detail) => {
                self.backoffs.succeeded(key);
                Event::ActionDone {
                    action: &entry.action,
                    detail: &detail,
                }
                .emit(&self.metrics);
                entry.status = ActionStatus::Done;
                entry.detail = Some(detail);
            }
            Err(e @ ActError::RolledBack { .. }) => {
                // No backoff: the planner holds the service while its rollback stands.
                Event::ActionRolledBack {
                    action: &entry.action,
                    error: &e.to_string(),
                }
                .emit(&self.metrics);
                entry.status = ActionStatus::RolledBack;
                entry.detail = Some(e.to_string());
            }
            Err(e) => {
                let wait = self.backoffs.failed(key, Instant::now());
                Event::ActionFailed {
                    action: &entry.action,
                    error: &e.to_string(),
                    retry_in: wait,
                }
                .emit(&self.metrics);
                entry.status = ActionStatus::Failed;
                entry.detail = Some(format!(
                    "{e}; next attempt in {} at the earliest",
                    human(wait)
                ));
            }
        }
    }

    /// An ended action as a plan entry; its effect goes into `memory`.
    fn conclude(&mut self, ended: Ended, memory: &mut Memory) -> PlannedAction {
        let Ended {
            mut entry,
            remember,
            result,
        } = ended;
        let now = SystemTime::now();
        match (&remember, &result) {
            (Remember::MembershipChange, _) => {
                memory.record_membership_change(now);
                self.sync_handover(memory);
            }
            (Remember::PlacementFix { service_id, .. }, Ok(_)) => {
                memory.record_placement_fix(service_id, now)
            }
            (
                Remember::PlacementFix {
                    service_id,
                    spec_hash,
                    workers,
                },
                Err(ActError::RolledBack { .. }),
            ) => memory.record_placement_rollback(service_id, spec_hash.clone(), workers.clone()),
            _ => {}
        }
        let key = entry.action.key();
        self.settle(&mut entry, &key, result);
        entry
    }

    /// Re-plans on a fresh snapshot; starts the action only if it is still planned there.
    async fn recheck_and_start(
        &mut self,
        entry: &mut PlannedAction,
        policy: &Policy,
        memory: &mut Memory,
    ) -> Result<Started, ActError> {
        // Pinned before the re-check reads: its writes need this hold of the lease (after a
        // loss and a re-take, what the re-check saw may be stale).
        let mut actor = self.actor.clone();
        actor.writer = actor.writer.pinned();
        let now = SystemTime::now();
        let fresh = actor.observer.snapshot(now).await?;
        memory.observe(&fresh);
        self.sync_handover(memory);
        let replan = plan::plan(&fresh, policy, memory, now);
        match replan.actions.iter().find(|a| a.action == entry.action) {
            Some(again) if again.status == ActionStatus::Planned => {}
            Some(again) => {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = again.blocked_by.as_ref().map(Block::on_recheck);
                return Ok(Started::Blocked);
            }
            None => {
                entry.status = ActionStatus::Blocked;
                entry.blocked_by = Some(gone("no longer needed"));
                return Ok(Started::Blocked);
            }
        }
        let policy_owned = policy.clone();
        let (remember, work): (Remember, futures::future::BoxFuture<'static, _>) = match &entry
            .action
        {
            Action::RemoveDeadManager(n) | Action::PromoteWorker(n) => {
                let Some(node) = fresh.nodes.iter().find(|x| x.id == n.id).cloned() else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by = Some(gone("the node is gone"));
                    return Ok(Started::Blocked);
                };
                // The change is in the lease before its first write: whoever holds
                // the lease next (after a crash, a SIGTERM, a takeover) waits out its
                // stabilization instead of making a second change at once.
                memory.record_membership_change(SystemTime::now());
                if let (Some(number), Some(handover)) = (self.sync_handover(memory), &self.handover)
                {
                    // Up to two rounds of the keeper: one may be under way.
                    let within = policy.lease.renew * 2;
                    if !handover.carried(number, within).await {
                        return Err(ActError::HandoffNotCarried(within));
                    }
                }
                let removal = matches!(entry.action, Action::RemoveDeadManager(_));
                (
                    Remember::MembershipChange,
                    Box::pin(async move {
                        if removal {
                            actor.remove_dead_manager(&node, &policy_owned).await
                        } else {
                            actor.promote(&node, &policy_owned).await
                        }
                    }),
                )
            }
            Action::EnforcePlacement(s) => {
                let Some(service) = fresh.services.iter().find(|x| x.id == s.id).cloned() else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by = Some(gone("the service is gone"));
                    return Ok(Started::Blocked);
                };
                let managers = manager_ids(&fresh);
                let remember = Remember::PlacementFix {
                    service_id: service.id.clone(),
                    spec_hash: service.spec_hash.clone(),
                    workers: plan::worker_set(&fresh),
                };
                (
                    remember,
                    Box::pin(async move {
                        actor
                            .enforce_placement(&service, &managers, &policy_owned)
                            .await
                    }),
                )
            }
            Action::RollBackPlacement(s) => {
                let (Some(service), Some(record)) = (
                    fresh.services.iter().find(|x| x.id == s.id).cloned(),
                    fresh
                        .placement_records
                        .records
                        .iter()
                        .find(|r| r.service_id == s.id)
                        .cloned(),
                ) else {
                    entry.status = ActionStatus::Blocked;
                    entry.blocked_by = Some(gone("the service or its record is gone"));
                    return Ok(Started::Blocked);
                };
                let managers = manager_ids(&fresh);
                (
                    Remember::Nothing,
                    Box::pin(async move {
                        actor
                            .roll_back_stuck(&service, &record, &managers, &policy_owned)
                            .await
                    }),
                )
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
                actor
                    .writer
                    .create_journal(journal)
                    .await
                    .map_err(|e| ActError::Runbook(e.to_string()))?;
                return Ok(Started::Done(format!(
                    "Runbook {run_id} started; its steps advance on the next reconciles."
                )));
            }
            Action::ClearPlacementRecord { config_id, .. } => {
                return actor.clear_record(config_id).await.map(Started::Done);
            }
        };
        // The first write of the action is next (for a membership change: once the lease
        // carries it). The nemesis checker and the lab tests read `kind` and `target`.
        Event::ActionStarted(entry).emit(&self.metrics);
        let span = tracing::info_span!(
            "action",
            kind = entry.action.kind(),
            target = entry.action.target()
        );
        let wake = self.wake.clone();
        let (kind, target) = (entry.action.kind(), entry.action.target().to_owned());
        let handle = tokio::spawn(
            async move {
                let result = work.await;
                if let Some(wake) = wake {
                    let _ = wake.send(Trigger::ActionEnded { kind, target });
                }
                result
            }
            .instrument(span),
        );
        self.running.push(Task {
            entry: entry.clone(),
            remember,
            handle,
        });
        Ok(Started::Running)
    }
}

/// What the re-check right before the write found: the action is no longer needed.
fn gone(why: &str) -> Block {
    Block::new(BlockKind::NoLongerNeeded, format!("On re-check: {why}."))
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
