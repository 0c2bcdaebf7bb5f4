//! swarm-warden as a Docker CLI plugin: installed as `docker-warden` in a `cli-plugins`
//! directory (`~/.docker/cli-plugins/docker-warden`, a symlink to the binary), it answers
//! `docker warden report`, `docker warden run --once`, ... with the Engine the docker CLI
//! would talk to.
//!
//! The protocol is Docker's CLI plugin spec (docker/cli, `docs/extend/cli_plugins.md`):
//! the CLI first runs `docker-warden docker-cli-plugin-metadata` and expects a JSON object
//! (`SchemaVersion` "0.1.0", `Vendor`, ...); it then runs `docker-warden [GLOBAL OPTIONS]
//! warden [ARGS]`, with `DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND` set. The Engine is chosen as
//! the docker CLI chooses it: `-H/--host`, else `--context`, else `DOCKER_HOST`, else
//! `DOCKER_CONTEXT`, else the config's `currentContext`, else the default socket. A
//! context's endpoint is read from `<config>/contexts/meta/<sha256 of its name>/meta.json`,
//! its TLS material from `<config>/contexts/tls/<same>/docker/`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The plugin's name: `docker warden`.
pub const PLUGIN_NAME: &str = "warden";

/// The subcommand the docker CLI asks plugins for their metadata with.
pub const METADATA_COMMAND: &str = "docker-cli-plugin-metadata";

/// Set by the docker CLI when it runs a plugin.
pub const PLUGIN_ENV: &str = "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND";

/// Why a plugin invocation cannot be carried out (bad input: exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    /// A global option needs a value and has none.
    #[error("docker global option {0} needs a value")]
    MissingValue(String),
    /// The arguments never name the plugin.
    #[error("no `{PLUGIN_NAME}` command in the arguments the docker CLI passed")]
    NoCommand,
    /// The context is not in the docker CLI's config.
    #[error("docker context {name:?} not found (no {})", path.display())]
    UnknownContext {
        /// The context's name.
        name: String,
        /// Where its metadata would be.
        path: PathBuf,
    },
    /// The context's metadata cannot be read.
    #[error("docker context {name:?}: {message}")]
    BadContext {
        /// The context's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// TLS settings swarm-warden cannot follow.
    #[error("{0}")]
    Tls(String),
}

/// What to run: swarm-warden's own arguments (program name first) and the environment
/// that points it at the docker CLI's Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginCall {
    /// Print [`metadata`] and exit.
    Metadata,
    /// Run these arguments with these environment variables set.
    Run {
        /// Program name, then the arguments after `warden`.
        args: Vec<OsString>,
        /// `DOCKER_HOST`, `DOCKER_CERT_PATH`, `DOCKER_TLS_VERIFY` as needed.
        env: Vec<(String, String)>,
    },
}

/// The metadata answer (Docker's CLI plugin spec, schema 0.1.0).
pub fn metadata() -> String {
    serde_json::json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "swarm-warden",
        "Version": env!("CARGO_PKG_VERSION"),
        "ShortDescription": "Reconcile a Docker Swarm: managers, placement, volumes",
    })
    .to_string()
}

/// The socket the docker CLI names for its plugin: it closes it instead of forwarding
/// SIGINT/SIGTERM (an address starting with `@` is an abstract one).
pub const PLUGIN_SOCKET_ENV: &str = "DOCKER_CLI_PLUGIN_SOCKET";

/// The docker CLI's global options this reads (the rest are accepted and ignored).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Globals {
    config: Option<PathBuf>,
    context: Option<String>,
    host: Option<String>,
    tls_verify: bool,
    tls_files: [Option<PathBuf>; 3],
    help: bool,
}

/// Short global options, as their long names; `D` takes no value.
fn long_name(short: char) -> Option<&'static str> {
    match short {
        'c' => Some("--context"),
        'H' => Some("--host"),
        'l' => Some("--log-level"),
        'D' => Some("--debug"),
        _ => None,
    }
}

/// Global options that take a value.
const VALUED: &[&str] = &[
    "--config",
    "-c",
    "--context",
    "-H",
    "--host",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];

/// How this process was started: `None` when not as a docker CLI plugin (neither named
/// `docker-warden` nor run by the CLI), so the arguments are swarm-warden's own.
///
/// # Errors
/// Bad global options, an unknown or unreadable context, TLS settings that cannot be
/// followed.
pub fn invocation(
    argv: &[OsString],
    env: &HashMap<String, String>,
    home: Option<&Path>,
) -> Result<Option<PluginCall>, PluginError> {
    let metadata = argv.get(1).is_some_and(|a| a == METADATA_COMMAND);
    let named = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "docker-warden");
    if !(metadata || named || env.contains_key(PLUGIN_ENV)) {
        return Ok(None);
    }
    plugin_invocation(argv, env, home).map(Some)
}

