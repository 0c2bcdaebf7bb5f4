//! Reading the swarm: one snapshot per reconcile from list calls, and the event stream
//! that says when to take the next one.

mod connect;
mod convert;
mod events;
mod snapshot;
mod swarm_errors;
mod telemetry;

pub use connect::{connect, ConnectError, DEFAULT_DOCKER_HOST};
pub use convert::spec_hash;
pub use events::{watch_events, Trigger};
pub use snapshot::{ObserveError, Observer, Rollout};
pub use telemetry::{decode_sample, Telemetry, TELEMETRY_DEADLINE};
