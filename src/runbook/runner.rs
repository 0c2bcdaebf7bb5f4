//! Advances active runbooks, one reconcile at a time: each step checks its precondition,
//! acts once (recording in the journal before acting, so a restart resumes instead of
//! repeating), verifies, and on failure retries with backoff up to its attempt budget.
//! Steps that wait (a job running, the metered size catching up) return and are looked at
//! again on the next reconcile.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use bollard::models::{
    Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptionsBuilder};
use bollard::Docker;

use super::journal::{unix, Journal, RunStatus, RunbookKind, StepState};
use super::store::{JournalStore, Stored};
use crate::config::Policy;
use crate::model::Snapshot;
use crate::plan::volumes::{padding_plan, watched};

/// Label of the service that approves a run: its value must be the run ID.
pub const APPROVE_LABEL: &str = "swarm-warden.approve";
/// Label marking the jobs a runbook started.
pub const RUN_LABEL: &str = "swarm-warden.runbook";
/// Steps of each runbook.
pub fn steps(kind: RunbookKind) -> &'static [&'static str] {
    match kind {
        RunbookKind::EfsPadding => &["preflight", "approval", "pad", "verify"],
        RunbookKind::EbsMigration => &[
            "preflight",
            "approval",
            "create-target",
            "scale-down",
            "copy",
            "swap-mount",
            "scale-up",
            "verify",
        ],
    }
}

/// Where padding files go on the volume.
const PAD_DIR: &str = "/efs/.swarm-warden-padding";

/// Advances runbooks through one Docker client.
#[derive(Debug, Clone)]
pub struct Runner {
    docker: Docker,
    store: JournalStore,
}

/// What happened to a step in one advance, for logs.
type Note = String;

