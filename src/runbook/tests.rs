//! Runbook steps as a table: each (journal, view) pair gives the expected next journal and
//! effects, failure paths included; and properties over arbitrary views.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::transition::job_name;
use super::*;
use crate::config::Policy;
use crate::model::run_view::{JobTaskState, JobView, ObservedMount, RunView, ServiceView};
use crate::model::{Mount, Service, ServiceMode, Snapshot, VolumeTelemetry};
use crate::plan::quorum_test_support::{cluster, manager, t, worker};
use crate::plan::volumes::EFS_ID_LABEL;

/// The run's target volume: the source's name, the suffix, the run's start (`t(0)`).
const TARGET: &str = "promdata-ebs-1000000";
const ORIGINAL: &str = r#"{"Target":"/prometheus","Source":"promdata","Type":"volume"}"#;

fn policy() -> Policy {
    let mut p = Policy::default();
    p.volumes.require_approval = false;
    p
}

fn efs_mount(source: &str) -> Mount {
    Mount {
        kind: "volume".into(),
        source: source.into(),
        target: "/prometheus".into(),
        driver: "local".into(),
        driver_options: BTreeMap::from([("type".into(), "nfs4".into())]),
        labels: BTreeMap::from([(EFS_ID_LABEL.into(), "fs-1".into())]),
        read_only: false,
    }
}

fn snapshot() -> Snapshot {
    // The service runs on w1 (or w3); m1 is a manager.
    let mut s = cluster(vec![manager("m1", true), worker("w1"), worker("w3")], t(0));
    s.services = vec![Service {
        id: "svc".into(),
        version: 1,
        name: "prom".into(),
        mode: ServiceMode::Replicated { replicas: 1 },
        image: "prom/prometheus".into(),
        mounts: vec![efs_mount("promdata")],
        ..Default::default()
    }];
    s.telemetry = vec![VolumeTelemetry {
        efs_id: "fs-1".into(),
        credits: Some(0.0),
        permitted: Some(50e3),
        metered_rate: Some(1e6),
        storage: Some(1e9),
        ..Default::default()
    }];
    s
}

fn journal(kind: RunbookKind) -> Journal {
    Journal::new(kind, "fs-1", "svc", "prom", "promdata", steps(kind), t(0))
}

