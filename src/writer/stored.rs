//! Writes of what swarm-warden keeps in the swarm itself, as Swarm configs whose labels
//! carry it (see [`crate::model::stored`]): runbook journals, one config per run, every
//! save carrying the version it read (two swarm-wardens can never both advance a run);
//! placement records, one config per fix in flight, written before the service is.

use std::collections::HashMap;
use std::time::SystemTime;

use base64::Engine as _;
use bollard::models::ConfigSpec;

use super::{WriteError, Writer};
use crate::model::journal::Journal;
use crate::model::stored::{
    Stored, JOURNAL_CONFIG_PREFIX, JOURNAL_LABEL, JOURNAL_VOLUME_LABEL, RECORD_CONFIG_PREFIX,
    RECORD_NAME_LABEL, RECORD_SERVICE_LABEL, RECORD_SPEC_LABEL, RECORD_WRITTEN_LABEL,
};

/// A config's data cannot change and is not read: the labels carry everything.
const JOURNAL_DATA: &str = "swarm-warden runbook journal: see the labels";
const RECORD_DATA: &str = "swarm-warden placement fix in flight: see the labels";

impl Writer {
    /// Stores a new run; returns it with the version a later save must carry.
    ///
    /// # Errors
    /// Not sent (claim), refused (a run of that ID exists) or failed.
    pub async fn create_journal(&self, journal: Journal) -> Result<Stored, WriteError> {
        let what = format!("create runbook journal {}", journal.run_id);
        let id = self
            .create_config(journal_spec(&journal, &what)?, &what)
            .await?;
        // The version right after creation: read it back rather than guess.
        let version = self.config_version(&id, &what).await?;
        Ok(Stored {
            id,
            version,
            journal,
        })
    }

    /// Writes the journal back if nobody changed it since it was read (its version), then
    /// reads the new version.
    ///
    /// # Errors
    /// Not sent (claim), refused (a version conflict: someone else advanced the run) or
    /// failed.
    pub async fn save_journal(&self, stored: &mut Stored) -> Result<(), WriteError> {
        let what = format!("update runbook journal {}", stored.journal.run_id);
        let spec = journal_spec(&stored.journal, &what)?;
        self.update_config(&stored.id, spec, stored.version, &what)
            .await?;
        stored.version = self.config_version(&stored.id, &what).await?;
        Ok(())
    }

    /// Records a placement fix about to be written (service, hash of the spec, when);
    /// returns the config ID. Refused when a record of the service exists (the name is
    /// taken): one fix per service in flight.
    ///
    /// # Errors
    /// Not sent (claim), refused or failed.
    pub async fn record_placement_fix(
        &self,
        service_id: &str,
        service_name: &str,
        spec_hash: &str,
        at: SystemTime,
    ) -> Result<String, WriteError> {
        let spec = ConfigSpec {
            name: Some(format!("{RECORD_CONFIG_PREFIX}{service_id}")),
            labels: Some(HashMap::from([
                (RECORD_SERVICE_LABEL.to_owned(), service_id.to_owned()),
                (RECORD_NAME_LABEL.to_owned(), service_name.to_owned()),
                (RECORD_SPEC_LABEL.to_owned(), spec_hash.to_owned()),
                (
                    RECORD_WRITTEN_LABEL.to_owned(),
                    humantime::format_rfc3339_seconds(at).to_string(),
                ),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(RECORD_DATA)),
            templating: None,
        };
        self.create_config(spec, &format!("record the placement fix of {service_name}"))
            .await
    }

    /// Removes a placement record; one already gone counts as removed.
    ///
    /// # Errors
    /// Not sent (claim) or failed.
    pub async fn clear_placement_record(&self, config_id: &str) -> Result<(), WriteError> {
        self.delete_config(
            config_id,
            &format!("remove the placement record {config_id}"),
        )
        .await
    }

    async fn config_version(&self, id: &str, what: &str) -> Result<u64, WriteError> {
        let config = self
            .docker
            .inspect_config(id)
            .await
            .map_err(WriteError::engine(format!("{what}: read it back")))?;
        Ok(config.version.and_then(|v| v.index).unwrap_or(0))
    }
}

fn journal_spec(journal: &Journal, what: &str) -> Result<ConfigSpec, WriteError> {
    let text = serde_json::to_string(journal).map_err(|e| WriteError::Unencodable {
        what: what.to_owned(),
        message: e.to_string(),
    })?;
    Ok(ConfigSpec {
        name: Some(format!("{JOURNAL_CONFIG_PREFIX}{}", journal.run_id)),
        labels: Some(HashMap::from([
            (JOURNAL_VOLUME_LABEL.to_owned(), journal.efs_id.clone()),
            (JOURNAL_LABEL.to_owned(), text),
        ])),
        data: Some(base64::engine::general_purpose::STANDARD.encode(JOURNAL_DATA)),
        templating: None,
    })
}
