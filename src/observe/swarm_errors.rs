//! What the Engine's error answers to cluster calls mean. Only SwarmKit's own answers for
//! "no leader" and "not a manager" mean those states; any other error is a failed read
//! (retried with backoff, counted in `reconcile_errors_total`), never a verdict about the
//! raft.

use bollard::errors::Error as DockerError;

/// Fragments of the Engine's answers when the raft has no leader this manager can reach:
/// moby's "The swarm does not have a leader. It's possible that too few managers are
/// online...", SwarmKit's `raft: no elected cluster leader` and `raft: lost leadership`,
/// and the gRPC deadline a manager cut off from its leader runs into ("rpc error: code =
/// DeadlineExceeded desc = context deadline exceeded"; older Engines print "code = 4").
const NO_LEADER: &[&str] = &[
    "does not have a leader",
    "no elected cluster leader",
    "lost leadership",
    "context deadline exceeded",
];

/// A worker (a demoted manager) refuses cluster calls: moby's "This node is not a swarm
/// manager. Worker nodes can't be used to view or modify cluster state...".
pub(super) fn is_not_a_manager(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { message, .. } if message.contains("not a swarm manager"))
}

/// A manager without a raft leader answers list calls with one of [`NO_LEADER`] or not at
/// all (our own list deadline, [`DockerError::RequestTimeoutError`]). A 4xx, a 5xx with
/// another message, a broken connection or a body that does not decode are not "no
/// leader": reporting them as `quorum-lost` would send an operator to
/// `--force-new-cluster` over a full disk or a proxy's error page.
pub(super) fn is_no_leader(e: &DockerError) -> bool {
    match e {
        DockerError::RequestTimeoutError => true,
        DockerError::DockerResponseServerError { message, .. } => {
            NO_LEADER.iter().any(|fragment| message.contains(fragment))
        }
        _ => false,
    }
}

/// Whether the Engine answered 404: the object is not there (removed, or never made).
pub fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The Engine's message alone, without bollard's wrapping.
pub(super) fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn swarmkits_no_leader_answers_and_our_deadline_mean_no_leader() {
        for e in [
            server(500, "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."),
            server(500, "rpc error: code = DeadlineExceeded desc = context deadline exceeded"),
            server(500, "rpc error: code = 4 desc = context deadline exceeded"),
            server(503, "rpc error: code = Unknown desc = raft: no elected cluster leader"),
            DockerError::RequestTimeoutError,
        ] {
            assert!(is_no_leader(&e), "{e}");
        }
    }

    #[test]
    fn other_errors_are_failed_reads_not_a_lost_quorum() {
        for e in [
            server(400, "invalid filter 'role'"),
            server(404, "page not found"),
            server(500, "open /var/lib/docker/swarm/raft: too many open files"),
            server(502, "<html><body>Bad Gateway</body></html>"),
            server(503, "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it."),
            server(503, "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."),
        ] {
            assert!(!is_no_leader(&e), "{e}");
        }
        assert!(is_not_a_manager(&server(
            503,
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."
        )));
    }
}
