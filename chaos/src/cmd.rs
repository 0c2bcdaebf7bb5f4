//! Running the host's tools (`ip`, `iptables`, `nsenter`, `apt-get`) with errors that say
//! which command failed and what it printed.

use std::ffi::OsStr;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// Runs `program args...`, returning its standard output; a non-zero exit is an error that
/// carries the command line and its standard error.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    output_of(&mut command)
}

/// Runs `program args...` inside network namespace `netns` (and nothing else: unlike
/// `ip netns exec`, `nsenter --net` leaves /sys and the cgroup mounts alone).
pub fn run_in_netns<I, S>(netns: &str, program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/var/run/netns/{netns}"))
        .arg("--")
        .arg(program)
        .args(args);
    output_of(&mut command)
}

/// Runs a prepared command, returning its standard output.
pub fn output_of(command: &mut Command) -> Result<String> {
    let line = describe(command);
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().map_err(|e| LabError::Command {
        command: line.clone(),
        detail: format!("could not start: {e}"),
    })?;
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: line,
            detail: format!("{status}: {}", String::from_utf8_lossy(&stderr).trim()),
        })
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits up to `grace` for a child asked to stop (a signal, a protocol's quit) to exit,
/// then kills it; either way it is reaped.
pub fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
