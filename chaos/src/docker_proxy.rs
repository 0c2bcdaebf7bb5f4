//! A faulty Docker API: a unix socket in front of a node's real one that forwards every
//! request, or answers as a sick Engine would. Point a client's `DOCKER_HOST` at
//! [`DockerProxy::docker_host`], then [`DockerProxy::set`] a [`DockerFault`] and
//! [`DockerProxy::heal`] it. It also records what passes ([`DockerProxy::take_requests`])
//! and meters it by endpoint ([`DockerProxy::meter`]: requests, bytes, latency), to check
//! and measure how much a client asks of the Engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};

use crate::error::{LabError, Result};
use crate::meter::{self, Meter};

/// What the proxy does to the calls it affects: the cluster reads (`/nodes`, `/services`,
/// `/tasks`, `/configs`, `/info`). `/_ping`, `/version` and `/events` pass, except where a
/// fault says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DockerFault {
    /// Forward everything.
    #[default]
    None,
    /// Answer with this status and an Engine-like `{"message": ...}` body.
    Status(u16),
    /// Never answer anything, `/_ping` included (a hung Engine); with paths, only those.
    Hang,
    /// Forward, but cut the body off halfway (the connection drops).
    CutBody,
    /// Forward after this delay.
    Slow(Duration),
    /// End every event stream at once (the reads pass).
    DropEvents,
    /// Claim an Engine API version this old on `/version` and `/_ping`.
    OldVersion(String),
    /// Forward everything until a write (not `GET`/`HEAD`) to a path starting with this one
    /// has been answered; from then on, never answer the paths the fault is set on (a
    /// process that stops right after one write: kill it then, and the writes it would
    /// have made next are never made).
    HangAfterWrite(String),
}

/// A fault and the paths it hits (empty: the cluster reads, see [`DockerFault`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Injected {
    fault: DockerFault,
    only: Vec<String>,
}

impl Injected {
    fn hits(&self, path: &str) -> bool {
        if self.only.is_empty() {
            affected(path)
        } else {
            self.only.iter().any(|p| path.starts_with(p.as_str()))
        }
    }
}

#[derive(Clone)]
struct Shared {
    upstream: PathBuf,
    fault: Arc<tokio::sync::watch::Sender<Injected>>,
    client: Client<UnixConnector, Body>,
    requests: Arc<std::sync::Mutex<Vec<Seen>>>,
    /// A [`DockerFault::HangAfterWrite`]'s write has been answered.
    tripped: Arc<std::sync::atomic::AtomicBool>,
    meter: Meter,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, `DELETE`...
    pub method: String,
    /// The path without the API version (`/nodes`, `/configs/ID/update`).
    pub path: String,
}

