//! PII scrubbing of everything the agent sends.
//!
//! The agent's background thread runs every record through a [`Scrubber`]
//! before it leaves the process: request parameters, header values, event
//! properties, user identifiers and any nested JSON inside them. The request
//! path never pays for it.
//!
//! # What is scrubbed
//!
//! Two regular expressions decide:
//!
//! - the **key regex** ([`DEFAULT_KEY_REGEXP`]) is matched, unanchored,
//!   against names: parameter names, header names, property keys,
//!   user-identifier keys and the keys of nested JSON objects. Everything
//!   stored under a matching name is replaced whole by [`REDACTED`]. Header
//!   names use hyphens where the reference agents saw CGI-style underscores,
//!   so a name containing `-` is also tried with every `-` read as `_`:
//!   `X-Api-Key` matches `api_?key` as `HTTP_X_API_KEY` did.
//! - the **value regex** ([`DEFAULT_VALUE_REGEXP`], card-like runs of 13 to 16
//!   digits, optionally separated by spaces or dashes) is applied to every
//!   other string; only the matching parts are replaced by [`REDACTED`].
//!   Empty matches (possible with a custom regex) are ignored.
//!
//! A string that already equals [`REDACTED`] is left alone and not counted,
//! so scrubbing is idempotent and counts report real changes only.
//!
//! # Our stricter choice for non-strings
//!
//! Under a sensitive key, numbers and booleans are replaced by the
//! [`REDACTED`] string too, so a numeric PIN (`{"pin_token": 1234}`) does not
//! leak; `null` stays `null`. An array or object under a sensitive key is
//! scrubbed wholly: every scalar inside it is masked, whatever its own key,
//! and the keys themselves are kept. Outside sensitive keys, strings get the
//! value regex and so do numbers: a number whose decimal text matches (a
//! card number sent as a JSON number) is replaced whole by [`REDACTED`].
//! Booleans and object keys are sent unchanged.
//!
//! # Configuration
//!
//! | config key | environment variable | default |
//! | --- | --- | --- |
//! | `strip_sensitive_key_regexp` | `SQREEN_STRIP_SENSITIVE_KEY_REGEXP` | [`DEFAULT_KEY_REGEXP`] |
//! | `strip_sensitive_value_regexp` | `SQREEN_STRIP_SENSITIVE_VALUE_REGEXP` | [`DEFAULT_VALUE_REGEXP`] |
//!
//! A custom pattern replaces the default and is compiled as given (add
//! `(?i)` for a case-insensitive one); an empty string disables that regex;
//! an invalid one makes [`Scrubber::new`] fail with a [`ScrubberError`]
//! naming the config key. This module only compiles the patterns: reading
//! the config file and the environment is the configuration loader's job.
//!
//! # Not scrubbed
//!
//! The client IP (`client_ip`) and metric keys are not passed through the
//! scrubber: the IP is needed as-is for IP actions and attack attribution,
//! and metric keys are aggregation names chosen by the application, not
//! user data.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The default key regex: names of passwords, passphrases, secrets,
/// authorization headers, API keys and (access) tokens, case-insensitive.
pub const DEFAULT_KEY_REGEXP: &str =
    r"(?i)(passw(((or)?d))|(phrase))|(secret)|(authorization)|(api_?key)|((access_?)?token)";

/// The default value regex: card-like runs of 13 to 16 digits, which may be
/// separated by spaces or dashes.
pub const DEFAULT_VALUE_REGEXP: &str = r"(?:\d[ -]*?){13,16}";

/// An opt-in value regex: the default card numbers, and e-mail addresses.
/// Set it as `strip_sensitive_value_regexp` to keep e-mails out of
/// parameters, headers, URLs and properties (user identifiers included, so
/// playbooks then see masked e-mails).
///
/// ```
/// use sqreen_core::scrub::{CARD_OR_EMAIL_VALUE_REGEXP, Scrubber};
/// let s = Scrubber::new(None, Some(CARD_OR_EMAIL_VALUE_REGEXP)).unwrap();
/// let mut text = "mail bob.smith+x@example.co.uk now".to_owned();
/// assert!(s.scrub_str(&mut text));
/// assert_eq!(text, "mail <Redacted by Sqreen> now");
/// ```
pub const CARD_OR_EMAIL_VALUE_REGEXP: &str =
    r"(?:\d[ -]*?){13,16}|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";

