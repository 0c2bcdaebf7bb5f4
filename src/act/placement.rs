//! Placement writes and their waits: the fix (recorded in the swarm before the write),
//! its rolling update, and the rollback that keeps a service from staying half-updated.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::actor::Actor;
use super::error::{tolerate, ActError};
use crate::config::Policy;
use crate::model::{PlacementRecord, Service, UpdateState};
use crate::observe::{spec_hash, Rollout};
use crate::plan::constraint::NOT_ON_MANAGERS;
use crate::plan::human;

/// Polls in a row a placement update must look done before it counts as converged.
const SETTLED_POLLS: u32 = 3;

impl Actor {
    /// Adds the constraint, recording the fix in the swarm first (so a process that dies
    /// during the rolling update leaves it for the next one to finish), waits for the update
    /// and rolls it back if it does not converge. The record is removed once the fix is
    /// over either way.
    pub(super) async fn enforce_placement(
        &self,
        service: &Service,
        managers: &[String],
        policy: &Policy,
    ) -> Result<String, ActError> {
        let start = Instant::now();
        let before = self
            .observer
            .rollout(&service.id, managers)
            .await?
            .started_at;
        let (spec, version) = self
            .writer
            .with_constraint(&service.id, &service.name, service.version, NOT_ON_MANAGERS)
            .await?;
        let written_hash = spec_hash(&spec);
        if written_hash.is_empty() {
            return Err(ActError::Record(format!(
                "the spec of {} cannot be hashed: not written",
                service.name
            )));
        }
        let record = self
            .writer
            .record_placement_fix(&service.id, &service.name, &written_hash, SystemTime::now())
            .await?;
        // A failed write keeps its record: an error (a timeout) may come back after the
        // write committed. The next reconcile clears it if the spec is not the one written.
        self.writer
            .write_spec(&service.id, &service.name, spec, version, NOT_ON_MANAGERS)
            .await?;
        let timeout = policy.placement.update_timeout;
        let what = format!("the rolling update of {}", service.name);
        // Interrupted or failed waits leave the record: the next process finishes the job.
        let why = match self
            .await_rollout(service, managers, before.as_deref(), timeout, &what)
            .await?
        {
            RolloutEnd::Converged => {
                self.forget(&record).await;
                return Ok(format!(
                    "Added `{NOT_ON_MANAGERS}` to {}; its rolling update finished after {:.1}s with every task running and none on a manager.",
                    service.name,
                    start.elapsed().as_secs_f64()
                ));
            }
            RolloutEnd::RolledBackBySwarm(why) => {
                self.forget(&record).await;
                return Err(ActError::RolledBack {
                    service: service.name.clone(),
                    reason: why,
                });
            }
            RolloutEnd::Unobserved(why) => {
                // Said now, while the reads still fail: the action's end is collected only
                // by a reconcile that can observe again.
                crate::events::Event::ActionUnobserved {
                    action: &crate::plan::Action::EnforcePlacement(crate::plan::ServiceRef {
                        id: service.id.clone(),
                        name: service.name.clone(),
                    }),
                    error: &why,
                }
                .emit(&self.metrics);
                return Err(ActError::Unobserved {
                    service: service.name.clone(),
                    reason: why,
                });
            }
            RolloutEnd::Stuck(why) => why,
        };
        // Never leave a service half-updated: back to the spec it had.
        tracing::warn!(service = %service.name, reason = %why, "Placement update did not converge: rolling back");
        self.writer
            .roll_back(&service.id, &service.name, &written_hash)
            .await?;
        let back = self
            .await_rollback(service, managers, timeout, &what)
            .await?;
        self.forget(&record).await;
        Err(ActError::RolledBack {
            service: service.name.clone(),
            reason: format!("{why}; rolled back to the previous spec in {back:.1}s"),
        })
    }

    /// Rolls back a fix that a previous process left stuck (its record says which spec it
    /// wrote; a spec changed since is not rolled back), waits, and clears the record.
    pub(super) async fn roll_back_stuck(
        &self,
        service: &Service,
        record: &PlacementRecord,
        managers: &[String],
        policy: &Policy,
    ) -> Result<String, ActError> {
        self.writer
            .roll_back(&service.id, &service.name, &record.spec_hash)
            .await?;
        let what = format!("the rollback of {}", service.name);
        let back = self
            .await_rollback(service, managers, policy.placement.update_timeout, &what)
            .await?;
        self.forget(&record.config_id).await;
        Ok(format!(
            "Rolled the stuck placement fix of {} back to its previous spec in {back:.1}s.",
            service.name
        ))
    }

    /// Removes a finished fix's record.
    pub(super) async fn clear_record(&self, config_id: &str) -> Result<String, ActError> {
        self.writer.clear_placement_record(config_id).await?;
        Ok(format!("Removed placement record {config_id}."))
    }

    /// Removes a record, logging (not failing) when it cannot: the next reconcile sees the
    /// fix over and plans the removal again.
    async fn forget(&self, config_id: &str) {
        if let Err(e) = self.writer.clear_placement_record(config_id).await {
            tracing::warn!(config = %config_id, error = %e, "Could not remove a placement record; the next reconcile will");
        }
    }

