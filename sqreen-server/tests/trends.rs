//! Trends computed by the store, checked against counts made here by brute
//! force over the same events: every way the store answers a trend (one
//! index range per bucket, one sort of the range, properties in one pass or
//! largest groups then their cells, groups counted by the server, IPs found
//! through the attribute index) gives the same points, on
//! SQLite and PostgreSQL, with the newest events' attributes merged or not.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use serde_json::{Map, json};
use sqreen_server::store::{EventFilter, NewEvent, Store, TrendGroup, TrendQuery};

/// Ten minutes of events, one every 5 s: 7 IPs (and a third of the events
/// without one), two event names, two plans, some events standing for two
/// occurrences, a user on every fifth.
fn events(t0: i64) -> Vec<NewEvent> {
    (0..120)
        .map(|i: i64| {
            let mut properties = Map::new();
            properties.insert(
                "plan".into(),
                json!(if i % 3 == 0 { "gold" } else { "free" }),
            );
            let mut user_identifiers = BTreeMap::new();
            if i % 5 == 0 {
                user_identifiers.insert("uid".to_owned(), format!("u{}", i % 2));
            }
            NewEvent {
                rid: format!("trend-{i}"),
                event: if i % 4 == 0 { "a" } else { "b" }.to_owned(),
                time: t0 + i * 5_000,
                client_ip: if i % 3 == 1 {
                    String::new()
                } else {
                    format!("10.0.0.{}", i % 7)
                },
                user_identifiers,
                properties,
                count: if i % 10 == 0 { 2 } else { 1 },
                request: "null".into(),
                response: "null".into(),
                context_of: None,
            }
        })
        .collect()
}

/// A trend's series as `(group, points)`, in the store's order.
type Series = Vec<(Option<String>, Vec<i64>)>;

/// An event's group, or `None` when it belongs to none.
type GroupOf<'a> = &'a dyn Fn(&NewEvent) -> Option<String>;

/// The trend the store should answer, by brute force: bucket of 60 s from
/// `t0`, 10 buckets, at most `max_groups` groups by total then by name.
fn expected(
    all: &[NewEvent],
    t0: i64,
    keep: impl Fn(&NewEvent) -> bool,
    group: Option<GroupOf<'_>>,
    max_groups: usize,
) -> Series {
    let mut by_group: HashMap<Option<String>, Vec<i64>> = HashMap::new();
    if group.is_none() {
        by_group.insert(None, vec![0; 10]);
    }
    for e in all.iter().filter(|e| keep(e)) {
        let key = match group {
            None => None,
            Some(g) => match g(e) {
                Some(k) => Some(k),
                None => continue,
            },
        };
        let bucket = usize::try_from((e.time - t0) / 60_000).unwrap();
        by_group.entry(key).or_insert_with(|| vec![0; 10])[bucket] += e.count;
    }
    let mut series: Series = by_group.into_iter().collect();
    series.sort_by(|a, b| {
        let total = |s: &Vec<i64>| s.iter().sum::<i64>();
        total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
    });
    series.truncate(max_groups);
    series
}