fn plugin_invocation(
    argv: &[OsString],
    env: &HashMap<String, String>,
    home: Option<&Path>,
) -> Result<PluginCall, PluginError> {
    if argv.get(1).is_some_and(|a| a == METADATA_COMMAND) {
        return Ok(PluginCall::Metadata);
    }
    let (globals, rest) = split(&argv[1..])?;
    let mut args = vec![OsString::from("swarm-warden")];
    // `docker help warden [COMMAND]` runs the plugin as `help warden [COMMAND]`.
    if globals.help {
        args.extend(rest.iter().cloned());
        args.push("--help".into());
    } else {
        args.extend(rest.iter().cloned());
    }
    Ok(PluginCall::Run {
        args,
        env: endpoint(&globals, env, home)?,
    })
}

/// The global options before `warden`, and the arguments after it.
fn split(args: &[OsString]) -> Result<(Globals, &[OsString]), PluginError> {
    let mut g = Globals::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        if arg == PLUGIN_NAME {
            return Ok((g, &args[i + 1..]));
        }
        if arg == "help" {
            g.help = true;
            i += 1;
            continue;
        }
        // `--name=value`; short options as pflag reads them: `-H value`, `-Hvalue`,
        // `-H=value`, and run together (`-DH value`, `-Dclab`).
        let (name, inline) = match arg.strip_prefix('-') {
            Some(short) if !short.starts_with('-') && !short.is_empty() => {
                let mut found = (String::new(), None);
                for (at, c) in short.char_indices() {
                    let Some(long) = long_name(c) else { continue };
                    found = (long.to_owned(), None);
                    if VALUED.contains(&long) {
                        let rest = &short[at + c.len_utf8()..];
                        let rest = rest.strip_prefix('=').unwrap_or(rest);
                        found.1 = (!rest.is_empty()).then(|| rest.to_owned());
                        break;
                    }
                }
                found
            }
            _ => match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            },
        };
        let value = if VALUED.contains(&name.as_str()) {
            match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    let v = args
                        .get(i)
                        .ok_or_else(|| PluginError::MissingValue(name.clone()))?;
                    Some(v.to_string_lossy().into_owned())
                }
            }
        } else {
            None
        };
        match (name.as_str(), value) {
            ("--config", Some(v)) => g.config = Some(v.into()),
            ("-c" | "--context", Some(v)) => g.context = Some(v),
            ("-H" | "--host", Some(v)) => g.host = Some(v),
            ("--tlscacert", Some(v)) => g.tls_files[0] = Some(v.into()),
            ("--tlscert", Some(v)) => g.tls_files[1] = Some(v.into()),
            ("--tlskey", Some(v)) => g.tls_files[2] = Some(v.into()),
            ("--tlsverify", _) => g.tls_verify = inline_true(&arg),
            _ => {}
        }
        i += 1;
    }
    Err(PluginError::NoCommand)
}

/// `--tlsverify` or `--tlsverify=true`.
fn inline_true(arg: &str) -> bool {
    arg.split_once('=').is_none_or(|(_, v)| v != "false")
}

/// The environment that points swarm-warden at the Engine the docker CLI would use.
fn endpoint(
    g: &Globals,
    env: &HashMap<String, String>,
    home: Option<&Path>,
) -> Result<Vec<(String, String)>, PluginError> {
    let mut out = Vec::new();
    if let Some(host) = &g.host {
        out.push(("DOCKER_HOST".to_owned(), host.clone()));
        if g.tls_verify {
            out.extend(tls_dir(&g.tls_files)?);
        }
        return Ok(out);
    }
    let config = g
        .config
        .clone()
        .or_else(|| env.get("DOCKER_CONFIG").map(PathBuf::from))
        .or_else(|| home.map(|h| h.join(".docker")))
        .unwrap_or_else(|| PathBuf::from(".docker"));
    let context = match &g.context {
        Some(c) => Some(c.clone()),
        None if env.get("DOCKER_HOST").is_some_and(|h| !h.is_empty()) => None,
        None => env
            .get("DOCKER_CONTEXT")
            .filter(|c| !c.is_empty())
            .cloned()
            .or_else(|| current_context(&config)),
    };
    match context.filter(|c| c != "default") {
        // The default context: DOCKER_HOST (inherited) or the local socket, with the TLS
        // options given.
        None => {
            if g.tls_verify {
                out.extend(tls_dir(&g.tls_files)?);
            }
            Ok(out)
        }
        Some(name) => context_endpoint(&config, &name),
    }
}