    /// Polls the service's update until it converges (no update running, no task left on a
    /// manager, every task it wants running — seen [`SETTLED_POLLS`] times in a row, since
    /// the write resets the status before the updater picks it up and a task may fail just
    /// after its update's monitor period), SwarmKit rolls it back itself, or it is stuck:
    /// paused, or not done within `timeout`.
    async fn await_rollout(
        &self,
        service: &Service,
        managers: &[String],
        before: Option<&str>,
        timeout: Duration,
        what: &str,
    ) -> Result<RolloutEnd, ActError> {
        let deadline = Instant::now() + timeout;
        let mut current_managers = managers.to_vec();
        let mut settled = 0;
        let mut last: Option<Rollout> = None;
        // Whether the latest read failed, and since when reads have been failing.
        let mut blind_since: Option<Instant> = None;
        loop {
            // Membership may change beside a rolling update: judge against the managers
            // of now, not of the start.
            self.refresh_managers(&mut current_managers).await;
            let observed = tolerate(self.observer.rollout(&service.id, &current_managers).await)?;
            if observed.is_none() {
                blind_since.get_or_insert_with(Instant::now);
            }
            if let Some(r) = observed {
                blind_since = None;
                // An update status from before the write is not this update's.
                let ours = r.started_at.as_deref() != before;
                match (ours, r.state) {
                    (true, Some(UpdateState::Paused)) => {
                        return Ok(RolloutEnd::Stuck(format!(
                            "the update paused: \"{}\"{}",
                            r.message,
                            errors(&r)
                        )))
                    }
                    (true, Some(UpdateState::RollbackStarted | UpdateState::RollbackCompleted)) => {
                        let secs = self
                            .await_rollback(service, managers, timeout, what)
                            .await?;
                        return Ok(RolloutEnd::RolledBackBySwarm(format!(
                            "SwarmKit rolled the update back (its update_config.failure_action): \"{}\"{}; back after {secs:.1}s",
                            r.message,
                            errors(&r)
                        )));
                    }
                    (true, Some(UpdateState::RollbackPaused)) => {
                        return Err(ActError::UpdateFailed {
                            service: service.name.clone(),
                            state: "RollbackPaused".into(),
                            message: r.message,
                        })
                    }
                    // No update status: SwarmKit found no task to replace.
                    (true, Some(UpdateState::Completed)) | (_, None) if r.settled() => {
                        settled += 1;
                        if settled >= SETTLED_POLLS {
                            return Ok(RolloutEnd::Converged);
                        }
                    }
                    _ => settled = 0,
                }
                last = Some(r);
            }
            if Instant::now() >= deadline {
                // Stuck only on what was seen: a rollout the last reads could not see, or
                // saw settled but not yet for long enough, is left for the next reconcile
                // to judge on fresh reads (its placement record stays), never rolled back
                // blind.
                if let Some(since) = blind_since {
                    return Ok(RolloutEnd::Unobserved(format!(
                        "the swarm could not be read for the last {}",
                        human(since.elapsed())
                    )));
                }
                if settled > 0 {
                    return Ok(RolloutEnd::Unobserved(
                        "it had only just settled".to_owned(),
                    ));
                }
                return Ok(RolloutEnd::Stuck(format!(
                    "it did not converge within placement.update_timeout ({}){}",
                    human(timeout),
                    last.as_ref().map(errors).unwrap_or_default()
                )));
            }
            self.pause(what).await?;
        }
    }

    /// Waits for a rollback to complete and every task it wants to run; returns how long
    /// it took, in seconds. (SwarmKit calls a rollback complete at once when the slots it
    /// rolls back hold failed tasks: the restart supervisor starts their replacements
    /// later.)
    async fn await_rollback(
        &self,
        service: &Service,
        managers: &[String],
        timeout: Duration,
        what: &str,
    ) -> Result<f64, ActError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut current_managers = managers.to_vec();
        loop {
            self.refresh_managers(&mut current_managers).await;
            match tolerate(self.observer.rollout(&service.id, &current_managers).await)? {
                Some(r) if r.state == Some(UpdateState::RollbackCompleted) && r.all_running() => {
                    return Ok(start.elapsed().as_secs_f64())
                }
                Some(r) if r.state == Some(UpdateState::RollbackPaused) => {
                    return Err(ActError::UpdateFailed {
                        service: service.name.clone(),
                        state: "RollbackPaused".into(),
                        message: r.message,
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ActError::NotConverged {
                    what: format!("the rollback of {}", service.name),
                    after: timeout,
                });
            }
            self.pause(what).await?;
        }
    }
}

impl Actor {
    /// Replaces `managers` with the raft members of now (one node list); keeps them when
    /// the list cannot be read.
    async fn refresh_managers(&self, managers: &mut Vec<String>) {
        if let Ok(Some(nodes)) = self.observer.nodes().await {
            *managers = nodes
                .iter()
                .filter(|n| n.is_manager())
                .map(|n| n.id.clone())
                .collect();
        }
    }
}

/// How a placement update ended.
enum RolloutEnd {
    /// Done, no task left on a manager.
    Converged,
    /// SwarmKit rolled it back on its own; why.
    RolledBackBySwarm(String),
    /// Paused or not done in time; why. swarm-warden rolls it back.
    Stuck(String),
    /// Not seen to its end by the deadline (reads failed); why. Left as it is, with its
    /// placement record, for the next reconcile.
    Unobserved(String),
}

/// "; tasks: pending: no suitable node (...)", or nothing.
fn errors(r: &Rollout) -> String {
    if r.task_errors.is_empty() {
        String::new()
    } else {
        format!("; tasks: {}", r.task_errors.join(" | "))
    }
}
