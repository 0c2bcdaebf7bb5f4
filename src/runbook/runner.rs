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
use crate::writer::Writer;

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

/// Advances runbooks: reads through one Docker client, writes through the [`Writer`].
#[derive(Debug, Clone)]
pub struct Runner {
    docker: Docker,
    writer: Writer,
    store: JournalStore,
}

/// What happened to a step in one advance, for logs.
type Note = String;

impl Runner {
    /// A runner reading through `docker` and writing through `writer`.
    pub fn new(docker: Docker, writer: Writer) -> Self {
        Self {
            store: JournalStore::new(docker.clone()),
            docker,
            writer,
        }
    }

    /// The store, for starting runs.
    pub fn store(&self) -> &JournalStore {
        &self.store
    }

    /// Advances every active run as far as it can go now, but none whose service is in
    /// `busy` (a placement fix or rollback is rolling it: a runbook write would race it).
    pub async fn advance(
        &self,
        snapshot: &Snapshot,
        policy: &Policy,
        busy: &[String],
    ) -> Vec<Note> {
        let mut notes = Vec::new();
        // Unreadable journals are left alone (the planner reports them).
        let runs = match self.store.list().await {
            Ok(listing) => listing.journals,
            Err(e) => return vec![format!("cannot read runbook journals: {e}")],
        };
        for mut run in runs.into_iter().filter(|r| r.journal.is_active()) {
            if busy.contains(&run.journal.service_id) {
                notes.push(format!(
                    "{}: waits: another action is changing service {}",
                    run.journal.run_id, run.journal.service
                ));
                continue;
            }
            // A bounded number of transitions per reconcile: steps that finish at once
            // (preflight, approval) chain; waiting steps stop the loop.
            for _ in 0..8 {
                // Every write checks the claim too; this keeps a replica that lost it
                // from judging steps (and spending attempts) it cannot record.
                if !self.writer.claim().is_held() {
                    notes.push(format!(
                        "{}: not advanced: this replica does not hold the lease",
                        run.journal.run_id
                    ));
                    return notes;
                }
                match self.step(&mut run, snapshot, policy).await {
                    Ok(Some(note)) => {
                        notes.push(format!("{}: {note}", run.journal.run_id));
                        if let Err(e) = self.store.save(&self.writer, &mut run).await {
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
            (RunbookKind::EbsMigration, "create-target") => {
                j.begin(i, now);
                let detail = format!(
                    "target volume {} (driver {}) is created on its node by the copy job's mount",
                    j.fact("target_volume").unwrap_or_default(),
                    policy.volumes.migration.driver
                );
                j.complete(i, now, detail);
                Ok(Some("target volume defined".into()))
            }
            (RunbookKind::EbsMigration, "scale-down") => self.scale(j, i, policy, now, 0).await,
            (RunbookKind::EbsMigration, "copy") => self.copy(j, i, snapshot, policy, now).await,
            (RunbookKind::EbsMigration, "swap-mount") => self.swap_mount(j, i, policy, now).await,
            (RunbookKind::EbsMigration, "scale-up") => {
                let replicas = j.fact("replicas").and_then(|r| r.parse().ok()).unwrap_or(1);
                self.scale(j, i, policy, now, replicas).await
            }
            (RunbookKind::EbsMigration, "verify") => self.verify_migration(j, i, policy, now).await,
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
        if j.kind == RunbookKind::EbsMigration {
            let Some(service) = snapshot.services.iter().find(|s| s.id == j.service_id) else {
                j.fail_attempt(i, now, "the service is gone", 1, Duration::ZERO);
                return Ok(Some("preflight failed: service gone".into()));
            };
            let crate::model::ServiceMode::Replicated { replicas } = service.mode else {
                j.fail_attempt(
                    i,
                    now,
                    "only replicated services can be migrated",
                    1,
                    Duration::ZERO,
                );
                return Ok(Some("preflight failed: not a replicated service".into()));
            };
            j.record("replicas", replicas);
            j.record("mount_target", &w.target);
            j.record(
                "target_volume",
                format!("{}{}", w.volume, policy.volumes.migration.volume_suffix),
            );
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
            self.writer
                .create_service(spec, &format!("create padding job {job}"))
                .await
                .map_err(|e| e.to_string())?;
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

    /// Scales the service to `replicas` (version-checked) and waits until that many tasks
    /// run. The first scale-down records when the downtime began.
    async fn scale(
        &self,
        j: &mut Journal,
        i: usize,
        policy: &Policy,
        now: SystemTime,
        replicas: u64,
    ) -> Result<Option<Note>, String> {
        if j.steps[i].state == StepState::Pending {
            let attempt = j.begin(i, now);
            if replicas == 0 && j.fact("downtime_from").is_none() {
                j.record("downtime_from", unix(now));
            }
            self.update_service(&j.service_id, |spec| {
                if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                    r.replicas = Some(i64::try_from(replicas).unwrap_or(i64::MAX));
                }
            })
            .await?;
            return Ok(Some(format!(
                "scaling {} to {replicas} (attempt {attempt})",
                j.service
            )));
        }
        let running = self.running_tasks(&j.service_id).await?;
        if running == replicas as usize {
            if replicas > 0 {
                j.record("back_at", unix(now));
            }
            j.complete(i, now, format!("{running} task(s) running"));
            return Ok(Some(format!("{} runs {running} task(s)", j.service)));
        }
        let started = j.steps[i].started_at.unwrap_or(0);
        if Duration::from_secs(unix(now).saturating_sub(started))
            > policy.volumes.migration.scale_timeout
        {
            let delay = self.delay(policy, j.steps[i].attempts);
            let failed = j.fail_attempt(
                i,
                now,
                format!("{running} of {replicas} tasks after the timeout"),
                policy.volumes.step_attempts,
                delay,
            );
            return Ok(Some(self.after_failure(j, failed, policy).await));
        }
        Ok(None)
    }

    async fn copy(
        &self,
        j: &mut Journal,
        i: usize,
        snapshot: &Snapshot,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<Note>, String> {
        if j.steps[i].state == StepState::Pending {
            let attempt = j.begin(i, now);
            j.record("copy_job", job_name(&format!("{}-copy", j.run_id), attempt));
            return Ok(Some(format!("copy: attempt {attempt} begins")));
        }
        let job = j.fact("copy_job").unwrap_or_default().to_owned();
        let Some(states) = self.job_tasks(&job).await? else {
            let Some(service) = snapshot.services.iter().find(|s| s.id == j.service_id) else {
                return Err("the volume's service is gone".into());
            };
            let Some(mount) = service.mounts.iter().find(|m| m.source == j.volume) else {
                return Err(format!(
                    "service {} no longer mounts {}",
                    service.name, j.volume
                ));
            };
            let target = j.fact("target_volume").unwrap_or_default().to_owned();
            self.writer
                .create_service(
                    copy_job(&job, &j.run_id, mount, &target, policy),
                    &format!("create copy job {job}"),
                )
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Some(format!(
                "copy: job {job} created ({} -> {target})",
                j.volume
            )));
        };
        let started = j.steps[i].started_at.unwrap_or(0);
        let elapsed = Duration::from_secs(unix(now).saturating_sub(started));
        if states.contains(&TaskState::COMPLETE) {
            self.remove_service(&job).await;
            j.complete(
                i,
                now,
                format!(
                    "job {job} copied and verified the data in {}s",
                    elapsed.as_secs()
                ),
            );
            return Ok(Some("copy: verified".into()));
        }
        let failed = states.iter().any(|s| {
            matches!(
                s,
                TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED
            )
        });
        if failed || elapsed > policy.volumes.migration.copy_timeout {
            self.remove_service(&job).await;
            let why = if failed {
                "the copy job failed"
            } else {
                "the copy job timed out"
            };
            let delay = self.delay(policy, j.steps[i].attempts);
            let exhausted = j.fail_attempt(i, now, why, policy.volumes.step_attempts, delay);
            return Ok(Some(format!(
                "copy: {why}; {}",
                self.after_failure(j, exhausted, policy).await
            )));
        }
        Ok(None)
    }

    async fn swap_mount(
        &self,
        j: &mut Journal,
        i: usize,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<Note>, String> {
        j.begin(i, now);
        let (source, target, path) = (
            j.volume.clone(),
            j.fact("target_volume").unwrap_or_default().to_owned(),
            j.fact("mount_target").unwrap_or_default().to_owned(),
        );
        let m = &policy.volumes.migration;
        let driver = m.driver.clone();
        let options: HashMap<String, String> = m.options.clone().into_iter().collect();
        let mut original = None;
        self.update_service(&j.service_id, |spec| {
            for mount in mounts_mut(spec) {
                if mount.source.as_deref() == Some(source.as_str())
                    && mount.target.as_deref() == Some(path.as_str())
                {
                    original = Some(mount.clone());
                    mount.source = Some(target.clone());
                    let volume = mount.volume_options.get_or_insert_with(Default::default);
                    if let Some(labels) = volume.labels.as_mut() {
                        labels.retain(|k, _| !k.starts_with("swarm-warden."));
                    }
                    volume.driver_config = Some(MountVolumeOptionsDriverConfig {
                        name: Some(driver.clone()),
                        options: Some(options.clone()),
                    });
                }
            }
        })
        .await?;
        if let Some(original) = original.and_then(|m| serde_json::to_string(&m).ok()) {
            j.record("original_mount", original);
        }
        j.record("swapped", "true");
        j.complete(i, now, format!("{path} now mounts {target}"));
        Ok(Some(format!("mount swapped to {target}")))
    }

    async fn verify_migration(
        &self,
        j: &mut Journal,
        i: usize,
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Option<Note>, String> {
        if j.steps[i].state == StepState::Pending {
            j.begin(i, now);
        }
        let replicas: usize = j.fact("replicas").and_then(|r| r.parse().ok()).unwrap_or(1);
        let running = self.running_tasks(&j.service_id).await?;
        if running < replicas {
            j.facts.remove("verify_since");
            return Ok(None);
        }
        let since: u64 = match j.fact("verify_since").and_then(|v| v.parse().ok()) {
            Some(since) => since,
            None => {
                j.record("verify_since", unix(now));
                return Ok(Some(format!(
                    "verify: {running} task(s) running on the new volume"
                )));
            }
        };
        if Duration::from_secs(unix(now).saturating_sub(since))
            >= policy.volumes.migration.verify_for
        {
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
                now,
                format!(
                    "ran {}s on the new volume; downtime {downtime}s",
                    unix(now) - since
                ),
            );
            return Ok(Some(format!("migration verified; downtime {downtime}s")));
        }
        Ok(None)
    }

    /// After a failed attempt: when the run failed for good, rolls a migration back to the
    /// original mount and replica count (the source volume was never touched).
    async fn after_failure(&self, j: &mut Journal, failed: bool, _policy: &Policy) -> String {
        if !failed || j.kind != RunbookKind::EbsMigration {
            return if failed {
                "run failed".into()
            } else {
                "will retry".into()
            };
        }
        let mut notes = Vec::new();
        if j.fact("swapped") == Some("true") {
            let (source, target, path) = (
                j.volume.clone(),
                j.fact("target_volume").unwrap_or_default().to_owned(),
                j.fact("mount_target").unwrap_or_default().to_owned(),
            );
            let original = j.fact("original_mount").map(str::to_owned);
            let result = self
                .update_service(&j.service_id, |spec| {
                    for mount in mounts_mut(spec) {
                        if mount.source.as_deref() == Some(target.as_str())
                            && mount.target.as_deref() == Some(path.as_str())
                        {
                            if let Some(orig) = original
                                .as_deref()
                                .and_then(|o| serde_json::from_str::<Mount>(o).ok())
                            {
                                *mount = orig;
                            } else {
                                mount.source = Some(source.clone());
                            }
                        }
                    }
                })
                .await;
            notes.push(match result {
                Ok(()) => "mount restored".to_owned(),
                Err(e) => format!("mount NOT restored: {e}"),
            });
        }
        if let Some(replicas) = j.fact("replicas").and_then(|r| r.parse::<i64>().ok()) {
            let result = self
                .update_service(&j.service_id, |spec| {
                    if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                        r.replicas = Some(replicas);
                    }
                })
                .await;
            notes.push(match result {
                Ok(()) => format!("replicas restored to {replicas}"),
                Err(e) => format!("replicas NOT restored: {e}"),
            });
        }
        j.record("rollback", notes.join("; "));
        format!("run failed; rolled back: {}", notes.join("; "))
    }

    /// Read-modify-write of a service spec carrying the version it read.
    async fn update_service(
        &self,
        service_id: &str,
        change: impl FnOnce(&mut ServiceSpec),
    ) -> Result<(), String> {
        let current = self
            .docker
            .inspect_service(
                service_id,
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await
            .map_err(|e| format!("read service {service_id}: {e}"))?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = current.spec.unwrap_or_default();
        change(&mut spec);
        self.writer
            .update_service(
                service_id,
                spec,
                version,
                &format!("update service {service_id}"),
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn running_tasks(&self, service_id: &str) -> Result<usize, String> {
        let filters = HashMap::from([
            ("service", vec![service_id]),
            ("desired-state", vec!["running"]),
        ]);
        let tasks = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| format!("list tasks: {e}"))?;
        Ok(tasks
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
            .count())
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
        if let Err(e) = self
            .writer
            .delete_service(name, &format!("remove runbook job {name}"))
            .await
        {
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

fn mounts_mut(spec: &mut ServiceSpec) -> impl Iterator<Item = &mut Mount> {
    spec.task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.mounts.as_mut())
        .into_iter()
        .flatten()
}

fn volume_mount(
    target: &str,
    source: &str,
    driver: &str,
    options: HashMap<String, String>,
    labels: HashMap<String, String>,
    read_only: bool,
) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(source.into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: (!driver.is_empty()).then(|| driver.to_owned()),
                options: Some(options),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn copy_job(
    name: &str,
    run_id: &str,
    source: &crate::model::Mount,
    target: &str,
    policy: &Policy,
) -> ServiceSpec {
    let m = &policy.volumes.migration;
    let mut spec = job_spec(
        name,
        run_id,
        &m.image,
        vec![
            "copy".into(),
            "--from".into(),
            "/src".into(),
            "--to".into(),
            "/dst".into(),
        ],
    );
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        c.mounts = Some(vec![
            volume_mount(
                "/src",
                &source.source,
                &source.driver,
                source.driver_options.clone().into_iter().collect(),
                source.labels.clone().into_iter().collect(),
                true,
            ),
            volume_mount(
                "/dst",
                target,
                &m.driver,
                m.options.clone().into_iter().collect(),
                HashMap::new(),
                false,
            ),
        ]);
    }
    spec
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
    let args = vec![
        "pad".into(),
        "--dir".into(),
        PAD_DIR.into(),
        "--total".into(),
        bytes.to_string(),
        "--file-size".into(),
        p.file_size.bytes().to_string(),
    ];
    let mut spec = job_spec(name, run_id, &p.image, args);
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        c.mounts = Some(vec![volume_mount(
            "/efs",
            &mount.source,
            &mount.driver,
            mount.driver_options.clone().into_iter().collect(),
            mount.labels.clone().into_iter().collect(),
            false,
        )]);
    }
    spec
}

/// A one-shot replicated job on a worker; its attempts are the runbook's business, so a
/// failed task stays failed.
fn job_spec(name: &str, run_id: &str, image: &str, args: Vec<String>) -> ServiceSpec {
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
                image: Some(image.to_owned()),
                args: Some(args),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec!["node.role==worker".into()]),
                ..Default::default()
            }),
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
    fn a_run_waits_for_the_approval_label_naming_it() {
        use crate::plan::quorum_test_support::{cluster, manager, t};
        let mut policy = Policy::default();
        policy.volumes.require_approval = true;
        let mut snap = cluster(vec![manager("m1", true)], t(0));
        snap.services = vec![crate::model::Service {
            id: "svc".into(),
            version: 1,
            name: "prom".into(),
            labels: Default::default(),
            mode: crate::model::ServiceMode::Replicated { replicas: 1 },
            constraints: Vec::new(),
            image: "prom/prometheus".into(),
            reservations: Default::default(),
            max_replicas_per_node: 0,
            platforms: Vec::new(),
            update: None,
            mounts: Vec::new(),
            ..Default::default()
        }];
        let mut j = Journal::new(
            RunbookKind::EfsPadding,
            "fs-1",
            "svc",
            "prom",
            "data",
            steps(RunbookKind::EfsPadding),
            t(0),
        );
        j.begin(0, t(0));
        j.complete(0, t(1), "ok");
        assert!(approval(&mut j, 1, &snap, &policy, t(2))
            .unwrap()
            .contains("awaiting approval"));
        assert_eq!(j.status, RunStatus::AwaitingApproval);
        assert_eq!(
            approval(&mut j, 1, &snap, &policy, t(3)),
            None,
            "waits quietly"
        );
        snap.services[0]
            .labels
            .insert(APPROVE_LABEL.into(), "someone-else".into());
        assert_eq!(approval(&mut j, 1, &snap, &policy, t(4)), None);
        snap.services[0]
            .labels
            .insert(APPROVE_LABEL.into(), j.run_id.clone());
        assert_eq!(
            approval(&mut j, 1, &snap, &policy, t(5)).as_deref(),
            Some("approved")
        );
        assert_eq!(j.status, RunStatus::Running);
        assert_eq!(j.current(), Some(2));
    }

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
