//! Placement fixes in flight, recorded in the swarm before the service is written: one
//! Swarm config per fix, the service and the hash of the spec written in its labels. A
//! swarm-warden that dies (or is stopped) while the rolling update runs leaves the record,
//! and whichever process reads it next finishes the job — clears it when the update
//! converged or the spec changed since, rolls the service back when the update is stuck —
//! so no service stays half-updated.

use std::collections::HashMap;
use std::time::SystemTime;

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::Docker;

use crate::model::PlacementRecords;
use crate::writer::{WriteError, Writer};

pub use crate::model::stored::{
    RECORD_CONFIG_PREFIX as CONFIG_PREFIX, RECORD_SERVICE_LABEL as SERVICE_LABEL,
};
use crate::model::stored::{
    RECORD_NAME_LABEL as NAME_LABEL, RECORD_SPEC_LABEL as SPEC_LABEL,
    RECORD_WRITTEN_LABEL as WRITTEN_LABEL,
};
const DATA: &str = "swarm-warden placement fix in flight: see the labels";

/// Reads records through one Docker client; writes them through the [`Writer`].
#[derive(Debug, Clone)]
pub struct InflightStore {
    docker: Docker,
}

impl InflightStore {
    /// A store using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// Every record, one list call (see [`crate::observe::list_placement_records`]).
    pub async fn list(&self) -> Result<PlacementRecords, bollard::errors::Error> {
        crate::observe::list_placement_records(&self.docker).await
    }

    /// Records a fix about to be written; returns the config ID. Fails if a record of the
    /// service exists (the name is taken): one fix per service in flight.
    pub async fn create(
        &self,
        writer: &Writer,
        service_id: &str,
        service_name: &str,
        spec_hash: &str,
        at: SystemTime,
    ) -> Result<String, WriteError> {
        let spec = ConfigSpec {
            name: Some(format!("{CONFIG_PREFIX}{service_id}")),
            labels: Some(HashMap::from([
                (SERVICE_LABEL.to_owned(), service_id.to_owned()),
                (NAME_LABEL.to_owned(), service_name.to_owned()),
                (SPEC_LABEL.to_owned(), spec_hash.to_owned()),
                (
                    WRITTEN_LABEL.to_owned(),
                    humantime::format_rfc3339_seconds(at).to_string(),
                ),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(DATA)),
            templating: None,
        };
        writer
            .create_config(spec, &format!("record the placement fix of {service_name}"))
            .await
    }

    /// Removes a record (gone already counts as removed).
    pub async fn delete(&self, writer: &Writer, config_id: &str) -> Result<(), WriteError> {
        writer
            .delete_config(
                config_id,
                &format!("remove the placement record {config_id}"),
            )
            .await
    }
}
