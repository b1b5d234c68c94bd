//! What the kubelet's `GET /containerLogs/{namespace}/{pod}/{container}`
//! asks for and which part of a log answers it. Pure: the kubelet's server
//! (`kubelet_server.rs`) reads the files and streams.
//!
//! Read from Kubernetes v1.35.4, `pkg/kubelet/server/server.go`
//! (`getContainerLogs`): the query decodes into `v1.PodLogOptions` (the
//! legacy `tail` parameter becomes `tailLines`, `tail=all` none), an
//! undecodable query is a 400, options that fail `ValidatePodLogOptions`
//! (`pkg/apis/core/validation`) a 422, an unknown pod or container a 404, and a
//! `stream` other than `All` a 400 while the `PodLogsQuerySplitStreams` gate
//! is off (alpha, off in 1.35). The apiserver (`pkg/registry/core/pod/strategy.go`,
//! `LogLocation`) sends `follow`, `previous`, `timestamps`, `sinceSeconds`,
//! `sinceTime`, `tailLines` and `limitBytes`.
//!
//! The sandbox's node keeps a container's stdout and stderr in one file per
//! container instance, without per-line timestamps, so `timestamps`,
//! `sinceSeconds` and `sinceTime` are refused with a message that says so
//! rather than silently ignored.

use http::StatusCode;

/// A decoded, valid request for a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// Keep streaming until the container stops.
    pub follow: bool,
    /// The log of the previous (terminated) instance of the container.
    pub previous: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// At most this many bytes.
    pub limit_bytes: Option<u64>,
}

/// A refused request: the status and the plain-text body the kubelet answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Body (the kubelet writes the error's text).
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// Parses the path and query of a `/containerLogs/...` request.
pub fn parse(path: &str, query: Option<&str>) -> Result<LogRequest, Refusal> {
    let rest = path
        .strip_prefix("/containerLogs/")
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "404 page not found"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [namespace, pod, container] = segments.as_slice() else {
        return Err(Refusal::new(StatusCode::NOT_FOUND, "404 page not found"));
    };
    if pod.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Missing podID."}"#,
        ));
    }
    if container.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Missing container name."}"#,
        ));
    }
    if namespace.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Missing podNamespace."}"#,
        ));
    }
    let undecodable = || {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Unable to decode query."}"#,
        )
    };
    let invalid = || {
        Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"message": "Invalid request."}"#,
        )
    };
    let params = query_pairs(query.unwrap_or_default()).ok_or_else(undecodable)?;
    // The first value of a parameter counts, as with Go's url.Values.
    let first = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let int = |name: &str| -> Result<Option<i64>, Refusal> {
        match first(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| undecodable()),
        }
    };
    let tail_lines = match first("tail") {
        Some("all") => None,
        Some(tail) if !tail.is_empty() => Some(tail.parse::<i64>().map_err(|_| undecodable())?),
        _ => int("tailLines")?,
    };
    let limit_bytes = int("limitBytes")?;
    let since_seconds = int("sinceSeconds")?;
    let since_time = first("sinceTime").filter(|v| !v.is_empty());
    if since_time.is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_err()) {
        return Err(undecodable());
    }
    if tail_lines.is_some_and(|n| n < 0)
        || limit_bytes.is_some_and(|n| n < 1)
        || (since_seconds.is_some() && since_time.is_some())
        || since_seconds.is_some_and(|n| n < 1)
    {
        return Err(invalid());
    }
    if let Some(stream) = first("stream")
        && stream != "All"
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unable to return the given log stream: {stream:?}. Please enable PodLogsQuerySplitStreams feature gate in kubelet"
            ),
        ));
    }
    let timestamps = first("timestamps").is_some_and(go_bool);
    if timestamps || since_seconds.is_some() || since_time.is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the sandbox's simulated node keeps no per-line timestamps: timestamps, sinceSeconds and sinceTime are not supported",
        ));
    }
    Ok(LogRequest {
        namespace: (*namespace).to_string(),
        pod: (*pod).to_string(),
        container: (*container).to_string(),
        follow: first("follow").is_some_and(go_bool),
        previous: first("previous").is_some_and(go_bool),
        tail_lines: tail_lines.and_then(|n| u64::try_from(n).ok()),
        limit_bytes: limit_bytes.and_then(|n| u64::try_from(n).ok()),
    })
}

/// apimachinery's string → bool conversion: everything but `false` and `0`
/// (any case) is true.
fn go_bool(value: &str) -> bool {
    !matches!(value.to_ascii_lowercase().as_str(), "false" | "0")
}

