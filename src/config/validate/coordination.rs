//! The `coordination` section (high availability through etcd).

use super::between;
use crate::config::model::CoordinationConfig;

/// Checks the `coordination` section (high availability through etcd).
pub(super) fn coordination(c: &CoordinationConfig, err: &mut impl FnMut(&str, String)) {
    if c.endpoints.is_empty() {
        err(
            "coordination.endpoints",
            "at least one etcd endpoint is required".into(),
        );
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        let p = format!("coordination.endpoints[{i}]");
        match url::Url::parse(e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => err(
                &p,
                format!(
                    "`{e}` is not an http(s) URL with a host (scheme `{}`)",
                    u.scheme()
                ),
            ),
            Err(why) => err(&p, format!("`{e}` is not a URL: {why}")),
        }
    }
    between(
        err,
        "coordination.lease_ttl_seconds",
        c.lease_ttl_seconds,
        2,
        300,
    );
    if !c.key_prefix.starts_with('/') || !c.key_prefix.ends_with('/') {
        err(
            "coordination.key_prefix",
            format!("must start and end with `/`, got `{}`", c.key_prefix),
        );
    }
    match (&c.username, &c.password) {
        (Some(u), Some(p)) if u.is_empty() || p.expose().is_empty() => err(
            "coordination.username",
            "username and password must not be empty".into(),
        ),
        (Some(_), None) | (None, Some(_)) => err(
            "coordination.username",
            "set both username and password, or neither".into(),
        ),
        _ => {}
    }
    if let Some(id) = &c.instance_id
        && (id.trim().is_empty() || id.contains('/') || id.chars().any(char::is_control))
    {
        err(
            "coordination.instance_id",
            format!(
                "must be a non-empty name without `/`, got `{}`",
                id.escape_debug()
            ),
        );
    }
}
