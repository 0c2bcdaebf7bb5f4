//! The `ebs-migration` runbook's own steps: define the target volume, scale the service
//! down, copy (a job with a verified checksum manifest), swap the mount, scale back up,
//! verify; and its rollback. Pure transitions (see `transition`).
//!
//! Guards each step re-reads from the run's view: the service still exists; from the
//! copy on, it is still at 0 replicas with no task left (someone scaling it back means the
//! copy would be stale: the run fails and rolls back); the mount swapped is the one
//! recorded, and its original is recorded before the swap is sent.

use super::effect::{Effect, Job, JobMount};
use super::journal::Journal;
use super::transition::{attempt_failed, elapsed, give_up, job_name, pending, Cx};
use crate::config::Policy;
use crate::model::run_view::ServiceView;
use crate::model::Mount;

/// One transition of migration step `step`; `None` when it waits.
pub(super) fn step(
    step: &str,
    j: &mut Journal,
    i: usize,
    cx: &Cx,
    effects: &mut Vec<Effect>,
) -> Option<String> {
    match step {
        "create-target" => {
            j.begin(i, cx.now);
            let detail = format!(
                "target volume {} (driver {}) is created on its node by the copy job's mount",
                j.fact("target_volume").unwrap_or_default(),
                cx.policy.volumes.migration.driver
            );
            j.complete(i, cx.now, detail);
            Some("target volume defined".into())
        }
        "scale-down" => scale(j, i, cx, effects, 0),
        "copy" => copy(j, i, cx, effects),
        "swap-mount" => swap_mount(j, i, cx, effects),
        "scale-up" => {
            let replicas = j.fact("replicas").and_then(|r| r.parse().ok()).unwrap_or(1);
            scale(j, i, cx, effects, replicas)
        }
        "verify" => verify(j, i, cx, effects),
        other => Some(give_up(
            j,
            i,
            cx,
            effects,
            format!("step {other} of ebs-migration is not implemented in this version"),
        )),
    }
}

/// After the run failed for good: puts the original mount back (when one was recorded
/// before a swap) and the replica count (when the run scaled the service down). The
/// source volume was never written. Records what it undoes (fact `rollback`); returns the
/// note. A padding run has nothing to undo.
pub(super) fn roll_back(j: &mut Journal, effects: &mut Vec<Effect>) -> String {
    if j.kind != super::RunbookKind::EbsMigration {
        return "run failed".into();
    }
    let mut undo = Vec::new();
    let path = j.fact("mount_target").unwrap_or_default().to_owned();
    if let Some(original) = j.fact("original_mount") {
        effects.push(Effect::RestoreMount {
            service_id: j.service_id.clone(),
            path: path.clone(),
            current: j.fact("target_volume").unwrap_or_default().to_owned(),
            original: original.to_owned(),
        });
        undo.push(format!("restore the original mount at {path}"));
    } else if j.fact("swapped") == Some("true") {
        // Never guessed: a source name with the target's driver would mount a new,
        // empty volume.
        undo.push(format!(
            "the mount at {path} was swapped but its original is unknown: put it back by hand"
        ));
    }
    if j.fact("downtime_from").is_some() {
        if let Some(replicas) = j.fact("replicas").and_then(|r| r.parse::<u64>().ok()) {
            effects.push(Effect::Scale {
                service_id: j.service_id.clone(),
                replicas,
            });
            undo.push(format!("scale back to {replicas}"));
        }
    }
    let undo = if undo.is_empty() {
        "nothing to undo".to_owned()
    } else {
        undo.join("; ")
    };
    j.record("rollback", &undo);
    format!("run failed; rollback: {undo}")
}