async fn check_trends(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let (app, _) = store.create_app("shop").await.unwrap();
    let (other, _) = store.create_app("blog").await.unwrap();
    let now = sqreen_server::time::now_ms();
    let t0 = now - 600_000;
    let all = events(t0);
    // The first half merged into the index, the second half waiting.
    store.insert_events(app.id, &all[..60], &[]).await.unwrap();
    store.merge_attributes().await.unwrap();
    store.insert_events(app.id, &all[60..], &[]).await.unwrap();
    // Another app's events, which an app filter leaves out.
    let mut blog = events(t0);
    for e in &mut blog {
        e.rid.push_str("-blog");
    }
    store
        .insert_events(other.id, &blog[..10], &[])
        .await
        .unwrap();
    let mut all_apps = all.clone();
    all_apps.extend_from_slice(&blog[..10]);

    for merged in [false, true] {
        if merged {
            store.merge_attributes().await.unwrap();
        }
        let plan = |e: &NewEvent| e.properties["plan"].as_str().map(str::to_owned);
        // Events without an IP belong to no IP group.
        let ip = |e: &NewEvent| (!e.client_ip.is_empty()).then(|| e.client_ip.clone());
        // Events without a user are a group of their own, named "".
        let user = |e: &NewEvent| Some(e.user_key());
        let in_app = |e: &NewEvent| !e.rid.ends_with("-blog");
        let name = |e: &NewEvent| Some(e.event.clone());
        let cases: Vec<(&str, EventFilter, Option<TrendGroup>, Series)> = vec![
            (
                "everything",
                EventFilter::default(),
                None,
                expected(&all_apps, t0, |_| true, None, 3),
            ),
            (
                "one event",
                EventFilter {
                    event: Some("a".into()),
                    ..Default::default()
                },
                None,
                expected(&all_apps, t0, |e| e.event == "a", None, 3),
            ),
            (
                "one app",
                EventFilter {
                    app: Some("shop".into()),
                    ..Default::default()
                },
                None,
                expected(&all_apps, t0, in_app, None, 3),
            ),
            (
                "one property value",
                EventFilter {
                    property: Some("plan".into()),
                    value: Some("gold".into()),
                    ..Default::default()
                },
                None,
                expected(
                    &all_apps,
                    t0,
                    |e| plan(e).as_deref() == Some("gold"),
                    None,
                    3,
                ),
            ),
            (
                "by IP",
                EventFilter::default(),
                Some(TrendGroup::Ip),
                expected(&all_apps, t0, |_| true, Some(&ip), 3),
            ),
            (
                "one event by IP",
                EventFilter {
                    event: Some("b".into()),
                    ..Default::default()
                },
                Some(TrendGroup::Ip),
                expected(&all_apps, t0, |e| e.event == "b", Some(&ip), 3),
            ),
            (
                "one property value by IP",
                EventFilter {
                    property: Some("plan".into()),
                    value: Some("free".into()),
                    ..Default::default()
                },
                Some(TrendGroup::Ip),
                expected(
                    &all_apps,
                    t0,
                    |e| plan(e).as_deref() == Some("free"),
                    Some(&ip),
                    3,
                ),
            ),
            (
                "one app by plan",
                EventFilter {
                    app: Some("shop".into()),
                    ..Default::default()
                },
                Some(TrendGroup::Property("plan".into())),
                expected(&all_apps, t0, in_app, Some(&plan), 3),
            ),
            (
                "by event name",
                EventFilter::default(),
                Some(TrendGroup::Event),
                expected(&all_apps, t0, |_| true, Some(&name), 3),
            ),
            (
                "one property value by event name",
                EventFilter {
                    property: Some("plan".into()),
                    value: Some("gold".into()),
                    ..Default::default()
                },
                Some(TrendGroup::Event),
                expected(
                    &all_apps,
                    t0,
                    |e| plan(e).as_deref() == Some("gold"),
                    Some(&name),
                    3,
                ),
            ),
            (
                "one IP by user",
                EventFilter {
                    ip: Some("10.0.0.5".into()),
                    ..Default::default()
                },
                Some(TrendGroup::User),
                expected(&all_apps, t0, |e| e.client_ip == "10.0.0.5", Some(&user), 3),
            ),
        ];
        // The same store counting properties in two steps, as it does when
        // their cells are many, and leaving IPs and users to the database,
        // as it does when their events are many.
        let two_steps = store
            .clone()
            .with_one_pass_cells(1)
            .with_server_grouped_events(5);
        for (name, mut filter, group_by, want) in cases {
            filter.since = Some(t0);
            filter.until = Some(t0 + 600_000);
            for (how, store) in [("", &store), (", grouped by the database", &two_steps)] {
                let trend = store
                    .event_trend(&TrendQuery {
                        filter: filter.clone(),
                        bucket_s: 60,
                        group_by: group_by.clone(),
                        max_groups: 3,
                    })
                    .await
                    .unwrap();
                let got: Series = trend
                    .series
                    .iter()
                    .map(|s| (s.group.clone(), s.points.iter().map(|p| p.count).collect()))
                    .collect();
                assert_eq!(got, want, "{name}{how} (merged: {merged}) on {url}");
                for s in &trend.series {
                    assert_eq!(s.total, s.points.iter().map(|p| p.count).sum::<i64>());
                    assert_eq!(s.points[3].time_ms, t0 + 180_000, "{name}");
                }
            }
        }
    }
}

/// Every trend path agrees with brute force (SQLite).
#[test]
fn trends_match_brute_force_sqlite() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(check_trends(&sqlite_url()));
}

/// Every trend path agrees with brute force (PostgreSQL).
#[test]
fn trends_match_brute_force_postgres() {
    let Some(url) = postgres_url("trends_match_brute_force_postgres") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(check_trends(&url));
}
