//! The two-way exchange between the lease and the controller's memory: what this replica
//! passes on with every renewal, and what the previous holder passed on at a takeover.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::plan::Handoff;

/// The exchange. One per lease; the controller publishes, the lease keeper writes.
#[derive(Debug)]
pub struct Handover {
    /// What this replica would pass on now (published after every observation), and the
    /// number of that publication.
    outgoing: Mutex<Option<(Handoff, u64)>>,
    /// What the previous holder passed on, and when we took over; until adopted.
    incoming: Mutex<Option<(Handoff, SystemTime)>>,
    /// The number of the last publication a lease write carried.
    written: watch::Sender<u64>,
    /// Asks the lease keeper to write now rather than at its next renewal.
    write_now: Notify,
}

impl Default for Handover {
    fn default() -> Self {
        Self {
            outgoing: Mutex::new(None),
            incoming: Mutex::new(None),
            written: watch::channel(0).0,
            write_now: Notify::new(),
        }
    }
}

impl Handover {
    /// Publishes this replica's memory for the next renewal; returns its number (see
    /// [`Handover::carried`]).
    pub fn publish(&self, handoff: Handoff) -> u64 {
        let Ok(mut slot) = self.outgoing.lock() else {
            return 0;
        };
        let number = slot.as_ref().map_or(1, |(_, n)| n + 1);
        *slot = Some((handoff, number));
        number
    }

    /// Waits (at most `timeout`) until the lease carries publication `number` or a later
    /// one, asking the keeper to write at once. A membership change is published and
    /// carried *before* its first write, so whoever holds the lease next — after a crash,
    /// a SIGTERM or a takeover — waits out its stabilization.
    ///
    /// Returns whether the lease carries it.
    pub async fn carried(&self, number: u64, timeout: Duration) -> bool {
        let mut written = self.written.subscribe();
        self.write_now.notify_one();
        tokio::time::timeout(timeout, written.wait_for(|w| *w >= number))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// What the previous holder passed on, once.
    pub fn take_incoming(&self) -> Option<(Handoff, SystemTime)> {
        self.incoming.lock().ok().and_then(|mut slot| slot.take())
    }

    pub(super) fn received(&self, handoff: Handoff, at: SystemTime) {
        if let Ok(mut slot) = self.incoming.lock() {
            *slot = Some((handoff, at));
        }
    }

    /// Resolves when someone waits in [`Handover::carried`].
    pub(super) async fn write_wanted(&self) {
        self.write_now.notified().await;
    }

    /// What to write, and the publication it carries (none: the previous holder's): until
    /// the controller has adopted the previous holder's handoff, that one is carried over
    /// unchanged, so nothing is lost between takeover and adoption.
    pub(super) fn to_write(&self, previous: Option<&Handoff>) -> (Handoff, Option<u64>) {
        let pending = self.incoming.lock().map(|s| s.is_some()).unwrap_or(true);
        let ours = self.outgoing.lock().ok().and_then(|s| s.clone());
        match (pending, ours, previous) {
            (false, Some((ours, number)), _) => (ours, Some(number)),
            (_, _, Some(previous)) => (previous.clone(), None),
            (_, ours, None) => (ours.map(|(h, _)| h).unwrap_or_default(), None),
        }
    }

    /// Records that a lease write carrying publication `number` succeeded.
    pub(super) fn wrote(&self, number: Option<u64>) {
        if let Some(number) = number {
            self.written.send_if_modified(|w| {
                let newer = number > *w;
                *w = (*w).max(number);
                newer
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::record::from_ms;

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
        let number = handover.publish(ours.clone());
        handover.received(previous.clone(), from_ms(9_000));
        assert_eq!(handover.to_write(Some(&previous)), (previous.clone(), None));
        assert_eq!(
            handover.take_incoming(),
            Some((previous.clone(), from_ms(9_000)))
        );
        assert_eq!(handover.to_write(Some(&previous)), (ours, Some(number)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_publication_is_carried_once_a_write_holding_it_succeeded() {
        let handover = std::sync::Arc::new(Handover::default());
        let first = handover.publish(Handoff::default());
        let second = handover.publish(Handoff {
            last_membership_change: Some(from_ms(7_000)),
            ..Handoff::default()
        });
        assert!(second > first);
        handover.wrote(Some(first));
        assert!(
            !handover.carried(second, Duration::from_secs(2)).await,
            "an older write does not carry a newer publication"
        );
        let keeper = {
            let handover = handover.clone();
            tokio::spawn(async move {
                handover.write_wanted().await;
                let (_, number) = handover.to_write(None);
                handover.wrote(number);
            })
        };
        assert!(handover.carried(second, Duration::from_secs(2)).await);
        keeper.await.unwrap();
    }
}
