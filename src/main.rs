//! `swarm-warden`: the CLI. Exit codes: 0 success, 1 runtime failure (the swarm could not
//! be observed, an action failed), 2 bad input (arguments, policy file, Docker host URL).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use swarm_warden::config::{ConfigError, Policy};
use swarm_warden::controller::Controller;
use swarm_warden::observe::{connect, ConnectError};
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
    let cli = Cli::parse();
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

fn init_logging() {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_policy(path: Option<&PathBuf>) -> Result<Policy, Failure> {
    Ok(match path {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    })
}

fn parse_size(text: &str) -> Result<u64, String> {
    swarm_warden::pad::parse_size(text)
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Cmd::Copy { from, to } => {
            let outcome = swarm_warden::copy::copy_tree(&from, &to)
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!(
                "copy complete: {} file(s), {} bytes, {} copied now, manifest verified",
                outcome.files, outcome.bytes, outcome.copied
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pad {
            dir,
            total,
            file_size,
        } => {
            let outcome = swarm_warden::pad::pad(&dir, total, file_size, |done, of| {
                println!(
                    "padding: {done}/{of} files of {file_size} bytes in {}",
                    dir.display()
                );
            })
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
        Cmd::CheckConfig { file } => {
            Policy::load(&file)?;
            println!("{}: OK", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report { target, format } => {
            let policy = load_policy(target.config.as_ref())?;
            let docker = connect(target.docker_host.as_deref()).await?;
            let mut controller = Controller::new(docker, policy, true, CancellationToken::new());
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
            let docker = connect(target.docker_host.as_deref()).await?;
            let cancel = CancellationToken::new();
            spawn_signal_handler(cancel.clone());
            let mut controller = Controller::new(docker, policy, dry_run, cancel);
            if once {
                let done = controller.reconcile().await.map_err(anyhow::Error::from)?;
                print!("{}", done.report().render(format));
                let failed = done
                    .plan
                    .actions
                    .iter()
                    .any(|a| a.status == ActionStatus::Failed);
                return Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            tracing::info!(dry_run, "swarm-warden running");
            controller.run(|_| {}).await;
            Ok(ExitCode::SUCCESS)
        }
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
