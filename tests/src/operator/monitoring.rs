//! The chart's monitoring (the Grafana dashboard and the PrometheusRule)
//! against what the binaries export: every metric a query names must be in
//! some `/metrics` page of the running pods, with every label the query
//! selects or groups by. A renamed metric or label would leave a dashboard
//! panel empty and an alert silent, and nothing else would notice.
//!
//! [`Scraper`] collects the pages of the operator's pods while a test runs
//! (series such as `evacuation_remaining` exist only during an upgrade);
//! [`problems`] compares them with the queries, which come from the chart
//! as `helm template` renders it ([`dashboard_queries`], [`rule_queries`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Labels Prometheus adds to every scraped series from its target (the
/// ServiceMonitor's pod and Service), so a query may use them on any metric.
pub const TARGET_LABELS: [&str; 7] = [
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "container",
    "endpoint",
];

/// One PromQL expression and where it comes from (panel or alert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub source: String,
    pub expr: String,
}

/// A metric an expression names, with the labels it uses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricUse {
    pub metric: String,
    pub labels: BTreeSet<String>,
}

/// What `/metrics` pages showed: each series name (`…_total`, `…_bucket`,
/// a gauge's own name) with the label names of its samples. A family
/// without samples still shows its series names (from `# TYPE`), with no
/// labels known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposition {
    pub series: BTreeMap<String, BTreeSet<String>>,
    /// Series names whose family has at least one sample.
    pub sampled: BTreeSet<String>,
}

impl Exposition {
    /// Adds one page of the Prometheus/OpenMetrics text format.
    pub fn add_page(&mut self, text: &str) -> Result<()> {
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                    bail!("malformed TYPE line {line:?}");
                };
                for name in series_names(family, kind) {
                    self.series.entry(name).or_default();
                }
            } else if line.is_empty() || line.starts_with('#') {
                continue;
            } else {
                let (name, labels) = sample_labels(line)?;
                self.sampled.insert(name.clone());
                self.series.entry(name).or_default().extend(labels);
            }
        }
        Ok(())
    }
}

/// The series names a family of `kind` exposes.
fn series_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// A sample line's series name and label names.
fn sample_labels(line: &str) -> Result<(String, BTreeSet<String>)> {
    let Some(brace) = line.find('{') else {
        let name = line.split_whitespace().next().unwrap_or_default();
        return Ok((name.to_owned(), BTreeSet::new()));
    };
    let name = &line[..brace];
    let mut labels = BTreeSet::new();
    let mut rest = &line[brace + 1..];
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.starts_with('}') {
            break;
        }
        let Some((label, after)) = rest.split_once("=\"") else {
            bail!("malformed sample {line:?}");
        };
        labels.insert(label.trim().to_owned());
        // The value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            bail!("unterminated label value in {line:?}");
        };
        rest = &after[end + 1..];
    }
    Ok((name.to_owned(), labels))
}

