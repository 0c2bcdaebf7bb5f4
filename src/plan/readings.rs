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

/// One of the four quantities, named as the policy names its query
/// (`volumes.queries.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Burst credit balance, bytes.
    Credits,
    /// Permitted throughput, bytes/s.
    Permitted,
    /// Metered throughput, bytes/s.
    MeteredRate,
    /// Metered size, bytes.
    Storage,
}

impl Quantity {
    /// The policy's name for its query.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::Credits => "credits",
            Quantity::Permitted => "permitted",
            Quantity::MeteredRate => "metered_rate",
            Quantity::Storage => "storage",
        }
    }

    /// Its PromQL in `queries`.
    fn query(self, queries: &VolumeQueries) -> &str {
        match self {
            Quantity::Credits => &queries.credits,
            Quantity::Permitted => &queries.permitted,
            Quantity::MeteredRate => &queries.metered_rate,
            Quantity::Storage => &queries.storage,
        }
    }

    /// Largest real value, and what is allowed in words.
    fn range(self) -> (f64, &'static str) {
        match self {
            Quantity::Permitted | Quantity::MeteredRate => {
                (MAX_RATE, "a finite rate from 0 to 1 TiB/s")
            }
            Quantity::Credits | Quantity::Storage => {
                (MAX_BYTES, "a finite byte count from 0 to 1 EiB")
            }
        }
    }
}

/// Why the readings cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    /// Some quantity has no sample (or its query failed: `error` says why).
    Missing {
        /// The quantities without a sample.
        quantities: Vec<Quantity>,
    },
    /// A value is not a number, infinite, negative or beyond any real file system.
    OutOfRange {
        /// The quantity.
        quantity: Quantity,
        /// The value Prometheus gave.
        value: f64,
    },
}

impl Unusable {
    /// What is wrong, naming the PromQL (with `{fs}` filled in) that gave a bad value.
    pub fn describe(&self, efs_id: &str, queries: &VolumeQueries) -> String {
        match self {
            Unusable::Missing { quantities } => {
                let names: Vec<&str> = quantities.iter().map(|q| q.as_str()).collect();
                format!("no sample for {}", names.join(", "))
            }
            Unusable::OutOfRange { quantity, value } => format!(
                "{} = {value} (from `{}`) is not usable: {}",
                quantity.as_str(),
                quantity.query(queries).replace("{fs}", efs_id),
                quantity.range().1
            ),
        }
    }
}

/// Checks one file system's telemetry against what a real EFS file system can report.
pub fn readings(t: &VolumeTelemetry) -> Result<Readings, Unusable> {
    let quantities = [
        (Quantity::Credits, t.credits),
        (Quantity::Permitted, t.permitted),
        (Quantity::MeteredRate, t.metered_rate),
        (Quantity::Storage, t.storage),
    ];
    let missing: Vec<Quantity> = quantities
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
    for (slot, (quantity, value)) in values.iter_mut().zip(quantities) {
        let value = value.unwrap_or_default();
        if !(value.is_finite() && (0.0..=quantity.range().0).contains(&value)) {
            return Err(Unusable::OutOfRange { quantity, value });
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
