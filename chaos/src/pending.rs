//! Task load without containers: services whose tasks stay Pending on purpose, so a lab's
//! task count can grow to Swarm2k's (95,000 tasks) on one machine. SwarmKit creates every
//! replica's task and keeps it Pending ("no suitable node") while no node satisfies the
//! service's constraint; the managers store, schedule and list these tasks as real ones.

use bollard::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement,
};
use bollard::Docker;

use crate::error::{LabError, Result};
use crate::image::BUSYBOX_IMAGE;

/// The node label no lab node carries: the constraint that keeps the tasks Pending.
pub const NEVER_LABEL: &str = "swarm-chaos.never";

/// Label on every service [`create_pending_service`] makes.
pub const PENDING_LABEL: &str = "swarm-chaos.pending";

/// Creates a replicated service `name` with `replicas` tasks that never run (see the
/// module). Returns the service ID.
///
/// # Errors
/// The manager refused the service (a name in use, no leader).
pub async fn create_pending_service(client: &Docker, name: &str, replicas: u64) -> Result<String> {
    let spec = ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some([(PENDING_LABEL.to_owned(), "true".to_owned())].into()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(BUSYBOX_IMAGE.to_owned()),
                command: Some(vec!["sleep".to_owned(), "1000000".to_owned()]),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.labels.{NEVER_LABEL}==true")]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas as i64),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = client
        .create_service(spec, None)
        .await
        .map_err(LabError::docker(name))?;
    created
        .id
        .ok_or_else(|| LabError::Usage(format!("the manager returned no ID for service {name}")))
}
