//! The Event Explorer's trend chart: counts per time bucket as an inline
//! SVG bar chart, rendered on the server (no script, nothing fetched).
//!
//! Each bar carries a `<title>` (its bucket and count) for tooltips and
//! screen readers, and the chart has a text summary beside it.

use maud::{Markup, html};

use super::layout::when;
use crate::store::TrendView;

/// Drawing area, in SVG user units.
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 200.0;
/// Margins for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// Bucket widths offered to the chart, in seconds: the smallest that gives
/// at most [`MAX_BARS`] bars is used.
const BUCKETS_S: [i64; 9] = [
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
];
/// Most bars drawn.
pub const MAX_BARS: i64 = 96;

/// The bucket width (seconds) for a range of `span_ms`.
pub fn bucket_for(span_ms: i64) -> i64 {
    BUCKETS_S
        .iter()
        .copied()
        .find(|b| span_ms / (b * 1000) <= MAX_BARS)
        .unwrap_or_else(|| (span_ms / 1000 / MAX_BARS).max(86_400))
}

/// Human text for a bucket width.
fn bucket_text(bucket_s: i64) -> String {
    match bucket_s {
        s if s % 86_400 == 0 => format!("{} day", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The chart of the first (ungrouped) series of `trend`.
pub fn trend_chart(trend: &TrendView) -> Markup {
    let points = trend
        .series
        .first()
        .map(|s| s.points.as_slice())
        .unwrap_or_default();
    let total: i64 = points.iter().map(|p| p.count).sum();
    let max = points.iter().map(|p| p.count).max().unwrap_or(0).max(1);
    let n = points.len().max(1) as f64;
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).max(1.0);
    let summary = format!(
        "{total} occurrence{} from {} to {}, per {}; busiest bucket: {max}",
        if total == 1 { "" } else { "s" },
        when(trend.since),
        when(trend.until),
        bucket_text(trend.bucket_s),
    );
    let y_of = |count: i64| TOP + plot_h - (count as f64 / max as f64) * plot_h;
    html! {
        figure.chart id="trend" {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="trend-summary"
                xmlns="http://www.w3.org/2000/svg" data-total=(total) {
                line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH) y2=(TOP + plot_h) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
                text x=(LEFT - 4.0) y=(TOP + 10.0) text-anchor="end" { (max) }
                text x=(LEFT - 4.0) y=(TOP + plot_h) text-anchor="end" { "0" }
                @for (i, p) in points.iter().enumerate() {
                    @if p.count > 0 {
                        @let y = y_of(p.count);
                        rect.bar x=(format!("{:.1}", LEFT + i as f64 * slot + (slot - bar_w) / 2.0))
                            y=(format!("{y:.1}")) width=(format!("{bar_w:.1}"))
                            height=(format!("{:.1}", TOP + plot_h - y)) data-count=(p.count) {
                            title { (when(p.time_ms)) ": " (p.count) }
                        }
                    }
                }
                text x=(LEFT) y=(HEIGHT - 6.0) { (when(trend.since)) }
                text x=(WIDTH) y=(HEIGHT - 6.0) text-anchor="end" { (when(trend.until)) }
            }
            figcaption id="trend-summary" { (summary) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TrendPoint, TrendSeries};

    /// Ranges get at most `MAX_BARS` buckets.
    #[test]
    fn buckets_fit_the_range() {
        assert_eq!(bucket_for(3600 * 1000), 60);
        assert_eq!(bucket_for(24 * 3600 * 1000), 900);
        for days in [1, 7, 30, 365] {
            let span = days * 86_400_000;
            assert!(span / (bucket_for(span) * 1000) <= MAX_BARS, "{days}");
        }
    }

    /// One bar per non-empty bucket, with its count.
    #[test]
    fn bars_are_drawn() {
        let trend = TrendView {
            bucket_s: 60,
            since: 0,
            until: 180_000,
            series: vec![TrendSeries {
                group: None,
                total: 5,
                points: [2, 0, 3]
                    .iter()
                    .enumerate()
                    .map(|(i, &count)| TrendPoint {
                        time: String::new(),
                        time_ms: i as i64 * 60_000,
                        count,
                    })
                    .collect(),
            }],
        };
        let svg = trend_chart(&trend).into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("data-total=\"5\""));
    }
}