impl Seen {
    /// Whether it changes something (anything but GET and HEAD).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

/// A running proxy. On drop it stops accepting connections and removes its socket;
/// connections already open end with their clients (a hung answer stays hung).
pub struct DockerProxy {
    socket: PathBuf,
    fault: Arc<tokio::sync::watch::Sender<Injected>>,
    requests: Arc<std::sync::Mutex<Vec<Seen>>>,
    tripped: Arc<std::sync::atomic::AtomicBool>,
    meter: Meter,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DockerProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProxy")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl DockerProxy {
    /// Listens on `socket`, forwarding to the Engine at `upstream` (both unix sockets).
    pub async fn start(upstream: &Path, socket: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener =
            tokio::net::UnixListener::bind(socket).map_err(LabError::io("listen", socket))?;
        let fault = Arc::new(tokio::sync::watch::Sender::new(Injected::default()));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let meter = Meter::default();
        let shared = Shared {
            upstream: upstream.to_owned(),
            fault: fault.clone(),
            client: Client::unix(),
            requests: requests.clone(),
            tripped: tripped.clone(),
            meter: meter.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tracing::info!(socket = %socket.display(), upstream = %upstream.display(), "Docker fault proxy up");
        Ok(Self {
            socket: socket.to_owned(),
            fault,
            requests,
            tripped,
            meter,
            server,
        })
    }

    /// `unix://` URL of the proxy's socket.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// From now on, behave as `fault` says (on the cluster reads).
    pub fn set(&self, fault: DockerFault) {
        self.set_on(fault, &[]);
    }

    /// From now on, behave as `fault` says on the paths starting with one of `only`
    /// (without the API version: `/tasks`, `/configs`); empty: the cluster reads.
    pub fn set_on(&self, fault: DockerFault, only: &[&str]) {
        tracing::info!(?fault, ?only, "Docker fault proxy: fault");
        self.tripped
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.fault.send_replace(Injected {
            fault,
            only: only.iter().map(|p| (*p).to_owned()).collect(),
        });
    }

    /// Forward everything again.
    pub fn heal(&self) {
        self.set(DockerFault::None);
    }

    /// Whether a [`DockerFault::HangAfterWrite`]'s write has been answered (the paths it
    /// is set on hang from then on).
    pub fn tripped(&self) -> bool {
        self.tripped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The request meter: every request answered, by endpoint (requests, bytes, latency).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Every request seen since the start or the last [`DockerProxy::take_requests`], and
    /// forgets them.
    pub fn take_requests(&self) -> Vec<Seen> {
        self.requests
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Whether `path` (without the `/vX.Y` prefix) is a cluster read the faults hit.
fn affected(path: &str) -> bool {
    ["/nodes", "/services", "/tasks", "/configs", "/info"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The path without a leading API version (`/v1.41/nodes` → `/nodes`).
fn unversioned(path: &str) -> &str {
    match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.find('/').map(|i| &rest[i..]).unwrap_or(path)
        }
        _ => path,
    }
}

fn engine_error(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"message":"{message}"}}"#)))
        .unwrap_or_default()
}

/// Answers `request` (see [`answer`]) and meters it: its body bytes, the response's body
/// bytes and the time until the response's last byte.
async fn handle(State(shared): State<Shared>, request: Request) -> Response<Body> {
    let since = Instant::now();
    let endpoint = meter::endpoint(request.method().as_str(), unversioned(request.uri().path()));
    let bytes_in = HttpBody::size_hint(request.body()).exact().unwrap_or(0);
    let meter = shared.meter.clone();
    let (parts, body) = answer(shared, request).await.into_parts();
    let counted = meter.counting(endpoint, bytes_in, since, body.into_data_stream());
    Response::from_parts(parts, Body::from_stream(counted))
}

async fn answer(shared: Shared, request: Request) -> Response<Body> {
    let injected = shared.fault.borrow().clone();
    let path = unversioned(request.uri().path()).to_owned();
    if let Ok(mut seen) = shared.requests.lock() {
        seen.push(Seen {
            method: request.method().to_string(),
            path: path.clone(),
        });
    }
    let hit = injected.hits(&path);
    let fault = injected.fault;
    let write = !matches!(request.method().as_str(), "GET" | "HEAD");
    match &fault {
        DockerFault::HangAfterWrite(_)
            if hit && shared.tripped.load(std::sync::atomic::Ordering::SeqCst) =>
        {
            return std::future::pending::<Response<Body>>().await
        }
        DockerFault::Hang if injected.only.is_empty() || hit => {
            return std::future::pending::<Response<Body>>().await
        }
        DockerFault::Status(code) if hit => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return engine_error(status, "fault proxy: injected error");
        }
        DockerFault::Slow(delay) if hit => tokio::time::sleep(*delay).await,
        DockerFault::DropEvents if path.starts_with("/events") => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::empty())
                .unwrap_or_default();
        }
        DockerFault::OldVersion(version) if path == "/version" || path == "/_ping" => {
            let body = if path == "/version" {
                format!(
                    r#"{{"Version":"1.12.6","ApiVersion":"{version}","MinAPIVersion":"{version}","Os":"linux","Arch":"amd64"}}"#
                )
            } else {
                "OK".to_owned()
            };
            return Response::builder()
                .status(StatusCode::OK)
                .header("Api-Version", version.as_str())
                .body(Body::from(body))
                .unwrap_or_default();
        }
        _ => {}
    }
    let response = match forward(&shared, request).await {
        Ok(r) => r,
        Err(e) => return engine_error(StatusCode::BAD_GATEWAY, &format!("fault proxy: {e}")),
    };
    if fault == DockerFault::CutBody && hit {
        return cut(response).await;
    }
    if let DockerFault::HangAfterWrite(trigger) = &fault {
        if write && path.starts_with(trigger.as_str()) && response.status().is_success() {
            tracing::info!(%path, "Docker fault proxy: the write passed; hanging from now on");
            shared
                .tripped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    if path.starts_with("/events") {
        // An event stream open before the fault ends when it comes.
        let mut changes = shared.fault.subscribe();
        let dropped = Box::pin(async move {
            let _ = changes
                .wait_for(|f| f.fault == DockerFault::DropEvents)
                .await;
        });
        let (parts, body) = response.into_parts();
        let stream = futures::StreamExt::take_until(body.into_data_stream(), dropped);
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    response
}

async fn forward(shared: &Shared, request: Request) -> std::result::Result<Response<Body>, String> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    parts.uri = hyperlocal::Uri::new(&shared.upstream, &path_and_query).into();
    let response = shared
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The response with its body cut off halfway: the length promised, half sent, then the
/// connection dropped.
async fn cut(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return engine_error(StatusCode::BAD_GATEWAY, "fault proxy: upstream body");
    };
    let bytes = collected.to_bytes();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, bytes.len().into());
    let stream = futures::stream::iter([
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::other("fault proxy: body cut")),
    ]);
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_version_prefix_is_ignored() {
        assert_eq!(unversioned("/v1.41/nodes"), "/nodes");
        assert_eq!(unversioned("/nodes"), "/nodes");
        assert_eq!(unversioned("/version"), "/version");
        assert_eq!(unversioned("/volumes/x"), "/volumes/x");
        assert_eq!(unversioned("/v1.41/tasks?filters=x"), "/tasks?filters=x");
        assert!(affected("/services/abc") && !affected("/_ping") && !affected("/events"));
    }
}
