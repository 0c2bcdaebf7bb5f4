//! Advances active runbooks a few transitions per reconcile: for each run, read its view
//! (narrow reads), compute the pure transition, save the journal, then carry out the
//! effects through the one writer. Steps that wait return at once and are looked at again
//! on a later reconcile: nothing here blocks the loop for long.
//!
//! A run whose `pad` or `copy` job is running also has the tail of that job's log read
//! (see `runbook::progress`): the job cannot write to the swarm and nothing it can set
//! shows in a list the warden already makes, so its progress lines are read here, in the
//! act phase with the run's other narrow reads — one bounded call, at most every
//! `RECORD_EVERY` per run and once when the job has ended — and recorded in the journal
//! by the one writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;

use crate::config::Policy;
use crate::model::run_view::RunView;
use crate::model::stored::Stored;
use crate::model::Snapshot;
use crate::observe::Observer;
use crate::runbook::progress::{self, ProgressLine, LOG_TAIL_BYTES, LOG_TAIL_LINES};
use crate::runbook::{self, Effect};
use crate::writer::{WriteError, Writer};

/// How long a read of a job's log tail may take: progress is not worth holding the loop
/// for (the Engine fetches a remote task's log from its node, which may not answer).
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Transitions one run may make in one reconcile: steps that finish at once (preflight,
/// approval) chain; a waiting step stops the chain.
const MAX_TRANSITIONS: usize = 8;

/// Reads through the observer, writes through the writer.
#[derive(Debug, Clone)]
pub struct RunbookRunner {
    observer: Observer,
    writer: Writer,
    /// When each active run's job log was last read (this process's memory: a restart
    /// reads at once, which is one read).
    log_read_at: Arc<Mutex<HashMap<String, SystemTime>>>,
}

/// Why a run stopped advancing in this reconcile.
enum Stop {
    /// It waits (or ended).
    Waits,
    /// A read or write failed; the note says which. The next reconcile tries again.
    Failed(String),
    /// This replica may not write: nothing more is tried in this reconcile.
    NoClaim(String),
}

impl RunbookRunner {
    /// A runner reading through `observer` and writing through `writer`.
    pub fn new(observer: Observer, writer: Writer) -> Self {
        Self {
            observer,
            writer,
            log_read_at: Arc::default(),
        }
    }

    /// Advances every active run as far as it can go now, but none whose service is in
    /// `busy` (a placement fix or rollback is rolling it: a runbook write would race it).
    /// Returns what happened, a note per transition, for the log.
    pub async fn advance(
        &self,
        snapshot: &Snapshot,
        policy: &Policy,
        busy: &[String],
    ) -> Vec<String> {
        let mut notes = Vec::new();
        // Unreadable journals are left alone (the planner reports them).
        let runs = match self.observer.journals().await {
            Ok(listing) => listing.journals,
            Err(e) => return vec![format!("cannot read runbook journals: {e}")],
        };
        if let Ok(mut read_at) = self.log_read_at.lock() {
            read_at.retain(|id, _| runs.iter().any(|r| &r.journal.run_id == id));
        }
        for mut run in runs.into_iter().filter(|r| r.journal.is_active()) {
            let id = run.journal.run_id.clone();
            if busy.contains(&run.journal.service_id) {
                notes.push(format!(
                    "{id}: waits: another action is changing service {}",
                    run.journal.service
                ));
                continue;
            }
            match self.run(&mut run, snapshot, policy, &mut notes).await {
                Stop::Waits => {}
                Stop::Failed(note) => notes.push(format!("{id}: {note}")),
                Stop::NoClaim(note) => {
                    notes.push(format!("{id}: {note}"));
                    return notes;
                }
            }
        }
        notes
    }

    async fn run(
        &self,
        run: &mut Stored,
        snapshot: &Snapshot,
        policy: &Policy,
        notes: &mut Vec<String>,
    ) -> Stop {
        for transition in 0..MAX_TRANSITIONS {
            // Every write checks the claim too; this keeps a replica that lost it from
            // reading and judging steps it cannot record.
            if !self.writer.claim().is_held() {
                return Stop::NoClaim("not advanced: this replica does not hold the lease".into());
            }
            let view = match self.observer.run_view(&run.journal).await {
                Ok(view) => view,
                Err(e) => return Stop::Failed(format!("not advanced: {e}")),
            };
            let now = SystemTime::now();
            if transition == 0 {
                // Before the step judges the job: once it has ended, the step removes it,
                // and its log with it.
                if let Err(stop) = self.note_progress(run, &view, policy, now, notes).await {
                    return stop;
                }
            }
            let Some(mut next) = runbook::advance(&run.journal, &view, snapshot, policy, now)
            else {
                return Stop::Waits;
            };
            loop {
                notes.push(format!("{}: {}", run.journal.run_id, next.note));
                if let Err(stop) = self.record(run, next.journal).await {
                    return stop;
                }
                match self.carry_out(next.effects).await {
                    Ok(()) => break,
                    Err((effect, e @ WriteError::Refused { .. })) => {
                        return Stop::NoClaim(format!("{effect}: {e}"));
                    }
                    Err((effect, e)) => {
                        match runbook::effect_failed(
                            &run.journal,
                            &effect,
                            &e.to_string(),
                            &view,
                            snapshot,
                            policy,
                            SystemTime::now(),
                        ) {
                            Some(t) => next = t,
                            None => {
                                tracing::warn!(run = %run.journal.run_id, error = %e, "A runbook job could not be removed; remove it by hand");
                                break;
                            }
                        }
                    }
                }
            }
            if !run.journal.is_active() {
                return Stop::Waits;
            }
        }
        Stop::Waits
    }

    /// Reads the run's job log tail when due and records the progress it shows in the
    /// journal when [`progress::record`] says so. A log that cannot be read is only
    /// logged: progress is for the report, the job's end is judged on its tasks.
    async fn note_progress(
        &self,
        run: &mut Stored,
        view: &RunView,
        policy: &Policy,
        now: SystemTime,
        notes: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let Some((job, ended)) = progress::job_to_read(&run.journal, view, policy) else {
            return Ok(());
        };
        if !(ended || self.log_read_due(&run.journal.run_id, now)) {
            return Ok(());
        }
        let line = match self.last_progress(&job).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(run = %run.journal.run_id, %job, error = %e, "A runbook job's log could not be read for its progress");
                return Ok(());
            }
        };
        let Some(next) = progress::record(&run.journal, &line, ended, now) else {
            return Ok(());
        };
        let said = next.progress.as_ref().map(|p| p.describe());
        self.record(run, next).await?;
        if let Some(said) = said {
            notes.push(format!("{}: {job}: {said}", run.journal.run_id));
        }
        Ok(())
    }

    /// Whether run `id`'s job log may be read at `now` (at most every
    /// [`progress::RECORD_EVERY`]); if so, notes it as read.
    fn log_read_due(&self, id: &str, now: SystemTime) -> bool {
        let Ok(mut read_at) = self.log_read_at.lock() else {
            return true;
        };
        let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let last = read_at.get(id).copied().map(since);
        let due = progress::due(last, since(now), progress::RECORD_EVERY);
        if due {
            read_at.insert(id.to_owned(), now);
        }
        due
    }

    /// The last progress line in the tail of `job`'s log (stdout and stderr, the last
    /// [`LOG_TAIL_LINES`] lines, read for at most [`LOG_READ_TIMEOUT`], at most
    /// [`LOG_TAIL_BYTES`] kept). What arrived before a timeout is used.
    async fn last_progress(
        &self,
        job: &str,
    ) -> Result<Option<ProgressLine>, bollard::errors::Error> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&LOG_TAIL_LINES.to_string())
            .build();
        let mut frames = self.observer.docker().service_logs(job, Some(options));
        let mut log: Vec<u8> = Vec::new();
        let read = async {
            while let Some(frame) = frames.next().await {
                log.extend_from_slice(frame?.as_ref());
                if log.len() > 2 * LOG_TAIL_BYTES {
                    log.drain(..log.len() - LOG_TAIL_BYTES);
                }
            }
            Ok::<(), bollard::errors::Error>(())
        };
        if let Ok(result) = tokio::time::timeout(LOG_READ_TIMEOUT, read).await {
            result?;
        }
        Ok(ProgressLine::last_in(&log))
    }

    /// Saves `journal` as the run's, unless nothing changed.
    async fn record(&self, run: &mut Stored, journal: runbook::Journal) -> Result<(), Stop> {
        if journal == run.journal {
            return Ok(());
        }
        let before = std::mem::replace(&mut run.journal, journal);
        match self.writer.save_journal(run).await {
            Ok(()) => Ok(()),
            Err(e) => {
                run.journal = before;
                Err(match e {
                    WriteError::Refused { .. } => Stop::NoClaim(format!("journal not saved: {e}")),
                    e => Stop::Failed(format!("journal not saved: {e}")),
                })
            }
        }
    }

    /// Carries out `effects` in order; stops at the first that fails — but a job that
    /// could not be removed is only logged: the effects after it (a rollback's) still go.
    async fn carry_out(&self, effects: Vec<Effect>) -> Result<(), (Effect, WriteError)> {
        for effect in effects {
            match self.writer.carry_out(&effect).await {
                Err(e @ WriteError::Refused { .. }) => return Err((effect, e)),
                Err(e) if matches!(effect, Effect::RemoveJob { .. }) => {
                    tracing::warn!(%effect, error = %e, "A runbook job could not be removed; it is tried again, or remove it by hand");
                }
                Err(e) => return Err((effect, e)),
                Ok(()) => {}
            }
        }
        Ok(())
    }
}
