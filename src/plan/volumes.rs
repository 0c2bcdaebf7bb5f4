//! Volumes: which ones are watched, and what their telemetry says — the talk's third
//! lesson, an EFS volume that spent its burst credits and starved its host in I/O wait.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::readings::{readings, saturating_secs, Readings, Unusable};
use super::{human, Finding, FindingKind, Plan, Severity};
use crate::config::{Mode, Policy, Remediation};
use crate::model::{Mount, Service, Snapshot, VolumeTelemetry};
use crate::plan::Memory;

/// Volume label naming the EFS file system behind a volume.
pub const EFS_ID_LABEL: &str = "swarm-warden.efs-id";
/// Volume label choosing the remediation (`efs-padding`, `ebs-migration`, `report`).
pub const REMEDIATION_LABEL: &str = "swarm-warden.remediation";

/// A watched volume mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Service ID.
    pub service_id: String,
    /// Service name.
    pub service: String,
    /// The mount's source (volume name).
    pub volume: String,
    /// The mount's target.
    pub target: String,
    /// EFS file-system ID.
    pub efs_id: String,
    /// What to do when it runs out of credits.
    pub remediation: Remediation,
}

/// The watched volume mounts of the swarm: from `volumes.watch` and from volume labels.
pub fn watched(services: &[Service], policy: &Policy) -> Vec<Watched> {
    let mut out = Vec::new();
    for service in services {
        for mount in service.mounts.iter().filter(|m| m.kind == "volume") {
            let configured = policy.volumes.watch.iter().find(|w| {
                (!w.volume.is_empty() && w.volume == mount.source)
                    || (!w.service.is_empty()
                        && w.service == service.name
                        && w.target == mount.target)
            });
            let labelled = mount.labels.get(EFS_ID_LABEL);
            let (efs_id, remediation) = match (configured, labelled) {
                (Some(w), _) if !w.efs_id.is_empty() => (w.efs_id.clone(), w.remediation),
                (configured, Some(id)) => (
                    id.clone(),
                    configured.map(|w| w.remediation).unwrap_or_else(|| {
                        match mount.labels.get(REMEDIATION_LABEL).map(String::as_str) {
                            Some("efs-padding") => Remediation::EfsPadding,
                            Some("ebs-migration") => Remediation::EbsMigration,
                            _ => Remediation::Report,
                        }
                    }),
                ),
                _ => continue,
            };
            out.push(Watched {
                service_id: service.id.clone(),
                service: service.name.clone(),
                volume: mount.source.clone(),
                target: mount.target.clone(),
                efs_id,
                remediation,
            });
        }
    }
    out.sort_by(|a, b| (&a.efs_id, &a.service).cmp(&(&b.efs_id, &b.service)));
    out
}

/// Whether a mount is NFS-backed: the local driver with `type=nfs`/`nfs4`, an EFS or
/// Cloudstor driver, or a volume known to be EFS.
pub fn nfs_backed(mount: &Mount) -> bool {
    let fs_type = mount
        .driver_options
        .get("type")
        .map(String::as_str)
        .unwrap_or("");
    let driver = mount.driver.to_ascii_lowercase();
    matches!(fs_type, "nfs" | "nfs4")
        || driver.contains("efs")
        || driver.contains("cloudstor")
        || mount.labels.contains_key(EFS_ID_LABEL)
}

/// EFS baseline throughput (bytes/s) for a metered size (bytes): AWS's rule, 50 KiB/s per
/// GiB, at least 1 MiB/s.
pub fn baseline_rate(storage: f64) -> f64 {
    (50.0 * 1024.0 * storage / (1024.0 * 1024.0 * 1024.0)).max(1024.0 * 1024.0)
}

/// Throttled: out of credits and using at least 80% of the baseline it is held to.
pub fn throttled(credits: f64, metered: f64, storage: f64) -> bool {
    let baseline = baseline_rate(storage);
    out_of_credits(credits, baseline) && metered >= 0.8 * baseline
}

/// Out of credits: less than a minute of baseline throughput left (a CloudWatch average
/// of an empty balance is rarely exactly zero).
pub fn out_of_credits(credits: f64, baseline: f64) -> bool {
    credits < baseline * 60.0
}

fn mib(rate: f64) -> String {
    format!("{:.2} MiB/s", rate / (1024.0 * 1024.0))
}

