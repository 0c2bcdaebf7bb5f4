//! The lab's private network: one bridge in its own namespace, one namespace per node with a
//! veth into that bridge, and partitions as iptables DROP rules inside node namespaces.
//!
//! NOTE: nothing here touches the host's own network namespace: the lab's addresses exist
//! only inside the lab's namespaces, so two labs can never collide on the wire.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::cmd::{run, run_in_netns};
use crate::error::{LabError, Result};

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// The iptables chain that holds a node's partition rules.
const CHAOS_CHAIN: &str = "SWARM-CHAOS";
/// Name of the bridge inside the bridge namespace.
const BRIDGE: &str = "br0";
/// Name of a node's interface inside its own namespace.
pub const NODE_IFACE: &str = "eth0";

/// Creates a namespace holding an up bridge.
pub fn create_bridge(netns: &str) -> Result<()> {
    create_netns(netns)?;
    run("ip", ["-n", netns, "link", "add", BRIDGE, "type", "bridge"])?;
    run("ip", ["-n", netns, "link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Creates a node's namespace, wired into the bridge with `addr/24`.
pub fn create_node(bridge_netns: &str, node_netns: &str, port: &str, addr: Ipv4Addr) -> Result<()> {
    create_netns(node_netns)?;
    run(
        "ip",
        [
            "-n",
            bridge_netns,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            NODE_IFACE,
            "netns",
            node_netns,
        ],
    )?;
    run(
        "ip",
        [
            "-n",
            bridge_netns,
            "link",
            "set",
            port,
            "master",
            BRIDGE,
            "up",
        ],
    )?;
    let cidr = format!("{addr}/24");
    run(
        "ip",
        ["-n", node_netns, "addr", "add", &cidr, "dev", NODE_IFACE],
    )?;
    run("ip", ["-n", node_netns, "link", "set", NODE_IFACE, "up"])?;
    run("ip", ["-n", node_netns, "link", "set", "lo", "up"])?;
    Ok(())
}

fn create_netns(netns: &str) -> Result<()> {
    if !Path::new(NETNS_DIR).join(netns).exists() {
        run("ip", ["netns", "add", netns])?;
    }
    Ok(())
}

/// Deletes a namespace if it exists (with it go its veth ends and iptables rules).
pub fn delete_netns(netns: &str) -> Result<()> {
    if Path::new(NETNS_DIR).join(netns).exists() {
        run("ip", ["netns", "delete", netns])?;
    }
    Ok(())
}

/// Named network namespaces whose name starts with `prefix`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Drops all traffic between the node in `netns` and `peers`, replacing earlier rules.
pub fn block_peers(netns: &str, peers: &BTreeSet<Ipv4Addr>) -> Result<()> {
    ensure_chain(netns)?;
    run_in_netns(netns, "iptables", ["-F", CHAOS_CHAIN])?;
    for peer in peers {
        let peer = peer.to_string();
        run_in_netns(
            netns,
            "iptables",
            ["-A", CHAOS_CHAIN, "-s", &peer, "-j", "DROP"],
        )?;
        run_in_netns(
            netns,
            "iptables",
            ["-A", CHAOS_CHAIN, "-d", &peer, "-j", "DROP"],
        )?;
    }
    Ok(())
}

/// Removes the node's partition rules.
pub fn unblock_all(netns: &str) -> Result<()> {
    if Path::new(NETNS_DIR).join(netns).exists() {
        ensure_chain(netns)?;
        run_in_netns(netns, "iptables", ["-F", CHAOS_CHAIN])?;
    }
    Ok(())
}

fn ensure_chain(netns: &str) -> Result<()> {
    // `-N` fails when the chain exists; `-L` tells which case we are in.
    if run_in_netns(netns, "iptables", ["-n", "-L", CHAOS_CHAIN]).is_err() {
        run_in_netns(netns, "iptables", ["-N", CHAOS_CHAIN])?;
        run_in_netns(netns, "iptables", ["-I", "INPUT", "1", "-j", CHAOS_CHAIN])?;
        run_in_netns(netns, "iptables", ["-I", "OUTPUT", "1", "-j", CHAOS_CHAIN])?;
    }
    Ok(())
}

/// Runs `f` on a thread that has joined the network namespace `netns` (a thread's network
/// namespace is its own), so the host can talk to addresses that only exist in the lab.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = Path::new(NETNS_DIR).join(netns);
    let file = std::fs::File::open(&path).map_err(LabError::io("open", &path))?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            LabError::Command {
                command: format!("setns {}", path.display()),
                detail: e.to_string(),
            }
        })?;
        f()
    })
    .join()
    .map_err(|_| LabError::Command {
        command: format!("thread in netns {netns}"),
        detail: "panicked".into(),
    })?
}
