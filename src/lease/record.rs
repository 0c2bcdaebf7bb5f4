//! The lease as a Swarm config's labels say it, and the pure rule deciding what to do
//! about it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plan::Handoff;

const HOLDER: &str = "swarm-warden.lease.holder";
const RENEWED: &str = "swarm-warden.lease.renewed-ms";
const DURATION: &str = "swarm-warden.lease.duration-ms";
const RAFT_LEADER: &str = "swarm-warden.handoff.raft-leader";
const RAFT_LEADER_SINCE: &str = "swarm-warden.handoff.raft-leader-since-ms";
const MEMBERSHIP_CHANGED: &str = "swarm-warden.handoff.membership-changed-ms";
const RAFT_MEMBERS: &str = "swarm-warden.handoff.raft-members";

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

pub(super) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub(super) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Record {
    /// The record the labels of the lease config carry; missing labels read as empty.
    pub fn from_labels(labels: &HashMap<String, String>) -> Self {
        let num = |k: &str| labels.get(k).and_then(|v| v.parse::<u64>().ok());
        Record {
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
        }
    }

    /// The labels that carry this record.
    pub fn to_labels(&self) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (HOLDER.to_owned(), self.holder.clone()),
            (RENEWED.to_owned(), self.renewed_ms.to_string()),
            (DURATION.to_owned(), self.duration_ms.to_string()),
        ]);
        let h = &self.handoff;
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
        labels
    }
}
