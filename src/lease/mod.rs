//! A single active replica, like a Kubernetes lease: the lease is a Swarm config whose
//! labels say who holds it and when they last renewed it; every write carries the version
//! it read (compare-and-swap), so two replicas can never both take it. The holder renews
//! every `renew`; others retry every `retry` and take it once `duration` has passed
//! without a renewal. Followers observe and serve metrics but never act; a graceful
//! shutdown releases the lease.
//!
//! Expiry is judged by the observer's own clock, as Kubernetes' leader election does: a
//! lease expires when its version has not moved for `duration` since *we* first saw that
//! version, so clock skew between managers cannot make a live holder look expired. The
//! holder, in turn, gives itself a [`Claim`] that runs out on its own monotonic clock a
//! little before anyone else could take over; every write checks it. The labels also carry
//! the holder's [`Handoff`], so a replica that takes over keeps waiting where the previous
//! one would have.

mod claim;
mod handover;
mod record;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::query_parameters::UpdateConfigOptions;
use bollard::Docker;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use claim::{safety_margin, Claim, ClaimState, Refusal};
pub use handover::Handover;
pub use record::{decide, Decision, Record};

use record::now_ms;

const DATA: &str = "swarm-warden leader lease: see the labels";

/// Takes and keeps the lease for one replica.
#[derive(Debug)]
pub struct Lease {
    docker: Docker,
    policy: crate::config::LeasePolicy,
    identity: String,
    /// Whether we hold it: changes only on takeover and loss (wakes the loop).
    leader: watch::Sender<bool>,
    /// Until when we may write (moves on every renewal; read by every write).
    claim: watch::Sender<ClaimState>,
    handover: Arc<Handover>,
    /// The lease version we last saw and when we first saw it (our clock).
    seen: Mutex<Option<(u64, Instant)>>,
    /// How many times we took the lease (the claim's term).
    takes: std::sync::atomic::AtomicU64,
}

