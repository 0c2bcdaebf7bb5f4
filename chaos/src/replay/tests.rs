use std::collections::BTreeMap;
use std::path::Path;

use axum::http::Method;
use serde_json::Value;

use super::serve::{parse_filters, Filters};
use super::*;

fn fixture() -> Fixture {
    Fixture::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/fixtures/engine"))
        .expect("the committed capture")
}

fn small() -> Swarm {
    Swarm::generate(
        &fixture(),
        Size {
            managers: 3,
            nodes: 10,
            services: 4,
            tasks: 40,
        },
    )
    .expect("swarm")
}

fn filters(pairs: &[(&str, &[&str])]) -> Filters {
    pairs
        .iter()
        .map(|(k, vs)| {
            (
                (*k).to_owned(),
                vs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect::<BTreeMap<_, _>>()
}

fn list(answer: Result<bytes::Bytes, (axum::http::StatusCode, String)>) -> Vec<Value> {
    serde_json::from_slice(&answer.expect("answer")).expect("a JSON list")
}

#[test]
fn both_filter_forms_of_the_engine_parse() {
    let list_form = parse_filters(Some(r#"{"node":["a","b"]}"#)).expect("list form");
    let map_form = parse_filters(Some(r#"{"node":{"a":true,"b":true}}"#)).expect("map form");
    assert_eq!(list_form, map_form);
    assert!(parse_filters(Some("{")).is_err());
    assert!(parse_filters(None).expect("none").is_empty());
}

#[test]
fn a_generated_swarm_has_the_size_asked_and_one_leader() {
    let swarm = small();
    assert_eq!(swarm.counts(), (10, 4, 40));
    let served = serve::tests_support::served(swarm);
    let nodes = list(served.answer(&Method::GET, "/nodes", None));
    assert_eq!(nodes.len(), 10);
    let leaders = nodes
        .iter()
        .filter(|n| n["ManagerStatus"]["Leader"] == true)
        .count();
    assert_eq!(leaders, 1);
    let managers = nodes
        .iter()
        .filter(|n| n["Spec"]["Role"] == "manager")
        .count();
    assert_eq!(managers, 3);
    let info: Value =
        serde_json::from_slice(&served.answer(&Method::GET, "/info", None).expect("info"))
            .expect("json");
    assert_eq!(info["Swarm"]["NodeID"], nodes[0]["ID"]);
    assert_eq!(info["Swarm"]["ControlAvailable"], true);
}

#[test]
fn tasks_are_filtered_by_node_and_service_as_the_engine_does() {
    let served = serve::tests_support::served(small());
    let nodes = list(served.answer(&Method::GET, "/nodes", None));
    let services = list(served.answer(&Method::GET, "/services", None));
    let all = list(served.answer(&Method::GET, "/tasks", None));
    assert_eq!(all.len(), 40);
    let first_node = nodes[0]["ID"].as_str().expect("id");
    let by_node = filters(&[("node", &[first_node]), ("desired-state", &["running"])]);
    let on_first = list(served.answer(
        &Method::GET,
        "/tasks",
        Some(&serde_json::to_string(&by_node).expect("json")),
    ));
    assert!(!on_first.is_empty());
    assert!(on_first.iter().all(|t| t["NodeID"] == first_node));
    // The first node is a manager: no task of a service constrained to workers is there.
    let web: Vec<&Value> = services
        .iter()
        .filter(|s| {
            s["Spec"]["Name"]
                .as_str()
                .is_some_and(|n| n.starts_with("shop_web"))
        })
        .map(|s| &s["ID"])
        .collect();
    assert!(!web.is_empty());
    assert!(on_first.iter().all(|t| !web.contains(&&t["ServiceID"])));
    // A service by name, another by ID: either matches.
    let name = services[1]["Spec"]["Name"].as_str().expect("name");
    let id = services[2]["ID"].as_str().expect("id");
    let by_service = filters(&[("service", &[name, id])]);
    let of_two = list(served.answer(
        &Method::GET,
        "/tasks",
        Some(&serde_json::to_string(&by_service).expect("json")),
    ));
    assert_eq!(of_two.len(), 20);
    let unknown = filters(&[("service", &["nope"])]);
    let (status, message) = served
        .answer(
            &Method::GET,
            "/tasks",
            Some(&serde_json::to_string(&unknown).expect("json")),
        )
        .expect_err("the Engine fails the whole call");
    assert_eq!(
        (status.as_u16(), message.as_str()),
        (404, "service nope not found")
    );
    let shutdown = filters(&[("desired-state", &["shutdown"])]);
    assert!(list(served.answer(
        &Method::GET,
        "/tasks",
        Some(&serde_json::to_string(&shutdown).expect("json"))
    ))
    .is_empty());
}

#[test]
fn an_unimplemented_filter_or_a_write_is_refused_not_ignored() {
    let served = serve::tests_support::served(small());
    let label = serde_json::to_string(&filters(&[("label", &["x"])])).expect("json");
    let (status, message) = served
        .answer(&Method::GET, "/tasks", Some(&label))
        .expect_err("refused");
    assert_eq!(status, 400);
    assert!(message.contains("invalid filter 'label'"), "{message}");
    let (status, _) = served
        .answer(&Method::POST, "/configs/create", None)
        .expect_err("read-only");
    assert_eq!(status, 501);
}

#[test]
fn services_are_filtered_by_name_prefix_and_label() {
    let served = serve::tests_support::served(small());
    let services = list(served.answer(&Method::GET, "/services", None));
    let name = services[0]["Spec"]["Name"].as_str().expect("name");
    let by_name = serde_json::to_string(&filters(&[("name", &[name])])).expect("json");
    let named = list(served.answer(&Method::GET, "/services", Some(&by_name)));
    assert_eq!(named.len(), 1);
    let stack = serde_json::to_string(&filters(&[("label", &["com.docker.stack.namespace=shop"])]))
        .expect("json");
    assert_eq!(
        list(served.answer(&Method::GET, "/services", Some(&stack))).len(),
        4,
        "every generated service comes from the stack"
    );
}
