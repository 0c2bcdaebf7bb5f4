//! swarm-warden as the demo runs it: a child process whose JSON log is followed for its
//! actions.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::narrate::Narrator;
use super::DEMO_POLICY;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::timeline::MarkKind;

/// One of swarm-warden's action events, read from its JSON log.
pub(super) struct WardenEvent {
    pub(super) kind: MarkKind,
    /// The line the demo prints.
    pub(super) line: String,
    /// The mark's label.
    pub(super) label: String,
    /// Its reason, detail or error.
    pub(super) detail: String,
    /// The node it concerns (a hostname for membership actions), or empty.
    pub(super) target: String,
}

/// swarm-warden as a child process with a JSON log we follow for its actions.
pub(super) struct WardenProcess {
    child: Child,
    log: PathBuf,
    offset: u64,
    started: usize,
    pub(super) done: Vec<String>,
    failed: usize,
}

impl WardenProcess {
    pub(super) fn start(lab: &Lab, binary: &Path) -> Result<Self> {
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
    pub(super) fn new_actions(&mut self) -> Vec<WardenEvent> {
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
    pub(super) async fn settle(&mut self, timeline: &Narrator) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            timeline.warden(self.new_actions());
            if self.started <= self.done.len() + self.failed || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        crate::cmd::wait_or_kill(&mut self.child, Duration::from_secs(15));
    }
}

impl Drop for WardenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
