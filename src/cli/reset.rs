//! `kafka-healing reset`: closes open circuits (a target's, a rule's, or one rule's on one
//! target) through the running service's API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::Config;

/// Why the service's URL cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum UrlError {
    /// `server.listen` is not an address with a port (checked at load; kept for safety).
    #[error("server.listen `{listen}`: {reason}")]
    Listen {
        /// The value.
        listen: String,
        /// What the parser says.
        reason: std::net::AddrParseError,
    },
    /// `--url` is not a URL.
    #[error("{base}: {reason}")]
    Base {
        /// The URL given.
        base: String,
        /// What the parser says.
        reason: url::ParseError,
    },
    /// `--url` cannot have path segments (`mailto:`, `data:`).
    #[error("{0}: not a base URL")]
    NotBase(String),
    /// Neither a target nor a rule.
    #[error("name a TARGET, a --rule, or both")]
    NoName,
    /// A name that URL parsers drop or resolve (``, `.`, `..`); `what` is TARGET or RULE.
    #[error("`{name}` cannot be a {what}: it is no broker's node_id or rule's name")]
    Unsendable {
        /// The name.
        name: String,
        /// `TARGET` or `RULE`.
        what: &'static str,
    },
}

/// The URL the local service answers on: the listen address, with a wildcard address
/// replaced by loopback.
pub(super) fn base_url(cfg: &Config) -> Result<String, UrlError> {
    let addr: SocketAddr = cfg
        .server
        .listen
        .parse()
        .map_err(|reason| UrlError::Listen {
            listen: cfg.server.listen.clone(),
            reason,
        })?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let scheme = if cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}:{}", addr.port()))
}

/// What to reset.
#[derive(Debug, Clone, Copy)]
pub(super) struct What<'a> {
    /// A broker's node_id, or `zookeeper/ID` (`-`: a rule-level circuit, with `rule`).
    pub target: Option<&'a str>,
    /// A rule's name.
    pub rule: Option<&'a str>,
}

impl What<'_> {
    /// The route's URL under `base`, its name one percent-encoded path segment (a name
    /// may hold `/`, `?`, `#`, `%`), so that no name reaches another route.
    fn url(&self, base: &str) -> Result<reqwest::Url, UrlError> {
        let mut u = reqwest::Url::parse(base).map_err(|reason| UrlError::Base {
            base: base.to_string(),
            reason,
        })?;
        let (kind, name) = match (self.rule, self.target) {
            (Some(r), _) => ("rules", r),
            (None, Some(t)) => ("targets", t),
            (None, None) => return Err(UrlError::NoName),
        };
        // URL parsers drop or resolve these (even encoded as `%2E`), so they cannot be sent
        // as a segment; no broker or rule is named so.
        if let Some(bad) = [self.target, self.rule]
            .into_iter()
            .zip(["TARGET", "RULE"])
            .find(|(n, _)| matches!(n, Some("" | "." | "..")))
        {
            return Err(UrlError::Unsendable {
                name: bad.0.unwrap_or_default().to_string(),
                what: bad.1,
            });
        }
        u.path_segments_mut()
            .map_err(|()| UrlError::NotBase(base.to_string()))?
            .pop_if_empty()
            .extend(["api", "v1", kind, name, "reset"]);
        if let (Some(_), Some(t)) = (self.rule, self.target) {
            u.query_pairs_mut().append_pair("target", t);
        }
        Ok(u)
    }

    /// In words, for the output.
    fn label(&self) -> String {
        match (self.rule, self.target) {
            (Some(r), Some(t)) => format!("{r} on {t}"),
            (Some(r), None) => r.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => String::new(),
        }
    }
}

pub(super) fn run(
    config_path: &[PathBuf],
    what: What<'_>,
    url: Option<&str>,
    insecure: bool,
) -> ExitCode {
    let loaded = match super::load_config(config_path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let cfg = &loaded.config;
    let base = match url
        .map(|u| Ok(u.trim_end_matches('/').to_string()))
        .unwrap_or_else(|| base_url(cfg))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = match what.url(&base) {
        Ok(u) => u.to_string(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = rt.block_on(async {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let mut req = client.post(&endpoint);
        if let Some(auth) = &cfg.server.auth {
            if let Some(t) = &auth.bearer_token {
                req = req.bearer_auth(t.expose());
            } else if let Some(b) = &auth.basic {
                req = req.basic_auth(&b.username, b.password.as_ref().map(|p| p.expose()));
            }
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            let closed: Vec<&str> = body["closed"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let label = what.label();
            match (closed.is_empty(), what.rule.is_some()) {
                (true, _) => println!("{label}: no open circuit"),
                (false, false) => println!("{label}: closed the circuit of {}", closed.join(", ")),
                (false, true) => println!("{label}: closed the circuit on {}", closed.join(", ")),
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let msg = body["error"].as_str().unwrap_or("");
            eprintln!("error: {endpoint}: HTTP {status}: {msg}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("error: cannot reach the service at {endpoint}: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{UrlError, What};

    fn url(target: Option<&str>, rule: Option<&str>) -> Result<String, String> {
        What { target, rule }
            .url("http://127.0.0.1:9/prefix")
            .map(|u| u.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_name_is_one_encoded_segment() {
        let base = "http://127.0.0.1:9/prefix/api/v1";
        assert_eq!(
            url(Some("x/../../../../-/reload#"), None).unwrap(),
            format!("{base}/targets/x%2F..%2F..%2F..%2F..%2F-%2Freload%23/reset")
        );
        assert_eq!(
            url(Some("a?b=%2e%2e"), None).unwrap(),
            format!("{base}/targets/a%3Fb=%252e%252e/reset")
        );
        assert_eq!(
            url(Some("../x"), Some("r/../..")).unwrap(),
            format!("{base}/rules/r%2F..%2F../reset?target=..%2Fx")
        );
        assert_eq!(
            url(Some("kafka-1"), None).unwrap(),
            format!("{base}/targets/kafka-1/reset")
        );
    }

    #[test]
    fn dot_segments_and_empty_names_are_refused() {
        for bad in ["", ".", ".."] {
            let e = url(Some(bad), None).unwrap_err();
            assert!(e.contains("cannot be a TARGET"), "{e}");
            let e = url(None, Some(bad)).unwrap_err();
            assert!(e.contains("cannot be a RULE"), "{e}");
            let e = url(Some(bad), Some("r")).unwrap_err();
            assert!(e.contains("cannot be a TARGET"), "{e}");
        }
        let what = |target, rule| What { target, rule }.url("http://127.0.0.1:9/");
        assert_eq!(what(None, None).unwrap_err(), UrlError::NoName);
        assert_eq!(
            what(Some(".."), None).unwrap_err(),
            UrlError::Unsendable {
                name: "..".into(),
                what: "TARGET"
            }
        );
        assert_eq!(
            What {
                target: Some("t"),
                rule: None
            }
            .url("mailto:x@y")
            .unwrap_err()
            .to_string(),
            "mailto:x@y: not a base URL"
        );
    }
}
