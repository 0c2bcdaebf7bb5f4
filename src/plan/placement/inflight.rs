//! Placement fixes left in flight (recorded in the swarm before their write): finished by
//! whichever process reads them next. Converged or overtaken (the spec changed since): the
//! record is cleared. Stuck (paused, or updating past `placement.update_timeout` by the
//! writer's clock): the service is rolled back to its previous spec.

use std::time::Duration;

use super::{Context, ServiceRef};
use crate::config::Mode;
use crate::model::{PlacementRecord, UpdateState};
use crate::plan::{
    human, Action, Block, BlockKind, Finding, FindingKind, Plan, PlannedAction, Severity,
};

/// How far apart the record's time (the writer's clock) and the update's start (the raft
/// leader's clock) may be for the running update to be the recorded fix: the write itself,
/// SwarmKit picking the update up, and clock skew between two hosts.
const SAME_UPDATE: Duration = Duration::from_secs(120);

/// A record younger than this is not cleared on a finished-looking update: right after the
/// write SwarmKit has not started the update yet (no update status).
const GRACE: Duration = Duration::from_secs(30);

pub(super) fn plan_records(cx: &Context, plan: &mut Plan) {
    let records = &cx.snapshot.placement_records;
    if let Some(error) = &records.error {
        plan.findings.push(Finding::new(
            FindingKind::PlacementRecordUnreadable,
            Severity::Warning,
            "cluster",
            format!("Placement records could not be read ({error}): placement writes nothing this round, so that no fix in flight is missed."),
        ));
    }
    for name in &records.unreadable {
        plan.findings.push(Finding::new(
            FindingKind::PlacementRecordUnreadable,
            Severity::Warning,
            name,
            format!("The placement record {name} cannot be read (a newer swarm-warden's, or edited by hand); it is left alone. If no swarm-warden is fixing that service: docker config rm {name}"),
        ));
    }
    for record in &records.records {
        plan_record(cx, record, plan);
    }
}

