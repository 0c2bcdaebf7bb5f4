//! The claim a lease gives: the right to write, until a moment measured on this process's
//! own monotonic clock. Every write checks it right before it is sent, so a holder that was
//! frozen, stalled or cut off stops writing by itself once its last renewal has run out —
//! before another replica can have taken the lease over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether, and until when, this replica may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// The lease is not ours (never taken, lost, released, or its round failed).
    Lost,
    /// Ours until `until` (local monotonic clock): the moment the renewing write was
    /// sent, plus `lease.duration`, minus [`safety_margin`]. `term` counts our takeovers:
    /// an action started under one term writes nothing under a later one (another holder
    /// may have acted in between).
    HeldUntil {
        /// When the claim runs out.
        until: Instant,
        /// Which of our holds this is (1 for the first take, +1 for each take after).
        term: u64,
    },
    /// No lease (disabled by policy): every replica writes.
    Unconditional,
}

impl ClaimState {
    /// Whether writes are allowed at `now`.
    pub fn allows(self, now: Instant) -> bool {
        match self {
            ClaimState::Lost => false,
            ClaimState::HeldUntil { until, .. } => now < until,
            ClaimState::Unconditional => true,
        }
    }
}

/// How much earlier than `duration` after a renewal this replica stops writing.
///
/// Another replica can take the lease over no sooner than `duration` after our renewal was
/// *sent* (it times the lease from when it first sees our version, which is after the
/// write was applied). What our margin covers is the write already checked but still on
/// its way to the Engine. A fifth of the duration (3 s of Kubernetes' 15 s), but never more
/// than half the gap between renewals, so a holder that renews on time never lapses.
pub fn safety_margin(duration: Duration, renew: Duration) -> Duration {
    (duration / 5).min(duration.saturating_sub(renew) / 2)
}

/// Why a write was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The lease is held by another replica, or this one lost or released it.
    #[error("this replica does not hold the lease")]
    NotHeld,
    /// The action was started under an earlier hold of the lease: another replica may
    /// have held it and acted in between, so what the action checked may be stale.
    #[error("the action was started under an earlier hold of the lease")]
    EarlierTerm,
    /// The last renewal ran out on the local clock (the process stalled, or renewals
    /// failed): another replica may hold the lease by now.
    #[error("this replica's lease claim expired {} ago without a renewal", humantime::format_duration(*.0))]
    Expired(Duration),
}

/// The check every write makes. Cheap to clone; clones share the refusal counter.
#[derive(Debug, Clone)]
pub struct Claim {
    state: watch::Receiver<ClaimState>,
    held: watch::Receiver<bool>,
    refused: Counter,
    /// Whether a refusal was logged since writes were last allowed (log once per loss).
    logged: Arc<AtomicBool>,
    /// The term an action was started under; its writes need that same term.
    pinned: Option<u64>,
}

impl Claim {
    /// A claim following `state` (written by the lease keeper) and `held` (changes only
    /// when the lease is taken or lost, to wake the loop), counting refusals in `refused`.
    pub fn new(
        state: watch::Receiver<ClaimState>,
        held: watch::Receiver<bool>,
        refused: Counter,
    ) -> Self {
        Self {
            state,
            held,
            refused,
            logged: Arc::new(AtomicBool::new(false)),
            pinned: None,
        }
    }

    /// This claim for one action: its writes are allowed only under the current hold of
    /// the lease, not under a later one.
    pub fn pinned(&self) -> Self {
        let mut pinned = self.clone();
        pinned.pinned = match *self.state.borrow() {
            ClaimState::HeldUntil { term, .. } => Some(term),
            // Terms start at 1: an action started without the lease writes under none.
            ClaimState::Lost => Some(0),
            ClaimState::Unconditional => None,
        };
        pinned
    }

    /// The claim of a run without a lease: always held.
    pub fn unconditional() -> Self {
        Self::new(
            watch::channel(ClaimState::Unconditional).1,
            watch::channel(true).1,
            Counter::default(),
        )
    }

    /// Whether this replica may start actions now: the lease keeper's last round held
    /// the lease, and the local clock says the claim still runs. (Actions already running
    /// may still write while only the latter holds: see [`Claim::check`].)
    pub fn is_held(&self) -> bool {
        *self.held.borrow() && self.state.borrow().allows(Instant::now())
    }

