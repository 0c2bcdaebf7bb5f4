//! Undoing a migration that failed for good, as far as the swarm shows it may: the copy
//! job removed, the original mount put back (whole, as recorded before the swap), then the
//! replica count — only onto the original mount, and only from the 0 this run set. Each
//! turn reads the view and asks for what is still missing, so a rollback cut short by a
//! crash, a lost lease or a failed write is taken up again. It ends (`failed`) when nothing
//! is left that it may do, and says what it left (fact `rollback`). Pure, like the steps.

use super::effect::Effect;
use super::journal::{unix, Journal, RunStatus, RunbookKind};
use super::transition::{delay, Cx};

/// The run failed for good (its step is marked failed): a migration that touched the
/// service goes on rolling back; anything else is over. Returns the note.
pub(super) fn begin(j: &mut Journal) -> String {
    let touched = ["downtime_from", "original_mount", "swapped"]
        .iter()
        .any(|fact| j.fact(fact).is_some());
    if j.kind != RunbookKind::EbsMigration || !touched {
        if j.kind == RunbookKind::EbsMigration {
            j.record("rollback", "nothing to undo: the service was not touched");
        }
        return "run failed".into();
    }
    j.status = RunStatus::RollingBack;
    j.finished_at = None;
    "run failed; rolling back".into()
}

/// One turn of a rollback: the next undo it needs (as effects), or its end.
pub(super) fn advance(j: &mut Journal, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    if j.fact("rollback_retry_at")
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|at| unix(cx.now) < at)
    {
        return None;
    }
    let Some(service) = &cx.view.service else {
        return Some(finish(j, cx, vec!["the service is gone".into()]));
    };
    // Removed alongside the rest (its failure is only logged: it must not hold the undo).
    if let (Some(_), Some(name)) = (&cx.view.job, j.fact("copy_job")) {
        effects.push(Effect::RemoveJob {
            name: name.to_owned(),
        });
    }
    let path = j.fact("mount_target").unwrap_or_default().to_owned();
    let target = j.fact("target_volume").unwrap_or_default().to_owned();
    let source = j.volume.clone();
    let mounted = service.mount_at(&path).map(|m| m.mount.source.clone());
    let mut left = Vec::new();
    if j.fact("back_at").is_some() && mounted.as_deref() == Some(target.as_str()) {
        // The service has run on the new volume since: its writes are there. Swapping
        // back would strand them (stale data on the source): report, change nothing.
        left.push(format!(
            "{} has run on {target} since it was scaled back up: its newest data is there, and mounting {source} again would strand it; decide by hand which volume {path} mounts",
            j.service
        ));
        return Some(finish(j, cx, left));
    }
    let original_in_place = match (j.fact("original_mount"), mounted.as_deref()) {
        (Some(original), Some(m)) if m == target => {
            effects.push(Effect::RestoreMount {
                service_id: j.service_id.clone(),
                path: path.clone(),
                current: target,
                original: original.to_owned(),
                unpin: super::migration::added_pin(j),
            });
            return Some(format!("rollback: restoring the original mount at {path}"));
        }
        (_, Some(m)) if m == source => {
            // Someone put the mount back without the pin the swap added: said, not undone
            // (the pin keeps the service where its source data was read; harmless there).
            if let Some(pin) = super::migration::added_pin(j) {
                if service
                    .constraints
                    .iter()
                    .any(|c| crate::plan::constraint::same(c, &pin))
                {
                    left.push(format!(
                        "the constraint {pin} the swap added is still there: remove it (docker service update --constraint-rm '{pin}' {})",
                        j.service
                    ));
                }
            }
            true
        }
        (None, Some(m)) if m == target => {
            // Never guessed: the source's name with the target's driver would mount a
            // new, empty volume.
            left.push(format!(
                "{path} mounts {target} and the original mount was never recorded: put it back by hand"
            ));
            false
        }
        (_, other) => {
            left.push(format!(
                "{path} mounts {}, neither {source} nor {target}: left alone",
                other.unwrap_or("nothing")
            ));
            false
        }
    };
    if j.fact("downtime_from").is_some() && service.replicas == Some(0) {
        let replicas = j.fact("replicas").and_then(|r| r.parse::<u64>().ok());
        match replicas {
            Some(replicas) if original_in_place => {
                effects.push(Effect::Scale {
                    service_id: j.service_id.clone(),
                    replicas,
                    expect: Some(0),
                });
                return Some(format!(
                    "rollback: scaling {} back to {replicas}",
                    j.service
                ));
            }
            _ => left.push(format!(
                "{} is left at 0 replicas: it would start on a mount the rollback did not put back",
                j.service
            )),
        }
    }
    Some(finish(j, cx, left))
}

/// A rollback write failed: tried again after a backoff, up to `volumes.step_attempts`
/// times; then the rollback ends and says what the operator must put back.
pub(super) fn effect_failed(j: &mut Journal, cx: &Cx, what: &str) -> String {
    let errors = j
        .fact("rollback_errors")
        .and_then(|e| e.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    j.record("rollback_errors", errors);
    j.record("rollback_failed", what);
    if errors >= cx.policy.volumes.step_attempts {
        return finish(j, cx, vec![format!("{what}: put it back by hand")]);
    }
    let wait = delay(cx.policy, errors);
    j.record("rollback_retry_at", unix(cx.now) + wait.as_secs());
    format!("rollback: {what}; again in {}s", wait.as_secs())
}

/// Ends the rollback: the run is failed; `left` is what it could not undo.
fn finish(j: &mut Journal, cx: &Cx, left: Vec<String>) -> String {
    let seen = cx.view.service.as_ref().map_or_else(
        || "the service is gone".to_owned(),
        |s| {
            let path = j.fact("mount_target").unwrap_or_default();
            format!(
                "{} replica(s), {path} mounts {}",
                s.replicas.map_or("?".to_owned(), |r| r.to_string()),
                s.mount_at(path)
                    .map_or("nothing", |m| m.mount.source.as_str())
            )
        },
    );
    let summary = if left.is_empty() {
        format!("done: {seen}")
    } else {
        format!("incomplete ({seen}): {}", left.join("; "))
    };
    j.record("rollback", &summary);
    j.status = RunStatus::Failed;
    j.finished_at = Some(unix(cx.now));
    format!("rollback {summary}")
}
