//! What swarm-warden exports at `/metrics` (OpenMetrics text, prometheus-client). Label
//! sets are bounded: states, action kinds and results, EFS IDs of watched volumes.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::journal::RunStatus;
use crate::model::Snapshot;
use crate::plan::{ActionStatus, FindingKind, PlacementStatus, Plan};

/// Manager states counted by `swarm_warden_managers`: `reachable` (the leader reaches
/// it), `unreachable` (not yet dead), `dead` (down and unreachable for `dead_after`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    result: String,
    dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    efs_id: String,
}

/// A finding kind (as reports name it) and its severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: &'static str,
    severity: &'static str,
}

/// An event's name (see [`crate::events::Event::NAMES`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunbookLabels {
    status: &'static str,
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    managers: Family<StateLabels, Gauge>,
    dead_managers: Gauge,
    fault_tolerance: Gauge,
    quorum_lost: Gauge,
    placement_violations: Gauge,
    actions: Family<ActionLabels, Counter>,
    reconcile_duration: Histogram,
    reconcile_errors: Counter,
    writes_refused: Counter,
    events: Family<EventLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    queue_depth: Gauge,
    leader: Gauge,
    volume_credits: Family<VolumeLabels, Gauge<f64, AtomicU64>>,
    volume_exhaustion: Family<VolumeLabels, Gauge<f64, AtomicU64>>,
    runbooks: Family<RunbookLabels, Gauge>,
    findings: Family<FindingLabels, Gauge>,
    /// The finding labels set by the last reconcile.
    finding_labels: std::sync::Mutex<Vec<FindingLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarm_warden");
        let managers = Family::<StateLabels, Gauge>::default();
        registry.register("managers", "Raft members by state", managers.clone());
        let dead_managers = Gauge::default();
        registry.register(
            "dead_managers",
            "Managers down and unreachable for managers.dead_after, still raft members",
            dead_managers.clone(),
        );
        let fault_tolerance = Gauge::default();
        registry.register(
            "fault_tolerance",
            "Managers the raft may still lose (reachable - quorum)",
            fault_tolerance.clone(),
        );
        let quorum_lost = Gauge::default();
        registry.register(
            "quorum_lost",
            "1 when no raft leader answers",
            quorum_lost.clone(),
        );
        let placement_violations = Gauge::default();
        registry.register(
            "placement_violations",
            "Workload services that may run on managers",
            placement_violations.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Actions by kind, result and dry run",
            actions.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took (observe, plan, act)",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that could not observe the swarm",
            reconcile_errors.clone(),
        );
        let writes_refused = Counter::default();
        registry.register(
            "writes_refused",
            "Writes not sent because this replica's lease claim was gone or had run out on its own clock",
            writes_refused.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Events logged, by name (the `event` field of the log)",
            events.clone(),
        );
        // Every other gauge holds the last successful observation: this says how old it
        // is (alert SwarmWardenBlind).
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_successful_reconcile_timestamp_seconds",
            "When the swarm was last observed (Unix seconds); the gauges hold that observation",
            last_success.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Triggers coalesced into the last reconcile",
            queue_depth.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease and may act",
            leader.clone(),
        );
        let volume_credits = Family::<VolumeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "volume_burst_credit_bytes",
            "Burst credit balance of watched EFS volumes",
            volume_credits.clone(),
        );
        let volume_exhaustion = Family::<VolumeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "volume_credit_exhaustion_seconds",
            "Time until a watched EFS volume runs out of credits (-1: not draining)",
            volume_exhaustion.clone(),
        );
        let runbooks = Family::<RunbookLabels, Gauge>::default();
        registry.register("runbooks", "Runbook runs by status", runbooks.clone());
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Findings of the last reconcile by kind and severity (kinds with none are absent)",
            findings.clone(),
        );
        Self {
            registry,
            managers,
            dead_managers,
            fault_tolerance,
            quorum_lost,
            placement_violations,
            actions,
            reconcile_duration,
            reconcile_errors,
            writes_refused,
            events,
            last_success,
            queue_depth,
            leader,
            volume_credits,
            volume_exhaustion,
            runbooks,
            findings,
            finding_labels: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Records one reconcile: what it observed (`snapshot`), its `plan` with each action's
    /// outcome, whether it only recorded (`dry_run`), how long it `took` and how many
    /// `triggers` it coalesced.
    pub fn reconciled(
        &self,
        snapshot: &Snapshot,
        plan: &Plan,
        dry_run: bool,
        took: Duration,
        triggers: usize,
    ) {
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Ok(at) = snapshot.observed_at.duration_since(std::time::UNIX_EPOCH) {
            self.last_success.set(at.as_secs_f64());
        }
        self.queue_depth.set(triggers as i64);
        let lost = plan.cluster.is_none()
            || plan
                .findings
                .iter()
                .any(|f| f.kind == crate::plan::FindingKind::QuorumLost);
        self.quorum_lost.set(i64::from(lost));
        if let Some(c) = &plan.cluster {
            self.fault_tolerance.set(c.fault_tolerance);
            let dead = plan
                .findings
                .iter()
                .filter(|f| f.kind == FindingKind::DeadManager)
                .count();
            let unreachable = c
                .managers
                .saturating_sub(c.reachable_managers)
                .saturating_sub(dead);
            for (state, n) in [
                ("reachable", c.reachable_managers),
                ("unreachable", unreachable),
                ("dead", dead),
            ] {
                self.managers
                    .get_or_create(&StateLabels { state })
                    .set(n as i64);
            }
            self.dead_managers.set(dead as i64);
        }
        let violations = plan
            .services
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    PlacementStatus::Violating | PlacementStatus::Blocked(_)
                )
            })
            .count();
        self.placement_violations.set(violations as i64);
        for action in &plan.actions {
            let result = match action.status {
                ActionStatus::Planned if dry_run => "dry-run",
                ActionStatus::Planned => continue,
                ActionStatus::Blocked => "blocked",
                // Counted again with its end (done, failed, rolled-back) when it ends.
                ActionStatus::InProgress => "started",
                ActionStatus::Done => "done",
                ActionStatus::Failed => "failed",
                ActionStatus::RolledBack => "rolled-back",
            };
            self.actions
                .get_or_create(&ActionLabels {
                    kind: action.action.kind().to_owned(),
                    result: result.to_owned(),
                    dry_run: dry_run.to_string(),
                })
                .inc();
        }
        for t in &snapshot.telemetry {
            let labels = VolumeLabels {
                efs_id: t.efs_id.clone(),
            };
            // Unusable telemetry drops the series: a stale or NaN value must not keep an
            // alert quiet (or firing).
            let Ok(r) = crate::plan::readings::readings(t) else {
                self.volume_credits.remove(&labels);
                self.volume_exhaustion.remove(&labels);
                continue;
            };
            self.volume_credits.get_or_create(&labels).set(r.credits);
            let baseline = crate::plan::volumes::baseline_rate(r.storage);
            let exhaustion = if r.metered > baseline {
                r.credits / (r.metered - baseline)
            } else {
                -1.0
            };
            self.volume_exhaustion
                .get_or_create(&labels)
                .set(exhaustion);
        }
        // New counts first, then the kinds gone since the last reconcile removed: a
        // scrape in between never sees a series vanish and come back (that would restart
        // an alert's `for:`).
        let mut counts: std::collections::HashMap<FindingLabels, i64> =
            std::collections::HashMap::new();
        for f in &plan.findings {
            *counts
                .entry(FindingLabels {
                    kind: f.kind.as_str(),
                    severity: f.severity.as_str(),
                })
                .or_default() += 1;
        }
        for (labels, n) in &counts {
            self.findings.get_or_create(labels).set(*n);
        }
        if let Ok(mut last) = self.finding_labels.lock() {
            for gone in last.iter().filter(|l| !counts.contains_key(*l)) {
                self.findings.remove(gone);
            }
            *last = counts.into_keys().collect();
        }
        // Journals that could not be listed say nothing about the runs: keep the last
        // known counts (a failed run's alert must not resolve for that).
        if snapshot.runbook_problems.error.is_some() {
            return;
        }
        for status in RunStatus::ALL {
            let n = snapshot
                .runbooks
                .iter()
                .filter(|j| j.status == status)
                .count();
            self.runbooks
                .get_or_create(&RunbookLabels {
                    status: status.as_str(),
                })
                .set(n as i64);
        }
    }

    /// Records a reconcile that could not observe.
    pub fn reconcile_failed(&self) {
        self.reconcile_errors.inc();
    }

    /// Counts one event named `event` (see [`crate::events::Event`], which calls this).
    pub fn event(&self, event: &'static str) {
        self.events.get_or_create(&EventLabels { event }).inc();
    }

    /// The counter of refused writes (`swarm_warden_writes_refused_total`), for the
    /// lease claim to count into.
    pub fn writes_refused(&self) -> Counter {
        self.writes_refused.clone()
    }

    /// Whether this replica holds the lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::plan::quorum_test_support::{cluster, manager, t, worker};
    use crate::plan::{plan, Memory};

    #[test]
    fn the_fault_tolerance_and_manager_states_are_exported() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                worker("w1"),
            ],
            t(0),
        );
        let mut memory = Memory::default();
        memory.observe(&snap);
        let p = plan(&snap, &Policy::default(), &memory, t(0));
        let metrics = Metrics::new();
        metrics.reconciled(&snap, &p, false, Duration::from_millis(12), 3);
        metrics.set_leader(true);
        let text = metrics.encode();
        assert!(text.contains("swarm_warden_fault_tolerance 1\n"), "{text}");
        assert!(
            text.contains("swarm_warden_managers{state=\"reachable\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("swarm_warden_leader 1\n"));
        assert!(text.contains("swarm_warden_queue_depth 3\n"));
        assert!(text.contains("swarm_warden_reconcile_duration_seconds_count 1\n"));
        assert!(text.ends_with("# EOF\n"));
        // t(0) is the test clock's epoch: the observation's time, in Unix seconds.
        let at = t(0)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            text.contains(&format!(
                "swarm_warden_last_successful_reconcile_timestamp_seconds {at}"
            )),
            "{text}"
        );
    }

    #[test]
    fn unusable_volume_telemetry_drops_its_series() {
        let mut snap = cluster(vec![manager("m1", true)], t(0));
        let good = crate::model::VolumeTelemetry {
            efs_id: "fs-1".into(),
            credits: Some(1e9),
            permitted: Some(1e6),
            metered_rate: Some(3e6),
            storage: Some(1e9),
            iowait: Default::default(),
            error: None,
        };
        snap.telemetry = vec![good.clone()];
        let metrics = Metrics::new();
        let record = |snap: &crate::model::Snapshot| {
            let p = plan(snap, &Policy::default(), &Memory::default(), t(0));
            metrics.reconciled(snap, &p, false, Duration::from_millis(1), 1);
        };
        record(&snap);
        assert!(metrics
            .encode()
            .contains("swarm_warden_volume_burst_credit_bytes{efs_id=\"fs-1\"}"));
        snap.telemetry[0].credits = Some(f64::NAN);
        record(&snap);
        let text = metrics.encode();
        assert!(!text.contains("efs_id=\"fs-1\""), "{text}");
        // Findings are counted by kind (alert SwarmWardenCannotSee reads them).
        assert!(
            text.contains(
                "swarm_warden_findings{kind=\"managers-below-desired\",severity=\"warning\"} 1\n"
            ),
            "{text}"
        );
    }
}
