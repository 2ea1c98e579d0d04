//! OpenTelemetry export (feature `otel`, setting [`otel_logs`](crate::Config::otel_logs)):
//! each tracked event also goes to an OTLP collector as one log record,
//! built from the scrubbed `request_record` the backend receives, so that
//! nothing unscrubbed leaves through this path either.
//!
//! The exporter is the official `opentelemetry-otlp` one over HTTP
//! (protobuf by default, JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`),
//! behind the SDK's batching log processor, which runs on a thread of its
//! own: the agent thread only hands it records. Endpoint, headers, timeout
//! and protocol come from the standard `OTEL_EXPORTER_OTLP_*` variables;
//! the resource (`service.name`…) from `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! | log record field | value |
//! | --- | --- |
//! | event name, body | the tracked event's name |
//! | timestamp | the event's time |
//! | severity | `INFO` |
//! | `client.address` | the client IP |
//! | `http.request.method` | the request's method |
//! | `url.path` | its path |
//! | `url.scheme`, `server.address` | its scheme and host |
//! | `user_agent.original` | its `User-Agent` |
//! | `enduser.id` | the user's identifier: the value when there is one key, else the identifiers as a JSON object |
//! | `sqreen.event.name` | the event's name |
//! | `sqreen.property.<key>` | each property, scrubbed |
//!
//! Events tracked outside a request have no request attributes.

use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use serde_json::Value;

/// The log record event name every tracked event carries (its own name is
/// the body and `sqreen.event.name`: the API takes only static names).
pub const EVENT_NAME: &str = "sqreen.tracked_event";

/// The OTLP log pipeline of one agent.
pub(crate) struct OtelLogs {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl std::fmt::Debug for OtelLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelLogs").finish_non_exhaustive()
    }
}

impl OtelLogs {
    /// The pipeline configured by the `OTEL_*` variables. Call it outside
    /// any async runtime (the exporter's blocking HTTP client runs one of
    /// its own).
    pub fn start() -> Result<Self, String> {
        let exporter = LogExporter::builder()
            .with_http()
            .build()
            .map_err(|e| e.to_string())?;
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let logger = provider.logger("sqreen");
        Ok(Self { provider, logger })
    }

    /// Emits one log record per `track` entry of a scrubbed
    /// `request_record` (the JSON the backend receives).
    pub fn export(&self, record_json: &[u8]) {
        let Ok(record) = serde_json::from_slice::<Value>(record_json) else {
            return;
        };
        let request = &record["request"];
        for entry in record["observed"]["sdk"].as_array().into_iter().flatten() {
            if entry["name"] != "track" {
                continue;
            }
            let name = entry["args"][0].as_str().unwrap_or_default();
            let options = &entry["args"][1];
            let mut log = self.logger.create_log_record();
            log.set_event_name(EVENT_NAME);
            log.set_severity_number(Severity::Info);
            log.set_severity_text("INFO");
            log.set_body(AnyValue::from(name.to_owned()));
            if let Some(time) = entry["time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            {
                log.set_timestamp(time);
            }
            log.add_attribute("sqreen.event.name", name.to_owned());
            let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
            if let Some(ip) = text(&record["client_ip"]) {
                log.add_attribute("client.address", ip);
            }
            for (attribute, field) in [
                ("http.request.method", "verb"),
                ("url.path", "path"),
                ("url.scheme", "scheme"),
                ("server.address", "host"),
                ("user_agent.original", "user_agent"),
            ] {
                if let Some(value) = text(&request[field]) {
                    log.add_attribute(attribute, value);
                }
            }
            if let Some(ids) = options["user_identifiers"].as_object() {
                let id = match (ids.len(), ids.values().next().and_then(Value::as_str)) {
                    (1, Some(value)) => value.to_owned(),
                    _ => Value::Object(ids.clone()).to_string(),
                };
                log.add_attribute("enduser.id", id);
            }
            for (key, value) in options["properties"].as_object().into_iter().flatten() {
                let value = match value {
                    Value::Bool(b) => AnyValue::Boolean(*b),
                    Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => AnyValue::Int(i),
                        (None, Some(f)) => AnyValue::Double(f),
                        (None, None) => AnyValue::from(n.to_string()),
                    },
                    Value::String(s) => AnyValue::from(s.clone()),
                    other => AnyValue::from(other.to_string()),
                };
                log.add_attribute(format!("sqreen.property.{key}"), value);
            }
            self.logger.emit(log);
        }
    }

    /// Sends what is batched and stops the pipeline. Call it outside any
    /// async runtime.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(target: "sqreen::agent", event = "otel.shutdown_failed", error = %e,
                "OpenTelemetry log export: the last records may be lost");
        }
    }
}
