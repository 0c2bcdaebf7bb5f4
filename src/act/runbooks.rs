//! Advances active runbooks a few transitions per reconcile: for each run, read its view
//! (narrow reads), compute the pure transition, save the journal, then carry out the
//! effects through the one writer. Steps that wait return at once and are looked at again
//! on a later reconcile: nothing here blocks the loop for long.

use std::time::SystemTime;

use crate::config::Policy;
use crate::model::stored::Stored;
use crate::model::Snapshot;
use crate::observe::Observer;
use crate::runbook::{self, Effect};
use crate::writer::{WriteError, Writer};

/// Transitions one run may make in one reconcile: steps that finish at once (preflight,
/// approval) chain; a waiting step stops the chain.
const MAX_TRANSITIONS: usize = 8;

/// Reads through the observer, writes through the writer.
#[derive(Debug, Clone)]
pub struct RunbookRunner {
    observer: Observer,
    writer: Writer,
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
        Self { observer, writer }
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
        for _ in 0..MAX_TRANSITIONS {
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
