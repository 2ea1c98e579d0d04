//! Streaming export of the events matching an explorer filter, as NDJSON or
//! CSV, in constant memory whatever their number.
//!
//! ```text
//! list_events(filter, EXPORT_CHUNK, cursor) ──▶ encode (NDJSON | CSV) ──▶ one chunk
//!        ▲                                                                  │
//!        └──────────── next_cursor (keyset: time, id) ◀────────────────────┘
//! ```
//!
//! The stream pages through the same query as `GET /api/events`
//! ([`Store::list_events`], newest first, keyset-paginated on `(time, id)`),
//! [`EXPORT_CHUNK`] events at a time, and encodes each page into one chunk
//! before asking for the next: at most one page is in memory, and the next
//! page is only read once the consumer (an HTTP body, which hyper polls as
//! the socket drains) asks for it. No connection is held between pages, and
//! on SQLite the pages are read by connections of their own that map none
//! of the file (see `Store::export_pool`): an export's memory does not grow
//! with the database either.
//!
//! Events stored while an export runs are newer than its first page and
//! not included; events removed meanwhile (retention) may be missing.

use futures_util::Stream;
use serde_json::Value;

use super::{EventFilter, EventView, Store, StoreError};

/// Events read (and encoded) per chunk.
pub const EXPORT_CHUNK: usize = 1000;

/// The columns of a CSV export, in order. `time` is RFC 3339 (UTC, ms),
/// `time_ms` milliseconds since the epoch; `user_identifiers`,
/// `properties`, `request` and `response` are JSON texts (`{}` or `null`
/// when absent), exactly as `GET /api/events` shows them.
pub const CSV_COLUMNS: [&str; 11] = [
    "id",
    "time",
    "time_ms",
    "app",
    "event",
    "client_ip",
    "count",
    "user_identifiers",
    "properties",
    "request",
    "response",
];

/// How exported events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line (`\n`-terminated), the shape of
    /// `GET /api/events` items.
    Ndjson,
    /// RFC 4180 CSV with a header row of [`CSV_COLUMNS`].
    Csv,
}

impl ExportFormat {
    /// The format named `name` (`ndjson` or `csv`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// Its file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

/// Where an export stands between two chunks.
struct Cursor {
    store: Store,
    filter: EventFilter,
    format: ExportFormat,
    /// The `(time, id)` of the last event written; `None` before the first
    /// page.
    after: Option<(i64, i64)>,
    /// Whether the last page was read.
    done: bool,
}

impl Store {
    /// The events matching `filter`, newest first, encoded as `format`: a
    /// stream of chunks of at most [`EXPORT_CHUNK`] events each (the first
    /// CSV chunk starts with the header row, so an empty export is the
    /// header alone, an empty NDJSON export nothing).
    ///
    /// A database error ends the stream with that error after the chunks
    /// already produced.
    pub fn export_events(
        &self,
        filter: EventFilter,
        format: ExportFormat,
    ) -> impl Stream<Item = Result<Vec<u8>, StoreError>> + Send + 'static {
        // The same queries, on the export connections.
        let store = Store {
            pool: self.export_pool.clone(),
            ..self.clone()
        };
        let start = Cursor {
            store,
            filter,
            format,
            after: None,
            done: false,
        };
        futures_util::stream::try_unfold(start, |mut c| async move {
            if c.done {
                return Ok(None);
            }
            let first = c.after.is_none();
            let page = c
                .store
                .list_events(&c.filter, EXPORT_CHUNK, c.after)
                .await?;
            c.after = page.events.last().map(|e| (e.time_ms, e.id));
            c.done = page.next_cursor.is_none() || c.after.is_none();
            let chunk = match c.format {
                ExportFormat::Ndjson => ndjson_chunk(&page.events)?,
                ExportFormat::Csv => csv_chunk(&page.events, first)?,
            };
            Ok(Some((chunk, c)))
        })
    }
}

/// `events` as NDJSON lines.
fn ndjson_chunk(events: &[EventView]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(events.len() * 256);
    for event in events {
        serde_json::to_writer(&mut out, event).map_err(encoding)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// `events` as CSV records, after the header row when `header`.
fn csv_chunk(events: &[EventView], header: bool) -> Result<Vec<u8>, StoreError> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(events.len() * 256));
    if header {
        writer.write_record(CSV_COLUMNS).map_err(encoding)?;
    }
    let json = |v: &Value| v.to_string();
    for e in events {
        writer
            .write_record([
                e.id.to_string().as_str(),
                &e.time,
                &e.time_ms.to_string(),
                &e.app,
                &e.event,
                &e.client_ip,
                &e.count.to_string(),
                &json(&e.user_identifiers),
                &json(&e.properties),
                &json(&e.request),
                &json(&e.response),
            ])
            .map_err(encoding)?;
    }
    writer.into_inner().map_err(|e| encoding(e.into_error()))
}

/// An encoding failure (writing to memory cannot fail for I/O reasons; a
/// value that cannot be serialized would be a bug) as a store error.
fn encoding(e: impl std::fmt::Display) -> StoreError {
    StoreError::Encoding(e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: i64, event: &str) -> EventView {
        EventView {
            id,
            app: "shop".into(),
            event: event.into(),
            time: "2026-12-07T12:00:00.000Z".into(),
            time_ms: 1_796_000_000_000,
            client_ip: "81.2.69.1".into(),
            count: 1,
            properties: json!({"note": "a \"quoted\", comma\nnewline"}),
            user_identifiers: json!({}),
            request: Value::Null,
            response: Value::Null,
        }
    }

    /// Commas, quotes and newlines are quoted, and the csv crate reads
    /// every field back as written.
    #[test]
    fn csv_quotes_and_reads_back() {
        let chunk = csv_chunk(&[event(1, "a,b"), event(2, "x\"y")], true).unwrap();
        let mut reader = csv::Reader::from_reader(chunk.as_slice());
        assert_eq!(reader.headers().unwrap(), CSV_COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][4], "a,b");
        assert_eq!(&rows[1][4], "x\"y");
        let props: Value = serde_json::from_str(&rows[0][8]).unwrap();
        assert_eq!(props["note"], "a \"quoted\", comma\nnewline");
        assert_eq!(&rows[0][9], "null");
    }

    /// One parseable JSON object per `\n`-terminated line.
    #[test]
    fn ndjson_is_one_line_per_event() {
        let chunk = ndjson_chunk(&[event(1, "a"), event(2, "b")]).unwrap();
        let text = String::from_utf8(chunk).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["id"], 2);
        assert!(text.ends_with('\n'));
    }
}
