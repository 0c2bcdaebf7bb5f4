//! A nemesis in the spirit of Jepsen: a real lab swarm, swarm-warden running against it
//! (restarted now and then, sometimes against another manager, sometimes with a shifted
//! clock), a seeded schedule of faults, a history of everything, a final heal, and a
//! checker that judges swarm-warden's membership changes against the ground truth.
//!
//! Same seed, same fault schedule; the swarm's answers (elections, timings) differ from
//! run to run, which is the point: the invariants must hold whatever they are.

pub mod check;
pub mod history;
pub mod schedule;
pub mod warden;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{LabError, Result};
use crate::names::LabName;
use crate::{Lab, LabSpec, Role};
use history::{Event, History, Row};
use schedule::{Clocks, Episode, Fault, Target};
use warden::WardenProcess;

/// swarm-warden's policy in a campaign: the field's rules on short clocks.
const DEAD_AFTER: Duration = Duration::from_secs(20);
const LEADER_SETTLE: Duration = Duration::from_secs(15);
const STABILIZATION: Duration = Duration::from_secs(5);
const RESYNC: Duration = Duration::from_secs(5);
const DESIRED: usize = 3;

fn policy_yaml() -> String {
    format!(
        "managers:\n  desired: {DESIRED}\n  dead_after: {}s\n  stabilization: {}s\n  leader_settle: {}s\n  convergence_timeout: 30s\ncontroller:\n  resync: {}s\n  backoff_min: 1s\n  backoff_max: 10s\n",
        DEAD_AFTER.as_secs(),
        STABILIZATION.as_secs(),
        LEADER_SETTLE.as_secs(),
        RESYNC.as_secs()
    )
}

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct NemesisSpec {
    /// Seeds the fault schedule.
    pub seed: u64,
    /// How long faults are applied (the final heal and the wait for recovery come after).
    pub duration: Duration,
    /// Managers at the start (m1..).
    pub managers: usize,
    /// Workers at the start (w1..).
    pub workers: usize,
    /// The swarm-warden binary.
    pub warden: PathBuf,
    /// Where labs live; the history is kept there as `<lab>.history.jsonl`.
    pub root: PathBuf,
}

/// How a campaign ended.
#[derive(Debug)]
pub struct Outcome {
    /// The history file.
    pub history: PathBuf,
    /// What the checker found.
    pub report: check::Report,
    /// The schedule that was drawn.
    pub schedule: Vec<Episode>,
}

/// The schedule a seed gives (what `run` applies).
pub fn schedule_for(seed: u64, duration: Duration) -> Vec<Episode> {
    schedule::schedule(
        seed,
        duration,
        Clocks {
            dead_after: DEAD_AFTER,
        },
    )
}

/// What the nemesis has broken and not yet healed.
#[derive(Debug, Default)]
struct Broken {
    killed: BTreeSet<String>,
    frozen: BTreeSet<String>,
    /// The hosts cut off by the current partition.
    cut: BTreeSet<String>,
}

impl Broken {
    fn contains(&self, host: &str) -> bool {
        self.killed.contains(host) || self.frozen.contains(host) || self.cut.contains(host)
    }
}

/// Runs a campaign: lab up, swarm-warden on, faults, final heal, recovery, checker, lab
/// down. The lab is torn down even when the campaign fails; the history stays.
pub async fn run(spec: &NemesisSpec) -> Result<Outcome> {
    let name = LabName::new(&format!(
        "nem{}-{}",
        spec.seed % 10_000,
        std::process::id() % 100_000
    ))?;
    let lab =
        Arc::new(Lab::start(LabSpec::new(spec.managers, spec.workers).named(name.clone())).await?);
    let history_path = spec.root.join(format!("{name}.history.jsonl"));
    let history = History::create(&history_path)?;
    let schedule = schedule_for(spec.seed, spec.duration);
    history.record(Event::Start {
        seed: spec.seed,
        managers: spec.managers,
        workers: spec.workers,
        desired: DESIRED,
        dead_after_ms: millis(DEAD_AFTER),
        leader_settle_ms: millis(LEADER_SETTLE),
        stabilization_ms: millis(STABILIZATION),
        resync_ms: millis(RESYNC),
        schedule: serde_json::to_value(&schedule).unwrap_or_default(),
    });
    let policy = lab.paths().dir().join("nemesis-policy.yml");
    std::fs::write(&policy, policy_yaml()).map_err(LabError::io("write", &policy))?;
    let raw_log = spec.root.join(format!("{name}.swarm-warden.log"));

    let poller = tokio::spawn(poll_tables(Arc::clone(&lab), history.clone()));
    let result = campaign(spec, &lab, &history, &policy, &raw_log, &schedule).await;
    history.record(Event::End);
    poller.abort();
    let _ = poller.await;
    let lab =
        Arc::try_unwrap(lab).map_err(|_| LabError::Usage("the lab is still shared".into()))?;
    lab.teardown()?;
    result?;
    let entries = history::read(&history_path)?;
    Ok(Outcome {
        history: history_path,
        report: check::check(&entries),
        schedule,
    })
}