/// The mask that replaces scrubbed data.
pub const REDACTED: &str = "<Redacted by Sqreen>";

/// Config key of the key regex, as named in errors.
const KEY_REGEXP_CONFIG: &str = "strip_sensitive_key_regexp";
/// Config key of the value regex, as named in errors.
const VALUE_REGEXP_CONFIG: &str = "strip_sensitive_value_regexp";

/// The default key regex, compiled once and shared by every default scrubber.
static DEFAULT_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DEFAULT_KEY_REGEXP).expect("DEFAULT_KEY_REGEXP is a valid regex (tested)")
});
/// The default value regex, compiled once and shared by every default scrubber.
static DEFAULT_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(DEFAULT_VALUE_REGEXP).expect("DEFAULT_VALUE_REGEXP is a valid regex (tested)")
});

/// An invalid scrubbing regex, naming the configuration key it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid `{key}`: {source}")]
pub struct ScrubberError {
    /// The configuration key of the pattern: `strip_sensitive_key_regexp` or
    /// `strip_sensitive_value_regexp`.
    pub key: &'static str,
    /// Why the pattern did not compile.
    #[source]
    pub source: regex::Error,
}

/// Masks sensitive data in names and values before they are sent.
///
/// Cheap to clone (the compiled regexes are shared). See the
/// [module documentation](self) for the rules.
///
/// ```
/// use sqreen_core::scrub::{Scrubber, REDACTED};
/// use serde_json::json;
///
/// let scrubber = Scrubber::default();
///
/// let mut params = json!({
///     "user": "alice",
///     "password": "hunter2",
///     "pin_token": 1234,
///     "note": "card 4111 1111 1111 1111 please",
/// });
/// assert_eq!(scrubber.scrub_json(&mut params), 3);
/// assert_eq!(params["user"], "alice");
/// assert_eq!(params["password"], REDACTED);
/// assert_eq!(params["pin_token"], REDACTED);
/// assert_eq!(params["note"], format!("card {REDACTED} please"));
///
/// let mut header = String::from("Bearer abc.def");
/// assert!(scrubber.scrub_keyed_str("Authorization", &mut header));
/// assert_eq!(header, REDACTED);
/// ```
#[derive(Clone, Debug)]
pub struct Scrubber {
    /// Matches sensitive names; `None` when disabled.
    key: Option<Regex>,
    /// Matches sensitive parts of strings; `None` when disabled.
    value: Option<Regex>,
    /// The value regex is the default one, which needs 13 digits or more:
    /// smaller integers cannot match and are skipped without formatting.
    value_is_default: bool,
}

impl Default for Scrubber {
    /// A scrubber with [`DEFAULT_KEY_REGEXP`] and [`DEFAULT_VALUE_REGEXP`].
    fn default() -> Self {
        Self {
            key: Some(Regex::clone(&DEFAULT_KEY)),
            value: Some(Regex::clone(&DEFAULT_VALUE)),
            value_is_default: true,
        }
    }
}

impl Scrubber {
    /// Builds a scrubber from the configured patterns.
    ///
    /// For each of `key_regexp` (`strip_sensitive_key_regexp`) and
    /// `value_regexp` (`strip_sensitive_value_regexp`): `None` → default
    /// pattern, `Some("")` → that regex disabled, `Some(p)` → custom pattern
    /// `p`, compiled as given.
    ///
    /// # Errors
    ///
    /// A [`ScrubberError`] naming the config key of the first pattern that
    /// does not compile.
    pub fn new(
        key_regexp: Option<&str>,
        value_regexp: Option<&str>,
    ) -> Result<Self, ScrubberError> {
        Ok(Self {
            key: compile(key_regexp, &DEFAULT_KEY, KEY_REGEXP_CONFIG)?,
            value: compile(value_regexp, &DEFAULT_VALUE, VALUE_REGEXP_CONFIG)?,
            value_is_default: value_regexp.is_none(),
        })
    }

