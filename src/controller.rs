//! The control loop, in the style of kube-runtime's controller: triggers (events, a relist
//! on every stream reconnect, a periodic resync, requeues the plan asks for) are coalesced
//! into one reconcile at a time; observation failures back off; cancellation stops it
//! between (or inside the waits of) reconciles.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::act::{Backoffs, Executor, RunbookRunner};
use crate::config::Policy;
use crate::events::Event;
use crate::http::Health;
use crate::lease::{Claim, Handover};
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::observe::{watch_events, ObserveError, Observer, Trigger};
use crate::plan::{self, Memory, Plan};
use crate::report::Report;

/// Backoff key of observation failures.
const OBSERVE_KEY: &str = "observe";

/// What one reconcile saw and did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The snapshot it planned from.
    pub snapshot: Snapshot,
    /// The plan, with each action's outcome.
    pub plan: Plan,
    /// Whether it only recorded.
    pub dry_run: bool,
}

impl Reconciled {
    /// The report of this reconcile.
    pub fn report(&self) -> Report {
        Report::new(&self.snapshot, &self.plan, self.dry_run)
    }
}

/// Observes, plans and acts on one swarm.
#[derive(Debug)]
pub struct Controller {
    observer: Observer,
    executor: Executor,
    runner: RunbookRunner,
    policy: Policy,
    memory: Memory,
    backoffs: Backoffs,
    cancel: CancellationToken,
    reconciles: u64,
    last_findings: BTreeSet<(String, String)>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Controller {
    /// A controller for the swarm `observer` reads; `dry_run` records instead of acting.
    ///
    /// # Errors
    /// The Prometheus client cannot be built (see [`Observer::watching`]): bad input.
    pub fn new(
        observer: Observer,
        policy: Policy,
        dry_run: bool,
        cancel: CancellationToken,
    ) -> Result<Self, crate::observe::ClientError> {
        let observer = observer.watching(&policy)?;
        let executor = Executor::new(observer.clone(), dry_run, &policy, cancel.clone());
        let runner = RunbookRunner::new(observer.clone(), executor.writer().clone());
        Ok(Self {
            executor,
            runner,
            observer,
            backoffs: Backoffs::new(policy.controller.backoff_min, policy.controller.backoff_max),
            policy,
            memory: Memory::default(),
            cancel,
            reconciles: 0,
            last_findings: BTreeSet::new(),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::new(Duration::from_secs(3600))),
        })
    }

    /// Writes only under `claim` (every write checks it right before it is sent);
    /// `handover` passes memory between lease holders.
    pub fn with_claim(mut self, claim: Claim, handover: Option<Arc<Handover>>) -> Self {
        self.executor = self.executor.with_claim(claim, handover);
        self.runner = RunbookRunner::new(self.observer.clone(), self.executor.writer().clone());
        self
    }

    /// Reports to these metrics and health probes.
    pub fn with_telemetry(mut self, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        self.executor = self.executor.with_metrics(metrics.clone());
        self.metrics = metrics;
        self.health = health;
        self
    }

    /// One reconcile: observe, collect the actions that ended since, plan, act. Long
    /// actions are started, not waited for: their end shows in a later reconcile.
    pub async fn reconcile(&mut self) -> Result<Reconciled, ObserveError> {
        let now = SystemTime::now();
        let snapshot = self.observer.snapshot(now).await?;
        // Before planning: a fix that ended rolled back holds its service in memory.
        let ended = self.executor.collect(&mut self.memory);
        self.memory.observe(&snapshot);
        self.executor.sync_handover(&mut self.memory);
        let mut plan = plan::plan(&snapshot, &self.policy, &self.memory, now);
        self.log_findings(&plan);
        self.executor
            .execute(&mut plan, &self.policy, &mut self.memory)
            .await;
        plan.actions.extend(ended);
        // Runbooks advance only when acting for real, on the replica holding the lease.
        if !self.executor.dry_run()
            && self.executor.is_leader()
            && (!snapshot.runbooks.is_empty() || started_runbook(&plan))
        {
            let busy = self.executor.busy_services();
            for note in self.runner.advance(&snapshot, &self.policy, &busy).await {
                Event::Runbook(&note).emit(&self.metrics);
            }
        }
        Ok(Reconciled {
            snapshot,
            plan,
            dry_run: self.executor.dry_run(),
        })
    }

    /// One reconcile whose started actions are seen to their end (`run --once`): the
    /// report says how each ended, as a single run should.
    pub async fn reconcile_to_end(&mut self) -> Result<Reconciled, ObserveError> {
        let mut done = self.reconcile().await?;
        for ended in self.executor.finish(&mut self.memory).await {
            match done.plan.actions.iter_mut().find(|a| {
                a.action == ended.action && a.status == crate::plan::ActionStatus::InProgress
            }) {
                Some(slot) => *slot = ended,
                None => done.plan.actions.push(ended),
            }
        }
        Ok(done)
    }