    /// Changes when the lease is taken or lost (not on every renewal): the loop looks at
    /// the swarm at once when it takes over.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.held.clone()
    }

    /// Refuses (counted; logged once per loss) unless this replica may write now. Call it
    /// right before sending `what`.
    ///
    /// # Errors
    /// [`Refusal`] when the lease is not held or its claim ran out on the local clock.
    pub fn check(&self, what: &str) -> Result<(), Refusal> {
        let now = Instant::now();
        let refusal = match *self.state.borrow() {
            ClaimState::HeldUntil { term, .. } if self.pinned.is_some_and(|p| p != term) => {
                Some(Refusal::EarlierTerm)
            }
            s if s.allows(now) => None,
            ClaimState::HeldUntil { until, .. } => {
                Some(Refusal::Expired(now.duration_since(until)))
            }
            _ => Some(Refusal::NotHeld),
        };
        match refusal {
            None => {
                self.logged.store(false, Ordering::Relaxed);
                Ok(())
            }
            Some(refusal) => {
                self.refused.inc();
                if !self.logged.swap(true, Ordering::Relaxed) {
                    // Typed like `crate::events`; counted by writes_refused_total above.
                    tracing::warn!(event = "write-refused", write = %what, reason = %refusal, "Write refused: not sent");
                }
                Err(refusal)
            }
        }
    }

    /// How many writes were refused (for tests; `/metrics` has the same counter).
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(state: ClaimState) -> (watch::Sender<ClaimState>, Claim) {
        let (tx, rx) = watch::channel(state);
        let claim = Claim::new(rx, watch::channel(true).1, Counter::default());
        (tx, claim)
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_runs_out_on_the_local_clock_without_a_renewal() {
        let (_tx, claim) = claim(held_until(Duration::from_secs(12), 1));
        assert_eq!(claim.check("demote m2"), Ok(()));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(claim.check("node rm m2"), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            claim.check("node rm m2"),
            Err(Refusal::Expired(Duration::from_secs(1)))
        );
        assert!(!claim.is_held());
        assert_eq!(claim.refused(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_extends_the_claim_and_a_loss_ends_it_at_once() {
        let (tx, claim) = claim(held_until(Duration::from_secs(5), 1));
        tokio::time::advance(Duration::from_secs(4)).await;
        tx.send_replace(held_until(Duration::from_secs(5), 1));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(claim.check("write"), Ok(()), "renewed in time");
        tx.send_replace(ClaimState::Lost);
        assert_eq!(claim.check("write"), Err(Refusal::NotHeld));
        assert_eq!(claim.refused(), 1);
    }

    fn held_until(left: Duration, term: u64) -> ClaimState {
        ClaimState::HeldUntil {
            until: Instant::now() + left,
            term,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_action_started_under_an_earlier_hold_writes_nothing_under_a_later_one() {
        let (tx, claim) = claim(held_until(Duration::from_secs(10), 1));
        let action = claim.pinned();
        assert_eq!(action.check("node rm m2"), Ok(()));
        // Lost, then taken again: another replica may have acted in between.
        tx.send_replace(ClaimState::Lost);
        tx.send_replace(held_until(Duration::from_secs(10), 2));
        assert_eq!(action.check("node rm m2"), Err(Refusal::EarlierTerm));
        assert_eq!(claim.check("a new action"), Ok(()));
        assert_eq!(claim.pinned().check("a new action"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_round_stops_new_actions_while_running_ones_may_still_write() {
        let (state, state_rx) = watch::channel(held_until(Duration::from_secs(10), 1));
        let (held, held_rx) = watch::channel(true);
        let claim = Claim::new(state_rx, held_rx, Counter::default());
        held.send_replace(false);
        assert!(!claim.is_held(), "no new action");
        assert_eq!(claim.check("the running fix's write"), Ok(()));
        drop(state);
    }

    #[tokio::test(start_paused = true)]
    async fn every_refusal_is_counted_and_clones_share_the_count() {
        let (_tx, claim) = claim(ClaimState::Lost);
        let other = claim.clone();
        for _ in 0..3 {
            assert!(claim.check("a").is_err());
            assert!(other.check("b").is_err());
        }
        assert_eq!(claim.refused(), 6);
    }

    #[test]
    fn without_a_lease_every_write_is_allowed() {
        let claim = Claim::unconditional();
        assert!(claim.is_held());
        assert_eq!(claim.check("write"), Ok(()));
    }

    #[test]
    fn the_margin_is_a_fifth_of_the_duration_but_leaves_renewals_room() {
        let s = Duration::from_secs;
        assert_eq!(safety_margin(s(15), s(5)), s(3));
        assert_eq!(
            safety_margin(s(15), s(10)),
            Duration::from_millis(2500),
            "Kubernetes' 15 s / 10 s: a renewal sent on time lands before the claim ends"
        );
        assert_eq!(safety_margin(s(8), s(5)), Duration::from_millis(1500));
    }
}
