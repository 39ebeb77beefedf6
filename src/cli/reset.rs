//! `kafka-healing reset`: closes a target's open circuits through the running service's API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::Config;

/// The URL the local service answers on: the listen address, with a wildcard address
/// replaced by loopback.
pub(super) fn base_url(cfg: &Config) -> Result<String, String> {
    let addr: SocketAddr = cfg
        .server
        .listen
        .parse()
        .map_err(|e| format!("server.listen `{}`: {e}", cfg.server.listen))?;
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

pub(super) fn run(config_path: &Path, target: &str, url: Option<&str>, insecure: bool) -> ExitCode {
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
    let endpoint = format!("{base}/api/v1/targets/{target}/reset");
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
            if closed.is_empty() {
                println!("{target}: no open circuit");
            } else {
                println!("{target}: closed the circuit of {}", closed.join(", "));
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
