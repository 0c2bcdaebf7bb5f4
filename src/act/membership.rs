//! Membership writes and their waits: a dead entry demoted (labelled) and removed by ID,
//! a worker promoted (labelled) until it is a reachable manager. The waits read the node
//! list alone, once a second.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::actor::Actor;
use super::error::{tolerate, ActError};
use crate::config::Policy;
use crate::model::{Node, Role};
use crate::plan::{DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL};

impl Actor {
    /// Removes a dead entry by ID: a raft member is demoted first (labelled, so a process
    /// that dies before the `node rm` leaves a removal the next one finishes) and must
    /// have left the raft; an entry outside the raft is removed at once.
    pub async fn remove_dead_manager(
        &self,
        node: &Node,
        policy: &Policy,
    ) -> Result<String, ActError> {
        let start = Instant::now();
        if node.is_manager() {
            let label = (DEMOTED_FOR_REMOVAL_LABEL, rfc3339(SystemTime::now()));
            match self.writer.set_role(node, Role::Worker, label).await {
                Ok(()) => {}
                // The member left the raft since the re-check (SwarmKit: "can't find
                // manager in raft memberlist"): nothing to demote, remove the entry.
                Err(e)
                    if e.engine_message()
                        .is_some_and(|m| m.contains("can't find manager in raft memberlist")) =>
                {
                    tracing::info!(node = %node.id, error = %e, "Not a raft member any more: removing");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let id = node.id.clone();
        self.wait_for(
            &format!("{} leaving the raft", node.hostname),
            policy.managers.convergence_timeout,
            |nodes| {
                nodes
                    .iter()
                    .find(|n| n.id == id)
                    .is_none_or(|n| !n.is_manager())
            },
        )
        .await?;
        let left_after = start.elapsed();
        self.writer.remove_node(node).await?;
        self.wait_for(
            &format!("{} disappearing from the node list", node.hostname),
            policy.managers.convergence_timeout,
            |nodes| nodes.iter().all(|n| n.id != id),
        )
        .await?;
        Ok(if node.is_manager() {
            format!(
                "Demoted {}; it left the raft after {:.1}s and was removed after {:.1}s.",
                node.hostname,
                left_after.as_secs_f64(),
                start.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "Removed the entry {} of {} (no raft member) after {:.1}s.",
                node.id,
                node.hostname,
                start.elapsed().as_secs_f64()
            )
        })
    }

    /// Promotes a worker (labelled with the time, so a promotion that never joins is known
    /// as ours) and waits until it is a reachable manager; the label goes once it is.
    pub async fn promote(&self, node: &Node, policy: &Policy) -> Result<String, ActError> {
        let start = Instant::now();
        let label = (PROMOTED_AT_LABEL, rfc3339(SystemTime::now()));
        self.writer.set_role(node, Role::Manager, label).await?;
        let id = node.id.clone();
        self.wait_for(
            &format!("{} becoming a reachable manager", node.hostname),
            policy.managers.convergence_timeout,
            |nodes| nodes.iter().any(|n| n.id == id && n.is_reachable_manager()),
        )
        .await?;
        // The label marks a promotion in flight; once it has converged it would only
        // mislead a later process (an ex-manager is not a failed promotion).
        if let Err(e) = self.writer.remove_label(&node.id, PROMOTED_AT_LABEL).await {
            tracing::warn!(node = %node.id, error = %e, "Could not clear the promotion label");
        }
        Ok(format!(
            "Promoted {}; reachable manager after {:.1}s.",
            node.hostname,
            start.elapsed().as_secs_f64()
        ))
    }

    /// Reads the node list (alone) until `done` holds. A list without a leader (an
    /// election during the change) or a transient failure just means "not yet".
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Node]) -> bool,
    ) -> Result<(), ActError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Some(nodes)) = tolerate(self.observer.nodes().await)? {
                if done(&nodes) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ActError::NotConverged {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            self.pause(what).await?;
        }
    }
}

/// `at` as RFC 3339 (seconds), as node labels carry times.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}
