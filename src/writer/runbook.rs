//! Carries out the effects runbook steps ask for ([`Effect`]): jobs created and removed,
//! a service scaled, a mount swapped or restored. Service changes read the service right
//! before the write, change only their part, and write at the version read; a mount that
//! is not what the step saw is not written.

use std::collections::HashMap;

use bollard::models::{
    Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::{WriteError, Writer};
use crate::runbook::{Effect, Job, JobMount, RUN_LABEL};

impl Writer {
    /// Carries out one runbook effect, under the claim like every write.
    ///
    /// # Errors
    /// Not sent (claim; a mount that is not the one the step saw; an original mount that
    /// is not a mount), refused (a version conflict) or failed.
    pub async fn carry_out(&self, effect: &Effect) -> Result<(), WriteError> {
        let what = effect.to_string();
        match effect {
            Effect::CreateJob(job) => self.create_service(job_spec(job), &what).await.map(|_| ()),
            Effect::RemoveJob { name } => self.delete_service(name, &what).await,
            Effect::Scale {
                service_id,
                replicas,
                expect,
            } => {
                let replicas = i64::try_from(*replicas).unwrap_or(i64::MAX);
                let expect = expect.map(|e| i64::try_from(e).unwrap_or(i64::MAX));
                self.change_service(service_id, &what, |spec| {
                    let r = spec
                        .mode
                        .as_mut()
                        .and_then(|m| m.replicated.as_mut())
                        .ok_or("not a replicated service")?;
                    // Already there (a retry after a lost answer): nothing to write.
                    if r.replicas.unwrap_or(1) == replicas {
                        return Ok(());
                    }
                    if expect.is_some_and(|e| r.replicas.unwrap_or(1) != e) {
                        return Err("its replica count changed since the run read it");
                    }
                    r.replicas = Some(replicas);
                    Ok(())
                })
                .await
            }
            Effect::SwapMount {
                service_id,
                path,
                from,
                to,
                driver,
                options,
                spec_hash,
                pin,
            } => {
                self.change_service(service_id, &what, |spec| {
                    if crate::observe::spec_hash(spec) != *spec_hash {
                        return Err("its spec changed since the copy was made");
                    }
                    let replicas = spec
                        .mode
                        .as_ref()
                        .and_then(|m| m.replicated.as_ref())
                        .and_then(|r| r.replicas);
                    if replicas != Some(0) {
                        return Err("it is not scaled down");
                    }
                    let mount = mounts_mut(spec)
                        .find(|m| {
                            m.target.as_deref() == Some(path.as_str())
                                && m.source.as_deref() == Some(from.as_str())
                        })
                        .ok_or("the service does not mount that volume there (any more)")?;
                    mount.source = Some(to.clone());
                    let volume = mount.volume_options.get_or_insert_with(Default::default);
                    if let Some(labels) = volume.labels.as_mut() {
                        labels.retain(|k, _| !k.starts_with("swarm-warden."));
                    }
                    volume.driver_config = Some(MountVolumeOptionsDriverConfig {
                        name: Some(driver.clone()),
                        options: Some(options.clone().into_iter().collect()),
                    });
                    if let Some(pin) = pin {
                        let constraints = constraints_mut(spec);
                        if !constraints.contains(pin) {
                            constraints.push(pin.clone());
                        }
                    }
                    Ok(())
                })
                .await
            }
            Effect::RestoreMount {
                service_id,
                path,
                current,
                original,
                unpin,
            } => {
                let original: Mount =
                    serde_json::from_str(original).map_err(|e| WriteError::Unencodable {
                        what: what.clone(),
                        message: format!("the recorded original mount is not a mount: {e}"),
                    })?;
                // Nothing to put back (never swapped, or restored already): the spec
                // stays as it is and nothing is written.
                self.change_service(service_id, &what, |spec| {
                    let Some(mount) = mounts_mut(spec).find(|m| {
                        m.target.as_deref() == Some(path.as_str())
                            && m.source.as_deref() == Some(current.as_str())
                    }) else {
                        return Ok(());
                    };
                    *mount = original;
                    if let Some(unpin) = unpin {
                        constraints_mut(spec).retain(|c| c != unpin);
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// Reads the service, lets `change` edit its spec (or say why it cannot: nothing is
    /// written then) and writes it back at the version read. A `change` that leaves the
    /// spec as it was writes nothing.
    async fn change_service(
        &self,
        service_id: &str,
        what: &str,
        change: impl FnOnce(&mut ServiceSpec) -> Result<(), &'static str>,
    ) -> Result<(), WriteError> {
        let current = self.inspect(service_id, what).await?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let before = current.spec.unwrap_or_default();
        let mut spec = before.clone();
        change(&mut spec).map_err(|why| WriteError::Engine {
            what: what.to_owned(),
            message: format!("not written: {why}"),
        })?;
        if spec == before {
            return Ok(());
        }
        self.update_service(service_id, spec, version, what).await
    }
}

fn mounts_mut(spec: &mut ServiceSpec) -> impl Iterator<Item = &mut Mount> {
    spec.task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.mounts.as_mut())
        .into_iter()
        .flatten()
}

/// The service's placement constraints, created empty if it has none.
fn constraints_mut(spec: &mut ServiceSpec) -> &mut Vec<String> {
    spec.task_template
        .get_or_insert_with(Default::default)
        .placement
        .get_or_insert_with(Default::default)
        .constraints
        .get_or_insert_with(Default::default)
}

/// A one-shot replicated job where its constraints say; its attempts are the runbook's business, so a
/// failed task stays failed.
fn job_spec(job: &Job) -> ServiceSpec {
    ServiceSpec {
        name: Some(job.name.clone()),
        labels: Some(HashMap::from([(RUN_LABEL.to_owned(), job.run_id.clone())])),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(job.image.clone()),
                args: Some(job.args.clone()),
                mounts: Some(job.mounts.iter().map(volume_mount).collect()),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(job.constraints.clone()),
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

fn volume_mount(m: &JobMount) -> Mount {
    Mount {
        target: Some(m.target.clone()),
        source: Some(m.source.clone()),
        typ: Some(MountType::VOLUME),
        read_only: Some(m.read_only),
        volume_options: Some(MountVolumeOptions {
            labels: Some(m.labels.clone().into_iter().collect()),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: (!m.driver.is_empty()).then(|| m.driver.clone()),
                options: Some(m.options.clone().into_iter().collect()),
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
    fn a_job_is_one_completion_never_restarted_on_a_worker_with_its_mounts() {
        let job = Job {
            name: "sw-x-1".into(),
            run_id: "x".into(),
            image: "swarm-warden".into(),
            args: vec!["pad".into()],
            mounts: vec![JobMount {
                target: "/efs".into(),
                source: "efsdata".into(),
                driver: "local".into(),
                options: [("type".to_string(), "nfs4".to_string())].into(),
                labels: Default::default(),
                read_only: false,
            }],
            constraints: vec!["node.role==worker".into()],
        };
        let spec = job_spec(&job);
        assert_eq!(spec.labels.as_ref().unwrap()[RUN_LABEL], "x");
        let mode = spec.mode.unwrap().replicated_job.unwrap();
        assert_eq!(
            (mode.max_concurrent, mode.total_completions),
            (Some(1), Some(1))
        );
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            vec!["node.role==worker".to_owned()]
        );
        let c = task.container_spec.unwrap();
        assert_eq!(c.args.unwrap()[0], "pad");
        let m = &c.mounts.unwrap()[0];
        assert_eq!(m.source.as_deref(), Some("efsdata"));
        let driver = m
            .volume_options
            .as_ref()
            .unwrap()
            .driver_config
            .as_ref()
            .unwrap();
        assert_eq!(driver.name.as_deref(), Some("local"));
        assert_eq!(driver.options.as_ref().unwrap()["type"], "nfs4");
    }
}
