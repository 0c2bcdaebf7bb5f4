//! How swarm-warden reaches its Prometheus, in Prometheus' own terms (a scrape config's
//! `tls_config`, `basic_auth`, `authorization`). Secrets are never in the policy: only
//! the paths of the files holding them (a Swarm secret under `/run/secrets/`, say).

use serde::{Deserialize, Serialize};

/// `volumes.prometheus_http_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, try_from = "HttpConfigFields")]
pub struct PrometheusHttpConfig {
    /// TLS for an `https://` URL.
    pub tls_config: TlsConfig,
    /// HTTP basic authentication (Prometheus' `--web.config.file` `basic_auth_users`).
    pub basic_auth: BasicAuth,
    /// An `Authorization: Bearer` credential (a reverse proxy's token).
    pub authorization: Authorization,
}

/// `tls_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted besides the system's roots (a private CA).
    pub ca_file: String,
}

/// `basic_auth`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    /// The user name; empty: no basic authentication.
    pub username: String,
    /// File holding the password (trailing newlines are ignored).
    pub password_file: String,
}

/// `authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    /// File holding the bearer token (trailing newlines are ignored); empty: none.
    pub credentials_file: String,
}

/// [`PrometheusHttpConfig`] as written, before the check across its fields.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct HttpConfigFields {
    tls_config: TlsConfig,
    basic_auth: BasicAuth,
    authorization: Authorization,
}

impl TryFrom<HttpConfigFields> for PrometheusHttpConfig {
    type Error = String;
    fn try_from(f: HttpConfigFields) -> Result<Self, String> {
        let basic = !f.basic_auth.username.is_empty();
        if !basic && !f.basic_auth.password_file.is_empty() {
            return Err("basic_auth.password_file is set without basic_auth.username".into());
        }
        if basic && !f.authorization.credentials_file.is_empty() {
            return Err(
                "basic_auth and authorization are both set; Prometheus allows one (as here)".into(),
            );
        }
        Ok(Self {
            tls_config: f.tls_config,
            basic_auth: f.basic_auth,
            authorization: f.authorization,
        })
    }
}