pub(super) fn plan_volumes(
    snapshot: &Snapshot,
    policy: &Policy,
    memory: &Memory,
    now: SystemTime,
    plan: &mut Plan,
) {
    let p = &policy.volumes;
    // Even with volumes off: a paused migration or an incomplete rollback may hold a
    // service at 0 replicas.
    paused_runs(snapshot, policy, plan);
    incomplete_rollbacks(snapshot, plan);
    super::migrated::migration_drift(snapshot, plan);
    if p.mode == Mode::Off {
        return;
    }
    for service in &snapshot.services {
        let unsupported = p
            .nfs_unsupported_images
            .iter()
            .any(|fragment| !fragment.is_empty() && service.image.contains(fragment.as_str()));
        if !unsupported {
            continue;
        }
        for mount in service
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && nfs_backed(m))
        {
            plan.findings.push(Finding {
                kind: FindingKind::StatefulOnNfs,
                severity: Severity::Warning,
                subject: service.name.clone(),
                message: format!(
                    "Service {} ({}) keeps its data on NFS/EFS-backed volume {} at {}: its storage does not support NFS (Prometheus's own docs say so). Use a block volume (EBS).",
                    service.name, service.image, mount.source, mount.target
                ),
            });
        }
    }
    journal_findings(snapshot, plan);
    plan.volumes = watched(&snapshot.services, policy);
    let mut seen = std::collections::BTreeSet::new();
    for w in plan.volumes.clone() {
        if !seen.insert(w.efs_id.clone()) {
            continue;
        }
        let Some(t) = snapshot.telemetry.iter().find(|t| t.efs_id == w.efs_id) else {
            continue;
        };
        if volume_findings(&w, t, snapshot, policy, memory, now, plan)
            && w.remediation != Remediation::Report
        {
            plan_runbook(&w, t, snapshot, policy, now, plan);
        }
    }
}

/// Runs in flight do not advance unless `volumes.mode` is `enforce` (see
/// `runbook::advance`): each is reported, critical when it holds its service scaled down.
fn paused_runs(snapshot: &Snapshot, policy: &Policy, plan: &mut Plan) {
    let mode = policy.volumes.mode;
    if mode == Mode::Enforce {
        return;
    }
    for j in snapshot.runbooks.iter().filter(|j| j.is_active()) {
        let step = j.current().map_or("-", |i| j.steps[i].name.as_str());
        let down = j.fact("downtime_from").is_some() && j.fact("back_at").is_none();
        let (severity, held) = if down {
            (
                Severity::Critical,
                format!(
                    " It scaled service {} down and holds it there: set volumes.mode back to enforce to let it finish or roll back, or restore the service by hand (docker service scale {}={}).",
                    j.service,
                    j.service,
                    j.fact("replicas").unwrap_or("N")
                ),
            )
        } else {
            (Severity::Warning, String::new())
        };
        plan.findings.push(Finding::new(
            FindingKind::RunbookPaused,
            severity,
            &j.run_id,
            format!(
                "Runbook {} ({} of {}) is paused at step {step}: volumes.mode is {mode}, so runs in flight do not advance.{held}",
                j.run_id,
                j.kind.as_str(),
                j.service
            ),
        ));
    }
}

/// Whether a failed migration's rollback left something for the operator (its `rollback`
/// fact says what).
fn rollback_incomplete(j: &crate::model::journal::Journal) -> bool {
    j.status == crate::model::journal::RunStatus::Failed
        && j.fact("rollback")
            .is_some_and(|r| r.starts_with("incomplete"))
}

/// Failed migrations whose rollback left something undone: critical, with what to put
/// back and how to clear it; their volume gets no new run until the journal is removed.
fn incomplete_rollbacks(snapshot: &Snapshot, plan: &mut Plan) {
    for j in snapshot.runbooks.iter().filter(|j| rollback_incomplete(j)) {
        plan.findings.push(Finding::new(
            FindingKind::RunbookRollbackIncomplete,
            Severity::Critical,
            &j.run_id,
            format!(
                "Runbook {} ({} of {}) failed and its rollback is {}. Put the service right by hand, then remove the journal (docker config rm swarm-warden-runbook-{}): until then EFS {} gets no new run.",
                j.run_id,
                j.kind.as_str(),
                j.service,
                j.fact("rollback").unwrap_or_default(),
                j.run_id,
                j.efs_id
            ),
        ));
    }
}

/// Journals that cannot be read are reported, with what to do; they are left alone.
fn journal_findings(snapshot: &Snapshot, plan: &mut Plan) {
    let problems = &snapshot.runbook_problems;
    if let Some(error) = &problems.error {
        plan.findings.push(Finding::new(
            FindingKind::RunbookJournalUnreadable,
            Severity::Warning,
            "cluster",
            format!("Runbook journals could not be listed ({error}): no runbook starts this round, so that no run in flight is missed."),
        ));
    }
    for j in &problems.unreadable {
        plan.findings.push(Finding::new(
            FindingKind::RunbookJournalUnreadable,
            Severity::Warning,
            &j.name,
            format!(
                "The runbook journal {} (config {}, EFS {}) cannot be read: {}. It is left alone and EFS {} gets no new run while it exists. If no other swarm-warden runs it, inspect it (docker config inspect {}) and remove it (docker config rm {}).",
                j.name, j.id, if j.efs_id.is_empty() { "unknown" } else { &j.efs_id }, j.error, if j.efs_id.is_empty() { "unknown" } else { &j.efs_id }, j.name, j.name
            ),
        ));
    }
}

