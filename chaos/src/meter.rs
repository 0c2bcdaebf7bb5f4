//! The request meter: what a client asks of the Docker Engine, counted by endpoint —
//! requests, body bytes in and out, latency. [`crate::docker_proxy::DockerProxy`] feeds it
//! for every request it forwards or answers; [`Meter::take`] reads and resets it.
//!
//! An endpoint is the method and the path without the API version, its object IDs or
//! names replaced by `{id}` (`GET /nodes`, `POST /configs/{id}/update`), so that a
//! reconcile's calls add up whatever objects they touch.
//!
//! Limits: a request is counted when its response body ends or is dropped, so one that is
//! never answered (a hung Engine, a client that gives up first) is not counted; request
//! bytes are read from `Content-Length` (a chunked request body counts 0); a path whose
//! object name holds a slash (an image `org/name`) is not folded into `{id}`.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;

/// The Engine's object collections: in `/<collection>/<x>/...`, `<x>` names one object.
const COLLECTIONS: &[&str] = &[
    "configs",
    "containers",
    "images",
    "networks",
    "nodes",
    "plugins",
    "secrets",
    "services",
    "tasks",
    "volumes",
];

/// Path words after a collection that are verbs, not objects (`/services/create`).
const VERBS: &[&str] = &["create", "prune", "json", "load", "search"];

/// `GET /nodes/abc123` → `GET /nodes/{id}`: the method and the path (without the API
/// version or the query), the object named in it replaced.
pub fn endpoint(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut segments: Vec<&str> = path.split('/').collect();
    // ["", "nodes", "abc123", ...]
    if segments.len() > 2
        && COLLECTIONS.contains(&segments[1])
        && !segments[2].is_empty()
        && !VERBS.contains(&segments[2])
    {
        segments[2] = "{id}";
    }
    format!("{method} {}", segments.join("/"))
}

/// What the meter counted for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointCount {
    /// Requests answered (a response whose body ended or was dropped by the client).
    pub requests: u64,
    /// Request body bytes (headers not counted).
    pub bytes_in: u64,
    /// Response body bytes (headers not counted).
    pub bytes_out: u64,
    /// Per request, from the request's arrival to the last body byte sent (for an event
    /// stream: how long it stayed open).
    pub latencies: Vec<Duration>,
}

impl EndpointCount {
    /// The median latency (zero when nothing was counted).
    pub fn p50(&self) -> Duration {
        percentile(&self.latencies, 50)
    }

    /// The slowest request (zero when nothing was counted).
    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

fn percentile(latencies: &[Duration], p: usize) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n - 1) * p) / 100],
    }
}

/// The counts of every endpoint, by endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metered {
    /// Endpoint (`GET /nodes`) → its counts.
    pub endpoints: BTreeMap<String, EndpointCount>,
}

impl Metered {
    /// Requests to every endpoint.
    pub fn requests(&self) -> u64 {
        self.endpoints.values().map(|c| c.requests).sum()
    }

    /// Response body bytes of every endpoint.
    pub fn bytes_out(&self) -> u64 {
        self.endpoints.values().map(|c| c.bytes_out).sum()
    }

    /// Request body bytes of every endpoint.
    pub fn bytes_in(&self) -> u64 {
        self.endpoints.values().map(|c| c.bytes_in).sum()
    }

    /// Requests that change something (not `GET`/`HEAD`).
    pub fn writes(&self) -> u64 {
        self.endpoints
            .iter()
            .filter(|(e, _)| !(e.starts_with("GET ") || e.starts_with("HEAD ")))
            .map(|(_, c)| c.requests)
            .sum()
    }

    /// The counts without the endpoints `skip` says (e.g. the event stream).
    pub fn without(mut self, skip: impl Fn(&str) -> bool) -> Self {
        self.endpoints.retain(|e, _| !skip(e));
        self
    }
}

impl fmt::Display for Metered {
    /// A table: endpoint, requests, bytes out, bytes in, p50 and max latency.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>8} {:>12} {:>10} {:>10} {:>10}",
            "ENDPOINT", "REQUESTS", "BYTES OUT", "BYTES IN", "P50", "MAX"
        )?;
        for (endpoint, c) in &self.endpoints {
            writeln!(
                f,
                "{:<36} {:>8} {:>12} {:>10} {:>10} {:>10}",
                endpoint,
                c.requests,
                c.bytes_out,
                c.bytes_in,
                format!("{:.1?}", c.p50()),
                format!("{:.1?}", c.max()),
            )?;
        }
        write!(
            f,
            "{:<36} {:>8} {:>12} {:>10}",
            "total",
            self.requests(),
            self.bytes_out(),
            self.bytes_in()
        )
    }
}

