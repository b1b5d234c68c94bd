//! The log convention of both binaries: level from `RUST_LOG` (default
//! `info`), lines on stderr, as text or as flat JSON objects.
//!
//! Flat JSON is `tracing-subscriber`'s shape (`timestamp`, `level`, the
//! event's fields at the top level, `target`, `span`, `spans`) with one
//! difference: every key appears once. An event that also has a field named
//! `message` (`warn!(message = %m, "conversion failed")`) would otherwise
//! print two `message` keys, and a JSON reader keeps only one of them. Here
//! the event's text stays `message`; a later field whose key is taken is
//! written as `field.<name>`.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One flat JSON object per line.
    Json,
}

/// Installs the global subscriber. A second call (tests) keeps the first.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
    };
}

/// One JSON object per event, every key once (see the module docs). Use
/// with [`JsonFields`] for span fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Fields(Map::new());
        line.put("timestamp", Value::String(timestamp));
        line.put("level", Value::String(meta.level().to_string()));
        event.record(&mut line);
        line.put("target", Value::String(meta.target().to_owned()));
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(current) = current {
            let span_json = |span: &tracing_subscriber::registry::SpanRef<'_, S>| {
                let mut object = span
                    .extensions()
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(&f.fields).ok())
                    .unwrap_or_default();
                object.insert("name".into(), Value::String(span.name().to_owned()));
                Value::Object(object)
            };
            let spans: Vec<Value> = current.scope().from_root().map(|s| span_json(&s)).collect();
            line.put("span", span_json(&current));
            line.put("spans", Value::Array(spans));
        }
        writeln!(writer, "{}", Value::Object(line.0))
    }
}

/// The line being built.
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, name: &str, value: Value) {
        // Fields the `log` bridge adds; the normalized metadata has them.
        if name.starts_with("log.") {
            return;
        }
        let key = if self.0.contains_key(name) {
            format!("field.{name}")
        } else {
            name.to_owned()
        };
        self.0.insert(key, value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::String(value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: failing loudly is the point
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(log: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_field_named_message_does_not_repeat_the_key() {
        let lines = lines(|| {
            let span = tracing::info_span!("reconciling", object = "default/emqx");
            let _entered = span.enter();
            tracing::warn!(uid = "u1", message = %"spec.image is required", "conversion failed");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        // serde_json would silently keep one of two equal keys: count them.
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["message"], "conversion failed", "{line}");
        assert_eq!(value["field.message"], "spec.image is required", "{line}");
        assert_eq!(value["uid"], "u1");
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["span"]["object"], "default/emqx");
        assert_eq!(value["spans"][0]["name"], "reconciling");
        assert!(value["timestamp"].is_string() && value["target"].is_string());
    }
}
