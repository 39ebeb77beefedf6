//! The `alertmanager:` section: the Alertmanager whose silences the self-watch honours.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;
use crate::yaml::Document;

/// Where the self-watch reads Alertmanager's silences (API v2), so that a silence that
/// matches one of its alerts stops it from acting, as it stops Alertmanager's own.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://127.0.0.1:9093`, or with its route prefix); the
    /// silences are read from `URL/api/v2/silences`.
    pub url: String,
    /// Time limit of one read of the silences, in seconds (1–60).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    5
}

/// Checks the section: an http(s) URL with a host and without query or fragment, and a
/// timeout within bounds.
pub(super) fn validate(
    a: &AlertmanagerConfig,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) {
    let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);
    match url::Url::parse(&a.url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => err(
            "alertmanager.url",
            format!("scheme `{}` is not http or https", u.scheme()),
        ),
        Ok(u) if u.host().is_none() => {
            err("alertmanager.url", format!("`{}` has no host", a.url));
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => err(
            "alertmanager.url",
            format!(
                "`{}` has a query or fragment; give the base URL only",
                a.url
            ),
        ),
        Ok(_) => {}
        Err(e) => err("alertmanager.url", format!("`{}` is not a URL: {e}", a.url)),
    }
    if !(1..=60).contains(&a.timeout_seconds) {
        err(
            "alertmanager.timeout_seconds",
            format!("must be between 1 and 60, got {}", a.timeout_seconds),
        );
    }
}

impl AlertmanagerConfig {
    /// The URL of the silences list (`GET`).
    pub fn silences_url(&self) -> String {
        format!("{}/api/v2/silences", self.url.trim_end_matches('/'))
    }
}
