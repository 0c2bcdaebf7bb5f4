//! The only writes swarm-warden makes to nodes, each carrying the version it read
//! (optimistic concurrency: a concurrent change makes the write fail, not clobber it).

use bollard::models::{NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, ServiceSpec};
use bollard::query_parameters::{
    DeleteNodeOptions, InspectServiceOptions, UpdateNodeOptions, UpdateServiceOptions,
};
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

    /// Sets a node's role (`docker node promote` / `demote`) and adds `label` (key, value)
    /// in the same write, keeping the rest of its spec: the label records the change where
    /// the next process finds it, atomically with the change itself.
    pub async fn set_role(
        &self,
        node: &Node,
        role: Role,
        label: (&str, String),
    ) -> Result<(), WriteError> {
        let mut labels = node.labels.clone();
        labels.insert(label.0.to_owned(), label.1);
        let spec = NodeSpec {
            name: node.spec_name.clone(),
            labels: Some(labels.into_iter().collect()),
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

    /// Reads a service, checks it is still at `expected_version`, and returns its spec with
    /// `constraint` added (the rest unchanged) and the version to write it at. Nothing is
    /// written: a changed service is read again next time.
    pub async fn with_constraint(
        &self,
        service_id: &str,
        name: &str,
        expected_version: u64,
        constraint: &str,
    ) -> Result<(ServiceSpec, u64), WriteError> {
        let what = format!("add `{constraint}` to service {name}");
        let current = self.inspect(service_id, &what).await?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        if version != expected_version {
            return Err(WriteError {
                what,
                message: format!(
                    "the service changed since it was read (version {expected_version} -> {version}); it is read again next time"
                ),
            });
        }
        let mut spec = current.spec.unwrap_or_default();
        let constraints = spec
            .task_template
            .get_or_insert_with(Default::default)
            .placement
            .get_or_insert_with(Default::default)
            .constraints
            .get_or_insert_with(Vec::new);
        if !constraints
            .iter()
            .any(|c| c.replace(' ', "") == constraint.replace(' ', ""))
        {
            constraints.push(constraint.to_owned());
        }
        Ok((spec, version))
    }

    /// Writes a service spec at `version` (optimistic concurrency: a concurrent change makes
    /// the Engine refuse it). `change` says what the spec changes, for the error.
    pub async fn write_spec(
        &self,
        service_id: &str,
        name: &str,
        spec: ServiceSpec,
        version: u64,
        change: &str,
    ) -> Result<(), WriteError> {
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            registry_auth_from: "spec".into(),
            rollback: None,
        };
        self.docker
            .update_service(service_id, spec, options, None)
            .await
            .map(|_| ())
            .map_err(|e| WriteError {
                what: format!("add `{change}` to service {name}"),
                message: message(&e),
            })
    }

    /// Rolls a service back to its previous spec (`docker service rollback`), only if its
    /// spec still hashes to `written_hash` — what swarm-warden wrote. A spec someone else
    /// changed since is theirs: it is not rolled back, and the error says so.
    pub async fn roll_back(
        &self,
        service_id: &str,
        name: &str,
        written_hash: &str,
    ) -> Result<(), WriteError> {
        let what = format!("roll back service {name}");
        let current = self.inspect(service_id, &what).await?;
        let spec = current.spec.unwrap_or_default();
        let current_hash = crate::observe::spec_hash(&spec);
        if written_hash.is_empty() || current_hash != written_hash {
            return Err(WriteError {
                what,
                message: "its spec changed since swarm-warden updated it (another writer, a stack deploy, SwarmKit's own rollback?): not rolled back".into(),
            });
        }
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            registry_auth_from: "spec".into(),
            rollback: Some("previous".into()),
        };
        self.docker
            .update_service(service_id, spec, options, None)
            .await
            .map(|_| ())
            .map_err(|e| WriteError {
                what,
                message: message(&e),
            })
    }

    async fn inspect(
        &self,
        service_id: &str,
        what: &str,
    ) -> Result<bollard::models::Service, WriteError> {
        self.docker
            .inspect_service(service_id, None::<InspectServiceOptions>)
            .await
            .map_err(|e| WriteError {
                what: what.to_owned(),
                message: message(&e),
            })
    }

    /// Removes a node from the swarm by ID (`docker node rm`, without `--force`): SwarmKit
    /// refuses a node that is Ready, in the same store transaction, so a host that came
    /// back since the last read is never removed. Every entry swarm-warden removes is Down
    /// or Disconnected, and out of the raft.
    pub async fn remove_node(&self, node: &Node) -> Result<(), WriteError> {
        self.docker
            .delete_node(&node.id, Some(DeleteNodeOptions { force: false }))
            .await
            .map_err(|e| WriteError {
                what: format!("node rm {} ({})", node.id, node.hostname),
                message: message(&e),
            })
    }

    /// Removes one label from a node, keeping the rest of its spec (version-checked).
    pub async fn remove_label(&self, node_id: &str, key: &str) -> Result<(), WriteError> {
        let what = format!("node update --label-rm {key} {node_id}");
        let current = self
            .docker
            .inspect_node(node_id)
            .await
            .map_err(|e| WriteError {
                what: what.clone(),
                message: message(&e),
            })?;
        let Some(mut spec) = current.spec else {
            return Ok(());
        };
        if let Some(labels) = spec.labels.as_mut() {
            if labels.remove(key).is_none() {
                return Ok(());
            }
        }
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.docker
            .update_node(node_id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| WriteError {
                what,
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