async fn campaign(
    spec: &NemesisSpec,
    lab: &Lab,
    history: &History,
    policy: &Path,
    raw_log: &Path,
    schedule: &[Episode],
) -> Result<()> {
    let start = Instant::now();
    let mut warden = Some(WardenProcess::start(
        lab,
        &spec.warden,
        policy,
        "m1",
        0,
        history,
        raw_log,
    )?);
    let mut warden_on = "m1".to_owned();
    let mut broken = Broken::default();
    for episode in schedule {
        tokio::time::sleep_until(start + episode.at).await;
        let table = rows(lab).await;
        if let Fault::WardenRestart {
            manager,
            crash,
            clock_offset_s,
        } = episode.fault
        {
            let Some(on) = pick(&table, Target::Manager(manager), &broken) else {
                history.record(Event::FaultSkipped {
                    fault: episode.fault.name().into(),
                    why: "no healthy manager to point swarm-warden at".into(),
                });
                continue;
            };
            if let Some(w) = warden.take() {
                w.stop(crash, history).await;
            }
            warden = Some(WardenProcess::start(
                lab,
                &spec.warden,
                policy,
                &on,
                clock_offset_s,
                history,
                raw_log,
            )?);
            warden_on = on;
            continue;
        }
        if let Err(e) = apply(lab, history, &mut broken, episode, &table).await {
            history.record(Event::FaultSkipped {
                fault: episode.fault.name().into(),
                why: e.to_string(),
            });
        }
    }
    tokio::time::sleep_until(start + spec.duration).await;
    final_heal(lab, history, &mut broken).await;
    // swarm-warden runs as a service pinned to managers: Swarm would reschedule it onto a
    // live manager; the nemesis does the same when its manager no longer is one.
    let table = rows(lab).await;
    let healthy = |host: &str| {
        table
            .iter()
            .any(|r| r.hostname == host && r.is_member() && r.state == "ready")
    };
    if !healthy(&warden_on) {
        if let Some(on) = pick(&table, Target::Manager(0), &broken) {
            if let Some(w) = warden.take() {
                w.stop(false, history).await;
            }
            warden = Some(WardenProcess::start(
                lab,
                &spec.warden,
                policy,
                &on,
                0,
                history,
                raw_log,
            )?);
        }
    }
    history.record(Event::FinalHeal);
    // swarm-warden keeps running until the raft is restored (managers.desired members,
    // all Ready and reachable), or the checker's bound has passed.
    let bound = Duration::from_millis(check::restore_bound_ms(
        DESIRED,
        millis(DEAD_AFTER),
        millis(LEADER_SETTLE),
        millis(STABILIZATION),
    ));
    let healed = Instant::now();
    while healed.elapsed() < bound {
        if check::restored(&rows(lab).await, DESIRED) {
            // A little longer, so the tables show it settled.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if let Some(w) = warden.take() {
        w.stop(false, history).await;
    }
    Ok(())
}

/// The node table every second, into the history.
async fn poll_tables(lab: Arc<Lab>, history: History) {
    loop {
        match lab.node_table().await {
            Ok(t) => history.record(Event::Table {
                rows: t.rows.iter().map(row).collect(),
            }),
            Err(_) => history.record(Event::NoLeader),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn row(r: &crate::NodeRow) -> Row {
    Row {
        id: r.id.clone(),
        hostname: r.hostname.clone(),
        role: r.role.clone(),
        state: r.state.clone(),
        reachability: r.reachability.clone(),
        leader: r.leader,
    }
}

async fn rows(lab: &Lab) -> Vec<Row> {
    lab.node_table()
        .await
        .map(|t| t.rows.iter().map(row).collect())
        .unwrap_or_default()
}

/// The hostname a target names now: among the raft members (or the Ready workers) the
/// nemesis has not broken, sorted by hostname, the k-th (modulo their number).
fn pick(table: &[Row], target: Target, broken: &Broken) -> Option<String> {
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

/// Applies one episode's fault, holds it, heals it.
async fn apply(
    lab: &Lab,
    history: &History,
    broken: &mut Broken,
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
    let heal = |nodes: Vec<String>| {
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
                    broken.killed.insert(host.clone());
                }
                Fault::Freeze { .. } => {
                    lab.freeze(&host).await?;
                    broken.frozen.insert(host.clone());
                }
                _ => {
                    lab.partition(&host).await?;
                    broken.cut.insert(host.clone());
                }
            }
            fault(
                vec![host.clone()],
                format!("for {}s", episode.hold.as_secs()),
            );
            tokio::time::sleep(episode.hold).await;
            match &episode.fault {
                Fault::Kill { .. } => {
                    broken.killed.remove(&host);
                    lab.restart(&host).await?;
                }
                Fault::Freeze { .. } => {
                    broken.frozen.remove(&host);
                    lab.thaw(&host).await?;
                }
                _ => {
                    broken.cut.clear();
                    lab.heal().await?;
                }
            }
            heal(vec![host]);
        }
        Fault::Restart { target } => {
            let host = pick(table, *target, broken).ok_or_else(|| skipped("no healthy target"))?;
            fault(vec![host.clone()], "stop and start".into());
            let result = lab.restart(&host).await;
            heal(vec![host]);
            result?;
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
            broken.cut.extend(minority.iter().cloned());
            fault(
                minority.clone(),
                format!(
                    "managers {} cut off from the rest for {}s",
                    minority.join(","),
                    episode.hold.as_secs()
                ),
            );
            tokio::time::sleep(episode.hold).await;
            broken.cut.clear();
            lab.heal().await?;
            heal(minority);
        }
        Fault::Rebuild { target } => {
            let host = pick(table, *target, broken).ok_or_else(|| skipped("no healthy target"))?;
            let role = if table.iter().any(|r| r.hostname == host && r.is_member()) {
                Role::Manager
            } else {
                Role::Worker
            };
            fault(vec![host.clone()], format!("rebuilt, rejoins as {role}"));
            let result = lab.rebuild(&host, role).await;
            heal(vec![host]);
            result?;
        }
        Fault::Join { manager } => {
            let host = format!("n{}", lab.state().nodes.len() + 1);
            let role = if *manager {
                Role::Manager
            } else {
                Role::Worker
            };
            fault(vec![host.clone()], format!("a new host joins as {role}"));
            let result = lab.join(&host, role).await;
            heal(vec![host]);
            result?;
        }
        Fault::WardenRestart { .. } => {}
    }
    Ok(())
}

/// Heals every fault, then repairs what an operator would: a host whose node is no longer
/// in the swarm (removed while dead), or whose promotion never joined the raft, is
/// rebuilt as a worker, and the old entry of a failed promotion removed.
async fn final_heal(lab: &Lab, history: &History, broken: &mut Broken) {
    if !broken.cut.is_empty() {
        let _ = lab.heal().await;
        history.record(Event::Heal {
            fault: "isolate".into(),
            nodes: std::mem::take(&mut broken.cut).into_iter().collect(),
        });
    }
    for host in std::mem::take(&mut broken.frozen) {
        let _ = lab.thaw(&host).await;
        history.record(Event::Heal {
            fault: "freeze".into(),
            nodes: vec![host],
        });
    }
    for host in std::mem::take(&mut broken.killed) {
        let _ = lab.restart(&host).await;
        history.record(Event::Heal {
            fault: "kill".into(),
            nodes: vec![host],
        });
    }
    // Give healed nodes time to come back before judging what needs repair: a leader, no
    // node in state unknown (as after an election), every raft member Ready, for up to a
    // minute. A member still Down after that is left to swarm-warden.
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
    for record in lab.state().nodes {
        let host = record.name.as_str().to_owned();
        let entries: Vec<&Row> = table.iter().filter(|r| r.hostname == host).collect();
        // Serving, or still a raft member (a manager is never wiped by the repair: its
        // removal, if it is dead, is swarm-warden's job).
        let keep = entries
            .iter()
            .any(|r| r.is_member() || (r.state == "ready" && r.role == "worker"));
        if keep {
            continue;
        }
        let stranded: Vec<String> = entries
            .iter()
            .filter(|r| r.role == "manager" && !r.is_member())
            .map(|r| r.id.clone())
            .collect();
        history.record(Event::Operator {
            detail: format!(
                "{host} is not serving (entries {:?}): rebuilt as a worker{}",
                entries
                    .iter()
                    .map(|r| format!("{} {} {}", r.id, r.role, r.state))
                    .collect::<Vec<_>>(),
                if stranded.is_empty() {
                    String::new()
                } else {
                    format!(", stranded entries {stranded:?} removed")
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
