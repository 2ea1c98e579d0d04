//! Turns a closed request record into the protocol's `request_record` event.
//!
//! Runs on the agent thread only: parameters are parsed here (query string,
//! urlencoded form, JSON body, route parameters), the client IP is resolved
//! if the request path did not need it, and every string that leaves the
//! process goes through the [`Scrubber`] — parameters, tracked header
//! values, user agent, referer, path, properties and user identifiers.

use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::protocol::{REQUEST_RECORD_VERSION, format_time};
use crate::record::{Entry, RecordInner, RecordState};
use crate::scrub::Scrubber;

/// What building one event found worth counting.
#[derive(Debug, Default)]
pub(crate) struct BuildReport {
    pub scrubbed: u64,
    pub invalid_input: u64,
}

/// Builds and scrubs the `request_record` of `record`.
pub(crate) fn request_record(
    record: &RecordInner,
    state: &RecordState,
    client_ip: Option<IpAddr>,
    strip_referer: bool,
    scrubber: &Scrubber,
) -> (Value, BuildReport) {
    let mut report = BuildReport::default();
    let text = |bytes: &[u8], report: &mut BuildReport| match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.to_owned()),
        Err(_) => {
            report.invalid_input += 1;
            None
        }
    };

    let mut headers = Vec::new();
    for (name, value) in record.header_lines() {
        if let Some(mut value) = text(value, &mut report) {
            if scrubber.scrub_keyed_str(name, &mut value) {
                report.scrubbed += 1;
            }
            headers.push(Value::Array(vec![name.into(), value.into()]));
        }
    }
    let scrubbed_text = |bytes: Option<&[u8]>, report: &mut BuildReport| -> String {
        let Some(mut s) = bytes.and_then(|b| text(b, report)) else {
            return String::new();
        };
        if scrubber.scrub_str(&mut s) {
            report.scrubbed += 1;
        }
        s
    };
    let user_agent = scrubbed_text(record.user_agent(), &mut report);
    let referer = if strip_referer {
        String::new()
    } else {
        scrubbed_text(record.referer(), &mut report)
    };
    let mut path = record.path_str().to_owned();
    if scrubber.scrub_str(&mut path) {
        report.scrubbed += 1;
    }

    let mut parameters = parameters(record, state, &mut report);
    report.scrubbed += scrubber.scrub_json(&mut parameters) as u64;

    let scheme = record.scheme_str();
    let authority = record
        .host_str()
        .map(str::to_owned)
        .or_else(|| record.host_header().and_then(|h| text(h, &mut report)))
        .unwrap_or_default();
    let (host, port) = split_authority(&authority, scheme);

    let mut sdk = Vec::new();
    for entry in &state.entries {
        match entry {
            Entry::Track {
                time,
                name,
                properties,
                user_identifiers,
                timestamp,
            } => {
                let mut options = Map::new();
                if !properties.is_empty() {
                    let mut props: Value = properties
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_json()))
                        .collect::<Map<_, _>>()
                        .into();
                    report.scrubbed += scrubber.scrub_json(&mut props) as u64;
                    options.insert("properties".into(), props);
                }
                if let Some(ids) = user_identifiers.as_ref().filter(|ids| !ids.is_empty()) {
                    let mut ids = ids_json(ids);
                    report.scrubbed += scrubber.scrub_json(&mut ids) as u64;
                    options.insert("user_identifiers".into(), ids);
                }
                sdk.push(object([
                    ("time", format_time(timestamp.unwrap_or(*time)).into()),
                    ("name", "track".into()),
                    (
                        "args",
                        Value::Array(vec![name.as_str().into(), Value::Object(options)]),
                    ),
                ]));
            }
            Entry::Identify { time, ids } => {
                let mut ids = ids_json(ids);
                report.scrubbed += scrubber.scrub_json(&mut ids) as u64;
                sdk.push(object([
                    ("time", format_time(*time).into()),
                    ("name", "identify".into()),
                    ("args", Value::Array(vec![ids])),
                ]));
            }
            Entry::Auth { .. } | Entry::Signup { .. } => {}
        }
    }

    let response = state.response.as_ref().map_or(Value::Null, |r| {
        object([
            ("status", r.status.into()),
            ("content_length", r.content_length.into()),
            ("content_type", r.content_type.clone().into()),
        ])
    });
    let end = record
        .end
        .lock()
        .map(|e| *e)
        .unwrap_or_default()
        .unwrap_or_else(SystemTime::now);
    // Values are moved into place: `json!` would clone every subtree.
    let request = object([
        (
            "rid",
            record
                .request_id()
                .and_then(|b| text(b, &mut report))
                .into(),
        ),
        ("verb", record.method_str().into()),
        ("path", path.into()),
        ("host", host.into()),
        ("port", port.into()),
        ("scheme", scheme.into()),
        (
            "remote_ip",
            record
                .peer
                .map(|p| p.ip().to_string())
                .unwrap_or_default()
                .into(),
        ),
        (
            "remote_port",
            record
                .peer
                .map(|p| p.port().to_string())
                .unwrap_or_default()
                .into(),
        ),
        ("user_agent", user_agent.into()),
        ("referer", referer.into()),
        ("headers", Value::Array(headers)),
        ("parameters", parameters),
    ]);
    let event = object([
        ("event_type", "request_record".into()),
        ("version", REQUEST_RECORD_VERSION.into()),
        ("rid", uuid::Uuid::new_v4().to_string().into()),
        (
            "client_ip",
            client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default()
                .into(),
        ),
        ("start", format_time(record.start).into()),
        ("end", format_time(end).into()),
        ("request", request),
        ("response", response),
        ("observed", object([("sdk", Value::Array(sdk))])),
    ]);
    (event, report)
}

