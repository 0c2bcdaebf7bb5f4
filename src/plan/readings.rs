//! Telemetry values the planner may compute with. Prometheus answers `NaN`, `+Inf`,
//! negative rates after a counter reset, or absurd values from a wrong query; none of these
//! may panic the planner, look healthy, or start a runbook: each is "telemetry missing",
//! with the value and the query that gave it.

use std::time::Duration;

use crate::config::VolumeQueries;
use crate::model::VolumeTelemetry;

/// Largest byte count taken as real: 1 EiB (2^60 bytes). EFS file systems reach petabytes;
/// a credit balance is at most 2.1 TiB per TiB stored (AWS EFS burst credits).
pub const MAX_BYTES: f64 = 1_152_921_504_606_846_976.0;

/// Largest rate taken as real: 1 TiB/s, far above any EFS file system's throughput
/// (AWS documents tens of GiB/s at most).
pub const MAX_RATE: f64 = 1_099_511_627_776.0;

/// The four quantities of one EFS file system, each finite and in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readings {
    /// Burst credit balance, bytes.
    pub credits: f64,
    /// Permitted throughput, bytes/s.
    pub permitted: f64,
    /// Metered throughput, bytes/s.
    pub metered: f64,
    /// Metered size, bytes.
    pub storage: f64,
}

/// Why the readings cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    /// Some quantity has no sample (or its query failed: `error` says why).
    Missing {
        /// The quantities without a sample, as the policy names their queries.
        quantities: Vec<&'static str>,
    },
    /// A value is not a number, infinite, negative or beyond any real file system.
    OutOfRange {
        /// The quantity, as the policy names its query (`credits`, `permitted`, ...).
        quantity: &'static str,
        /// The value Prometheus gave.
        value: f64,
        /// What is allowed.
        allowed: &'static str,
    },
}

impl Unusable {
    /// What is wrong, naming the PromQL (with `{fs}` filled in) that gave a bad value.
    pub fn describe(&self, efs_id: &str, queries: &VolumeQueries) -> String {
        match self {
            Unusable::Missing { quantities } => {
                format!("no sample for {}", quantities.join(", "))
            }
            Unusable::OutOfRange {
                quantity,
                value,
                allowed,
            } => {
                let query = match *quantity {
                    "credits" => &queries.credits,
                    "permitted" => &queries.permitted,
                    "metered_rate" => &queries.metered_rate,
                    _ => &queries.storage,
                };
                format!(
                    "{quantity} = {value} (from `{}`) is not usable: {allowed}",
                    query.replace("{fs}", efs_id)
                )
            }
        }
    }
}

/// Checks one file system's telemetry against what a real EFS file system can report.
pub fn readings(t: &VolumeTelemetry) -> Result<Readings, Unusable> {
    let quantities = [
        ("credits", t.credits, MAX_BYTES),
        ("permitted", t.permitted, MAX_RATE),
        ("metered_rate", t.metered_rate, MAX_RATE),
        ("storage", t.storage, MAX_BYTES),
    ];
    let missing: Vec<&'static str> = quantities
        .iter()
        .filter(|q| q.1.is_none())
        .map(|q| q.0)
        .collect();
    if !missing.is_empty() {
        return Err(Unusable::Missing {
            quantities: missing,
        });
    }
    let mut values = [0.0; 4];
    for (slot, (quantity, value, max)) in values.iter_mut().zip(quantities) {
        let value = value.unwrap_or_default();
        if !(value.is_finite() && (0.0..=max).contains(&value)) {
            return Err(Unusable::OutOfRange {
                quantity,
                value,
                allowed: if max == MAX_RATE {
                    "a finite rate from 0 to 1 TiB/s"
                } else {
                    "a finite byte count from 0 to 1 EiB"
                },
            });
        }
        *slot = value;
    }
    let [credits, permitted, metered, storage] = values;
    Ok(Readings {
        credits,
        permitted,
        metered,
        storage,
    })
}

/// Seconds as a `Duration`, saturating: an estimate from a tiny rate is "longer than any
/// policy threshold", never a panic. Not a number or negative is zero.
pub fn saturating_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_secs_never_panics() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1.0, 0.0] {
            let _ = saturating_secs(x);
        }
        assert_eq!(saturating_secs(1e300), Duration::MAX);
        assert_eq!(saturating_secs(f64::NAN), Duration::ZERO);
        assert_eq!(saturating_secs(1.5), Duration::from_millis(1500));
    }
}
