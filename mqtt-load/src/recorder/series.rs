//! The connections-per-node time series a run produces, in one table.

use crate::Sample;

/// Connections per node over time, one column per node, plus the total.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSeries {
    /// Node names (columns), sorted.
    pub nodes: Vec<String>,
    /// Rows: seconds since start (ms precision) and one count per node.
    pub rows: Vec<(f64, Vec<u64>)>,
}

impl ConnectionSeries {
    /// Builds the table from samples; a node absent from a sample counts 0.
    pub fn from_samples(samples: &[Sample]) -> ConnectionSeries {
        let mut nodes: Vec<String> = samples
            .iter()
            .flat_map(|s| s.per_node.keys().cloned())
            .collect();
        nodes.sort();
        nodes.dedup();
        let rows = samples
            .iter()
            .map(|s| {
                let counts = nodes
                    .iter()
                    .map(|n| s.per_node.get(n).copied().unwrap_or(0))
                    .collect();
                (s.at.as_millis() as f64 / 1000.0, counts)
            })
            .collect();
        ConnectionSeries { nodes, rows }
    }

    /// Total per row.
    pub fn totals(&self) -> Vec<u64> {
        self.rows.iter().map(|(_, c)| c.iter().sum()).collect()
    }

    /// CSV: `seconds,<node>...,total`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("seconds");
        for n in &self.nodes {
            out.push(',');
            out.push_str(&csv_field(n));
        }
        out.push_str(",total\n");
        for ((t, counts), total) in self.rows.iter().zip(self.totals()) {
            out.push_str(&format!("{t:.3}"));
            for c in counts {
                out.push_str(&format!(",{c}"));
            }
            out.push_str(&format!(",{total}\n"));
        }
        out
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A short label for a node: the host's first DNS label (the pod name).
pub fn short_name(node: &str) -> String {
    let host = node.split_once('@').map_or(node, |(_, h)| h);
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return node.to_string();
    }
    host.split('.').next().unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    #[test]
    fn csv_has_a_column_per_node_and_a_total() {
        let samples = vec![
            Sample {
                at: Duration::from_millis(1000),
                per_node: BTreeMap::from([("emqx@a".to_string(), 3)]),
                clients_connected: 3,
            },
            Sample {
                at: Duration::from_millis(2000),
                per_node: BTreeMap::from([("emqx@a".to_string(), 1), ("emqx@b,x".to_string(), 2)]),
                clients_connected: 3,
            },
        ];
        let s = ConnectionSeries::from_samples(&samples);
        assert_eq!(
            s.to_csv(),
            "seconds,emqx@a,\"emqx@b,x\",total\n1.000,3,0,3\n2.000,1,2,3\n"
        );
        assert_eq!(
            short_name("emqx@emqx-core-0.emqx-headless.ns.svc"),
            "emqx-core-0"
        );
        assert_eq!(short_name("emqx@127.0.0.5"), "emqx@127.0.0.5");
    }
}
