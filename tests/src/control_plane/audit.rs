//! The apiserver's audit log of writes, for tests that must show what a
//! component wrote (and that it wrote nothing else): kube-apiserver's own
//! log backend (`--audit-policy-file`, `--audit-log-path`), so every write
//! that reached the apiserver is there, whoever made it.
//!
//! The policy records create, update, patch and delete requests with their
//! request body (level `Request`), once their response is complete; reads
//! and watches are not recorded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The audit policy: writes with their request body, nothing else.
const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted", "Panic"]
rules:
- level: Request
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// Writes the policy into `dir` and returns kube-apiserver's flags for a
/// JSON log at `log`.
pub fn apiserver_args(dir: &Path, log: &Path) -> Result<Vec<String>> {
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(&policy, POLICY).with_context(|| format!("writing {}", policy.display()))?;
    Ok(vec![
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
        "--audit-log-format=json".to_owned(),
        // Written as requests complete, so a test reads what happened so far.
        "--audit-log-mode=blocking".to_owned(),
    ])
}

/// Where the audit log of a sandbox whose logs are in `logs` is.
pub fn log_path(logs: &Path) -> PathBuf {
    logs.join("kube-apiserver-audit.log")
}

/// One write the apiserver completed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditedWrite {
    /// When the response was complete.
    pub at: DateTime<Utc>,
    /// Who wrote (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    pub user: String,
    /// `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The resource (`pods`, `statefulsets`, `emqxes`, ...).
    pub resource: String,
    /// The subresource (`status`), if any.
    pub subresource: Option<String>,
    /// The object's namespace, if namespaced.
    pub namespace: Option<String>,
    /// The object's name (empty for a create with `generateName`).
    pub name: String,
    /// The HTTP status code of the response.
    pub code: u16,
    /// The request body, if it had one.
    pub body: Option<Value>,
}

impl AuditedWrite {
    /// `resource` or `resource/subresource`.
    pub fn target(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

impl std::fmt::Display for AuditedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:<6} {} {}/{}",
            self.at.format("%H:%M:%S%.3f"),
            self.code,
            self.verb,
            self.target(),
            self.namespace.as_deref().unwrap_or("-"),
            self.name
        )
    }
}

/// The writes recorded in `log` so far (a missing log is no writes). A line
/// that is not an audit event is an error naming its line number. The log is
/// read while the apiserver appends to it, so a last line without its
/// newline is an event still being written and is left for the next read.
pub fn read_writes(log: &Path) -> Result<Vec<AuditedWrite>> {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            parse_event(line).with_context(|| format!("{} line {}", log.display(), i + 1))
        })
        .collect()
}

fn parse_event(line: &str) -> Result<AuditedWrite> {
    let event: Value = serde_json::from_str(line).context("not JSON")?;
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let at = text("/stageTimestamp").context("no stageTimestamp")?;
    Ok(AuditedWrite {
        at: DateTime::parse_from_rfc3339(at)
            .context("stageTimestamp")?
            .with_timezone(&Utc),
        user: text("/user/username").unwrap_or_default().to_owned(),
        verb: text("/verb").context("no verb")?.to_owned(),
        resource: text("/objectRef/resource").unwrap_or_default().to_owned(),
        subresource: text("/objectRef/subresource").map(str::to_owned),
        namespace: text("/objectRef/namespace").map(str::to_owned),
        name: text("/objectRef/name").unwrap_or_default().to_owned(),
        code: event
            .pointer("/responseStatus/code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or_default(),
        body: event.get("requestObject").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_event_reads_as_a_write() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","stage":"ResponseComplete","verb":"patch","user":{"username":"system:serviceaccount:ops:rec"},"objectRef":{"resource":"pods","namespace":"default","name":"p-0","apiVersion":"v1","subresource":"status"},"responseStatus":{"code":200},"requestObject":{"status":{}},"stageTimestamp":"2026-12-02T07:40:14.123456Z"}"#;
        let w = parse_event(line).expect("an event");
        assert_eq!(w.user, "system:serviceaccount:ops:rec");
        assert_eq!(w.target(), "pods/status");
        assert_eq!(w.namespace.as_deref(), Some("default"));
        assert_eq!(
            (w.verb.as_str(), w.name.as_str(), w.code),
            ("patch", "p-0", 200)
        );
        assert!(w.body.is_some());
        assert_eq!(
            w.to_string(),
            "07:40:14.123 200 patch  pods/status default/p-0"
        );
        assert!(parse_event("{}").is_err(), "no timestamp");
        assert!(parse_event("not json").is_err());
    }

    /// The apiserver appends while tests read: the event it is still writing
    /// is not an error, and a broken complete line still is.
    #[test]
    fn an_event_still_being_written_is_left_for_the_next_read() {
        let line = r#"{"verb":"create","user":{"username":"u"},"objectRef":{"resource":"leases","namespace":"n","name":"l"},"responseStatus":{"code":201},"stageTimestamp":"2026-12-02T07:40:14Z"}"#;
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.log");
        std::fs::write(&log, format!("{line}\n{}", &line[..40])).expect("write");
        let writes = read_writes(&log).expect("the complete line reads");
        assert_eq!(writes.len(), 1);
        std::fs::write(&log, format!("{}\n{line}\n", &line[..40])).expect("write");
        assert!(read_writes(&log).is_err(), "a broken complete line");
    }
}