/// Why no run may start for `efs_id` now, if one may not: the journals are unknown or
/// one of its journals cannot be read (it may be a run in flight).
fn journals_in_doubt(snapshot: &Snapshot, efs_id: &str) -> Option<String> {
    let problems = &snapshot.runbook_problems;
    if let Some(error) = &problems.error {
        return Some(format!("Runbook journals could not be listed: {error}."));
    }
    problems
        .unreadable
        .iter()
        .find(|j| j.efs_id == efs_id || j.efs_id.is_empty())
        .map(|j| {
            format!(
                "The runbook journal {} for this volume cannot be read: {}.",
                j.name, j.error
            )
        })
}

/// What padding a file system needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddingPlan {
    /// Baseline to reach, bytes/s.
    pub target_baseline: f64,
    /// Metered bytes to add.
    pub metered: f64,
    /// Bytes the padding job writes (metered / metered_per_byte).
    pub bytes: u64,
    /// US dollars per month for the added storage ($0.30 per GB-month).
    pub monthly_cost: f64,
    /// How long writing it takes at the current permitted rate.
    pub eta: Duration,
}

/// padding = max(0, B_target / (50 KiB/s per GiB) - metered size), capped.
pub fn padding_plan(t: &VolumeTelemetry, policy: &Policy) -> Option<PaddingPlan> {
    let p = &policy.volumes.padding;
    let Readings {
        metered: metered_rate,
        storage,
        permitted,
        ..
    } = readings(t).ok()?;
    let target_baseline = match p.target_baseline {
        Some(rate) => rate.bytes() as f64,
        None => metered_rate.max(baseline_rate(storage)) * 1.25,
    };
    let needed = target_baseline / (50.0 * 1024.0) * (1024.0 * 1024.0 * 1024.0);
    let cap = p.max.bytes() as f64;
    let metered = (needed - storage).max(0.0).min(cap);
    let per_byte = if p.metered_per_byte > 0.0 {
        p.metered_per_byte
    } else {
        1.0
    };
    Some(PaddingPlan {
        target_baseline,
        metered,
        bytes: (metered / per_byte).ceil() as u64,
        monthly_cost: metered / 1e9 * 0.30,
        // A permitted rate of zero (or near it) gives no finite estimate.
        eta: if permitted > 0.0 {
            saturating_secs(metered / per_byte / permitted)
        } else {
            Duration::MAX
        },
    })
}

fn plan_runbook(
    w: &Watched,
    t: &VolumeTelemetry,
    snapshot: &Snapshot,
    policy: &Policy,
    now: SystemTime,
    plan: &mut Plan,
) {
    use crate::model::journal::RunbookKind;
    let p = &policy.volumes;
    let kind = match w.remediation {
        Remediation::EfsPadding => RunbookKind::EfsPadding,
        Remediation::EbsMigration => RunbookKind::EbsMigration,
        Remediation::Report => return,
    };
    let runs: Vec<&crate::model::journal::Journal> = snapshot
        .runbooks
        .iter()
        .filter(|j| j.efs_id == w.efs_id)
        .collect();
    if runs.iter().any(|j| j.is_active()) {
        return; // its progress is reported with the runbooks
    }
    if runs.iter().any(|j| rollback_incomplete(j)) {
        return; // reported (runbook-rollback-incomplete) until the operator clears it
    }
    if super::migrated::holds_runs(snapshot, &w.efs_id) {
        return; // reported (migration-drift): a new run would copy the stale source
    }
    let reason = match kind {
        RunbookKind::EfsPadding => match padding_plan(t, policy) {
            Some(pad) if pad.bytes > 0 => format!(
                "Pad EFS {} with {:.1} GiB ({} written) to lift its baseline to {}: about ${:.2} a month, {} at the current permitted rate. Steps: preflight, approval, pad (Swarm job on a worker running `swarm-warden pad`), verify.",
                w.efs_id,
                pad.metered / (1024.0 * 1024.0 * 1024.0),
                pad.bytes,
                mib(pad.target_baseline),
                pad.monthly_cost,
                if pad.eta == Duration::MAX {
                    "an unknown time (the permitted rate is about zero)".to_owned()
                } else {
                    format!("about {}", human(pad.eta))
                }
            ),
            _ => return,
        },
        RunbookKind::EbsMigration => format!(
            "Move {}'s data from EFS {} (volume {}) to a block volume. Steps: preflight, approval, create target, scale to 0, copy with checksums, swap mount, scale back, verify.",
            w.service, w.efs_id, w.volume
        ),
    };
    let last_end = runs.iter().filter_map(|j| j.finished_at).max();
    let cooling = last_end.map(|end| {
        let since = crate::model::journal::unix(now).saturating_sub(end);
        Duration::from_secs(since)
    });
    let blocked_by = if p.mode == Mode::Audit {
        Some(super::Block::new(
            super::BlockKind::Audit,
            "volumes.mode is audit: report only.",
        ))
    } else if let Some(doubt) = journals_in_doubt(snapshot, &w.efs_id) {
        Some(super::Block::new(super::BlockKind::Runbook, doubt))
    } else if let Some(since) = cooling.filter(|since| *since < p.cooldown) {
        plan.requeue_at_most(p.cooldown - since);
        Some(super::Block::new(
            super::BlockKind::Runbook,
            format!(
                "The last run for this volume ended {} ago: volumes.cooldown is {}.",
                human(since),
                human(p.cooldown)
            ),
        ))
    } else {
        None
    };
    plan.actions.push(super::PlannedAction::new(
        super::Action::StartRunbook {
            kind,
            efs_id: w.efs_id.clone(),
            service: super::ServiceRef {
                id: w.service_id.clone(),
                name: w.service.clone(),
            },
            volume: w.volume.clone(),
        },
        reason,
        blocked_by,
    ));
}

