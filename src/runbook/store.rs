//! Journals kept in the swarm itself: one Swarm config object per run, the journal in its
//! labels (the only part of a config that can change), every write carrying the version
//! it read — so two swarm-wardens can never both advance the same run.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::Docker;

use crate::model::journal::Journal;
use crate::writer::{WriteError, Writer};

pub use crate::model::stored::{
    Listing, Stored, JOURNAL_CONFIG_PREFIX as CONFIG_PREFIX, JOURNAL_LABEL,
    JOURNAL_VOLUME_LABEL as VOLUME_LABEL,
};

const DATA: &str = "swarm-warden runbook journal: see the labels";

/// Why the journal store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Engine refused or failed (a version conflict included).
    #[error("runbook journal {what}: {source}")]
    Api {
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A write not sent or refused (a version conflict included).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A journal that cannot be written as JSON.
    #[error("runbook journal {id}: {source}")]
    Corrupt {
        /// Config ID.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads journals through one Docker client; writes them through the [`Writer`].
#[derive(Debug, Clone)]
pub struct JournalStore {
    docker: Docker,
}

impl JournalStore {
    /// A store using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }

    /// Every stored journal, one list call (see [`crate::observe::list_journals`]).
    pub async fn list(&self) -> Result<Listing, StoreError> {
        crate::observe::list_journals(&self.docker)
            .await
            .map_err(|source| StoreError::Api {
                what: "list".into(),
                source,
            })
    }

    /// Stores a new run (written through `writer`).
    pub async fn create(&self, writer: &Writer, journal: Journal) -> Result<Stored, StoreError> {
        let created = writer
            .create_config(
                self.spec(&journal)?,
                &format!("create runbook journal {}", journal.run_id),
            )
            .await?;
        // The version right after creation: read it back rather than guess.
        let config = self
            .docker
            .inspect_config(&created)
            .await
            .map_err(|source| StoreError::Api {
                what: format!("read {}", journal.run_id),
                source,
            })?;
        Ok(Stored {
            id: created,
            version: config.version.and_then(|v| v.index).unwrap_or(0),
            journal,
        })
    }

    /// Writes the journal back through `writer`, if nobody else changed it since it was
    /// read.
    pub async fn save(&self, writer: &Writer, stored: &mut Stored) -> Result<(), StoreError> {
        writer
            .update_config(
                &stored.id,
                self.spec(&stored.journal)?,
                stored.version,
                &format!("update runbook journal {}", stored.journal.run_id),
            )
            .await?;
        let config = self
            .docker
            .inspect_config(&stored.id)
            .await
            .map_err(|source| StoreError::Api {
                what: format!("read {}", stored.journal.run_id),
                source,
            })?;
        stored.version = config
            .version
            .and_then(|v| v.index)
            .unwrap_or(stored.version + 1);
        Ok(())
    }

    fn spec(&self, journal: &Journal) -> Result<ConfigSpec, StoreError> {
        let text = serde_json::to_string(journal).map_err(|source| StoreError::Corrupt {
            id: journal.run_id.clone(),
            source,
        })?;
        Ok(ConfigSpec {
            name: Some(format!("{CONFIG_PREFIX}{}", journal.run_id)),
            labels: Some(HashMap::from([
                (VOLUME_LABEL.to_owned(), journal.efs_id.clone()),
                (JOURNAL_LABEL.to_owned(), text),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(DATA)),
            templating: None,
        })
    }
}
