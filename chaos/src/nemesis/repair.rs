//! The end of a campaign: every fault healed, and what an operator would repair.

use std::time::Duration;

use tokio::time::Instant;

use super::faults::Broken;
use super::history::{Event, History, Row};
use super::poll::rows;
use crate::{Lab, ProcessState, Role};

/// Heals every fault (whatever is still broken, and every node whose processes are not
/// running), then [`repair`]s what an operator would. Nothing is repaired without a
/// leader.
pub(super) async fn final_heal(lab: &Lab, history: &History, broken: &mut Broken) {
    if lab.heal().await.is_ok() {
        for (host, fault) in std::mem::take(&mut broken.cut) {
            history.record(Event::Heal {
                fault,
                nodes: vec![host],
            });
        }
    }
    for record in lab.state().nodes {
        let host = record.name.as_str().to_owned();
        let healed = match lab.process_state(&host) {
            Ok(ProcessState::Frozen) => lab.thaw(&host).await.is_ok(),
            Ok(ProcessState::Stopped) => lab.restart(&host).await.is_ok(),
            _ => true,
        };
        if !healed {
            continue;
        }
        for map in [&mut broken.killed, &mut broken.frozen] {
            if let Some(fault) = map.remove(&host) {
                history.record(Event::Heal {
                    fault,
                    nodes: vec![host.clone()],
                });
            }
        }
    }
    // Give healed nodes time to come back before judging: a leader, no node in state
    // unknown (as after an election), every raft member Ready, for up to a minute.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = Instant::now();
    let mut table = rows(lab).await;
    while settled.elapsed() < Duration::from_secs(60)
        && (table.is_empty()
            || table
                .iter()
                .any(|r| r.state == "unknown" || (r.is_member() && r.state != "ready")))
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
        table = rows(lab).await;
    }
    if table.is_empty() {
        history.record(Event::FaultSkipped {
            fault: "final-repair".into(),
            why: "no manager answered with a leader: nothing repaired".into(),
        });
        return;
    }
    repair(lab, history, &table).await;
}

/// What an operator does about hosts whose own daemon says they are out of the swarm
/// (`inactive`: removed while dead; `error`: a promotion that never joined, the
/// join-address trap): rebuilt as workers, joined through a live manager, and their
/// stranded entries removed — the fix `promotion-failed` gives. A host whose daemon says
/// it is in the swarm is never touched.
pub(super) async fn repair(lab: &Lab, history: &History, table: &[Row]) {
    for record in lab.state().nodes {
        let host = record.name.as_str().to_owned();
        let Ok(client) = lab.client(&host).await else {
            continue;
        };
        let state = match client.info().await {
            Ok(info) => info
                .swarm
                .and_then(|s| s.local_node_state)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            Err(_) => continue,
        };
        // `inactive`: removed (or left); `error`: a promotion that never joined.
        if state != "inactive" && state != "error" {
            continue;
        }
        let stranded: Vec<String> = table
            .iter()
            .filter(|r| r.hostname == host && !r.is_member() && r.state != "ready")
            .map(|r| r.id.clone())
            .collect();
        history.record(Event::Operator {
            detail: format!(
                "{host}'s daemon is {state} in the swarm: rebuilt as a worker{}",
                if stranded.is_empty() {
                    String::new()
                } else {
                    format!(", its stranded entries {stranded:?} removed")
                }
            ),
            nodes: vec![host.clone()],
        });
        if let Err(e) = lab.rebuild(&host, Role::Worker).await {
            tracing::warn!(%host, error = %e, "Final repair: rebuild failed");
        }
        if let Ok((client, _)) = lab.manager_client().await {
            for id in stranded {
                let options = bollard::query_parameters::DeleteNodeOptions { force: true };
                if let Err(e) = client.delete_node(&id, Some(options)).await {
                    tracing::warn!(%id, error = %e, "Final repair: node rm failed");
                }
            }
        }
    }
}
