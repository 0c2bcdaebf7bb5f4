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
//! labels also carry the holder's [`Handoff`], so a replica that takes over keeps waiting
//! where the previous one would have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::query_parameters::UpdateConfigOptions;
use bollard::Docker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::LeasePolicy;
use crate::plan::Handoff;

const HOLDER: &str = "swarm-warden.lease.holder";
const RENEWED: &str = "swarm-warden.lease.renewed-ms";
const DURATION: &str = "swarm-warden.lease.duration-ms";
const RAFT_LEADER: &str = "swarm-warden.handoff.raft-leader";
const RAFT_LEADER_SINCE: &str = "swarm-warden.handoff.raft-leader-since-ms";
const MEMBERSHIP_CHANGED: &str = "swarm-warden.handoff.membership-changed-ms";
const RAFT_MEMBERS: &str = "swarm-warden.handoff.raft-members";
const DATA: &str = "swarm-warden leader lease: see the labels";

/// The lease as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who holds it (empty: released).
    pub holder: String,
    /// When it was last renewed, Unix milliseconds.
    pub renewed_ms: u64,
    /// How long a renewal holds, milliseconds.
    pub duration_ms: u64,
    /// What the holder passes on.
    pub handoff: Handoff,
}

/// What to do about the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds it until this time (Unix ms).
    Wait {
        /// The holder.
        holder: String,
        /// How long until their hold expires, unless they renew.
        left: Duration,
    },
}

/// The pure rule. `unchanged_for` is how long (by our clock) the lease's version has stood
/// still since we first saw it.
pub fn decide(current: Option<&Record>, me: &str, unchanged_for: Duration) -> Decision {
    match current {
        None => Decision::Take,
        Some(r) if r.holder == me => Decision::Renew,
        Some(r)
            if r.holder.is_empty() || unchanged_for.as_millis() >= u128::from(r.duration_ms) =>
        {
            Decision::Take
        }
        Some(r) => Decision::Wait {
            holder: r.holder.clone(),
            left: Duration::from_millis(r.duration_ms).saturating_sub(unchanged_for),
        },
    }
}

fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The two-way exchange between the lease and the controller's memory.
#[derive(Debug, Default)]
pub struct Handover {
    /// What this replica would pass on now (published after every observation).
    outgoing: Mutex<Option<Handoff>>,
    /// What the previous holder passed on, and when we took over; until adopted.
    incoming: Mutex<Option<(Handoff, SystemTime)>>,
}

impl Handover {
    /// Publishes this replica's memory for the next renewal.
    pub fn publish(&self, handoff: Handoff) {
        if let Ok(mut slot) = self.outgoing.lock() {
            *slot = Some(handoff);
        }
    }

    /// What the previous holder passed on, once.
    pub fn take_incoming(&self) -> Option<(Handoff, SystemTime)> {
        self.incoming.lock().ok().and_then(|mut slot| slot.take())
    }

    fn received(&self, handoff: Handoff, at: SystemTime) {
        if let Ok(mut slot) = self.incoming.lock() {
            *slot = Some((handoff, at));
        }
    }

    /// What to write: until the controller has adopted the previous holder's handoff, that
    /// one is carried over unchanged, so nothing is lost between takeover and adoption.
    fn to_write(&self, previous: Option<&Handoff>) -> Handoff {
        let pending = self.incoming.lock().map(|s| s.is_some()).unwrap_or(true);
        let ours = self.outgoing.lock().ok().and_then(|s| s.clone());
        match (pending, ours, previous) {
            (false, Some(ours), _) => ours,
            (_, _, Some(previous)) => previous.clone(),
            (_, ours, None) => ours.unwrap_or_default(),
        }
    }
}

/// Takes and keeps the lease for one replica.
#[derive(Debug)]
pub struct Lease {
    docker: Docker,
    policy: LeasePolicy,
    identity: String,
    leader: watch::Sender<bool>,
    handover: Arc<Handover>,
    /// The lease version we last saw and when we first saw it (our clock).
    seen: Mutex<Option<(u64, Instant)>>,
}

impl Lease {
    /// A lease client for `identity` (e.g. hostname and task).
    pub fn new(docker: Docker, policy: LeasePolicy, identity: String) -> Self {
        let (leader, _) = watch::channel(false);
        Self {
            docker,
            policy,
            identity,
            leader,
            handover: Arc::new(Handover::default()),
            seen: Mutex::new(None),
        }
    }

