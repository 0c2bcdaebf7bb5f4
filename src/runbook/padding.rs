//! The `efs-padding` runbook's own steps: `pad` (a job writes padding files onto the EFS
//! volume) and `verify` (the metered size grew). Pure transitions (see `transition`).

use super::effect::{Effect, Job, JobMount};
use super::journal::Journal;
use super::transition::{
    attempt_failed, elapsed, give_up, job_end, job_name, pending, previous_job_gone, Cx, JobEnd,
};
use crate::config::Policy;
use crate::model::Mount;

/// Where padding files go on the volume (the job mounts it at `/efs`).
pub const PAD_DIR: &str = "/efs/.swarm-warden-padding";

/// `pad`: record the attempt and its job name, then create the job, then wait for it to
/// complete (the job removed after), fail or time out (`volumes.padding.job_timeout`).
pub(super) fn pad(j: &mut Journal, i: usize, cx: &Cx, effects: &mut Vec<Effect>) -> Option<String> {
    let bytes: u64 = j
        .fact("padding_bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    if bytes == 0 {
        j.begin(i, cx.now);
        j.complete(i, cx.now, "nothing to pad");
        return Some("nothing to pad".into());
    }
    if pending(j, i) {
        if let Err(note) = previous_job_gone(j, i, cx, "pad_job", effects) {
            return note;
        }
        // Recorded before the job is created: a restart then looks for this job instead
        // of starting another.
        let attempt = j.begin(i, cx.now);
        j.record("pad_job", job_name(&j.run_id, attempt));
        return Some(format!("pad: attempt {attempt} begins"));
    }
    let job = j.fact("pad_job").unwrap_or_default().to_owned();
    let Some(tasks) = &cx.view.job else {
        let Some(mount) = cx.view.service.as_ref().and_then(|s| s.mount_of(&j.volume)) else {
            let why = format!("the service no longer mounts {}", j.volume);
            return Some(attempt_failed(j, i, cx, why));
        };
        if let Some(why) = not_defined(&mount.mount) {
            return Some(give_up(j, i, cx, why));
        }
        effects.push(Effect::CreateJob(pad_job(
            &job,
            &j.run_id,
            &mount.mount,
            bytes,
            cx.policy,
        )));
        return Some(format!("pad: creating job {job} ({bytes} bytes)"));
    };
    let took = elapsed(j, i, cx.now);
    match job_end(
        tasks,
        took,
        cx.policy.volumes.padding.job_timeout,
        "padding",
    ) {
        JobEnd::Completed => {
            effects.push(Effect::RemoveJob { name: job.clone() });
            j.complete(
                i,
                cx.now,
                format!("job {job} wrote {bytes} bytes in {}s", took.as_secs()),
            );
            Some("pad: job complete".into())
        }
        JobEnd::Over(why) => {
            effects.push(Effect::RemoveJob { name: job });
            Some(attempt_failed(j, i, cx, why))
        }
        JobEnd::Running => None,
    }
}

/// `verify`: the metered size (telemetry) grew by at least 90% of what was padded, within
/// `volumes.padding.verify_timeout`.
pub(super) fn verify(j: &mut Journal, i: usize, cx: &Cx) -> Option<String> {
    if pending(j, i) {
        j.begin(i, cx.now);
        return Some("verify: waiting for the metered size".into());
    }
    let before: f64 = j
        .fact("metered_size_before")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let added: f64 = j
        .fact("padding_metered")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let size = cx
        .snapshot
        .telemetry
        .iter()
        .find(|t| t.efs_id == j.efs_id)
        .and_then(|t| t.storage);
    if let Some(size) = size.filter(|size| *size >= before + 0.9 * added) {
        j.record("metered_size_after", size as u64);
        j.complete(
            i,
            cx.now,
            format!(
                "metered size {:.1} GiB (was {:.1} GiB)",
                size / 1073741824.0,
                before / 1073741824.0
            ),
        );
        return Some("verified: the metered size grew".into());
    }
    if elapsed(j, i, cx.now) > cx.policy.volumes.padding.verify_timeout {
        // Padding again would only add more: this attempt is the run's last.
        let why = "the metered size did not grow in time";
        j.fail_attempt(i, cx.now, why, 0, std::time::Duration::ZERO);
        return Some(format!("verify failed: {why}"));
    }
    None
}

/// Why the pad job may not mount `mount`: a mount that does not define its volume (no
/// driver options, and the `local` driver or none) names a volume created outside the
/// service spec, or a plain local directory — on the job's node that is a node-local
/// volume of the same name, and padding would fill that node's disk. (A defined volume
/// that is still not EFS, a block device say, is caught by `swarm-warden pad`'s
/// free-space check when it cannot hold the padding with 10% to spare.)
fn not_defined(mount: &Mount) -> Option<String> {
    let local = mount.driver.is_empty() || mount.driver == "local";
    (local && mount.driver_options.is_empty()).then(|| {
        format!(
            "the service's mount of {} does not define the volume (no driver options): on the job's node it would be a local volume of that name, and padding would fill that node's disk; define the EFS volume in the service (volume-driver and volume-opt) or pad by hand",
            mount.source
        )
    })
}

/// The padding job: `swarm-warden pad` writing `bytes` into [`PAD_DIR`] on the service's
/// own volume, mounted exactly as the service mounts it.
pub(super) fn pad_job(name: &str, run_id: &str, mount: &Mount, bytes: u64, policy: &Policy) -> Job {
    let p = &policy.volumes.padding;
    Job {
        name: name.to_owned(),
        run_id: run_id.to_owned(),
        image: p.image.clone(),
        args: vec![
            "pad".into(),
            "--dir".into(),
            PAD_DIR.into(),
            "--total".into(),
            bytes.to_string(),
            "--file-size".into(),
            p.file_size.bytes().to_string(),
        ],
        mounts: vec![JobMount {
            target: "/efs".into(),
            source: mount.source.clone(),
            driver: mount.driver.clone(),
            options: mount.driver_options.clone(),
            labels: mount.labels.clone(),
            read_only: false,
        }],
        // EFS reaches every node: any worker (never load a manager with it).
        constraints: vec!["node.role==worker".into()],
    }
}
