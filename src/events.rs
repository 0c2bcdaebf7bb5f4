//! What swarm-warden tells its operators as it goes, as typed events. Each event is logged
//! once, with a stable `event` field and typed fields beside the message (machines — the
//! lab tests, the nemesis checker, `swarm-chaos demo`, a log pipeline — read those from
//! `LOG_FORMAT=json`, never the wording), and counted in the same call:
//! `swarm_warden_events_total{event}`.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::plan::{Action, ClusterSummary, Finding, PlannedAction, Severity};

/// One thing that happened.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// An action passed its re-check and its first write is about to be sent (for a
    /// membership change: after the lease carries it).
    ActionStarted(&'a PlannedAction),
    /// An action converged.
    ActionDone {
        /// The action.
        action: &'a Action,
        /// What it did.
        detail: &'a str,
    },
    /// An action was rolled back (a placement fix that did not converge).
    ActionRolledBack {
        /// The action.
        action: &'a Action,
        /// Why.
        error: &'a str,
    },
    /// A running action could not see its own end (the reads failed while it converged):
    /// it is left for the next reconcile to judge, never rolled back blind. Said when it
    /// happens; the action's end (`action-failed`) follows once a reconcile observes again.
    ActionUnobserved {
        /// The action.
        action: &'a Action,
        /// Why not.
        error: &'a str,
    },
    /// An action failed; it is tried again after `retry_in` at the earliest.
    ActionFailed {
        /// The action.
        action: &'a Action,
        /// Why.
        error: &'a str,
        /// Its backoff.
        retry_in: Duration,
    },
    /// The swarm could not be observed: nothing is planned or done; tried again after
    /// `retry_in`. `transient`: a failed or slow read (retrying may help); otherwise the
    /// Engine cannot be worked with (not a manager, too old).
    ObserveFailed {
        /// Why.
        error: &'a str,
        /// Its backoff.
        retry_in: Duration,
        /// Whether retrying may help by itself.
        transient: bool,
    },
    /// `--dry-run`: an action that would have been carried out.
    DryRun(&'a PlannedAction),
    /// A finding, logged when the set of findings changed.
    Finding(&'a Finding),
    /// The raft arithmetic, logged with the findings when they changed.
    ClusterState(&'a ClusterSummary),
    /// A runbook transition (or why a run did not advance).
    Runbook(&'a str),
    /// This replica took over from another lease holder and keeps its settle and
    /// stabilization times.
    TookOver,
}

impl Event<'_> {
    /// Every event name, as logged in the `event` field and as the metric's label.
    pub const NAMES: [&'static str; 11] = [
        "action-started",
        "action-done",
        "action-rolled-back",
        "action-unobserved",
        "action-failed",
        "observe-failed",
        "dry-run",
        "finding",
        "cluster-state",
        "runbook",
        "took-over",
    ];

    /// This event's name (one of [`Event::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ActionStarted(_) => "action-started",
            Event::ActionDone { .. } => "action-done",
            Event::ActionRolledBack { .. } => "action-rolled-back",
            Event::ActionUnobserved { .. } => "action-unobserved",
            Event::ActionFailed { .. } => "action-failed",
            Event::ObserveFailed { .. } => "observe-failed",
            Event::DryRun(_) => "dry-run",
            Event::Finding(_) => "finding",
            Event::ClusterState(_) => "cluster-state",
            Event::Runbook(_) => "runbook",
            Event::TookOver => "took-over",
        }
    }

    /// Logs it and counts it in `metrics`.
    pub fn emit(&self, metrics: &Metrics) {
        metrics.event(self.name());
        let event = self.name();
        match *self {
            Event::ActionStarted(a) => {
                tracing::info!(event, action = %a.action, kind = a.action.kind(), target = a.action.target(), reason = %a.reason, "Carrying out")
            }
            Event::ActionDone { action, detail } => {
                tracing::info!(event, %action, kind = action.kind(), target = action.target(), detail, "Action done")
            }
            Event::ActionRolledBack { action, error } => {
                tracing::warn!(event, %action, kind = action.kind(), target = action.target(), error, "Action rolled back")
            }
            Event::ActionUnobserved { action, error } => {
                tracing::warn!(event, %action, kind = action.kind(), target = action.target(), error, "Action not seen to its end: left for the next reconcile")
            }
            Event::ObserveFailed {
                error,
                retry_in,
                transient: true,
            } => tracing::warn!(event, error, retry_in = ?retry_in, transient = true, "Could not observe the swarm"),
            Event::ObserveFailed {
                error,
                retry_in,
                transient: false,
            } => tracing::error!(event, error, retry_in = ?retry_in, transient = false, "Cannot work with this Docker Engine"),
            Event::ActionFailed {
                action,
                error,
                retry_in,
            } => {
                tracing::warn!(event, %action, kind = action.kind(), target = action.target(), error, retry_in = ?retry_in, "Action failed")
            }
            Event::DryRun(a) => {
                tracing::info!(event, action = %a.action, kind = a.action.kind(), target = a.action.target(), reason = %a.reason, "Dry run: not carrying out")
            }
            Event::Finding(f) => match f.severity {
                Severity::Critical | Severity::Warning => {
                    tracing::warn!(event, kind = %f.kind, severity = %f.severity, subject = %f.subject, "{}", f.message)
                }
                Severity::Info => {
                    tracing::info!(event, kind = %f.kind, severity = %f.severity, subject = %f.subject, "{}", f.message)
                }
            },
            Event::ClusterState(c) => tracing::info!(
                event,
                managers = c.managers,
                reachable = c.reachable_managers,
                quorum = c.quorum,
                fault_tolerance = c.fault_tolerance,
                "Cluster state changed"
            ),
            Event::Runbook(note) => tracing::info!(event, runbook = %note, "Runbook"),
            Event::TookOver => tracing::info!(
                event,
                "Took over from the previous lease holder: keeping its settle and stabilization times"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_named_and_counted_under_its_name() {
        let metrics = Metrics::new();
        let action = Action::RemoveDeadManager(crate::plan::NodeRef {
            id: "n1".into(),
            hostname: "m3".into(),
        });
        let planned = PlannedAction::new(action.clone(), "dead".into(), None);
        let finding = Finding::new(
            crate::plan::FindingKind::DeadManager,
            Severity::Critical,
            "n1",
            "m3 is dead".into(),
        );
        let cluster = ClusterSummary {
            nodes: 3,
            managers: 3,
            reachable_managers: 3,
            quorum: 2,
            fault_tolerance: 1,
            leader: None,
        };
        let events = [
            Event::ActionStarted(&planned),
            Event::ActionDone {
                action: &action,
                detail: "removed",
            },
            Event::ActionRolledBack {
                action: &action,
                error: "stuck",
            },
            Event::ActionUnobserved {
                action: &action,
                error: "reads failed",
            },
            Event::ActionFailed {
                action: &action,
                error: "refused",
                retry_in: Duration::from_secs(5),
            },
            Event::ObserveFailed {
                error: "HTTP 500",
                retry_in: Duration::from_secs(1),
                transient: true,
            },
            Event::DryRun(&planned),
            Event::Finding(&finding),
            Event::ClusterState(&cluster),
            Event::Runbook("r: preflight done"),
            Event::TookOver,
        ];
        let names: Vec<_> = events.iter().map(Event::name).collect();
        assert_eq!(names, Event::NAMES);
        for event in &events {
            event.emit(&metrics);
        }
        let text = metrics.encode();
        for name in Event::NAMES {
            assert!(
                text.contains(&format!("swarm_warden_events_total{{event=\"{name}\"}} 1")),
                "{name} not counted:\n{text}"
            );
        }
    }
}