impl Runner {
    /// A runner using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self {
            store: JournalStore::new(docker.clone()),
            docker,
        }
    }

    /// The store, for starting runs.
    pub fn store(&self) -> &JournalStore {
        &self.store
    }

    /// Advances every active run as far as it can go now.
    pub async fn advance(&self, snapshot: &Snapshot, policy: &Policy) -> Vec<Note> {
        let mut notes = Vec::new();
        let runs = match self.store.list().await {
            Ok(runs) => runs,
            Err(e) => return vec![format!("cannot read runbook journals: {e}")],
        };
        for mut run in runs.into_iter().filter(|r| r.journal.is_active()) {
            // A bounded number of transitions per reconcile: steps that finish at once
            // (preflight, approval) chain; waiting steps stop the loop.
            for _ in 0..8 {
                match self.step(&mut run, snapshot, policy).await {
                    Ok(Some(note)) => {
                        notes.push(format!("{}: {note}", run.journal.run_id));
                        if let Err(e) = self.store.save(&mut run).await {
                            notes.push(format!("{}: journal not saved: {e}", run.journal.run_id));
                            break;
                        }
                        if !run.journal.is_active() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        notes.push(format!("{}: {e}", run.journal.run_id));
                        break;
                    }
                }
            }
        }
        notes
    }

    /// One transition of the current step; `None` when it has to wait.
    async fn step(
        &self,
        run: &mut Stored,
        snapshot: &Snapshot,
        policy: &Policy,
    ) -> Result<Option<Note>, String> {
        let now = SystemTime::now();
        let j = &mut run.journal;
        let Some(i) = j.current() else {
            return Ok(None);
        };
        if j.steps[i].retry_at.is_some_and(|at| unix(now) < at) {
            return Ok(None);
        }
        let name = j.steps[i].name.clone();
        match (j.kind, name.as_str()) {
            (_, "preflight") => self.preflight(j, i, snapshot, policy, now),
            (_, "approval") => Ok(approval(j, i, snapshot, policy, now)),
            (RunbookKind::EfsPadding, "pad") => self.pad(j, i, snapshot, policy, now).await,
            (RunbookKind::EfsPadding, "verify") => Ok(verify_padding(j, i, snapshot, policy, now)),
            (kind, step) => {
                let detail = format!(
                    "step {step} of {} is not implemented in this version",
                    kind.as_str()
                );
                j.fail_attempt(i, now, detail.clone(), 1, Duration::ZERO);
                Ok(Some(detail))
            }
        }
    }

    fn preflight(
        &self,
        j: &mut Journal,
        i: usize,
        snapshot: &Snapshot,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<Note>, String> {
        j.begin(i, now);
        let watched = watched(&snapshot.services, policy);
        let Some(w) = watched
            .iter()
            .find(|w| w.efs_id == j.efs_id && w.service_id == j.service_id)
        else {
            j.fail_attempt(
                i,
                now,
                "the volume is no longer watched or its service is gone",
                1,
                Duration::ZERO,
            );
            return Ok(Some("preflight failed: volume gone".into()));
        };
        let Some(t) = snapshot.telemetry.iter().find(|t| t.efs_id == j.efs_id) else {
            let delay = self.delay(policy, j.steps[i].attempts);
            j.fail_attempt(
                i,
                now,
                "no telemetry for the volume",
                policy.volumes.step_attempts,
                delay,
            );
            return Ok(Some("preflight: no telemetry yet".into()));
        };
        if j.kind == RunbookKind::EfsPadding {
            let Some(pad) = padding_plan(t, policy) else {
                let delay = self.delay(policy, j.steps[i].attempts);
                j.fail_attempt(
                    i,
                    now,
                    "incomplete telemetry",
                    policy.volumes.step_attempts,
                    delay,
                );
                return Ok(Some("preflight: incomplete telemetry".into()));
            };
            j.record("padding_bytes", pad.bytes);
            j.record("padding_metered", pad.metered as u64);
            j.record("metered_size_before", t.storage.unwrap_or(0.0) as u64);
            j.record("target_baseline", pad.target_baseline as u64);
            j.record("monthly_cost_usd", format!("{:.2}", pad.monthly_cost));
            j.record("eta_seconds", pad.eta.as_secs());
        }
        j.record("volume", &w.volume);
        j.complete(i, now, "ready");
        Ok(Some(format!(
            "preflight done ({} bytes to pad)",
            j.fact("padding_bytes").unwrap_or("-")
        )))
    }

    async fn pad(
        &self,
        j: &mut Journal,
        i: usize,
        snapshot: &Snapshot,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<Note>, String> {
        let bytes: u64 = j
            .fact("padding_bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(0);
        if bytes == 0 {
            j.begin(i, now);
            j.complete(i, now, "nothing to pad");
            return Ok(Some("nothing to pad".into()));
        }
        if j.steps[i].state == StepState::Pending {
            // Record the attempt before acting: a restart then looks for this job instead
            // of starting another.
            let attempt = j.begin(i, now);
            j.record("pad_job", job_name(&j.run_id, attempt));
            return Ok(Some(format!("pad: attempt {attempt} begins")));
        }
        let job = j.fact("pad_job").unwrap_or_default().to_owned();
        let tasks = self.job_tasks(&job).await?;
        if tasks.is_none() {
            let Some(service) = snapshot.services.iter().find(|s| s.id == j.service_id) else {
                return Err("the volume's service is gone".into());
            };
            let Some(mount) = service.mounts.iter().find(|m| m.source == j.volume) else {
                return Err(format!(
                    "service {} no longer mounts {}",
                    service.name, j.volume
                ));
            };
            let spec = pad_job(&job, &j.run_id, mount, bytes, policy);
            self.docker
                .create_service(spec, None)
                .await
                .map_err(|e| format!("create padding job {job}: {e}"))?;
            return Ok(Some(format!("pad: job {job} created ({bytes} bytes)")));
        }
        let states = tasks.unwrap_or_default();
        let started = j.steps[i].started_at.unwrap_or(0);
        let elapsed = Duration::from_secs(unix(now).saturating_sub(started));
        if states.contains(&TaskState::COMPLETE) {
            self.remove_service(&job).await;
            j.complete(
                i,
                now,
                format!("job {job} wrote {bytes} bytes in {}s", elapsed.as_secs()),
            );
            return Ok(Some("pad: job complete".into()));
        }
        let failed = states.iter().any(|s| {
            matches!(
                s,
                TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED
            )
        });
        if failed || elapsed > policy.volumes.padding.job_timeout {
            self.remove_service(&job).await;
            let why = if failed {
                "the job failed"
            } else {
                "the job timed out"
            };
            let delay = self.delay(policy, j.steps[i].attempts);
            let exhausted = j.fail_attempt(i, now, why, policy.volumes.step_attempts, delay);
            return Ok(Some(format!(
                "pad: {why}{}",
                if exhausted {
                    "; run failed"
                } else {
                    "; will retry"
                }
            )));
        }
        Ok(None)
    }

    /// The states of a job's tasks; `None` when the job does not exist.
    async fn job_tasks(&self, job: &str) -> Result<Option<Vec<TaskState>>, String> {
        let services = self
            .docker
            .list_services(Some(ListServicesOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![job.to_owned()])])),
                status: None,
            }))
            .await
            .map_err(|e| format!("list jobs: {e}"))?;
        if !services
            .iter()
            .any(|s| s.spec.as_ref().and_then(|x| x.name.as_deref()) == Some(job))
        {
            return Ok(None);
        }
        let filters = HashMap::from([("service", vec![job])]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| format!("list job tasks: {e}"))?;
        Ok(Some(
            tasks
                .iter()
                .filter_map(|t| t.status.as_ref().and_then(|s| s.state))
                .collect(),
        ))
    }

    async fn remove_service(&self, name: &str) {
        if let Err(e) = self.docker.delete_service(name).await {
            tracing::warn!(job = name, error = %e, "Could not remove a runbook job");
        }
    }

    fn delay(&self, policy: &Policy, attempts: u32) -> Duration {
        let mut delays = crate::act::Backoffs::builder(
            policy.controller.backoff_min,
            policy.controller.backoff_max,
        )
        .build();
        (0..attempts.max(1))
            .filter_map(|_| delays.next())
            .last()
            .unwrap_or(policy.controller.backoff_min)
    }
}

