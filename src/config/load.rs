//! Reading a policy: the file (errors with `file:line:col`) and the `SWARM_WARDEN_*`
//! environment overrides on top of it.

use std::path::{Path, PathBuf};

use super::Policy;

/// A policy file that cannot be used, with where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An environment override is not valid.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not a valid policy.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Environment variables that are not policy keys but share the prefix.
const NON_POLICY_ENV: &[&str] = &["SWARM_WARDEN_IDENTITY"];

impl Policy {
    /// Applies `SWARM_WARDEN_<KEY>` overrides: the key path upper-cased with `_` between
    /// levels (`SWARM_WARDEN_MANAGERS_DEAD_AFTER=10m`). Values are YAML scalars; lists and
    /// maps stay in the file.
    pub fn apply_env(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env_error = |var: &str, message: String| ConfigError::Env {
            var: var.to_owned(),
            message,
        };
        let mut value =
            serde_json::to_value(&self).map_err(|e| env_error("(policy)", e.to_string()))?;
        let base = value.clone();
        let mut applied: Vec<(String, String, Vec<String>)> = Vec::new();
        for (var, raw) in vars {
            let Some(rest) = var.strip_prefix("SWARM_WARDEN_") else {
                continue;
            };
            if NON_POLICY_ENV.contains(&var.as_str()) {
                continue;
            }
            let path = resolve_env_path(&value, &rest.to_ascii_lowercase())
                .ok_or_else(|| env_error(&var, "no such policy key".into()))?;
            let slot = path
                .iter()
                .try_fold(&mut value, |v, k| v.get_mut(k.as_str()));
            let Some(slot) = slot else {
                return Err(env_error(&var, "no such policy key".into()));
            };
            *slot = one_value(slot, &raw).map_err(|e| env_error(&var, e))?;
            applied.push((var, raw, path));
        }
        if applied.is_empty() {
            return Ok(self);
        }
        // Checked once all are applied (a lease's duration and renew may only fit
        // together); an error names the variable that fails on its own, else them all.
        serde_json::from_value(value).map_err(|together| {
            let alone = applied.iter().find_map(|(var, raw, leaf)| {
                let mut one = base.clone();
                let slot = leaf
                    .iter()
                    .try_fold(&mut one, |v, k| v.get_mut(k.as_str()))?;
                *slot = one_value(slot, raw).ok()?;
                serde_json::from_value::<Policy>(one)
                    .err()
                    .map(|e| env_error(var, format!("{}: {e}", shown(raw))))
            });
            alone.unwrap_or_else(|| {
                let vars: Vec<&str> = applied.iter().map(|(v, _, _)| v.as_str()).collect();
                env_error(&vars.join(" + "), together.to_string())
            })
        })
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses policy text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // An empty file (or one with only comments) means "all defaults".
        let parsed: Result<Option<Policy>, _> = serde_norway::from_str(text);
        match parsed {
            Ok(policy) => Ok(policy.unwrap_or_default()),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                let mut message = e.to_string();
                // The location is in our prefix already.
                if let Some(at) = message.rfind(" at line ") {
                    message.truncate(at);
                }
                Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line,
                    column,
                    message,
                })
            }
        }
    }
}

/// An override's value as an error shows it: quoted, with the credentials of a URL
/// replaced by `***` (they must never reach a log).
fn shown(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
            format!("{:?}", url.as_str())
        }
        _ => format!("{raw:?}"),
    }
}

/// An override's value for `slot`: the raw text for a string key, else YAML.
fn one_value(slot: &serde_json::Value, raw: &str) -> Result<serde_json::Value, String> {
    if slot.is_string() {
        Ok(serde_json::Value::String(raw.to_owned()))
    } else {
        serde_norway::from_str(raw).map_err(|e| format!("{}: {e}", shown(raw)))
    }
}

/// The path of policy keys an upper-cased, `_`-joined name stands for.
fn resolve_env_path(value: &serde_json::Value, rest: &str) -> Option<Vec<String>> {
    let map = value.as_object()?;
    for (key, child) in map {
        if rest == key {
            return Some(vec![key.clone()]);
        }
        if let Some(tail) = rest
            .strip_prefix(key.as_str())
            .and_then(|t| t.strip_prefix('_'))
        {
            if let Some(mut path) = resolve_env_path(child, tail) {
                path.insert(0, key.clone());
                return Some(path);
            }
        }
    }
    None
}
