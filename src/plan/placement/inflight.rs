//! Placement fixes left in flight (recorded in the swarm before their write): finished by
//! whichever process reads them next. Converged or overtaken (the spec changed since): the
//! record is cleared. Stuck (paused, or updating past `placement.update_timeout` by the
//! writer's clock): the service is rolled back to its previous spec.

use std::time::Duration;

use super::{Context, ServiceRef};
use crate::config::Mode;
use crate::model::{PlacementRecord, UpdateState};
use crate::plan::{human, Action, Finding, FindingKind, Plan, PlannedAction, Severity};

pub(super) fn plan_records(cx: &Context, plan: &mut Plan) {
    for record in &cx.snapshot.placement_records {
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
        .then(|| "placement.mode is audit: report only.".to_owned());
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
    if service.spec_hash != record.spec_hash {
        plan.actions.push(clear(
            "its spec changed since (rolled back, or updated by someone else)",
        ));
        return;
    }
    let elapsed = cx.now.duration_since(record.written_at).unwrap_or_default();
    let timeout = cx.policy.placement.update_timeout;
    let stuck = match service.update.as_ref().map(|u| u.state) {
        Some(UpdateState::Paused) => Some(format!(
            "its rolling update paused: \"{}\"",
            service
                .update
                .as_ref()
                .map(|u| u.message.as_str())
                .unwrap_or("")
        )),
        Some(UpdateState::Updating) if elapsed >= timeout => Some(format!(
            "its rolling update has run for {} (placement.update_timeout {})",
            human(elapsed),
            human(timeout)
        )),
        Some(UpdateState::Updating) => {
            plan.requeue_at_most(timeout - elapsed + Duration::from_secs(1));
            None
        }
        Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused) => None,
        Some(UpdateState::Completed | UpdateState::RollbackCompleted) | None => {
            plan.actions.push(clear("its rolling update finished"));
            return;
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
            "The placement fix of {} written at {} is stuck: {why}. It is rolled back to the previous spec.",
            service.name,
            humantime::format_rfc3339_seconds(record.written_at)
        ),
    ));
    let blocked_by = if audit.is_some() {
        audit
    } else if !cx.local_ok {
        Some(
            "This manager is not a reachable raft member: it may be cut off in a minority."
                .to_owned(),
        )
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

    use crate::config::{Mode, Policy};
    use crate::model::{PlacementRecord, Service, Snapshot, UpdateState, UpdateStatus};
    use crate::plan::quorum_test_support::{cluster, manager, t, worker};
    use crate::plan::{plan, Action, ActionStatus, FindingKind, Memory, Plan};

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
                started_at: None,
            }),
            ..Default::default()
        }];
        snap.placement_records = vec![PlacementRecord {
            config_id: "cfg".into(),
            service_id: "svc".into(),
            service_name: "web".into(),
            spec_hash: "written".into(),
            written_at: t(100),
        }];
        snap
    }

    fn plan_at(snap: &Snapshot, policy: &Policy) -> Plan {
        let mut memory = Memory::default();
        memory.observe(snap);
        plan(snap, policy, &memory, snap.observed_at)
    }

    fn kinds(plan: &Plan) -> Vec<(&'static str, ActionStatus)> {
        plan.actions
            .iter()
            .map(|a| (a.action.kind(), a.status))
            .collect()
    }

    #[test]
    fn a_paused_fix_left_in_flight_is_rolled_back() {
        let plan = plan_at(
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
        let plan = plan_at(
            &snapshot(Some(UpdateState::Updating), "written", 200),
            &policy,
        );
        assert!(kinds(&plan).is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(201)));
        let plan = plan_at(
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
            snapshot(Some(UpdateState::Completed), "written", 110),
            snapshot(None, "written", 110),
            snapshot(Some(UpdateState::Paused), "changed-by-someone", 900),
        ] {
            let plan = plan_at(&snap, &Policy::default());
            assert_eq!(
                kinds(&plan),
                [("clear-placement-record", ActionStatus::Planned)]
            );
        }
        let mut gone = snapshot(None, "written", 110);
        gone.services.clear();
        assert!(matches!(
            plan_at(&gone, &Policy::default()).actions[0].action,
            Action::ClearPlacementRecord { .. }
        ));
    }

    #[test]
    fn audit_mode_reports_a_stuck_fix_and_writes_nothing() {
        let mut policy = Policy::default();
        policy.placement.mode = Mode::Audit;
        let plan = plan_at(
            &snapshot(Some(UpdateState::Paused), "written", 110),
            &policy,
        );
        assert_eq!(
            kinds(&plan),
            [("roll-back-placement", ActionStatus::Blocked)]
        );
    }
}
