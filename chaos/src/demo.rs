//! `swarm-chaos demo`: the incident of the talk, replayed twice on real lab swarms — a
//! dead manager left in a 4-manager raft, then a second loss — first without swarm-warden
//! (the swarm loses its leader), then with it (it never does). A live timeline, then the
//! outcomes side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::{Lab, LabSpec};
use crate::names::LabName;
use crate::table::NodeTable;
use crate::timeline::{MarkKind, Recorder};
use std::sync::{Arc, Mutex};

use crate::progress::{Progress, LINE_EVERY};

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
    let timeline = Timeline::new(title, progress.clone());
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

/// Prints timestamped lines and records the run for the page.
struct Timeline {
    start: Instant,
    recorder: Mutex<Recorder>,
    progress: Arc<Progress>,
    /// When the last line was printed: off a terminal, a long wait prints a line every
    /// [`LINE_EVERY`] so a log shows the demo is alive.
    last_said: Mutex<Instant>,
}

impl Timeline {
    fn new(title: &str, progress: Arc<Progress>) -> Self {
        Self {
            start: Instant::now(),
            recorder: Mutex::new(Recorder::new(title)),
            progress,
            last_said: Mutex::new(Instant::now()),
        }
    }

    fn say(&self, what: &str) {
        let at = self.start.elapsed().as_secs_f64();
        self.progress.suspend(|| println!("[{at:>6.1}s] {what}"));
        if let Ok(mut last) = self.last_said.lock() {
            *last = Instant::now();
        }
    }

    /// Names the step now under way on the bar.
    fn step(&self, what: &str) {
        self.progress.set_step(what);
    }

    fn done_step(&self) {
        self.progress.inc();
    }

    /// Off a terminal, a line if nothing was printed for [`LINE_EVERY`].
    fn still_waiting(&self, what: &str) {
        if self.progress.is_drawn() {
            return;
        }
        let quiet = self
            .last_said
            .lock()
            .map(|last| last.elapsed() >= LINE_EVERY)
            .unwrap_or(false);
        if quiet {
            self.say(&format!("... still waiting for {what}"));
        }
    }

    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // Plain data: a panic elsewhere leaves nothing half-written worth refusing.
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sample(&self, table: &NodeTable) {
        self.recorder().sample(table);
    }

    fn no_leader(&self) {
        self.recorder().no_leader();
    }

    fn mark(
        &self,
        kind: MarkKind,
        node: Option<&str>,
        label: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.recorder().mark(kind, node, label, detail);
    }

    /// Prints and marks what swarm-warden did.
    fn warden(&self, events: Vec<WardenEvent>) {
        for e in events {
            self.say(&format!("swarm-warden: {}", e.line));
            let node = (!e.target.is_empty()).then_some(e.target.as_str());
            self.mark(e.kind, node, e.label, e.detail);
        }
    }

    fn finish(self) -> crate::timeline::Run {
        self.recorder
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .finish()
    }
}

/// Watches the node table and prints what changes.
struct Watcher {
    table: NodeTable,
}

impl Watcher {
    async fn new(lab: &Lab) -> Result<Self> {
        Ok(Self {
            table: lab.node_table().await?,
        })
    }

