//! Swarm placement constraints, evaluated the way SwarmKit's scheduler does
//! (`manager/constraint`): `key == value` / `key != value`, values compared without
//! regard to case, a missing label reads as the empty string, an unknown key matches no
//! node.

use std::fmt;

use crate::model::{Node, Platform};

/// The constraint swarm-warden adds to keep a service off managers.
pub const NOT_ON_MANAGERS: &str = "node.role != manager";

/// Whether two constraint expressions say the same: parsed (spaces around the operator do
/// not count) and compared without case, as SwarmKit compares keys and values; either
/// one unparsable: only if the texts are equal.
pub fn same(a: &str, b: &str) -> bool {
    match (Constraint::parse(a), Constraint::parse(b)) {
        (Ok(a), Ok(b)) => a.to_string().eq_ignore_ascii_case(&b.to_string()),
        _ => a == b,
    }
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Must match.
    Eq,
    /// Must not match.
    NotEq,
}

/// One parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    key: String,
    op: Op,
    value: String,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "==",
            Op::NotEq => "!=",
        };
        write!(f, "{} {op} {}", self.key, self.value)
    }
}

impl Constraint {
    /// Parses `key==value` or `key!=value` (spaces allowed around the operator).
    pub fn parse(expr: &str) -> Result<Self, String> {
        // SwarmKit tries `==` first, then `!=`.
        for (token, op) in [("==", Op::Eq), ("!=", Op::NotEq)] {
            if let Some((key, value)) = expr.split_once(token) {
                let (key, value) = (key.trim(), value.trim());
                let key_ok = key.len() >= 2
                    && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !key_ok {
                    return Err(format!("constraint {expr:?}: key {key:?} is invalid"));
                }
                if value.is_empty() {
                    return Err(format!("constraint {expr:?}: empty value"));
                }
                return Ok(Self {
                    key: key.to_owned(),
                    op,
                    value: value.to_owned(),
                });
            }
        }
        Err(format!("constraint {expr:?}: expected == or !="))
    }

    fn matches_value(&self, actual: &str) -> bool {
        let equal = self.value.eq_ignore_ascii_case(actual);
        match self.op {
            Op::Eq => equal,
            Op::NotEq => !equal,
        }
    }

    /// Whether `node` satisfies this constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let key = self.key.to_ascii_lowercase();
        let role = if node.is_manager() {
            "manager"
        } else {
            "worker"
        };
        match key.as_str() {
            "node.id" => self.matches_value(&node.id),
            "node.hostname" => self.matches_value(&node.hostname),
            "node.role" => self.matches_value(role),
            "node.platform.os" => self.matches_value(&node.platform.os),
            "node.platform.arch" => self.matches_value(&node.platform.architecture),
            "node.ip" => self.matches_ip(&node.addr),
            _ => {
                // Label names keep their case; only the prefix is case-insensitive.
                if let Some(label) = strip_prefix_ignore_case(&self.key, "node.labels.") {
                    self.matches_value(node.labels.get(label).map(String::as_str).unwrap_or(""))
                } else if let Some(label) = strip_prefix_ignore_case(&self.key, "engine.labels.") {
                    self.matches_value(
                        node.engine_labels
                            .get(label)
                            .map(String::as_str)
                            .unwrap_or(""),
                    )
                } else {
                    false
                }
            }
        }
    }

    fn matches_ip(&self, addr: &str) -> bool {
        let Ok(node_ip) = addr.parse::<std::net::IpAddr>() else {
            return self.op == Op::NotEq;
        };
        let inside = if let Ok(ip) = self.value.parse::<std::net::IpAddr>() {
            ip == node_ip
        } else if let Some((net, bits)) = self.value.split_once('/') {
            match (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) {
                (Ok(net), Ok(bits)) => in_subnet(node_ip, net, bits),
                _ => return false, // malformed: SwarmKit rejects the node
            }
        } else {
            return false;
        };
        match self.op {
            Op::Eq => inside,
            Op::NotEq => !inside,
        }
    }

    /// `node.role == manager` or `node.role != worker`: pinned to managers.
    pub fn selects_managers_only(&self) -> bool {
        self.key.eq_ignore_ascii_case("node.role")
            && match self.op {
                Op::Eq => self.value.eq_ignore_ascii_case("manager"),
                Op::NotEq => self.value.eq_ignore_ascii_case("worker"),
            }
    }

    /// `node.role != manager` or `node.role == worker`: kept off managers.
    pub fn excludes_managers(&self) -> bool {
        self.key.eq_ignore_ascii_case("node.role")
            && match self.op {
                Op::Eq => self.value.eq_ignore_ascii_case("worker"),
                Op::NotEq => self.value.eq_ignore_ascii_case("manager"),
            }
    }
}

