//! Forming the swarm: init on the first manager, join the others with the right token.

use std::fmt;
use std::net::Ipv4Addr;

use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::Docker;

use crate::error::{LabError, Result};
use crate::names::Role;

/// The swarm's raft and control-plane port.
pub const SWARM_PORT: u16 = 2377;

/// A join token. Its `Debug` and `Display` never show the secret.
#[derive(Clone)]
pub struct JoinToken(String);

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

/// Makes `node` the first manager of a new swarm.
pub async fn init(client: &Docker, node: &str, addr: Ipv4Addr) -> Result<()> {
    init_swarm(client, node, addr, false).await
}

/// Disaster recovery on `node`, a manager: `docker swarm init --force-new-cluster
/// --advertise-addr <addr>`. The node becomes the only member of a new raft that keeps the
/// swarm's state (nodes, services, tokens); every other manager stays listed.
pub async fn force_new_cluster(client: &Docker, node: &str, addr: Ipv4Addr) -> Result<()> {
    init_swarm(client, node, addr, true).await
}

async fn init_swarm(client: &Docker, node: &str, addr: Ipv4Addr, force: bool) -> Result<()> {
    client
        .init_swarm(SwarmInitRequest {
            listen_addr: Some(format!("{addr}:{SWARM_PORT}")),
            advertise_addr: Some(addr.to_string()),
            force_new_cluster: force.then_some(true),
            ..Default::default()
        })
        .await
        .map_err(LabError::docker(node))?;
    Ok(())
}

/// The token that joins a node with `role`, read from a manager.
pub async fn join_token(client: &Docker, manager: &str, role: Role) -> Result<JoinToken> {
    let swarm = client
        .inspect_swarm()
        .await
        .map_err(LabError::docker(manager))?;
    let tokens = swarm.join_tokens.unwrap_or_default();
    let token = match role {
        Role::Manager => tokens.manager,
        Role::Worker => tokens.worker,
    };
    token
        .map(JoinToken)
        .ok_or_else(|| LabError::Usage(format!("manager {manager} returned no {role} join token")))
}

/// Joins `node` (at `addr`) to the swarm through `managers`. The Engine tries the first
/// address only (the others are what the node learns later): put one that answers first.
pub async fn join(
    client: &Docker,
    node: &str,
    addr: Ipv4Addr,
    managers: &[Ipv4Addr],
    token: &JoinToken,
) -> Result<()> {
    client
        .join_swarm(SwarmJoinRequest {
            listen_addr: Some(format!("{addr}:{SWARM_PORT}")),
            advertise_addr: Some(addr.to_string()),
            remote_addrs: Some(
                managers
                    .iter()
                    .map(|m| format!("{m}:{SWARM_PORT}"))
                    .collect(),
            ),
            join_token: Some(token.0.clone()),
            ..Default::default()
        })
        .await
        .or_else(|e| {
            // On a loaded host (a 100-node lab forming) the Engine gives up waiting after
            // its own timeout but keeps joining: the lab's wait for Ready nodes decides.
            if e.to_string().contains(JOIN_GOES_ON) {
                tracing::info!(node, "Join still in progress in the background");
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(LabError::docker(node))
}

/// What the Engine says when a join outlasts its wait but goes on.
const JOIN_GOES_ON: &str = "attempt to join the swarm will continue in the background";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_never_prints_its_secret() {
        let token = JoinToken("SWMTKN-1-secret".into());
        assert!(!format!("{token:?}").contains("SWMTKN"));
    }
}
