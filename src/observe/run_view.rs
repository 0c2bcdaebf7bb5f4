//! The narrow reads a runbook step decides on (see [`RunView`]): the run's service by ID,
//! that service's tasks, and the run's current job — three or four calls for one run,
//! never a whole snapshot.

use std::collections::HashMap;

use bollard::models::TaskState;
use bollard::query_parameters::{InspectServiceOptions, ListServicesOptions};

use super::convert;
use super::snapshot::{bounded, ObserveError, Observer};
use super::swarm_errors::is_not_found;
use crate::model::journal::Journal;
use crate::model::run_view::{JobTaskState, JobView, ObservedMount, RunView, ServiceView};
use crate::model::stored::Listing;

/// The journal facts that name a run's job, by the step that runs it.
const JOB_FACTS: [(&str, &str); 2] = [("pad", "pad_job"), ("copy", "copy_job")];

impl Observer {
    /// What `journal`'s current step sees now (see [`RunView`]).
    ///
    /// # Errors
    /// A read failed or did not answer in time (a service that does not exist is `None`,
    /// not an error).
    pub async fn run_view(&self, journal: &Journal) -> Result<RunView, ObserveError> {
        let service = self.service_view(&journal.service_id).await?;
        let step = journal.current().map(|i| journal.steps[i].name.as_str());
        let job = match JOB_FACTS
            .iter()
            .find(|(s, _)| Some(*s) == step)
            .and_then(|(_, fact)| journal.fact(fact))
        {
            Some(name) => self.job_view(name).await?,
            None => None,
        };
        Ok(RunView { service, job })
    }

    /// Every stored runbook journal (one list call).
    ///
    /// # Errors
    /// The list call failed or did not answer in time.
    pub async fn journals(&self) -> Result<Listing, ObserveError> {
        bounded("list configs", super::list_journals(self.docker())).await
    }

    async fn service_view(&self, service_id: &str) -> Result<Option<ServiceView>, ObserveError> {
        let read = self
            .docker()
            .inspect_service(service_id, None::<InspectServiceOptions>);
        let service = match tokio::time::timeout(super::snapshot::LIST_TIMEOUT, read).await {
            Ok(Err(e)) if is_not_found(&e) => return Ok(None),
            Ok(result) => result.map_err(|source| ObserveError::Api {
                call: "inspect service",
                source,
            })?,
            Err(_) => {
                return Err(ObserveError::Api {
                    call: "inspect service",
                    source: bollard::errors::Error::RequestTimeoutError,
                })
            }
        };
        let spec = service.spec.clone().unwrap_or_default();
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1).max(0) as u64);
        let mounts = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.mounts.as_ref())
            .into_iter()
            .flatten()
            .map(|m| ObservedMount {
                mount: convert::mount(m),
                spec: serde_json::to_string(m).unwrap_or_default(),
            })
            .collect();
        let filters = HashMap::from([("service", vec![service_id])]);
        let tasks = self.list_tasks(&filters).await?;
        let desired_running =
            |t: &&bollard::models::Task| t.desired_state == Some(TaskState::RUNNING);
        let state = |t: &bollard::models::Task| t.status.as_ref().and_then(|s| s.state);
        let is_running =
            |t: &&bollard::models::Task| desired_running(t) && state(t) == Some(TaskState::RUNNING);
        let running: Vec<&bollard::models::Task> = tasks.iter().filter(is_running).collect();
        let mut nodes: Vec<String> = running.iter().filter_map(|t| t.node_id.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let constraints = spec
            .task_template
            .as_ref()
            .and_then(|t| t.placement.as_ref())
            .and_then(|p| p.constraints.clone())
            .unwrap_or_default();
        Ok(Some(ServiceView {
            nodes,
            constraints,
            spec_hash: convert::spec_hash(&spec),
            replicas,
            running: running.len(),
            unsettled: tasks
                .iter()
                .filter(|t| !is_running(t))
                .filter(|t| !state(t).is_some_and(ended))
                .count(),
            mounts,
        }))
    }

    async fn job_view(&self, name: &str) -> Result<Option<JobView>, ObserveError> {
        let services = bounded(
            "list services",
            self.docker().list_services(Some(ListServicesOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
                status: None,
            })),
        )
        .await?;
        // The name filter matches prefixes too.
        if !services
            .iter()
            .any(|s| s.spec.as_ref().and_then(|x| x.name.as_deref()) == Some(name))
        {
            return Ok(None);
        }
        let filters = HashMap::from([("service", vec![name])]);
        let tasks = self.list_tasks(&filters).await?;
        Ok(Some(JobView {
            tasks: tasks
                .iter()
                .filter_map(|t| t.status.as_ref().and_then(|s| s.state))
                .map(|s| match s {
                    TaskState::COMPLETE => JobTaskState::Complete,
                    TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED => {
                        JobTaskState::Failed
                    }
                    _ => JobTaskState::Active,
                })
                .collect(),
        }))
    }
}

/// A task state after which its container no longer runs.
fn ended(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::SHUTDOWN
            | TaskState::COMPLETE
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::ORPHANED
            | TaskState::REMOVE
    )
}
