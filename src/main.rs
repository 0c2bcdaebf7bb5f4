//! `swarm-warden`: the CLI. Exit codes: 0 success, 1 runtime failure (the swarm could not
//! be observed, an action failed), 2 bad input (arguments, policy file, Docker host URL).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use swarm_warden::config::{ConfigError, Policy};
use swarm_warden::controller::Controller;
use swarm_warden::http::Health;
use swarm_warden::lease::{Claim, Lease};
use swarm_warden::metrics::Metrics;
use swarm_warden::observe::{connect, connect_waiting, ConnectError, Observer};
use swarm_warden::plan::ActionStatus;
use swarm_warden::report::Format;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "swarm-warden",
    version,
    about = "A reconciliation operator for Docker Swarm"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct Target {
    /// Policy file (YAML); every key has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Docker Engine of a swarm manager (default: $DOCKER_HOST, else the local socket).
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control loop (until SIGTERM), or one reconcile with --once.
    Run {
        #[command(flatten)]
        target: Target,
        /// Record what would be done instead of doing it.
        #[arg(long)]
        dry_run: bool,
        /// One reconcile, carried out to the end (waiting for membership changes to
        /// converge); prints its report and exits.
        #[arg(long)]
        once: bool,
        /// Format of the --once report.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Observe, plan and print what would be done; changes nothing.
    Report {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Fill a directory with real (not sparse), fsynced files of zeros, resumably: the
    /// padding step of the efs-padding runbook, run inside a Swarm job.
    Pad {
        /// Where to write (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// How much padding in all (e.g. 200GiB).
        #[arg(long, value_parser = parse_size)]
        total: u64,
        /// Size of each file.
        #[arg(long, value_parser = parse_size, default_value = "1GiB")]
        file_size: u64,
    },
    /// Remove the padding `pad` wrote (files pad-NNNNNN.bin in DIR, then DIR if nothing
    /// else is in it), giving the space back: run it where the EFS volume is mounted, e.g.
    /// as a Swarm job mounting it.
    Unpad {
        /// The padding directory (the runbook pads `.swarm-warden-padding` at the volume's
        /// root).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Copy a directory tree with a verified checksum manifest, resumably: the data move
    /// of the ebs-migration runbook, run inside a Swarm job.
    Copy {
        /// Source directory (mounted read-only).
        #[arg(long)]
        from: PathBuf,
        /// Target directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Probe a running swarm-warden (for images without curl): exit 0 when the URL answers.
    Healthcheck {
        /// What to probe.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Validate a policy file.
    CheckConfig {
        /// The policy file.
        file: PathBuf,
    },
}

/// Failures, with the exit code each maps to.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::BadInput(e.to_string())
    }
}

impl From<swarm_warden::observe::ClientError> for Failure {
    fn from(e: swarm_warden::observe::ClientError) -> Self {
        Failure::BadInput(e.to_string())
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        if e.is_transient() {
            Failure::Runtime(e.into())
        } else {
            Failure::BadInput(e.to_string())
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = match plugin_call() {
        Ok(Some(args)) => Cli::parse_from(args),
        Ok(None) => Cli::parse(),
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(Failure::BadInput(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// As a docker CLI plugin (`docker warden ...`, see `cli_plugin`): the metadata answer
/// (`Err(SUCCESS)`: nothing else to do), or the arguments after `warden` with the docker
/// CLI's Engine put in the environment. `Ok(None)`: started as swarm-warden itself.
fn plugin_call() -> Result<Option<Vec<std::ffi::OsString>>, ExitCode> {
    use swarm_warden::cli_plugin::{invocation, metadata, PluginCall};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Variables that are not UTF-8 are no docker setting: skipped, never a panic.
    let env: std::collections::HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match invocation(&argv, &env, home.as_deref()) {
        Ok(None) => Ok(None),
        Ok(Some(PluginCall::Metadata)) => {
            println!("{}", metadata());
            Err(ExitCode::SUCCESS)
        }
        Ok(Some(PluginCall::Run { args, env })) => {
            // Before the runtime starts: one thread, nothing reads the environment yet.
            for (key, value) in env {
                std::env::set_var(key, value);
            }
            Ok(Some(args))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn init_logging() {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Colour only on a terminal, and not when `NO_COLOR` is set to anything but the empty
/// string (no-color.org): `docker service logs` shows escape codes as text.
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn load_policy(path: Option<&PathBuf>) -> Result<Policy, Failure> {
    let policy = match path {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    Ok(policy.apply_env(std::env::vars())?)
}

fn parse_size(text: &str) -> Result<u64, String> {
    swarm_warden::pad::parse_size(text)
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Cmd::Copy { from, to } => {
            // Progress lines on the task log (the warden reads them into the journal).
            let mut reporter = swarm_warden::copy::Reporter::new(std::io::stdout());
            let outcome =
                swarm_warden::copy::copy_tree_reporting(&from, &to, &mut |t| reporter.update(t))
                    .map_err(|e| Failure::Runtime(e.into()))?;
            println!(
                "copy complete: {} file(s), {} bytes, {} copied now, manifest verified",
                outcome.files, outcome.bytes, outcome.copied
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Unpad { dir } => {
            let outcome = swarm_warden::pad::unpad(&dir).map_err(|e| Failure::Runtime(e.into()))?;
            println!(
                "unpad: removed {} padding file(s), {} bytes, from {}",
                outcome.files,
                outcome.bytes,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pad {
            dir,
            total,
            file_size,
        } => {
            println!("padding {} in files of {file_size} bytes", dir.display());
            let mut reporter = swarm_warden::copy::Reporter::new(std::io::stdout());
            let outcome = swarm_warden::pad::pad(&dir, total, file_size, |t| reporter.update(t))
                .map_err(|e| match e {
                    swarm_warden::pad::PadError::Usage(m) => Failure::BadInput(m),
                    other => Failure::Runtime(other.into()),
                })?;
            println!(
                "padding complete: {} file(s), {} found, {} written",
                outcome.total_files, outcome.existing, outcome.written
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Healthcheck { url } => match swarm_warden::http::probe(&url).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("unhealthy: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::CheckConfig { file } => {
            Policy::load(&file)?.apply_env(std::env::vars())?;
            println!("{}: OK", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report { target, format } => {
            let policy = load_policy(target.config.as_ref())?;
            // Its CA and secret files are bad input before any wait for the Engine.
            swarm_warden::observe::Telemetry::new(&policy.volumes)?;
            let docker = connect(target.docker_host.as_deref()).await?;
            let mut controller = Controller::new(
                Observer::new(docker),
                policy,
                true,
                CancellationToken::new(),
            )?;
            let done = controller.reconcile().await.map_err(anyhow::Error::from)?;
            print!("{}", done.report().render(format));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            target,
            dry_run,
            once,
            format,
        } => {
            let policy = load_policy(target.config.as_ref())?;
            swarm_warden::observe::Telemetry::new(&policy.volumes)?;
            let cancel = CancellationToken::new();
            spawn_signal_handler(cancel.clone());
            // A service waits for its Engine (restarting, hung) instead of crash-looping;
            // one run (--once) fails at once.
            let docker = if once {
                connect(target.docker_host.as_deref()).await?
            } else {
                tokio::select! {
                    docker = connect_waiting(
                        target.docker_host.as_deref(),
                        policy.controller.backoff_min,
                        policy.controller.backoff_max,
                    ) => docker?,
                    () = cancel.cancelled() => return Ok(ExitCode::SUCCESS),
                }
            };
            // Report-only runs never need the lease; acting ones take it first.
            let lease = (policy.lease.enabled && !dry_run).then(|| {
                Lease::new(
                    docker.clone(),
                    policy.lease.clone(),
                    swarm_warden::lease::identity(),
                )
            });
            let metrics = Arc::new(Metrics::new());
            let claim = lease
                .as_ref()
                .map(|l| l.claim(metrics.writes_refused()))
                .unwrap_or_else(Claim::unconditional);
            let handover = lease.as_ref().map(Lease::handover);
            let mut controller = Controller::new(
                Observer::new(docker.clone()),
                policy.clone(),
                dry_run,
                cancel.clone(),
            )?
            .with_claim(claim, handover);
            if once {
                // The lease is renewed in the background for as long as the reconcile
                // lasts (its waits can outlast lease.duration), and released after it.
                let keeper = match lease {
                    Some(lease) if take_lease_once(&lease, &policy).await => {
                        let stop = CancellationToken::new();
                        Some((stop.clone(), tokio::spawn(lease.run(stop))))
                    }
                    Some(lease) => {
                        // A take whose answer was lost may have committed.
                        lease.release().await;
                        None
                    }
                    None => None,
                };
                let done = controller.reconcile_to_end().await;
                if let Some((stop, task)) = keeper {
                    stop.cancel();
                    let _ = task.await;
                }
                let done = done.map_err(anyhow::Error::from)?;
                print!("{}", done.report().render(format));
                // A rolled-back fix changed nothing in the end, but it did not do its job.
                let failed =
                    done.plan.actions.iter().any(|a| {
                        matches!(a.status, ActionStatus::Failed | ActionStatus::RolledBack)
                    });
                return Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let health = Arc::new(Health::new(
                policy.controller.resync * 3 + Duration::from_secs(120),
            ));
            controller = controller.with_telemetry(metrics.clone(), health.clone());
            if !policy.http.listen.is_empty() {
                let addr: SocketAddr = policy.http.listen.parse().map_err(|e| {
                    Failure::BadInput(format!("http.listen {:?}: {e}", policy.http.listen))
                })?;
                let (metrics, health, cancel) = (metrics.clone(), health.clone(), cancel.clone());
                tokio::spawn(async move {
                    if let Err(e) = swarm_warden::http::serve(addr, metrics, health, cancel).await {
                        tracing::error!(error = %e, %addr, "HTTP server failed");
                    }
                });
            }
            // The lease is released only after the loop has stopped and its running
            // actions have ended (they stop at their next wait): a write already checked
            // must not land after another replica took over a released lease.
            let lease_stop = CancellationToken::new();
            let lease_task = lease.map(|lease| tokio::spawn(lease.run(lease_stop.clone())));
            tracing::info!(dry_run, "swarm-warden running");
            controller.run(|_| {}).await;
            lease_stop.cancel();
            if let Some(task) = lease_task {
                let _ = task.await;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// For `--once`: tries to take the lease until a holder that stopped renewing would have
/// lost it; without it the reconcile only reports. Returns whether it took the lease.
async fn take_lease_once(lease: &Lease, policy: &Policy) -> bool {
    let deadline = tokio::time::Instant::now() + policy.lease.duration + policy.lease.retry;
    loop {
        match lease.round().await {
            Ok(true) => return true,
            Ok(false) if tokio::time::Instant::now() < deadline => {}
            Ok(false) => {
                tracing::warn!("Another replica holds the lease: reporting only");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot take the lease: reporting only");
                return false;
            }
        }
        tokio::time::sleep(policy.lease.retry).await;
    }
}

/// SIGTERM or SIGINT: stop gracefully (a second signal ends the process at once).
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("Cannot listen for SIGTERM/SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = plugin_socket_closed() => tracing::info!("The docker CLI asked its plugin to stop: shutting down"),
        }
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("Second signal: exiting now");
        std::process::exit(130);
    });
}

/// Run as a docker CLI plugin, the CLI closes the socket it names in
/// `DOCKER_CLI_PLUGIN_SOCKET` instead of forwarding SIGINT/SIGTERM: returns when it is
/// closed; never when there is none.
async fn plugin_socket_closed() {
    use tokio::io::AsyncReadExt;
    let Some(name) = std::env::var(swarm_warden::cli_plugin::PLUGIN_SOCKET_ENV)
        .ok()
        .filter(|n| !n.is_empty())
    else {
        return std::future::pending().await;
    };
    let connected = match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
                .and_then(|addr| std::os::unix::net::UnixStream::connect_addr(&addr))
        }
        None => std::os::unix::net::UnixStream::connect(&name),
    }
    .and_then(|s| s.set_nonblocking(true).map(|()| s))
    .and_then(tokio::net::UnixStream::from_std);
    let Ok(mut stream) = connected else {
        tracing::warn!(socket = %name, "Cannot connect to the docker CLI's plugin socket: stop with SIGTERM");
        return std::future::pending().await;
    };
    let mut buf = [0u8; 64];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(true, None));
        assert!(
            !colour(false, None),
            "a pipe (docker service logs) gets no escapes"
        );
        assert!(!colour(true, Some("1".into())));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
    }
}