/// A shared meter: the proxy counts into it, tests and benchmarks read it.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    counts: Arc<Mutex<Metered>>,
}

impl Meter {
    /// Counts one finished request.
    pub fn count(&self, endpoint: &str, bytes_in: u64, bytes_out: u64, latency: Duration) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = counts.endpoints.entry(endpoint.to_owned()).or_default();
        entry.requests += 1;
        entry.bytes_in += bytes_in;
        entry.bytes_out += bytes_out;
        entry.latencies.push(latency);
    }

    /// What was counted so far.
    pub fn read(&self) -> Metered {
        self.counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// What was counted so far, and starts again from zero.
    pub fn take(&self) -> Metered {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *counts)
    }

    /// Wraps a response body so that its bytes are counted, and the request with them once
    /// the body ends or the client drops it.
    pub fn counting<S>(
        &self,
        endpoint: String,
        bytes_in: u64,
        since: Instant,
        body: S,
    ) -> Counted<S>
    where
        S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
    {
        Counted {
            inner: body,
            meter: self.clone(),
            endpoint,
            bytes_in,
            bytes_out: 0,
            since,
            counted: false,
        }
    }
}

/// A response body being counted (see [`Meter::counting`]).
pub struct Counted<S> {
    inner: S,
    meter: Meter,
    endpoint: String,
    bytes_in: u64,
    bytes_out: u64,
    since: Instant,
    counted: bool,
}

impl<S> Counted<S> {
    fn finish(&mut self) {
        if !self.counted {
            self.counted = true;
            self.meter.count(
                &self.endpoint,
                self.bytes_in,
                self.bytes_out,
                self.since.elapsed(),
            );
        }
    }
}

impl<S> Stream for Counted<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => self.bytes_out += chunk.len() as u64,
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn endpoints_name_the_call_not_the_object() {
        assert_eq!(endpoint("GET", "/nodes"), "GET /nodes");
        assert_eq!(endpoint("GET", "/nodes/abc"), "GET /nodes/{id}");
        assert_eq!(
            endpoint("POST", "/configs/x1/update"),
            "POST /configs/{id}/update"
        );
        assert_eq!(endpoint("GET", "/tasks?filters=x"), "GET /tasks");
        assert_eq!(
            endpoint("POST", "/services/create"),
            "POST /services/create"
        );
        assert_eq!(endpoint("GET", "/_ping"), "GET /_ping");
        assert_eq!(endpoint("GET", "/nodes/"), "GET /nodes/");
    }

    #[tokio::test]
    async fn a_body_is_counted_once_whether_read_to_the_end_or_dropped() {
        let meter = Meter::default();
        let chunks = || {
            futures::stream::iter([
                Ok::<_, axum::Error>(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"de")),
            ])
        };
        let read: Vec<_> = meter
            .counting("GET /nodes".into(), 0, Instant::now(), chunks())
            .collect()
            .await;
        assert_eq!(read.len(), 2);
        let mut dropped = meter.counting("GET /nodes".into(), 7, Instant::now(), chunks());
        let _ = dropped.next().await;
        drop(dropped);
        let counted = meter.take();
        let nodes = &counted.endpoints["GET /nodes"];
        assert_eq!((nodes.requests, nodes.bytes_out, nodes.bytes_in), (2, 8, 7));
        assert_eq!(counted.requests(), 2);
        assert_eq!(meter.read(), Metered::default(), "take resets");
    }

    #[test]
    fn writes_are_what_is_not_a_read() {
        let meter = Meter::default();
        meter.count("GET /nodes", 0, 10, Duration::from_millis(2));
        meter.count(
            "POST /configs/{id}/update",
            100,
            0,
            Duration::from_millis(4),
        );
        meter.count(
            "POST /configs/{id}/update",
            100,
            0,
            Duration::from_millis(6),
        );
        let counted = meter.read();
        assert_eq!(counted.writes(), 2);
        assert_eq!(
            counted.endpoints["POST /configs/{id}/update"].p50(),
            Duration::from_millis(4)
        );
        assert_eq!(counted.without(|e| e.starts_with("POST")).requests(), 1);
    }
}
