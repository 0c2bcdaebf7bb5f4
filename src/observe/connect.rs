//! Connecting to the Docker Engine the way the docker CLI does: `--docker-host`, else
//! `DOCKER_HOST`, else the local socket; TLS for `tcp://` when `DOCKER_TLS_VERIFY` is set
//! to anything but the empty string (the CLI's rule, `0` included: cli/flags reads
//! `os.Getenv("DOCKER_TLS_VERIFY") != ""`), and always for `https://`, with `ca.pem`,
//! `cert.pem` and `key.pem` from `DOCKER_CERT_PATH` (else `~/.docker`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};

/// Longest wait for the Engine's `/version` when connecting.
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(15);

/// [`connect`], trying again with exponential backoff from `min` to `max` while the
/// Engine does not answer (it may be restarting, or hung); bad input is returned at once.
/// Each failed try is logged. Never returns a transient error: cancel the future to stop.
pub async fn connect_waiting(
    docker_host: Option<&str>,
    min: Duration,
    max: Duration,
) -> Result<Docker, ConnectError> {
    use backon::{ExponentialBuilder, Retryable};
    (|| connect(docker_host))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(max)
                .without_max_times(),
        )
        .when(ConnectError::is_transient)
        .notify(|e, retry_in| {
            tracing::warn!(error = %e, ?retry_in, "Cannot reach the Docker Engine yet");
        })
        .await
}

/// Oldest Engine API swarm-warden speaks: 1.24, Docker 1.12's, the first with swarm mode
/// (the Engine API version history).
pub const MIN_API_VERSION: &str = "1.24";

/// The Engine's default socket.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Longer than SwarmKit's own proxy deadline, so a manager without a leader answers with
/// its error instead of our timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no Docker client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host URL is not one swarm-warden understands (bad input).
    #[error("invalid Docker host {host:?}: {source} (use unix:///path/to/docker.sock or tcp://host:2376)")]
    BadHost {
        /// The URL given.
        host: String,
        /// Why it was refused.
        #[source]
        source: bollard::errors::Error,
    },
    /// A TLS file the docker CLI would read is missing (bad input).
    #[error("Docker TLS for {host}: {} is missing (DOCKER_CERT_PATH holds ca.pem, cert.pem and key.pem, as for the docker CLI)", path.display())]
    MissingTlsFile {
        /// The URL used.
        host: String,
        /// The file.
        path: PathBuf,
    },
    /// The Engine's certificate is not trusted, or it refused ours, or it speaks TLS and
    /// we did not (bad input: retrying cannot help).
    #[error("Docker TLS with {host} failed: {detail}")]
    Tls {
        /// The URL used.
        host: String,
        /// What the handshake or the Engine said.
        detail: String,
    },
    /// The Engine speaks an API older than swarm mode's (bad input).
    #[error("the Docker Engine at {host} speaks API {found}, older than the {MIN_API_VERSION} swarm mode needs (Docker 1.12): upgrade it")]
    TooOld {
        /// The URL used.
        host: String,
        /// The version it offered.
        found: String,
    },
    /// Something answered that is not a Docker Engine we may use: a 4xx, a body that is
    /// not the Engine's, a socket we may not open (bad input).
    #[error("{host} is not a Docker Engine swarm-warden can use: {detail}")]
    NotDocker {
        /// The URL used.
        host: String,
        /// What it answered.
        detail: String,
    },
    /// The Engine did not answer.
    #[error("cannot reach the Docker Engine at {host}: {source}")]
    Unreachable {
        /// The URL used.
        host: String,
        /// The transport error.
        #[source]
        source: bollard::errors::Error,
    },
}

impl ConnectError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// How to reach the Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// Plain HTTP over TCP.
    Http,
    /// TLS with the client certificate and CA in this directory.
    Tls(PathBuf),
    /// Whatever bollard makes of the URL (a unix socket, or an error for a bad scheme).
    Other,
}

/// The docker CLI's choice for `host`, given `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` and
/// the home directory.
fn transport(
    host: &str,
    tls_verify: Option<&str>,
    cert_path: Option<&str>,
    home: Option<&Path>,
) -> Transport {
    let tls = host.starts_with("https://")
        || (host.starts_with("tcp://") && tls_verify.is_some_and(|v| !v.is_empty()));
    if tls {
        let dir = cert_path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        Transport::Tls(dir)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Transport::Http
    } else {
        Transport::Other
    }
}

