//! Scraping a broker's JMX-exporter endpoint: one bounded HTTP GET (gzip accepted), the
//! body parsed by [`crate::expo`], target labels attached the way Prometheus does, and
//! `up`, `scrape_duration_seconds` and `scrape_samples_scraped` synthesized.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::store::Labels;
use crate::config::Broker;
use crate::promql::KeepSet;

/// Largest body accepted (a JMX exporter of a large broker serves a few MB).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What one scrape saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeResult {
    /// The broker.
    pub node_id: String,
    /// The URL scraped.
    pub url: String,
    /// Whether the scrape worked (HTTP 2xx and a body that parses).
    pub up: bool,
    /// How long it took.
    pub duration: Duration,
    /// Samples, with target labels, plus the synthesized ones.
    pub samples: Vec<(Labels, f64)>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Samples the exposition held (kept or not; `scrape_samples_scraped`).
    pub exposed: usize,
}

/// The endpoint of a broker: `metrics_url`, else `http://host:jmx_port/metrics`.
pub fn metrics_url(b: &Broker) -> Option<String> {
    match (&b.metrics_url, b.jmx_port) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(p)) => Some(format!("http://{}:{p}/metrics", b.host)),
        (None, None) => None,
    }
}

fn instance_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_string())
}

fn target_labels(node_id: &str, url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("instance", instance_of(url)),
        ("job", "kafka".to_string()),
        ("node_id", node_id.to_string()),
    ]
}

fn synthesized(name: &str, targets: &[(&'static str, String)], v: f64) -> (Labels, f64) {
    let mut l: Labels = targets
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    l.insert("__name__".into(), name.into());
    (l, v)
}

/// An error with its causes (reqwest's own text alone says only "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Scrapes `url` for broker `node_id` within `timeout`, keeping every sample.
pub async fn scrape(
    client: &reqwest::Client,
    node_id: &str,
    url: &str,
    timeout: Duration,
) -> ScrapeResult {
    scrape_kept(client, node_id, url, timeout, &KeepSet::all()).await
}

/// The label `k` of an exporter's sample once the target labels are attached (as
/// [`with_targets`] builds them), without building the label set.
fn final_label<'a>(
    s: &'a crate::expo::Sample<'a>,
    targets: &'a [(&'static str, String)],
    k: &str,
) -> Option<&'a str> {
    let own = |k: &str| {
        s.labels
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_ref())
    };
    if let Some((_, v)) = targets.iter().find(|(t, _)| *t == k) {
        return Some(v.as_str());
    }
    match k.strip_prefix("exported_") {
        Some(base) if targets.iter().any(|(t, _)| *t == base) => own(base).or_else(|| own(k)),
        _ => own(k),
    }
}

/// The sample `s` with the target labels attached, as Prometheus does with
/// `honor_labels: false`: the exporter's own target labels are kept as `exported_*`.
fn with_targets(s: &crate::expo::Sample<'_>, targets: &[(&'static str, String)]) -> (Labels, f64) {
    let mut l: Labels = BTreeMap::new();
    for (k, v) in &s.labels {
        l.insert((*k).to_string(), v.to_string());
    }
    for (k, v) in targets {
        if let Some(old) = l.insert(k.to_string(), v.clone()) {
            l.insert(format!("exported_{k}"), old);
        }
    }
    l.insert("__name__".into(), s.name.to_string());
    (l, s.value)
}

/// Why a scrape failed.
enum Failure {
    /// The request or the body transfer failed; the text says how.
    Fetch(String),
    /// The request failed before any HTTP answer, and not by a timeout: the port may speak
    /// another protocol.
    Transport(String),
    /// The body is not a valid exposition.
    Expo(crate::expo::ExpoError),
}

/// GETs `url` and parses the body chunk by chunk as it arrives, keeping the samples `keep`
/// accepts (with target labels). Returns them and how many samples the body exposed.
async fn fetch_kept(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    targets: &[(&'static str, String)],
    keep: &KeepSet,
) -> Result<(Vec<(Labels, f64)>, usize), Failure> {
    // `in_body`: the headers had arrived.
    let transfer = |e: reqwest::Error, in_body: bool| {
        Failure::Fetch(match (e.is_timeout(), in_body) {
            (true, false) => format!("no answer within {timeout:?}"),
            (true, true) => format!("body not complete within {timeout:?}"),
            (false, false) => error_chain(&e),
            (false, true) => format!("reading the body: {}", error_chain(&e)),
        })
    };
    let mut resp = client
        .get(url)
        .header("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() || e.is_connect() {
                transfer(e, false)
            } else {
                Failure::Transport(error_chain(&e))
            }
        })?;
    if !resp.status().is_success() {
        return Err(Failure::Fetch(format!("HTTP {}", resp.status())));
    }
    let too_large = || Failure::Fetch(format!("body larger than {MAX_BODY_BYTES} bytes"));
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }
    let name = |n: &str| keep.may_keep_name(n);
    let mut samples = Vec::new();
    let mut kept = |s: crate::expo::Sample<'_>| {
        if keep.keeps(s.name, |k| final_label(&s, targets, k)) {
            samples.push(with_targets(&s, targets));
        }
    };
    let mut parser = crate::expo::Chunked::new();
    let mut parsed = 0usize;
    let mut received = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(|e| transfer(e, true))? {
        received += chunk.len();
        if received > MAX_BODY_BYTES {
            return Err(too_large());
        }
        parser
            .feed(&chunk, name, |s| {
                parsed += 1;
                kept(s)
            })
            .map_err(Failure::Expo)?;
    }
    let skipped = parser
        .finish(name, |s| {
            parsed += 1;
            kept(s)
        })
        .map_err(Failure::Expo)?;
    Ok((samples, parsed + skipped))
}

