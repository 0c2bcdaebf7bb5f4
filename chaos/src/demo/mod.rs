//! `swarm-chaos demo`: the incident of the talk, replayed twice on real lab swarms — a
//! dead manager left in a 4-manager raft, then a second loss — first without swarm-warden
//! (the swarm loses its leader), then with it (it never does). A live timeline, then the
//! outcomes side by side.

mod narrate;
mod warden;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::{Lab, LabSpec};
use crate::names::LabName;
use crate::progress::Progress;
use crate::table::NodeTable;
use crate::timeline::MarkKind;
use narrate::{Narrator, Watcher};
use warden::WardenProcess;

/// The demo's policy: the defaults, with clocks short enough for a demo.
const DEMO_POLICY: &str = "managers:\n  desired: 3\n  dead_after: 15s\n  stabilization: 5s\n  leader_settle: 10s\ncontroller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n";
/// How long the demo waits for any one step before calling it a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(150);
/// Steps of both replays the progress bar counts: lab up, each kill, each state waited
/// for, the end (quorum lost or restored) and the teardown (6 without, 7 with).
const DEMO_STEPS: u64 = 13;

/// What the demo needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The swarm-warden binary.
    pub warden: PathBuf,
    /// Where labs live.
    pub root: PathBuf,
    /// Where to write the timeline page (both runs side by side), if anywhere.
    pub html: Option<PathBuf>,
    /// Where to write the timeline as JSON (`swarm-chaos timeline` renders it again).
    pub timeline_json: Option<PathBuf>,
}

/// Finds the swarm-warden binary: next to this executable (cargo puts both in
/// `target/<profile>/`), else on PATH.
pub fn find_warden() -> Option<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("swarm-warden")));
    sibling.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("swarm-warden"))
                .find(|p| p.is_file())
        })
    })
}

/// How one replay ended.
#[derive(Debug, Clone, Default)]
struct Outcome {
    managers: String,
    leader: String,
    fault_tolerance: String,
    actions: String,
    duration: Duration,
}

/// Runs both replays and prints the comparison.
pub async fn run(options: &DemoOptions) -> Result<()> {
    println!(
        "The incident: a dead manager is left in a 4-manager raft; later a second manager dies.\n"
    );
    let progress = Arc::new(Progress::new("demo", DEMO_STEPS));
    progress.tick_steadily(Duration::from_millis(250));
    progress.suspend(|| println!("== 1. Without swarm-warden"));
    let (without, run_without) = replay(options, false, &progress).await?;
    progress.suspend(|| {
        println!("\n== 2. With swarm-warden (dead_after 15s for the demo; default 5m)")
    });
    let (with, run_with) = replay(options, true, &progress).await?;
    progress.finish();
    let timeline = crate::timeline::Timeline {
        title: "The talk's incident, replayed on real lab swarms".into(),
        summary: "A 4-manager + 2-worker swarm. A manager dies and, in the talk, stays in the raft; later a second manager dies. Left: without swarm-warden the swarm loses its quorum. Right: swarm-warden removes each dead manager and promotes a worker, and the swarm keeps a leader.".into(),
        runs: vec![run_without, run_with],
    };
    write_timeline(options, &timeline)?;
    println!("\n== Outcome");
    let rows = [
        ("managers at the end", &without.managers, &with.managers),
        ("raft leader", &without.leader, &with.leader),
        (
            "fault tolerance",
            &without.fault_tolerance,
            &with.fault_tolerance,
        ),
        ("swarm-warden actions", &without.actions, &with.actions),
    ];
    println!(
        "{:<22} {:<28} with swarm-warden",
        "", "without swarm-warden"
    );
    for (label, a, b) in rows {
        println!("{label:<22} {a:<28} {b}");
    }
    let took = |o: &Outcome| format!("{:.0}s", o.duration.as_secs_f64());
    println!(
        "{:<22} {:<28} {}",
        "replay took",
        took(&without),
        took(&with)
    );
    Ok(())
}

/// Writes the page and the JSON the options ask for.
fn write_timeline(options: &DemoOptions, timeline: &crate::timeline::Timeline) -> Result<()> {
    if let Some(path) = &options.timeline_json {
        let json = serde_json::to_string_pretty(timeline)
            .map_err(|e| LabError::Usage(format!("timeline JSON: {e}")))?;
        std::fs::write(path, json).map_err(LabError::io("write", path))?;
        println!("Timeline (JSON): {}", path.display());
    }
    if let Some(path) = &options.html {
        std::fs::write(path, crate::timeline::html::render(timeline))
            .map_err(LabError::io("write", path))?;
        println!("Timeline page: {}", path.display());
    }
    Ok(())
}

