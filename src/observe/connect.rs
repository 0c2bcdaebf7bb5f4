//! Connecting to the Docker Engine the way the docker CLI does: `--docker-host`, else
//! `DOCKER_HOST`, else the local socket; TLS for tcp when `DOCKER_TLS_VERIFY` is set, with
//! certificates from `DOCKER_CERT_PATH`.

use std::time::Duration;

use bollard::Docker;

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

/// Connects and negotiates the API version.
pub async fn connect(docker_host: Option<&str>) -> Result<Docker, ConnectError> {
    let host = docker_host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    let docker = Docker::connect_with_host(&host)
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
        })?
        .with_timeout(REQUEST_TIMEOUT);
    docker
        .negotiate_version()
        .await
        .map_err(|source| ConnectError::Unreachable { host, source })
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
}
