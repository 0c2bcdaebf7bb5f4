//! Reading the swarm: one snapshot per reconcile from list calls, and the event stream
//! that says when to take the next one.

mod connect;
mod convert;
mod events;
mod prometheus_client;
mod run_view;
mod snapshot;
mod stored;
mod swarm_errors;
mod telemetry;

pub use connect::{connect, connect_waiting, ConnectError, DEFAULT_DOCKER_HOST, MIN_API_VERSION};
pub use convert::spec_hash;
pub use events::{watch_events, Trigger};
pub use prometheus_client::builder as http_client_builder;
pub use snapshot::{ObserveError, Observer, Rollout};
pub use stored::{list_journals, list_placement_records};
pub use swarm_errors::is_not_found;
pub use telemetry::{decode_sample, ClientError, Telemetry, TELEMETRY_DEADLINE};

/// An error and its sources, `: `-separated, each trimmed (the Engine's messages end in a
/// newline): the cause a user can act on ("invalid peer certificate: UnknownIssuer")
/// usually sits at the end of the chain, not in the outer error.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string().trim().to_owned();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(cause.to_string().trim());
        source = cause.source();
    }
    text
}