/// The service as a view shows it: `replicas` wanted, `running`, `unsettled`, mounting
/// `source` at /prometheus.
fn service(replicas: u64, running: usize, unsettled: usize, source: &str) -> ServiceView {
    ServiceView {
        replicas: Some(replicas),
        spec_hash: "h0".into(),
        running,
        unsettled,
        mounts: vec![ObservedMount {
            mount: efs_mount(source),
            spec: if source == "promdata" {
                ORIGINAL.into()
            } else {
                format!(r#"{{"Target":"/prometheus","Source":"{source}"}}"#)
            },
        }],
        nodes: if running > 0 {
            vec!["w1".into()]
        } else {
            vec![]
        },
        constraints: vec![],
    }
}

fn view(service: ServiceView, job: Option<&[JobTaskState]>) -> RunView {
    RunView {
        service: Some(service),
        job: job.map(|tasks| JobView {
            tasks: tasks.to_vec(),
        }),
    }
}

/// Runs one transition at `secs`; panics when the step waits.
fn step(j: &Journal, v: &RunView, secs: u64) -> Transition {
    advance(j, v, &snapshot(), &policy(), t(secs))
        .unwrap_or_else(|| panic!("step {:?} waited", j.current().map(|i| &j.steps[i].name)))
}

fn waits(j: &Journal, v: &RunView, secs: u64) -> bool {
    advance(j, v, &snapshot(), &policy(), t(secs)).is_none()
}

fn current(j: &Journal) -> &str {
    j.current().map_or("-", |i| j.steps[i].name.as_str())
}

/// A migration driven to the start of `name`, along the happy path.
fn migration_at(name: &str) -> Journal {
    let mut j = journal(RunbookKind::EbsMigration);
    let up = view(service(1, 1, 0, "promdata"), None);
    let down = view(service(0, 0, 0, "promdata"), None);
    let mut secs = 1;
    while current(&j) != name {
        let running = |i: usize| j.steps[i].state == StepState::Running;
        let v = match current(&j) {
            "preflight" | "approval" | "create-target" => up.clone(),
            "scale-down" if !running(3) => up.clone(),
            "copy" if running(4) => view(
                service(0, 0, 0, "promdata"),
                Some(&[JobTaskState::Complete]),
            ),
            "swap-mount" if running(5) => view(service(0, 0, 0, TARGET), None),
            "scale-up" if running(6) => view(service(1, 1, 0, TARGET), None),
            _ => down.clone(),
        };
        j = step(&j, &v, secs).journal;
        secs += 1;
        assert!(secs < 100, "never reached {name}: {j:#?}");
    }
    j
}

#[test]
fn a_migration_walks_every_step_recording_before_each_effect() {
    let p = policy();
    let mut j = journal(RunbookKind::EbsMigration);
    let up = view(service(1, 1, 0, "promdata"), None);

    // preflight, approval (not required), create-target: no effects.
    for expected in ["preflight", "approval", "create-target"] {
        assert_eq!(current(&j), expected);
        let next = step(&j, &up, 1);
        assert_eq!(next.effects, vec![]);
        j = next.journal;
    }
    assert_eq!(j.fact("replicas"), Some("1"));
    assert_eq!(j.fact("target_volume"), Some(TARGET));
    assert_eq!(j.fact("mount_target"), Some("/prometheus"));

    // scale-down: the downtime is recorded with the scale, then it waits for every
    // container to stop, not only for the desired state.
    let next = step(&j, &up, 10);
    assert_eq!(
        next.effects,
        vec![Effect::Scale {
            service_id: "svc".into(),
            replicas: 0,
            expect: None,
        }]
    );
    j = next.journal;
    assert_eq!(j.fact("downtime_from"), Some(unix(10).as_str()));
    // Where the data is, and where the service will run, are recorded before the scale:
    // the default target (`local`) is on the copy's node's disk.
    assert_eq!(j.fact("source_node"), Some("w1"));
    assert_eq!(j.fact("pin"), Some("node.id==w1"));
    assert!(j.fact("placement").unwrap().contains("pinned to that node"));
    assert!(waits(&j, &view(service(0, 0, 1, "promdata"), None), 11));
    let next = step(&j, &view(service(0, 0, 0, "promdata"), None), 12);
    assert_eq!(next.effects, vec![]);
    j = next.journal;

    // copy: the job name is recorded first, then the job created, then removed once done.
    let down = view(service(0, 0, 0, "promdata"), None);
    let next = step(&j, &down, 13);
    assert_eq!(next.effects, vec![]);
    j = next.journal;
    let job = job_name(&format!("{}-copy", j.run_id), 1);
    assert_eq!(j.fact("copy_job"), Some(job.as_str()));
    let next = step(&j, &down, 14);
    assert_eq!(next.journal, j, "creating the job changes no journal");
    let Effect::CreateJob(created) = &next.effects[0] else {
        panic!("{:?}", next.effects)
    };
    assert_eq!(created.name, job);
    assert_eq!(
        created
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.source.as_str(), m.read_only))
            .collect::<Vec<_>>(),
        vec![("/src", "promdata", true), ("/dst", TARGET, false)]
    );
    assert_eq!(created.mounts[1].driver, p.volumes.migration.driver);
    assert_eq!(created.constraints, vec!["node.id==w1".to_owned()]);
    let running_job = view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Active]));
    assert!(waits(&j, &running_job, 15));
    let done = view(
        service(0, 0, 0, "promdata"),
        Some(&[JobTaskState::Complete]),
    );
    let next = step(&j, &done, 16);
    assert_eq!(next.effects, vec![Effect::RemoveJob { name: job }]);
    j = next.journal;

    // swap-mount: the original mount is saved before the swap is sent.
    let next = step(&j, &down, 17);
    assert_eq!(next.effects, vec![]);
    j = next.journal;
    assert_eq!(j.fact("original_mount"), Some(ORIGINAL));
    let next = step(&j, &down, 18);
    assert_eq!(
        next.effects,
        vec![Effect::SwapMount {
            service_id: "svc".into(),
            path: "/prometheus".into(),
            from: "promdata".into(),
            to: TARGET.into(),
            driver: p.volumes.migration.driver.clone(),
            options: p.volumes.migration.options.clone(),
            spec_hash: "h0".into(),
            pin: Some("node.id==w1".into()),
        }]
    );
    let swapped = view(service(0, 0, 0, TARGET), None);
    let next = step(&j, &swapped, 19);
    assert_eq!(next.effects, vec![]);
    j = next.journal;
    assert_eq!(j.fact("swapped"), Some("true"));

    // scale-up, then verify for verify_for without a break.
    let next = step(&j, &swapped, 20);
    assert_eq!(
        next.effects,
        vec![Effect::Scale {
            service_id: "svc".into(),
            replicas: 1,
            expect: Some(0),
        }]
    );
    j = next.journal;
    let back = view(service(1, 1, 0, TARGET), None);
    j = step(&j, &back, 30).journal;
    assert_eq!(current(&j), "verify");
    j = step(&j, &back, 31).journal;
    assert_eq!(j.fact("verify_since"), Some(unix(31).as_str()));
    assert!(waits(
        &j,
        &back,
        31 + p.volumes.migration.verify_for.as_secs() - 1
    ));
    let next = step(&j, &back, 31 + p.volumes.migration.verify_for.as_secs());
    assert_eq!(next.journal.status, RunStatus::Succeeded);
    assert_eq!(next.journal.fact("downtime_seconds"), Some("20"));
}

fn unix(secs: u64) -> String {
    super::journal::unix(t(secs)).to_string()
}

