//! The Engine's event stream as reconcile triggers. Every (re)connect asks for a full
//! relist: the Engine keeps only 256 events, so what happened while we were away must be
//! read from the lists, not replayed.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The controller started.
    Start,
    /// The event stream (re)connected: anything may have changed.
    Relist,
    /// The periodic resync.
    Resync,
    /// The last plan asked to look again at a given time.
    Requeue,
    /// This replica took (`true`) or lost (`false`) the lease.
    Leadership(bool),
    /// An action running in its own task ended.
    ActionEnded {
        /// Its kind (`remove-dead-manager`, `enforce-placement`, ...).
        kind: &'static str,
        /// Its target (a node ID or service name).
        target: String,
    },
    /// A node or service event.
    Event {
        /// `node` or `service`.
        kind: String,
        /// `create`, `update`, `remove`.
        action: String,
        /// The object's name (or ID).
        subject: String,
    },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Start => f.write_str("start"),
            Trigger::Relist => f.write_str("event stream (re)connected"),
            Trigger::Resync => f.write_str("periodic resync"),
            Trigger::Leadership(true) => f.write_str("took the lease"),
            Trigger::Leadership(false) => f.write_str("lost the lease"),
            Trigger::Requeue => f.write_str("requeue"),
            Trigger::ActionEnded { kind, target } => write!(f, "{kind} {target} ended"),
            Trigger::Event {
                kind,
                action,
                subject,
            } => write!(f, "{kind} {action} {subject}"),
        }
    }
}

/// Follows node and service events until `cancel`, reconnecting with backoff (reset by
/// every event received), sending a [`Trigger::Relist`] on every connect.
pub async fn watch_events(
    docker: Docker,
    triggers: mpsc::UnboundedSender<Trigger>,
    backoff: impl BackoffBuilder + Clone,
    cancel: CancellationToken,
) {
    let mut delays = backoff.clone().build();
    loop {
        // Subscribing from "now" and relisting after it leaves no gap: events that happen
        // while the relist runs are delivered by the stream.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default();
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_owned(),
                vec!["node".to_owned(), "service".to_owned()],
            )])),
        };
        let mut stream = docker.events(Some(options));
        if triggers.send(Trigger::Relist).is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(event)) => {
                        delays = backoff.clone().build();
                        let actor = event.actor.unwrap_or_default();
                        let attributes = actor.attributes.unwrap_or_default();
                        let trigger = Trigger::Event {
                            kind: event.typ.map(|t| t.to_string()).unwrap_or_default(),
                            action: event.action.unwrap_or_default(),
                            subject: attributes.get("name").cloned().or(actor.id).unwrap_or_default(),
                        };
                        tracing::debug!(%trigger, "Event");
                        if triggers.send(trigger).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Event stream failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::info!("Event stream ended; reconnecting");
                        break;
                    }
                },
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
