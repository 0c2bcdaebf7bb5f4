//! Runbook steps as pure transitions: `(journal, view, snapshot, policy, now) -> (journal',
//! effects)`. No I/O and no clock reads: the runner reads the view, saves `journal'` (the
//! record comes before the act, so a restart resumes instead of repeating) and then hands
//! the effects to the one writer. A failed effect is a transition too ([`effect_failed`]):
//! it counts as an attempt of its step, with backoff, and a step out of attempts fails the
//! run and rolls a migration back.

use std::time::{Duration, SystemTime};

use super::effect::Effect;
use super::journal::{unix, Journal, RunStatus, RunbookKind, StepState};
use super::{migration, padding, rollback};
use crate::config::{Mode, Policy};
use crate::model::run_view::{JobView, RunView};
use crate::model::Snapshot;
use crate::plan::volumes::{padding_plan, watched};

/// Label of the service that approves a run: its value must be the run ID.
pub const APPROVE_LABEL: &str = "swarm-warden.approve";

/// What one transition made of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The journal after it: saved before any effect is carried out.
    pub journal: Journal,
    /// What to change in the swarm, in order, after the journal is saved.
    pub effects: Vec<Effect>,
    /// What happened, for the log.
    pub note: String,
}

/// What a step reads besides its journal.
pub(super) struct Cx<'a> {
    pub view: &'a RunView,
    pub snapshot: &'a Snapshot,
    pub policy: &'a Policy,
    pub now: SystemTime,
}

/// The next transition of `journal`'s current step, or `None` when the step has to wait
/// (a job running, a retry not yet due, the metered size not caught up, no step left) or
/// the run is paused (`volumes.mode` is `audit` or `off`).
pub fn advance(
    journal: &Journal,
    view: &RunView,
    snapshot: &Snapshot,
    policy: &Policy,
    now: SystemTime,
) -> Option<Transition> {
    let i = journal.current()?;
    // `audit` and `off` pause runs in flight (the planner reports them `runbook-paused`).
    if !journal.is_active() || policy.volumes.mode != Mode::Enforce {
        return None;
    }
    let cx = Cx {
        view,
        snapshot,
        policy,
        now,
    };
    let mut j = journal.clone();
    let mut effects = Vec::new();
    if j.status == RunStatus::RollingBack {
        let note = rollback::advance(&mut j, &cx, &mut effects)?;
        return Some(Transition {
            journal: j,
            effects,
            note,
        });
    }
    if journal.steps[i].retry_at.is_some_and(|at| unix(now) < at) {
        return None;
    }
    let name = j.steps[i].name.clone();
    let note = match (j.kind, name.as_str()) {
        (_, "preflight") => Some(preflight(&mut j, i, &cx)),
        (_, "approval") => approval(&mut j, i, &cx),
        (RunbookKind::EfsPadding, "pad") => padding::pad(&mut j, i, &cx, &mut effects),
        (RunbookKind::EfsPadding, "verify") => padding::verify(&mut j, i, &cx),
        (RunbookKind::EbsMigration, step) => migration::step(step, &mut j, i, &cx, &mut effects),
        (kind, step) => Some(give_up(
            &mut j,
            i,
            &cx,
            format!(
                "step {step} of {} is not implemented in this version",
                kind.as_str()
            ),
        )),
    }?;
    Some(Transition {
        journal: j,
        effects,
        note,
    })
}

/// What a failed `effect` makes of `journal` (the journal saved before the effect was
/// sent). A job that could not be removed changes nothing (`None`: the runner logs it and
/// goes on). A rollback's write is tried again after a backoff (see `rollback`). A job
/// or a swap that could not be written keeps its step and its job name (the write may
/// have been carried out with its answer lost: the next turn sees it) and is tried again
/// after a backoff, up to `volumes.step_attempts` times for the step; a scale that could
/// not be written is a failed attempt. Out of attempts, the run fails and a migration is
/// rolled back.
pub fn effect_failed(
    journal: &Journal,
    effect: &Effect,
    error: &str,
    view: &RunView,
    snapshot: &Snapshot,
    policy: &Policy,
    now: SystemTime,
) -> Option<Transition> {
    if matches!(effect, Effect::RemoveJob { .. }) {
        return None;
    }
    let mut j = journal.clone();
    let mut effects = Vec::new();
    let what = format!("{effect} failed: {error}");
    let cx = Cx {
        view,
        snapshot,
        policy,
        now,
    };
    let note = match j.status {
        RunStatus::RollingBack => rollback::effect_failed(&mut j, &cx, &what),
        RunStatus::Running | RunStatus::AwaitingApproval => {
            let i = j.current()?;
            match effect {
                Effect::CreateJob(_) | Effect::SwapMount { .. } => {
                    write_failed(&mut j, i, &cx, &mut effects, effect, what)
                }
                _ => attempt_failed(&mut j, i, &cx, what),
            }
        }
        RunStatus::Succeeded | RunStatus::Failed => return None,
    };
    Some(Transition {
        journal: j,
        effects,
        note,
    })
}