/// Scrapes `url` for broker `node_id` within `timeout`, keeping only the samples `keep`
/// accepts (the others are skipped while parsing). The synthesized `up`,
/// `scrape_duration_seconds` and `scrape_samples_scraped` (every sample exposed) are
/// always there.
pub async fn scrape_kept(
    client: &reqwest::Client,
    node_id: &str,
    url: &str,
    timeout: Duration,
    keep: &KeepSet,
) -> ScrapeResult {
    let t0 = Instant::now();
    let targets = target_labels(node_id, url);
    let mut samples = Vec::new();
    let mut exposed = 0;
    let error = match fetch_kept(client, url, timeout, &targets, keep).await {
        Ok((kept, n)) => {
            samples = kept;
            exposed = n;
            None
        }
        Err(Failure::Expo(e)) => Some(format!("malformed exposition: {e}")),
        Err(Failure::Fetch(e)) => Some(e),
        Err(Failure::Transport(e)) => match speaks_no_http(url, timeout).await {
            Some(port) => {
                let msg = no_http_message(port);
                warn_once(url, &msg);
                Some(msg)
            }
            None => Some(e),
        },
    };
    let duration = t0.elapsed();
    let up = error.is_none();
    samples.push(synthesized("up", &targets, if up { 1.0 } else { 0.0 }));
    samples.push(synthesized(
        "scrape_duration_seconds",
        &targets,
        duration.as_secs_f64(),
    ));
    samples.push(synthesized(
        "scrape_samples_scraped",
        &targets,
        exposed as f64,
    ));
    ScrapeResult {
        node_id: node_id.to_string(),
        url: url.to_string(),
        up,
        duration,
        samples,
        error,
        exposed,
    }
}

/// What `scrape` and the log say about an endpoint that does not speak HTTP (the seed's
/// `jmx_port` is the broker's raw JMX/RMI port, not the exporter's).
pub fn no_http_message(port: u16) -> String {
    format!("port {port} speaks no HTTP: raw JMX? set metrics_url to the JMX exporter")
}

/// URLs already named in the log as speaking no HTTP (once per process).
static WARNED_NO_HTTP: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn warn_once(url: &str, msg: &str) {
    let first = WARNED_NO_HTTP
        .lock()
        .map(|mut w| w.insert(url.to_string()))
        .unwrap_or(false);
    if first {
        tracing::warn!(url, "{msg}");
    }
}

/// True when `reply` (the first bytes answered to an HTTP request) is not HTTP; `closed`:
/// the peer closed or reset without a byte, as a JMX/RMI port does.
pub fn is_not_http(reply: &[u8], closed: bool) -> bool {
    if reply.is_empty() {
        return closed;
    }
    let n = reply.len().min(5);
    reply[..n] != b"HTTP/"[..n] || (closed && n < 5)
}

/// Asks the `http` endpoint of `url` for a response head with a raw HTTP/1.0 request and
/// returns its port when the answer is not HTTP. None when it is HTTP, or unknown (no
/// connection, no answer within the bound).
async fn speaks_no_http(url: &str, timeout: Duration) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = url::Url::parse(url).ok()?;
    if u.scheme() != "http" {
        return None;
    }
    let host = u
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_or_known_default()?;
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        // A peer that closes at once may refuse the write; what it answered still counts.
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let mut buf = [0u8; 5];
        let mut n = 0;
        let mut closed = false;
        for _ in 0..5 {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(k) => n += k,
            }
            if n == buf.len() {
                break;
            }
        }
        Some(is_not_http(&buf[..n], closed))
    };
    let bound = timeout.min(Duration::from_secs(2));
    match tokio::time::timeout(bound, probe).await {
        Ok(Some(true)) => Some(port),
        _ => None,
    }
}

#[cfg(test)]
mod no_http_tests {
    use super::*;

    #[test]
    fn http_heads_are_http_and_other_bytes_are_not() {
        assert!(!is_not_http(b"HTTP/", false));
        assert!(!is_not_http(b"HTT", false));
        assert!(is_not_http(b"HTT", true));
        assert!(is_not_http(b"JRMI\0", false));
        assert!(is_not_http(b"\x4e\x00", true));
        assert!(is_not_http(b"", true));
        assert!(!is_not_http(b"", false));
        assert_eq!(
            no_http_message(9999),
            "port 9999 speaks no HTTP: raw JMX? set metrics_url to the JMX exporter"
        );
    }
}
