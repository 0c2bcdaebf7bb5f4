//! The `ebs-migration` runbook's own steps: define the target volume, scale the service
//! down, copy (a job with a verified checksum manifest), swap the mount, scale back up,
//! verify; and its rollback. Pure transitions (see `transition`).
//!
//! Guards each step re-reads from the run's view: the service still exists; from the
//! copy on, it is still at 0 replicas with no task left and its spec is the one it had
//! when the scale-down was done (someone scaling it back, even up and down again, means
//! the copy would be stale: the run fails and rolls back); the mount swapped is the one
//! recorded, and its original is recorded before the swap is sent. The rollback itself is
//! in `rollback`.

use super::effect::{Effect, Job, JobMount};
use super::journal::Journal;
use super::transition::{
    attempt_failed, elapsed, give_up, job_end, job_name, pending, previous_job_gone, Cx, JobEnd,
};
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
        "verify" => verify(j, i, cx),
        other => Some(give_up(
            j,
            i,
            cx,
            format!("step {other} of ebs-migration is not implemented in this version"),
        )),
    }
}

/// Scales the service to `replicas`, then waits until that many tasks run — and, for a
/// scale-down, until no task of it has not ended (a container flushing through its
/// `stop_grace_period`, one still starting, one on a node that does not answer). The first
/// scale-down records when the downtime began, and the spec the copy is made under.
fn scale(
    j: &mut Journal,
    i: usize,
    cx: &Cx,
    effects: &mut Vec<Effect>,
    replicas: u64,
) -> Option<String> {
    if pending(j, i) {
        if replicas == 0 && j.fact("source_node").is_none() {
            if let Err(why) = record_source_node(j, cx) {
                return Some(give_up(j, i, cx, why));
            }
        }
        let attempt = j.begin(i, cx.now);
        if replicas == 0 && j.fact("downtime_from").is_none() {
            j.record("downtime_from", super::journal::unix(cx.now));
        }
        effects.push(Effect::Scale {
            service_id: j.service_id.clone(),
            replicas,
            // Scaling up: only from the 0 this run set.
            expect: (replicas > 0).then_some(0),
        });
        return Some(format!(
            "scaling {} to {replicas} (attempt {attempt})",
            j.service
        ));
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, "the service is gone"));
    };
    let settled = if replicas == 0 {
        service.replicas == Some(0) && service.unsettled == 0
    } else {
        service.replicas == Some(replicas)
    };
    if service.running as u64 == replicas && settled {
        if replicas == 0 {
            // What the copy is made under: any change to the spec from here on (a scale
            // up and down again included) means the copy may be stale.
            j.record("scaled_down_spec", &service.spec_hash);
        } else {
            j.record("back_at", super::journal::unix(cx.now));
        }
        j.complete(i, cx.now, format!("{} task(s) running", service.running));
        return Some(format!("{} runs {} task(s)", j.service, service.running));
    }
    if elapsed(j, i, cx.now) > cx.policy.volumes.migration.scale_timeout {
        let why = format!(
            "{} of {replicas} task(s) running, {} not ended (stopping, starting or on a node that does not answer), after the scale timeout",
            service.running, service.unsettled
        );
        return Some(attempt_failed(j, i, cx, why));
    }
    None
}

/// Before the first scale-down: the node the service runs on (where its source volume
/// provably is, and where the copy will run) and the constraint the swap will pin the
/// service with (see `pin`), both recorded — the plan says where the service will run.
/// `Err` (nothing changed yet): no task runs, so where the data is cannot be told; or it
/// runs on a manager, where the copy would put the data and the pin would keep the
/// service for good (placement moves it to a worker first, then a run starts again).
fn record_source_node(j: &mut Journal, cx: &Cx) -> Result<(), String> {
    let node = cx
        .view
        .service
        .as_ref()
        .and_then(|s| s.nodes.first())
        .ok_or_else(|| {
            format!(
                "no task of {} runs: the node its data is on cannot be told, and a copy elsewhere could read an empty volume; nothing was changed",
                j.service
            )
        })?
        .clone();
    if let Some(why) = unusable(&node, cx) {
        return Err(format!("{why}; nothing was changed"));
    }
    let (pin, why) =
        super::pin::service_pin(&cx.policy.volumes.migration, &node, &cx.snapshot.nodes);
    j.record("source_node", &node);
    j.record("pin", pin.unwrap_or_default());
    j.record(
        "placement",
        format!("the copy runs on node {node}, where the service ran; {why}"),
    );
    Ok(())
}