    /// Runs until cancelled. `on_reconcile` sees every completed reconcile.
    pub async fn run(mut self, mut on_reconcile: impl FnMut(&Reconciled)) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let events = tokio::spawn(watch_events(
            self.observer.docker().clone(),
            tx.clone(),
            Backoffs::builder(
                self.policy.controller.backoff_min,
                self.policy.controller.backoff_max,
            ),
            self.cancel.child_token(),
        ));
        let _ = tx.send(Trigger::Start);
        self.executor.wake_with(tx.clone());
        let mut leadership = self.executor.leadership();
        let mut resync = tokio::time::interval_at(
            Instant::now() + self.policy.controller.resync,
            self.policy.controller.resync,
        );
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requeue_at: Option<Instant> = None;
        loop {
            let first = tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(t) = rx.recv() => t,
                _ = resync.tick() => Trigger::Resync,
                _ = sleep_until(requeue_at) => Trigger::Requeue,
                // A replica that just took the lease looks at once instead of at the next event.
                Ok(()) = leadership.changed() => Trigger::Leadership(*leadership.borrow_and_update()),
            };
            // Coalesce: everything that arrived while we were busy is one reconcile.
            let mut triggers = vec![first];
            while let Ok(t) = rx.try_recv() {
                triggers.push(t);
            }
            if let Some(wait) = self.backoffs.remaining(OBSERVE_KEY, Instant::now()) {
                requeue_at = Some(Instant::now() + wait);
                continue;
            }
            self.reconciles += 1;
            let span = tracing::info_span!("reconcile", n = self.reconciles, trigger = %summarize(&triggers));
            let started = Instant::now();
            let result = self.reconcile().instrument(span).await;
            self.health.turned();
            self.metrics.set_leader(self.executor.is_leader());
            match result {
                Ok(done) => {
                    self.metrics.reconciled(
                        &done.snapshot,
                        &done.plan,
                        done.dry_run,
                        started.elapsed(),
                        triggers.len(),
                    );
                    self.health.set_ready(true);
                    self.backoffs.succeeded(OBSERVE_KEY);
                    requeue_at = done.plan.requeue_after.map(|d| Instant::now() + d);
                    on_reconcile(&done);
                }
                Err(e) => {
                    self.metrics.reconcile_failed();
                    let wait = self.backoffs.failed(OBSERVE_KEY, Instant::now());
                    Event::ObserveFailed {
                        error: &e.to_string(),
                        retry_in: wait,
                        transient: e.is_transient(),
                    }
                    .emit(&self.metrics);
                    requeue_at = Some(Instant::now() + wait);
                }
            }
        }
        tracing::info!(in_progress = self.executor.in_progress(), "Stopping");
        self.health.set_ready(false);
        self.cancel.cancel();
        // Running actions stop at their next wait (the cancellation) and say so.
        self.executor.finish(&mut self.memory).await;
        let _ = events.await;
    }

    /// Logs findings when they change, so a steady state does not flood the log.
    fn log_findings(&mut self, plan: &Plan) {
        let current: BTreeSet<(String, String)> = plan
            .findings
            .iter()
            .map(|f| (f.kind.as_str().to_owned(), f.subject.clone()))
            .collect();
        if current == self.last_findings {
            return;
        }
        for f in &plan.findings {
            Event::Finding(f).emit(&self.metrics);
        }
        if let Some(c) = &plan.cluster {
            Event::ClusterState(c).emit(&self.metrics);
        }
        self.last_findings = current;
    }
}

fn started_runbook(plan: &Plan) -> bool {
    plan.actions.iter().any(|a| {
        matches!(a.action, crate::plan::Action::StartRunbook { .. })
            && a.status == crate::plan::ActionStatus::Done
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn summarize(triggers: &[Trigger]) -> String {
    let mut names: Vec<String> = triggers.iter().map(Trigger::to_string).collect();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1..=3 => names.join(", "),
        n => format!("{}, and {} more", names[..3].join(", "), n - 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_triggers_are_summarized_in_one_line() {
        let t = |s: &str| Trigger::Event {
            kind: "node".into(),
            action: "update".into(),
            subject: s.into(),
        };
        let s = summarize(&[t("a"), t("b"), t("c"), t("d"), t("e")]);
        assert_eq!(s, "node update a, node update b, node update c, and 2 more");
        assert_eq!(
            summarize(&[Trigger::Resync, Trigger::Resync]),
            "periodic resync"
        );
    }
}