/// One row of the failure table: a journal, a view, and what must come of it.
struct Row {
    what: &'static str,
    journal: Journal,
    view: RunView,
    status: RunStatus,
    effects: Vec<Effect>,
}

fn rollback_scale() -> Effect {
    Effect::Scale {
        service_id: "svc".into(),
        replicas: 1,
        expect: Some(0),
    }
}

fn restore() -> Effect {
    Effect::RestoreMount {
        service_id: "svc".into(),
        path: "/prometheus".into(),
        current: TARGET.into(),
        original: ORIGINAL.into(),
        unpin: Some("node.id==w1".into()),
    }
}

fn exhausted(mut j: Journal) -> Journal {
    let i = j.current().expect("a step");
    j.steps[i].attempts = policy().volumes.step_attempts;
    j
}

fn with_spec(mut s: ServiceView, hash: &str) -> ServiceView {
    s.spec_hash = hash.into();
    s
}

#[test]
fn every_failure_path_gives_the_expected_journal_and_effects() {
    let copying = migration_at("copy");
    let copy_running = step(&copying, &view(service(0, 0, 0, "promdata"), None), 50).journal;
    let job = copy_running.fact("copy_job").unwrap_or_default().to_owned();
    let swap = migration_at("swap-mount");
    let swap_recorded = step(&swap, &view(service(0, 0, 0, "promdata"), None), 50).journal;
    let mut swapped_unrecorded = swap.clone();
    swapped_unrecorded.record("swapped", "true");
    let verify = migration_at("verify");
    let verifying = step(&verify, &view(service(1, 0, 0, TARGET), None), 50).journal;
    let rolling = RunStatus::RollingBack;
    let rows = vec![
        Row {
            what: "the service is scaled back during the copy: stop and roll back",
            journal: copy_running.clone(),
            view: view(service(2, 1, 0, "promdata"), Some(&[JobTaskState::Active])),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "scaled up and down again during the copy: the spec changed, stop",
            journal: copy_running.clone(),
            view: view(
                with_spec(service(0, 0, 0, "promdata"), "h1"),
                Some(&[JobTaskState::Complete]),
            ),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "a task still starting while the copy runs: stop",
            journal: copy_running.clone(),
            view: view(service(0, 0, 1, "promdata"), Some(&[JobTaskState::Active])),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "a copy job that failed is removed and retried",
            journal: copy_running.clone(),
            view: view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Failed])),
            status: RunStatus::Running,
            effects: vec![Effect::RemoveJob { name: job.clone() }],
        },
        Row {
            what: "the last copy attempt failed: its job removed, the run rolls back",
            journal: exhausted(copy_running.clone()),
            view: view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Failed])),
            status: rolling,
            effects: vec![Effect::RemoveJob { name: job }],
        },
        Row {
            what: "the service is gone during the copy",
            journal: copy_running,
            view: RunView::default(),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "the mount changed before the swap: nothing recorded, nothing swapped",
            journal: swap.clone(),
            view: view(service(0, 0, 0, "otherdata"), None),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "the mount changed during the swap",
            journal: swap_recorded.clone(),
            view: view(service(0, 0, 0, "otherdata"), None),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "scaled back right before the swap",
            journal: swap_recorded.clone(),
            view: view(service(1, 1, 0, "promdata"), None),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "the spec changed right before the swap",
            journal: swap_recorded,
            view: view(with_spec(service(0, 0, 0, "promdata"), "h1"), None),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "swapped but the original was never recorded (an older journal)",
            journal: exhausted(swapped_unrecorded),
            view: RunView::default(),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "verify never gets its replicas: the last attempt rolls back",
            journal: exhausted(verifying.clone()),
            view: view(service(1, 0, 0, TARGET), None),
            status: rolling,
            effects: vec![],
        },
        Row {
            what: "a stack deploy wrote the old mount back during verify",
            journal: verifying,
            view: view(service(1, 1, 0, "promdata"), None),
            status: rolling,
            effects: vec![],
        },
    ];
    // Past every timeout of the step (from its start, or from 0), so waiting rows act.
    let late = |r: &Row| {
        let m = policy().volumes.migration;
        let started = r
            .journal
            .current()
            .and_then(|i| r.journal.steps[i].started_at)
            .map_or(0, |s| s - super::journal::unix(t(0)));
        started + m.scale_timeout.as_secs() + m.verify_for.as_secs() + 1
    };
    for row in rows {
        let next = step(&row.journal, &row.view, late(&row));
        assert_eq!(
            next.journal.status, row.status,
            "{}: {}",
            row.what, next.note
        );
        assert_eq!(next.effects, row.effects, "{}: {}", row.what, next.note);
    }
}

/// A failed migration's journal, rolling back from `step`.
fn rolling_back_from(step_name: &str, view_at_failure: RunView) -> Journal {
    let j = exhausted(migration_at(step_name));
    let j = if j.steps[j.current().expect("step")].state == StepState::Pending {
        step(&j, &view_at_failure, 50).journal
    } else {
        j
    };
    let next = step(&exhausted(j), &RunView::default(), 10_000);
    assert_eq!(next.journal.status, RunStatus::RollingBack, "{}", next.note);
    next.journal
}

