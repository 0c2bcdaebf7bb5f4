//! swarm-warden as the nemesis runs it: a child process whose JSON log is read as it is
//! written, each action stamped by the nemesis' clock into the history.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::history::{Event, History};
use crate::error::{LabError, Result};
use crate::Lab;

/// A running swarm-warden.
pub struct WardenProcess {
    child: Option<Child>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WardenProcess {
    /// Starts `binary run --config policy` against `on`'s Docker API, its clock
    /// `clock_offset_s` off through libfaketime (without it, on the true clock). The
    /// library is preloaded into swarm-warden itself, not through the `faketime` wrapper,
    /// which forks: the child must be swarm-warden, so that stopping it stops it.
    pub fn start(
        lab: &Lab,
        binary: &Path,
        policy: &Path,
        on: &str,
        clock_offset_s: i64,
        history: &History,
        raw_log: &Path,
    ) -> Result<Self> {
        let faketime = (clock_offset_s != 0).then(find_libfaketime).flatten();
        // Through util-linux's setpriv, which execs (the child is swarm-warden itself):
        // killed with the nemesis however the nemesis ends, since its own process group
        // does not get the nemesis' signals.
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--"]).arg(binary);
        if let Some(lib) = &faketime {
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME", format!("{clock_offset_s:+}"))
                // Shift the wall clock only: tokio's timers stay on the true monotonic one.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        command
            .arg("run")
            .arg("--config")
            .arg(policy)
            .env("DOCKER_HOST", lab.docker_host(on)?)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "swarm_warden=info")
            .env("NO_COLOR", "1")
            // Any free port: the nemesis may run beside tests.
            .env("SWARM_WARDEN_HTTP_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a stop reaches whatever it started, too.
            .process_group(0);
        let mut child = command.spawn().map_err(|e| LabError::Command {
            command: binary.display().to_string(),
            detail: format!("could not start: {e}"),
        })?;
        let offset = if faketime.is_some() {
            clock_offset_s
        } else {
            0
        };
        history.record(Event::WardenStart {
            on: on.to_owned(),
            clock_offset_s: offset,
        });
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let raw = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(raw_log)
            .map_err(LabError::io("open", raw_log))?;
        let (history, on) = (history.clone(), on.to_owned());
        // swarm-warden logs to stderr (stdout is for reports): both streams are read the
        // same way, each line kept in the raw log and, if it is an action, recorded.
        let follow = move |stream: Box<dyn std::io::Read + Send>, raw: std::fs::File| {
            let (history, on) = (history.clone(), on.clone());
            std::thread::spawn(move || {
                let mut raw = raw;
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    let _ = writeln!(raw, "{line}");
                    if let Some(event) = action_event(&line, &on) {
                        history.record(event);
                    }
                }
            })
        };
        let err_raw = raw.try_clone().map_err(LabError::io("open", raw_log))?;
        let out_thread = stdout.map(|s| follow(Box::new(s), raw));
        let err_thread = stderr.map(|s| follow(Box::new(s), err_raw));
        let reader = std::thread::spawn(move || {
            for t in [out_thread, err_thread].into_iter().flatten() {
                let _ = t.join();
            }
        });
        Ok(Self {
            child: Some(child),
            reader: Some(reader),
        })
    }

    /// Stops it: SIGTERM to its process group (a graceful stop releases the lease), or
    /// SIGKILL when `crash`; SIGKILL anyway after 20 s. Waits without blocking the
    /// runtime (the table poller goes on).
    pub async fn stop(mut self, crash: bool, history: &History) {
        if let Some(mut child) = self.child.take() {
            let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let signal = if crash {
                nix::sys::signal::Signal::SIGKILL
            } else {
                nix::sys::signal::Signal::SIGTERM
            };
            let _ = nix::sys::signal::killpg(group, signal);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        history.record(Event::WardenStop { crash });
    }
}

impl Drop for WardenProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// An action event from one line of swarm-warden's JSON log, if the line is one: its
/// typed `event` field (`action-started`, ...; see `swarm_warden::events`) and its `kind`
/// and `target` fields, never its wording.
pub fn action_event(line: &str, on: &str) -> Option<Event> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &json["fields"];
    let phase = match fields["event"].as_str()? {
        "action-started" => "started",
        "action-done" => "done",
        // `action-unobserved` is no ending: `action-failed` follows it.
        "action-failed" => "failed",
        "action-rolled-back" => "rolled-back",
        _ => return None,
    };
    let text = |key: &str| fields[key].as_str().unwrap_or_default().to_owned();
    Some(Event::Action {
        phase: phase.to_owned(),
        kind: text("kind"),
        target: text("target"),
        on: on.to_owned(),
        detail: [text("reason"), text("detail"), text("error")].concat(),
    })
}

/// libfaketime (Debian's `faketime` package), or `FAKETIME_LIB`.
pub fn find_libfaketime() -> Option<PathBuf> {
    std::env::var_os("FAKETIME_LIB")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/faketime/libfaketime.so.1",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_lines_of_the_json_log_become_action_events() {
        let line = r#"{"timestamp":"2026-11-30T09:00:00Z","level":"INFO","fields":{"message":"Reworded","event":"action-started","action":"promote w1","kind":"promote-worker","target":"abc123","reason":"below desired"}}"#;
        assert_eq!(
            action_event(line, "m1"),
            Some(Event::Action {
                phase: "started".into(),
                kind: "promote-worker".into(),
                target: "abc123".into(),
                on: "m1".into(),
                detail: "below desired".into(),
            })
        );
        assert_eq!(
            action_event(r#"{"fields":{"message":"Carrying out"}}"#, "m1"),
            None
        );
        assert_eq!(action_event("not json", "m1"), None);
    }
}