/// Adds the findings about one watched volume; returns whether they call for its
/// remediation (throttled, or credits critically low).
fn volume_findings(
    w: &Watched,
    t: &VolumeTelemetry,
    snapshot: &Snapshot,
    policy: &Policy,
    memory: &Memory,
    now: SystemTime,
    plan: &mut Plan,
) -> bool {
    let p = &policy.volumes;
    let Readings {
        credits,
        permitted,
        metered,
        storage,
    } = match readings(t) {
        Ok(r) => r,
        Err(unusable) => {
            let described = unusable.describe(&t.efs_id, &p.queries);
            let why = match (&unusable, t.error.as_deref()) {
                (Unusable::Missing { .. }, Some(error)) => format!("{described} ({error})"),
                _ => described,
            };
            plan.findings.push(Finding {
                kind: FindingKind::VolumeTelemetryMissing,
                severity: Severity::Warning,
                subject: w.efs_id.clone(),
                message: format!(
                    "No usable telemetry for EFS {} (volume {} of {}) from {}: {why}. Nothing is planned for this volume until it is.",
                    w.efs_id, w.volume, w.service, p.prometheus_url,
                ),
            });
            return false;
        }
    };
    let mut urgent = false;
    let baseline = baseline_rate(storage);
    let iowait = iowait_note(w, t, snapshot);
    // Out of credits, the permitted rate is the baseline (a CloudWatch average may still
    // show the burst rate from moments when a few credits were earned back).
    let lasted = throttled(credits, metered, storage).then(|| {
        let since = memory.throttled_since(&w.efs_id).unwrap_or(now);
        now.duration_since(since).unwrap_or_default()
    });
    let throttled_finding = |severity, how_long: String| {
        Finding {
        kind: FindingKind::VolumeThrottled,
        severity,
        subject: w.efs_id.clone(),
        message: format!(
            "EFS {} (volume {} of {}) has no burst credits and has been running at {} of its {} baseline {how_long} (permitted now: {}).{iowait}",
            w.efs_id,
            w.volume,
            w.service,
            mib(metered),
            mib(baseline),
            mib(permitted)
        ),
    }
    };
    if let Some(lasted) = lasted.filter(|l| *l < p.throttled_for) {
        plan.requeue_at_most(p.throttled_for - lasted);
    }
    match lasted {
        Some(lasted) if lasted >= p.throttled_for => {
            urgent = true;
            plan.findings.push(throttled_finding(
                Severity::Critical,
                format!("for {}", human(lasted)),
            ));
        }
        // Metering above the baseline with the credits gone (a CloudWatch average lags
        // the throttle): the worst state, at once, whatever its history.
        _ if metered > baseline && out_of_credits(credits, baseline) => {
            urgent = true;
            plan.findings.push(Finding {
                kind: FindingKind::VolumeCreditsLow,
                severity: Severity::Critical,
                subject: w.efs_id.clone(),
                message: format!(
                    "EFS {} (volume {} of {}) is out of burst credits (T = 0: {:.1} MiB left, less than a minute at its {} baseline) while metering {}: it is being throttled to {} now.{iowait}",
                    w.efs_id,
                    w.volume,
                    w.service,
                    credits / (1024.0 * 1024.0),
                    mib(baseline),
                    mib(metered),
                    mib(baseline)
                ),
            });
        }
        // Reported at once (a one-shot report has no history); critical, and a reason
        // to remediate, once it lasts `throttled_for`.
        Some(lasted) => {
            let how_long = if lasted.is_zero() {
                "since at least now".to_owned()
            } else {
                format!("for at least {}", human(lasted))
            };
            plan.findings.push(throttled_finding(
                Severity::Warning,
                format!(
                    "{how_long}; critical once it lasts volumes.throttled_for ({})",
                    human(p.throttled_for)
                ),
            ));
        }
        None => {}
    }
    if metered > baseline && !out_of_credits(credits, baseline) {
        let left = saturating_secs(credits / (metered - baseline));
        let severity = if left < p.credits_critical {
            Some(Severity::Critical)
        } else if left < p.credits_warning {
            Some(Severity::Warning)
        } else {
            None
        };
        if let Some(severity) = severity {
            urgent |= severity == Severity::Critical;
            plan.findings.push(Finding {
                kind: FindingKind::VolumeCreditsLow,
                severity,
                subject: w.efs_id.clone(),
                message: format!(
                    "EFS {} (volume {} of {}) runs out of burst credits in {} (T = C/(M-B): {:.0} MiB / ({} - {})); then it is throttled to {}.{iowait}",
                    w.efs_id,
                    w.volume,
                    w.service,
                    human(left),
                    credits / (1024.0 * 1024.0),
                    mib(metered),
                    mib(baseline),
                    mib(baseline)
                ),
            });
        }
    }
    urgent
}

