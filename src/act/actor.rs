//! What carries one long action out (a removal, a promotion, a placement fix and its
//! rolling update): a cheap clone of the executor's hands, moved into its own task so the
//! loop keeps turning while the action waits. Every write goes through the [`Writer`], so
//! an action whose replica lost the lease stops at its next write.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use std::sync::Arc;

use super::error::ActError;
use crate::observe::Observer;
use crate::writer::Writer;

/// How often a running action reads again while it waits.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// The hands of one action.
#[derive(Debug, Clone)]
pub(super) struct Actor {
    pub observer: Observer,
    pub writer: Writer,
    pub cancel: CancellationToken,
    /// Where the events of running actions are counted.
    pub metrics: Arc<Metrics>,
}

impl Actor {
    /// One poll interval, cut short by shutdown.
    pub async fn pause(&self, what: &str) -> Result<(), ActError> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(ActError::Interrupted(what.to_owned())),
            _ = tokio::time::sleep(POLL) => Ok(()),
        }
    }
}