#[test]
fn a_rollback_restores_the_original_mount_then_the_replicas_and_says_what_it_left() {
    // Failed scaling back up: the new volume is mounted, the service is at 0.
    let j = rolling_back_from("scale-up", view(service(0, 0, 0, TARGET), None));
    let on_target = view(service(0, 0, 0, TARGET), None);
    let next = step(&j, &on_target, 10_001);
    assert_eq!(next.effects, vec![restore()]);
    assert_eq!(next.journal.status, RunStatus::RollingBack);
    // A crash before the answer: the next turn asks for the same again.
    assert_eq!(
        step(&next.journal, &on_target, 10_002).effects,
        vec![restore()]
    );
    let restored = step(
        &next.journal,
        &view(service(0, 0, 0, "promdata"), None),
        10_003,
    );
    assert_eq!(
        restored.effects,
        vec![rollback_scale()],
        "then the replicas"
    );
    let back = step(
        &restored.journal,
        &view(service(1, 1, 0, "promdata"), None),
        10_004,
    );
    assert_eq!(back.effects, vec![]);
    assert_eq!(back.journal.status, RunStatus::Failed);
    assert!(
        back.journal
            .fact("rollback")
            .is_some_and(|r| r.starts_with("done")),
        "{:?}",
        back.journal.fact("rollback")
    );

    // Failed in verify: the service has run on the new volume. Swapping back would
    // strand its newest writes: nothing is changed, the operator is told.
    let j = rolling_back_from("verify", view(service(1, 1, 0, TARGET), None));
    let stays = step(&j, &view(service(1, 1, 0, TARGET), None), 10_001);
    assert_eq!(stays.effects, vec![]);
    assert_eq!(stays.journal.status, RunStatus::Failed);
    let said = stays.journal.fact("rollback").unwrap_or_default();
    assert!(
        said.starts_with("incomplete") && said.contains("by hand"),
        "{said}"
    );

    // Failed in the copy: the job removed with the rest, scaled back up from the 0 it
    // set, onto the original mount.
    let j = rolling_back_from("copy", view(service(0, 0, 0, "promdata"), None));
    let job_left = view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Active]));
    let next = step(&j, &job_left, 10_001);
    assert!(
        matches!(
            next.effects[..],
            [Effect::RemoveJob { .. }, Effect::Scale { .. }]
        ),
        "{:?}",
        next.effects
    );
    let next = step(&j, &view(service(0, 0, 0, "promdata"), None), 10_002);
    assert_eq!(next.effects, vec![rollback_scale()]);
    let done = step(
        &next.journal,
        &view(service(1, 1, 0, "promdata"), None),
        10_003,
    );
    assert_eq!(done.journal.status, RunStatus::Failed);

    // Someone else set a replica count: theirs stays.
    let theirs = step(&j, &view(service(3, 3, 0, "promdata"), None), 10_002);
    assert_eq!(theirs.effects, vec![]);
    assert_eq!(theirs.journal.status, RunStatus::Failed);

    // A mount that is neither: never scaled up onto it; the rollback says what it left.
    let neither = step(&j, &view(service(0, 0, 0, "otherdata"), None), 10_002);
    assert_eq!(neither.effects, vec![]);
    assert_eq!(neither.journal.status, RunStatus::Failed);
    let said = neither.journal.fact("rollback").unwrap_or_default();
    assert!(
        said.contains("left at 0 replicas") && said.contains("otherdata"),
        "{said}"
    );
}

#[test]
fn a_new_job_attempt_waits_until_the_previous_job_is_gone_and_its_container_stopped() {
    let copying = migration_at("copy");
    let down = view(service(0, 0, 0, "promdata"), None);
    let running = step(&copying, &down, 50).journal;
    let first = running.fact("copy_job").unwrap_or_default().to_owned();
    let failed = step(
        &running,
        &view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Failed])),
        60,
    );
    assert_eq!(
        failed.effects,
        vec![Effect::RemoveJob {
            name: first.clone()
        }]
    );
    let retry_at = 60 + policy().controller.backoff_min.as_secs();
    // Its removal failed: removed again before anything else.
    let still = view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Active]));
    let again = step(&failed.journal, &still, retry_at);
    assert_eq!(
        again.effects,
        vec![Effect::RemoveJob {
            name: first.clone()
        }]
    );
    assert_eq!(again.journal.fact("copy_job"), Some(first.as_str()));
    // Gone: its container gets the grace period before the next job starts.
    let gone = step(&failed.journal, &down, retry_at);
    assert_eq!(gone.journal.fact("copy_job"), Some(first.as_str()));
    assert!(waits(&gone.journal, &down, retry_at + 29));
    let second = step(&gone.journal, &down, retry_at + 30);
    assert_ne!(second.journal.fact("copy_job"), Some(first.as_str()));
    assert_eq!(second.journal.steps[4].attempts, 2);
}