    /// Whether data stored under `key` must be masked whole.
    ///
    /// The key regex is matched unanchored; a key containing `-` is also
    /// tried with every `-` read as `_` (see the module documentation).
    /// Always `false` when the key regex is disabled.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        let Some(re) = &self.key else {
            return false;
        };
        re.is_match(key) || (key.contains('-') && re.is_match(&key.replace('-', "_")))
    }

    /// Applies the value regex to a string in place; true when something was replaced.
    ///
    /// Every non-empty match is replaced by [`REDACTED`]. Nothing is
    /// allocated when nothing matches; a string equal to [`REDACTED`] is
    /// left alone.
    pub fn scrub_str(&self, s: &mut String) -> bool {
        match self.scrubbed(s) {
            Some(scrubbed) => {
                *s = scrubbed;
                true
            }
            None => false,
        }
    }

    /// `s` with the value regex applied, or `None` (without allocating)
    /// when nothing in it matches: the borrowed form of [`Self::scrub_str`],
    /// for callers that write strings straight into their output.
    pub(crate) fn scrubbed(&self, s: &str) -> Option<String> {
        let re = self.value.as_ref()?;
        if s == REDACTED {
            return None;
        }
        // The default pattern needs 13 digits: most strings (names, paths,
        // user agents) are ruled out by counting digits, without the regex.
        if self.value_is_default && s.bytes().filter(u8::is_ascii_digit).count() < 13 {
            return None;
        }
        mask_matches(re, s).filter(|scrubbed| scrubbed != s)
    }

    /// Whether a JSON number outside sensitive keys must be masked whole:
    /// its decimal text matches the value regex (a card number sent as a
    /// number). Integers under 10^12 cannot match the default pattern and
    /// are ruled out without formatting.
    /// `url` (a path or a whole URL, such as a referer) with its query
    /// scrubbed like parameters: the value of a key that matches the key
    /// regex is replaced whole, every other part (path, values, fragment)
    /// by the value regex. Keys are compared decoded (`%70assword` is
    /// `password`). `None` when nothing changed.
    pub(crate) fn scrubbed_url(&self, url: &str) -> Option<String> {
        let Some((head, rest)) = url.split_once('?') else {
            return self.scrubbed(url);
        };
        let (query, fragment) = match rest.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (rest, None),
        };
        let mut changed = false;
        let mut out = String::with_capacity(url.len());
        match self.scrubbed(head) {
            Some(h) => {
                changed = true;
                out.push_str(&h);
            }
            None => out.push_str(head),
        }
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let Some((key, value)) = form_urlencoded::parse(pair.as_bytes()).next() else {
                out.push_str(pair);
                continue;
            };
            let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if pair.contains('=') && !value.is_empty() && self.is_sensitive_key(&key) {
                changed = true;
                out.push_str(raw_key);
                out.push('=');
                out.push_str(REDACTED);
            } else if let Some(v) = self.scrubbed(&value) {
                changed = true;
                out.push_str(raw_key);
                out.push('=');
                out.push_str(&v);
            } else {
                out.push_str(pair);
            }
        }
        if let Some(fragment) = fragment {
            out.push('#');
            match self.scrubbed(fragment) {
                Some(f) => {
                    changed = true;
                    out.push_str(&f);
                }
                None => out.push_str(fragment),
            }
        }
        changed.then_some(out)
    }

    pub(crate) fn masks_number(&self, n: &serde_json::Number) -> bool {
        let Some(re) = &self.value else {
            return false;
        };
        let short_integer = n
            .as_u64()
            .or_else(|| n.as_i64().map(i64::unsigned_abs))
            .is_some_and(|i| i < 1_000_000_000_000);
        !(self.value_is_default && short_integer) && mask_matches(re, &n.to_string()).is_some()
    }

    /// Walks a JSON value: strings get the value regex; an object entry whose
    /// key is sensitive has everything under it masked. Returns how many
    /// scalar values were changed.
    ///
    /// Under a sensitive key, strings, numbers and booleans become the
    /// [`REDACTED`] string and `null` stays `null`. The walk uses its own
    /// stack, so any depth of nesting is safe.
    pub fn scrub_json(&self, v: &mut Value) -> usize {
        self.walk(v, false)
    }

    /// For a value stored under a known key (a header, a property, a
    /// parameter): masks the whole value when the key is sensitive, otherwise
    /// [`Self::scrub_json`]. Returns the count of scalars changed.
    pub fn scrub_keyed(&self, key: &str, v: &mut Value) -> usize {
        self.walk(v, self.is_sensitive_key(key))
    }

    /// Same as [`Self::scrub_keyed`] for a plain string value.
    ///
    /// Returns true when the string was changed: replaced whole by
    /// [`REDACTED`] under a sensitive key, otherwise by [`Self::scrub_str`].
    pub fn scrub_keyed_str(&self, key: &str, s: &mut String) -> bool {
        if !self.is_sensitive_key(key) {
            return self.scrub_str(s);
        }
        if s == REDACTED {
            return false;
        }
        s.clear();
        s.push_str(REDACTED);
        true
    }

    /// Scrubs `root`, masking everything when `masked`; returns the count of
    /// scalars changed.
    fn walk(&self, root: &mut Value, masked: bool) -> usize {
        let mut changed = 0;
        let mut stack: Vec<(&mut Value, bool)> = vec![(root, masked)];
        while let Some((v, masked)) = stack.pop() {
            if masked && matches!(v, Value::Bool(_) | Value::Number(_)) {
                *v = Value::String(REDACTED.to_owned());
                changed += 1;
                continue;
            }
            if let Value::Number(n) = v {
                // A card number sent as a JSON number is as personal as one
                // sent as text: mask the number whole when its text matches.
                if self.masks_number(n) {
                    *v = Value::String(REDACTED.to_owned());
                    changed += 1;
                }
                continue;
            }
            match v {
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
                Value::String(s) => {
                    if masked {
                        if s != REDACTED {
                            s.clear();
                            s.push_str(REDACTED);
                            changed += 1;
                        }
                    } else if self.scrub_str(s) {
                        changed += 1;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut().map(|item| (item, masked))),
                Value::Object(map) => {
                    for (k, item) in map.iter_mut() {
                        let item_masked = masked || self.is_sensitive_key(k);
                        stack.push((item, item_masked));
                    }
                }
            }
        }
        changed
    }
}

