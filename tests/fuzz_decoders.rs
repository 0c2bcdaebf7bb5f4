//! Fuzzing, as property tests over arbitrary bytes and mutated inputs: the policy parser,
//! the constraint parser, the runbook journal decoder and the Prometheus answer decoder
//! never panic, and a policy they accept never panics the planner. CI runs a few hundred
//! cases each; a longer campaign is `PROPTEST_CASES=200000 cargo nextest run --test
//! fuzz_decoders`. Every crash found stays below as a regression case.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use swarm_warden::config::Policy;
use swarm_warden::model::{
    Control, LocalNode, ManagerStatus, Mount, Node, NodeState, Reachability, Role, Service,
    ServiceMode, Snapshot, Task, VolumeTelemetry,
};
use swarm_warden::observe::decode_sample;
use swarm_warden::plan::constraint::Constraint;
use swarm_warden::plan::{plan, Memory};
use swarm_warden::runbook::Journal;

/// Values that have broken parsers elsewhere: empties, signs, overflows, NaN, YAML's own
/// oddities, units.
const TRICKY: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "2",
    "4",
    "9",
    "10",
    "0s",
    "1s",
    "-5s",
    "1ns",
    "99999999999h",
    "18446744073709551616",
    "1e300",
    "-1e300",
    "NaN",
    ".nan",
    ".inf",
    "-.inf",
    "~",
    "null",
    "[]",
    "{}",
    "true",
    "off",
    "\"\"",
    "1.5TiB",
    "0B",
    "9999999TiB",
    "10 furlongs",
    "0.0.0.0:8080",
    "[::]:0",
    "localhost",
    "http://",
    "https://x",
    "ftp://x",
    "enforce",
    "audit",
    "sometimes",
    "'",
    "\"",
    ":",
    "- a",
    "&a",
    "*a",
    "!!binary aGk=",
];