#[test]
fn a_service_with_replicas_sharing_the_volume_is_migrated_only_to_a_shared_target() {
    let mut snap = snapshot();
    snap.services[0].mode = ServiceMode::Replicated { replicas: 3 };
    let v = view(service(3, 3, 0, "promdata"), None);
    let j = journal(RunbookKind::EbsMigration);
    let refused = advance(&j, &v, &snap, &policy(), t(1)).expect("preflight");
    assert_eq!(
        refused.journal.status,
        RunStatus::Failed,
        "{}",
        refused.note
    );
    assert!(refused.note.contains("shared_target"), "{}", refused.note);
    let mut p = policy();
    p.volumes.migration.shared_target = true;
    let allowed = advance(&j, &v, &snap, &p, t(1)).expect("preflight");
    assert_eq!(allowed.journal.fact("replicas"), Some("3"));
}

/// Issue 14 items 1 and 6: the copy runs where the service ran (its volume provably is
/// there), and the service is pinned to where the copy filled the target.
#[test]
fn the_copy_runs_where_the_service_ran_and_a_service_nobody_can_place_is_not_touched() {
    let mut j = migration_at("scale-down");
    // No task runs (crash-looping, or between restarts): the data's node is unknown, and
    // nothing is changed — no scale, nothing to roll back.
    let next = step(&j, &view(service(1, 0, 1, "promdata"), None), 50);
    assert_eq!(next.effects, vec![]);
    assert_eq!(next.journal.status, RunStatus::Failed, "{}", next.note);
    assert!(next.note.contains("cannot be told"), "{}", next.note);
    assert_eq!(next.journal.fact("downtime_from"), None);
    assert_eq!(
        next.journal.fact("rollback"),
        Some("nothing to undo: the service was not touched")
    );

    // A shared target pins nothing, but the copy still runs on the service's node.
    let mut p = policy();
    p.volumes.migration.shared_target = true;
    let mut up = service(1, 1, 0, "promdata");
    up.nodes = vec!["w3".into()];
    j = advance(&j, &view(up, None), &snapshot(), &p, t(50))
        .expect("scale-down")
        .journal;
    assert_eq!(j.fact("source_node"), Some("w3"));
    assert_eq!(j.fact("pin"), Some(""));
    let mut j = migration_at("copy");
    j.record("source_node", "w3");
    let down = view(service(0, 0, 0, "promdata"), None);
    j = step(&j, &down, 60).journal;
    let Effect::CreateJob(job) = &step(&j, &down, 61).effects[0] else {
        panic!("no job")
    };
    assert_eq!(job.constraints, vec!["node.id==w3".to_owned()]);
}

/// A service on a manager is not migrated (its data and pin would stay there for good);
/// a copy whose node is drained or gone gives up at once instead of waiting out its
/// timeout with the service down.
#[test]
fn no_copy_on_a_manager_or_on_a_node_that_cannot_run_it() {
    let j = migration_at("scale-down");
    let mut on_manager = service(1, 1, 0, "promdata");
    on_manager.nodes = vec!["m1".into()];
    let next = step(&j, &view(on_manager, None), 50);
    assert_eq!(next.effects, vec![]);
    assert_eq!(next.journal.status, RunStatus::Failed);
    assert!(next.note.contains("manager"), "{}", next.note);

    let j = migration_at("copy");
    let mut snap = snapshot();
    snap.nodes
        .iter_mut()
        .filter(|n| n.id == "w1")
        .for_each(|n| n.availability = crate::model::Availability::Drain);
    let down = view(service(0, 0, 0, "promdata"), None);
    let next = advance(&j, &down, &snap, &policy(), t(60)).expect("copy");
    assert_eq!(next.journal.status, RunStatus::RollingBack, "{}", next.note);
    assert!(next.note.contains("cannot run there"), "{}", next.note);
}

/// A pin the service already had (the user's) is not added by the swap, nor removed by a
/// rollback.
#[test]
fn a_pin_the_service_already_had_is_never_removed() {
    let j = migration_at("swap-mount");
    let mut down = service(0, 0, 0, "promdata");
    down.constraints = vec!["node.id == w1".into()];
    let j = step(&j, &view(down.clone(), None), 60).journal;
    assert_eq!(j.fact("pin_added"), Some("false"));
    let swap = step(&j, &view(down, None), 61);
    let Effect::SwapMount { pin, .. } = &swap.effects[0] else {
        panic!("{:?}", swap.effects)
    };
    assert_eq!(pin, &None);
    // The swap is seen; then the run fails before the service ran on the new volume.
    let mut swapped = service(0, 0, 0, TARGET);
    swapped.constraints = vec!["node.id == w1".into()];
    let j = step(&j, &view(swapped.clone(), None), 62).journal;
    let j = exhausted(j);
    let mut failing = swapped.clone();
    failing.replicas = Some(1);
    let j = step(&j, &view(failing, None), 63).journal;
    let mut stuck = swapped;
    stuck.replicas = Some(1);
    stuck.unsettled = 1;
    let mut j = j;
    let at = 63 + policy().volumes.migration.scale_timeout.as_secs() + 1;
    j = step(&j, &view(stuck.clone(), None), at).journal;
    assert_eq!(j.status, RunStatus::RollingBack);
    let undo = step(&j, &view(stuck, None), at + 1);
    let Some(Effect::RestoreMount { unpin, .. }) = undo
        .effects
        .iter()
        .find(|e| matches!(e, Effect::RestoreMount { .. }))
    else {
        panic!("{:?}", undo.effects)
    };
    assert_eq!(unpin, &None);
}