/// Scales the service to `replicas`, then waits until that many tasks run — and, for a
/// scale-down, until no container of it is still stopping (`stop_grace_period`) or
/// unaccounted for (a task on a node that does not answer). The first scale-down records
/// when the downtime began.
fn scale(
    j: &mut Journal,
    i: usize,
    cx: &Cx,
    effects: &mut Vec<Effect>,
    replicas: u64,
) -> Option<String> {
    if pending(j, i) {
        let attempt = j.begin(i, cx.now);
        if replicas == 0 && j.fact("downtime_from").is_none() {
            j.record("downtime_from", super::journal::unix(cx.now));
        }
        effects.push(Effect::Scale {
            service_id: j.service_id.clone(),
            replicas,
        });
        return Some(format!(
            "scaling {} to {replicas} (attempt {attempt})",
            j.service
        ));
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, effects, "the service is gone"));
    };
    let stopped = replicas > 0 || service.stopping == 0;
    if service.running as u64 == replicas && stopped {
        if replicas > 0 {
            j.record("back_at", super::journal::unix(cx.now));
        }
        j.complete(i, cx.now, format!("{} task(s) running", service.running));
        return Some(format!("{} runs {} task(s)", j.service, service.running));
    }
    if elapsed(j, i, cx.now) > cx.policy.volumes.migration.scale_timeout {
        let why = format!(
            "{} of {replicas} task(s) running, {} still stopping, after the scale timeout",
            service.running, service.stopping
        );
        return Some(attempt_failed(j, i, cx, effects, why));
    }
    None
}

/// Why the service may not be copied or swapped now: it is no longer at 0 replicas with
/// every container stopped.
fn scaled_back(service: &ServiceView) -> Option<String> {
    let at_zero = service.replicas == Some(0) && service.running == 0 && service.stopping == 0;
    (!at_zero).then(|| {
        format!(
            "the service is no longer scaled down ({} replica(s) wanted, {} running, {} stopping): someone scaled it back during the migration, so the copy would be stale",
            service.replicas.map_or("?".to_owned(), |r| r.to_string()),
            service.running,
            service.stopping
        )
    })
}

fn copy(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    if pending(j, i) {
        let attempt = j.begin(i, cx.now);
        j.record("copy_job", job_name(&format!("{}-copy", j.run_id), attempt));
        return Some(format!("copy: attempt {attempt} begins"));
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, effects, "the service is gone"));
    };
    let job = j.fact("copy_job").unwrap_or_default().to_owned();
    if let Some(why) = scaled_back(service) {
        if cx.view.job.is_some() {
            effects.push(Effect::RemoveJob { name: job });
        }
        return Some(give_up(j, i, cx, effects, why));
    }
    let Some(tasks) = &cx.view.job else {
        let Some(mount) = service.mount_of(&j.volume) else {
            let why = format!("the service no longer mounts {}", j.volume);
            return Some(give_up(j, i, cx, effects, why));
        };
        let target = j.fact("target_volume").unwrap_or_default().to_owned();
        effects.push(Effect::CreateJob(copy_job(
            &job,
            &j.run_id,
            &mount.mount,
            &target,
            cx.policy,
        )));
        return Some(format!(
            "copy: creating job {job} ({} -> {target})",
            j.volume
        ));
    };
    let took = elapsed(j, i, cx.now);
    if tasks.completed() {
        effects.push(Effect::RemoveJob { name: job.clone() });
        j.complete(
            i,
            cx.now,
            format!(
                "job {job} copied and verified the data in {}s",
                took.as_secs()
            ),
        );
        return Some("copy: verified".into());
    }
    if tasks.failed() || took > cx.policy.volumes.migration.copy_timeout {
        effects.push(Effect::RemoveJob { name: job });
        let why = if tasks.failed() {
            "the copy job failed"
        } else {
            "the copy job timed out"
        };
        return Some(attempt_failed(j, i, cx, effects, why));
    }
    None
}

