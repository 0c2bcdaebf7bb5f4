//! One consistent-enough picture of the swarm per reconcile, from list calls only: the
//! local node's info, all nodes, all services, and only the running tasks on managers
//! (a 2,000-node swarm has ~100,000 tasks; the planner needs a handful).

use std::collections::HashMap;
use std::time::SystemTime;

use bollard::errors::Error as DockerError;
use bollard::models::LocalNodeState;
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptionsBuilder};
use bollard::Docker;

use super::convert;
use crate::model::{Control, LocalNode, Snapshot};

/// Why no snapshot could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Engine did not answer or failed; retry with backoff.
    #[error("Docker API call {call} failed: {source}")]
    Api {
        /// Which call.
        call: &'static str,
        /// The error.
        #[source]
        source: DockerError,
    },
    /// swarm-warden is not talking to a swarm manager: nothing to do until it is.
    #[error("the Docker Engine swarm-warden talks to is not an active swarm manager (swarm state {state}); point --docker-host / DOCKER_HOST at a manager")]
    NotAManager {
        /// The local node's swarm state.
        state: String,
    },
}

impl ObserveError {
    /// Whether trying again may help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, ObserveError::Api { .. })
    }
}

/// Takes snapshots through one Docker client.
#[derive(Debug, Clone)]
pub struct Observer {
    docker: Docker,
}

impl Observer {
    /// An observer using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// The client, for the writers.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Reads the swarm. `now` is stamped on the snapshot (the planner's clock).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn snapshot(&self, now: SystemTime) -> Result<Snapshot, ObserveError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|source| ObserveError::Api {
                call: "info",
                source,
            })?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE)
            || swarm.control_available != Some(true)
        {
            return Err(ObserveError::NotAManager {
                state: swarm
                    .local_node_state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        let local = LocalNode {
            node_id: swarm.node_id.unwrap_or_default(),
            addr: swarm.node_addr.unwrap_or_default(),
        };
        let nodes = match self.docker.list_nodes(None::<ListNodesOptions>).await {
            Ok(nodes) => nodes,
            Err(e) if is_no_leader(&e) => {
                return Ok(Snapshot {
                    observed_at: now,
                    local,
                    control: Control::NoLeader { error: message(&e) },
                    nodes: Vec::new(),
                    services: Vec::new(),
                    tasks: Vec::new(),
                })
            }
            Err(source) => {
                return Err(ObserveError::Api {
                    call: "list nodes",
                    source,
                })
            }
        };
        let nodes: Vec<_> = nodes.iter().map(convert::node).collect();
        let services = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(|source| ObserveError::Api {
                call: "list services",
                source,
            })?;
        let manager_ids: Vec<&str> = nodes
            .iter()
            .filter(|n| n.is_manager())
            .map(|n| n.id.as_str())
            .collect();
        let tasks = if manager_ids.is_empty() {
            Vec::new()
        } else {
            let filters =
                HashMap::from([("desired-state", vec!["running"]), ("node", manager_ids)]);
            self.docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default().filters(&filters).build(),
                ))
                .await
                .map_err(|source| ObserveError::Api {
                    call: "list tasks",
                    source,
                })?
        };
        Ok(Snapshot {
            observed_at: now,
            local,
            control: Control::Leader,
            nodes,
            services: services.iter().map(convert::service).collect(),
            tasks: tasks.iter().map(convert::task).collect(),
        })
    }
}

/// A manager without a raft leader answers list calls with a server error ("The swarm
/// does not have a leader", "context deadline exceeded") or not at all.
fn is_no_leader(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError { .. } | DockerError::RequestTimeoutError
    )
}

fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
