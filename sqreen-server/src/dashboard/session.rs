//! Dashboard sessions and CSRF tokens: signed cookies, with logouts stored.
//!
//! Logging in with the admin key sets the `sqreen_session` cookie
//! (`HttpOnly; SameSite=Strict; Path=/`, plus `Secure` behind an HTTPS proxy
//! that says so in `X-Forwarded-Proto`):
//!
//! ```text
//! <issued ms>.<128-bit random nonce, hex>.<HMAC-SHA256(session key, "session\0" issued "." nonce), hex>
//! ```
//!
//! The session key is a SHA-256 of the server's session secret and of the
//! admin key's hash. The secret never enters the database: it comes from a
//! key file (created with mode 0600 beside an SQLite database, or named by
//! `--session-secret-file`) or from `SQREEN_SERVER_SESSION_SECRET`, so a
//! copy of the database (a backup) does not let anyone forge a session.
//! Processes given the same secret and admin key accept each other's
//! cookies; changing either ends every session. A cookie is valid for [`SESSION_TTL_MS`] after it was issued.
//! Logging out clears the cookie in the browser and records the cookie's
//! nonce in the database (`revoked_sessions`, until the cookie would have
//! expired): a copy of the cookie no longer opens the dashboard, in any
//! process. That is the one lookup a session costs.
//!
//! The CSRF token of a session is `HMAC(session key, "csrf\0" cookie)`: every
//! state-changing form carries it in a hidden `csrf` field, and a request
//! without it (or with another session's) is refused with 403. The login
//! form carries none: it changes no state an attacker could use without the
//! admin key itself.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::layout::PageError;
use crate::AppState;
use crate::secret;
use crate::time::now_ms;

/// The session cookie's name.
pub const COOKIE: &str = "sqreen_session";
/// How long a session lasts: 12 hours.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Clock skew tolerated on a cookie's issue time.
const SKEW_MS: i64 = 60_000;

type HmacSha256 = Hmac<Sha256>;