    /// The exchange with the controller's memory.
    pub fn handover(&self) -> Arc<Handover> {
        self.handover.clone()
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

    /// Follows whether this replica holds the lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Who this replica is.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: take or renew if allowed. Returns whether we hold the lease now.
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
                let record = Record {
                    holder: self.identity.clone(),
                    renewed_ms: now_ms(),
                    duration_ms: u64::try_from(self.policy.duration.as_millis())
                        .unwrap_or(u64::MAX),
                    // Taking over: pass the previous holder's handoff on untouched.
                    handoff: match (&decision, previous) {
                        (Decision::Take, Some(previous)) => previous.clone(),
                        _ => self.handover.to_write(previous),
                    },
                };
                let written = match (&id, version) {
                    (Some(id), Some(version)) => self.write(id, version, &record).await,
                    _ => self.create(&record).await,
                };
                if let Err(e) = &written {
                    tracing::debug!(error = %e, "Lease write lost (another replica wrote first)");
                }
                if written.is_ok() && decision == Decision::Take {
                    if let Some(previous) = current {
                        self.handover.received(previous.handoff, SystemTime::now());
                    }
                }
                written.is_ok()
            }
        };
        let was = *self.leader.borrow();
        if held != was {
            if held {
                tracing::info!(identity = %self.identity, "Took the lease: this replica acts");
            } else {
                tracing::warn!(identity = %self.identity, "Not holding the lease: observing only");
            }
        }
        set_leader(&self.leader, held);
        Ok(held)
    }

    /// Keeps the lease until `cancel`, then releases it.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let held = match self.round().await {
                Ok(held) => held,
                Err(e) => {
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
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.release().await;
    }

    /// Gives the lease up, if held, so another replica can take it at once.
    pub async fn release(&self) {
        if !*self.leader.borrow() {
            return;
        }
        set_leader(&self.leader, false);
        if let Ok((Some(current), Some(id), Some(version))) = self.read().await {
            if current.holder == self.identity {
                let released = Record {
                    holder: String::new(),
                    renewed_ms: 0,
                    duration_ms: current.duration_ms,
                    handoff: self.handover.to_write(Some(&current.handoff)),
                };
                match self.write(&id, version, &released).await {
                    Ok(()) => tracing::info!("Released the lease"),
                    Err(e) => tracing::warn!(error = %e, "Could not release the lease"),
                }
            }
        }
    }

    async fn read(&self) -> Result<(Option<Record>, Option<String>, Option<u64>), String> {
        match self.docker.inspect_config(&self.policy.name).await {
            Ok(config) => {
                let labels = config.spec.and_then(|s| s.labels).unwrap_or_default();
                let num = |k: &str| labels.get(k).and_then(|v| v.parse::<u64>().ok());
                Ok((
                    Some(Record {
                        holder: labels.get(HOLDER).cloned().unwrap_or_default(),
                        renewed_ms: num(RENEWED).unwrap_or(0),
                        duration_ms: num(DURATION).unwrap_or(0),
                        handoff: Handoff {
                            raft_leader: labels.get(RAFT_LEADER).filter(|v| !v.is_empty()).cloned(),
                            raft_leader_since: num(RAFT_LEADER_SINCE).map(from_ms),
                            last_membership_change: num(MEMBERSHIP_CHANGED).map(from_ms),
                            raft_members: labels
                                .get(RAFT_MEMBERS)
                                .map(|v| {
                                    v.split(',')
                                        .filter(|id| !id.is_empty())
                                        .map(str::to_owned)
                                        .collect()
                                })
                                .unwrap_or_default(),
                        },
                    }),
                    config.id,
                    config.version.and_then(|v| v.index),
                ))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok((None, None, None)),
            Err(e) => Err(format!("read lease {}: {e}", self.policy.name)),
        }
    }

    fn spec(&self, record: &Record) -> ConfigSpec {
        let mut labels = HashMap::from([
            (HOLDER.to_owned(), record.holder.clone()),
            (RENEWED.to_owned(), record.renewed_ms.to_string()),
            (DURATION.to_owned(), record.duration_ms.to_string()),
        ]);
        let h = &record.handoff;
        if let Some(leader) = &h.raft_leader {
            labels.insert(RAFT_LEADER.to_owned(), leader.clone());
        }
        if let Some(since) = h.raft_leader_since {
            labels.insert(RAFT_LEADER_SINCE.to_owned(), to_ms(since).to_string());
        }
        if let Some(changed) = h.last_membership_change {
            labels.insert(MEMBERSHIP_CHANGED.to_owned(), to_ms(changed).to_string());
        }
        if !h.raft_members.is_empty() {
            let ids: Vec<&str> = h.raft_members.iter().map(String::as_str).collect();
            labels.insert(RAFT_MEMBERS.to_owned(), ids.join(","));
        }
        ConfigSpec {
            name: Some(self.policy.name.clone()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(DATA)),
            templating: None,
        }
    }

    async fn write(&self, id: &str, version: u64, record: &Record) -> Result<(), String> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.docker
            .update_config(id, self.spec(record), UpdateConfigOptions { version })
            .await
            .map_err(|e| format!("update lease: {e}"))
    }

    async fn create(&self, record: &Record) -> Result<(), String> {
        self.docker
            .create_config(self.spec(record))
            .await
            .map(|_| ())
            .map_err(|e| format!("create lease: {e}"))
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

/// A lease gate that is always open: for runs without a lease (disabled by policy). The
/// sender is dropped; the receiver keeps reading its last value.
pub fn always_leader() -> watch::Receiver<bool> {
    watch::channel(true).1
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

    #[test]
    fn the_previous_holders_handoff_is_carried_over_until_adopted() {
        let handover = Handover::default();
        let previous = Handoff {
            raft_leader: Some("m1".into()),
            raft_leader_since: None,
            last_membership_change: Some(from_ms(5_000)),
            ..Default::default()
        };
        let ours = Handoff {
            raft_leader: Some("m1".into()),
            ..Handoff::default()
        };
        handover.publish(ours.clone());
        handover.received(previous.clone(), from_ms(9_000));
        assert_eq!(handover.to_write(Some(&previous)), previous);
        assert_eq!(
            handover.take_incoming(),
            Some((previous.clone(), from_ms(9_000)))
        );
        assert_eq!(handover.to_write(Some(&previous)), ours);
    }
}