/// Why the copy may not run on `node` (the node the service ran on): a manager (the copy
/// would put the data there and the pin keep the service there), or a node that is gone,
/// not ready or drained (the job would wait there for its whole timeout, with the service
/// down).
fn unusable(node: &str, cx: &Cx) -> Option<String> {
    use crate::model::{Availability, NodeState};
    let Some(n) = cx.snapshot.nodes.iter().find(|n| n.id == node) else {
        return Some(format!(
            "node {node}, where the service ran, is no longer in the swarm"
        ));
    };
    if n.is_manager() {
        return Some(format!(
            "the service runs on manager {} ({node}): a migration would put its data there and pin it there for good; let placement move it to a worker first",
            n.hostname
        ));
    }
    (n.state != NodeState::Ready || n.availability != Availability::Active).then(|| {
        format!(
            "node {} ({node}), where the service's data is, is {:?} and {:?}: the copy cannot run there",
            n.hostname, n.state, n.availability
        )
    })
}

/// Why the service may not be copied or swapped now: it is no longer at 0 replicas with
/// every task ended, or its spec changed since the scale-down was done.
fn scaled_back(j: &Journal, service: &ServiceView) -> Option<String> {
    let at_zero = service.replicas == Some(0) && service.running == 0 && service.unsettled == 0;
    if !at_zero {
        return Some(format!(
            "the service is no longer scaled down ({} replica(s) wanted, {} running, {} not ended): someone scaled it back during the migration, so the copy would be stale",
            service.replicas.map_or("?".to_owned(), |r| r.to_string()),
            service.running,
            service.unsettled
        ));
    }
    (j.fact("scaled_down_spec") != Some(service.spec_hash.as_str())).then(|| {
        "the service's spec changed since it was scaled down (a scale up and down again, a stack deploy?): the copy may be stale".to_owned()
    })
}

fn copy(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    if pending(j, i) {
        if let Err(note) = previous_job_gone(j, i, cx, "copy_job", effects) {
            return note;
        }
        if let Some(why) = j.fact("source_node").and_then(|node| unusable(node, cx)) {
            return Some(give_up(j, i, cx, why));
        }
        let attempt = j.begin(i, cx.now);
        j.record("copy_job", job_name(&format!("{}-copy", j.run_id), attempt));
        return Some(format!("copy: attempt {attempt} begins"));
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, "the service is gone"));
    };
    let job = j.fact("copy_job").unwrap_or_default().to_owned();
    if let Some(why) = scaled_back(j, service) {
        // The rollback removes the copy job (still in the view).
        return Some(give_up(j, i, cx, why));
    }
    let Some(tasks) = &cx.view.job else {
        let Some(mount) = service.mount_of(&j.volume) else {
            let why = format!("the service no longer mounts {}", j.volume);
            return Some(give_up(j, i, cx, why));
        };
        let target = j.fact("target_volume").unwrap_or_default().to_owned();
        let Some(node) = j.fact("source_node").map(str::to_owned) else {
            return Some(give_up(
                j,
                i,
                cx,
                "the node the service ran on was never recorded",
            ));
        };
        effects.push(Effect::CreateJob(copy_job(
            &job,
            &j.run_id,
            &mount.mount,
            &target,
            &node,
            cx.policy,
        )));
        return Some(format!(
            "copy: creating job {job} ({} -> {target})",
            j.volume
        ));
    };
    let took = elapsed(j, i, cx.now);
    match job_end(
        tasks,
        took,
        cx.policy.volumes.migration.copy_timeout,
        "copy",
    ) {
        JobEnd::Completed => {
            effects.push(Effect::RemoveJob { name: job.clone() });
            j.complete(
                i,
                cx.now,
                format!(
                    "job {job} copied and verified the data in {}s",
                    took.as_secs()
                ),
            );
            Some("copy: verified".into())
        }
        JobEnd::Over(why) => {
            effects.push(Effect::RemoveJob { name: job });
            Some(attempt_failed(j, i, cx, why))
        }
        JobEnd::Running => None,
    }
}

