//! The Event Explorer's trend chart: occurrences per time bucket as an
//! inline SVG bar chart, stacked by group (the largest groups, then
//! "other"), rendered on the server (no script, nothing fetched).
//!
//! The time axis has ticks at round times (every 10 minutes, 3 hours,
//! 1 day, … so that a range gets 4 to 10 of them), the count axis a few
//! round steps. Each bar carries a `<title>` (its group, bucket and count)
//! for tooltips and screen readers, each series is a `<g>` named by its
//! group, and the chart has a legend and a text summary beside it.

use maud::{Markup, html};

use super::layout::when;

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

/// Colours of the stacked series, by rank (the stylesheet's `.s0` … `.s7`);
/// "other" is `.so`.
pub const SERIES_COLOURS: usize = 8;

/// One series of a stacked chart.
#[derive(Clone, Debug)]
pub struct ChartSeries {
    /// What it counts, for the legend and the bars' titles.
    pub label: String,
    /// Where its legend entry links (the explorer narrowed to it), if anywhere.
    pub href: Option<String>,
    /// Occurrences per bucket, one per bucket of the chart.
    pub counts: Vec<i64>,
    /// Whether this is the remainder of the largest groups ("other").
    pub other: bool,
}

/// Time tick intervals, in seconds: the smallest giving at most
/// [`MAX_TICKS`] ticks is used, which leaves at least 4 (consecutive
/// intervals differ by at most 2.5×).
const TICKS_S: [i64; 19] = [
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    4 * 86_400,
    7 * 86_400,
    14 * 86_400,
];
/// Most time ticks drawn.
const MAX_TICKS: i64 = 10;

/// The tick interval (ms) for a range of `span_ms`.
fn tick_interval(span_ms: i64) -> i64 {
    TICKS_S
        .iter()
        .map(|s| s * 1000)
        .find(|t| span_ms / t <= MAX_TICKS)
        .unwrap_or_else(|| (span_ms / MAX_TICKS).max(1))
}

/// The times (ms) of the ticks between `since` and `until`, at multiples of
/// a nice interval (UTC), with their labels: `HH:MM` below a day (with the
/// day `MM-DD` on the first tick and where the day changes), `MM-DD` above.
pub fn time_ticks(since: i64, until: i64) -> Vec<(i64, String)> {
    let step = tick_interval(until - since);
    let first = since.div_euclid(step) * step + if since.rem_euclid(step) == 0 { 0 } else { step };
    let mut ticks = Vec::new();
    let mut last_day = String::new();
    let mut t = first;
    while t < until && ticks.len() <= MAX_TICKS as usize {
        let text = crate::time::format_ms(t);
        let day = text.get(5..10).unwrap_or("").to_owned();
        let clock = text.get(11..16).unwrap_or("");
        let label = if step >= 86_400_000 {
            day.clone()
        } else if day != last_day {
            format!("{day} {clock}")
        } else {
            clock.to_owned()
        };
        last_day = day;
        ticks.push((t, label));
        t = t.saturating_add(step);
    }
    ticks
}

/// A "nice" step (1, 2 or 5 × 10ⁿ, at least 1) splitting `max` into about
/// four, and the axis top (a multiple of it, at least `max`).
fn value_ticks(max: i64) -> (i64, i64) {
    let raw = (max.max(1) as f64 / 4.0).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude) as i64;
    let step = step.max(1);
    let top = ((max.max(1) + step - 1) / step) * step;
    (step, top)
}

