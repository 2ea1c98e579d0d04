//! Entry points for the agent's fuzz targets (`sqreen-core/fuzz`, run with
//! `cargo fuzz`) and for the stable test that replays their corpus
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes and runs one parser
//! or decoder of hostile input the way the agent does; a panic is a
//! finding. Only built with the `fuzzing` feature.
//!
//! | target | what it reads |
//! | --- | --- |
//! | [`scrubber`] | strings, URLs and JSON to scrub |
//! | [`client_ip`] | request headers as bytes, in both resolver modes |
//! | [`config_file`] | a configuration file, as TOML and as YAML |
//! | [`answers`] | backend answers: login, heartbeat, action pack, commands |

use std::net::IpAddr;
use std::time::Instant;

use serde_json::Value;

use crate::actions::ActionStore;
use crate::client_ip::{ClientIpResolver, IpHeaderFormat};
use crate::config::{ConfigBuilder, FileFormat};
use crate::protocol::{ActionsPack, BeatResponse, Command, LoginResponse};
use crate::scrub::Scrubber;

/// Strings, URLs and JSON documents through the default scrubber: never a
/// panic, and a sensitive key's value never survives in a scrubbed URL.
pub fn scrubber(data: &[u8]) {
    let Ok(scrubber) = Scrubber::new(None, None) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let mut owned = text.to_string();
    scrubber.scrub_str(&mut owned);
    if let Some(url) = scrubber.scrubbed_url(&text) {
        // The mask is longer than what it replaces (at most about 4x for
        // `token=x` pairs), never unbounded.
        assert!(url.len() <= 4 * text.len() + 64);
        // No value of a sensitive key survives.
        if let Some((_, rest)) = url.split_once('?') {
            let query = rest.split_once('#').map_or(rest, |(q, _)| q);
            for pair in query.split('&') {
                let Some((raw_key, value)) = pair.split_once('=') else {
                    continue;
                };
                let Some((key, _)) = form_urlencoded::parse(pair.as_bytes()).next() else {
                    continue;
                };
                if !value.is_empty() && scrubber.is_sensitive_key(&key) {
                    assert_eq!(value, crate::scrub::REDACTED, "{raw_key}");
                }
            }
        }
    }
    if let Ok(mut json) = serde_json::from_slice::<Value>(data) {
        scrubber.scrub_json(&mut json);
        assert!(serde_json::to_vec(&json).is_ok());
    }
}

/// Header lines (`name: value`, one per line, values as raw bytes) through
/// the client IP resolver, in default and trusted-proxy mode: a peer
/// outside the trusted network is always its own client.
pub fn client_ip(data: &[u8]) {
    let lines: Vec<(String, &[u8])> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?.trim().to_owned();
            Some((name, line.get(colon + 1..).unwrap_or_default()))
        })
        .take(64)
        .collect();
    let pairs: Vec<(&str, &[u8])> = lines.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let pairs: &[(&str, &[u8])] = &pairs;
    let peer: IpAddr = [10, 0, 0, 1].into();
    let outsider: IpAddr = [198, 51, 100, 7].into();
    for (header, format) in [
        (None, IpHeaderFormat::Plain),
        (Some("X-Real-Ip"), IpHeaderFormat::Plain),
        (Some("X-Unique-Id"), IpHeaderFormat::HaproxyXUniqueId),
    ] {
        let default = ClientIpResolver::new(header, format, Vec::new());
        let _ = default.resolve(&pairs, Some(peer));
        let _ = default.resolve(&pairs, None);
        let trusted =
            ClientIpResolver::new(header, format, vec!["10.0.0.0/8".parse().expect("a net")]);
        let _ = trusted.resolve(&pairs, Some(peer));
        assert_eq!(trusted.resolve(&pairs, Some(outsider)), Some(outsider));
    }
}

/// A configuration file, read as TOML and as YAML, then built.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (name, format) in [
        ("sqreen.toml", FileFormat::Toml),
        ("sqreen.yml", FileFormat::Yaml),
    ] {
        if let Ok(builder) = ConfigBuilder::from_file_text(std::path::Path::new(name), format, text)
            && let Ok(config) = builder.build()
        {
            assert!(config.batch_size > 0);
            assert!((400..=599).contains(&config.blocking_status));
        }
    }
}

/// A backend answer, read as a login answer, a heartbeat answer and an
/// action pack, with every command and action decoded as the agent does.
pub fn answers(data: &[u8]) {
    let now = Instant::now();
    if let Ok(login) = serde_json::from_slice::<LoginResponse>(data) {
        let _ = ActionStore::from_json(&login.actions, now, 64);
        for raw in login.commands {
            let _ = serde_json::from_value::<Command>(raw);
        }
    }
    if let Ok(beat) = serde_json::from_slice::<BeatResponse>(data) {
        for raw in beat.commands {
            let _ = serde_json::from_value::<Command>(raw);
        }
    }
    if let Ok(pack) = serde_json::from_slice::<ActionsPack>(data) {
        let (store, _) = ActionStore::from_json(&pack.actions, now, 64);
        let _ = store.match_ip([81, 2, 69, 160].into(), now);
        let _ = store.match_ip("2001:db8::1".parse().expect("an address"), now);
    }
}