fn approval(
    j: &mut Journal,
    i: usize,
    snapshot: &Snapshot,
    policy: &Policy,
    now: SystemTime,
) -> Option<Note> {
    if !policy.volumes.require_approval {
        j.begin(i, now);
        j.complete(i, now, "approval not required");
        return Some("approval not required".into());
    }
    let approved = snapshot
        .services
        .iter()
        .find(|s| s.id == j.service_id)
        .and_then(|s| s.labels.get(APPROVE_LABEL))
        .is_some_and(|v| v == &j.run_id);
    if approved {
        j.begin(i, now);
        j.complete(
            i,
            now,
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

fn verify_padding(
    j: &mut Journal,
    i: usize,
    snapshot: &Snapshot,
    policy: &Policy,
    now: SystemTime,
) -> Option<Note> {
    if j.steps[i].state == StepState::Pending {
        j.begin(i, now);
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
    let now_size = snapshot
        .telemetry
        .iter()
        .find(|t| t.efs_id == j.efs_id)
        .and_then(|t| t.storage);
    if let Some(size) = now_size {
        if size >= before + 0.9 * added {
            j.record("metered_size_after", size as u64);
            j.complete(
                i,
                now,
                format!(
                    "metered size {:.1} GiB (was {:.1} GiB)",
                    size / 1073741824.0,
                    before / 1073741824.0
                ),
            );
            return Some("verified: the metered size grew".into());
        }
    }
    let started = j.steps[i].started_at.unwrap_or(0);
    if Duration::from_secs(unix(now).saturating_sub(started))
        > policy.volumes.padding.verify_timeout
    {
        j.fail_attempt(
            i,
            now,
            "the metered size did not grow in time",
            1,
            Duration::ZERO,
        );
        return Some("verify failed".into());
    }
    None
}

/// Job names stay under Docker's 63-character limit and say which run and attempt.
fn job_name(run_id: &str, attempt: u32) -> String {
    let mut name = format!("sw-{run_id}-{attempt}");
    name.truncate(63);
    name
}

fn pad_job(
    name: &str,
    run_id: &str,
    mount: &crate::model::Mount,
    bytes: u64,
    policy: &Policy,
) -> ServiceSpec {
    let p = &policy.volumes.padding;
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([(RUN_LABEL.to_owned(), run_id.to_owned())])),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(p.image.clone()),
                args: Some(vec![
                    "pad".into(),
                    "--dir".into(),
                    PAD_DIR.into(),
                    "--total".into(),
                    bytes.to_string(),
                    "--file-size".into(),
                    p.file_size.clone(),
                ]),
                mounts: Some(vec![Mount {
                    target: Some("/efs".into()),
                    source: Some(mount.source.clone()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(mount.labels.clone().into_iter().collect()),
                        driver_config: Some(MountVolumeOptionsDriverConfig {
                            name: (!mount.driver.is_empty()).then(|| mount.driver.clone()),
                            options: Some(mount.driver_options.clone().into_iter().collect()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec!["node.role==worker".into()]),
                ..Default::default()
            }),
            // Attempts are the runbook's business: a failed task stays failed.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_docker_limits_and_name_the_attempt() {
        let name = job_name("efs-padding-fs-0123456789abcdef0-1795721234", 2);
        assert!(name.len() <= 63);
        assert!(name.ends_with("-2"));
        assert!(job_name(&"x".repeat(80), 1).len() <= 63);
    }

    #[test]
    fn the_padding_job_mounts_the_same_volume_and_runs_pad() {
        let mount = crate::model::Mount {
            kind: "volume".into(),
            source: "efsdata".into(),
            target: "/data".into(),
            driver: "local".into(),
            driver_options: [("type".to_string(), "nfs4".to_string())].into(),
            labels: Default::default(),
            read_only: false,
        };
        let spec = pad_job("sw-x-1", "x", &mount, 4096, &Policy::default());
        let c = spec.task_template.unwrap().container_spec.unwrap();
        assert_eq!(c.args.unwrap()[0], "pad");
        let m = &c.mounts.unwrap()[0];
        assert_eq!(m.source.as_deref(), Some("efsdata"));
        assert_eq!(
            m.volume_options
                .as_ref()
                .unwrap()
                .driver_config
                .as_ref()
                .unwrap()
                .options
                .as_ref()
                .unwrap()["type"],
            "nfs4"
        );
    }
}
