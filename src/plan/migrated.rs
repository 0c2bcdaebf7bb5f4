//! Services an `ebs-migration` moved that have drifted back since (issue 14, item 4): a
//! `docker stack deploy` of the old compose file writes the old mount back (the writes
//! made on the new volume are stranded there, and the service runs on stale data) or
//! drops the pin the migration added (a node-local target is then found empty on any
//! other node). Detected like placement drift, reported with the compose snippet that
//! keeps the migration, and never swapped back: which volume holds the newest data is the
//! operator's call. While it lasts, the service's volume gets no new run (a new migration
//! would copy the stale source).

use crate::model::journal::{Journal, RunStatus, RunbookKind};
use crate::model::{Service, Snapshot};

use super::{Finding, FindingKind, Plan, Severity};

/// The label `docker stack deploy` puts on a stack's services: the stack's name.
const STACK_LABEL: &str = "com.docker.stack.namespace";

/// How a migrated service differs from what its migration left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The mount at the migrated path is no longer the target volume (`now`: what it
    /// mounts, or `nothing`).
    MountReverted {
        /// The volume mounted there now.
        now: String,
    },
    /// The placement constraint the migration pinned the service with is gone.
    PinLost {
        /// The constraint (`node.id==<id>`, `<zone label>==<zone>`).
        pin: String,
    },
}

/// The succeeded migrations of services that still exist and have drifted, with how.
pub fn drifted(snapshot: &Snapshot) -> Vec<(&Journal, &Service, Vec<Drift>)> {
    snapshot
        .runbooks
        .iter()
        .filter(|j| {
            j.kind == RunbookKind::EbsMigration
                && j.status == RunStatus::Succeeded
                && j.fact("swapped") == Some("true")
        })
        .filter_map(|j| {
            // By ID, else by name: `docker stack rm` and a deploy make a new service (a new
            // ID) of the same name, on the old mount.
            let service = snapshot
                .services
                .iter()
                .find(|s| s.id == j.service_id)
                .or_else(|| snapshot.services.iter().find(|s| s.name == j.service))?;
            let drift = drift(j, service);
            (!drift.is_empty()).then_some((j, service, drift))
        })
        .collect()
}

fn drift(j: &Journal, service: &Service) -> Vec<Drift> {
    let path = j.fact("mount_target").unwrap_or_default();
    let target = j.fact("target_volume").unwrap_or_default();
    let mut out = Vec::new();
    let now = service
        .mounts
        .iter()
        .find(|m| m.target == path)
        .map_or("nothing", |m| m.source.as_str());
    if now != target {
        out.push(Drift::MountReverted { now: now.into() });
    }
    if let Some(pin) = j.fact("pin").filter(|p| !p.is_empty()) {
        if !service
            .constraints
            .iter()
            .any(|c| super::constraint::same(c, pin))
        {
            out.push(Drift::PinLost { pin: pin.into() });
        }
    }
    out
}

/// Whether a migrated service of `efs_id` has drifted: no new run for that volume.
pub(super) fn holds_runs(snapshot: &Snapshot, efs_id: &str) -> bool {
    drifted(snapshot).iter().any(|(j, _, _)| j.efs_id == efs_id)
}

/// One critical `migration-drift` finding per drifted migration, with the compose snippet
/// that keeps it.
pub(super) fn migration_drift(snapshot: &Snapshot, plan: &mut Plan) {
    for (j, service, drift) in drifted(snapshot) {
        let path = j.fact("mount_target").unwrap_or_default();
        let target = j.fact("target_volume").unwrap_or_default();
        let what: Vec<String> = drift
            .iter()
            .map(|d| match d {
                Drift::MountReverted { now } => format!(
                    "{path} mounts {now} again, not {target}: the writes made on {target} since the migration are stranded there and the service runs on older data"
                ),
                Drift::PinLost { pin } => format!(
                    "the constraint {pin} is gone: the service may start where {target} is not (a new, empty volume)"
                ),
            })
            .collect();
        plan.findings.push(Finding::new(
            FindingKind::MigrationDrift,
            Severity::Critical,
            &service.name,
            format!(
                "Service {} was migrated by runbook {} and has drifted since (a stack deploy of the old compose file?): {}. swarm-warden does not swap it back: decide which volume holds the newest data, copy what is missing, then keep the migration in the compose file:\n{}\nIf the drift is intended, remove the journal (docker config rm swarm-warden-runbook-{}); until then EFS {} gets no new run.",
                service.name,
                j.run_id,
                what.join("; "),
                compose_snippet(j, service),
                j.run_id,
                j.efs_id
            ),
        ));
    }
}