/// Records the original mount (the Engine's definition, whole) before anything is sent,
/// then swaps it, then sees the swap in the service. A mount that is neither the source
/// nor the target fails the run: the spec changed under the migration.
fn swap_mount(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, "the service is gone"));
    };
    let path = j.fact("mount_target").unwrap_or_default().to_owned();
    let target = j.fact("target_volume").unwrap_or_default().to_owned();
    let source = j.volume.clone();
    let at = service.mount_at(&path).map(|m| (m.mount.source.clone(), m));
    if pending(j, i) {
        return Some(match at {
            // A swap whose answer was lost (sent, then the attempt failed): done.
            Some((s, _)) if s == target && j.fact("original_mount").is_some() => {
                j.begin(i, cx.now);
                j.record("swapped", "true");
                j.complete(i, cx.now, format!("{path} now mounts {target}"));
                format!("mount swapped to {target}")
            }
            Some((s, _)) if s != source => give_up(
                j,
                i,
                cx,
                format!("the service mounts {s} at {path}, not {source}: its spec changed"),
            ),
            None => give_up(
                j,
                i,
                cx,
                format!("the service no longer mounts anything at {path}"),
            ),
            Some((_, m)) => match scaled_back(j, service) {
                Some(why) => give_up(j, i, cx, why),
                None => {
                    j.begin(i, cx.now);
                    j.record("original_mount", &m.spec);
                    // Only a pin the swap adds is removed by a rollback: one the service
                    // already had is the user's.
                    let pin = j.fact("pin").unwrap_or_default().to_owned();
                    let had = service
                        .constraints
                        .iter()
                        .any(|c| crate::plan::constraint::same(c, &pin));
                    j.record("pin_added", !pin.is_empty() && !had);
                    format!("swap: original mount at {path} recorded")
                }
            },
        });
    }
    match at {
        Some((s, _)) if s == target => {
            j.record("swapped", "true");
            j.complete(i, cx.now, format!("{path} now mounts {target}"));
            Some(format!("mount swapped to {target}"))
        }
        Some((s, _)) if s == source => {
            if let Some(why) = scaled_back(j, service) {
                return Some(give_up(j, i, cx, why));
            }
            let m = &cx.policy.volumes.migration;
            effects.push(Effect::SwapMount {
                service_id: j.service_id.clone(),
                path: path.clone(),
                from: source,
                to: target.clone(),
                driver: m.driver.clone(),
                options: m.options.clone(),
                spec_hash: service.spec_hash.clone(),
                pin: added_pin(j),
            });
            Some(format!("swap: mounting {target} at {path}"))
        }
        other => {
            let now = other.map_or("nothing".to_owned(), |(s, _)| s);
            Some(give_up(
                j,
                i,
                cx,
                format!("the service mounts {now} at {path} during the swap: its spec changed"),
            ))
        }
    }
}

/// The constraint the swap adds (and a rollback removes): the run's pin, unless the
/// service had it already.
pub(super) fn added_pin(j: &Journal) -> Option<String> {
    (j.fact("pin_added") == Some("true"))
        .then(|| j.fact("pin").map(str::to_owned))
        .flatten()
        .filter(|p| !p.is_empty())
}

/// The service runs all its replicas on the new volume for `volumes.migration.verify_for`
/// without a break; a break is recorded (`verify_breaks`) and restarts the clock. An
/// attempt that does not get there within `scale_timeout` + `verify_for` fails.
fn verify(j: &mut Journal, i: usize, cx: &Cx) -> Option<String> {
    let began = pending(j, i);
    if began {
        j.begin(i, cx.now);
    }
    let Some(service) = &cx.view.service else {
        return Some(give_up(j, i, cx, "the service is gone"));
    };
    let m = &cx.policy.volumes.migration;
    let target = j.fact("target_volume").unwrap_or_default().to_owned();
    let path = j.fact("mount_target").unwrap_or_default().to_owned();
    let mounted = service.mount_at(&path).map(|m| m.mount.source.clone());
    if mounted.as_deref() != Some(target.as_str()) {
        // A stack deploy wrote the old mount back, say: writes made on the new volume
        // are stranded there. Never swapped back blindly: the rollback reports it.
        let why = format!(
            "the service mounts {} at {path}, not {target}, during verify: its spec changed",
            mounted.unwrap_or_else(|| "nothing".into())
        );
        return Some(give_up(j, i, cx, why));
    }
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
            return Some(attempt_failed(j, i, cx, why));
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
/// service mounts it) to the target volume (the policy's driver and options), on `node`
/// (where the service ran: see `pin`).
pub(super) fn copy_job(
    name: &str,
    run_id: &str,
    source: &Mount,
    target: &str,
    node: &str,
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
        constraints: vec![super::pin::on_node(node)],
    }
}
