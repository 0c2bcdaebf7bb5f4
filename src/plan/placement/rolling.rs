//! Rolling updates a promotion could pause. SwarmKit's constraint enforcer rejects the
//! tasks a new manager may not run (`node.role != manager`), and its updater counts a
//! rejected task it started within `update_config.monitor` as a failed update: with the
//! default `failure_action: pause` the update stops, and a placement fix in flight would
//! be rolled back (seen in the lab: e2e_one_writer, a successor replica promoting while its
//! predecessor's fix rolled). Only a worker running a task of such a service is affected.

use std::time::SystemTime;

use crate::config::PlacementPolicy;
use crate::model::{Node, Service, Snapshot, UpdateState};
use crate::plan::constraint::Constraints;
use crate::plan::human;

/// Whether `service` is kept off managers and its rolling update (or rollback) is in
/// flight: the services whose tasks a promotion must look at (observe lists their tasks).
pub fn rolling_off_managers(service: &Service) -> bool {
    matches!(
        service.update.as_ref().map(|u| u.state),
        Some(UpdateState::Updating | UpdateState::RollbackStarted)
    ) && Constraints::parse(&service.constraints).exclude_managers()
}

/// Why promoting `candidate` now could pause a rolling update, if it could: it runs a
/// task of a service kept off managers whose update started less than
/// `placement.update_timeout` ago. An older update no longer holds promotions back
/// (SwarmKit keeps a stuck update `updating` for ever), nor does one without a start time.
pub fn pauses_an_update(
    snapshot: &Snapshot,
    policy: &PlacementPolicy,
    candidate: &Node,
    now: SystemTime,
) -> Option<String> {
    snapshot
        .services
        .iter()
        .filter(|s| rolling_off_managers(s))
        .find_map(|service| {
            let started = service.update.as_ref()?.started_at?;
            let running_for = now.duration_since(started).unwrap_or_default();
            if running_for >= policy.update_timeout {
                return None;
            }
            let runs_there = snapshot.tasks.iter().any(|t| {
                t.service_id == service.id && t.node_id.as_deref() == Some(candidate.id.as_str())
            });
            runs_there.then(|| {
                format!(
                    "{} rolls an update (started {} ago, held up to placement.update_timeout {}) with a task there: as a manager the node would reject it and pause the update",
                    service.name,
                    human(running_for),
                    human(policy.update_timeout)
                )
            })
        })
}
