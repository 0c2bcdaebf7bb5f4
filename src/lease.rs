//! A single active replica, like a Kubernetes lease: the lease is a Swarm config whose
//! labels say who holds it and when they last renewed it; every write carries the version
//! it read (compare-and-swap), so two replicas can never both take it. The holder renews
//! every `renew`; others retry every `retry` and take it once `duration` has passed
//! without a renewal. Followers observe and serve metrics but never act; a graceful
//! shutdown releases the lease.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::models::ConfigSpec;
use bollard::query_parameters::UpdateConfigOptions;
use bollard::Docker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::LeasePolicy;

const HOLDER: &str = "swarm-warden.lease.holder";
const RENEWED: &str = "swarm-warden.lease.renewed-ms";
const DURATION: &str = "swarm-warden.lease.duration-ms";
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
        /// When their hold expires.
        until_ms: u64,
    },
}

/// The pure rule.
pub fn decide(current: Option<&Record>, me: &str, now_ms: u64) -> Decision {
    match current {
        None => Decision::Take,
        Some(r) if r.holder == me => Decision::Renew,
        Some(r) if r.holder.is_empty() || now_ms >= r.renewed_ms.saturating_add(r.duration_ms) => {
            Decision::Take
        }
        Some(r) => Decision::Wait {
            holder: r.holder.clone(),
            until_ms: r.renewed_ms.saturating_add(r.duration_ms),
        },
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Takes and keeps the lease for one replica.
#[derive(Debug)]
pub struct Lease {
    docker: Docker,
    policy: LeasePolicy,
    identity: String,
    leader: watch::Sender<bool>,
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
        let decision = decide(current.as_ref(), &self.identity, now_ms());
        let held = match decision {
            Decision::Wait { holder, until_ms } => {
                tracing::debug!(%holder, until_ms, "Lease held by another replica");
                false
            }
            Decision::Renew | Decision::Take => {
                let record = Record {
                    holder: self.identity.clone(),
                    renewed_ms: now_ms(),
                    duration_ms: self.policy.duration.as_millis() as u64,
                };
                match (&id, version) {
                    (Some(id), Some(version)) => self.write(id, version, &record).await.is_ok(),
                    _ => self.create(&record).await.is_ok(),
                }
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
        self.leader.send_replace(held);
        Ok(held)
    }

    /// Keeps the lease until `cancel`, then releases it.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let held = match self.round().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "Lease round failed");
                    self.leader.send_replace(false);
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
        self.leader.send_replace(false);
        if let Ok((Some(current), Some(id), Some(version))) = self.read().await {
            if current.holder == self.identity {
                let released = Record {
                    holder: String::new(),
                    renewed_ms: 0,
                    duration_ms: current.duration_ms,
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
                let num = |k: &str| labels.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                Ok((
                    Some(Record {
                        holder: labels.get(HOLDER).cloned().unwrap_or_default(),
                        renewed_ms: num(RENEWED),
                        duration_ms: num(DURATION),
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
        ConfigSpec {
            name: Some(self.policy.name.clone()),
            labels: Some(HashMap::from([
                (HOLDER.to_owned(), record.holder.clone()),
                (RENEWED.to_owned(), record.renewed_ms.to_string()),
                (DURATION.to_owned(), record.duration_ms.to_string()),
            ])),
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

/// The identity of this replica: `$SWARM_WARDEN_IDENTITY`, else hostname and PID (in a
/// Swarm task the hostname is the container ID).
pub fn identity() -> String {
    std::env::var("SWARM_WARDEN_IDENTITY").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        format!("{host}-{}", std::process::id())
    })
}

/// A lease gate that is always open: for runs without a lease (disabled by policy). The
/// sender is dropped; the receiver keeps reading its last value.
pub fn always_leader() -> watch::Receiver<bool> {
    watch::channel(true).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: &str, renewed_ms: u64) -> Record {
        Record {
            holder: holder.into(),
            renewed_ms,
            duration_ms: 15_000,
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", 1000), Decision::Take);
        assert_eq!(decide(Some(&held("", 900)), "a", 1000), Decision::Take);
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_expires() {
        let r = held("a", 10_000);
        assert_eq!(decide(Some(&r), "a", 12_000), Decision::Renew);
        assert_eq!(
            decide(Some(&r), "b", 12_000),
            Decision::Wait {
                holder: "a".into(),
                until_ms: 25_000
            }
        );
        assert_eq!(decide(Some(&r), "b", 25_000), Decision::Take);
    }
}