    async fn until(
        &mut self,
        lab: &Lab,
        timeline: &Timeline,
        mut warden: Option<&mut WardenProcess>,
        what: &str,
        done: impl Fn(&NodeTable) -> bool,
    ) -> Result<NodeTable> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        timeline.step(&format!("waiting for {what}"));
        loop {
            if let Some(w) = warden.as_deref_mut() {
                timeline.warden(w.new_actions());
            }
            if let Ok(table) = lab.node_table().await {
                timeline.sample(&table);
                for change in diff(&self.table, &table) {
                    timeline.say(&change);
                }
                self.table = table;
                if done(&self.table) {
                    timeline.done_step();
                    return Ok(self.table.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: what.to_owned(),
                    after: STEP_TIMEOUT,
                    last: self.table.to_string(),
                });
            }
            timeline.still_waiting(what);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn status(row: &crate::table::NodeRow) -> String {
    match (row.is_manager(), row.leader) {
        (_, true) => format!("{} leader", row.state),
        (true, false) if row.reachability.is_empty() => format!("{} joining the raft", row.state),
        (true, false) => format!("{} {}", row.state, row.reachability),
        (false, _) => format!("{} worker", row.state),
    }
}

/// Human-readable changes between two node tables.
fn diff(before: &NodeTable, after: &NodeTable) -> Vec<String> {
    let index = |t: &NodeTable| -> BTreeMap<String, String> {
        t.rows.iter().map(|r| (r.id.clone(), status(r))).collect()
    };
    let names: BTreeMap<String, String> = before
        .rows
        .iter()
        .chain(after.rows.iter())
        .map(|r| (r.id.clone(), r.hostname.clone()))
        .collect();
    let (old, new) = (index(before), index(after));
    let mut out = Vec::new();
    for (id, was) in &old {
        match new.get(id) {
            None => out.push(format!("{} removed from the swarm", names[id])),
            Some(now) if now != was => out.push(format!("{}: {was} -> {now}", names[id])),
            _ => {}
        }
    }
    for (id, now) in &new {
        if !old.contains_key(id) {
            out.push(format!("{} joined: {now}", names[id]));
        }
    }
    let count = |t: &NodeTable| {
        let members = t.managers().count();
        let reachable = t
            .managers()
            .filter(|m| m.is_reachable_manager() || m.leader)
            .count();
        (members, reachable)
    };
    if count(before) != count(after) {
        let (members, reachable) = count(after);
        let quorum = members / 2 + 1;
        let mut line = String::new();
        let _ = write!(
            line,
            "raft: {reachable} of {members} managers reachable, quorum {quorum}, fault tolerance {}",
            reachable as i64 - quorum as i64
        );
        out.push(line);
    }
    out
}

/// One of swarm-warden's action events, read from its JSON log.
struct WardenEvent {
    kind: MarkKind,
    /// The line the demo prints.
    line: String,
    /// The mark's label.
    label: String,
    /// Its reason, detail or error.
    detail: String,
    /// The node it concerns (a hostname for membership actions), or empty.
    target: String,
}

/// swarm-warden as a child process with a JSON log we follow for its actions.
struct WardenProcess {
    child: Child,
    log: PathBuf,
    offset: u64,
    started: usize,
    done: Vec<String>,
    failed: usize,
}

impl WardenProcess {
    fn start(lab: &Lab, binary: &Path) -> Result<Self> {
        let policy = lab.paths().dir().join("demo-policy.yml");
        std::fs::write(&policy, DEMO_POLICY).map_err(LabError::io("write", &policy))?;
        let log = lab.paths().dir().join("swarm-warden.log");
        let file = std::fs::File::create(&log).map_err(LabError::io("create", &log))?;
        let err = file.try_clone().map_err(LabError::io("open", &log))?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&policy)
            .env("DOCKER_HOST", lab.docker_host("m1")?)
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::Command {
                command: binary.display().to_string(),
                detail: format!("could not start: {e}"),
            })?;
        Ok(Self {
            child,
            log,
            offset: 0,
            started: 0,
            done: Vec::new(),
            failed: 0,
        })
    }

    /// Actions started or finished since the last call.
    fn new_actions(&mut self) -> Vec<WardenEvent> {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                break; // a line still being written: read it next time
            }
            self.offset += line.len() as u64;
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                let fields = &event["fields"];
                // The typed `event` field (see `swarm_warden::events`), not the wording.
                let event = fields["event"].as_str().unwrap_or_default();
                let action = fields["action"].as_str().unwrap_or_default();
                let target = fields["target"].as_str().unwrap_or_default().to_owned();
                let text = |key: &str| fields[key].as_str().unwrap_or_default().to_owned();
                match event {
                    "action-started" => {
                        self.started += 1;
                        out.push(WardenEvent {
                            kind: MarkKind::Action,
                            line: action.to_owned(),
                            label: action.to_owned(),
                            detail: text("reason"),
                            target,
                        });
                    }
                    "action-done" => {
                        self.done.push(action.to_owned());
                        let detail = fields["detail"].as_str().unwrap_or(action);
                        out.push(WardenEvent {
                            kind: MarkKind::ActionDone,
                            line: format!("done: {detail}"),
                            label: format!("done: {action}"),
                            detail: detail.to_owned(),
                            target,
                        });
                    }
                    "action-failed" | "action-rolled-back" => {
                        self.failed += 1;
                        let error = text("error");
                        out.push(WardenEvent {
                            kind: MarkKind::ActionFailed,
                            line: format!("FAILED {action}: {error}"),
                            label: format!("failed: {action}"),
                            detail: error,
                            target,
                        });
                    }
                    _ => {}
                }
            }
            line.clear();
        }
        out
    }

    /// Waits (up to 30 s) until every action it started has finished, printing them.
    async fn settle(&mut self, timeline: &Timeline) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            timeline.warden(self.new_actions());
            if self.started <= self.done.len() + self.failed || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WardenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