/// The config's `currentContext`, if it has one.
fn current_context(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["currentContext"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
}

/// A named context's Docker endpoint, as environment.
fn context_endpoint(config: &Path, name: &str) -> Result<Vec<(String, String)>, PluginError> {
    let id: String = Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = config.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|_| PluginError::UnknownContext {
        name: name.to_owned(),
        path: path.clone(),
    })?;
    let bad = |message: String| PluginError::BadContext {
        name: name.to_owned(),
        message,
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let docker = &json["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad(format!("{} has no Endpoints.docker.Host", path.display())))?;
    if docker["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(PluginError::Tls(format!(
            "docker context {name:?} skips TLS verification; swarm-warden always verifies: use a context with its CA"
        )));
    }
    let mut out = vec![("DOCKER_HOST".to_owned(), host.to_owned())];
    // A named context's TLS is its own files only: the environment's settings are not
    // carried over (the docker CLI ignores them too).
    let tls = config.join("contexts/tls").join(&id).join("docker");
    let (cert_path, verify) = if tls.is_dir() {
        (tls.display().to_string(), "1")
    } else {
        (String::new(), "")
    };
    out.push(("DOCKER_CERT_PATH".to_owned(), cert_path));
    out.push(("DOCKER_TLS_VERIFY".to_owned(), verify.to_owned()));
    Ok(out)
}

