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
use bollard::query_parameters::ListConfigsOptions;
use bollard::Docker;

use crate::model::{PlacementRecord, PlacementRecords};
use crate::writer::{WriteError, Writer};

/// Name prefix of the records' config objects.
pub const CONFIG_PREFIX: &str = "swarm-warden-placement-";
/// Label carrying the service ID (and marking a record).
pub const SERVICE_LABEL: &str = "swarm-warden.placement.service";
/// Label carrying the service name, for people.
const NAME_LABEL: &str = "swarm-warden.placement.service-name";
/// Label carrying the SHA-256 of the spec written.
const SPEC_LABEL: &str = "swarm-warden.placement.spec-hash";
/// Label carrying when it was written (RFC 3339, the writer's clock).
const WRITTEN_LABEL: &str = "swarm-warden.placement.written-at";
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

    /// Every record, one list call. A config with the marker label whose other labels cannot
    /// be read is listed as unreadable: never acted on, reported.
    pub async fn list(&self) -> Result<PlacementRecords, bollard::errors::Error> {
        let filters = HashMap::from([("label".to_owned(), vec![SERVICE_LABEL.to_owned()])]);
        let configs = self
            .docker
            .list_configs(Some(ListConfigsOptions {
                filters: Some(filters),
            }))
            .await?;
        let mut out = PlacementRecords::default();
        for config in configs {
            let id = config.id.unwrap_or_default();
            let spec = config.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_else(|| id.clone());
            let labels = spec.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned();
            let record = (|| {
                Some(PlacementRecord {
                    config_id: id.clone(),
                    service_id: label(SERVICE_LABEL)?,
                    service_name: label(NAME_LABEL).unwrap_or_default(),
                    spec_hash: label(SPEC_LABEL)?,
                    written_at: humantime::parse_rfc3339(&label(WRITTEN_LABEL)?).ok()?,
                })
            })();
            match record {
                Some(r) => out.records.push(r),
                None => out.unreadable.push(name),
            }
        }
        out.records.sort_by(|a, b| a.service_id.cmp(&b.service_id));
        out.unreadable.sort();
        Ok(out)
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