#[test]
fn a_service_at_zero_replicas_is_never_migrated() {
    let mut snap = snapshot();
    snap.services[0].mode = ServiceMode::Replicated { replicas: 0 };
    let next = advance(
        &journal(RunbookKind::EbsMigration),
        &view(service(0, 0, 0, "promdata"), None),
        &snap,
        &policy(),
        t(1),
    )
    .expect("preflight");
    assert_eq!(next.journal.status, RunStatus::Failed, "{}", next.note);
}

#[test]
fn a_failed_rollback_write_is_tried_again_after_a_backoff_then_left_to_the_operator() {
    let p = policy();
    let snap = snapshot();
    let mut j = rolling_back_from("scale-up", view(service(0, 0, 0, TARGET), None));
    let v = view(service(0, 0, 0, TARGET), None);
    for n in 1..=p.volumes.step_attempts {
        let next = step(&j, &v, 20_000 * u64::from(n));
        assert_eq!(next.effects, vec![restore()]);
        let failed = effect_failed(
            &next.journal,
            &restore(),
            "HTTP 500",
            &v,
            &snap,
            &p,
            t(20_000 * u64::from(n)),
        )
        .expect("a transition");
        j = failed.journal;
        if n < p.volumes.step_attempts {
            assert_eq!(j.status, RunStatus::RollingBack);
            assert!(
                waits(&j, &v, 20_000 * u64::from(n)),
                "not before the backoff"
            );
        }
    }
    assert_eq!(j.status, RunStatus::Failed);
    assert!(
        j.fact("rollback").is_some_and(|r| r.contains("by hand")),
        "{j:#?}"
    );
}

#[test]
fn a_lost_answer_never_makes_a_second_job_or_undoes_a_swap() {
    let p = policy();
    let snap = snapshot();
    // The copy job's create failed, maybe after it was created: same step, same job name.
    let copying = migration_at("copy");
    let down = view(service(0, 0, 0, "promdata"), None);
    let running = step(&copying, &down, 50).journal;
    let create = step(&running, &down, 51);
    let Effect::CreateJob(job) = &create.effects[0] else {
        panic!("{:?}", create.effects)
    };
    let failed = effect_failed(
        &running,
        &create.effects[0],
        "timeout",
        &down,
        &snap,
        &p,
        t(52),
    )
    .expect("a transition");
    assert_eq!(failed.journal.fact("copy_job"), Some(job.name.as_str()));
    assert_eq!(current(&failed.journal), "copy");
    assert_eq!(failed.journal.steps[4].state, StepState::Running);
    let created = view(service(0, 0, 0, "promdata"), Some(&[JobTaskState::Active]));
    assert!(waits(&failed.journal, &created, 52), "backs off first");
    assert!(
        waits(&failed.journal, &created, 10_000),
        "the job it created after all runs: no second one"
    );

    // A swap sent, its answer lost, the attempt failed: the next attempt sees it done.
    let swap = migration_at("swap-mount");
    let recorded = step(&swap, &down, 50).journal;
    let mut retry = recorded.clone();
    retry.steps[5].state = StepState::Pending;
    let done = step(&retry, &view(service(0, 0, 0, TARGET), None), 60);
    assert_eq!(done.journal.fact("swapped"), Some("true"));
    assert_eq!(current(&done.journal), "scale-up");
}

#[test]
fn scale_down_waits_for_stopping_containers_and_fails_after_its_timeout() {
    let j = migration_at("scale-down");
    let j = step(&j, &view(service(1, 1, 0, "promdata"), None), 50).journal;
    let flushing = view(service(0, 0, 1, "promdata"), None);
    let timeout = policy().volumes.migration.scale_timeout.as_secs();
    assert!(waits(&j, &flushing, 50 + timeout));
    let next = step(&j, &flushing, 51 + timeout);
    assert_eq!(next.effects, vec![]);
    let i = next.journal.current().expect("step");
    assert_eq!(next.journal.steps[i].state, StepState::Pending);
    assert!(
        next.journal.steps[i].retry_at.is_some(),
        "retried after a backoff"
    );
    assert!(next.note.contains("1 not ended"), "{}", next.note);
    assert!(
        waits(&next.journal, &flushing, 52 + timeout),
        "not before retry_at"
    );
}