/// Records the original mount (the Engine's definition, whole) before anything is sent,
/// then swaps it, then sees the swap in the service. A mount that is neither the source
/// nor the target fails the run: the spec changed under the migration.
fn swap_mount(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, effects, "the service is gone"));
    };
    if let Some(why) = scaled_back(service) {
        return Some(give_up(j, i, cx, effects, why));
    }
    let path = j.fact("mount_target").unwrap_or_default().to_owned();
    let target = j.fact("target_volume").unwrap_or_default().to_owned();
    let source = j.volume.clone();
    let at = service.mount_at(&path).map(|m| (m.mount.source.clone(), m));
    if pending(j, i) {
        return Some(match at {
            Some((s, m)) if s == source => {
                j.begin(i, cx.now);
                j.record("original_mount", &m.spec);
                format!("swap: original mount at {path} recorded")
            }
            Some((s, _)) => give_up(
                j,
                i,
                cx,
                effects,
                format!("the service mounts {s} at {path}, not {source}: its spec changed"),
            ),
            None => give_up(
                j,
                i,
                cx,
                effects,
                format!("the service no longer mounts anything at {path}"),
            ),
        });
    }
    match at {
        Some((s, _)) if s == target => {
            j.record("swapped", "true");
            j.complete(i, cx.now, format!("{path} now mounts {target}"));
            Some(format!("mount swapped to {target}"))
        }
        Some((s, _)) if s == source => {
            let m = &cx.policy.volumes.migration;
            effects.push(Effect::SwapMount {
                service_id: j.service_id.clone(),
                path: path.clone(),
                from: source,
                to: target.clone(),
                driver: m.driver.clone(),
                options: m.options.clone(),
            });
            Some(format!("swap: mounting {target} at {path}"))
        }
        other => {
            let now = other.map_or("nothing".to_owned(), |(s, _)| s);
            Some(give_up(
                j,
                i,
                cx,
                effects,
                format!("the service mounts {now} at {path} during the swap: its spec changed"),
            ))
        }
    }
}

/// The service runs all its replicas on the new volume for `volumes.migration.verify_for`
/// without a break; a break is recorded (`verify_breaks`) and restarts the clock. An
/// attempt that does not get there within `scale_timeout` + `verify_for` fails.
fn verify(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    let began = pending(j, i);
    if began {
        j.begin(i, cx.now);
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, effects, "the service is gone"));
    };
    let m = &cx.policy.volumes.migration;
    let replicas: usize = j.fact("replicas").and_then(|r| r.parse().ok()).unwrap_or(1);
    let now = super::journal::unix(cx.now);
    if service.running < replicas {
        if j.facts.remove("verify_since").is_some() {
            let breaks: u64 = j
                .fact("verify_breaks")
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            j.record("verify_breaks", breaks + 1);
            return Some(format!(
                "verify: {} of {replicas} task(s) running: a break, the clock starts again",
                service.running
            ));
        }
        if elapsed(j, i, cx.now) > m.scale_timeout + m.verify_for {
            let why = format!(
                "{} of {replicas} task(s) running on the new volume, not {} without a break",
                service.running,
                crate::plan::human(m.verify_for)
            );
            return Some(attempt_failed(j, i, cx, effects, why));
        }
        return began.then(|| "verify: waiting for the tasks".to_owned());
    }
    let Some(since) = j.fact("verify_since").and_then(|v| v.parse::<u64>().ok()) else {
        j.record("verify_since", now);
        return Some(format!(
            "verify: {} task(s) running on the new volume",
            service.running
        ));
    };
    if now.saturating_sub(since) < m.verify_for.as_secs() {
        return began.then(|| "verify: running".to_owned());
    }
    let downtime = match (j.fact("downtime_from"), j.fact("back_at")) {
        (Some(a), Some(b)) => b
            .parse::<u64>()
            .unwrap_or(0)
            .saturating_sub(a.parse().unwrap_or(0)),
        _ => 0,
    };
    j.record("downtime_seconds", downtime);
    j.complete(
        i,
        cx.now,
        format!(
            "ran {}s on the new volume; downtime {downtime}s",
            now.saturating_sub(since)
        ),
    );
    Some(format!("migration verified; downtime {downtime}s"))
}

/// The copy job: `swarm-warden copy` from the service's volume (read-only, mounted as the
/// service mounts it) to the target volume (the policy's driver and options).
pub(super) fn copy_job(
    name: &str,
    run_id: &str,
    source: &Mount,
    target: &str,
    policy: &Policy,
) -> Job {
    let m = &policy.volumes.migration;
    Job {
        name: name.to_owned(),
        run_id: run_id.to_owned(),
        image: m.image.clone(),
        args: ["copy", "--from", "/src", "--to", "/dst"]
            .map(str::to_owned)
            .to_vec(),
        mounts: vec![
            JobMount {
                target: "/src".into(),
                source: source.source.clone(),
                driver: source.driver.clone(),
                options: source.driver_options.clone(),
                labels: source.labels.clone(),
                read_only: true,
            },
            JobMount {
                target: "/dst".into(),
                source: target.to_owned(),
                driver: m.driver.clone(),
                options: m.options.clone(),
                labels: Default::default(),
                read_only: false,
            },
        ],
    }
}