/// `--tlsverify` with `--tlscacert`/`--tlscert`/`--tlskey`: swarm-warden reads one
/// directory holding `ca.pem`, `cert.pem` and `key.pem` (as `DOCKER_CERT_PATH`).
fn tls_dir(files: &[Option<PathBuf>; 3]) -> Result<Vec<(String, String)>, PluginError> {
    let names = ["ca.pem", "cert.pem", "key.pem"];
    let dirs: Vec<Option<&Path>> = files
        .iter()
        .zip(names)
        .map(|(f, n)| match f {
            Some(f) if f.file_name().is_some_and(|x| x == n) => f.parent(),
            _ => None,
        })
        .collect();
    match dirs.as_slice() {
        [Some(a), Some(b), Some(c)] if a == b && b == c => Ok(vec![
            ("DOCKER_CERT_PATH".to_owned(), a.display().to_string()),
            ("DOCKER_TLS_VERIFY".to_owned(), "1".to_owned()),
        ]),
        [None, None, None] if files.iter().all(Option::is_none) => {
            Ok(vec![("DOCKER_TLS_VERIFY".to_owned(), "1".to_owned())])
        }
        _ => Err(PluginError::Tls(
            "--tlscacert, --tlscert and --tlskey must be ca.pem, cert.pem and key.pem in one directory (swarm-warden reads them as DOCKER_CERT_PATH)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn plugin_env() -> HashMap<String, String> {
        HashMap::from([(PLUGIN_ENV.to_owned(), "docker".to_owned())])
    }

    fn run(call: Option<PluginCall>) -> (Vec<String>, Vec<(String, String)>) {
        match call {
            Some(PluginCall::Run { args, env }) => (
                args.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                env,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_metadata_answer_follows_the_spec() {
        let call = invocation(
            &argv(&["docker-warden", METADATA_COMMAND]),
            &HashMap::new(),
            None,
        );
        assert_eq!(call, Ok(Some(PluginCall::Metadata)));
        let json: serde_json::Value = serde_json::from_str(&metadata()).unwrap();
        assert_eq!(json["SchemaVersion"], "0.1.0");
        assert_eq!(json["Vendor"], "swarm-warden");
    }

    #[test]
    fn outside_the_docker_cli_the_arguments_are_swarm_wardens_own() {
        let call = invocation(&argv(&["swarm-warden", "report"]), &HashMap::new(), None);
        assert_eq!(call, Ok(None));
    }

    #[test]
    fn global_options_before_the_plugin_name_choose_the_engine() {
        let (args, env) = run(invocation(
            &argv(&[
                "/x/docker-warden",
                "-D",
                "--log-level=debug",
                "-H",
                "tcp://m1:2376",
                "warden",
                "report",
                "--format",
                "json",
            ]),
            &plugin_env(),
            None,
        )
        .unwrap());
        assert_eq!(args, ["swarm-warden", "report", "--format", "json"]);
        assert_eq!(env, [("DOCKER_HOST".into(), "tcp://m1:2376".into())]);
    }

    #[test]
    fn docker_host_wins_over_the_current_context_and_a_context_flag_over_both() {
        let dir = std::env::temp_dir().join(format!("sw-plugin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id: String = Sha256::digest(b"lab")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let meta = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"lab","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///run/lab.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("config.json"), r#"{"currentContext":"lab"}"#).unwrap();
        let config = dir.to_string_lossy().into_owned();
        let lab = [
            ("DOCKER_HOST".to_owned(), "unix:///run/lab.sock".to_owned()),
            ("DOCKER_CERT_PATH".to_owned(), String::new()),
            ("DOCKER_TLS_VERIFY".to_owned(), String::new()),
        ];

        let args = argv(&["docker-warden", "--config", &config, "warden", "report"]);
        assert_eq!(run(invocation(&args, &plugin_env(), None).unwrap()).1, lab);
        let mut with_host = plugin_env();
        with_host.insert("DOCKER_HOST".into(), "unix:///other.sock".into());
        assert_eq!(
            run(invocation(&args, &with_host, None).unwrap()).1,
            vec![],
            "DOCKER_HOST is inherited as it is"
        );
        let flagged = argv(&[
            "docker-warden",
            "--config",
            &config,
            "--context=lab",
            "warden",
            "report",
        ]);
        assert_eq!(run(invocation(&flagged, &with_host, None).unwrap()).1, lab);
        // Short options run together, as pflag reads them.
        for together in [["-Dclab", "warden"], ["-Dc", "lab"]] {
            let mut a = argv(&["docker-warden", "--config", &config]);
            a.extend(argv(&together));
            if together[1] == "lab" {
                a.push("warden".into());
            }
            assert_eq!(
                run(invocation(&a, &with_host, None).unwrap()).1,
                lab,
                "{together:?}"
            );
        }
        let unknown = argv(&["docker-warden", "--config", &config, "-c", "nope", "warden"]);
        assert!(matches!(
            invocation(&unknown, &plugin_env(), None),
            Err(PluginError::UnknownContext { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn docker_help_warden_is_swarm_wardens_help() {
        let (args, _) = run(invocation(
            &argv(&["docker-warden", "help", "warden", "report"]),
            &plugin_env(),
            None,
        )
        .unwrap());
        assert_eq!(args, ["swarm-warden", "report", "--help"]);
        let (_, env) = run(invocation(
            &argv(&["docker-warden", "-DHtcp://m1:2375", "warden"]),
            &plugin_env(),
            None,
        )
        .unwrap());
        assert_eq!(env, [("DOCKER_HOST".into(), "tcp://m1:2375".into())]);
    }

    #[test]
    fn tls_files_must_be_one_cert_path() {
        let ok = argv(&[
            "docker-warden",
            "--tlsverify",
            "--tlscacert=/c/ca.pem",
            "--tlscert=/c/cert.pem",
            "--tlskey=/c/key.pem",
            "-H=tcp://m1:2376",
            "warden",
        ]);
        let (_, env) = run(invocation(&ok, &plugin_env(), None).unwrap());
        assert_eq!(env[0], ("DOCKER_HOST".into(), "tcp://m1:2376".into()));
        assert!(env.contains(&("DOCKER_CERT_PATH".into(), "/c".into())));
        let ok = argv(&[
            "docker-warden",
            "--tlsverify",
            "--tlscacert",
            "/c/ca.pem",
            "--tlscert",
            "/c/cert.pem",
            "--tlskey",
            "/c/key.pem",
            "--host",
            "tcp://m1:2376",
            "warden",
        ]);
        let (_, env) = run(invocation(&ok, &plugin_env(), None).unwrap());
        assert!(env.contains(&("DOCKER_CERT_PATH".into(), "/c".into())));
        let split_dirs = argv(&[
            "docker-warden",
            "--tlsverify",
            "--tlscacert",
            "/a/ca.pem",
            "--tlscert",
            "/b/cert.pem",
            "--tlskey",
            "/b/key.pem",
            "-H",
            "tcp://m1:2376",
            "warden",
        ]);
        assert!(matches!(
            invocation(&split_dirs, &plugin_env(), None),
            Err(PluginError::Tls(_))
        ));
        assert_eq!(
            invocation(&argv(&["docker-warden", "-H"]), &plugin_env(), None),
            Err(PluginError::MissingValue("--host".into()))
        );
    }
}
