//! The node tables the checker judges by: every node asked once a second, a view that
//! shows a majority preferred.

use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListNodesOptions;

use super::check;
use super::history::{Event, History, Row};
use crate::Lab;

/// The node table every second, into the history. Every node's API is asked: a manager
/// cut off in a minority may still answer as leader with a stale list, so a view that
/// shows a majority of the raft reachable is preferred.
pub(super) async fn poll_tables(lab: Arc<Lab>, history: History) {
    loop {
        // Concurrently: a node cut off or frozen takes its whole timeout to fail.
        let asks = lab.state().nodes.into_iter().map(|record| {
            let lab = Arc::clone(&lab);
            async move {
                let host = record.name.as_str().to_owned();
                let client = lab.client(&host).await.ok()?;
                let listed = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.list_nodes(None::<ListNodesOptions>),
                )
                .await;
                let nodes = listed.ok()?.ok()?;
                let table = crate::NodeTable::new(&nodes);
                Some((host, table.rows.iter().map(row).collect::<Vec<Row>>()))
            }
        });
        let mut views: Vec<(String, Vec<Row>)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let best = views
            .iter()
            .position(|(_, rows)| check::shows_majority(rows))
            .or(if views.is_empty() { None } else { Some(0) });
        match best {
            Some(i) => {
                let (from, rows) = views.swap_remove(i);
                history.record(Event::Table { rows, from });
            }
            None => history.record(Event::NoLeader),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) fn row(r: &crate::NodeRow) -> Row {
    Row {
        id: r.id.clone(),
        hostname: r.hostname.clone(),
        role: r.role.clone(),
        state: r.state.clone(),
        reachability: r.reachability.clone(),
        leader: r.leader,
    }
}

pub(super) async fn rows(lab: &Lab) -> Vec<Row> {
    lab.node_table()
        .await
        .map(|t| t.rows.iter().map(row).collect())
        .unwrap_or_default()
}
