//! Where a migration's copy job runs, and where the migrated service may run after the
//! swap (issue 14, items 1 and 6).
//!
//! The copy runs on the node the service ran on when it was scaled down: the source is
//! provably the service's volume there (a `local` volume, or one defined outside the
//! service spec, exists only on the node that created it; elsewhere Docker creates a new,
//! empty one). The copy fills the target on that node, so the service finds the target
//! only where the copy could reach it:
//! - a `local` target (no network filesystem type) lives on that node's disk: the swap pins
//!   the service to the node (`node.id==<id>`);
//! - any other target that is not declared shared (`volumes.migration.shared_target`) is a
//!   single-attach, zone-bound volume (EBS through Cloudstor or REX-Ray): pinned to the
//!   node's zone when `volumes.migration.zone_label` names the label that holds it, to the
//!   node otherwise (never a zone guessed);
//! - a shared target is reached from every node: no pin.
//!
//! A rollback removes the pin with the swap it came with (one write each way).

use crate::config::MigrationPolicy;
use crate::model::Node;
use crate::plan::placement::data::NETWORK_FS_TYPES;

/// The constraint that runs the copy job on the node the service ran on.
pub(super) fn on_node(node_id: &str) -> String {
    format!("node.id=={node_id}")
}

/// The constraint the swap adds to the service (`None`: a shared target, no pin) and why,
/// for the journal and the report. `node_id` is the copy's node; `nodes` the swarm's.
pub(super) fn service_pin(
    policy: &MigrationPolicy,
    node_id: &str,
    nodes: &[Node],
) -> (Option<String>, String) {
    let driver = if policy.driver.is_empty() {
        "local"
    } else {
        policy.driver.as_str()
    };
    let network_fs = policy
        .options
        .get("type")
        .is_some_and(|t| NETWORK_FS_TYPES.contains(&t.as_str()));
    if policy.shared_target {
        return (
            None,
            format!(
                "the target driver {driver} is declared shared: the service may run on any node"
            ),
        );
    }
    if driver == "local" && !network_fs {
        return (
            Some(on_node(node_id)),
            format!("the target ({driver} driver) is on node {node_id}'s disk: the service is pinned to that node"),
        );
    }
    let zone = zone_of(&policy.zone_label, node_id, nodes);
    match zone {
        Some(zone) => (
            Some(format!("{}=={zone}", policy.zone_label)),
            format!(
                "the target ({driver} driver) is not declared shared: the service is pinned to {}={zone}, the copy's node's zone",
                policy.zone_label
            ),
        ),
        None => (
            Some(on_node(node_id)),
            format!(
                "the target ({driver} driver) is not declared shared, and {}: the service is pinned to the copy's node {node_id}",
                if policy.zone_label.is_empty() {
                    "no volumes.migration.zone_label names it".to_owned()
                } else {
                    format!("node {node_id} has no {}", policy.zone_label)
                }
            ),
        ),
    }
}

/// The value of `label` (`node.labels.<key>` or `engine.labels.<key>`) on node `node_id`.
fn zone_of(label: &str, node_id: &str, nodes: &[Node]) -> Option<String> {
    let node = nodes.iter().find(|n| n.id == node_id)?;
    if let Some(key) = label.strip_prefix("node.labels.") {
        return node.labels.get(key).cloned();
    }
    label
        .strip_prefix("engine.labels.")
        .and_then(|key| node.engine_labels.get(key).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::quorum_test_support::worker;

    fn policy(driver: &str) -> MigrationPolicy {
        MigrationPolicy {
            driver: driver.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_local_target_pins_the_service_to_the_copys_node() {
        let (pin, why) = service_pin(&policy("local"), "w1", &[]);
        assert_eq!(pin.as_deref(), Some("node.id==w1"));
        assert!(why.contains("disk"), "{why}");
        assert_eq!(
            service_pin(&policy(""), "w1", &[]).0.as_deref(),
            Some("node.id==w1")
        );
    }

    #[test]
    fn a_shared_or_network_target_is_not_pinned_to_the_node() {
        let mut shared = policy("local");
        shared.shared_target = true;
        assert_eq!(service_pin(&shared, "w1", &[]).0, None);
        // NFS through `local`, not declared shared: still one node (safe), never guessed.
        let mut nfs = policy("local");
        nfs.options.insert("type".into(), "nfs4".into());
        assert_eq!(
            service_pin(&nfs, "w1", &[]).0.as_deref(),
            Some("node.id==w1")
        );
    }

    #[test]
    fn a_zone_bound_target_is_pinned_to_the_zone_when_a_label_names_it_else_to_the_node() {
        let mut n = worker("w1");
        n.engine_labels
            .insert("availability_zone".into(), "eu-west-1b".into());
        let nodes = vec![n, worker("w2")];
        let mut ebs = policy("cloudstor:aws");
        assert_eq!(
            service_pin(&ebs, "w1", &nodes).0.as_deref(),
            Some("node.id==w1")
        );
        ebs.zone_label = "engine.labels.availability_zone".into();
        assert_eq!(
            service_pin(&ebs, "w1", &nodes).0.as_deref(),
            Some("engine.labels.availability_zone==eu-west-1b")
        );
        // A node without the label: its own ID, not a zone guessed.
        let (pin, why) = service_pin(&ebs, "w2", &nodes);
        assert_eq!(pin.as_deref(), Some("node.id==w2"));
        assert!(
            why.contains("has no engine.labels.availability_zone"),
            "{why}"
        );
    }
}
