//! The only writes swarm-warden makes to nodes, each carrying the version it read
//! (optimistic concurrency: a concurrent change makes the write fail, not clobber it).

use bollard::models::{NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum};
use bollard::query_parameters::{DeleteNodeOptions, UpdateNodeOptions};
use bollard::Docker;

use crate::model::{Availability, Node, Role};

/// A write the Engine refused or could not carry out.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {message}")]
pub struct WriteError {
    /// What was attempted.
    pub what: String,
    /// What the Engine (or SwarmKit) said.
    pub message: String,
}

/// Writes through one Docker client.
#[derive(Debug, Clone)]
pub struct Writer {
    docker: Docker,
}

impl Writer {
    /// A writer using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// Sets a node's role (`docker node promote` / `demote`), keeping the rest of its spec.
    pub async fn set_role(&self, node: &Node, role: Role) -> Result<(), WriteError> {
        let spec = NodeSpec {
            name: node.spec_name.clone(),
            labels: Some(node.labels.clone().into_iter().collect()),
            role: Some(match role {
                Role::Manager => NodeSpecRoleEnum::MANAGER,
                Role::Worker => NodeSpecRoleEnum::WORKER,
            }),
            availability: Some(match node.availability {
                Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
                Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
                Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
            }),
        };
        let version = i64::try_from(node.version).unwrap_or(i64::MAX);
        self.docker
            .update_node(&node.id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| WriteError {
                what: format!(
                    "{} {}",
                    if role == Role::Manager {
                        "promote"
                    } else {
                        "demote"
                    },
                    node.hostname
                ),
                message: message(&e),
            })
    }

    /// Removes a node from the swarm (`docker node rm --force`).
    pub async fn remove_node(&self, node: &Node) -> Result<(), WriteError> {
        self.docker
            .delete_node(&node.id, Some(DeleteNodeOptions { force: true }))
            .await
            .map_err(|e| WriteError {
                what: format!("node rm --force {}", node.hostname),
                message: message(&e),
            })
    }
}

fn message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}
