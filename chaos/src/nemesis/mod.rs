//! A nemesis in the spirit of Jepsen: a real lab swarm, swarm-warden running against it
//! (restarted now and then, sometimes against another manager, sometimes with a shifted
//! clock), a seeded schedule of faults, a history of everything, a final heal, and a
//! checker that judges swarm-warden's membership changes against the ground truth.
//!
//! Same seed, same fault schedule; the swarm's answers (elections, timings) differ from
//! run to run, which is the point: the invariants must hold whatever they are.

pub mod check;
mod faults;
pub mod history;
pub mod picture;
mod poll;
mod repair;
pub mod schedule;
pub mod warden;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{LabError, Result};
use crate::names::LabName;
use crate::{Lab, LabSpec};
use faults::{apply, pick, Broken};
use history::{Event, History};
use poll::{poll_tables, rows};
use repair::{final_heal, repair};
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
pub(super) const RESCHEDULE_AFTER: Duration = Duration::from_secs(15);

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

/// swarm-warden as the campaign runs it: at most one process, and where it points.
pub(super) struct Warden<'a> {
    process: Option<WardenProcess>,
    pub(super) on: String,
    spec: &'a NemesisSpec,
    lab: &'a Lab,
    policy: &'a Path,
    raw_log: &'a Path,
    history: &'a History,
}

impl Warden<'_> {
    /// Stops the running one (if any) and starts one against `on`.
    pub(super) async fn restart(
        &mut self,
        on: &str,
        crash: bool,
        clock_offset_s: i64,
    ) -> Result<()> {
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
    let faults = Clock::start("nemesis: faults", spec.duration);
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
    drop(faults);
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
    let recovery = Clock::start("nemesis: recovery (bound)", bound);
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
    drop(recovery);
    warden.stop().await;
    Ok(())
}

/// A phase of known length shown as progress in seconds, moved on every second by a task
/// of its own (the campaign sleeps between episodes).
struct Clock {
    progress: Arc<crate::progress::Progress>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Clock {
    fn start(what: &str, length: Duration) -> Self {
        let progress = Arc::new(crate::progress::Progress::new(what, length.as_secs()));
        let started = Instant::now();
        let shown = Arc::clone(&progress);
        let ticker = tokio::spawn(async move {
            loop {
                shown.set(started.elapsed().as_secs());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { progress, ticker }
    }
}

/// Ends the phase: also when the campaign returns early with an error.
impl Drop for Clock {
    fn drop(&mut self) {
        // A dropped JoinHandle leaves its task running: abort it.
        self.ticker.abort();
        self.progress.finish();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