fn strip_prefix_ignore_case<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    (key.len() > prefix.len() && key[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &key[prefix.len()..])
}

fn in_subnet(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (std::net::IpAddr::V4(ip), std::net::IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (std::net::IpAddr::V6(ip), std::net::IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A service's constraints, parsed; an unparsable one makes the whole set match nothing
/// (SwarmKit would not have accepted the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    parsed: Result<Vec<Constraint>, String>,
}

impl Constraints {
    /// Parses a service's constraint list.
    pub fn parse(exprs: &[String]) -> Self {
        Self {
            parsed: exprs.iter().map(|e| Constraint::parse(e)).collect(),
        }
    }

    /// Why the constraints could not be parsed, if they could not.
    pub fn error(&self) -> Option<&str> {
        self.parsed.as_ref().err().map(String::as_str)
    }

    /// Whether `node` satisfies every constraint.
    pub fn allow(&self, node: &Node) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|cs| cs.iter().all(|c| c.matches(node)))
    }

    /// Whether any constraint pins the service to managers.
    pub fn pinned_to_managers(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|cs| cs.iter().any(Constraint::selects_managers_only))
    }

    /// Whether a constraint explicitly keeps the service off managers.
    pub fn exclude_managers(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|cs| cs.iter().any(Constraint::excludes_managers))
    }

    /// Hints for `node.labels.*` / `engine.labels.*` constraints whose label no node has
    /// while some node has a label of that name in another case: SwarmKit compares label
    /// names case-sensitively, so `node.labels.Tier` never matches a `tier` label. One
    /// sentence per such constraint, e.g. "`node.labels.Tier == control`: no node has label
    /// `Tier`; did you mean `tier` (label names are case-sensitive)?".
    pub fn label_case_hints(&self, nodes: &[Node]) -> Vec<String> {
        let Ok(parsed) = &self.parsed else {
            return Vec::new();
        };
        let mut hints = Vec::new();
        for c in parsed {
            let (label, engine) = if let Some(l) = strip_prefix_ignore_case(&c.key, "node.labels.")
            {
                (l, false)
            } else if let Some(l) = strip_prefix_ignore_case(&c.key, "engine.labels.") {
                (l, true)
            } else {
                continue;
            };
            let labels_of = |n: &'_ Node| -> Vec<String> {
                let map = if engine { &n.engine_labels } else { &n.labels };
                map.keys().cloned().collect()
            };
            if nodes
                .iter()
                .any(|n| labels_of(n).iter().any(|k| k == label))
            {
                continue;
            }
            let mut near: Vec<String> = nodes
                .iter()
                .flat_map(labels_of)
                .filter(|k| k.eq_ignore_ascii_case(label))
                .collect();
            near.sort();
            near.dedup();
            if let Some(near) = near.first() {
                hints.push(format!(
                    "`{c}`: no node has label `{label}`; did you mean `{near}` (label names are case-sensitive)?"
                ));
            }
        }
        hints
    }
}

