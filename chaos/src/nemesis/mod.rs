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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListNodesOptions;
use tokio::time::Instant;

use crate::error::{LabError, Result};
use crate::names::LabName;
use crate::{Lab, LabSpec, ProcessState, Role};
use history::{Event, History, Row};
use schedule::{Clocks, Episode, Fault, Target};
use warden::WardenProcess;

/// swarm-warden's policy in a campaign: the field's rules on short clocks.
const DEAD_AFTER: Duration = Duration::from_secs(20);
const LEADER_SETTLE: Duration = Duration::from_secs(15);
const STABILIZATION: Duration = Duration::from_secs(5);
const RESYNC: Duration = Duration::from_secs(5);
const DESIRED: usize = 3;
/// How long after its manager is lost Swarm would have rescheduled swarm-warden's task
/// onto another manager (the node must be seen Down first).
const RESCHEDULE_AFTER: Duration = Duration::from_secs(15);

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
    /// Where labs live; the history is kept there as `<lab>.history.jsonl` (the lab's own
    /// folder goes with the lab).
    pub root: PathBuf,
}

/// How a campaign ended.
#[derive(Debug)]
pub struct Outcome {
    /// The history file.
    pub history: PathBuf,
    /// What the checker found (also when the campaign itself failed).
    pub report: check::Report,
    /// The schedule that was drawn.
    pub schedule: Vec<Episode>,
    /// Why the campaign could not run to its end, if it could not.
    pub error: Option<String>,
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

/// What the nemesis has broken and not yet healed: host -> the fault's name.
#[derive(Debug, Default)]
struct Broken {
    killed: BTreeMap<String, String>,
    frozen: BTreeMap<String, String>,
    /// The hosts cut off by the current partition.
    cut: BTreeMap<String, String>,
}

impl Broken {
    fn contains(&self, host: &str) -> bool {
        self.killed.contains_key(host)
            || self.frozen.contains_key(host)
            || self.cut.contains_key(host)
    }
}

/// swarm-warden as the campaign runs it: at most one process, and where it points.
struct Warden<'a> {
    process: Option<WardenProcess>,
    on: String,
    spec: &'a NemesisSpec,
    lab: &'a Lab,
    policy: &'a Path,
    raw_log: &'a Path,
    history: &'a History,
}

impl Warden<'_> {
    /// Stops the running one (if any) and starts one against `on`.
    async fn restart(&mut self, on: &str, crash: bool, clock_offset_s: i64) -> Result<()> {
        if let Some(w) = self.process.take() {
            w.stop(crash, self.history).await;
        }
        if clock_offset_s != 0 && warden::find_libfaketime().is_none() {
            self.history.record(Event::FaultSkipped {
                fault: "clock-shift".into(),
                why: "libfaketime not found (Debian's faketime package): the clock is not shifted"
                    .into(),
            });
        }
        self.process = Some(WardenProcess::start(
            self.lab,
            &self.spec.warden,
            self.policy,
            on,
            clock_offset_s,
            self.history,
            self.raw_log,
        )?);
        self.on = on.to_owned();
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(w) = self.process.take() {
            w.stop(false, self.history).await;
        }
    }
}

/// Runs a campaign: lab up, swarm-warden on, faults, final heal, recovery, checker, lab
/// down. The lab is torn down even when the campaign fails; the history stays and is
/// checked either way.
pub async fn run(spec: &NemesisSpec) -> Result<Outcome> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or_default();
    let name = LabName::new(&format!("nem{}-{stamp}", spec.seed % 10_000))?;
    let mut lab_spec = LabSpec::new(spec.managers, spec.workers).named(name.clone());
    lab_spec.root = spec.root.clone();
    let lab = Arc::new(Lab::start(lab_spec).await?);
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
    let teardown = match Arc::try_unwrap(lab) {
        Ok(lab) => lab.teardown(),
        Err(_) => Err(LabError::Usage("the lab is still shared".into())),
    };
    let entries = history::read(&history_path)?;
    let error = match (result, teardown) {
        (Err(e), _) => Some(format!("campaign: {e}")),
        (Ok(()), Err(e)) => Some(format!("teardown: {e}")),
        (Ok(()), Ok(())) => None,
    };
    Ok(Outcome {
        history: history_path,
        report: check::check(&entries),
        schedule,
        error,
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
    let mut warden = Warden {
        process: None,
        on: String::new(),
        spec,
        lab,
        policy,
        raw_log,
        history,
    };
    warden.restart("m1", false, 0).await?;
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
            match pick(&table, Target::Manager(manager), &broken) {
                Some(on) => warden.restart(&on, crash, clock_offset_s).await?,
                None => history.record(Event::FaultSkipped {
                    fault: episode.fault.name().into(),
                    why: "no healthy manager to point swarm-warden at".into(),
                }),
            }
            continue;
        }
        if let Err(e) = apply(lab, history, &mut broken, &mut warden, episode, &table).await {
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
    let live = |host: &str| {
        table
            .iter()
            .any(|r| r.hostname == host && r.is_member() && r.state == "ready")
    };
    if !live(&warden.on) {
        if let Some(on) = pick(&table, Target::Manager(0), &broken) {
            warden.restart(&on, false, 0).await?;
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
    // An operator keeps repairing what swarm-warden reports (a promotion that never
    // joined leaves its host in error) every 20 s meanwhile.
    let healed = Instant::now();
    let mut repaired = Instant::now();
    while healed.elapsed() < bound {
        let table = rows(lab).await;
        if check::restored(&table, DESIRED) {
            // A little longer, so the tables show it settled.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
        if repaired.elapsed() >= Duration::from_secs(20) && !table.is_empty() {
            repair(lab, history, &table).await;
            repaired = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    warden.stop().await;
    Ok(())
}

/// The node table every second, into the history. Every node's API is asked: a manager
/// cut off in a minority may still answer as leader with a stale list, so a view that
/// shows a majority of the raft reachable is preferred.
async fn poll_tables(lab: Arc<Lab>, history: History) {
    loop {
        // Concurrently: a node cut off or frozen takes its whole timeout to fail.
        let asks = lab.state().nodes.into_iter().map(|record| {
            let lab = Arc::clone(&lab);
            async move {
                let host = record.name.as_str().to_owned();
                let client = lab.client(&host).await.ok()?;
                let listed = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.list_nodes(None::<ListNodesOptions>),
                )
                .await;
                let nodes = listed.ok()?.ok()?;
                let table = crate::NodeTable::new(&nodes);
                Some((host, table.rows.iter().map(row).collect::<Vec<Row>>()))
            }
        });
        let mut views: Vec<(String, Vec<Row>)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let best = views
            .iter()
            .position(|(_, rows)| check::shows_majority(rows))
            .or(if views.is_empty() { None } else { Some(0) });
        match best {
            Some(i) => {
                let (from, rows) = views.swap_remove(i);
                history.record(Event::Table { rows, from });
            }
            None => history.record(Event::NoLeader),
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

/// Holds a fault for `hold`. When the fault took swarm-warden's own manager (killed,
/// frozen, cut off alone), swarm-warden is moved to a live manager after
/// [`RESCHEDULE_AFTER`], as Swarm would reschedule its task; a manager split keeps it
/// where it is (swarm-warden in a minority is a case of its own).
async fn hold(
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
async fn apply(
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

/// Heals every fault (whatever is still broken, and every node whose processes are not
/// running), then [`repair`]s what an operator would. Nothing is repaired without a
/// leader.
async fn final_heal(lab: &Lab, history: &History, broken: &mut Broken) {
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
async fn repair(lab: &Lab, history: &History, table: &[Row]) {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
