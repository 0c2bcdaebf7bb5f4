//! A runbook's journal: which steps ran, how often, what they recorded. Stored in the
//! swarm (see `runbook::store`) after every transition, so a restarted swarm-warden resumes
//! where the last one stopped and never repeats a finished step.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Which runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunbookKind {
    /// Pad an EFS file system so its baseline throughput rises.
    EfsPadding,
    /// Move a service's data from EFS to a block volume.
    EbsMigration,
}

impl RunbookKind {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunbookKind::EfsPadding => "efs-padding",
            RunbookKind::EbsMigration => "ebs-migration",
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Steps remain.
    Running,
    /// Waiting for the approval label.
    AwaitingApproval,
    /// Every step done.
    Succeeded,
    /// A step of a migration failed for good: putting the original mount and replica
    /// count back, as far as the swarm shows it can (a run in flight: it is revisited
    /// until done, after a crash too).
    RollingBack,
    /// A step ran out of attempts (and, for a migration, its rollback is over: the
    /// `rollback` fact says what it left).
    Failed,
}

impl RunStatus {
    /// Every status, in the order reports list them.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::AwaitingApproval,
        RunStatus::Succeeded,
        RunStatus::RollingBack,
        RunStatus::Failed,
    ];

    /// The name reports use (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::RollingBack => "rolling-back",
            RunStatus::Failed => "failed",
        }
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Its action was taken; waiting for its verification.
    Running,
    /// Verified.
    Done,
    /// Out of attempts.
    Failed,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Step name.
    pub name: String,
    /// Where it stands.
    pub state: StepState,
    /// Attempts so far.
    pub attempts: u32,
    /// When the current attempt started (Unix seconds).
    pub started_at: Option<u64>,
    /// When it finished (Unix seconds).
    pub finished_at: Option<u64>,
    /// Not before this time may the next attempt start (Unix seconds).
    pub retry_at: Option<u64>,
    /// What the last attempt said.
    pub detail: String,
}

/// What a runbook job is doing when it reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobPhase {
    /// `swarm-warden copy` copying files (checksummed, copied where needed).
    Copying,
    /// `swarm-warden copy` verifying every copied file against its checksum.
    Verifying,
    /// `swarm-warden pad` writing padding files.
    Padding,
}

impl JobPhase {
    /// The name reports use (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Copying => "copying",
            JobPhase::Verifying => "verifying",
            JobPhase::Padding => "padding",
        }
    }
}

/// One progress line of a runbook job: what it has done in its current phase (printed
/// and parsed by `runbook::progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressLine {
    /// What the job is doing.
    pub phase: JobPhase,
    /// Bytes done in this phase.
    pub bytes_done: u64,
    /// Bytes to do in this phase in all.
    pub bytes_total: u64,
    /// Files done in this phase.
    pub files_done: u64,
    /// Files to do in this phase in all.
    pub files_total: u64,
    /// The phase's rate so far, bytes per second.
    pub bytes_per_second: u64,
    /// Seconds since the phase began.
    #[serde(default)]
    pub elapsed_seconds: u64,
}

/// How far a runbook job had got, from the last progress line of its log (see
/// `runbook::progress`), as the warden recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The step whose job it is (`pad` or `copy`).
    pub step: String,
    /// The step's attempt the job belongs to (an earlier attempt's progress is stale).
    pub attempt: u32,
    /// The job's last progress line (its fields at this level in JSON).
    #[serde(flatten)]
    pub line: ProgressLine,
    /// When the warden read it (Unix seconds, the warden's clock).
    pub at: u64,
}

/// `progress` as stored, or `None` when it cannot be read: it is informational, and must
/// never make a journal unreadable.
fn lenient_progress<'de, D>(deserializer: D) -> Result<Option<JobProgress>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// The journal format this build writes and the newest it reads. Raised when a field
/// changes meaning; fields added without a change of meaning keep it (an older build keeps
/// them through its writes, see [`Journal::extra`]).
pub const JOURNAL_SCHEMA: u32 = 1;

fn first_schema() -> u32 {
    1
}

