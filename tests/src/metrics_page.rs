//! What the benchmarks read from Prometheus text pages (the reconciler's
//! `/metrics`, the API server's) and the figures they print from samples:
//! one parser and one median instead of one per benchmark.

use std::collections::BTreeMap;

use anyhow::Result;
use kube::Client;

/// One sample line of a page: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of `text`; comments and lines that are not a sample are
/// left out.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels)),
                None => (series, BTreeMap::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// `key="value",…}` with the values unescaped.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// The values of series `name` summed by the values of labels `keys` (a
/// missing label counts as empty).
pub fn sums_by(text: &str, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for sample in samples(text).into_iter().filter(|s| s.name == name) {
        let key = keys
            .iter()
            .map(|k| sample.labels.get(*k).cloned().unwrap_or_default())
            .collect();
        *out.entry(key).or_insert(0.0) += sample.value;
    }
    out
}

/// The values of series `name` summed over every label.
pub fn sum(text: &str, name: &str) -> f64 {
    sums_by(text, name, &[]).into_values().sum()
}

/// The API server's own `/metrics`.
pub async fn apiserver_page(client: &Client) -> Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// The nearest-rank percentile `p` (0–1] of `v`; NaN when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The lower median (nearest rank), as the benchmarks report it.
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP x_total help\n\
        # TYPE x_total counter\n\
        x_total{verb=\"GET\",resource=\"pods\"} 3\n\
        x_total{verb=\"GET\",resource=\"pods\",code=\"404\"} 2\n\
        x_total{verb=\"PUT\",resource=\"leases\"} 1.5\n\
        y 7\n\
        z{name=\"a \\\"quoted\\\" value\"} 1\n\
        not a sample\n";

    #[test]
    fn sums_by_the_labels_asked_and_unescapes_values() {
        let by_verb = sums_by(PAGE, "x_total", &["verb", "resource"]);
        assert_eq!(by_verb[&vec!["GET".to_owned(), "pods".to_owned()]], 5.0);
        assert_eq!(by_verb[&vec!["PUT".to_owned(), "leases".to_owned()]], 1.5);
        assert_eq!(sum(PAGE, "x_total"), 6.5);
        assert_eq!(sum(PAGE, "y"), 7.0);
        let z = samples(PAGE).into_iter().find(|s| s.name == "z").unwrap();
        assert_eq!(z.labels["name"], "a \"quoted\" value");
        assert_eq!(samples(PAGE).len(), 5);
    }

    #[test]
    fn median_is_the_lower_one_and_percentiles_the_nearest_rank() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), 99.0);
        assert_eq!(percentile(&hundred, 1.0), 100.0);
    }
}