/// Connects and negotiates the API version.
pub async fn connect(docker_host: Option<&str>) -> Result<Docker, ConnectError> {
    let host = docker_host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let chosen = transport(
        &host,
        std::env::var("DOCKER_TLS_VERIFY").ok().as_deref(),
        std::env::var("DOCKER_CERT_PATH").ok().as_deref(),
        home.as_deref(),
    );
    let secs = REQUEST_TIMEOUT.as_secs();
    let docker = match &chosen {
        Transport::Tls(dir) => {
            let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
            if let Some(missing) = [&ca, &cert, &key].into_iter().find(|p| !p.is_file()) {
                return Err(ConnectError::MissingTlsFile {
                    host,
                    path: missing.clone(),
                });
            }
            Docker::connect_with_ssl(&host, &key, &cert, &ca, secs, API_DEFAULT_VERSION)
        }
        Transport::Http => Docker::connect_with_http(&host, secs, API_DEFAULT_VERSION),
        Transport::Other => {
            Docker::connect_with_host(&host).map(|d| d.with_timeout(REQUEST_TIMEOUT))
        }
    }
    .map_err(|source| match source {
        // The daemon may just be restarting: worth another try.
        bollard::errors::Error::SocketNotFoundError(_) => ConnectError::Unreachable {
            host: host.clone(),
            source,
        },
        source => ConnectError::BadHost {
            host: host.clone(),
            source,
        },
    })?;
    // A hung Engine must not hold the start for the client's whole request timeout.
    let negotiated = tokio::time::timeout(NEGOTIATE_TIMEOUT, docker.negotiate_version())
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError));
    let docker = negotiated
        .map_err(|source| classify(source, &host, matches!(chosen, Transport::Tls(_))))?;
    let version = docker.client_version();
    if (version.major_version, version.minor_version) < (1, 24) {
        return Err(ConnectError::TooOld {
            host,
            found: version.to_string(),
        });
    }
    Ok(docker)
}

/// What a failed first call means: only an Engine that did not answer (or answered 5xx)
/// is worth waiting for; TLS that cannot work, a socket we may not open, or something
/// that is not a Docker Engine are bad input.
fn classify(source: bollard::errors::Error, host: &str, tls: bool) -> ConnectError {
    use bollard::errors::Error as E;
    if let Some(detail) = tls_failure(&source, tls) {
        return ConnectError::Tls {
            host: host.to_owned(),
            detail,
        };
    }
    let not_docker = match &source {
        E::DockerResponseServerError { status_code, .. } => (400..500).contains(status_code),
        E::JsonDataError { .. } | E::JsonSerdeError { .. } | E::APIVersionParseError {} => true,
        E::IOError { err } => err.kind() == std::io::ErrorKind::PermissionDenied,
        _ => false,
    };
    if not_docker {
        ConnectError::NotDocker {
            host: host.to_owned(),
            detail: super::error_chain(&source),
        }
    } else {
        ConnectError::Unreachable {
            host: host.to_owned(),
            source,
        }
    }
}

/// What a failed first call says about TLS, if it is a TLS failure: a certificate nobody
/// trusts (ours or the Engine's), plain HTTP sent to a TLS port, or TLS sent to a plain
/// one.
fn tls_failure(e: &bollard::errors::Error, tls: bool) -> Option<String> {
    let chain = super::error_chain(e);
    if chain.contains("HTTP request to an HTTPS server") {
        return Some(format!(
            "{chain} (the Engine serves TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)"
        ));
    }
    let words = [
        "certificate",
        "UnknownIssuer",
        "BadCertificate",
        "CertificateRequired",
        "InvalidContentType",
        "InvalidMessage",
        "corrupt message",
    ];
    let broken = words.iter().any(|word| chain.contains(word));
    (tls && broken).then(|| {
        if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
            format!("{chain} (the Engine does not speak TLS there: unset DOCKER_TLS_VERIFY, or use its TLS port, 2376)")
        } else {
            chain
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_bad_input_not_a_transient_failure() {
        let err = connect(Some("ftp://example")).await.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("ftp://example"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_transient() {
        let err = connect(Some("unix:///nonexistent/docker.sock"))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn tls_is_chosen_as_the_docker_cli_chooses_it() {
        let home = Path::new("/home/op");
        let t = |host, verify, path| transport(host, verify, path, Some(home));
        let certs = Transport::Tls(PathBuf::from("/certs"));
        let home_certs = Transport::Tls(home.join(".docker"));
        assert_eq!(t("tcp://m1:2376", Some("1"), Some("/certs")), certs);
        // Any non-empty value, 0 included (cli/flags: Getenv(...) != "").
        assert_eq!(t("tcp://m1:2376", Some("0"), Some("/certs")), certs);
        assert_eq!(t("tcp://m1:2376", Some("1"), None), home_certs);
        assert_eq!(t("tcp://m1:2376", Some("1"), Some("")), home_certs);
        assert_eq!(
            t("tcp://m1:2375", Some(""), Some("/certs")),
            Transport::Http
        );
        assert_eq!(t("tcp://m1:2375", None, None), Transport::Http);
        assert_eq!(t("https://m1:2376", None, None), home_certs);
        assert_eq!(
            t("unix:///var/run/docker.sock", Some("1"), None),
            Transport::Other
        );
    }
}