/// A run of a runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The journal format (see [`JOURNAL_SCHEMA`]); journals from before it was written
    /// are schema 1.
    #[serde(default = "first_schema")]
    pub schema: u32,
    /// Unique run ID (also the approval label's value).
    pub run_id: String,
    /// Which runbook.
    pub kind: RunbookKind,
    /// The EFS file system.
    pub efs_id: String,
    /// The service whose volume it is.
    pub service_id: String,
    /// Its name.
    pub service: String,
    /// The volume (mount source).
    pub volume: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// When it started (Unix seconds).
    pub started_at: u64,
    /// When it ended (Unix seconds).
    pub finished_at: Option<u64>,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Values steps recorded for later steps and for the report.
    pub facts: BTreeMap<String, String>,
    /// How far the run's job (the `pad` or `copy` step's) had got when the warden last
    /// read its log. Informational: a value that cannot be read (a hand edit, a newer
    /// build's phase) is dropped rather than making the journal unreadable. Kept at the
    /// top level, not on the step, so that an older build keeps it through its writes
    /// (see [`Journal::extra`]) without a [`JOURNAL_SCHEMA`] change.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_progress"
    )]
    pub progress: Option<JobProgress>,
    /// Top-level fields this build does not know (a newer build's, same schema): kept as
    /// read and written back unchanged. (Unknown fields inside `steps` are not kept: a
    /// newer build that adds some there must raise [`JOURNAL_SCHEMA`].)
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a stored journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a journal of any schema (hand edits, truncation).
    #[error("not a runbook journal: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A newer build's journal, whose meaning this build does not know.
    #[error("journal schema {found}, newer than the {JOURNAL_SCHEMA} this swarm-warden reads (a newer swarm-warden's run)")]
    Newer {
        /// The schema found.
        found: u64,
    },
}

impl Journal {
    /// Reads a stored journal (JSON), refusing schemas newer than [`JOURNAL_SCHEMA`].
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(found) if found > u64::from(JOURNAL_SCHEMA) => Err(DecodeError::Newer { found }),
            _ => Ok(serde_json::from_value(value)?),
        }
    }
}

/// Unix seconds of a time.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// A new run with these steps, all pending.
    pub fn new(
        kind: RunbookKind,
        efs_id: &str,
        service_id: &str,
        service: &str,
        volume: &str,
        steps: &[&str],
        now: SystemTime,
    ) -> Self {
        let started_at = unix(now);
        Self {
            schema: JOURNAL_SCHEMA,
            run_id: format!("{}-{}-{started_at}", kind.as_str(), efs_id),
            kind,
            efs_id: efs_id.to_owned(),
            service_id: service_id.to_owned(),
            service: service.to_owned(),
            volume: volume.to_owned(),
            status: RunStatus::Running,
            started_at,
            finished_at: None,
            steps: steps
                .iter()
                .map(|name| Step {
                    name: (*name).to_owned(),
                    state: StepState::Pending,
                    attempts: 0,
                    started_at: None,
                    finished_at: None,
                    retry_at: None,
                    detail: String::new(),
                })
                .collect(),
            facts: BTreeMap::new(),
            progress: None,
            extra: BTreeMap::new(),
        }
    }

    /// Whether the run still has work (or is waiting for approval).
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            RunStatus::Running | RunStatus::AwaitingApproval | RunStatus::RollingBack
        )
    }

    /// The index of the first step not done.
    pub fn current(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.state != StepState::Done)
    }

    /// Marks step `i` as started (an attempt begins); returns the attempt number.
    pub fn begin(&mut self, i: usize, now: SystemTime) -> u32 {
        let step = &mut self.steps[i];
        step.state = StepState::Running;
        step.attempts += 1;
        step.started_at = Some(unix(now));
        step.retry_at = None;
        step.attempts
    }

    /// Marks step `i` verified; the run succeeds after its last step.
    pub fn complete(&mut self, i: usize, now: SystemTime, detail: impl Into<String>) {
        let step = &mut self.steps[i];
        step.state = StepState::Done;
        step.finished_at = Some(unix(now));
        step.detail = detail.into();
        if self.current().is_none() {
            self.status = RunStatus::Succeeded;
            self.finished_at = Some(unix(now));
        } else if self.status == RunStatus::AwaitingApproval {
            self.status = RunStatus::Running;
        }
    }

    /// Records a failed attempt of step `i`. With attempts left, the step becomes pending
    /// again after `delay`; otherwise the step and the run fail. Returns whether it failed
    /// for good.
    pub fn fail_attempt(
        &mut self,
        i: usize,
        now: SystemTime,
        detail: impl Into<String>,
        max_attempts: u32,
        delay: Duration,
    ) -> bool {
        let exhausted = self.steps[i].attempts >= max_attempts;
        let step = &mut self.steps[i];
        step.detail = detail.into();
        if exhausted {
            step.state = StepState::Failed;
            step.finished_at = Some(unix(now));
            self.status = RunStatus::Failed;
            self.finished_at = Some(unix(now));
        } else {
            step.state = StepState::Pending;
            step.retry_at = Some(unix(now) + delay.as_secs());
        }
        exhausted
    }

    /// Records a fact for later steps and the report.
    pub fn record(&mut self, key: &str, value: impl ToString) {
        self.facts.insert(key.to_owned(), value.to_string());
    }

    /// A recorded fact.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts.get(key).map(String::as_str)
    }
}