impl Lease {
    /// A lease client for `identity` (e.g. hostname and task).
    pub fn new(docker: Docker, policy: crate::config::LeasePolicy, identity: String) -> Self {
        Self {
            docker,
            policy,
            identity,
            leader: watch::channel(false).0,
            claim: watch::channel(ClaimState::Lost).0,
            handover: Arc::new(Handover::default()),
            seen: Mutex::new(None),
            takes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The exchange with the controller's memory.
    pub fn handover(&self) -> Arc<Handover> {
        self.handover.clone()
    }

    /// The claim every write of this replica checks, counting refusals in `refused`.
    pub fn claim(&self, refused: Counter) -> Claim {
        Claim::new(self.claim.subscribe(), self.leader.subscribe(), refused)
    }

    /// How long the lease has stood at `version`, by our clock.
    fn unchanged_for(&self, version: Option<u64>) -> Duration {
        let Some(version) = version else {
            return Duration::ZERO;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return Duration::ZERO;
        };
        match *seen {
            Some((v, since)) if v == version => since.elapsed(),
            _ => {
                *seen = Some((version, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Who this replica is.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: take or renew if allowed. Returns whether we hold the lease now.
    ///
    /// # Errors
    /// The lease could not be read (the claim then runs on to its local expiry: a failed
    /// read does not mean someone else took over, and a holder that cannot renew stops
    /// writing when its claim runs out).
    pub async fn round(&self) -> Result<bool, String> {
        let (current, id, version) = self.read().await?;
        let unchanged_for = self.unchanged_for(version);
        let decision = decide(current.as_ref(), &self.identity, unchanged_for);
        let held = match decision {
            Decision::Wait { holder, left } => {
                tracing::debug!(%holder, ?left, "Lease held by another replica");
                false
            }
            Decision::Renew | Decision::Take => {
                let previous = current.as_ref().map(|r| &r.handoff);
                let (handoff, carries) = match (&decision, previous) {
                    // Taking over: pass the previous holder's handoff on untouched.
                    (Decision::Take, Some(previous)) => (previous.clone(), None),
                    _ => self.handover.to_write(previous),
                };
                let record = Record {
                    holder: self.identity.clone(),
                    renewed_ms: now_ms(),
                    duration_ms: u64::try_from(self.policy.duration.as_millis())
                        .unwrap_or(u64::MAX),
                    handoff,
                };
                // Timed from before the write is sent: whoever takes over next times
                // the lease from when they first see this version, which is later.
                let sent = Instant::now();
                let written = match (&id, version) {
                    (Some(id), Some(version)) => self.write(id, version, &record).await,
                    _ => self.create(&record).await,
                };
                match &written {
                    Ok(()) => {
                        let until = sent + self.policy.duration
                            - safety_margin(self.policy.duration, self.policy.renew);
                        let term = self.term(&decision);
                        self.claim
                            .send_replace(ClaimState::HeldUntil { until, term });
                        self.handover.wrote(carries);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "Lease write lost (another replica wrote first)")
                    }
                }
                if written.is_ok() && decision == Decision::Take {
                    if let Some(previous) = current {
                        self.handover.received(previous.handoff, SystemTime::now());
                    }
                }
                written.is_ok()
            }
        };
        if !held {
            self.claim.send_replace(ClaimState::Lost);
        }
        let was = *self.leader.borrow();
        if held != was {
            if held {
                // Typed like `crate::events` (counted by the `leader` gauge).
                tracing::info!(event = "lease-taken", identity = %self.identity, "Took the lease: this replica acts");
            } else {
                tracing::warn!(event = "lease-lost", identity = %self.identity, "Not holding the lease: observing only");
            }
        }
        set_leader(&self.leader, held);
        Ok(held)
    }

    /// The claim's term after a successful write: a take starts the next; a renewal keeps
    /// it (the record still names us, so nobody else held the lease in between, even when
    /// our last write's answer was lost). Terms start at 1.
    fn term(&self, decision: &Decision) -> u64 {
        use std::sync::atomic::Ordering;
        let next = next_term(self.takes.load(Ordering::Relaxed), decision);
        self.takes.store(next, Ordering::Relaxed);
        next
    }

    /// Keeps the lease until `cancel`, then releases it. Rounds start every `renew` while
    /// held (timed from the start of the last round, so slow Engine calls do not stretch
    /// the gap past the claim) and every `retry` otherwise. A handoff someone waits for is
    /// written at once, not at the next renewal.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            let held = match self.round().await {
                Ok(held) => held,
                Err(e) => {
                    // The claim runs on to its local expiry; the loop is told at once.
                    tracing::warn!(error = %e, "Lease round failed");
                    set_leader(&self.leader, false);
                    false
                }
            };
            let wait = if held {
                self.policy.renew
            } else {
                self.policy.retry
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(started + wait) => {}
                _ = self.handover.write_wanted() => {}
            }
        }
        self.release().await;
    }

    /// Gives the lease up, if it names this replica, so another replica can take it at
    /// once. Always read: a renewal whose answer was lost may have committed.
    pub async fn release(&self) {
        self.claim.send_replace(ClaimState::Lost);
        set_leader(&self.leader, false);
        if let Ok((Some(current), Some(id), Some(version))) = self.read().await {
            if current.holder == self.identity {
                let (handoff, _) = self.handover.to_write(Some(&current.handoff));
                let released = Record {
                    holder: String::new(),
                    renewed_ms: 0,
                    duration_ms: current.duration_ms,
                    handoff,
                };
                match self.write(&id, version, &released).await {
                    Ok(()) => tracing::info!("Released the lease"),
                    Err(e) => tracing::warn!(error = %e, "Could not release the lease"),
                }
            }
        }
    }

    /// Every call to the Engine is bounded by the renewal interval: a hung read must not
    /// hold the keeper past the moment it should renew (the claim runs out meanwhile).
    fn deadline(&self) -> Duration {
        self.policy.renew
    }

    async fn read(&self) -> Result<(Option<Record>, Option<String>, Option<u64>), String> {
        let read = tokio::time::timeout(
            self.deadline(),
            self.docker.inspect_config(&self.policy.name),
        )
        .await
        .map_err(|_| {
            format!(
                "read lease {}: no answer within {:?}",
                self.policy.name,
                self.deadline()
            )
        })?;
        match read {
            Ok(config) => {
                let labels = config.spec.and_then(|s| s.labels).unwrap_or_default();
                Ok((
                    Some(Record::from_labels(&labels)),
                    config.id,
                    config.version.and_then(|v| v.index),
                ))
            }
            Err(e) if crate::observe::is_not_found(&e) => Ok((None, None, None)),
            Err(e) => Err(format!("read lease {}: {e}", self.policy.name)),
        }
    }

    fn spec(&self, record: &Record) -> ConfigSpec {
        ConfigSpec {
            name: Some(self.policy.name.clone()),
            labels: Some(record.to_labels()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(DATA)),
            templating: None,
        }
    }

    // The lease keeper's compare-and-swap writes are the only writes outside the claim:
    // they are what makes the claim.
    async fn write(&self, id: &str, version: u64, record: &Record) -> Result<(), String> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let write =
            self.docker
                .update_config(id, self.spec(record), UpdateConfigOptions { version });
        match tokio::time::timeout(self.deadline(), write).await {
            Ok(result) => result.map_err(|e| format!("update lease: {e}")),
            Err(_) => Err("update lease: no answer in time".into()),
        }
    }

    async fn create(&self, record: &Record) -> Result<(), String> {
        match tokio::time::timeout(
            self.deadline(),
            self.docker.create_config(self.spec(record)),
        )
        .await
        {
            Ok(result) => result.map(|_| ()).map_err(|e| format!("create lease: {e}")),
            Err(_) => Err("create lease: no answer in time".into()),
        }
    }
}

/// The identity of this replica: `$SWARM_WARDEN_IDENTITY`, else hostname, PID and start
/// time. The start time matters: a task restarted on the same node (same hostname under
/// host networking, PID 1 again) is a new process that must not "renew" its
/// predecessor's lease as if it had been holding it all along.
pub fn identity() -> String {
    std::env::var("SWARM_WARDEN_IDENTITY").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        format!("{host}-{}-{}", std::process::id(), now_ms())
    })
}

