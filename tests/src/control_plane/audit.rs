//! The apiserver's audit log of writes, for tests that must show what a
//! component wrote (and that it wrote nothing else): kube-apiserver's own
//! log backend (`--audit-policy-file`, `--audit-log-path`), so every write
//! that reached the apiserver is there, whoever made it.
//!
//! The policy records create, update, patch and delete requests with their
//! request body (level `Request`), once their response is complete. Reads
//! and watches are recorded only for the users a test names
//! ([`apiserver_args`]), once each as it arrives (stage `RequestReceived`,
//! level `Metadata`), so that a benchmark can count every request of one
//! component by verb, watches included.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The audit verbs of writes.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The audit policy: writes with their request body; every other request of
/// `readers` without bodies, as it arrives; nothing else. The first rule a
/// request matches decides, so a reader's write is logged once, as a write.
fn policy(readers: &[String]) -> Result<String> {
    let mut policy = format!(
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["Panic"]
rules:
- level: Request
  verbs: {}
  omitStages: ["RequestReceived", "ResponseStarted"]
"#,
        serde_json::to_string(&WRITE_VERBS)?
    );
    if !readers.is_empty() {
        policy.push_str(&format!(
            r#"- level: Metadata
  users: {}
  omitStages: ["ResponseStarted", "ResponseComplete"]
"#,
            serde_json::to_string(readers)?
        ));
    }
    policy.push_str("- level: None\n");
    Ok(policy)
}

/// Writes the policy (writes of everyone, every request of `readers`) into
/// `dir` and returns kube-apiserver's flags for a JSON log at `log`.
pub fn apiserver_args(dir: &Path, log: &Path, readers: &[String]) -> Result<Vec<String>> {
    let policy_path = dir.join("audit-policy.yaml");
    std::fs::write(&policy_path, policy(readers)?)
        .with_context(|| format!("writing {}", policy_path.display()))?;
    let policy = policy_path;
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

/// One request in the audit log: a write the apiserver completed, or a
/// request of a reader as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditedWrite {
    /// When the response was complete (a reader's request: when it arrived).
    pub at: DateTime<Utc>,
    /// Who wrote (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    pub user: String,
    /// `create`, `update`, `patch`, `delete`, `deletecollection`; for a
    /// reader also `get`, `list`, `watch`.
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
    /// Whether the request was a write.
    pub fn is_write(&self) -> bool {
        WRITE_VERBS.contains(&self.verb.as_str())
    }

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

/// The writes recorded in `log` so far (a missing log is no writes); see
/// [`read_requests`].
pub fn read_writes(log: &Path) -> Result<Vec<AuditedWrite>> {
    let mut requests = read_requests(log)?;
    requests.retain(AuditedWrite::is_write);
    Ok(requests)
}

/// Every request recorded in `log` so far: the writes, and the readers'
/// reads (a missing log is none). A line that is not an audit event is an
/// error naming its line number. The log is read while the apiserver
/// appends to it, so a last line without its newline is an event still
/// being written and is left for the next read.
pub fn read_requests(log: &Path) -> Result<Vec<AuditedWrite>> {
    Ok(read_requests_from(log, 0)?.0)
}

/// The requests logged from byte `offset` of `log` on (as
/// [`read_requests`]), and the offset to read on from next time: a
/// benchmark reads the growing log of a long run in pieces. Errors name the
/// line's byte offset.
pub fn read_requests_from(log: &Path, offset: u64) -> Result<(Vec<AuditedWrite>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("seeking {} to {offset}", log.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", log.display()))?;
    let complete = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |end| end + 1);
    let mut requests = Vec::new();
    let mut at = offset;
    for line in bytes[..complete].split_inclusive(|b| *b == b'\n') {
        let start = at;
        at += line.len() as u64;
        let line = std::str::from_utf8(line)
            .with_context(|| format!("{} at byte {start}: not UTF-8", log.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        requests
            .push(parse_event(line).with_context(|| format!("{} at byte {start}", log.display()))?);
    }
    Ok((requests, offset + complete as u64))
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

    #[test]
    fn reads_are_requests_but_not_writes() {
        let read = r#"{"verb":"list","stage":"RequestReceived","user":{"username":"r"},"objectRef":{"resource":"pods","namespace":"n"},"stageTimestamp":"2026-12-02T07:40:14Z"}"#;
        let write = r#"{"verb":"patch","stage":"ResponseComplete","user":{"username":"r"},"objectRef":{"resource":"emqxes","namespace":"n","name":"e","subresource":"status"},"responseStatus":{"code":200},"stageTimestamp":"2026-12-02T07:40:15Z"}"#;
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.log");
        std::fs::write(&log, format!("{read}\n{write}\n")).expect("write");
        let requests = read_requests(&log).expect("requests");
        assert_eq!(
            requests.iter().map(|r| r.verb.as_str()).collect::<Vec<_>>(),
            ["list", "patch"]
        );
        let writes = read_writes(&log).expect("writes");
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].target(), "emqxes/status");
        // Read on from where the first line ends.
        let (rest, end) = read_requests_from(&log, read.len() as u64 + 1).expect("rest");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].verb, "patch");
        assert_eq!(end, std::fs::metadata(&log).expect("len").len());
    }

    #[test]
    fn the_policy_logs_readers_only_when_named() {
        let writes_only = policy(&[]).expect("policy");
        assert!(!writes_only.contains("Metadata"), "{writes_only}");
        let with_reader = policy(&["system:serviceaccount:ns:r".into()]).expect("policy");
        assert!(
            with_reader.contains(r#"users: ["system:serviceaccount:ns:r"]"#),
            "{with_reader}"
        );
        // The write rule comes first: a reader's write is logged as a write.
        let write_rule = with_reader.find("level: Request").expect("write rule");
        let read_rule = with_reader.find("level: Metadata").expect("read rule");
        assert!(write_rule < read_rule);
        assert!(with_reader.trim_end().ends_with("- level: None"));
    }
}
