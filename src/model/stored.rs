//! What swarm-warden keeps in the swarm itself, as Swarm configs whose labels carry it:
//! runbook journals and placement records. Their label names, and the pure decoding of a
//! listing (the observe side lists, the act side writes).

use std::collections::HashMap;

use super::journal::{Journal, UnreadableJournal};
use super::{PlacementRecord, PlacementRecords};

/// Name prefix of journal config objects.
pub const JOURNAL_CONFIG_PREFIX: &str = "swarm-warden-runbook-";
/// Label carrying a journal's EFS ID (to list the runs of a volume; marks a journal).
pub const JOURNAL_VOLUME_LABEL: &str = "swarm-warden.runbook.efs-id";
/// Label carrying the journal (JSON).
pub const JOURNAL_LABEL: &str = "swarm-warden.runbook.journal";

/// Name prefix of the placement records' config objects.
pub const RECORD_CONFIG_PREFIX: &str = "swarm-warden-placement-";
/// Label carrying the service ID (and marking a record).
pub const RECORD_SERVICE_LABEL: &str = "swarm-warden.placement.service";
/// Label carrying the service name, for people.
pub const RECORD_NAME_LABEL: &str = "swarm-warden.placement.service-name";
/// Label carrying the SHA-256 of the spec written.
pub const RECORD_SPEC_LABEL: &str = "swarm-warden.placement.spec-hash";
/// Label carrying when it was written (RFC 3339, the writer's clock).
pub const RECORD_WRITTEN_LABEL: &str = "swarm-warden.placement.written-at";

/// One listed Swarm config, as far as the decoding needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredConfig {
    /// Config ID.
    pub id: String,
    /// Config name.
    pub name: String,
    /// Config version (for version-checked updates).
    pub version: u64,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// A journal as stored, with what a version-checked update needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Config ID.
    pub id: String,
    /// Config version.
    pub version: u64,
    /// The journal.
    pub journal: Journal,
}

/// Every config marked as a runbook journal, read or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    /// The readable journals, oldest run first.
    pub journals: Vec<Stored>,
    /// The ones that cannot be read.
    pub unreadable: Vec<UnreadableJournal>,
}

/// Decodes the configs marked as journals. One that cannot be read is listed as
/// unreadable, never an error of the whole listing: one bad config must not blind the
/// reconcile.
pub fn journals(configs: impl IntoIterator<Item = StoredConfig>) -> Listing {
    let mut out = Listing::default();
    for mut config in configs {
        let decoded = config
            .labels
            .remove(JOURNAL_LABEL)
            .ok_or_else(|| format!("no {JOURNAL_LABEL} label"))
            .and_then(|text| Journal::decode(&text).map_err(|e| e.to_string()));
        match decoded {
            Ok(journal) => out.journals.push(Stored {
                version: config.version,
                id: config.id,
                journal,
            }),
            Err(error) => out.unreadable.push(UnreadableJournal {
                id: config.id,
                name: config.name,
                efs_id: config
                    .labels
                    .remove(JOURNAL_VOLUME_LABEL)
                    .unwrap_or_default(),
                error,
            }),
        }
    }
    out.journals.sort_by_key(|s| s.journal.started_at);
    out.unreadable.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Decodes the configs marked as placement records; one whose labels cannot be read is
/// listed by name as unreadable (never acted on, reported).
pub fn placement_records(configs: impl IntoIterator<Item = StoredConfig>) -> PlacementRecords {
    let mut out = PlacementRecords::default();
    for config in configs {
        let label = |k: &str| config.labels.get(k).cloned();
        let record = (|| {
            Some(PlacementRecord {
                config_id: config.id.clone(),
                service_id: label(RECORD_SERVICE_LABEL)?,
                service_name: label(RECORD_NAME_LABEL).unwrap_or_default(),
                spec_hash: label(RECORD_SPEC_LABEL)?,
                written_at: humantime::parse_rfc3339(&label(RECORD_WRITTEN_LABEL)?).ok()?,
            })
        })();
        match record {
            Some(r) => out.records.push(r),
            None => out.unreadable.push(if config.name.is_empty() {
                config.id.clone()
            } else {
                config.name.clone()
            }),
        }
    }
    out.records.sort_by(|a, b| a.service_id.cmp(&b.service_id));
    out.unreadable.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, labels: &[(&str, &str)]) -> StoredConfig {
        StoredConfig {
            id: id.into(),
            name: format!("name-{id}"),
            version: 7,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_bad_journal_is_listed_unreadable_beside_the_good_ones() {
        let listing = journals([
            config(
                "a",
                &[(JOURNAL_VOLUME_LABEL, "fs-1"), (JOURNAL_LABEL, "{not json")],
            ),
            config("b", &[(JOURNAL_VOLUME_LABEL, "fs-2")]),
        ]);
        assert!(listing.journals.is_empty());
        assert_eq!(listing.unreadable.len(), 2);
        assert_eq!(listing.unreadable[0].efs_id, "fs-1");
        assert!(listing.unreadable[1]
            .error
            .contains("no swarm-warden.runbook.journal"));
    }

    #[test]
    fn a_record_needs_its_service_hash_and_time() {
        let records = placement_records([
            config(
                "ok",
                &[
                    (RECORD_SERVICE_LABEL, "svc"),
                    (RECORD_SPEC_LABEL, "abc"),
                    (RECORD_WRITTEN_LABEL, "2026-11-30T10:00:00Z"),
                ],
            ),
            config("bad", &[(RECORD_SERVICE_LABEL, "svc2")]),
        ]);
        assert_eq!(records.records.len(), 1);
        assert_eq!(records.records[0].config_id, "ok");
        assert_eq!(records.unreadable, vec!["name-bad".to_owned()]);
    }
}
