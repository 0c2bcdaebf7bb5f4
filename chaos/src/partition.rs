//! Partition specs, like Jepsen's grudges: which nodes may no longer talk to which.
//!
//! - `m1` isolates m1 from every other node.
//! - `m1,m2/m3,m4,m5` splits the listed nodes into groups that cannot reach each other;
//!   nodes not listed keep talking to everyone.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{LabError, Result};
use crate::names::NodeName;

/// For each node, the nodes it must not exchange packets with (symmetric).
pub type Grudges = BTreeMap<NodeName, BTreeSet<NodeName>>;

/// Parses `spec` against the lab's nodes and returns who cannot talk to whom.
pub fn grudges(spec: &str, nodes: &[NodeName]) -> Result<Grudges> {
    let known = |name: &str| -> Result<NodeName> {
        nodes
            .iter()
            .find(|n| n.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                LabError::Usage(format!("partition {spec:?}: no node {name:?} in this lab"))
            })
    };
    let mut groups: Vec<BTreeSet<NodeName>> = Vec::new();
    for group in spec.split('/') {
        let members = group
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(known)
            .collect::<Result<BTreeSet<_>>>()?;
        if members.is_empty() {
            return Err(LabError::Usage(format!("partition {spec:?}: empty group")));
        }
        groups.push(members);
    }
    if groups.len() == 1 {
        // One group: cut it off from everyone else.
        let rest: BTreeSet<NodeName> = nodes
            .iter()
            .filter(|n| !groups[0].contains(n))
            .cloned()
            .collect();
        if rest.is_empty() {
            return Err(LabError::Usage(format!(
                "partition {spec:?} names every node: nothing to cut"
            )));
        }
        groups.push(rest);
    }
    let mut seen = BTreeSet::new();
    for node in groups.iter().flatten() {
        if !seen.insert(node) {
            return Err(LabError::Usage(format!(
                "partition {spec:?}: {node} is in two groups"
            )));
        }
    }
    let mut out = Grudges::new();
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate() {
            if i != j {
                for node in a {
                    out.entry(node.clone())
                        .or_default()
                        .extend(b.iter().cloned());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeName> {
        names.iter().map(|n| NodeName::new(n).unwrap()).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<NodeName> {
        nodes(names).into_iter().collect()
    }

    #[test]
    fn a_single_node_is_isolated_from_all_others_both_ways() {
        let all = nodes(&["m1", "m2", "m3", "w1"]);
        let g = grudges("m1", &all).unwrap();
        assert_eq!(g[&all[0]], set(&["m2", "m3", "w1"]));
        assert_eq!(g[&all[1]], set(&["m1"]));
        assert_eq!(g[&all[3]], set(&["m1"]));
    }

    #[test]
    fn groups_cannot_reach_each_other_and_unlisted_nodes_reach_everyone() {
        let all = nodes(&["m1", "m2", "m3", "m4", "m5", "w1"]);
        let g = grudges("m1,m2/m3,m4,m5", &all).unwrap();
        assert_eq!(g[&all[0]], set(&["m3", "m4", "m5"]));
        assert_eq!(g[&all[4]], set(&["m1", "m2"]));
        assert!(!g.contains_key(&all[5]));
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let all = nodes(&["m1", "m2"]);
        for (spec, why) in [
            ("m9", "no node"),
            ("m1/", "empty group"),
            ("m1/m1", "two groups"),
            ("m1,m2", "every node"),
        ] {
            let err = grudges(spec, &all).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }
}
