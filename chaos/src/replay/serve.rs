//! Serves a generated [`Swarm`] on a unix socket as a manager's Engine would: the reads
//! swarm-warden makes, with the Engine's filters, any API version prefix, and an event
//! stream that stays open and quiet. A filter the replay does not implement is refused
//! (400) rather than ignored, so a client that starts using one fails loudly instead of
//! being measured against the wrong answer. Writes are refused (the replay is read-only:
//! run swarm-warden against it with `--dry-run`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, Method, Response, StatusCode, Uri};
use bytes::Bytes;
use serde_json::Value;

use super::fixture::Swarm;
use crate::error::{LabError, Result};

/// Engine filters: key → values (values of one key are alternatives, keys all apply).
pub(super) type Filters = BTreeMap<String, Vec<String>>;

/// Parses the `filters` query parameter: `{"key":["v"]}` or `{"key":{"v":true}}` (the
/// docker CLI's form).
pub(super) fn parse_filters(raw: Option<&str>) -> std::result::Result<Filters, String> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Filters::new());
    };
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filters: {e}"))?;
    let Value::Object(map) = value else {
        return Err("invalid filters: not an object".into());
    };
    map.into_iter()
        .map(|(key, values)| {
            let values = match values {
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>(),
                Value::Object(set) => Some(set.into_iter().map(|(k, _)| k).collect()),
                _ => None,
            };
            values
                .map(|v| (key.clone(), v))
                .ok_or_else(|| format!("invalid filters: values of {key}"))
        })
        .collect()
}

/// The task states the Engine accepts in a `desired-state` filter (SwarmKit's).
const TASK_STATES: &[&str] = &[
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

/// Refuses keys outside `allowed`, as the Engine does (`invalid filter 'x'`).
fn only(filters: &Filters, allowed: &[&str]) -> std::result::Result<(), String> {
    match filters.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "invalid filter '{key}' (the replay implements {allowed:?})"
        )),
        None => Ok(()),
    }
}

/// Whether `labels` (a JSON object) has every `key` or `key=value` of `wanted`.
fn labels_match(labels: &Value, wanted: &[String]) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
        None => labels.get(w.as_str()).is_some(),
    })
}

fn any_prefix(values: Option<&Vec<String>>, of: &str) -> bool {
    values.is_none_or(|vs| vs.iter().any(|v| of.starts_with(v.as_str())))
}

fn any_equal(values: Option<&Vec<String>>, of: &str) -> bool {
    values.is_none_or(|vs| vs.iter().any(|v| v == of))
}

/// Services to remove once the service list has been answered, and those removed.
#[derive(Debug, Default)]
struct Removals {
    after_next_listing: Vec<String>,
    gone: HashSet<u32>,
}

/// Lookups the filters need, built once.
#[derive(Debug)]
struct Index {
    service: HashMap<String, u32>,
    node: HashMap<String, u32>,
}

impl Index {
    fn new(swarm: &Swarm) -> Self {
        let mut service = HashMap::new();
        for (i, s) in swarm.services.iter().enumerate() {
            for key in [&s["ID"], &s["Spec"]["Name"]] {
                if let Some(k) = key.as_str() {
                    service.insert(k.to_owned(), i as u32);
                }
            }
        }
        let mut node = HashMap::new();
        for (i, n) in swarm.nodes.iter().enumerate() {
            for key in [&n["ID"], &n["Description"]["Hostname"]] {
                if let Some(k) = key.as_str() {
                    node.insert(k.to_owned(), i as u32);
                }
            }
        }
        Self { service, node }
    }

    /// Indices named by `values`, each resolved as the Engine resolves a task filter's
    /// `service` or `node` value: a full ID or a name, else a unique ID prefix; a value
    /// naming nothing fails the whole call (404 `<kind> <value> not found`), as does an
    /// ambiguous prefix. `None` when the filter is absent.
    fn resolve(
        map: &HashMap<String, u32>,
        kind: &str,
        values: Option<&Vec<String>>,
        gone: &HashSet<u32>,
    ) -> std::result::Result<Option<HashSet<u32>>, (StatusCode, String)> {
        let Some(values) = values else {
            return Ok(None);
        };
        let mut found = HashSet::new();
        for v in values {
            let matches: HashSet<u32> = match map.get(v) {
                Some(i) => [*i].into(),
                None => map
                    .iter()
                    .filter(|(k, _)| k.starts_with(v.as_str()))
                    .map(|(_, i)| *i)
                    .collect(),
            };
            let matches: Vec<u32> = matches.into_iter().filter(|i| !gone.contains(i)).collect();
            match matches.as_slice() {
                [] => return Err((StatusCode::NOT_FOUND, format!("{kind} {v} not found"))),
                [one] => {
                    found.insert(*one);
                }
                many => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("{kind} {v} is ambiguous ({} matches found)", many.len()),
                    ))
                }
            }
        }
        Ok(Some(found))
    }
}

