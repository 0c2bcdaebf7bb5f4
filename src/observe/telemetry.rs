//! Volume telemetry from the Prometheus HTTP API: one instant query per quantity and
//! volume, with the PromQL from the policy, all sent at once under one deadline.

use std::collections::BTreeMap;
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
    /// once, and what has not answered within [`TELEMETRY_DEADLINE`] is missing (with
    /// why). Returns one entry per request, in order.
    pub async fn volumes(&self, requests: &[(String, Vec<String>)]) -> Vec<VolumeTelemetry> {
        let all = join_all(requests.iter().map(|(id, hosts)| self.volume(id, hosts)));
        match tokio::time::timeout(TELEMETRY_DEADLINE, all).await {
            Ok(answers) => answers,
            Err(_) => requests
                .iter()
                .map(|(id, _)| VolumeTelemetry {
                    efs_id: id.clone(),
                    credits: None,
                    permitted: None,
                    metered_rate: None,
                    storage: None,
                    iowait: BTreeMap::new(),
                    error: Some(format!(
                        "{} did not answer within {}",
                        self.base,
                        humantime::format_duration(TELEMETRY_DEADLINE)
                    )),
                })
                .collect(),
        }
    }

    /// Telemetry of one EFS file system, with the I/O wait of `hosts`.
    async fn volume(&self, efs_id: &str, hosts: &[String]) -> VolumeTelemetry {
        let fill = |q: &str| q.replace("{fs}", efs_id);
        let q = &self.queries;
        let [credits, permitted, metered_rate, storage] =
            [&q.credits, &q.permitted, &q.metered_rate, &q.storage].map(|query| fill(query));
        let (credits, permitted, metered_rate, storage, iowait) = futures::join!(
            self.scalar(&credits),
            self.scalar(&permitted),
            self.scalar(&metered_rate),
            self.scalar(&storage),
            join_all(hosts.iter().map(|host| {
                let query = fill(&q.iowait).replace("{node}", host);
                async move { (host.clone(), self.scalar(&query).await) }
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
            .map_err(|e| format!("{url}: {}", error_chain(&e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e.without_url())))?;
        // Prometheus' own errors (400, 422, 503) are API answers; anything else that is
        // not (401 from basic auth, a proxy's 502) is named by its status.
        decode_sample(promql, &body).map_err(|e| {
            if status.is_success() {
                format!("{url}: {e}")
            } else {
                format!("{url}: HTTP {status}")
            }
        })
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The first sample of a Prometheus instant-query answer (`/api/v1/query`, JSON): `None`
/// when the query matched nothing. Values are returned as Prometheus wrote them, `NaN`
/// and `±Inf` included (the planner decides what is usable). Errors name the query; any
/// bytes decode without a panic.
pub fn decode_sample(promql: &str, body: &[u8]) -> Result<Option<f64>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("{promql}: not a Prometheus API answer: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "{promql}: {}",
            answer.error.unwrap_or(answer.status)
        ));
    }
    let value = match answer.data {
        Some(Data::Vector(samples)) => samples.into_iter().next().map(|s| s.value.1),
        Some(Data::Scalar((_, v))) => Some(v),
        _ => None,
    };
    value
        .map(|v| {
            v.parse::<f64>()
                .map_err(|e| format!("{promql}: {v:?}: {e}"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Prometheus on a free local port whose every query takes `delay` to answer.
    async fn prometheus_answering_after(delay: Duration, answer: &'static str) -> Telemetry {
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move || async move {
                tokio::time::sleep(delay).await;
                answer
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = VolumesPolicy {
            prometheus_url: format!("http://{addr}"),
            ..Default::default()
        };
        Telemetry::new(&policy).unwrap().unwrap()
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
        assert!(
            start.elapsed() < TELEMETRY_DEADLINE * 2,
            "{:?}",
            start.elapsed()
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