/// A JSON object from owned values, without the copies `json!` makes.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn ids_json(ids: &[(compact_str::CompactString, compact_str::CompactString)]) -> Value {
    ids.iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect::<Map<_, _>>()
        .into()
}

/// `k=v&k=w` → `{"k": ["v", "w"]}`, the protocol's parameter shape.
fn form_map(input: &[u8]) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(input).take(256) {
        let entry = map
            .entry(k.into_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(v.into_owned()));
        }
    }
    Value::Object(map)
}

fn parameters(record: &RecordInner, state: &RecordState, report: &mut BuildReport) -> Value {
    let mut params = Map::new();
    if let Some(query) = record.query_str() {
        params.insert("query".into(), form_map(query.as_bytes()));
    }
    if let Some(body) = record.body() {
        let content_type = record
            .content_type()
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if mime == "application/x-www-form-urlencoded" {
            params.insert("form".into(), form_map(body));
        } else if mime == "application/json" || mime.ends_with("+json") {
            match serde_json::from_slice::<Value>(body) {
                Ok(json) => {
                    params.insert("json".into(), json);
                }
                Err(_) => report.invalid_input += 1,
            }
        }
    }
    if !state.route_params.is_empty() {
        let map: Map<String, Value> = state
            .route_params
            .iter()
            .map(|(k, v)| (k.clone(), Value::Array(vec![v.as_str().into()])))
            .collect();
        params.insert("params".into(), Value::Object(map));
    }
    Value::Object(params)
}

/// `example.com:8443` → (`example.com`, `8443`); without a port, the scheme's.
fn split_authority(authority: &str, scheme: &str) -> (String, String) {
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (authority, None),
        }
    };
    let port = port
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(default_port);
    (host.to_owned(), port.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Hosts split from their port, v6 literals included, with scheme defaults.
    #[test]
    fn authority_split() {
        let cases = [
            ("example.com", "https", "example.com", "443"),
            ("example.com:8080", "http", "example.com", "8080"),
            ("[::1]:3000", "http", "::1", "3000"),
            ("[::1]", "https", "::1", "443"),
            ("", "http", "", "80"),
            ("host:abc", "http", "host", "80"),
        ];
        for (authority, scheme, host, port) in cases {
            assert_eq!(
                split_authority(authority, scheme),
                (host.to_owned(), port.to_owned()),
                "{authority}"
            );
        }
    }

    /// Repeated form keys keep every value, in order.
    #[test]
    fn form_repeated_keys() {
        assert_eq!(
            form_map(b"a=1&b=x+y&a=2"),
            json!({"a": ["1", "2"], "b": ["x y"]})
        );
    }
}
