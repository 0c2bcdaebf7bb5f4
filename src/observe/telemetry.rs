//! Volume telemetry from the Prometheus HTTP API: one instant query per quantity and
//! volume, with the PromQL from the policy, all sent at once under one deadline.

use std::time::Duration;

use futures::future::join_all;
use serde::Deserialize;

pub use super::prometheus_client::ClientError;
use crate::config::{VolumeQueries, VolumesPolicy};
use crate::model::VolumeTelemetry;

/// Longest wait for all of one reconcile's telemetry. The manager checks share the
/// reconcile: a slow Prometheus may delay them by this much, never more. A healthy
/// Prometheus answers an instant query in milliseconds.
pub const TELEMETRY_DEADLINE: Duration = Duration::from_secs(3);

/// Reads volume telemetry from one Prometheus server.
#[derive(Debug, Clone)]
pub struct Telemetry {
    client: reqwest::Client,
    base: String,
    queries: VolumeQueries,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

impl Telemetry {
    /// A reader for the policy's Prometheus, or `None` when no URL is configured. Reads
    /// the CA and secret files of `volumes.prometheus_http_config` now: a file that cannot
    /// be used is bad input at start, not "telemetry missing" for ever.
    pub fn new(policy: &VolumesPolicy) -> Result<Option<Self>, ClientError> {
        if policy.prometheus_url.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            client: super::prometheus_client::client(
                &policy.prometheus_http_config,
                TELEMETRY_DEADLINE * 2,
            )?,
            base: policy.prometheus_url.trim_end_matches('/').to_owned(),
            queries: policy.queries.clone(),
        }))
    }

    /// Telemetry of each EFS file system, with the I/O wait of its hosts: every query at
    /// once, under one deadline [`TELEMETRY_DEADLINE`] from now. A query that has not
    /// answered by then is missing (with why); the answers that came are kept, so one slow
    /// query does not blind the others. Returns one entry per request, in order.
    pub async fn volumes(&self, requests: &[(String, Vec<String>)]) -> Vec<VolumeTelemetry> {
        let deadline = tokio::time::Instant::now() + TELEMETRY_DEADLINE;
        join_all(
            requests
                .iter()
                .map(|(id, hosts)| self.volume(id, hosts, deadline)),
        )
        .await
    }

    /// Telemetry of one EFS file system, with the I/O wait of `hosts`.
    async fn volume(
        &self,
        efs_id: &str,
        hosts: &[String],
        deadline: tokio::time::Instant,
    ) -> VolumeTelemetry {
        let fill = |q: &str| q.replace("{fs}", efs_id);
        let q = &self.queries;
        let [credits, permitted, metered_rate, storage] =
            [&q.credits, &q.permitted, &q.metered_rate, &q.storage].map(|query| fill(query));
        let (credits, permitted, metered_rate, storage, iowait) = futures::join!(
            self.scalar_by(&credits, deadline),
            self.scalar_by(&permitted, deadline),
            self.scalar_by(&metered_rate, deadline),
            self.scalar_by(&storage, deadline),
            join_all(hosts.iter().map(|host| {
                let query = fill(&q.iowait).replace("{node}", host);
                async move { (host.clone(), self.scalar_by(&query, deadline).await) }
            }))
        );
        let mut errors = Vec::new();
        let [credits, permitted, metered_rate, storage] =
            [credits, permitted, metered_rate, storage].map(|result| match result {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    None
                }
            });
        let iowait = iowait
            .into_iter()
            .filter_map(|(host, v)| Some((host, v.ok()??)))
            .collect();
        VolumeTelemetry {
            efs_id: efs_id.to_owned(),
            credits,
            permitted,
            metered_rate,
            storage,
            iowait,
            error: (!errors.is_empty()).then(|| {
                // One cause, once: a refused certificate fails every query alike.
                errors.dedup();
                errors.join("; ")
            }),
        }
    }

    /// The first sample of an instant query; `None` when the query matches nothing.
    /// [`Self::scalar`], or an error once `deadline` passes.
    async fn scalar_by(
        &self,
        promql: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<f64>, String> {
        tokio::time::timeout_at(deadline, self.scalar(promql))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {}",
                    self.base,
                    humantime::format_duration(TELEMETRY_DEADLINE)
                ))
            })
    }

    async fn scalar(&self, promql: &str) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let response = self
            .client
            .get(&url)
            .query(&[("query", promql)])
            .send()
            .await
            // The chain names the cause (a certificate nobody trusted, a refused
            // connection), not only "error sending request".
            .map_err(|e| format!("{url}: {}", super::error_chain(&e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{url}: {}", super::error_chain(&e.without_url())))?;
        // Prometheus' own errors (400 for bad PromQL, 422, 503) are API answers and say
        // why; a body that is not one (401 from basic auth, a proxy's 502) is named by
        // its status.
        decode_sample(promql, &body).map_err(|e| match e {
            DecodeError::NotAnAnswer(_) if !status.is_success() => {
                format!("{url}: HTTP {status}")
            }
            e => format!("{url}: {e}"),
        })
    }
}

/// Why an answer gave no sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a Prometheus API answer (an HTML error page, a truncated body).
    #[error("not a Prometheus API answer: {0}")]
    NotAnAnswer(String),
    /// Prometheus answered with an error (`status: error`: bad PromQL, a timeout).
    #[error("{0}")]
    Api(String),
    /// The sample's value is not a number.
    #[error("sample value {0}")]
    BadValue(String),
}