/// A config marked as a runbook journal whose journal cannot be read: a newer build's run,
/// a hand edit, a typo. Left alone and reported; its volume gets no new run meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableJournal {
    /// Config ID.
    pub id: String,
    /// Config name.
    pub name: String,
    /// The EFS ID it is labelled with (`swarm-warden.runbook.efs-id`).
    pub efs_id: String,
    /// Why it cannot be read.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal::new(
            RunbookKind::EfsPadding,
            "fs-1",
            "svc",
            "monitoring_prometheus",
            "prometheus_data",
            &["preflight", "pad"],
            UNIX_EPOCH + Duration::from_secs(1000),
        )
    }

    #[test]
    fn a_journal_from_before_the_schema_field_reads_as_schema_1() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value.as_object_mut().unwrap().remove("schema");
        let read = Journal::decode(&value.to_string()).unwrap();
        assert_eq!(read.schema, 1);
        assert_eq!(read, sample());
    }

    #[test]
    fn unknown_fields_of_the_same_schema_are_kept_through_a_write() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["added_later"] = serde_json::json!({"by": "a newer build"});
        let read = Journal::decode(&value.to_string()).unwrap();
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["added_later"]["by"], "a newer build");
    }

    #[test]
    fn a_newer_schema_or_a_hand_edit_is_an_error_not_a_guess() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["schema"] = serde_json::json!(2);
        assert!(matches!(
            Journal::decode(&value.to_string()),
            Err(DecodeError::Newer { found: 2 })
        ));
        for text in ["", "{", "{}", r#"{"run_id": 5}"#, "null", "[]"] {
            assert!(
                matches!(Journal::decode(text), Err(DecodeError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    /// Journals written before `progress` existed read as having none; a stored progress
    /// survives a round trip; one that cannot be read (a newer phase, a hand edit) is
    /// dropped, never an unreadable journal.
    #[test]
    fn progress_is_optional_and_never_makes_a_journal_unreadable() {
        let old = serde_json::to_value(sample()).unwrap();
        assert!(
            old.get("progress").is_none(),
            "not written when there is none"
        );
        assert_eq!(Journal::decode(&old.to_string()).unwrap().progress, None);

        let mut j = sample();
        j.progress = Some(JobProgress {
            step: "pad".into(),
            attempt: 1,
            line: ProgressLine {
                phase: JobPhase::Padding,
                bytes_done: 2 << 30,
                bytes_total: 5 << 30,
                files_done: 2,
                files_total: 5,
                bytes_per_second: 100 << 20,
                elapsed_seconds: 20,
            },
            at: 1060,
        });
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(Journal::decode(&text).unwrap(), j);

        for bad in [
            serde_json::json!({"step": "copy", "phase": "teleporting"}),
            serde_json::json!("half"),
            serde_json::json!(null),
        ] {
            let mut value = serde_json::to_value(sample()).unwrap();
            value["progress"] = bad.clone();
            let read = Journal::decode(&value.to_string()).unwrap();
            assert_eq!(read.progress, None, "{bad}");
            assert!(!read.extra.contains_key("progress"), "{bad}");
        }
    }

    #[test]
    fn job_phase_names_are_the_serialized_names() {
        for phase in [JobPhase::Copying, JobPhase::Verifying, JobPhase::Padding] {
            assert_eq!(
                serde_json::to_value(phase).ok(),
                Some(serde_json::Value::String(phase.as_str().into()))
            );
        }
    }

    #[test]
    fn run_status_names_are_the_serialized_names() {
        for status in RunStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::String(status.as_str().into()))
            );
        }
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn journal() -> Journal {
        Journal::new(
            RunbookKind::EfsPadding,
            "fs-1",
            "svc",
            "prom",
            "data",
            &["preflight", "pad", "verify"],
            t(1000),
        )
    }

    #[test]
    fn steps_run_in_order_and_the_run_succeeds_after_the_last() {
        let mut j = journal();
        assert_eq!(j.run_id, "efs-padding-fs-1-1000");
        for i in 0..3 {
            assert_eq!(j.current(), Some(i));
            assert_eq!(j.begin(i, t(1000 + i as u64)), 1);
            j.complete(i, t(1001 + i as u64), "ok");
        }
        assert_eq!(j.current(), None);
        assert_eq!(j.status, RunStatus::Succeeded);
        assert_eq!(j.finished_at, Some(1003));
    }

    #[test]
    fn failed_attempts_retry_after_a_delay_then_fail_the_run() {
        let mut j = journal();
        j.begin(0, t(1000));
        assert!(!j.fail_attempt(0, t(1001), "no", 2, Duration::from_secs(30)));
        assert_eq!(j.steps[0].state, StepState::Pending);
        assert_eq!(j.steps[0].retry_at, Some(1031));
        assert_eq!(j.begin(0, t(1031)), 2);
        assert!(j.fail_attempt(0, t(1032), "still no", 2, Duration::from_secs(60)));
        assert_eq!(j.status, RunStatus::Failed);
        assert!(!j.is_active());
    }

    #[test]
    fn a_journal_survives_json() {
        let mut j = journal();
        j.record("padding_bytes", 1234);
        let text = serde_json::to_string(&j).unwrap();
        let back: Journal = serde_json::from_str(&text).unwrap();
        assert_eq!(back, j);
        assert_eq!(back.fact("padding_bytes"), Some("1234"));
    }
}
