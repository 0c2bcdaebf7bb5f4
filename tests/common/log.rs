//! swarm-warden's JSON log (`LOG_FORMAT=json`), read by its typed events: the `event`
//! field and the fields beside it, never the wording (see `swarm_warden::events`).

use std::fmt;

/// A log as written so far.
#[derive(Debug, Clone, Default)]
pub struct Log {
    text: String,
    lines: Vec<serde_json::Value>,
}

impl Log {
    /// Parses `text`; lines that are not JSON (a panic message) are kept in the text only.
    pub fn parse(text: String) -> Self {
        let lines = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Self { text, lines }
    }

    /// The raw text, for failure messages and for what no event covers (a panic).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The fields of every line whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<&serde_json::Value> {
        self.lines
            .iter()
            .filter(|l| l["fields"]["event"] == event)
            .collect()
    }

    /// The whole lines (timestamp included) of every `event`.
    pub fn lines(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines
            .iter()
            .filter(|l| l["fields"]["event"] == event)
            .cloned()
            .collect()
    }

    /// How many `event`s.
    pub fn count(&self, event: &str) -> usize {
        self.events(event).len()
    }

    /// How many `event`s of action kind `kind` (`remove-dead-manager`, ...).
    pub fn actions(&self, event: &str, kind: &str) -> usize {
        self.events(event)
            .iter()
            .filter(|l| l["fields"]["kind"] == kind)
            .count()
    }

    /// Whether a finding of `kind` (`quorum-lost`, ...) was logged.
    pub fn finding(&self, kind: &str) -> bool {
        self.events("finding")
            .iter()
            .any(|l| l["fields"]["kind"] == kind)
    }

    /// How many actions ended (done, failed or rolled back).
    pub fn actions_ended(&self) -> usize {
        ["action-done", "action-failed", "action-rolled-back"]
            .iter()
            .map(|e| self.count(e))
            .sum()
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
