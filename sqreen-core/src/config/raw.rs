//! A setting as a config file or the environment gave it ([`Raw`]), and
//! its conversions into typed values, each failing with a
//! [`ConfigError::Invalid`] that names the key and says what was expected.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ConfigError;
use super::checks::parse_duration;
use super::keys::Key;

/// A setting as a file or the environment gave it, before it is checked.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    /// A table or mapping, whose content is never wanted.
    Table,
}

pub(super) const BOOL_REASON: &str = "expected one of true/false, 1/0, yes/no, on/off";
pub(super) const COUNT_REASON: &str = "expected a whole, non-negative number";
pub(super) const STATUS_REASON: &str = "expected an HTTP status code from 400 to 599";
pub(super) const PREFIX_REASON: &str = "expected a prefix length from 1 to 128";
pub(super) const DURATION_REASON: &str =
    "expected whole seconds or a duration such as `500ms`, `5s` or `1m`";
pub(super) const SCALAR_REASON: &str = "expected a single value, not a list or table";
pub(super) const ZERO_REASON: &str = "must be greater than zero";

impl Raw {
    pub(super) fn is_blank(&self) -> bool {
        match self {
            Raw::Null => true,
            Raw::Str(text) => text.trim().is_empty(),
            _ => false,
        }
    }

    /// The value as shown in errors.
    pub(super) fn shown(&self) -> String {
        match self {
            Raw::Null => String::new(),
            Raw::Bool(value) => value.to_string(),
            Raw::Int(value) => value.to_string(),
            Raw::Float(value) => format!("{value:?}"),
            Raw::Str(text) => text.clone(),
            Raw::List(items) => {
                let items: Vec<String> = items.iter().map(Raw::shown).collect();
                format!("[{}]", items.join(", "))
            }
            Raw::Table => "{…}".to_owned(),
        }
    }

    /// A scalar as text, untrimmed; lists and tables are invalid.
    pub(super) fn into_untrimmed_text(self, key: Key) -> Result<String, ConfigError> {
        match self {
            Raw::Str(text) => Ok(text),
            Raw::List(_) | Raw::Table => {
                Err(ConfigError::invalid(key, &self.shown(), SCALAR_REASON))
            }
            scalar => Ok(scalar.shown()),
        }
    }

    pub(super) fn into_text(self, key: Key) -> Result<String, ConfigError> {
        self.into_untrimmed_text(key)
            .map(|text| text.trim().to_owned())
    }

    /// `None` for a null (leave the key as it was); `""` is kept.
    pub(super) fn into_regex(self, key: Key) -> Result<Option<String>, ConfigError> {
        match self {
            Raw::Null => Ok(None),
            raw => raw.into_untrimmed_text(key).map(Some),
        }
    }

    pub(super) fn into_bool(self, key: Key) -> Result<bool, ConfigError> {
        if let Raw::Bool(value) = self {
            return Ok(value);
        }
        let text = self.into_text(key)?;
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::invalid(key, &text, BOOL_REASON)),
        }
    }

    pub(super) fn into_count(self, key: Key) -> Result<usize, ConfigError> {
        match self {
            Raw::Int(value) => usize::try_from(value)
                .map_err(|_| ConfigError::invalid(key, &value.to_string(), COUNT_REASON)),
            Raw::Str(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(key, &text, COUNT_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), COUNT_REASON)),
        }
    }

    pub(super) fn into_status(self, key: Key) -> Result<u16, ConfigError> {
        match self {
            Raw::Int(value) => u16::try_from(value)
                .map_err(|_| ConfigError::invalid(key, &value.to_string(), STATUS_REASON)),
            Raw::Str(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(key, &text, STATUS_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), STATUS_REASON)),
        }
    }

    pub(super) fn into_duration(self, key: Key) -> Result<Duration, ConfigError> {
        match self {
            Raw::Int(seconds) => u64::try_from(seconds)
                .map(Duration::from_secs)
                .map_err(|_| ConfigError::invalid(key, &seconds.to_string(), DURATION_REASON)),
            Raw::Str(text) => parse_duration(text.trim())
                .ok_or_else(|| ConfigError::invalid(key, &text, DURATION_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), DURATION_REASON)),
        }
    }

    /// One entry per scalar; a list of lists or tables is invalid.
    pub(super) fn into_list(self, key: Key) -> Result<Vec<String>, ConfigError> {
        match self {
            Raw::List(items) => items
                .into_iter()
                .filter(|item| !item.is_blank())
                .map(|item| match item {
                    Raw::List(_) | Raw::Table => Err(ConfigError::invalid(
                        key,
                        &item.shown(),
                        "expected a list of addresses or CIDR ranges",
                    )),
                    scalar => scalar.into_text(key),
                })
                .collect(),
            Raw::Table => Err(ConfigError::invalid(key, &self.shown(), SCALAR_REASON)),
            scalar => scalar.into_text(key).map(|text| vec![text]),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

/// Takes any value, so that type mismatches become [`ConfigError::Invalid`]
/// errors naming the key rather than parser errors.
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean or list")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Raw, E> {
        Ok(Raw::Int(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Raw, E> {
        // Too large for any setting either way; as text it fails to parse.
        Ok(i128::try_from(value).map_or_else(|_| Raw::Str(value.to_string()), Raw::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Raw, E> {
        Ok(Raw::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Raw, E> {
        Ok(Raw::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Raw, E> {
        Ok(Raw::Str(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Table)
    }
}