async fn replay(
    options: &DemoOptions,
    with_warden: bool,
    progress: &Arc<Progress>,
) -> Result<(Outcome, crate::timeline::Run)> {
    let started = Instant::now();
    let title = if with_warden {
        "With swarm-warden"
    } else {
        "Without swarm-warden"
    };
    let timeline = Narrator::new(title, progress.clone());
    timeline.step("starting a 4 + 2 lab");
    let mut spec = LabSpec::new(4, 2).named(LabName::unique("demo"));
    spec.root = options.root.clone();
    let lab = Lab::start(spec).await?;
    timeline.say(&format!(
        "lab {} up: 4 managers (m1-m4) + 2 workers (w1, w2)",
        lab.name()
    ));
    timeline.done_step();
    let mut watcher = Watcher::new(&lab).await?;
    timeline.sample(&watcher.table);
    let mut warden = if with_warden {
        let w = WardenProcess::start(&lab, &options.warden)?;
        timeline.say("swarm-warden started against m1");
        timeline.mark(
            MarkKind::Note,
            Some("m1"),
            "swarm-warden started",
            "run against m1's Docker API, dead_after 15s",
        );
        Some(w)
    } else {
        None
    };

    let first = pick_follower(&watcher.table, &[])?;
    lab.kill(&first).await?;
    timeline.say(&format!("kill {first} (node loss)"));
    timeline.mark(
        MarkKind::Fault,
        Some(&first),
        format!("kill {first}"),
        "node loss: every process of the node dies at once",
    );
    timeline.done_step();
    watcher
        .until(
            &lab,
            &timeline,
            warden.as_mut(),
            &format!("{first} seen Down"),
            |t| t.by_hostname(&first).any(|r| r.is_down()),
        )
        .await?;
    if with_warden {
        watcher
            .until(
                &lab,
                &timeline,
                warden.as_mut(),
                &format!("{first} removed"),
                |t| t.by_hostname(&first).next().is_none(),
            )
            .await?;
    } else {
        // What happened in the talk: the dead manager stays, the swarm runs on 3 of 4.
        tokio::time::sleep(Duration::from_secs(5)).await;
        timeline.say(&format!(
            "{first} stays in the raft: 3 of 4 managers reachable, fault tolerance 0"
        ));
    }

    let second = pick_follower(&watcher.table, &[&first])?;
    lab.kill(&second).await?;
    timeline.say(&format!("kill {second} (the second loss)"));
    timeline.mark(
        MarkKind::Fault,
        Some(&second),
        format!("kill {second}"),
        "the second loss",
    );
    timeline.done_step();
    let outcome = if with_warden {
        let table = watcher
            .until(
                &lab,
                &timeline,
                warden.as_mut(),
                "3 reachable managers again",
                |t| {
                    t.by_hostname(&second).next().is_none()
                        && t.managers().count() == 3
                        && t.managers().all(|m| m.is_reachable_manager() || m.leader)
                },
            )
            .await?;
        // The lab may see the last change before swarm-warden's own wait does.
        if let Some(w) = warden.as_mut() {
            w.settle(&timeline).await;
        }
        let done = warden.as_ref().map(|w| w.done.clone()).unwrap_or_default();
        let count = |kind: &str| done.iter().filter(|a| a.starts_with(kind)).count();
        let members = table.managers().count();
        let reachable = table
            .managers()
            .filter(|m| m.is_reachable_manager() || m.leader)
            .count();
        Outcome {
            managers: format!("{members} ({reachable} reachable)"),
            leader: table
                .leader()
                .map(|l| l.hostname.clone())
                .unwrap_or_default(),
            fault_tolerance: (reachable as i64 - (members / 2 + 1) as i64).to_string(),
            actions: format!(
                "{} removal(s), {} promotion(s)",
                count("remove-dead-manager"),
                count("promote-worker")
            ),
            duration: Duration::ZERO,
        }
    } else {
        let until = Instant::now() + STEP_TIMEOUT;
        loop {
            let answer = lab.node_table().await;
            if let Ok(table) = &answer {
                timeline.sample(table);
            }
            if let Err(e) = answer {
                let first_line = e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(110)
                    .collect::<String>();
                timeline.say(&format!("NO LEADER: {first_line}"));
                timeline.no_leader();
                timeline.mark(MarkKind::Note, None, "quorum lost: no leader", first_line);
                timeline.done_step();
                break;
            }
            if Instant::now() > until {
                return Err(LabError::Timeout {
                    what: "the swarm to lose its leader".into(),
                    after: STEP_TIMEOUT,
                    last: watcher.table.to_string(),
                });
            }
            timeline.still_waiting("the swarm to lose its leader");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Outcome {
            managers: "4 (2 reachable)".into(),
            leader: "none: quorum lost".into(),
            fault_tolerance: "-1 (no quorum)".into(),
            actions: "-".into(),
            duration: Duration::ZERO,
        }
    };
    if let Some(w) = warden.take() {
        w.stop();
        timeline.say("swarm-warden stopped");
    }
    timeline.step("tearing the lab down");
    lab.teardown()?;
    timeline.say("lab torn down");
    timeline.done_step();
    let outcome = Outcome {
        duration: started.elapsed(),
        ..outcome
    };
    let mut run = timeline.finish();
    for (label, value) in [
        ("managers at the end", &outcome.managers),
        ("raft leader", &outcome.leader),
        ("fault tolerance", &outcome.fault_tolerance),
        ("swarm-warden actions", &outcome.actions),
    ] {
        run.outcome.push((label.to_owned(), value.clone()));
    }
    Ok((outcome, run))
}

fn pick_follower(table: &NodeTable, except: &[&str]) -> Result<String> {
    table
        .managers()
        .filter(|m| !m.leader && m.hostname != "m1" && !except.contains(&m.hostname.as_str()))
        .map(|m| m.hostname.clone())
        .next()
        .ok_or_else(|| LabError::Usage(format!("no follower manager to kill:\n{table}")))
}