/// The delay before attempt `attempts + 1`: `controller.backoff_min` doubling per attempt
/// made, capped at `controller.backoff_max`. No jitter: a transition is a pure function
/// (runs are few; they need no spreading).
pub(super) fn delay(policy: &Policy, attempts: u32) -> Duration {
    let min = policy.controller.backoff_min;
    let doublings = attempts.saturating_sub(1).min(20);
    min.saturating_mul(1 << doublings)
        .min(policy.controller.backoff_max)
}

/// How long the current attempt of step `i` has run.
pub(super) fn elapsed(j: &Journal, i: usize, now: SystemTime) -> Duration {
    Duration::from_secs(unix(now).saturating_sub(j.steps[i].started_at.unwrap_or(0)))
}

/// A job or swap write of step `i` that failed: the step keeps its state and its job
/// name, and the write is tried again after a backoff; `volumes.step_attempts` such
/// failures fail the attempt (removing the job, which may exist after all).
fn write_failed(
    j: &mut Journal,
    i: usize,
    cx: &Cx,
    effects: &mut Vec<Effect>,
    effect: &Effect,
    what: String,
) -> String {
    let key = format!("{}_write_errors", j.steps[i].name);
    let errors = j
        .fact(&key)
        .and_then(|e| e.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    if errors >= cx.policy.volumes.step_attempts {
        j.facts.remove(&key);
        if let Effect::CreateJob(job) = effect {
            effects.push(Effect::RemoveJob {
                name: job.name.clone(),
            });
        }
        return attempt_failed(j, i, cx, what);
    }
    j.record(&key, errors);
    let wait = delay(cx.policy, errors);
    j.steps[i].retry_at = Some(unix(cx.now) + wait.as_secs());
    j.steps[i].detail = what.clone();
    format!("{what}; again in {}s", wait.as_secs())
}

/// A failed attempt of step `i`: retried after a backoff while attempts remain
/// (`volumes.step_attempts`); otherwise the run fails and is rolled back. Returns the note.
pub(super) fn attempt_failed(j: &mut Journal, i: usize, cx: &Cx, why: impl Into<String>) -> String {
    let why = why.into();
    let delay = delay(cx.policy, j.steps[i].attempts);
    if j.fail_attempt(
        i,
        cx.now,
        why.clone(),
        cx.policy.volumes.step_attempts,
        delay,
    ) {
        format!("{why}; {}", rollback::begin(j))
    } else {
        format!("{why}; will retry in {}s", delay.as_secs())
    }
}

/// A failure no retry can mend (the service is gone, someone scaled it back during a
/// migration): the run fails now and is rolled back. Returns the note.
pub(super) fn give_up(j: &mut Journal, i: usize, cx: &Cx, why: impl Into<String>) -> String {
    let why = why.into();
    j.fail_attempt(i, cx.now, why.clone(), 0, Duration::ZERO);
    format!("{why}; {}", rollback::begin(j))
}

fn preflight(j: &mut Journal, i: usize, cx: &Cx) -> String {
    j.begin(i, cx.now);
    let watched = watched(&cx.snapshot.services, cx.policy);
    let Some(w) = watched
        .iter()
        .find(|w| w.efs_id == j.efs_id && w.service_id == j.service_id)
    else {
        return give_up(
            j,
            i,
            cx,
            "the volume is no longer watched or its service is gone",
        );
    };
    let Some(t) = cx.snapshot.telemetry.iter().find(|t| t.efs_id == j.efs_id) else {
        return attempt_failed(j, i, cx, "no telemetry for the volume");
    };
    if j.kind == RunbookKind::EfsPadding {
        let Some(pad) = padding_plan(t, cx.policy) else {
            return attempt_failed(j, i, cx, "incomplete telemetry");
        };
        j.record("padding_bytes", pad.bytes);
        // Where on the volume the padding goes: what `swarm-warden unpad` removes.
        j.record("padding_dir", padding::PAD_DIR.trim_start_matches("/efs"));
        j.record("padding_metered", pad.metered as u64);
        j.record("metered_size_before", t.storage.unwrap_or(0.0) as u64);
        j.record("target_baseline", pad.target_baseline as u64);
        j.record("monthly_cost_usd", format!("{:.2}", pad.monthly_cost));
        j.record("eta_seconds", pad.eta.as_secs());
    }
    if j.kind == RunbookKind::EbsMigration {
        let Some(service) = cx.snapshot.services.iter().find(|s| s.id == j.service_id) else {
            return give_up(j, i, cx, "the service is gone");
        };
        let crate::model::ServiceMode::Replicated { replicas } = service.mode else {
            return give_up(j, i, cx, "only replicated services can be migrated");
        };
        if replicas == 0 {
            // Nothing would show the copy good, and "back" would be 0: maybe a service an
            // earlier run left down.
            return give_up(
                j,
                i,
                cx,
                "the service has 0 replicas: a migration needs it running to verify it",
            );
        }
        if replicas > 1 && !cx.policy.volumes.migration.shared_target {
            return give_up(
                j,
                i,
                cx,
                format!("the service has {replicas} replicas sharing the volume, and the target driver {} attaches to one node (volumes.migration.shared_target is false): it cannot serve them all", cx.policy.volumes.migration.driver),
            );
        }
        j.record("replicas", replicas);
        j.record("mount_target", &w.target);
        // Named per run: a second run never merges into an earlier run's target (files
        // the source deleted since would stay: stale WAL segments, blocks).
        j.record(
            "target_volume",
            format!(
                "{}{}-{}",
                w.volume, cx.policy.volumes.migration.volume_suffix, j.started_at
            ),
        );
    }
    j.record("volume", &w.volume);
    j.complete(i, cx.now, "ready");
    format!(
        "preflight done ({} bytes to pad)",
        j.fact("padding_bytes").unwrap_or("-")
    )
}

/// Waits for the service's approval label to name the run, unless approval is not
/// required. Waiting quietly (`None`) once the run says it awaits approval.
pub(super) fn approval(j: &mut Journal, i: usize, cx: &Cx) -> Option<String> {
    if !cx.policy.volumes.require_approval {
        j.begin(i, cx.now);
        j.complete(i, cx.now, "approval not required");
        return Some("approval not required".into());
    }
    let approved = cx
        .snapshot
        .services
        .iter()
        .find(|s| s.id == j.service_id)
        .and_then(|s| s.labels.get(APPROVE_LABEL))
        .is_some_and(|v| v == &j.run_id);
    if approved {
        j.begin(i, cx.now);
        j.complete(
            i,
            cx.now,
            format!("approved by label {APPROVE_LABEL}={}", j.run_id),
        );
        Some("approved".into())
    } else if j.status != RunStatus::AwaitingApproval {
        j.status = RunStatus::AwaitingApproval;
        Some(format!(
            "awaiting approval: label the service {APPROVE_LABEL}={}",
            j.run_id
        ))
    } else {
        None
    }
}

/// Whether step `i` has not started its current attempt.
pub(super) fn pending(j: &Journal, i: usize) -> bool {
    j.steps[i].state == StepState::Pending
}

/// How long a removed job's container gets to stop before the next attempt's job may
/// start: above Docker's default `stop_grace_period` (10 s), which the jobs keep.
pub(super) const JOB_STOP_GRACE: Duration = Duration::from_secs(30);

/// Before a new attempt of a job step (`fact` names the job): the previous attempt's job
/// must be gone — removed again if it is still there (its removal failed, or its create
/// answer was lost) — and its container given [`JOB_STOP_GRACE`] to stop, so that two jobs
/// never write the same volume. `Err` holds the note of a transition (or `None`: wait).
pub(super) fn previous_job_gone(
    j: &mut Journal,
    i: usize,
    cx: &Cx,
    fact: &str,
    effects: &mut Vec<Effect>,
) -> Result<(), Option<String>> {
    const GONE_AT: &str = "previous_job_gone_at";
    let Some(name) = j
        .fact(fact)
        .filter(|_| j.steps[i].attempts > 0)
        .map(str::to_owned)
    else {
        return Ok(());
    };
    if cx.view.job.is_some() {
        let note = format!("removing the previous attempt's job {name} first");
        effects.push(Effect::RemoveJob { name });
        return Err(Some(note));
    }
    match j.fact(GONE_AT).and_then(|t| t.parse::<u64>().ok()) {
        None => {
            j.record(GONE_AT, unix(cx.now));
            Err(Some(format!(
                "the previous attempt's job {name} is gone; its container gets {}s to stop",
                JOB_STOP_GRACE.as_secs()
            )))
        }
        Some(at) if unix(cx.now) < at + JOB_STOP_GRACE.as_secs() => Err(None),
        Some(_) => {
            j.facts.remove(GONE_AT);
            Ok(())
        }
    }
}

/// How a runbook job stands, judged the same way for every job step.
pub(super) enum JobEnd {
    /// A task completed.
    Completed,
    /// It failed, or ran past its timeout: the attempt is over (why, for the note).
    Over(String),
    /// Still running within its timeout.
    Running,
}

/// Judges a job (`padding`, `copy`: `what`) that has run for `took` against `timeout`.
pub(super) fn job_end(tasks: &JobView, took: Duration, timeout: Duration, what: &str) -> JobEnd {
    if tasks.completed() {
        JobEnd::Completed
    } else if tasks.failed() {
        JobEnd::Over(format!("the {what} job failed"))
    } else if took > timeout {
        JobEnd::Over(format!("the {what} job timed out"))
    } else {
        JobEnd::Running
    }
}

/// Job names stay under Docker's 63-character limit and say which run and attempt.
pub(super) fn job_name(run_id: &str, attempt: u32) -> String {
    let mut name = format!("sw-{run_id}-{attempt}");
    name.truncate(63);
    name
}