/// The compose lines that keep a migration: the target volume (external: the migration
/// made it), the mount, and the pin.
fn compose_snippet(j: &Journal, service: &Service) -> String {
    let path = j.fact("mount_target").unwrap_or_default();
    let target = j.fact("target_volume").unwrap_or_default();
    // A stack names its services `<stack>_<key>` and labels them with the stack.
    let key = service
        .labels
        .get(STACK_LABEL)
        .and_then(|stack| service.name.strip_prefix(&format!("{stack}_")))
        .unwrap_or(&service.name);
    let mut out = format!("services:\n  {key}:\n    volumes:\n      - {target}:{path}\n");
    if let Some(pin) = j.fact("pin").filter(|p| !p.is_empty()) {
        out.push_str(&format!(
            "    deploy:\n      placement:\n        constraints:\n          - {pin}\n"
        ));
    }
    out.push_str(&format!("volumes:\n  {target}:\n    external: true\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::journal::StepState;
    use crate::model::{Mount, ServiceMode};
    use crate::plan::quorum_test_support::{cluster, manager, t};

    fn migrated(mount: &str, constraints: &[&str]) -> Snapshot {
        let mut s = cluster(vec![manager("m1", true)], t(0));
        s.services = vec![Service {
            id: "svc".into(),
            name: "mon_prom".into(),
            labels: [(STACK_LABEL.to_owned(), "mon".to_owned())].into(),
            mode: ServiceMode::Replicated { replicas: 1 },
            constraints: constraints.iter().map(|c| c.to_string()).collect(),
            mounts: vec![Mount {
                kind: "volume".into(),
                source: mount.into(),
                target: "/prometheus".into(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let steps = crate::runbook::steps(RunbookKind::EbsMigration);
        let mut j = Journal::new(
            RunbookKind::EbsMigration,
            "fs-1",
            "svc",
            "mon_prom",
            "promdata",
            steps,
            t(0),
        );
        for step in &mut j.steps {
            step.state = StepState::Done;
        }
        j.status = RunStatus::Succeeded;
        for (k, v) in [
            ("swapped", "true"),
            ("mount_target", "/prometheus"),
            ("target_volume", "promdata-ebs-1"),
            ("pin", "node.id==w1"),
        ] {
            j.record(k, v);
        }
        s.runbooks = vec![j];
        s
    }

    /// The findings of the whole planner of this kind: drift is reported through it.
    fn findings(s: &Snapshot) -> Vec<Finding> {
        let policy = crate::config::Policy::default();
        crate::plan::plan(s, &policy, &Default::default(), s.observed_at)
            .findings
            .into_iter()
            .filter(|f| f.kind == FindingKind::MigrationDrift)
            .collect()
    }

    #[test]
    fn a_migrated_service_as_the_migration_left_it_is_not_drift() {
        let s = migrated("promdata-ebs-1", &["node.role == worker", "node.id == w1"]);
        assert_eq!(findings(&s), vec![]);
        assert!(!holds_runs(&s, "fs-1"));
    }

    #[test]
    fn a_stack_deploy_writing_the_old_mount_back_is_critical_with_the_compose_snippet() {
        let s = migrated("promdata", &["node.role==worker"]);
        let f = findings(&s);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::MigrationDrift);
        assert_eq!(f[0].severity, Severity::Critical);
        let m = &f[0].message;
        assert!(m.contains("mounts promdata again"), "{m}");
        assert!(m.contains("node.id==w1 is gone"), "{m}");
        assert!(
            m.contains("  prom:\n    volumes:\n      - promdata-ebs-1:/prometheus"),
            "{m}"
        );
        assert!(m.contains("          - node.id==w1\n"), "{m}");
        assert!(m.contains("  promdata-ebs-1:\n    external: true"), "{m}");
        assert!(
            holds_runs(&s, "fs-1"),
            "a new run would copy the stale source"
        );
    }

    #[test]
    fn a_stack_removed_and_deployed_again_is_found_by_name() {
        let mut s = migrated("promdata", &[]);
        s.services[0].id = "new-id".into();
        assert_eq!(findings(&s).len(), 1);
        assert!(holds_runs(&s, "fs-1"));
    }

    #[test]
    fn a_pin_written_differently_is_the_same_pin() {
        let s = migrated("promdata-ebs-1", &["Node.ID == w1"]);
        assert_eq!(findings(&s), vec![]);
    }

    #[test]
    fn a_lost_pin_alone_is_drift() {
        let s = migrated("promdata-ebs-1", &[]);
        let f = findings(&s);
        assert_eq!(f.len(), 1);
        assert!(!f[0].message.contains("mounts promdata again"));
    }
}
