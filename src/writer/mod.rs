//! The one writer: every change swarm-warden makes to a swarm (node update and remove,
//! service create, update and delete, config create, update and delete) goes through here,
//! and each checks the lease [`Claim`] right before it is sent — a replica whose claim is
//! gone or ran out on its own clock sends nothing. Writes of existing objects carry the
//! version they read (optimistic concurrency: a concurrent change makes the write fail,
//! not clobber it). The lease keeper's own compare-and-swap is the one write outside:
//! it is what makes the claim.

use bollard::models::{
    ConfigSpec, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, ServiceSpec,
};
use bollard::query_parameters::{
    DeleteNodeOptions, InspectServiceOptions, UpdateConfigOptions, UpdateNodeOptions,
    UpdateServiceOptions,
};
use bollard::Docker;

use crate::lease::{Claim, Refusal};
use crate::model::{Availability, Node, Role};
use crate::observe::is_not_found;

mod runbook;
mod stored;

/// A write not sent, or one the Engine refused or could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Not sent: this replica may not write (see [`Claim::check`]).
    #[error("{what} not sent: {refusal}")]
    Refused {
        /// What was to be written.
        what: String,
        /// Why not.
        refusal: Refusal,
    },
    /// Sent, and refused or failed by the Engine (or SwarmKit).
    #[error("{what} failed: {message}")]
    Engine {
        /// What was attempted.
        what: String,
        /// What the Engine said.
        message: String,
    },
    /// Not sent: what was to be written cannot be encoded (a journal that is not JSON).
    #[error("{what} not sent: {message}")]
    Unencodable {
        /// What was to be written.
        what: String,
        /// Why it cannot be encoded.
        message: String,
    },
}

impl WriteError {
    /// What the Engine said, if the write was sent.
    pub fn engine_message(&self) -> Option<&str> {
        match self {
            WriteError::Engine { message, .. } => Some(message),
            WriteError::Refused { .. } | WriteError::Unencodable { .. } => None,
        }
    }

    fn engine(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let what = what.into();
        move |e| WriteError::Engine {
            what,
            message: message(&e),
        }
    }
}

/// Writes through one Docker client, each under the claim.
#[derive(Debug, Clone)]
pub struct Writer {
    docker: Docker,
    claim: Claim,
}

impl Writer {
    /// A writer using `docker`, checking `claim` before every write.
    pub fn new(docker: Docker, claim: Claim) -> Self {
        Self { docker, claim }
    }

    /// This writer for one action: it writes only under the current hold of the lease
    /// (see [`Claim::pinned`]).
    pub fn pinned(&self) -> Self {
        Self {
            docker: self.docker.clone(),
            claim: self.claim.pinned(),
        }
    }

    /// The claim every write checks.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Checks the claim right before sending `what`.
    fn may_send(&self, what: &str) -> Result<(), WriteError> {
        self.claim
            .check(what)
            .map_err(|refusal| WriteError::Refused {
                what: what.to_owned(),
                refusal,
            })
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
        let what = format!(
            "{} {}",
            if role == Role::Manager {
                "promote"
            } else {
                "demote"
            },
            node.hostname
        );
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
        self.may_send(&what)?;
        self.docker
            .update_node(&node.id, spec, UpdateNodeOptions { version })
            .await
            .map_err(WriteError::engine(what))
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
            return Err(WriteError::Engine {
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
        self.update_service(
            service_id,
            spec,
            version,
            &format!("add `{change}` to service {name}"),
        )
        .await
    }

    /// Writes a service spec at `version` (`docker service update`, optimistic concurrency;
    /// registry credentials as the spec has them). `what` names the write in errors.
    pub async fn update_service(
        &self,
        service_id: &str,
        spec: ServiceSpec,
        version: u64,
        what: &str,
    ) -> Result<(), WriteError> {
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            registry_auth_from: "spec".into(),
            rollback: None,
        };
        self.may_send(what)?;
        self.docker
            .update_service(service_id, spec, options, None)
            .await
            .map(|_| ())
            .map_err(WriteError::engine(what))
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
            return Err(WriteError::Engine {
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
        self.may_send(&what)?;
        self.docker
            .update_service(service_id, spec, options, None)
            .await
            .map(|_| ())
            .map_err(WriteError::engine(what))
    }

    /// Creates a service (`docker service create`); returns its ID.
    pub async fn create_service(
        &self,
        spec: ServiceSpec,
        what: &str,
    ) -> Result<String, WriteError> {
        self.may_send(what)?;
        self.docker
            .create_service(spec, None)
            .await
            .map(|created| created.id.unwrap_or_default())
            .map_err(WriteError::engine(what))
    }

    /// Removes a service by ID or name (`docker service rm`); one already gone counts as
    /// removed.
    pub async fn delete_service(&self, service: &str, what: &str) -> Result<(), WriteError> {
        self.may_send(what)?;
        match self.docker.delete_service(service).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(WriteError::engine(what)),
        }
    }

    /// Creates a Swarm config (`docker config create`); returns its ID.
    pub async fn create_config(&self, spec: ConfigSpec, what: &str) -> Result<String, WriteError> {
        self.may_send(what)?;
        self.docker
            .create_config(spec)
            .await
            .map(|created| created.id)
            .map_err(WriteError::engine(what))
    }

    /// Rewrites a Swarm config's labels at `version` (optimistic concurrency).
    pub async fn update_config(
        &self,
        config_id: &str,
        spec: ConfigSpec,
        version: u64,
        what: &str,
    ) -> Result<(), WriteError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.may_send(what)?;
        self.docker
            .update_config(config_id, spec, UpdateConfigOptions { version })
            .await
            .map_err(WriteError::engine(what))
    }

    /// Removes a Swarm config (`docker config rm`); one already gone counts as removed.
    pub async fn delete_config(&self, config_id: &str, what: &str) -> Result<(), WriteError> {
        self.may_send(what)?;
        match self.docker.delete_config(config_id).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(WriteError::engine(what)),
        }
    }

    async fn inspect(
        &self,
        service_id: &str,
        what: &str,
    ) -> Result<bollard::models::Service, WriteError> {
        self.docker
            .inspect_service(service_id, None::<InspectServiceOptions>)
            .await
            .map_err(WriteError::engine(what))
    }

    /// Removes a node from the swarm by ID (`docker node rm`, without `--force`): SwarmKit
    /// refuses a node that is Ready, in the same store transaction, so a host that came
    /// back since the last read is never removed. Every entry swarm-warden removes is Down
    /// or Disconnected, and out of the raft.
    pub async fn remove_node(&self, node: &Node) -> Result<(), WriteError> {
        let what = format!("node rm {} ({})", node.id, node.hostname);
        self.may_send(&what)?;
        self.docker
            .delete_node(&node.id, Some(DeleteNodeOptions { force: false }))
            .await
            .map_err(WriteError::engine(what))
    }

    /// Removes one label from a node, keeping the rest of its spec (version-checked).
    pub async fn remove_label(&self, node_id: &str, key: &str) -> Result<(), WriteError> {
        let what = format!("node update --label-rm {key} {node_id}");
        let current = self
            .docker
            .inspect_node(node_id)
            .await
            .map_err(WriteError::engine(what.clone()))?;
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
        self.may_send(&what)?;
        self.docker
            .update_node(node_id, spec, UpdateNodeOptions { version })
            .await
            .map_err(WriteError::engine(what))
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
