//! Actions running in their own tasks while the loop goes on: which may start beside
//! them (one membership change at a time; one action per service), and collecting those
//! that ended.

use futures::FutureExt;
use tokio::task::JoinHandle;

use super::error::ActError;
use crate::plan::{Action, PlannedAction};

/// What a running action changes in the controller's memory when it ends.
#[derive(Debug, Clone)]
pub(super) enum Remember {
    /// A membership change (even a half-done one changed membership).
    MembershipChange,
    /// A placement fix of this service: done, or rolled back from this spec with these
    /// workers (the planner holds the service while that rollback stands).
    PlacementFix {
        service_id: String,
        spec_hash: String,
        workers: std::collections::BTreeSet<String>,
    },
    /// Nothing.
    Nothing,
}

/// One running action.
#[derive(Debug)]
pub(super) struct Task {
    /// The action as planned, with its reason.
    pub entry: PlannedAction,
    pub remember: Remember,
    pub handle: JoinHandle<Result<String, ActError>>,
}

/// How a running action ended.
#[derive(Debug)]
pub(super) struct Ended {
    pub entry: PlannedAction,
    pub remember: Remember,
    pub result: Result<String, ActError>,
}

/// The running actions.
#[derive(Debug, Default)]
pub(super) struct Running {
    tasks: Vec<Task>,
}

impl Running {
    /// Adds a started action.
    pub fn push(&mut self, task: Task) {
        self.tasks.push(task);
    }

    /// How many run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// The services running actions change.
    pub fn services(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter_map(|t| service_of(&t.entry.action).map(str::to_owned))
            .collect()
    }

    /// Why `action` may not start now, if running actions stand in its way: one
    /// membership change at a time (the raft must converge between two), one action per
    /// service (a fix and its rollback or record must not race), and at most
    /// `max_rolling` placement updates rolling at once (`placement.max_updates_per_cycle`:
    /// each moves tasks onto the same workers).
    pub fn in_the_way(&self, action: &Action, max_rolling: usize) -> Option<String> {
        let rolling = self.tasks.iter().filter(|t| rolls(&t.entry.action)).count();
        // A rollback is never held by the budget: a stuck fix must not stay half-updated.
        if matches!(action, Action::EnforcePlacement(_)) && rolling >= max_rolling {
            return Some(format!(
                "{rolling} placement update(s) still rolling: placement.max_updates_per_cycle is {max_rolling}."
            ));
        }
        self.tasks.iter().find_map(|t| {
            let running = &t.entry.action;
            let clash = (running.is_membership_change() && action.is_membership_change())
                || service_of(running).is_some_and(|s| service_of(action) == Some(s));
            clash.then(|| {
                format!(
                    "{} of {} is still in progress: one {} at a time.",
                    running.kind(),
                    running.target_name(),
                    if running.is_membership_change() {
                        "membership change"
                    } else {
                        "action per service"
                    }
                )
            })
        })
    }

    /// The actions that have ended, taken out of the set (does not wait).
    pub fn ended(&mut self) -> Vec<Ended> {
        let (done, running): (Vec<Task>, Vec<Task>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(|t| t.handle.is_finished());
        self.tasks = running;
        done.into_iter()
            .map(|t| {
                let result = t.handle.now_or_never().unwrap_or_else(|| {
                    Ok(Err(ActError::Crashed(
                        "no answer from a finished task".into(),
                    )))
                });
                ended(t.entry, t.remember, result)
            })
            .collect()
    }

    /// Waits until every running action has ended (`--once`, shutdown).
    pub async fn all_ended(&mut self) -> Vec<Ended> {
        let mut out = Vec::new();
        for t in std::mem::take(&mut self.tasks) {
            let result = t.handle.await;
            out.push(ended(t.entry, t.remember, result));
        }
        out
    }
}

fn ended(
    entry: PlannedAction,
    remember: Remember,
    result: Result<Result<String, ActError>, tokio::task::JoinError>,
) -> Ended {
    Ended {
        entry,
        remember,
        result: result.unwrap_or_else(|e| Err(ActError::Crashed(e.to_string()))),
    }
}

/// Whether the action rolls a service's tasks (a placement fix or its rollback).
fn rolls(action: &Action) -> bool {
    matches!(
        action,
        Action::EnforcePlacement(_) | Action::RollBackPlacement(_)
    )
}

/// The service an action is about, if any.
fn service_of(action: &Action) -> Option<&str> {
    match action {
        Action::EnforcePlacement(s) | Action::RollBackPlacement(s) => Some(&s.id),
        Action::ClearPlacementRecord { service, .. } | Action::StartRunbook { service, .. } => {
            Some(&service.id)
        }
        Action::RemoveDeadManager(_) | Action::PromoteWorker(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NodeRef, ServiceRef};

    fn node(id: &str) -> NodeRef {
        NodeRef {
            id: id.into(),
            hostname: id.into(),
        }
    }

    fn service(id: &str) -> ServiceRef {
        ServiceRef {
            id: id.into(),
            name: id.into(),
        }
    }

    fn running(action: Action) -> Running {
        let mut r = Running::default();
        r.push(Task {
            entry: PlannedAction::new(action, "test".into(), None),
            remember: Remember::Nothing,
            handle: tokio::spawn(std::future::pending()),
        });
        r
    }

    #[tokio::test]
    async fn one_membership_change_at_a_time_and_one_action_per_service() {
        let r = running(Action::RemoveDeadManager(node("m2")));
        assert!(r
            .in_the_way(&Action::PromoteWorker(node("w1")), 1)
            .is_some());
        assert!(r
            .in_the_way(&Action::RemoveDeadManager(node("m3")), 1)
            .is_some());
        assert!(r
            .in_the_way(&Action::EnforcePlacement(service("web")), 1)
            .is_none());

        let r = running(Action::EnforcePlacement(service("web")));
        assert!(r
            .in_the_way(&Action::RollBackPlacement(service("web")), 2)
            .is_some());
        assert!(r
            .in_the_way(&Action::EnforcePlacement(service("db")), 2)
            .is_none());
        assert!(
            r.in_the_way(&Action::EnforcePlacement(service("db")), 1)
                .is_some(),
            "placement.max_updates_per_cycle bounds the updates rolling at once"
        );
        assert!(
            r.in_the_way(&Action::RemoveDeadManager(node("m2")), 1)
                .is_none(),
            "a dead manager is handled while a rolling update runs"
        );
    }

    #[tokio::test]
    async fn ended_actions_are_collected_without_waiting_for_the_others() {
        let mut r = running(Action::EnforcePlacement(service("web")));
        r.push(Task {
            entry: PlannedAction::new(Action::RemoveDeadManager(node("m2")), "test".into(), None),
            remember: Remember::MembershipChange,
            handle: tokio::spawn(async { Ok("removed".to_owned()) }),
        });
        tokio::task::yield_now().await;
        let mut ended = Vec::new();
        for _ in 0..100 {
            ended = r.ended();
            if !ended.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].result.as_deref().ok(), Some("removed"));
        assert_eq!(r.len(), 1, "the rolling update still runs");
    }
}