/// Every leaf key path of the policy (`managers.dead_after`, ...).
fn policy_paths() -> Vec<Vec<String>> {
    fn walk(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v.as_object() {
            Some(map) => {
                for (k, child) in map {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            None => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    walk(
        &serde_json::to_value(Policy::default()).expect("policy to JSON"),
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// YAML setting each `(path, value)`, nested as the policy is.
fn yaml(settings: &[(Vec<String>, String)]) -> String {
    let mut text = String::new();
    let mut open: Vec<String> = Vec::new();
    for (path, value) in settings {
        let shared = open
            .iter()
            .zip(path)
            .take_while(|(a, b)| a == b)
            .count()
            .min(path.len() - 1);
        open.truncate(shared);
        for key in &path[shared..path.len() - 1] {
            text.push_str(&format!("{}{key}:\n", "  ".repeat(open.len())));
            open.push(key.clone());
        }
        let leaf = &path[path.len() - 1];
        text.push_str(&format!("{}{leaf}: {value}\n", "  ".repeat(open.len())));
    }
    text
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(TRICKY).prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
    ]
}

fn settings() -> impl Strategy<Value = Vec<(Vec<String>, String)>> {
    let paths = policy_paths();
    prop::collection::vec((prop::sample::select(paths), value()), 0..6).prop_map(|mut s| {
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s.dedup_by(|a, b| a.0 == b.0);
        s
    })
}

fn manager(i: usize, state: NodeState, reachability: Reachability) -> Node {
    Node {
        id: format!("m{i}"),
        hostname: format!("m{i}"),
        role: Role::Manager,
        state,
        addr: format!("10.0.0.{i}"),
        manager: Some(ManagerStatus {
            leader: i == 1,
            reachability,
            addr: format!("10.0.0.{i}:2377"),
        }),
        ..Default::default()
    }
}

/// A small swarm with something for every part of the planner: a dead manager, workers,
/// a service on a manager with a watched EFS volume, and that volume's telemetry.
fn swarm(telemetry: [Option<f64>; 4]) -> Snapshot {
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut nodes = vec![
        manager(1, NodeState::Ready, Reachability::Reachable),
        manager(2, NodeState::Ready, Reachability::Reachable),
        manager(3, NodeState::Down, Reachability::Unreachable),
    ];
    for w in 1..=2 {
        nodes.push(Node {
            id: format!("w{w}"),
            hostname: format!("w{w}"),
            role: Role::Worker,
            state: NodeState::Ready,
            addr: format!("10.0.1.{w}"),
            ..Default::default()
        });
    }
    for n in &mut nodes {
        n.updated_at = Some(long_ago);
    }
    let service = Service {
        id: "prom".into(),
        name: "monitoring_prometheus".into(),
        image: "prom/prometheus:v2.42.0".into(),
        mode: ServiceMode::Replicated { replicas: 1 },
        mounts: vec![Mount {
            kind: "volume".into(),
            source: "prometheus_data".into(),
            target: "/prometheus".into(),
            driver: "local".into(),
            driver_options: BTreeMap::from([("type".into(), "nfs4".into())]),
            labels: BTreeMap::from([
                ("swarm-warden.efs-id".into(), "fs-1".into()),
                ("swarm-warden.remediation".into(), "efs-padding".into()),
            ]),
            read_only: false,
        }],
        ..Default::default()
    };
    let [credits, permitted, metered_rate, storage] = telemetry;
    Snapshot {
        observed_at: long_ago + Duration::from_secs(7200),
        local: LocalNode {
            node_id: "m1".into(),
            addr: "10.0.0.1".into(),
        },
        control: Control::Leader,
        nodes,
        services: vec![service],
        tasks: vec![Task {
            id: "t1".into(),
            service_id: "prom".into(),
            node_id: Some("m2".into()),
            state: "running".into(),
        }],
        telemetry: vec![VolumeTelemetry {
            efs_id: "fs-1".into(),
            credits,
            permitted,
            metered_rate,
            storage,
            iowait: BTreeMap::new(),
            error: None,
        }],
        runbooks: Vec::new(),
        runbook_problems: Default::default(),
        placement_records: Default::default(),
    }
}

fn reading() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0, 1e-300, 1e300, f64::MIN_POSITIVE, f64::MAX][..]).prop_map(Some),
        3 => (0.0..1e13f64).prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)
    ))]

    #[test]
    fn any_bytes_are_a_policy_or_an_error_with_a_place(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Policy::parse(&text, Path::new("p.yml")) {
            prop_assert!(e.to_string().starts_with("p.yml"), "{e}");
        }
    }

    #[test]
    fn an_accepted_policy_never_panics_the_planner(s in settings(), t in prop::array::uniform4(reading())) {
        let text = yaml(&s);
        let Ok(policy) = Policy::parse(&text, Path::new("p.yml")) else {
            return Ok(());
        };
        let snapshot = swarm(t);
        let mut memory = Memory::default();
        memory.observe(&snapshot);
        let _ = plan(&snapshot, &policy, &memory, snapshot.observed_at);
    }

    #[test]
    fn any_constraint_text_parses_or_is_refused(expr in prop_oneof!["\\PC{0,40}", "[a-z._ ]{0,12}(==|!=)[ -~]{0,12}"]) {
        if let Ok(c) = Constraint::parse(&expr) {
            let node = manager(1, NodeState::Ready, Reachability::Reachable);
            let _ = c.matches(&node);
            let _ = c.to_string();
        }
    }

    #[test]
    fn any_bytes_are_a_journal_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Journal::decode(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_mutated_journal_is_read_or_refused(field in prop::sample::select(&["run_id", "kind", "status", "started_at", "steps", "facts", "schema", "finished_at"][..]), replacement in prop::sample::select(&["null", "-1", "1e400", "\"\"", "[]", "{}", "[{}]", "99999999999999999999", "\"running\"", "3"][..])) {
        let journal = Journal::new(
            swarm_warden::runbook::RunbookKind::EfsPadding,
            "fs-1", "prom", "monitoring_prometheus", "prometheus_data",
            &["preflight", "pad"], UNIX_EPOCH + Duration::from_secs(1000),
        );
        let mut value = serde_json::to_value(&journal).expect("to JSON");
        value[field] = serde_json::from_str(replacement).unwrap_or(serde_json::Value::Null);
        if let Ok(read) = Journal::decode(&value.to_string()) {
            let _ = read.is_active();
            let _ = read.current();
        }
    }

    #[test]
    fn any_bytes_are_a_prometheus_answer_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_sample("q", &bytes);
    }

    #[test]
    fn any_sample_value_decodes_without_a_panic(kind in prop::sample::select(&["vector", "scalar", "matrix", "string", "nonsense"][..]), value in prop_oneof![prop::sample::select(TRICKY).prop_map(str::to_owned), "\\PC{0,20}"]) {
        let value = serde_json::Value::String(value).to_string();
        let body = match kind {
            "vector" => format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,{value}]}}]}}}}"#),
            "scalar" => format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,{value}]}}}}"#),
            other => format!(r#"{{"status":"success","data":{{"resultType":"{other}","result":{value}}}}}"#),
        };
        let _ = decode_sample("q", body.as_bytes());
    }
}

#[test]
fn the_generated_yaml_is_the_policy_it_says() {
    let text = yaml(&[
        (vec!["controller".into(), "resync".into()], "5s".into()),
        (
            vec!["volumes".into(), "padding".into(), "max".into()],
            "2TiB".into(),
        ),
        (
            vec!["volumes".into(), "prometheus_url".into()],
            "http://p:9090".into(),
        ),
    ]);
    let p = Policy::parse(&text, Path::new("p.yml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(p.controller.resync, Duration::from_secs(5));
    assert_eq!(p.volumes.padding.max.bytes(), 2 << 40);
    assert_eq!(p.volumes.prometheus_url, "http://p:9090");
}
