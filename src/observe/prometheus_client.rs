//! The HTTP client for Prometheus: rustls (with ring, as bollard uses) trusting the
//! system's roots plus `tls_config.ca_file`, and the basic-auth or bearer credential read
//! from its file. Credentials go out as sensitive headers and are never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::PrometheusHttpConfig;

/// Why the Prometheus client cannot be built: bad input (exit 2), named by file, never by
/// content.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file named in `volumes.prometheus_http_config` cannot be read.
    #[error("volumes.prometheus_http_config.{key}: {path}: {source}")]
    Unreadable {
        /// The policy key naming it.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("volumes.prometheus_http_config.tls_config.ca_file: {path}: {detail}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A credential that cannot go into an HTTP header (a control character, say).
    #[error("volumes.prometheus_http_config.{key}: {path}: not usable in an HTTP header")]
    BadCredential {
        /// The policy key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// TLS or the HTTP client could not be set up.
    #[error("Prometheus client: {0}")]
    Setup(String),
}

/// A client for Prometheus' HTTP API with `timeout` per request.
pub(super) fn client(
    config: &PrometheusHttpConfig,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let mut headers = HeaderMap::new();
    if let Some(credential) = credential(config)? {
        headers.insert(AUTHORIZATION, credential);
    }
    builder(&config.tls_config.ca_file)?
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))
}

/// Every HTTP client of swarm-warden starts here: reqwest is built without a process-wide
/// TLS provider (its default would panic), so each client gets rustls with ring and the
/// system's roots, plus those of `ca_file` (empty: none).
pub fn builder(ca_file: &str) -> Result<reqwest::ClientBuilder, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls))
}

/// The system's roots (as the docker CLI and curl trust them) plus those of `ca_file`.
fn roots(ca_file: &str) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    // A missing or partly unreadable system store is not fatal: a private CA may be all
    // that is needed.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if ca_file.is_empty() {
        return Ok(roots);
    }
    let path = PathBuf::from(ca_file);
    let pem = std::fs::read(&path).map_err(|source| ClientError::Unreadable {
        key: "tls_config.ca_file",
        path: path.clone(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::BadCa {
            path: path.clone(),
            detail: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ClientError::BadCa {
            path,
            detail: "no CERTIFICATE in it".into(),
        });
    }
    for cert in certs {
        roots.add(cert).map_err(|e| ClientError::BadCa {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The `Authorization` header from the configured credential file, marked sensitive.
fn credential(config: &PrometheusHttpConfig) -> Result<Option<HeaderValue>, ClientError> {
    let (key, path, value) = if !config.basic_auth.username.is_empty() {
        let key = "basic_auth.password_file";
        let password = if config.basic_auth.password_file.is_empty() {
            String::new()
        } else {
            secret(key, &config.basic_auth.password_file)?
        };
        let pair = format!("{}:{password}", config.basic_auth.username);
        (
            key,
            &config.basic_auth.password_file,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        )
    } else if !config.authorization.credentials_file.is_empty() {
        let key = "authorization.credentials_file";
        let token = secret(key, &config.authorization.credentials_file)?;
        (
            key,
            &config.authorization.credentials_file,
            format!("Bearer {token}"),
        )
    } else {
        return Ok(None);
    };
    let mut header = HeaderValue::from_str(&value).map_err(|_| ClientError::BadCredential {
        key,
        path: PathBuf::from(path),
    })?;
    header.set_sensitive(true);
    Ok(Some(header))
}

/// A secret file's content without trailing newlines (`echo x > file` writes one).
fn secret(key: &'static str, path: &str) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Unreadable {
        key,
        path: PathBuf::from(path),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, BasicAuth, TlsConfig};

    #[test]
    fn a_missing_or_empty_ca_file_is_named_and_nothing_secret_is_printed() {
        let dir = std::env::temp_dir().join(format!("sw-prom-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = ClientConfigBuilder::ca(&dir.join("nope.pem"));
        let err = client(&missing, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_config.ca_file") && err.contains("nope.pem"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        let err = client(&ClientConfigBuilder::ca(&empty), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let token = dir.join("token");
        std::fs::write(&token, "t0ps3cret\u{7}\n").unwrap();
        let bad = PrometheusHttpConfig {
            authorization: Authorization {
                credentials_file: token.display().to_string(),
            },
            ..Default::default()
        };
        let err = client(&bad, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credentials_file") && !err.contains("t0ps3cret"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_credential_header_is_sensitive_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("sw-prom-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let config = PrometheusHttpConfig {
            basic_auth: BasicAuth {
                username: "warden".into(),
                password_file: password.display().to_string(),
            },
            ..Default::default()
        };
        let header = credential(&config).unwrap().unwrap();
        assert!(header.is_sensitive());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("warden:s3cret")
        );
        assert_eq!(header.to_str().unwrap(), expected);
        assert!(!format!("{header:?}").contains("Basic"), "{header:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Configs for the tests.
    struct ClientConfigBuilder;

    impl ClientConfigBuilder {
        fn ca(path: &std::path::Path) -> PrometheusHttpConfig {
            PrometheusHttpConfig {
                tls_config: TlsConfig {
                    ca_file: path.display().to_string(),
                },
                ..Default::default()
            }
        }
    }
}
