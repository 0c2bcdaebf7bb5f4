//! Policy values that parse but may not work, checked when the policy is loaded: each
//! refusal is a serde error, so the policy file's error names `file:line:col` of the
//! value (an environment override's error names the variable).

use std::fmt;
use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// A desired manager count: odd, 1 to 9. An even raft tolerates no more failures than one
/// manager fewer (Docker's "Administer and maintain a swarm of Docker Engines": an odd
/// number of managers); more than 7 is slower, not safer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct ManagerCount(u32);

impl ManagerCount {
    /// Three managers: one may fail.
    pub const THREE: Self = Self(3);

    /// The count.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

impl TryFrom<i64> for ManagerCount {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        match u32::try_from(n) {
            Ok(n @ (1 | 3 | 5 | 7 | 9)) => Ok(Self(n)),
            _ => Err(format!(
                "desired manager count must be odd, 1 to 9 (3 or 5 is usual), not {n}: an even raft tolerates no more failures than one manager fewer"
            )),
        }
    }
}

impl From<ManagerCount> for u32 {
    fn from(c: ManagerCount) -> u32 {
        c.0
    }
}

/// A byte count, written `1048576`, `512MiB`, `1GiB`, `200G` or `1.5TiB` (binary units:
/// `k`, `M`, `G`, `T` with or without `i`/`B` all mean powers of 1024, as
/// [`crate::pad::parse_size`] reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly (`1TiB`, `512MiB`, `1000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        match UNITS
            .iter()
            .find(|(_, size)| self.0 != 0 && self.0 % size == 0)
        {
            Some((unit, size)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Self(n)),
            Raw::Text(text) => crate::pad::parse_size(&text)
                .map(Self)
                .map_err(|e| D::Error::custom(format!("{e}; write e.g. 512MiB, 1GiB, 2TiB"))),
        }
    }
}

/// A byte size above zero (`volumes.padding.file_size`: a padding file of zero bytes
/// never fills anything).
pub mod positive_size {
    use super::*;

    /// Reads a size above zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        let size = ByteSize::deserialize(d)?;
        if size.bytes() == 0 {
            return Err(D::Error::custom("must be above zero; write e.g. 1GiB"));
        }
        Ok(size)
    }
}

/// A string that is not empty (`volumes.migration.volume_suffix`: an empty suffix would
/// name the target after the source, and the copy would write onto its own source).
pub mod non_empty {
    use super::*;

    /// Reads a non-empty string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(D::Error::custom(
                "must not be empty (the target volume would be the source); write e.g. -ebs",
            ));
        }
        Ok(text)
    }
}

/// A node attribute naming a node's zone for placement constraints
/// (`volumes.migration.zone_label`): empty (not set), `node.labels.<key>` or
/// `engine.labels.<key>` — the two label kinds a Swarm constraint can compare.
pub mod zone_label {
    use super::*;

    /// Reads an empty string or a `node.labels.`/`engine.labels.` attribute with a key.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        let key = text
            .strip_prefix("node.labels.")
            .or_else(|| text.strip_prefix("engine.labels."));
        if text.is_empty() || key.is_some_and(|k| !k.is_empty()) {
            return Ok(text);
        }
        Err(D::Error::custom(
            "must be empty or a label a placement constraint compares: node.labels.<key> or engine.labels.<key> (e.g. engine.labels.availability_zone)",
        ))
    }
}

/// An optional byte size where an empty string means "not set" (the example policy writes
/// `target_baseline: ""`).
pub mod optional_size {
    use super::*;

    /// Writes `""` for "not set".
    pub fn serialize<S: Serializer>(v: &Option<ByteSize>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(size) => size.serialize(s),
            None => s.serialize_str(""),
        }
    }

    /// Reads `""` or `null` as "not set", anything else as a [`ByteSize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Text(t)) if t.trim().is_empty() => Ok(None),
            Some(Raw::Bytes(n)) => Ok(Some(ByteSize(n))),
            Some(Raw::Text(t)) => crate::pad::parse_size(&t)
                .map(|n| Some(ByteSize(n)))
                .map_err(|e| {
                    D::Error::custom(format!("{e}; write e.g. 10MiB, or \"\" for 125% of demand"))
                }),
        }
    }
}

/// Longest duration the policy takes: a year. Longer ones mean nothing for a control loop
/// and overflow clock arithmetic (`Instant + Duration` panics near the end of time).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A humantime duration of at most [`MAX_DURATION`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(format!("{text:?} is longer than a year")),
        Err(e) => Err(format!(
            "invalid duration {text:?} ({e}); write e.g. 30s, 5m, 1h"
        )),
    }
}

/// Durations as humantime strings (`30s`, `5m`, `1h 30m`), at most a year.
pub mod humantime_serde {
    use super::*;

    /// Writes e.g. `5m 30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads a humantime duration of at most a year.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(D::Error::custom)
    }
}

/// A duration that must be longer than zero: a zero resync spins (tokio's `interval`
/// panics on it), a zero lease is never held, a zero `dead_after` removes a manager on its
/// first missed heartbeat.
pub mod positive_duration {
    use super::*;

    /// Writes e.g. `5m 30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(d, s)
    }

    /// Reads a humantime duration longer than zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        match parse_duration(&text) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(D::Error::custom(format!(
                "{text:?} must be longer than zero; write e.g. 30s, 5m"
            ))),
            Err(e) => Err(D::Error::custom(e)),
        }
    }
}

/// `http.listen`: empty (no HTTP server) or `host:port` with an IP address.
pub mod listen_addr {
    use super::*;

    /// Reads an empty string or a socket address (`0.0.0.0:8080`, `[::]:8080`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        if !text.is_empty() && text.parse::<std::net::SocketAddr>().is_err() {
            return Err(D::Error::custom(format!(
                "invalid listen address {text:?}; write IP:PORT (0.0.0.0:8080, 127.0.0.1:9102, [::]:8080), or \"\" for no HTTP server"
            )));
        }
        Ok(text)
    }
}

/// `volumes.prometheus_url`: empty (no telemetry) or an `http://` / `https://` URL.
pub mod prometheus_url {
    use super::*;

    /// Reads an empty string or an http(s) URL with a host.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(text);
        }
        match reqwest::Url::parse(&text) {
            // The URL is shown in findings and logs: credentials go in files.
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                Err(D::Error::custom(
                    "a Prometheus URL must not carry credentials (they would show in reports and logs); use volumes.prometheus_http_config.basic_auth with a password_file",
                ))
            }
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(text),
            Ok(url) => Err(D::Error::custom(format!(
                "invalid Prometheus URL {text:?}: scheme {:?}; write http://HOST:9090 or https://HOST",
                url.scheme()
            ))),
            Err(e) => Err(D::Error::custom(format!(
                "invalid Prometheus URL {text:?} ({e}); write http://HOST:9090 or https://HOST"
            ))),
        }
    }
}

/// A positive, finite number (`metered_per_byte`).
pub mod positive_number {
    use super::*;

    /// Reads a finite number above zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = f64::deserialize(d)?;
        if !(v.is_finite() && v > 0.0) {
            return Err(D::Error::custom(format!(
                "must be a number above zero, not {v}"
            )));
        }
        Ok(v)
    }
}
