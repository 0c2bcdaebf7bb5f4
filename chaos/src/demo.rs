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

/// The demo's policy: the defaults, with clocks short enough for a demo.
const DEMO_POLICY: &str = "managers:\n  desired: 3\n  dead_after: 15s\n  stabilization: 5s\n  leader_settle: 10s\ncontroller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n";
/// How long the demo waits for any one step before calling it a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(150);

/// What the demo needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The swarm-warden binary.
    pub warden: PathBuf,
    /// Where labs live.
    pub root: PathBuf,
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
    println!("== 1. Without swarm-warden");
    let without = replay(options, false).await?;
    println!("\n== 2. With swarm-warden (dead_after 15s for the demo; default 5m)");
    let with = replay(options, true).await?;
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

async fn replay(options: &DemoOptions, with_warden: bool) -> Result<Outcome> {
    let started = Instant::now();
    let timeline = Timeline::new();
    let mut spec = LabSpec::new(4, 2).named(LabName::unique("demo"));
    spec.root = options.root.clone();
    let lab = Lab::start(spec).await?;
    timeline.say(&format!(
        "lab {} up: 4 managers (m1-m4) + 2 workers (w1, w2)",
        lab.name()
    ));
    let mut watcher = Watcher::new(&lab).await?;
    let mut warden = if with_warden {
        let w = WardenProcess::start(&lab, &options.warden)?;
        timeline.say("swarm-warden started against m1");
        Some(w)
    } else {
        None
    };

    let first = pick_follower(&watcher.table, &[])?;
    lab.kill(&first).await?;
    timeline.say(&format!("kill {first} (node loss)"));
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
            if let Err(e) = lab.node_table().await {
                let first_line = e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(110)
                    .collect::<String>();
                timeline.say(&format!("NO LEADER: {first_line}"));
                break;
            }
            if Instant::now() > until {
                return Err(LabError::Timeout {
                    what: "the swarm to lose its leader".into(),
                    after: STEP_TIMEOUT,
                    last: watcher.table.to_string(),
                });
            }
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
    lab.teardown()?;
    timeline.say("lab torn down");
    Ok(Outcome {
        duration: started.elapsed(),
        ..outcome
    })
}

fn pick_follower(table: &NodeTable, except: &[&str]) -> Result<String> {
    table
        .managers()
        .filter(|m| !m.leader && m.hostname != "m1" && !except.contains(&m.hostname.as_str()))
        .map(|m| m.hostname.clone())
        .next()
        .ok_or_else(|| LabError::Usage(format!("no follower manager to kill:\n{table}")))
}

/// Prints timestamped lines.
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    fn say(&self, what: &str) {
        println!("[{:>6.1}s] {what}", self.start.elapsed().as_secs_f64());
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
        loop {
            if let Some(w) = warden.as_deref_mut() {
                for line in w.new_actions() {
                    timeline.say(&format!("swarm-warden: {line}"));
                }
            }
            if let Ok(table) = lab.node_table().await {
                for change in diff(&self.table, &table) {
                    timeline.say(&change);
                }
                self.table = table;
                if done(&self.table) {
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

    /// Actions started or finished since the last call, as one line each.
    fn new_actions(&mut self) -> Vec<String> {
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
                match event {
                    "action-started" => {
                        self.started += 1;
                        out.push(action.to_owned());
                    }
                    "action-done" => {
                        self.done.push(action.to_owned());
                        out.push(format!(
                            "done: {}",
                            fields["detail"].as_str().unwrap_or(action)
                        ));
                    }
                    "action-failed" | "action-rolled-back" => {
                        self.failed += 1;
                        out.push(format!(
                            "FAILED {action}: {}",
                            fields["error"].as_str().unwrap_or_default()
                        ));
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
            for line in self.new_actions() {
                timeline.say(&format!("swarm-warden: {line}"));
            }
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
