//! Volume telemetry from the Prometheus HTTP API: one instant query per quantity and
//! volume, with the PromQL from the policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{VolumeQueries, VolumesPolicy};
use crate::model::VolumeTelemetry;

/// Longest wait for one query: telemetry must not stall a reconcile.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A reader for the policy's Prometheus, or `None` when no URL is configured.
    pub fn new(policy: &VolumesPolicy) -> Option<Self> {
        if policy.prometheus_url.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .build()
            .ok()?;
        Some(Self {
            client,
            base: policy.prometheus_url.trim_end_matches('/').to_owned(),
            queries: policy.queries.clone(),
        })
    }

    /// Telemetry of one EFS file system, with the I/O wait of `hosts`.
    pub async fn volume(&self, efs_id: &str, hosts: &[String]) -> VolumeTelemetry {
        let fill = |q: &str| q.replace("{fs}", efs_id);
        let mut errors = Vec::new();
        let mut get = |result: Result<Option<f64>, String>| match result {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let credits = get(self.scalar(&fill(&self.queries.credits)).await);
        let permitted = get(self.scalar(&fill(&self.queries.permitted)).await);
        let metered_rate = get(self.scalar(&fill(&self.queries.metered_rate)).await);
        let storage = get(self.scalar(&fill(&self.queries.storage)).await);
        let mut iowait = BTreeMap::new();
        for host in hosts {
            let query = fill(&self.queries.iowait).replace("{node}", host);
            if let Ok(Some(v)) = self.scalar(&query).await {
                iowait.insert(host.clone(), v);
            }
        }
        VolumeTelemetry {
            efs_id: efs_id.to_owned(),
            credits,
            permitted,
            metered_rate,
            storage,
            iowait,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// The first sample of an instant query; `None` when the query matches nothing.
    async fn scalar(&self, promql: &str) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query", self.base);
        let answer: Answer = self
            .client
            .get(&url)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