/// The I/O wait of the nodes running the service's tasks, where node_exporter data exists.
fn iowait_note(w: &Watched, t: &VolumeTelemetry, snapshot: &Snapshot) -> String {
    let nodes: BTreeMap<&str, &str> = snapshot
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.hostname.as_str()))
        .collect();
    let hosts: Vec<String> = snapshot
        .tasks
        .iter()
        .filter(|task| task.service_id == w.service_id)
        .filter_map(|task| task.node_id.as_deref().and_then(|id| nodes.get(id)))
        .filter_map(|host| {
            t.iowait
                .get(*host)
                .map(|v| format!("{host} {:.0}%", v * 100.0))
        })
        .collect();
    if hosts.is_empty() {
        String::new()
    } else {
        format!(" I/O wait: {}.", hosts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceMode;
    use crate::plan::plan;
    use crate::plan::quorum_test_support::{cluster, manager, t, worker};

    const MIB: f64 = 1024.0 * 1024.0;

    fn prometheus_service(labels: &[(&str, &str)]) -> Service {
        Service {
            id: "prom".into(),
            version: 1,
            name: "monitoring_prometheus".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            constraints: vec!["node.role != manager".into()],
            image: "prom/prometheus:v2.42.0".into(),
            reservations: Default::default(),
            max_replicas_per_node: 0,
            platforms: Vec::new(),
            update: None,
            mounts: vec![Mount {
                kind: "volume".into(),
                source: "prometheus_data".into(),
                target: "/prometheus".into(),
                driver: "local".into(),
                driver_options: BTreeMap::from([("type".to_string(), "nfs4".to_string())]),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                read_only: false,
            }],
            ..Default::default()
        }
    }

    fn telemetry(credits: f64, metered: f64, storage: f64) -> VolumeTelemetry {
        VolumeTelemetry {
            efs_id: "fs-1".into(),
            credits: Some(credits),
            permitted: Some(if credits > 0.0 {
                100.0 * MIB
            } else {
                baseline_rate(storage)
            }),
            metered_rate: Some(metered),
            storage: Some(storage),
            iowait: BTreeMap::from([("w1".to_string(), 0.62)]),
            error: None,
        }
    }

    fn snap(credits: f64, metered: f64) -> Snapshot {
        let mut s = cluster(vec![manager("m1", true), worker("w1")], t(100));
        s.services = vec![prometheus_service(&[(EFS_ID_LABEL, "fs-1")])];
        s.tasks = vec![crate::model::Task {
            id: "t1".into(),
            service_id: "prom".into(),
            node_id: Some("w1".into()),
            state: "running".into(),
        }];
        s.telemetry = vec![telemetry(credits, metered, 1024.0 * MIB)];
        s
    }

    fn findings(s: &Snapshot, memory: &Memory) -> Vec<Finding> {
        plan(s, &Policy::default(), memory, s.observed_at).findings
    }

    #[test]
    fn volumes_are_watched_from_labels_and_from_config() {
        let labelled =
            prometheus_service(&[(EFS_ID_LABEL, "fs-9"), (REMEDIATION_LABEL, "efs-padding")]);
        let w = watched(&[labelled], &Policy::default());
        assert_eq!(w[0].efs_id, "fs-9");
        assert_eq!(w[0].remediation, Remediation::EfsPadding);
        let mut policy = Policy::default();
        policy.volumes.watch = vec![crate::config::WatchedVolume {
            service: "monitoring_prometheus".into(),
            target: "/prometheus".into(),
            efs_id: "fs-2".into(),
            remediation: Remediation::EbsMigration,
            ..Default::default()
        }];
        let w = watched(&[prometheus_service(&[])], &policy);
        assert_eq!(
            (w[0].efs_id.as_str(), w[0].remediation),
            ("fs-2", Remediation::EbsMigration)
        );
        assert!(watched(&[prometheus_service(&[])], &Policy::default()).is_empty());
    }

    #[test]
    fn prometheus_on_nfs_is_a_finding() {
        let f = findings(&snap(1e12, 0.0), &Memory::default());
        assert!(
            f.iter()
                .any(|f| f.kind == FindingKind::StatefulOnNfs && f.message.contains("/prometheus")),
            "{f:#?}"
        );
    }

    #[test]
    fn credits_running_out_within_an_hour_is_critical_with_t() {
        // 600 MiB left, metered 3 MiB/s, baseline 1 MiB/s (1 GiB stored): T = 300 s.
        let f = findings(&snap(600.0 * MIB, 3.0 * MIB), &Memory::default());
        let low = f
            .iter()
            .find(|f| f.kind == FindingKind::VolumeCreditsLow)
            .expect("credits low");
        assert_eq!(low.severity, Severity::Critical);
        assert!(low.message.contains("in 5m"), "{}", low.message);
        assert!(
            low.message.contains("w1 62%"),
            "I/O wait shown: {}",
            low.message
        );
    }

    #[test]
    fn credits_lasting_hours_are_a_warning_then_nothing() {
        let two_hours = findings(
            &snap(2.0 * 3600.0 * 2.0 * MIB, 3.0 * MIB),
            &Memory::default(),
        );
        let low = two_hours
            .iter()
            .find(|f| f.kind == FindingKind::VolumeCreditsLow)
            .unwrap();
        assert_eq!(low.severity, Severity::Warning);
        let four_hours = findings(
            &snap(4.0 * 3600.0 * 2.0 * MIB, 3.0 * MIB),
            &Memory::default(),
        );
        assert!(!four_hours
            .iter()
            .any(|f| f.kind == FindingKind::VolumeCreditsLow));
    }

    #[test]
    fn a_volume_without_credits_at_its_baseline_is_throttled_once_it_lasts() {
        let s = snap(0.0, 0.95 * MIB);
        let mut memory = Memory::default();
        memory.observe(&s);
        assert!(
            !findings(&s, &memory)
                .iter()
                .any(|f| f.kind == FindingKind::VolumeThrottled && f.severity == Severity::Critical),
            "not sustained yet"
        );
        let mut later = s.clone();
        later.observed_at = t(100 + 301);
        memory.observe(&later);
        let f = findings(&later, &memory);
        let throttled = f
            .iter()
            .find(|f| f.kind == FindingKind::VolumeThrottled)
            .expect("throttled");
        assert!(throttled.message.contains("5m 1s"), "{}", throttled.message);
    }

    #[test]
    fn a_run_in_flight_is_reported_paused_outside_enforce_critical_while_it_holds_the_service_down()
    {
        use crate::model::journal::{Journal, RunbookKind};
        let mut s = snap(1e12, 0.0);
        let mut run = Journal::new(
            RunbookKind::EbsMigration,
            "fs-1",
            "prom",
            "monitoring_prometheus",
            "promdata",
            &["preflight", "scale-down", "copy"],
            t(0),
        );
        run.begin(0, t(1));
        run.complete(0, t(2), "ready");
        s.runbooks = vec![run.clone()];
        let paused = |s: &Snapshot, mode: Mode| {
            let mut p = Policy::default();
            p.volumes.mode = mode;
            plan(s, &p, &Memory::default(), s.observed_at)
                .findings
                .into_iter()
                .filter(|f| f.kind == FindingKind::RunbookPaused)
                .collect::<Vec<_>>()
        };
        assert!(paused(&s, Mode::Enforce).is_empty());
        let f = paused(&s, Mode::Audit);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].message.contains("paused at step scale-down"),
            "{}",
            f[0].message
        );
        run.record("downtime_from", 5);
        run.record("replicas", 2);
        s.runbooks = vec![run];
        let f = paused(&s, Mode::Off);
        assert_eq!(
            f[0].severity,
            Severity::Critical,
            "reported even with volumes off"
        );
        assert!(
            f[0].message
                .contains("docker service scale monitoring_prometheus=2"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn an_incomplete_rollback_is_critical_and_holds_new_runs_for_its_volume() {
        use crate::model::journal::{Journal, RunStatus, RunbookKind};
        let mut s = snap(0.0, 3.0 * MIB);
        s.services[0].mounts[0]
            .labels
            .insert(REMEDIATION_LABEL.into(), "ebs-migration".into());
        let mut run = Journal::new(
            RunbookKind::EbsMigration,
            "fs-1",
            "prom",
            "monitoring_prometheus",
            "promdata",
            &["preflight"],
            t(0),
        );
        run.status = RunStatus::Failed;
        run.record("rollback", "incomplete (1 replica(s)): decide by hand");
        s.runbooks = vec![run];
        let p = Policy {
            volumes: crate::config::VolumesPolicy {
                cooldown: Duration::from_secs(1),
                ..Policy::default().volumes
            },
            ..Policy::default()
        };
        let plan = plan(
            &s,
            &p,
            &Memory::default(),
            s.observed_at + Duration::from_secs(3600),
        );
        let f = plan
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::RunbookRollbackIncomplete)
            .expect("reported");
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("docker config rm"), "{}", f.message);
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| a.action.kind() == "ebs-migration"),
            "no new run: {:#?}",
            plan.actions
        );
    }

    #[test]
    fn missing_telemetry_is_reported() {
        let mut s = snap(0.0, 0.0);
        s.telemetry[0].credits = None;
        s.telemetry[0].error = Some("connection refused".into());
        let f = findings(&s, &Memory::default());
        assert!(f.iter().any(
            |f| f.kind == FindingKind::VolumeTelemetryMissing && f.message.contains("refused")
        ));
    }

    #[test]
    fn a_throttled_volume_with_efs_padding_starts_a_runbook_with_size_cost_and_eta() {
        let mut s = snap(600.0 * MIB, 3.0 * MIB);
        s.services[0].mounts[0]
            .labels
            .insert(REMEDIATION_LABEL.into(), "efs-padding".into());
        let plan = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        let a = plan
            .actions
            .iter()
            .find(|a| a.action.kind() == "efs-padding")
            .expect("runbook planned");
        assert_eq!(a.action.target(), "fs-1");
        assert_eq!(a.status, crate::plan::ActionStatus::Planned);
        // 125% of 3 MiB/s = 3.75 MiB/s needs 76.8 GiB; 1 GiB is stored.
        assert!(
            a.reason.contains("75.8 GiB") && a.reason.contains("a month"),
            "{}",
            a.reason
        );
    }

    #[test]
    fn no_second_run_while_one_is_active_and_none_within_the_cooldown() {
        let mut s = snap(600.0 * MIB, 3.0 * MIB);
        s.services[0].mounts[0]
            .labels
            .insert(REMEDIATION_LABEL.into(), "efs-padding".into());
        let mut run = crate::model::journal::Journal::new(
            crate::model::journal::RunbookKind::EfsPadding,
            "fs-1",
            "prom",
            "monitoring_prometheus",
            "prometheus_data",
            &["preflight"],
            t(0),
        );
        s.runbooks = vec![run.clone()];
        let plan1 = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        assert!(!plan1
            .actions
            .iter()
            .any(|a| a.action.kind() == "efs-padding"));
        run.begin(0, t(10));
        run.complete(0, t(50), "done");
        s.runbooks = vec![run];
        let plan2 = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        let a = plan2
            .actions
            .iter()
            .find(|a| a.action.kind() == "efs-padding")
            .unwrap();
        assert!(
            a.blocked_message().unwrap().contains("cooldown"),
            "{:?}",
            a.blocked_by
        );
    }

    fn padded(mut s: Snapshot) -> Snapshot {
        s.services[0].mounts[0]
            .labels
            .insert(REMEDIATION_LABEL.into(), "efs-padding".into());
        s
    }

    #[test]
    fn non_finite_or_out_of_range_values_are_missing_telemetry_never_a_panic_or_a_runbook() {
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1.0];
        for quantity in 0..4 {
            for value in bad {
                // Credits draining at 3 MiB/s over a 1 MiB/s baseline: urgent, were the
                // values believed.
                let mut s = padded(snap(600.0 * MIB, 3.0 * MIB));
                let t = &mut s.telemetry[0];
                let (slot, query) = match quantity {
                    0 => (&mut t.credits, "credits"),
                    1 => (&mut t.permitted, "permitted"),
                    2 => (&mut t.metered_rate, "metered_rate"),
                    _ => (&mut t.storage, "storage"),
                };
                *slot = Some(value);
                let plan = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
                let missing = plan
                    .findings
                    .iter()
                    .find(|f| f.kind == FindingKind::VolumeTelemetryMissing)
                    .unwrap_or_else(|| panic!("{query} = {value}: {:#?}", plan.findings));
                assert!(
                    missing.message.contains(&format!("{query} = {value}"))
                        && missing.message.contains("fs-1"),
                    "{}",
                    missing.message
                );
                assert!(
                    !plan.findings.iter().any(|f| matches!(
                        f.kind,
                        FindingKind::VolumeCreditsLow | FindingKind::VolumeThrottled
                    )),
                    "{query} = {value}: {:#?}",
                    plan.findings
                );
                assert!(
                    !plan
                        .actions
                        .iter()
                        .any(|a| a.action.kind() == "efs-padding"),
                    "{query} = {value}: a runbook from a bad value"
                );
            }
        }
    }

    #[test]
    fn every_quantity_nan_is_not_a_healthy_volume() {
        let mut s = snap(f64::NAN, f64::NAN);
        s.telemetry[0].permitted = Some(f64::NAN);
        s.telemetry[0].storage = Some(f64::NAN);
        assert!(findings(&s, &Memory::default())
            .iter()
            .any(|f| f.kind == FindingKind::VolumeTelemetryMissing));
    }

    #[test]
    fn a_permitted_rate_near_zero_gives_an_estimate_not_a_panic() {
        let mut s = padded(snap(600.0 * MIB, 3.0 * MIB));
        s.telemetry[0].permitted = Some(1e-300);
        let plan = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        assert!(plan
            .actions
            .iter()
            .any(|a| a.action.kind() == "efs-padding"));
        let pad = padding_plan(&s.telemetry[0], &Policy::default()).expect("plan");
        assert_eq!(pad.eta, Duration::MAX);
    }

    #[test]
    fn credits_already_gone_are_critical_at_once() {
        // 1 MB left, metered 10 MiB/s over the 4.9 MiB/s baseline of 100 GiB.
        let mut s = snap(1e6, 10.0 * MIB);
        s.telemetry[0].storage = Some(100.0 * 1024.0 * MIB);
        let f = findings(&s, &Memory::default());
        let low = f
            .iter()
            .find(|f| f.kind == FindingKind::VolumeCreditsLow)
            .unwrap_or_else(|| panic!("{f:#?}"));
        assert_eq!(low.severity, Severity::Critical);
        assert!(
            low.message.contains("out of burst credits"),
            "{}",
            low.message
        );
    }

    #[test]
    fn a_throttled_volume_is_reported_at_once_and_critical_once_it_lasts() {
        let s = snap(0.0, 0.95 * MIB);
        let f = findings(&s, &Memory::default());
        let throttled = f
            .iter()
            .find(|f| f.kind == FindingKind::VolumeThrottled)
            .unwrap_or_else(|| panic!("{f:#?}"));
        assert_eq!(throttled.severity, Severity::Warning);
        assert!(
            throttled.message.contains("since at least now"),
            "{}",
            throttled.message
        );
    }

    #[test]
    fn an_unreadable_journal_is_reported_left_alone_and_holds_its_volume() {
        let mut s = padded(snap(600.0 * MIB, 3.0 * MIB));
        s.runbook_problems.unreadable = vec![crate::model::journal::UnreadableJournal {
            id: "cfg1".into(),
            name: "swarm-warden-runbook-efs-padding-fs-1-99".into(),
            efs_id: "fs-1".into(),
            error: "journal schema 2, newer than the 1 this swarm-warden reads".into(),
        }];
        let plan = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        let finding = plan
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::RunbookJournalUnreadable)
            .expect("reported");
        assert!(
            finding
                .message
                .contains("docker config rm swarm-warden-runbook-efs-padding-fs-1-99")
                && finding.message.contains("schema 2"),
            "{}",
            finding.message
        );
        let start = plan
            .actions
            .iter()
            .find(|a| a.action.kind() == "efs-padding")
            .expect("planned");
        assert!(
            start
                .blocked_message()
                .is_some_and(|b| b.contains("cannot be read")),
            "{start:?}"
        );
        // The rest of the reconcile ran: the volume's own findings are there.
        assert!(plan
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::VolumeCreditsLow));
    }

    #[test]
    fn journals_that_could_not_be_listed_hold_every_run() {
        let mut s = padded(snap(600.0 * MIB, 3.0 * MIB));
        s.runbook_problems.error = Some("list configs: 500".into());
        let plan = plan(&s, &Policy::default(), &Memory::default(), s.observed_at);
        assert!(plan
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::RunbookJournalUnreadable));
        assert_eq!(plan.runnable().count(), 0, "{:?}", plan.actions);
    }

    #[test]
    fn padding_is_capped_and_converted_to_bytes_written() {
        let mut policy = Policy::default();
        policy.volumes.padding.max = crate::config::ByteSize::new(10 << 30);
        policy.volumes.padding.metered_per_byte = 1024.0;
        let pad = padding_plan(&telemetry(0.0, 3.0 * MIB, 1024.0 * MIB), &policy).unwrap();
        assert_eq!(pad.metered, 10.0 * 1024.0 * MIB);
        assert_eq!(pad.bytes, 10 * 1024 * 1024);
    }
}