/// The metrics of this project an expression names (`emqx_reconciler_…`,
/// `emqx_webhook_…`), each with the labels its selector matches on, the
/// labels of every `by (…)`/`without (…)` whose aggregation encloses it,
/// and the label of a Grafana `label_values(metric, label)`.
pub fn uses(expr: &str) -> Vec<MetricUse> {
    let groupings = groupings(expr);
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < expr.len() {
        let rest = &expr[i..];
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let is_ours = rest.starts_with("emqx_reconciler_") || rest.starts_with("emqx_webhook_");
        if !(starts_word && is_ours) {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let len = rest.bytes().take_while(|b| is_ident(*b)).count();
        let metric = rest[..len].to_owned();
        let mut labels: BTreeSet<String> = groupings
            .iter()
            .filter(|(span, _)| span.contains(&i))
            .flat_map(|(_, labels)| labels.iter().cloned())
            .collect();
        if let Some(selector) = rest[len..].strip_prefix('{') {
            let body = selector.split('}').next().unwrap_or_default();
            for matcher in body.split(',') {
                let name: String = matcher
                    .trim()
                    .bytes()
                    .take_while(|b| is_ident(*b))
                    .map(char::from)
                    .collect();
                if !name.is_empty() {
                    labels.insert(name);
                }
            }
        }
        found.push(MetricUse { metric, labels });
        i += len;
    }
    // label_values(metric{…}, label): the label must exist on the metric.
    if let Some(args) = expr.trim().strip_prefix("label_values(")
        && let Some((_, label)) = args.trim_end_matches(')').rsplit_once(',')
    {
        for u in &mut found {
            u.labels.insert(label.trim().to_owned());
        }
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `by (…)`/`without (…)` of `expr`: the byte range of the
/// aggregation's argument it applies to, `sum by (a) (ARG)` or
/// `sum (ARG) by (a)`, and its labels.
fn groupings(expr: &str) -> Vec<(std::ops::Range<usize>, Vec<String>)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    for keyword in ["by", "without"] {
        let mut from = 0;
        while let Some(at) = expr[from..].find(keyword) {
            let start = from + at;
            let end = start + keyword.len();
            from = end;
            let word = (start == 0 || !is_ident(bytes[start - 1]))
                && bytes.get(end).is_none_or(|b| !is_ident(*b));
            let open = end + (expr[end..].len() - expr[end..].trim_start().len());
            if !word || bytes.get(open) != Some(&b'(') {
                continue;
            }
            let Some(close) = matching(bytes, open) else {
                continue;
            };
            let labels: Vec<String> = expr[open + 1..close]
                .split(',')
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            // `sum by (a) (ARG)`: the argument follows the label list.
            let after =
                close + 1 + (expr[close + 1..].len() - expr[close + 1..].trim_start().len());
            let span = if bytes.get(after) == Some(&b'(') {
                matching(bytes, after).map(|c| after..c)
            } else {
                // `sum (ARG) by (a)`: the argument precedes the keyword.
                let before = expr[..start].trim_end().len();
                (before > 0 && bytes[before - 1] == b')')
                    .then(|| opening(bytes, before - 1))
                    .flatten()
                    .map(|o| o..before)
            };
            if let Some(span) = span {
                out.push((span, labels));
            }
        }
    }
    out
}

/// The `)` that closes the `(` at `open`.
fn matching(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The `(` that the `)` at `close` closes.
fn opening(bytes: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..=close).rev() {
        match bytes[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every query of a Grafana dashboard: panel targets (rows' panels too)
/// and query variables.
pub fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    fn panels(list: &Value, out: &mut Vec<Query>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(Query {
                        source: format!("panel {title:?}"),
                        expr: expr.to_owned(),
                    });
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str());
        if variable["type"] == "query"
            && let Some(query) = query
        {
            out.push(Query {
                source: format!("variable {}", variable["name"]),
                expr: query.to_owned(),
            });
        }
    }
    out
}

/// Every alert and recording rule expression of PrometheusRule objects.
pub fn rule_queries(objects: &[Value]) -> Vec<Query> {
    objects
        .iter()
        .filter(|o| o["kind"] == "PrometheusRule")
        .flat_map(|o| o["spec"]["groups"].as_array().cloned().unwrap_or_default())
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|rule| {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())?
                .to_owned();
            let expr = match &rule["expr"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(Query {
                source: format!("rule {name}"),
                expr,
            })
        })
        .collect()
}

/// What the queries use that the pages do not show: a metric no binary
/// exports, or a label none of its samples carries (target labels aside).
/// A metric of the query whose family had no sample in any page cannot have
/// its labels checked, and that is a problem too: the test must run what
/// makes the series appear.
pub fn problems(queries: &[Query], pages: &Exposition) -> Vec<String> {
    let mut out = Vec::new();
    for query in queries {
        for u in uses(&query.expr) {
            let Some(labels) = pages.series.get(&u.metric) else {
                out.push(format!(
                    "{}: {} is not exported by the binaries",
                    query.source, u.metric
                ));
                continue;
            };
            let own: Vec<&String> = u
                .labels
                .iter()
                .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
                .collect();
            if own.is_empty() {
                continue;
            }
            if !pages.sampled.contains(&u.metric) {
                out.push(format!(
                    "{}: {} had no sample, so its labels {own:?} could not be checked",
                    query.source, u.metric
                ));
                continue;
            }
            for label in own {
                if !labels.contains(label) {
                    out.push(format!(
                        "{}: {} has no label {label:?} (it has {labels:?})",
                        query.source, u.metric
                    ));
                }
            }
        }
    }
    out
}

/// The queries of the chart's dashboard and PrometheusRule, both switched
/// on, as `helm template` renders them.
pub async fn chart_queries(sandbox: &crate::Sandbox) -> Result<Vec<Query>> {
    let mut helm = sandbox.helm();
    helm.args(["template", super::chart::RELEASE])
        .arg(super::chart::chart_dir())
        .args([
            "--namespace",
            super::chart::NAMESPACE,
            "--set",
            "grafanaDashboard.enabled=true,prometheusRule.enabled=true",
        ]);
    let out = super::chart::run(helm, None, Duration::from_secs(60)).await?;
    if !out.success {
        bail!("helm template failed: {}", out.stderr);
    }
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&out.stdout).context("helm template's output")?;
    let mut queries = rule_queries(&objects);
    let dashboards: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    if dashboards.is_empty() || queries.is_empty() {
        bail!("the chart rendered no dashboard ConfigMap or no PrometheusRule");
    }
    for configmap in dashboards {
        for (key, text) in configmap["data"].as_object().into_iter().flatten() {
            let dashboard: Value = serde_json::from_str(text.as_str().unwrap_or_default())
                .with_context(|| format!("dashboard {key} is not JSON"))?;
            queries.extend(dashboard_queries(&dashboard));
        }
    }
    Ok(queries)
}

/// Scrapes the `metrics` port of every running pod in a namespace every
/// half second, until stopped (or 30 minutes), and keeps what it saw.
pub struct Scraper {
    pages: Arc<Mutex<(Exposition, usize, Vec<String>)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    /// Starts scraping the pods of `namespace`.
    pub fn start(client: Client, namespace: &str) -> Scraper {
        let pages = Arc::new(Mutex::new((Exposition::default(), 0, Vec::new())));
        let shared = pages.clone();
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let task = tokio::spawn(async move {
            for _ in 0..3600 {
                for target in metrics_targets(&pods).await.unwrap_or_default() {
                    let page = get_metrics(target).await;
                    let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    match page.and_then(|text| state.0.add_page(&text)) {
                        Ok(()) => state.1 += 1,
                        Err(e) => {
                            if state.2.len() < 20 {
                                state.2.push(format!("{target}: {e:#}"));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Scraper { pages, task }
    }

    /// Stops scraping; what the pages showed and how many were read.
    pub fn stop(self) -> (Exposition, usize, Vec<String>) {
        self.task.abort();
        let state = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
        state.clone()
    }
}

/// `ip:port` of every container port named `metrics` of running pods.
async fn metrics_targets(pods: &Api<Pod>) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for pod in pods.list(&ListParams::default()).await?.items {
        let Some(ip) = pod
            .status
            .as_ref()
            .filter(|s| s.phase.as_deref() == Some("Running"))
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
        else {
            continue;
        };
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            for port in container.ports.iter().flatten() {
                if port.name.as_deref() == Some("metrics") {
                    let port = u16::try_from(port.container_port)?;
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    Ok(out)
}

/// `GET /metrics` over HTTP/1.0 (no chunking to undo), within 2 s.
async fn get_metrics(target: SocketAddr) -> Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nhost: metrics\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream
            .take(8 * 1024 * 1024)
            .read_to_end(&mut response)
            .await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("no answer within 2 s")??;
    let text = String::from_utf8(response).context("not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no header end in {} bytes", text.len());
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PAGE: &str = "\
# HELP emqx_reconciler_reconciles Reconcile passes.
# TYPE emqx_reconciler_reconciles counter
emqx_reconciler_reconciles_total{kind=\"EMQX\"} 3
# TYPE emqx_reconciler_phase gauge
emqx_reconciler_phase{namespace=\"default\",cluster=\"a\",phase=\"Ready\"} 1
# TYPE emqx_reconciler_evacuation_remaining gauge
# TYPE emqx_reconciler_reconcile_duration_seconds histogram
emqx_reconciler_reconcile_duration_seconds_bucket{le=\"0.1\",kind=\"EMQX\"} 1
emqx_reconciler_reconcile_duration_seconds_sum{kind=\"EMQX\"} 0.2
emqx_webhook_reviews_overloaded_total 0
# EOF
";

    fn pages() -> Exposition {
        let mut e = Exposition::default();
        e.add_page(PAGE).expect("parses");
        e
    }

    fn query(expr: &str) -> Vec<Query> {
        vec![Query {
            source: "q".into(),
            expr: expr.into(),
        }]
    }

    #[test]
    fn uses_collects_selector_grouping_and_label_values_labels() {
        let u = uses(
            r#"histogram_quantile(0.99, sum by (le, kind) (rate(emqx_reconciler_reconcile_duration_seconds_bucket{namespace="x"}[5m])))"#,
        );
        assert_eq!(u.len(), 1);
        assert_eq!(
            u[0].metric,
            "emqx_reconciler_reconcile_duration_seconds_bucket"
        );
        assert_eq!(
            u[0].labels,
            ["kind", "le", "namespace"].map(String::from).into()
        );
        let u =
            uses(r#"label_values(emqx_reconciler_upgrading{namespace=~"$namespace"}, cluster)"#);
        assert_eq!(
            u[0].labels,
            ["cluster", "namespace"].map(String::from).into()
        );
        // A grouping applies to its own aggregation's argument only, in
        // either position.
        let u = uses(
            "sum by (kind) (rate(emqx_reconciler_reconciles_total[5m])) + sum(emqx_webhook_x) without (endpoint)",
        );
        assert_eq!(u[0].labels, ["kind"].map(String::from).into());
        assert_eq!(u[1].labels, ["endpoint"].map(String::from).into());
        // Words that merely contain a metric-like part are not metrics.
        assert!(uses("my_emqx_reconciler_x + sum(foo)").is_empty());
    }

    #[test]
    fn a_query_of_exported_series_and_labels_has_no_problem() {
        let ok = query(
            r#"sum by (kind) (rate(emqx_reconciler_reconciles_total[5m])) + max by (cluster, phase) (emqx_reconciler_phase{phase="Aborted"})"#,
        );
        assert_eq!(problems(&ok, &pages()), Vec::<String>::new());
        // Target labels are Prometheus's to add.
        let ok = query(r#"rate(emqx_webhook_reviews_overloaded_total{namespace="ops"}[5m])"#);
        assert_eq!(problems(&ok, &pages()), Vec::<String>::new());
    }

    #[test]
    fn unknown_metrics_and_labels_are_named() {
        let p = problems(&query("emqx_reconciler_reconciles"), &pages());
        assert!(
            p[0].contains("emqx_reconciler_reconciles is not exported"),
            "{p:?}"
        );
        let p = problems(
            &query("sum by (revision) (emqx_reconciler_phase)"),
            &pages(),
        );
        assert!(p[0].contains("no label \"revision\""), "{p:?}");
        // Declared but never sampled: its labels cannot be vouched for.
        let p = problems(
            &query("max by (node) (emqx_reconciler_evacuation_remaining)"),
            &pages(),
        );
        assert!(p[0].contains("had no sample"), "{p:?}");
    }

    #[test]
    fn malformed_pages_are_errors_not_panics() {
        let mut e = Exposition::default();
        assert!(e.add_page("# TYPE onlyname").is_err());
        assert!(e.add_page("x{a=\"unterminated} 1").is_err());
        assert!(e.add_page("x{a} 1").is_err());
        // Escaped quotes inside a value do not end it.
        e.add_page("x{a=\"say \\\"hi\\\"\",b=\"2\"} 1")
            .expect("escaped quote");
        assert_eq!(e.series["x"], ["a", "b"].map(String::from).into());
    }

    #[test]
    fn dashboard_and_rule_queries_are_found_in_rows_and_variables() {
        let dashboard = json!({
            "panels": [
                {"title": "top", "targets": [{"expr": "a"}]},
                {"type": "row", "title": "r", "panels": [{"title": "inner", "targets": [{"expr": "b"}]}]}
            ],
            "templating": {"list": [
                {"type": "datasource", "name": "ds", "query": "prometheus"},
                {"type": "query", "name": "ns", "query": {"query": "label_values(c, namespace)"}}
            ]}
        });
        let exprs: Vec<String> = dashboard_queries(&dashboard)
            .into_iter()
            .map(|q| q.expr)
            .collect();
        assert_eq!(exprs, ["a", "b", "label_values(c, namespace)"]);
        let rules = [
            json!({"kind": "PrometheusRule", "spec": {"groups": [
                {"rules": [{"alert": "A", "expr": "x > 1"}, {"record": "r", "expr": "y"}]}
            ]}}),
            json!({"kind": "ConfigMap"}),
        ];
        let got: Vec<(String, String)> = rule_queries(&rules)
            .into_iter()
            .map(|q| (q.source, q.expr))
            .collect();
        assert_eq!(
            got,
            [
                ("rule A".to_owned(), "x > 1".to_owned()),
                ("rule r".to_owned(), "y".to_owned())
            ]
        );
    }
}