/// Compiles one configured pattern: `None` → `default`, `Some("")` →
/// disabled, otherwise the pattern, with errors naming `config_key`.
fn compile(
    pattern: Option<&str>,
    default: &LazyLock<Regex>,
    config_key: &'static str,
) -> Result<Option<Regex>, ScrubberError> {
    match pattern {
        None => Ok(Some(Regex::clone(default))),
        Some("") => Ok(None),
        Some(p) => Regex::new(p).map(Some).map_err(|source| ScrubberError {
            key: config_key,
            source,
        }),
    }
}

/// `s` with every non-empty match of `re` replaced by [`REDACTED`], or
/// `None` (without allocating) when there is none.
fn mask_matches(re: &Regex, s: &str) -> Option<String> {
    let mut matches = re.find_iter(s).filter(|m| !m.is_empty());
    let first = matches.next()?;
    let mut out = String::with_capacity(s.len() + REDACTED.len());
    let mut last = 0;
    for m in std::iter::once(first).chain(matches) {
        out.push_str(&s[last..m.start()]);
        out.push_str(REDACTED);
        last = m.end();
    }
    out.push_str(&s[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// `REDACTED` in surrounding text, for expected values.
    fn r(before: &str, after: &str) -> String {
        format!("{before}{REDACTED}{after}")
    }

    /// The default patterns compile (the `expect`s in the statics never fire).
    /// Query values of sensitive keys in paths and referers are replaced
    /// whole (keys compared decoded), other values by the value regex;
    /// URLs without anything to scrub are left alone.
    #[test]
    fn urls_are_scrubbed_like_parameters() {
        let s = Scrubber::new(None, None).unwrap();
        assert_eq!(
            s.scrubbed_url("/reset?token=abc123&lang=en").as_deref(),
            Some("/reset?token=<Redacted by Sqreen>&lang=en")
        );
        assert_eq!(
            s.scrubbed_url("https://ex.com/login?user=bob&%70assword=hunter2#top")
                .as_deref(),
            Some("https://ex.com/login?user=bob&%70assword=<Redacted by Sqreen>#top")
        );
        assert_eq!(
            s.scrubbed_url("/pay?card=4111 1111 1111 1111").as_deref(),
            Some("/pay?card=<Redacted by Sqreen>")
        );
        assert_eq!(s.scrubbed_url("/search?q=shoes&page=2"), None);
        assert_eq!(s.scrubbed_url("/plain/path"), None);
        assert_eq!(s.scrubbed_url("/flag?api_key&x=1"), None);
    }

    #[test]
    fn default_patterns_compile() {
        assert!(Regex::new(DEFAULT_KEY_REGEXP).is_ok());
        assert!(Regex::new(DEFAULT_VALUE_REGEXP).is_ok());
        assert_eq!(DEFAULT_KEY.as_str(), DEFAULT_KEY_REGEXP);
        assert_eq!(DEFAULT_VALUE.as_str(), DEFAULT_VALUE_REGEXP);
    }

    /// Every alternative of the default key regex is recognised, in any case.
    #[test]
    fn default_key_alternatives_are_sensitive() {
        let s = Scrubber::default();
        for key in [
            "password",
            "passwd",
            "passphrase",
            "PassWord",
            "secret",
            "client_secret",
            "authorization",
            "Authorization",
            "api_key",
            "apikey",
            "X-Api-Key",
            "token",
            "access_token",
            "accesstoken",
            "csrf_token",
        ] {
            assert!(s.is_sensitive_key(key), "{key} should be sensitive");
        }
    }

    /// Ordinary names, including near misses, are not sensitive.
    #[test]
    fn ordinary_keys_are_not_sensitive() {
        let s = Scrubber::default();
        for key in [
            "username",
            "email",
            "pass",
            "path",
            "api",
            "key",
            "",
            "x-forwarded-for",
        ] {
            assert!(!s.is_sensitive_key(key), "{key} should not be sensitive");
        }
    }

    /// Hyphenated header names are also tried in their underscore form.
    #[test]
    fn hyphenated_names_match_underscore_form() {
        let s = Scrubber::default();
        for key in ["x-api-key", "X-API-KEY", "x-access-token", "Api-Key"] {
            assert!(s.is_sensitive_key(key), "{key} should be sensitive");
        }
        let custom = Scrubber::new(Some("^x_custom$"), None).unwrap();
        assert!(custom.is_sensitive_key("x-custom"));
        assert!(custom.is_sensitive_key("x_custom"));
        assert!(!custom.is_sensitive_key("x.custom"));
    }

    /// Card-like digit runs are masked, and only them.
    #[test]
    fn card_like_values_are_masked() {
        let s = Scrubber::default();
        let cases: &[(&str, String)] = &[
            ("4111111111111111", r("", "")),
            ("4111 1111 1111 1111", r("", "")),
            ("4111-1111-1111-1111", r("", "")),
            ("4222222222222", r("", "")),
            (
                "my card is 4111 1111 1111 1111, exp 12/25",
                r("my card is ", ", exp 12/25"),
            ),
            (
                "4111111111111111 then 5500-0000-0000-0004",
                format!("{REDACTED} then {REDACTED}"),
            ),
            // Longer than 16 digits: the first 16 are masked.
            ("41111111111111112222", r("", "2222")),
            ("tel 4111111111111111.", r("tel ", ".")),
        ];
        for (input, expected) in cases {
            let mut v = (*input).to_owned();
            assert!(s.scrub_str(&mut v), "{input} should be scrubbed");
            assert_eq!(&v, expected, "for {input}");
        }
    }

    /// Short digit runs and ordinary text are left untouched.
    #[test]
    fn non_card_values_are_untouched() {
        let s = Scrubber::default();
        for input in [
            "411111111111",
            "4111 1111 1111",
            "+33 6 12 34 56 78",
            "2024-05-17",
            "hello world",
            "",
            "12.34.56.78.90.12.34",
        ] {
            let mut v = input.to_owned();
            assert!(!s.scrub_str(&mut v), "{input} should not be scrubbed");
            assert_eq!(v, input);
        }
    }

    /// A string with no match keeps its buffer (no reallocation).
    #[test]
    fn unmatched_string_keeps_its_buffer() {
        let s = Scrubber::default();
        let mut v = String::from("nothing to see");
        let ptr = v.as_ptr();
        assert!(!s.scrub_str(&mut v));
        assert_eq!(v.as_ptr(), ptr);
        let mut json = json!({"a": "nothing", "b": [1, true, null]});
        let before = json.clone();
        assert_eq!(s.scrub_json(&mut json), 0);
        assert_eq!(json, before);
    }

    /// The mask itself is never re-scrubbed nor re-counted.
    #[test]
    fn mask_is_not_recounted() {
        let s = Scrubber::default();
        let mut v = REDACTED.to_owned();
        assert!(!s.scrub_str(&mut v));
        assert!(!s.scrub_keyed_str("password", &mut v));
        assert_eq!(v, REDACTED);
        let mut json = json!({"password": REDACTED, "token": [REDACTED, null]});
        assert_eq!(s.scrub_json(&mut json), 0);
        assert_eq!(s.scrub_keyed("secret", &mut json), 0);
        // A custom value regex matching the mask text changes nothing either.
        let greedy = Scrubber::new(None, Some(".+")).unwrap();
        let mut v = REDACTED.to_owned();
        assert!(!greedy.scrub_str(&mut v));
    }

    /// Scrubbing twice gives the same result, and the second pass counts 0.
    #[test]
    fn scrubbing_is_idempotent() {
        let s = Scrubber::default();
        let mut json = json!({
            "password": "p", "pin": 1, "n": "card 4111111111111111",
            "list": [{"api_key": [1, 2, {"x": false}]}],
        });
        assert_eq!(s.scrub_json(&mut json), 5);
        let once = json.clone();
        assert_eq!(s.scrub_json(&mut json), 0);
        assert_eq!(json, once);
    }

    /// Objects inside arrays inside objects are walked.
    #[test]
    fn nested_object_in_array_in_object() {
        let s = Scrubber::default();
        let mut json = json!({
            "users": [
                {"name": "alice", "password": "hunter2"},
                {"name": "bob", "card": "4111 1111 1111 1111", "meta": {"access_token": "t"}},
            ]
        });
        assert_eq!(s.scrub_json(&mut json), 3);
        assert_eq!(
            json,
            json!({
                "users": [
                    {"name": "alice", "password": REDACTED},
                    {"name": "bob", "card": REDACTED, "meta": {"access_token": REDACTED}},
                ]
            })
        );
    }

    /// Everything under a sensitive key is masked, except nulls, keys kept.
    #[test]
    fn sensitive_key_masks_whole_subtree() {
        let s = Scrubber::default();
        let cases = [
            (
                json!({"a": "x", "b": {"c": 1}}),
                json!({"a": REDACTED, "b": {"c": REDACTED}}),
                2,
            ),
            (
                json!(["x", 2, [true]]),
                json!([REDACTED, REDACTED, [REDACTED]]),
                3,
            ),
            (json!(1234), json!(REDACTED), 1),
            (json!(12.5), json!(REDACTED), 1),
            (json!(false), json!(REDACTED), 1),
            (json!(null), json!(null), 0),
            (json!([null, {"k": null}]), json!([null, {"k": null}]), 0),
            (json!(""), json!(REDACTED), 1),
            (json!({}), json!({}), 0),
        ];
        for (inner, expected, count) in cases {
            let mut json = json!({"secret": inner.clone(), "other": 5});
            assert_eq!(s.scrub_json(&mut json), count, "for {inner}");
            assert_eq!(json, json!({"secret": expected, "other": 5}), "for {inner}");
        }
    }

    /// Outside sensitive keys, booleans, object keys and ordinary numbers are
    /// kept; a card-like number is masked whole.
    #[test]
    fn non_strings_outside_sensitive_keys() {
        let s = Scrubber::default();
        let mut json = json!({"amount": 42, "ok": true, "4111111111111111": "x"});
        let before = json.clone();
        assert_eq!(s.scrub_json(&mut json), 0);
        assert_eq!(json, before);
        let mut card = json!({"card": 4111111111111111_u64, "n": [5500000000000004_u64, 7]});
        assert_eq!(s.scrub_json(&mut card), 2);
        assert_eq!(card, json!({"card": REDACTED, "n": [REDACTED, 7]}));
    }

    /// A top-level string or array is scrubbed by `scrub_json` too.
    #[test]
    fn top_level_scalars_and_arrays() {
        let s = Scrubber::default();
        let mut v = json!("pay 4111111111111111");
        assert_eq!(s.scrub_json(&mut v), 1);
        assert_eq!(v, json!(r("pay ", "")));
        let mut v = json!(["4111111111111111", 4, "ok"]);
        assert_eq!(s.scrub_json(&mut v), 1);
        assert_eq!(v, json!([REDACTED, 4, "ok"]));
    }

    /// `scrub_keyed` masks wholly under a sensitive key, else applies values.
    #[test]
    fn scrub_keyed_by_key() {
        let s = Scrubber::default();
        let mut v = json!({"pin": 1234, "list": ["a", null]});
        assert_eq!(s.scrub_keyed("X-Auth-Token", &mut v), 2);
        assert_eq!(v, json!({"pin": REDACTED, "list": [REDACTED, null]}));

        let mut v = json!({"pin": 1234, "note": "4111111111111111", "password": "p"});
        assert_eq!(s.scrub_keyed("body", &mut v), 2);
        assert_eq!(
            v,
            json!({"pin": 1234, "note": REDACTED, "password": REDACTED})
        );
    }

    /// `scrub_keyed_str` masks wholly under a sensitive key, else applies values.
    #[test]
    fn scrub_keyed_str_by_key() {
        let s = Scrubber::default();
        let cases: &[(&str, &str, bool, String)] = &[
            ("Authorization", "Bearer abc", true, REDACTED.to_owned()),
            ("password", "", true, REDACTED.to_owned()),
            ("user-agent", "curl/8", false, "curl/8".to_owned()),
            ("referer", "/pay?c=4111111111111111", true, r("/pay?c=", "")),
        ];
        for (key, value, changed, expected) in cases {
            let mut v = (*value).to_owned();
            assert_eq!(s.scrub_keyed_str(key, &mut v), *changed, "for {key}");
            assert_eq!(&v, expected, "for {key}");
        }
    }

    /// Counts are the number of scalars actually changed.
    #[test]
    fn counts_are_exact() {
        let s = Scrubber::default();
        let mut json = json!({
            "a": "4111111111111111 and 5500000000000004", // one string, two matches: 1
            "b": "plain",                                  // 0
            "c": {"token": ["x", 1, null, REDACTED]},      // "x" and 1: 2
            "d": [1, 2, 3],                                // 0
            "passwd": {"deep": {"deeper": [false]}},       // 1
        });
        assert_eq!(s.scrub_json(&mut json), 4);
    }

    /// `None` uses the defaults, like `Default`.
    #[test]
    fn none_means_default() {
        let s = Scrubber::new(None, None).unwrap();
        assert!(s.is_sensitive_key("password"));
        let mut v = "4111111111111111".to_owned();
        assert!(s.scrub_str(&mut v));
        assert_eq!(v, REDACTED);
    }

    /// A custom key regex replaces the default one.
    #[test]
    fn custom_key_regex() {
        let s = Scrubber::new(Some("(?i)^ssn$|pin"), None).unwrap();
        for (key, sensitive) in [
            ("ssn", true),
            ("SSN", true),
            ("ssn_hint", false),
            ("pin_code", true),
            ("password", false),
        ] {
            assert_eq!(s.is_sensitive_key(key), sensitive, "for {key}");
        }
        // Compiled as given: without (?i) it is case-sensitive.
        let cs = Scrubber::new(Some("pin"), None).unwrap();
        assert!(!cs.is_sensitive_key("PIN"));
    }

    /// A custom value regex replaces the default one.
    #[test]
    fn custom_value_regex() {
        let s = Scrubber::new(None, Some(r"\b\d{3}-\d{2}-\d{4}\b")).unwrap();
        let mut v = "ssn 123-45-6789 ok".to_owned();
        assert!(s.scrub_str(&mut v));
        assert_eq!(v, r("ssn ", " ok"));
        let mut card = "4111111111111111".to_owned();
        assert!(!s.scrub_str(&mut card));
    }

    /// Empty matches of a custom value regex are ignored, not masked.
    #[test]
    fn empty_matches_are_ignored() {
        let s = Scrubber::new(None, Some(r"\d*")).unwrap();
        let mut v = "abc".to_owned();
        assert!(!s.scrub_str(&mut v));
        assert_eq!(v, "abc");
        let mut v = "a12b".to_owned();
        assert!(s.scrub_str(&mut v));
        assert_eq!(v, r("a", "b"));
    }

    /// An empty key regex disables key-based masking entirely.
    #[test]
    fn empty_key_regex_disables_keys() {
        let s = Scrubber::new(Some(""), None).unwrap();
        assert!(!s.is_sensitive_key("password"));
        let mut json = json!({"password": "hunter2", "card": "4111111111111111"});
        assert_eq!(s.scrub_json(&mut json), 1);
        assert_eq!(json, json!({"password": "hunter2", "card": REDACTED}));
        let mut v = "hunter2".to_owned();
        assert!(!s.scrub_keyed_str("password", &mut v));
    }

    /// An empty value regex disables value masking entirely.
    #[test]
    fn empty_value_regex_disables_values() {
        let s = Scrubber::new(None, Some("")).unwrap();
        let mut v = "4111111111111111".to_owned();
        assert!(!s.scrub_str(&mut v));
        let mut json = json!({"password": "hunter2", "card": "4111111111111111"});
        assert_eq!(s.scrub_json(&mut json), 1);
        assert_eq!(
            json,
            json!({"password": REDACTED, "card": "4111111111111111"})
        );
    }

    /// Both regexes disabled: nothing is ever changed.
    #[test]
    fn both_disabled_changes_nothing() {
        let s = Scrubber::new(Some(""), Some("")).unwrap();
        let mut json = json!({"password": 1, "card": "4111111111111111"});
        let before = json.clone();
        assert_eq!(s.scrub_keyed("secret", &mut json), 0);
        assert_eq!(json, before);
    }

    /// An invalid pattern is an error naming the config key it came from.
    #[test]
    fn invalid_regex_names_its_config_key() {
        let cases = [
            (Some("(unclosed"), None, "strip_sensitive_key_regexp"),
            (None, Some("[z-a]"), "strip_sensitive_value_regexp"),
            (Some("ok"), Some("(?P<"), "strip_sensitive_value_regexp"),
            (Some("*"), Some("*"), "strip_sensitive_key_regexp"),
        ];
        for (key_re, value_re, config_key) in cases {
            let err = Scrubber::new(key_re, value_re).unwrap_err();
            assert_eq!(err.key, config_key);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid `{config_key}`: ")),
                "{msg}"
            );
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    /// Deeply nested input is walked without recursion (no stack overflow).
    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut v = json!({"password": 1, "c": "4111111111111111"});
        for i in 0..100_000 {
            // Built by hand: `json!` would re-serialize `v` recursively.
            v = if i % 2 == 0 {
                Value::Array(vec![v])
            } else {
                Value::Object(std::iter::once(("k".to_owned(), v)).collect())
            };
        }
        let s = Scrubber::default();
        assert_eq!(s.scrub_json(&mut v), 2);
        // Tear down iteratively: serde_json's drop is recursive.
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::Array(a) => stack.extend(a),
                Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
                _ => {}
            }
        }
    }

    /// Multi-byte text around a match is kept intact (no panic on boundaries).
    #[test]
    fn unicode_text_around_matches() {
        let s = Scrubber::default();
        let mut v = "carte n° 4111 1111 1111 1111 — merci ✓".to_owned();
        assert!(s.scrub_str(&mut v));
        assert_eq!(v, r("carte n° ", " — merci ✓"));
        let mut v = "日本語のテキスト".to_owned();
        assert!(!s.scrub_str(&mut v));
    }

    /// A string holding the mask plus a new card is scrubbed and counted once.
    #[test]
    fn partially_masked_string_is_scrubbed() {
        let s = Scrubber::default();
        let mut json = json!([format!("{REDACTED} 4111111111111111")]);
        assert_eq!(s.scrub_json(&mut json), 1);
        assert_eq!(json, json!([format!("{REDACTED} {REDACTED}")]));
        assert_eq!(s.scrub_json(&mut json), 0);
    }

    /// `null` stays `null` under a sensitive key, even at the top level.
    #[test]
    fn null_under_sensitive_key_stays_null() {
        let s = Scrubber::default();
        let mut v = Value::Null;
        assert_eq!(s.scrub_keyed("password", &mut v), 0);
        assert_eq!(v, Value::Null);
    }

    /// Clones share behaviour and `Debug` shows the patterns, not data.
    #[test]
    fn clone_and_debug() {
        let s = Scrubber::new(Some("foo"), Some("")).unwrap();
        let c = s.clone();
        assert!(c.is_sensitive_key("foo"));
        let dbg = format!("{c:?}");
        assert!(dbg.contains("foo"), "{dbg}");
    }
}