/// The key that signs sessions: derived from the session secret and the
/// admin key's hash, so that it is the same in every process configured
/// alike and changes with either.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key of a server with session secret `secret` whose admin key
    /// hashes to `admin_key_hash`.
    pub fn new(secret: &[u8], admin_key_hash: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"sqreen-dashboard-session-v2\0");
        h.update(
            u64::try_from(secret.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        h.update(secret);
        h.update(admin_key_hash.as_bytes());
        Self(h.finalize().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        for p in parts {
            mac.update(p);
        }
        mac
    }

    /// A new session cookie value, issued at `now` (ms).
    ///
    /// # Errors
    /// When the operating system cannot provide random bytes.
    pub fn issue(&self, now: i64) -> Result<String, secret::RandomError> {
        let nonce = secret::random_id()?;
        let payload = format!("{now}.{nonce}");
        let tag = self
            .mac(&[b"session\0", payload.as_bytes()])
            .finalize()
            .into_bytes();
        Ok(format!("{payload}.{}", secret::hex(&tag)))
    }

    /// Whether `cookie` is a session this key issued that is still valid at `now`.
    pub fn verify(&self, cookie: &str, now: i64) -> bool {
        let Some((payload, tag_hex)) = cookie.rsplit_once('.') else {
            return false;
        };
        let Some((issued, nonce)) = payload.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<i64>() else {
            return false;
        };
        // Checked arithmetic: the issue time is the client's text.
        if nonce.len() != 32
            || issued < 0
            || issued > now.saturating_add(SKEW_MS)
            || now.saturating_sub(issued) > SESSION_TTL_MS
        {
            return false;
        }
        let Some(tag) = unhex(tag_hex) else {
            return false;
        };
        self.mac(&[b"session\0", payload.as_bytes()])
            .verify_slice(&tag)
            .is_ok()
    }

    /// The nonce of a session cookie (which [`SessionKey::verify`] accepted)
    /// and when it expires (ms).
    fn nonce_and_expiry(cookie: &str) -> Option<(&str, i64)> {
        let mut parts = cookie.splitn(3, '.');
        let issued = parts.next()?.parse::<i64>().ok()?;
        let nonce = parts.next()?;
        Some((nonce, issued.saturating_add(SESSION_TTL_MS)))
    }

    /// The CSRF token of session `cookie`.
    pub fn csrf_token(&self, cookie: &str) -> String {
        secret::hex(
            &self
                .mac(&[b"csrf\0", cookie.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The value of cookie `name` in `headers`, if any.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached us through HTTPS (as a proxy says).
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that stores session `value`.
pub fn set_cookie(value: &str, headers: &HeaderMap) -> String {
    let secure = if behind_https(headers) {
        "; Secure"
    } else {
        ""
    };
    let max_age = SESSION_TTL_MS / 1000;
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// The `Set-Cookie` value that removes the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// A logged-in dashboard user: extracting it refuses requests without a
/// valid session (GET: redirect to the login page; other methods: 403).
#[derive(Clone, Debug)]
pub struct AdminSession {
    key: SessionKey,
    cookie: String,
}

impl AdminSession {
    /// The session of a request, if its cookie is valid, unexpired and not
    /// logged out. A failed lookup of logouts counts as no session.
    pub async fn of(state: &AppState, headers: &HeaderMap) -> Option<Self> {
        let key = state.settings.session_key.clone();
        let cookie = cookie_value(headers, COOKIE).filter(|c| key.verify(c, now_ms()))?;
        let (nonce, _) = SessionKey::nonce_and_expiry(cookie)?;
        match state.store.session_revoked(nonce).await {
            Ok(false) => Some(Self {
                key,
                cookie: cookie.to_owned(),
            }),
            Ok(true) => None,
            Err(e) => {
                tracing::error!(event = "dashboard.session_lookup_failed", error = %e,
                    "could not check the session against logouts: treated as logged out");
                None
            }
        }
    }

    /// Ends this session in every process (see the module docs).
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke(&self, state: &AppState) -> Result<(), crate::store::StoreError> {
        match SessionKey::nonce_and_expiry(&self.cookie) {
            Some((nonce, expires_at)) => state.store.revoke_session(nonce, expires_at).await,
            None => Ok(()),
        }
    }

    /// The CSRF token to put in this session's forms.
    pub fn csrf(&self) -> String {
        self.key.csrf_token(&self.cookie)
    }

    /// Checks a form's `csrf` field.
    ///
    /// # Errors
    /// 403 when it is missing or is not this session's token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if !presented.is_empty() && secret::same_hash(presented, &self.csrf()) {
            Ok(())
        } else {
            tracing::warn!(
                event = "dashboard.csrf_refused",
                "form without a valid CSRF token"
            );
            Err(PageError::forbidden(
                "This form has expired or did not come from the dashboard. Reload the page and try again.",
            ))
        }
    }
}

/// Why a request has no session.
#[derive(Debug)]
pub enum NoSession {
    /// A page: go log in.
    Redirect,
    /// A form post: refused.
    Forbidden,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Redirect => Redirect::to("/login").into_response(),
            NoSession::Forbidden => {
                PageError::forbidden("Your session has expired: log in again.").into_response()
            }
        }
    }
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Self::of(state, &parts.headers).await {
            Some(session) => Ok(session),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(NoSession::Redirect)
            }
            None => Err(NoSession::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issued cookies verify; tampered, expired or foreign ones do not.
    #[test]
    fn cookies_are_signed_and_expire() {
        let key = SessionKey::new(b"0123456789abcdef0123456789abcdef", &secret::hash("k"));
        let now = 1_700_000_000_000;
        let cookie = key.issue(now).expect("random");
        assert!(key.verify(&cookie, now + 1000));
        assert!(!key.verify(&cookie, now + SESSION_TTL_MS + 1));
        assert!(!key.verify(&cookie, now - 2 * SKEW_MS));
        let other = SessionKey::new(b"0123456789abcdef0123456789abcdef", &secret::hash("other"));
        assert!(!other.verify(&cookie, now));
        let mut tampered = cookie.clone();
        tampered.replace_range(0..1, "2");
        assert!(!key.verify(&tampered, now));
        assert!(!key.verify("garbage", now));
        assert!(!key.verify("1.2.zz", now));
        // Extreme issue times are refused, never an overflow.
        let nonce = "0".repeat(32);
        for issued in [i64::MIN, -1, i64::MAX] {
            assert!(!key.verify(&format!("{issued}.{nonce}.00"), now));
        }
        let secret_b = SessionKey::new(b"another secret of at least 32 bytes", &secret::hash("k"));
        assert!(!secret_b.verify(&cookie, now + 1000));
    }

    /// CSRF tokens are per session.
    #[test]
    fn csrf_tokens_differ_per_session() {
        let key = SessionKey::new(b"0123456789abcdef0123456789abcdef", &secret::hash("k"));
        let a = key.issue(1).expect("random");
        let b = key.issue(1).expect("random");
        assert_ne!(key.csrf_token(&a), key.csrf_token(&b));
        assert_eq!(key.csrf_token(&a), key.csrf_token(&a));
    }

    /// Cookies are found among several.
    #[test]
    fn cookie_header_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; sqreen_session=xyz; b=2".parse().expect("ascii"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