/// A stacked bar chart of `series` (largest first, bottom up) over
/// `since`..`until` in buckets of `bucket_s`, with time and count axes and a
/// legend. `data-total` on the SVG is the sum of every series.
pub fn stacked_chart(series: &[ChartSeries], since: i64, until: i64, bucket_s: i64) -> Markup {
    let buckets = series
        .iter()
        .map(|s| s.counts.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let totals: Vec<i64> = (0..buckets)
        .map(|b| {
            series
                .iter()
                .map(|s| s.counts.get(b).copied().unwrap_or(0))
                .fold(0i64, i64::saturating_add)
        })
        .collect();
    let total = totals.iter().copied().fold(0i64, i64::saturating_add);
    let busiest = totals.iter().copied().max().unwrap_or(0);
    let (step, top) = value_ticks(busiest);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / buckets as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let bucket_ms = bucket_s.max(1) * 1000;
    let span = (buckets as i64).saturating_mul(bucket_ms).max(1) as f64;
    let x_of = |t: i64| LEFT + (t - since) as f64 / span * plot_w;
    let y_of = |count: i64| TOP + plot_h - (count as f64 / top as f64) * plot_h;
    let summary = format!(
        "{total} occurrence{} from {} to {}, per {}; busiest bucket: {busiest}",
        if total == 1 { "" } else { "s" },
        when(since),
        when(until),
        bucket_text(bucket_s),
    );
    let class = |i: usize, s: &ChartSeries| {
        if s.other {
            "so".to_owned()
        } else {
            format!("s{}", i % SERIES_COLOURS)
        }
    };
    // Each bucket's stack, bottom up: (series, y, height, count).
    let mut base = vec![0i64; buckets];
    let mut bars: Vec<Vec<(usize, f64, f64, i64)>> = vec![Vec::new(); series.len()];
    for (i, s) in series.iter().enumerate() {
        for (b, &n) in s.counts.iter().enumerate() {
            if n <= 0 {
                continue;
            }
            let low = base.get(b).copied().unwrap_or(0);
            let high = low.saturating_add(n);
            if let Some(slot_base) = base.get_mut(b) {
                *slot_base = high;
            }
            let (y_low, y_high) = (y_of(low), y_of(high));
            if let Some(list) = bars.get_mut(i) {
                list.push((b, y_high, y_low - y_high, n));
            }
        }
    }
    html! {
        figure.chart id="trend" {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="trend-summary"
                xmlns="http://www.w3.org/2000/svg" data-total=(total) {
                @for k in 1..=(top / step) {
                    @let y = y_of(k * step);
                    line.grid x1=(LEFT) y1=(format!("{y:.1}")) x2=(WIDTH) y2=(format!("{y:.1}")) {}
                    text.ytick x=(LEFT - 4.0) y=(format!("{:.1}", y + 4.0)) text-anchor="end" { (k * step) }
                }
                text.ytick x=(LEFT - 4.0) y=(TOP + plot_h) text-anchor="end" { "0" }
                @for (i, s) in series.iter().enumerate() {
                    g class={ "series " (class(i, s)) } data-group=(s.label) {
                        @for (b, y, h, n) in bars.get(i).map(Vec::as_slice).unwrap_or_default() {
                            @let t = since + *b as i64 * bucket_ms;
                            rect.bar x=(format!("{:.1}", LEFT + *b as f64 * slot + (slot - bar_w) / 2.0))
                                y=(format!("{y:.1}")) width=(format!("{bar_w:.1}"))
                                height=(format!("{:.1}", h.max(0.5))) data-count=(n) {
                                title { (s.label) " · " (when(t)) ": " (n) }
                            }
                        }
                    }
                }
                line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH) y2=(TOP + plot_h) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
                @for (t, label) in time_ticks(since, until) {
                    @let x = x_of(t);
                    line.axis x1=(format!("{x:.1}")) y1=(TOP + plot_h) x2=(format!("{x:.1}")) y2=(TOP + plot_h + 4.0) {}
                    text.tick x=(format!("{x:.1}")) y=(HEIGHT - 4.0) text-anchor="middle" data-time=(t) { (label) }
                }
            }
            @if series.len() > 1 || series.iter().any(|s| s.href.is_some()) {
                ul.legend id="legend" {
                    @for (i, s) in series.iter().enumerate() {
                        @let n = s.counts.iter().copied().fold(0i64, i64::saturating_add);
                        li {
                            span class={ "swatch " (class(i, s)) } {}
                            @if let Some(href) = &s.href {
                                a href=(href) { (s.label) }
                            } @else {
                                (s.label)
                            }
                            " " span.muted { (n) }
                        }
                    }
                }
            }
            figcaption id="trend-summary" { (summary) " (times in UTC)" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Series are stacked: one group per series, bars sum to the total.
    #[test]
    fn bars_are_stacked() {
        let series = vec![
            ChartSeries {
                label: "a".into(),
                href: Some("/events?ip=a".into()),
                counts: vec![2, 0, 3],
                other: false,
            },
            ChartSeries {
                label: "other".into(),
                href: None,
                counts: vec![1, 0, 0],
                other: true,
            },
        ];
        let svg = stacked_chart(&series, 0, 180_000, 60).into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert_eq!(svg.matches("<g class=\"series").count(), 2);
        assert!(svg.contains("data-total=\"6\""));
    }

    /// Every range gets 4 to 10 time ticks at round times.
    #[test]
    fn time_ticks_are_readable() {
        let since = 1_790_000_000_123;
        for span in [
            15 * 60_000,
            3_600_000,
            86_400_000,
            7 * 86_400_000,
            30 * 86_400_000,
            37 * 60_000,
            5 * 3_600_000 + 7,
        ] {
            let ticks = time_ticks(since, since + span);
            assert!((4..=11).contains(&ticks.len()), "{span}: {ticks:?}");
            assert!(ticks.iter().all(|(t, _)| t % 60_000 == 0), "{span}");
        }
        let ticks = time_ticks(0, 3_600_000);
        assert_eq!(ticks[0].1, "01-01 00:00");
        assert_eq!(ticks[1].1, "00:10");
    }

    /// The count axis has round steps and a top at or above the busiest bar.
    #[test]
    fn value_ticks_are_round() {
        assert_eq!(value_ticks(0), (1, 1));
        assert_eq!(value_ticks(7), (2, 8));
        assert_eq!(value_ticks(100), (50, 100));
        assert_eq!(value_ticks(123_456), (50_000, 150_000));
    }
}