#[test]
fn a_verify_break_is_recorded_and_restarts_the_clock() {
    let j = migration_at("verify");
    let up = view(service(1, 1, 0, TARGET), None);
    let j = step(&j, &up, 50).journal;
    assert!(j.fact("verify_since").is_some());
    let j = step(&j, &view(service(1, 0, 0, TARGET), None), 60).journal;
    assert_eq!(j.fact("verify_since"), None);
    assert_eq!(j.fact("verify_breaks"), Some("1"));
    let j = step(&j, &up, 70).journal;
    assert_eq!(j.fact("verify_since"), Some(unix(70).as_str()));
}

#[test]
fn a_failed_scale_is_an_attempt_with_backoff_and_a_failed_job_removal_changes_nothing() {
    let p = policy();
    let snap = snapshot();
    let j = migration_at("scale-down");
    let began = step(&j, &view(service(1, 1, 0, "promdata"), None), 50);
    let effect = began.effects[0].clone();
    let v = view(service(1, 1, 0, "promdata"), None);
    let failed = effect_failed(&began.journal, &effect, "HTTP 500", &v, &snap, &p, t(51))
        .expect("a transition");
    let i = failed.journal.current().expect("step");
    assert_eq!(failed.journal.steps[i].state, StepState::Pending);
    assert!(failed.journal.steps[i].detail.contains("HTTP 500"));
    assert_eq!(
        failed.journal.steps[i].retry_at,
        Some(super::journal::unix(t(51)) + p.controller.backoff_min.as_secs())
    );
    assert_eq!(
        effect_failed(
            &began.journal,
            &Effect::RemoveJob { name: "x".into() },
            "gone",
            &v,
            &snap,
            &p,
            t(51)
        ),
        None,
        "a job that could not be removed changes no journal"
    );
    let last = exhausted(began.journal.clone());
    let failed = effect_failed(&last, &effect, "HTTP 500", &v, &snap, &p, t(52)).expect("t");
    assert_eq!(failed.journal.status, RunStatus::RollingBack);
    assert_eq!(failed.effects, vec![], "the rollback reads the swarm first");
}

#[test]
fn a_step_waits_until_its_retry_is_due() {
    let mut j = migration_at("copy");
    let i = j.current().expect("step");
    j.steps[i].retry_at = Some(super::journal::unix(t(100)));
    let down = view(service(0, 0, 0, "promdata"), None);
    assert!(waits(&j, &down, 99));
    assert!(!waits(&j, &down, 100));
}

#[test]
fn a_run_waits_for_the_approval_label_naming_it() {
    let mut p = policy();
    p.volumes.require_approval = true;
    let mut snap = snapshot();
    let v = view(service(1, 1, 0, "promdata"), None);
    let next = |j: &Journal, snap: &Snapshot, secs: u64| advance(j, &v, snap, &p, t(secs));
    let j = next(&journal(RunbookKind::EfsPadding), &snap, 1)
        .expect("preflight")
        .journal;
    let asked = next(&j, &snap, 2).expect("asks");
    assert!(asked.note.contains("awaiting approval"), "{}", asked.note);
    let j = asked.journal;
    assert_eq!(j.status, RunStatus::AwaitingApproval);
    assert_eq!(next(&j, &snap, 3), None, "waits quietly");
    snap.services[0]
        .labels
        .insert(APPROVE_LABEL.into(), "someone-else".into());
    assert_eq!(next(&j, &snap, 4), None);
    snap.services[0]
        .labels
        .insert(APPROVE_LABEL.into(), j.run_id.clone());
    let approved = next(&j, &snap, 5).expect("approved");
    assert_eq!(approved.note, "approved");
    assert_eq!(approved.journal.status, RunStatus::Running);
    assert_eq!(current(&approved.journal), "pad");
}

#[test]
fn the_padding_job_mounts_the_service_volume_as_the_service_does_and_runs_pad() {
    let j = journal(RunbookKind::EfsPadding);
    let v = view(service(1, 1, 0, "promdata"), None);
    let mut j = step(&j, &v, 1).journal;
    j = step(&j, &v, 2).journal;
    let began = step(&j, &v, 3);
    assert_eq!(began.effects, vec![]);
    let create = step(&began.journal, &v, 4);
    let Effect::CreateJob(job) = &create.effects[0] else {
        panic!("{:?}", create.effects)
    };
    assert_eq!(job.args[0], "pad");
    assert_eq!(job.mounts[0].source, "promdata");
    assert_eq!(job.mounts[0].options["type"], "nfs4");
    assert!(!job.mounts[0].read_only);
    let done = view(
        service(1, 1, 0, "promdata"),
        Some(&[JobTaskState::Complete]),
    );
    let next = step(&began.journal, &done, 5);
    assert_eq!(
        next.effects,
        vec![Effect::RemoveJob {
            name: job.name.clone()
        }]
    );
    assert_eq!(current(&next.journal), "verify");
    assert_eq!(
        j.fact("padding_dir"),
        Some("/.swarm-warden-padding"),
        "where the padding is, for unpad"
    );
}