pub(super) struct Served {
    swarm: Swarm,
    index: Index,
    /// Services removed (see [`Replay::remove_after_next_listing`]).
    removals: std::sync::Mutex<Removals>,
    /// The captured Engine's API version, sent as the `Api-Version` header.
    api_version: String,
}

pub(super) type Answer = std::result::Result<Bytes, (StatusCode, String)>;

fn json_list(items: impl Iterator<Item = Value>) -> Answer {
    serde_json::to_vec(&items.collect::<Vec<_>>())
        .map(Bytes::from)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn bad(message: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message)
}

impl Served {
    fn nodes(&self, f: &Filters) -> Answer {
        only(f, &["id", "name", "role"]).map_err(bad)?;
        if f.is_empty() {
            return Ok(self.swarm.nodes_json.clone());
        }
        json_list(
            self.swarm
                .nodes
                .iter()
                .filter(|n| any_prefix(f.get("id"), n["ID"].as_str().unwrap_or_default()))
                .filter(|n| {
                    any_equal(
                        f.get("name"),
                        n["Description"]["Hostname"].as_str().unwrap_or_default(),
                    )
                })
                .filter(|n| {
                    any_equal(
                        f.get("role"),
                        n["Spec"]["Role"].as_str().unwrap_or_default(),
                    )
                })
                .cloned(),
        )
    }

    fn gone(&self) -> HashSet<u32> {
        self.removals
            .lock()
            .map(|r| r.gone.clone())
            .unwrap_or_default()
    }

    fn services(&self, f: &Filters) -> Answer {
        let answer = self.list_services(f);
        if let Ok(mut removals) = self.removals.lock() {
            for name in std::mem::take(&mut removals.after_next_listing) {
                if let Some(i) = self.index.service.get(&name) {
                    removals.gone.insert(*i);
                }
            }
        }
        answer
    }

    fn list_services(&self, f: &Filters) -> Answer {
        only(f, &["id", "name", "label", "mode"]).map_err(bad)?;
        let gone = self.gone();
        if f.is_empty() && gone.is_empty() {
            return Ok(self.swarm.services_json.clone());
        }
        json_list(
            self.swarm
                .services
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(&(*i as u32)))
                .map(|(_, s)| s)
                .filter(|s| any_prefix(f.get("id"), s["ID"].as_str().unwrap_or_default()))
                .filter(|s| {
                    any_prefix(
                        f.get("name"),
                        s["Spec"]["Name"].as_str().unwrap_or_default(),
                    )
                })
                .filter(|s| {
                    f.get("label")
                        .is_none_or(|l| labels_match(&s["Spec"]["Labels"], l))
                })
                .filter(|s| {
                    f.get("mode").is_none_or(|modes| {
                        modes.iter().any(|m| match m.as_str() {
                            "replicated" => s["Spec"]["Mode"].get("Replicated").is_some(),
                            "global" => s["Spec"]["Mode"].get("Global").is_some(),
                            _ => false,
                        })
                    })
                })
                .cloned(),
        )
    }

    fn tasks(&self, f: &Filters) -> Answer {
        only(f, &["id", "service", "node", "desired-state"]).map_err(bad)?;
        if let Some(states) = f.get("desired-state") {
            if let Some(s) = states.iter().find(|s| !TASK_STATES.contains(&s.as_str())) {
                return Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Invalid desired-state filter: '{s}'"),
                ));
            }
            // Every generated task is desired running.
            if !states.iter().any(|s| s == "running") {
                return json_list(std::iter::empty());
            }
        }
        let gone = self.gone();
        let services = Index::resolve(&self.index.service, "service", f.get("service"), &gone)?;
        let nodes = Index::resolve(&self.index.node, "node", f.get("node"), &HashSet::new())?;
        let ids = f.get("id");
        let mut body = vec![b'['];
        let selected = self
            .swarm
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, row)| !gone.contains(&row.service))
            .filter(|(_, row)| services.as_ref().is_none_or(|s| s.contains(&row.service)))
            .filter(|(_, row)| nodes.as_ref().is_none_or(|n| n.contains(&row.node)))
            .filter(|(i, _)| ids.is_none() || any_prefix(ids, &Swarm::task_id(*i)));
        for (n, (i, _)) in selected.enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&self.swarm.task_json[i]);
        }
        body.push(b']');
        Ok(Bytes::from(body))
    }

    fn configs(&self, f: &Filters) -> Answer {
        only(f, &["id", "name", "label"]).map_err(bad)?;
        json_list(
            self.swarm
                .configs
                .iter()
                .filter(|c| any_prefix(f.get("id"), c["ID"].as_str().unwrap_or_default()))
                .filter(|c| {
                    any_prefix(
                        f.get("name"),
                        c["Spec"]["Name"].as_str().unwrap_or_default(),
                    )
                })
                .filter(|c| {
                    f.get("label")
                        .is_none_or(|l| labels_match(&c["Spec"]["Labels"], l))
                })
                .cloned(),
        )
    }

    pub(super) fn answer(&self, method: &Method, path: &str, filters: Option<&str>) -> Answer {
        if method != Method::GET && method != Method::HEAD {
            return Err((
                StatusCode::NOT_IMPLEMENTED,
                "the replay is read-only (run swarm-warden with --dry-run)".into(),
            ));
        }
        let f = parse_filters(filters).map_err(bad)?;
        match path {
            "/_ping" => Ok(Bytes::from_static(b"OK")),
            "/version" => Ok(self.swarm.version.clone()),
            "/info" => Ok(self.swarm.info.clone()),
            "/nodes" => self.nodes(&f),
            "/services" => self.services(&f),
            "/tasks" => self.tasks(&f),
            "/configs" => self.configs(&f),
            other => Err((
                StatusCode::NOT_FOUND,
                format!("the replay does not serve {other}"),
            )),
        }
    }
}