/// Whether a node's platform is one a service runs on (SwarmKit's platform filter:
/// `x86_64` is `amd64`, `aarch64` is `arm64`; an empty field matches anything).
pub fn platform_allows(platforms: &[Platform], node: &Platform) -> bool {
    fn arch(a: &str) -> String {
        match a.to_ascii_lowercase().as_str() {
            "x86_64" => "amd64".into(),
            "aarch64" => "arm64".into(),
            other => other.into(),
        }
    }
    platforms.is_empty()
        || platforms.iter().any(|p| {
            (p.os.is_empty() || p.os.eq_ignore_ascii_case(&node.os))
                && (p.architecture.is_empty() || arch(&p.architecture) == arch(&node.architecture))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::quorum_test_support::{manager, worker};

    fn allow(exprs: &[&str], node: &Node) -> bool {
        Constraints::parse(&exprs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).allow(node)
    }

    #[test]
    fn role_constraints_match_the_raft_role_case_insensitively() {
        let (m, w) = (manager("m1", true), worker("w1"));
        assert!(allow(&["node.role==manager"], &m) && !allow(&["node.role==manager"], &w));
        assert!(allow(&["node.role != manager"], &w) && !allow(&["node.role != manager"], &m));
        assert!(allow(&["node.role==MANAGER"], &m));
        assert!(allow(&[], &m), "no constraints: anywhere");
    }

    #[test]
    fn a_missing_label_reads_as_empty() {
        let mut w = worker("w1");
        assert!(!allow(&["node.labels.disk==ssd"], &w));
        assert!(allow(&["node.labels.disk!=ssd"], &w));
        w.labels.insert("disk".into(), "SSD".into());
        assert!(
            allow(&["node.labels.disk==ssd"], &w),
            "values compare without case"
        );
        assert!(
            !allow(&["node.labels.Disk==ssd"], &w),
            "label names keep their case"
        );
        w.engine_labels.insert("os".into(), "debian".into());
        assert!(allow(&["engine.labels.os==debian"], &w));
    }

    #[test]
    fn hostname_id_platform_and_ip_constraints() {
        let mut w = worker("w1");
        w.addr = "10.1.2.3".into();
        assert!(allow(&["node.hostname==w1", "node.id!=m1"], &w));
        assert!(allow(
            &["node.platform.os==linux", "node.platform.arch==x86_64"],
            &w
        ));
        assert!(allow(&["node.ip==10.1.2.3"], &w));
        assert!(allow(&["node.ip==10.1.0.0/16"], &w));
        assert!(allow(&["node.ip!=10.2.0.0/16"], &w));
        assert!(!allow(&["node.ip==not-an-ip"], &w));
    }

    #[test]
    fn unknown_keys_and_unparsable_constraints_match_nothing() {
        let w = worker("w1");
        assert!(!allow(&["node.colour==blue"], &w));
        let bad = Constraints::parse(&["node.role".to_string()]);
        assert!(bad.error().is_some());
        assert!(!bad.allow(&w));
    }

    #[test]
    fn pinned_and_excluded_are_recognised_in_both_spellings() {
        let parse = |e: &str| Constraints::parse(&[e.to_string()]);
        assert!(parse("node.role==manager").pinned_to_managers());
        assert!(parse("node.role != worker").pinned_to_managers());
        assert!(parse("node.role!=manager").exclude_managers());
        assert!(parse("node.role == worker").exclude_managers());
        assert!(!parse("node.labels.role==manager").pinned_to_managers());
    }

    #[test]
    fn platforms_normalise_architecture_names() {
        let node = Platform {
            os: "linux".into(),
            architecture: "x86_64".into(),
        };
        let p = |os: &str, arch: &str| Platform {
            os: os.into(),
            architecture: arch.into(),
        };
        assert!(platform_allows(&[], &node));
        assert!(platform_allows(&[p("linux", "amd64")], &node));
        assert!(!platform_allows(&[p("linux", "arm64")], &node));
        assert!(!platform_allows(&[p("windows", "")], &node));
        assert!(platform_allows(&[p("windows", ""), p("", "")], &node));
    }
}