/// Issue 14 item 14: a mount that does not define its volume is a node-local volume of
/// that name on the job's node: no padding job for it.
#[test]
fn no_padding_job_for_a_mount_that_does_not_define_its_volume() {
    let j = journal(RunbookKind::EfsPadding);
    let mut s = service(1, 1, 0, "promdata");
    s.mounts[0].mount.driver_options.clear();
    let v = view(s, None);
    let mut j = step(&j, &v, 1).journal;
    j = step(&j, &v, 2).journal;
    j = step(&j, &v, 3).journal;
    let refused = step(&j, &v, 4);
    assert_eq!(refused.effects, vec![]);
    assert_eq!(refused.journal.status, RunStatus::Failed);
    assert!(
        refused.note.contains("fill that node's disk"),
        "{}",
        refused.note
    );
}

#[test]
fn job_names_fit_docker_limits_and_name_the_attempt() {
    let name = job_name("efs-padding-fs-0123456789abcdef0-1795721234", 2);
    assert!(name.len() <= 63);
    assert!(name.ends_with("-2"));
    assert!(job_name(&"x".repeat(80), 1).len() <= 63);
}

fn arb_view() -> impl Strategy<Value = RunView> {
    let service = (
        0..3u64,
        0..3usize,
        0..2usize,
        prop::sample::select(vec!["promdata", TARGET, "otherdata"]),
        prop::sample::select(vec!["h0", "h1"]),
    )
        .prop_map(|(r, running, unsettled, source, hash)| {
            with_spec(service(r, running, unsettled, source), hash)
        });
    let job = prop::option::of(prop::collection::vec(
        prop::sample::select(vec![
            JobTaskState::Active,
            JobTaskState::Complete,
            JobTaskState::Failed,
        ]),
        0..3,
    ));
    (prop::option::of(service), job).prop_map(|(service, job)| RunView {
        service,
        job: job.map(|tasks| JobView { tasks }),
    })
}

proptest! {
    /// Whatever the swarm shows, a migration never copies or swaps unless the view shows
    /// the service at 0 replicas with every task ended and the spec it had when the
    /// scale-down was seen done (tracked here from the views, apart from the code); never
    /// swaps before the original mount is in the journal saved before the swap; never
    /// scales up but from 0; restores a mount only while rolling back.
    #[test]
    fn a_migration_never_copies_or_swaps_a_running_or_changed_service(
        views in prop::collection::vec(arb_view(), 1..40),
        gaps in prop::collection::vec(0..400u64, 40),
    ) {
        let p = policy();
        let snap = snapshot();
        let mut j = journal(RunbookKind::EbsMigration);
        let mut secs = 1;
        let mut hash_at_scale_down: Option<String> = None;
        for (v, gap) in views.iter().zip(gaps) {
            secs += gap;
            let Some(next) = advance(&j, v, &snap, &p, t(secs)) else { continue };
            let scale_down_done = |j: &Journal| j.steps[3].state == StepState::Done;
            if !scale_down_done(&j) && scale_down_done(&next.journal) {
                hash_at_scale_down = v.service.as_ref().map(|s| s.spec_hash.clone());
            }
            let quiet = v.service.as_ref().is_some_and(|s| {
                s.replicas == Some(0)
                    && s.running == 0
                    && s.unsettled == 0
                    && Some(&s.spec_hash) == hash_at_scale_down.as_ref()
            });
            for effect in &next.effects {
                match effect {
                    Effect::CreateJob(job) if job.args[0] == "copy" => prop_assert!(quiet, "{effect} while {v:?}"),
                    Effect::SwapMount { spec_hash, .. } => {
                        prop_assert!(quiet, "{effect} while {v:?}");
                        prop_assert!(j.fact("original_mount").is_some(), "original saved before");
                        prop_assert_eq!(Some(spec_hash), hash_at_scale_down.as_ref());
                    }
                    Effect::Scale { replicas, expect, .. } if *replicas > 0 => {
                        prop_assert_eq!(*expect, Some(0));
                    }
                    Effect::RestoreMount { original, .. } => {
                        prop_assert_eq!(next.journal.status, RunStatus::RollingBack);
                        prop_assert_eq!(Some(original.as_str()), j.fact("original_mount"));
                    }
                    _ => {}
                }
            }
            j = next.journal;
        }
    }
}

#[test]
fn audit_and_off_pause_a_run_in_flight() {
    let j = migration_at("copy");
    let down = view(service(0, 0, 0, "promdata"), None);
    for mode in [crate::config::Mode::Audit, crate::config::Mode::Off] {
        let mut p = policy();
        p.volumes.mode = mode;
        assert_eq!(advance(&j, &down, &snapshot(), &p, t(50)), None, "{mode}");
    }
    assert!(!waits(&j, &down, 50), "enforce advances it");
}