/// `k=v&k2=v2`, percent-decoded (`+` is a space); `None` if an escape is broken.
fn query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Where the last `lines` lines of `content` begin (a final line without a
/// newline counts); `None` means all of it.
pub fn tail_start(content: &[u8], lines: Option<u64>) -> usize {
    let Some(lines) = lines else {
        return 0;
    };
    if lines == 0 {
        return content.len();
    }
    // A trailing newline ends the last line; it does not start another.
    let end = match content.last() {
        Some(b'\n') => content.len() - 1,
        _ => content.len(),
    };
    let mut seen = 0;
    for (i, byte) in content[..end].iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    0
}

/// What is left of `limitBytes` as chunks go out.
#[derive(Debug, Clone, Copy)]
pub struct ByteBudget(Option<u64>);

impl ByteBudget {
    /// A budget of `limit` bytes (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> ByteBudget {
        ByteBudget(limit)
    }

    /// The part of `chunk` that still fits, spending it.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        match &mut self.0 {
            None => chunk,
            Some(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                *left -= n as u64;
                &chunk[..n]
            }
        }
    }

    /// Whether nothing more may be sent.
    pub fn spent(&self) -> bool {
        self.0 == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, query: &str) -> LogRequest {
        parse(path, Some(query)).expect("valid request")
    }

    fn refused(path: &str, query: &str) -> Refusal {
        parse(path, Some(query)).expect_err("refused request")
    }

    #[test]
    fn the_apiservers_parameters_decode() {
        let r = ok(
            "/containerLogs/ns/pod-0/emqx",
            "follow=true&previous=true&tailLines=20&limitBytes=100",
        );
        assert_eq!(
            r,
            LogRequest {
                namespace: "ns".into(),
                pod: "pod-0".into(),
                container: "emqx".into(),
                follow: true,
                previous: true,
                tail_lines: Some(20),
                limit_bytes: Some(100),
            }
        );
        let plain = ok("/containerLogs/ns/p/c", "");
        assert!(!plain.follow && !plain.previous);
        assert_eq!((plain.tail_lines, plain.limit_bytes), (None, None));
        assert!(!ok("/containerLogs/ns/p/c", "follow=false").follow);
        assert!(!ok("/containerLogs/ns/p/c", "follow=0").follow);
        assert!(ok("/containerLogs/ns/p/c", "follow=1").follow);
        assert_eq!(ok("/containerLogs/ns/p/c", "tail=5").tail_lines, Some(5));
        assert_eq!(
            ok("/containerLogs/ns/p/c", "tail=all&tailLines=5").tail_lines,
            None
        );
        assert!(parse("/containerLogs/ns/p/c", None).is_ok());
        assert!(ok("/containerLogs/ns/p/c", "stream=All").container == "c");
    }

    #[test]
    fn bad_requests_get_the_kubelets_answers() {
        assert_eq!(
            refused("/containerLogs/ns/p", "").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            refused("/containerLogs/ns/p/c/extra", "").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(refused("/logs/x", "").status, StatusCode::NOT_FOUND);
        assert!(
            refused("/containerLogs/ns//c", "")
                .message
                .contains("Missing podID")
        );
        assert!(
            refused("/containerLogs/ns/p/", "")
                .message
                .contains("Missing container name")
        );
        assert!(
            refused("/containerLogs//p/c", "")
                .message
                .contains("Missing podNamespace")
        );
        for query in [
            "tailLines=x",
            "limitBytes=1e3",
            "tailLines=%zz",
            "sinceTime=yesterday",
        ] {
            assert_eq!(
                refused("/containerLogs/ns/p/c", query).status,
                StatusCode::BAD_REQUEST,
                "{query}"
            );
        }
        for query in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z",
        ] {
            assert_eq!(
                refused("/containerLogs/ns/p/c", query).status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{query}"
            );
        }
        let stream = refused("/containerLogs/ns/p/c", "stream=Stdout");
        assert_eq!(stream.status, StatusCode::BAD_REQUEST);
        assert!(stream.message.contains("PodLogsQuerySplitStreams"));
        for query in [
            "timestamps=true",
            "sinceSeconds=10",
            "sinceTime=2026-01-01T00:00:00Z",
        ] {
            let r = refused("/containerLogs/ns/p/c", query);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(r.message.contains("timestamps"), "{query}: {}", r.message);
        }
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(&log[tail_start(log, None)..], log);
        assert_eq!(&log[tail_start(log, Some(1))..], b"three\n");
        assert_eq!(&log[tail_start(log, Some(2))..], b"two\nthree\n");
        assert_eq!(&log[tail_start(log, Some(3))..], log);
        assert_eq!(&log[tail_start(log, Some(99))..], log);
        assert_eq!(&log[tail_start(log, Some(0))..], b"");
        let partial = b"one\ntwo\nthr";
        assert_eq!(&partial[tail_start(partial, Some(1))..], b"thr");
        assert_eq!(&partial[tail_start(partial, Some(2))..], b"two\nthr");
        assert_eq!(tail_start(b"", Some(3)), 0);
        assert_eq!(tail_start(b"\n\n", Some(1)), 1);
    }

    #[test]
    fn the_byte_budget_cuts_and_then_stops() {
        let mut budget = ByteBudget::new(Some(5));
        assert_eq!(budget.take(b"abc"), b"abc");
        assert!(!budget.spent());
        assert_eq!(budget.take(b"defg"), b"de");
        assert!(budget.spent());
        assert_eq!(budget.take(b"h"), b"");
        let mut free = ByteBudget::new(None);
        assert_eq!(free.take(b"anything"), b"anything");
        assert!(!free.spent());
    }
}
