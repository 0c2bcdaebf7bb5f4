//! How much memory a lab's node costs the host: the proportional set size (PSS) of every
//! process in the node's cgroup (dockerd, containerd, shims, containers), read from
//! `/proc/<pid>/smaps_rollup`. PSS splits shared pages (the dockerd binary every node maps)
//! between the processes sharing them, so the nodes' sizes add up to what the host spends;
//! RSS would count the shared pages once per node.

use crate::cgroup::NodeCgroup;

/// Bytes of PSS of every process in `cgroup` (processes that end while read are skipped).
pub fn pss_bytes(cgroup: &NodeCgroup) -> u64 {
    cgroup
        .pids()
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|text| pss_of(&text))
        .sum()
}

/// The `Pss:` line of a `smaps_rollup` file, in bytes (the kernel writes kB).
fn pss_of(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// Median and total of per-node sizes, in bytes (`(0, 0)` for none).
pub fn median_and_total(sizes: &[u64]) -> (u64, u64) {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    (median, sorted.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_read_from_its_line_in_kib() {
        let text = "55d0-7ffd ---p 00000000 00:00 0   [rollup]\nRss:   38000 kB\nPss:   12345 kB\nPss_Anon: 9000 kB\n";
        assert_eq!(pss_of(text), Some(12345 * 1024));
        assert_eq!(pss_of("Rss: 1 kB\n"), None);
    }

    #[test]
    fn the_median_and_total_of_node_sizes() {
        assert_eq!(median_and_total(&[3, 1, 2]), (2, 6));
        assert_eq!(median_and_total(&[]), (0, 0));
    }

    #[test]
    fn this_process_has_a_size() {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
        assert!(pss_of(&text).is_some_and(|b| b > 0));
    }
}