fn plan_record(cx: &Context, record: &PlacementRecord, plan: &mut Plan) {
    let service = cx
        .snapshot
        .services
        .iter()
        .find(|s| s.id == record.service_id);
    let service_ref = ServiceRef {
        id: record.service_id.clone(),
        name: service.map_or_else(|| record.service_name.clone(), |s| s.name.clone()),
    };
    let audit = (cx.policy.placement.mode == Mode::Audit)
        .then(|| Block::new(BlockKind::Audit, "placement.mode is audit: report only."));
    let clear = |why: &str| {
        PlannedAction::new(
            Action::ClearPlacementRecord {
                service: service_ref.clone(),
                config_id: record.config_id.clone(),
            },
            format!("The placement fix of {} is over: {why}.", service_ref.name),
            audit.clone(),
        )
    };
    let Some(service) = service else {
        plan.actions.push(clear("the service is gone"));
        return;
    };
    if record.spec_hash.is_empty() || service.spec_hash != record.spec_hash {
        plan.actions.push(clear(
            "its spec changed since (rolled back, or updated by someone else)",
        ));
        return;
    }
    let elapsed = cx.now.duration_since(record.written_at).unwrap_or_default();
    let timeout = cx.policy.placement.update_timeout;
    let update = service.update.as_ref();
    // The same spec can come back later by another hand (the compose file now carries the
    // constraint): only an update that started around the write is the recorded fix.
    let same_update = update.and_then(|u| u.started_at).is_some_and(|started| {
        let apart = started
            .duration_since(record.written_at)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or_default();
        apart <= SAME_UPDATE
    });
    let on_managers = cx.snapshot.tasks.iter().any(|t| {
        t.service_id == service.id
            && t.node_id
                .as_deref()
                .is_some_and(|n| cx.managers.contains_key(n))
    });
    let stuck = match update.map(|u| u.state) {
        _ if update.is_some() && !same_update && elapsed >= GRACE => {
            plan.actions.push(clear(
                "the service's running update is not the fix's (it started at another time)",
            ));
            return;
        }
        Some(UpdateState::Paused) => Some(format!(
            "its rolling update paused: \"{}\"",
            update.map(|u| u.message.as_str()).unwrap_or("")
        )),
        Some(UpdateState::Updating) if elapsed >= timeout => Some(format!(
            "its rolling update has run for {} (placement.update_timeout {})",
            human(elapsed),
            human(timeout)
        )),
        Some(UpdateState::Completed) | None if on_managers && elapsed >= timeout => Some(format!(
            "tasks still run on managers {} after the write (placement.update_timeout {})",
            human(elapsed),
            human(timeout)
        )),
        Some(UpdateState::Completed | UpdateState::RollbackCompleted) | None
            if !on_managers && elapsed >= GRACE =>
        {
            plan.actions.push(clear("its rolling update finished"));
            return;
        }
        Some(UpdateState::RollbackCompleted) => {
            plan.actions.push(clear("it was rolled back"));
            return;
        }
        Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused) => None,
        _ => {
            let next = if elapsed < GRACE {
                GRACE - elapsed
            } else {
                timeout.saturating_sub(elapsed)
            };
            plan.requeue_at_most(next + Duration::from_secs(1));
            None
        }
    };
    let Some(why) = stuck else {
        return;
    };
    plan.findings.push(Finding::new(
        FindingKind::PlacementUpdateStuck,
        Severity::Warning,
        &service.name,
        format!(
            "The placement fix of {} written at {} is stuck: {why}. Rolling it back to the previous spec restores the service.",
            service.name,
            humantime::format_rfc3339_seconds(record.written_at)
        ),
    ));
    let blocked_by = if audit.is_some() {
        audit
    } else if !cx.local_ok {
        Some(Block::new(
            BlockKind::LocalNotReachable,
            "This manager is not a reachable raft member: it may be cut off in a minority.",
        ))
    } else {
        None
    };
    plan.actions.push(PlannedAction::new(
        Action::RollBackPlacement(service_ref),
        format!(
            "The placement fix of {} is stuck ({why}): a rollback restores the spec it had before.",
            service.name
        ),
        blocked_by,
    ));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::plan_of;
    use crate::config::{Mode, Policy};
    use crate::model::{PlacementRecord, Service, Snapshot, UpdateState, UpdateStatus};
    use crate::plan::quorum_test_support::{cluster, manager, t, worker};
    use crate::plan::{Action, ActionStatus, FindingKind, Plan};

    fn snapshot(state: Option<UpdateState>, spec_hash: &str, at: u64) -> Snapshot {
        let mut snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                worker("w1"),
            ],
            t(at),
        );
        snap.services = vec![Service {
            id: "svc".into(),
            name: "web".into(),
            constraints: vec!["node.role != manager".into()],
            spec_hash: spec_hash.into(),
            update: state.map(|state| UpdateStatus {
                state,
                message: "update paused due to failure".into(),
                started_at: Some(t(101)),
            }),
            ..Default::default()
        }];
        snap.placement_records.records = vec![PlacementRecord {
            config_id: "cfg".into(),
            service_id: "svc".into(),
            service_name: "web".into(),
            spec_hash: "written".into(),
            written_at: t(100),
        }];
        snap
    }

    fn kinds(plan: &Plan) -> Vec<(&'static str, ActionStatus)> {
        plan.actions
            .iter()
            .map(|a| (a.action.kind(), a.status))
            .collect()
    }

    #[test]
    fn a_paused_fix_left_in_flight_is_rolled_back() {
        let plan = plan_of(
            &snapshot(Some(UpdateState::Paused), "written", 110),
            &Policy::default(),
        );
        assert_eq!(
            kinds(&plan),
            [("roll-back-placement", ActionStatus::Planned)]
        );
        assert!(plan
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::PlacementUpdateStuck));
    }

    #[test]
    fn an_updating_fix_is_given_update_timeout_from_its_write() {
        let policy = Policy::default(); // update_timeout 5m
        let plan = plan_of(
            &snapshot(Some(UpdateState::Updating), "written", 200),
            &policy,
        );
        assert!(kinds(&plan).is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(201)));
        let plan = plan_of(
            &snapshot(Some(UpdateState::Updating), "written", 401),
            &policy,
        );
        assert_eq!(
            kinds(&plan),
            [("roll-back-placement", ActionStatus::Planned)]
        );
    }

    #[test]
    fn a_finished_or_overtaken_fix_only_has_its_record_cleared() {
        for snap in [
            snapshot(Some(UpdateState::Completed), "written", 140),
            snapshot(None, "written", 140),
            snapshot(Some(UpdateState::Paused), "changed-by-someone", 900),
        ] {
            let plan = plan_of(&snap, &Policy::default());
            assert_eq!(
                kinds(&plan),
                [("clear-placement-record", ActionStatus::Planned)]
            );
        }
        // Right after the write SwarmKit has not started the update yet: kept.
        assert!(kinds(&plan_of(
            &snapshot(None, "written", 110),
            &Policy::default()
        ))
        .is_empty());
        let mut gone = snapshot(None, "written", 110);
        gone.services.clear();
        assert!(matches!(
            plan_of(&gone, &Policy::default()).actions[0].action,
            Action::ClearPlacementRecord { .. }
        ));
    }

    #[test]
    fn the_same_spec_deployed_later_by_someone_else_is_not_taken_for_the_fix() {
        // The compose file now carries the constraint: the spec hashes the same, but its
        // update started an hour after the record.
        let mut snap = snapshot(Some(UpdateState::Paused), "written", 4000);
        snap.services[0].update.as_mut().unwrap().started_at = Some(t(3700));
        let plan = plan_of(&snap, &Policy::default());
        assert_eq!(
            kinds(&plan),
            [("clear-placement-record", ActionStatus::Planned)]
        );
    }

    #[test]
    fn unreadable_or_unlisted_records_are_reported_and_hold_placement_writes() {
        let mut snap = snapshot(Some(UpdateState::Completed), "written", 140);
        snap.placement_records.records.clear();
        snap.placement_records.unreadable = vec!["swarm-warden-placement-x".into()];
        snap.placement_records.error = Some("listing configs failed: 500".into());
        snap.services.push(Service {
            id: "other".into(),
            name: "api".into(),
            ..Default::default()
        });
        let plan = plan_of(&snap, &Policy::default());
        let unreadable = plan
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::PlacementRecordUnreadable)
            .count();
        assert_eq!(unreadable, 2);
        assert_eq!(plan.runnable().count(), 0, "{:?}", plan.actions);
    }

    #[test]
    fn audit_mode_reports_a_stuck_fix_and_writes_nothing() {
        let mut policy = Policy::default();
        policy.placement.mode = Mode::Audit;
        let plan = plan_of(
            &snapshot(Some(UpdateState::Paused), "written", 110),
            &policy,
        );
        assert_eq!(
            kinds(&plan),
            [("roll-back-placement", ActionStatus::Blocked)]
        );
    }
}