/// The term after a successful write of `decision`, the last one being `current` (0:
/// none yet).
fn next_term(current: u64, decision: &Decision) -> u64 {
    if *decision == Decision::Take || current == 0 {
        current + 1
    } else {
        current
    }
}

/// Publishes whether this replica holds the lease, waking the loop only when that changed:
/// a renewal that changes nothing must not trigger a reconcile (every `lease.renew` on the
/// holder, every `lease.retry` on a follower, many more than the resync asks for).
fn set_leader(leader: &watch::Sender<bool>, held: bool) {
    leader.send_if_modified(|current| {
        let changed = *current != held;
        *current = held;
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Handoff;

    #[test]
    fn a_round_that_changes_nothing_wakes_no_one() {
        let (tx, mut rx) = watch::channel(false);
        set_leader(&tx, false);
        assert!(!rx.has_changed().unwrap(), "still a follower");
        set_leader(&tx, true);
        assert!(rx.has_changed().unwrap(), "took the lease");
        rx.mark_unchanged();
        set_leader(&tx, true);
        assert!(!rx.has_changed().unwrap(), "a renewal");
        set_leader(&tx, false);
        assert!(rx.has_changed().unwrap(), "lost it");
    }

    fn held(holder: &str, renewed_ms: u64) -> Record {
        Record {
            holder: holder.into(),
            renewed_ms,
            duration_ms: 15_000,
            handoff: Handoff::default(),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_take_starts_a_term_and_a_renewal_keeps_it() {
        assert_eq!(next_term(0, &Decision::Take), 1);
        assert_eq!(next_term(1, &Decision::Renew), 1);
        assert_eq!(
            next_term(0, &Decision::Renew),
            1,
            "a take whose answer was lost, renewed: the first term"
        );
        assert_eq!(next_term(1, &Decision::Take), 2);
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", secs(0)), Decision::Take);
        assert_eq!(decide(Some(&held("", 900)), "a", secs(0)), Decision::Take);
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_stood_still_for_the_duration() {
        let r = held("a", 10_000);
        assert_eq!(decide(Some(&r), "a", secs(2)), Decision::Renew);
        assert_eq!(
            decide(Some(&r), "b", secs(2)),
            Decision::Wait {
                holder: "a".into(),
                left: secs(13)
            }
        );
        assert_eq!(decide(Some(&r), "b", secs(15)), Decision::Take);
    }

    #[test]
    fn a_holder_whose_clock_is_far_behind_is_not_taken_over_while_it_renews() {
        // Renewed "an hour ago" by its own clock, but the version just moved.
        let r = held("a", 1);
        assert!(matches!(
            decide(Some(&r), "b", secs(0)),
            Decision::Wait { .. }
        ));
    }
}