/// The first sample of a Prometheus instant-query answer (`/api/v1/query`, JSON): `None`
/// when the query matched nothing. Values are returned as Prometheus wrote them, `NaN`
/// and `±Inf` included (the planner decides what is usable). Errors name the query; any
/// bytes decode without a panic.
pub fn decode_sample(promql: &str, body: &[u8]) -> Result<Option<f64>, DecodeError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| DecodeError::NotAnAnswer(format!("{promql}: {e}")))?;
    if answer.status != "success" {
        return Err(DecodeError::Api(format!(
            "{promql}: {}",
            answer.error.unwrap_or(answer.status)
        )));
    }
    let value = match answer.data {
        Some(Data::Vector(samples)) => samples.into_iter().next().map(|s| s.value.1),
        Some(Data::Scalar((_, v))) => Some(v),
        _ => None,
    };
    value
        .map(|v| {
            v.parse::<f64>()
                .map_err(|e| DecodeError::BadValue(format!("{promql}: {v:?}: {e}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of `app` served as Prometheus on a free local port.
    async fn reader_of(app: axum::Router) -> Telemetry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = VolumesPolicy {
            prometheus_url: format!("http://{addr}"),
            ..Default::default()
        };
        Telemetry::new(&policy).unwrap().unwrap()
    }

    /// A Prometheus on a free local port whose every query takes `delay` to answer.
    async fn prometheus_answering_after(delay: Duration, answer: &'static str) -> Telemetry {
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move || async move {
                tokio::time::sleep(delay).await;
                answer
            }),
        );
        reader_of(app).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_prometheus_that_hangs_costs_one_deadline_not_one_per_query() {
        let reader = prometheus_answering_after(Duration::from_secs(60), "{}").await;
        let start = tokio::time::Instant::now();
        let got = reader
            .volumes(&[
                ("fs-1".into(), vec!["w1".into(), "w2".into()]),
                ("fs-2".into(), Vec::new()),
            ])
            .await;
        // One deadline for all seven queries (paused time: exactly when it fires).
        let took = start.elapsed();
        assert!(
            took >= TELEMETRY_DEADLINE && took < TELEMETRY_DEADLINE + Duration::from_millis(100),
            "{took:?}"
        );
        assert_eq!(got.len(), 2);
        for t in got {
            assert_eq!(
                (t.credits, t.permitted, t.metered_rate, t.storage),
                (None, None, None, None)
            );
            assert!(
                t.error
                    .as_deref()
                    .is_some_and(|e| e.contains("did not answer within 3s")),
                "{:?}",
                t.error
            );
        }
    }

    /// A Prometheus whose I/O-wait queries hang and whose other queries answer 42.
    async fn prometheus_with_a_hanging_iowait() -> Telemetry {
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move {
                    if q.get("query").is_some_and(|q| q.contains("node_cpu")) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42"]}]}}"#
                },
            ),
        );
        reader_of(app).await
    }

    #[tokio::test]
    async fn one_slow_query_does_not_hide_the_answers_that_came() {
        let reader = prometheus_with_a_hanging_iowait().await;
        let got = reader.volumes(&[("fs-1".into(), vec!["w1".into()])]).await;
        assert_eq!(got[0].credits, Some(42.0), "{got:?}");
        assert_eq!(got[0].storage, Some(42.0), "{got:?}");
        assert!(got[0].iowait.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn prometheus_error_answers_keep_their_reason_whatever_the_status() {
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected identifier"}"#,
                )
            }),
        );
        let reader = reader_of(app).await;
        let got = reader.volumes(&[("fs-1".into(), Vec::new())]).await;
        let error = got[0].error.clone().unwrap_or_default();
        assert!(error.contains("parse error"), "{error}");
    }

    #[tokio::test]
    async fn nan_and_infinite_samples_reach_the_planner_as_such() {
        let reader = prometheus_answering_after(
            Duration::ZERO,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#,
        )
        .await;
        let got = reader.volumes(&[("fs-1".into(), Vec::new())]).await;
        assert!(got[0].credits.is_some_and(f64::is_nan), "{got:?}");
    }

    #[test]
    fn vector_and_scalar_answers_decode() {
        let v: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"42"]}]}}"#,
        )
        .unwrap();
        assert!(matches!(v.data, Some(Data::Vector(ref s)) if s[0].value.1 == "42"));
        let s: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"7"]}}"#,
        )
        .unwrap();
        assert!(matches!(s.data, Some(Data::Scalar((_, ref v))) if v == "7"));
    }
}
