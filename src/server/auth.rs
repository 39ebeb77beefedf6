//! API authentication: a bearer token or basic auth, compared in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether the request's `Authorization` header satisfies `auth` (no auth: always).
pub fn authorized(auth: Option<&AuthConfig>, headers: &HeaderMap) -> bool {
    let Some(auth) = auth else { return true };
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if let Some(token) = &auth.bearer_token {
        return scheme.eq_ignore_ascii_case("bearer")
            && same(rest.as_bytes(), token.expose().as_bytes());
    }
    if let Some(basic) = &auth.basic {
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
        let want = basic
            .password
            .as_ref()
            .map(|p| p.expose())
            .unwrap_or_default();
        // Evaluate both comparisons so the time does not tell which one failed.
        let u = same(user, basic.username.as_bytes());
        let p = same(pass, want.as_bytes());
        return u & p;
    }
    false
}

/// The `WWW-Authenticate` challenge for a 401.
pub fn challenge(auth: Option<&AuthConfig>) -> &'static str {
    match auth {
        Some(a) if a.basic.is_some() => "Basic realm=\"kafka-healing\"",
        _ => "Bearer realm=\"kafka-healing\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BasicAuth, Secret};

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let bearer = AuthConfig {
            bearer_token: Some(Secret("s3cret".into())),
            ..Default::default()
        };
        assert!(authorized(Some(&bearer), &headers("Bearer s3cret")));
        assert!(authorized(Some(&bearer), &headers("bearer s3cret")));
        assert!(!authorized(Some(&bearer), &headers("Bearer s3cre")));
        assert!(!authorized(Some(&bearer), &headers("Bearer s3cretX")));
        assert!(!authorized(Some(&bearer), &headers("Basic czNjcmV0")));
        assert!(!authorized(Some(&bearer), &HeaderMap::new()));
        let basic = AuthConfig {
            basic: Some(BasicAuth {
                username: "am".into(),
                password: Some(Secret("p:w".into())),
                password_file: None,
            }),
            ..Default::default()
        };
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(Some(&basic), &headers(&enc("am:p:w"))));
        assert!(!authorized(Some(&basic), &headers(&enc("am:p"))));
        assert!(!authorized(Some(&basic), &headers(&enc("xx:p:w"))));
        assert!(!authorized(Some(&basic), &headers("Basic !!!")));
        assert!(!authorized(Some(&basic), &headers("Bearer p:w")));
        assert!(authorized(None, &HeaderMap::new()));
    }
}
