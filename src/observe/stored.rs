//! Lists what swarm-warden keeps in the swarm (runbook journals, placement records): one
//! label-filtered config list each; the decoding is the model's.

use std::collections::HashMap;

use bollard::models::Config;
use bollard::query_parameters::ListConfigsOptions;
use bollard::Docker;

use crate::model::stored::{
    self, Listing, StoredConfig, JOURNAL_VOLUME_LABEL, RECORD_SERVICE_LABEL,
};
use crate::model::PlacementRecords;

/// Every config marked as a runbook journal, decoded (see [`stored::journals`]).
///
/// # Errors
/// The list call failed.
pub async fn list_journals(docker: &Docker) -> Result<Listing, bollard::errors::Error> {
    Ok(stored::journals(
        list_marked(docker, JOURNAL_VOLUME_LABEL).await?,
    ))
}

/// Every config marked as a placement record, decoded (see [`stored::placement_records`]).
///
/// # Errors
/// The list call failed.
pub async fn list_placement_records(
    docker: &Docker,
) -> Result<PlacementRecords, bollard::errors::Error> {
    Ok(stored::placement_records(
        list_marked(docker, RECORD_SERVICE_LABEL).await?,
    ))
}

/// The configs carrying label `marker`.
async fn list_marked(
    docker: &Docker,
    marker: &str,
) -> Result<Vec<StoredConfig>, bollard::errors::Error> {
    let filters = HashMap::from([("label".to_owned(), vec![marker.to_owned()])]);
    let configs = docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters),
        }))
        .await?;
    Ok(configs.into_iter().map(stored_config).collect())
}

fn stored_config(config: Config) -> StoredConfig {
    let id = config.id.unwrap_or_default();
    let spec = config.spec.unwrap_or_default();
    StoredConfig {
        name: spec.name.unwrap_or_else(|| id.clone()),
        version: config.version.and_then(|v| v.index).unwrap_or(0),
        labels: spec.labels.unwrap_or_default(),
        id,
    }
}