/// The path without a leading API version (`/v1.47/nodes` → `/nodes`).
fn unversioned(path: &str) -> &str {
    match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.find('/').map(|i| &rest[i..]).unwrap_or(path)
        }
        _ => path,
    }
}

async fn handle(
    State(served): State<Arc<Served>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response<Body> {
    let path = unversioned(uri.path());
    if path == "/events" {
        // Quiet and open, as an Engine's stream is between changes.
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures::stream::pending::<
                std::result::Result<Bytes, std::io::Error>,
            >()))
            .unwrap_or_default();
    }
    let served_api_version = served.api_version.clone();
    let method_for_answer = method.clone();
    let path = path.to_owned();
    // Rendering 100,000 tasks is CPU work: off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        served.answer(
            &method_for_answer,
            &path,
            query.get("filters").map(String::as_str),
        )
    })
    .await
    .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())));
    let (status, body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err((status, message)) => (
            status,
            Bytes::from(serde_json::json!({ "message": message }).to_string()),
        ),
    };
    let content_type = if body.as_ref() == b"OK" {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("Api-Version", served_api_version.as_str())
        .body(Body::from(body))
        .unwrap_or_default()
}

impl Served {
    fn new(swarm: Swarm) -> Self {
        let index = Index::new(&swarm);
        let api_version = serde_json::from_slice::<Value>(&swarm.version)
            .ok()
            .and_then(|v| v["ApiVersion"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            swarm,
            index,
            removals: Default::default(),
            api_version,
        }
    }
}

/// A running replay. Dropping it stops the server and removes its socket.
pub struct Replay {
    socket: PathBuf,
    served: Arc<Served>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// Serves `swarm` on `socket`.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start(swarm: Swarm, socket: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener =
            tokio::net::UnixListener::bind(socket).map_err(LabError::io("listen", socket))?;
        let served = Arc::new(Served::new(swarm));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(served.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            socket: socket.to_owned(),
            served,
            server,
        })
    }

    /// Removes the service `name` right after the next service list is answered: the race
    /// of a `docker service rm` (a stack redeploy) between a client's service list and its
    /// task lists, made certain. From then on it is listed nowhere, and a task filter
    /// naming it fails as the Engine's does (404).
    pub fn remove_after_next_listing(&self, name: &str) {
        if let Ok(mut removals) = self.served.removals.lock() {
            removals.after_next_listing.push(name.to_owned());
        }
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://` URL of the socket.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
pub(super) mod tests_support {
    /// The answers of `swarm`, without a socket.
    pub fn served(swarm: super::Swarm) -> super::Served {
        super::Served::new(swarm)
    }
}
