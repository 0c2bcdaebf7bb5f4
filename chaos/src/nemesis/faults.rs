//! Applying, holding and healing one episode's fault on the lab.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::history::{Event, History, Row};
use super::poll::rows;
use super::schedule::{Episode, Fault, Target};
use super::{Warden, RESCHEDULE_AFTER};
use crate::error::{LabError, Result};
use crate::{Lab, Role};

/// What the nemesis has broken and not yet healed: host -> the fault's name.
#[derive(Debug, Default)]
pub(super) struct Broken {
    pub(super) killed: BTreeMap<String, String>,
    pub(super) frozen: BTreeMap<String, String>,
    /// The hosts cut off by the current partition.
    pub(super) cut: BTreeMap<String, String>,
}

impl Broken {
    pub(super) fn contains(&self, host: &str) -> bool {
        self.killed.contains_key(host)
            || self.frozen.contains_key(host)
            || self.cut.contains_key(host)
    }
}

/// The hostname a target names now: among the raft members (or the Ready workers) the
/// nemesis has not broken, sorted by hostname, the k-th (modulo their number).
pub(super) fn pick(table: &[Row], target: Target, broken: &Broken) -> Option<String> {
    let (k, mut hosts): (usize, Vec<&str>) = match target {
        Target::Manager(k) => (
            k,
            table
                .iter()
                .filter(|r| r.is_member() && r.state == "ready")
                .map(|r| r.hostname.as_str())
                .collect(),
        ),
        Target::Worker(k) => (
            k,
            table
                .iter()
                .filter(|r| r.role == "worker" && r.state == "ready")
                .map(|r| r.hostname.as_str())
                .collect(),
        ),
    };
    hosts.retain(|h| !broken.contains(h));
    hosts.sort_unstable();
    hosts.dedup();
    (!hosts.is_empty()).then(|| hosts[k % hosts.len()].to_owned())
}

fn skipped(why: &str) -> LabError {
    LabError::Usage(why.to_owned())
}

/// Holds a fault for `hold`. When the fault took swarm-warden's own manager (killed,
/// frozen, cut off alone), swarm-warden is moved to a live manager after
/// [`RESCHEDULE_AFTER`], as Swarm would reschedule its task; a manager split keeps it
/// where it is (swarm-warden in a minority is a case of its own).
pub(super) async fn hold(
    lab: &Lab,
    warden: &mut Warden<'_>,
    broken: &Broken,
    host: Option<&str>,
    hold: Duration,
) {
    let begun = Instant::now();
    if host.is_some_and(|h| h == warden.on) && hold > RESCHEDULE_AFTER {
        tokio::time::sleep(RESCHEDULE_AFTER).await;
        if let Some(on) = pick(&rows(lab).await, Target::Manager(0), broken) {
            if let Err(e) = warden.restart(&on, true, 0).await {
                tracing::warn!(error = %e, "Could not move swarm-warden");
            }
        }
    }
    tokio::time::sleep(hold.saturating_sub(begun.elapsed())).await;
}

/// Applies one episode's fault, holds it, heals it. A heal is recorded only once done.
pub(super) async fn apply(
    lab: &Lab,
    history: &History,
    broken: &mut Broken,
    warden: &mut Warden<'_>,
    episode: &Episode,
    table: &[Row],
) -> Result<()> {
    let name = episode.fault.name().to_owned();
    let fault = |nodes: Vec<String>, detail: String| {
        history.record(Event::Fault {
            fault: name.clone(),
            nodes,
            detail,
        })
    };
    let healed = |nodes: Vec<String>| {
        history.record(Event::Heal {
            fault: name.clone(),
            nodes,
        })
    };
    match &episode.fault {
        Fault::Kill { target } | Fault::Freeze { target } | Fault::Isolate { target } => {
            let host = pick(table, *target, broken).ok_or_else(|| skipped("no healthy target"))?;
            match &episode.fault {
                Fault::Kill { .. } => {
                    lab.kill(&host).await?;
                    broken.killed.insert(host.clone(), name.clone());
                }
                Fault::Freeze { .. } => {
                    lab.freeze(&host).await?;
                    broken.frozen.insert(host.clone(), name.clone());
                }
                _ => {
                    lab.partition(&host).await?;
                    broken.cut.insert(host.clone(), name.clone());
                }
            }
            fault(
                vec![host.clone()],
                format!("for {}s", episode.hold.as_secs()),
            );
            hold(lab, warden, broken, Some(&host), episode.hold).await;
            match &episode.fault {
                Fault::Kill { .. } => {
                    lab.restart(&host).await?;
                    broken.killed.remove(&host);
                }
                Fault::Freeze { .. } => {
                    lab.thaw(&host).await?;
                    broken.frozen.remove(&host);
                }
                _ => {
                    lab.heal().await?;
                    broken.cut.clear();
                }
            }
            healed(vec![host]);
        }
        Fault::Restart { target } => {
            let host = pick(table, *target, broken).ok_or_else(|| skipped("no healthy target"))?;
            fault(vec![host.clone()], "stop and start".into());
            lab.restart(&host).await?;
            healed(vec![host]);
        }
        Fault::SplitManagers { offset } => {
            let mut managers: Vec<&str> = table
                .iter()
                .filter(|r| r.is_member() && r.state == "ready" && !broken.contains(&r.hostname))
                .map(|r| r.hostname.as_str())
                .collect();
            managers.sort_unstable();
            if managers.len() < 3 {
                return Err(skipped("fewer than 3 healthy managers to split"));
            }
            let turn = offset % managers.len();
            managers.rotate_left(turn);
            let minority: Vec<String> = managers[..(managers.len() - 1) / 2]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            lab.partition(&minority.join(",")).await?;
            for m in &minority {
                broken.cut.insert(m.clone(), name.clone());
            }
            fault(
                minority.clone(),
                format!(
                    "managers {} cut off from the rest for {}s",
                    minority.join(","),
                    episode.hold.as_secs()
                ),
            );
            hold(lab, warden, broken, None, episode.hold).await;
            lab.heal().await?;
            broken.cut.clear();
            healed(minority);
        }
        Fault::Rebuild { target } => {
            let host = pick(table, *target, broken).ok_or_else(|| skipped("no healthy target"))?;
            let role = if table.iter().any(|r| r.hostname == host && r.is_member()) {
                Role::Manager
            } else {
                Role::Worker
            };
            fault(vec![host.clone()], format!("rebuilt, rejoins as {role}"));
            lab.rebuild(&host, role).await?;
            healed(vec![host]);
        }
        Fault::Join { manager } => {
            let host = format!("n{}", lab.state().nodes.len() + 1);
            let role = if *manager {
                Role::Manager
            } else {
                Role::Worker
            };
            fault(vec![host.clone()], format!("a new host joins as {role}"));
            lab.join(&host, role).await?;
            healed(vec![host]);
        }
        Fault::WardenRestart { .. } => {}
    }
    Ok(())
}
