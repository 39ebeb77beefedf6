//! Probes: is a broker's port open, is a ZooKeeper node serving, does an endpoint answer?
//! Each probe is bounded by a timeout and never panics; its result becomes series
//! (`kafka_healing_probe_success{node_id,method}` and friends) usable in conditions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::store::Labels;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// `socket`, `zookeeper` or `http`.
    pub method: &'static str,
    /// The node probed (broker or ZooKeeper node_id).
    pub node_id: String,
    /// Whether the target is up by this probe's standard.
    pub success: bool,
    /// How long the probe took.
    pub duration: Duration,
    /// What was seen, for logs and `scrape` output.
    pub detail: String,
    /// Extra numeric facts (ZooKeeper `mntr` values, zxid, …) as (name, value).
    pub facts: Vec<(String, f64)>,
    /// `socket` only: whether the connection was actively refused (nothing listens), as
    /// opposed to accepted, timed out or failed otherwise; `None` for other methods.
    pub refused: Option<bool>,
}

/// The series of a socket probe: 1 when the connection was refused, 0 otherwise (a hung
/// host that lets the connect time out is not "refused").
pub const REFUSED: &str = "kafka_healing_probe_refused";

impl ProbeResult {
    /// The probe as series: success, duration, and the facts, labelled with `node_id`.
    pub fn series(&self) -> Vec<(Labels, f64)> {
        let base = |name: &str| -> Labels {
            let mut l = BTreeMap::new();
            l.insert("__name__".to_string(), name.to_string());
            l.insert("node_id".to_string(), self.node_id.clone());
            l.insert("method".to_string(), self.method.to_string());
            l
        };
        let mut out = vec![
            (
                base("kafka_healing_probe_success"),
                if self.success { 1.0 } else { 0.0 },
            ),
            (
                base("kafka_healing_probe_duration_seconds"),
                self.duration.as_secs_f64(),
            ),
        ];
        if let Some(r) = self.refused {
            out.push((base(REFUSED), if r { 1.0 } else { 0.0 }));
        }
        for (name, v) in &self.facts {
            let mut l = base(name);
            l.remove("method");
            out.push((l, *v));
        }
        out
    }
}

/// What a TCP connect came to: `Ok(Ok(()))` accepted, `Ok(Err(e))` failed, `Err(())` no
/// answer within `timeout`. Returns (success, refused, detail).
pub fn socket_outcome(
    host: &str,
    port: u16,
    r: Result<std::io::Result<()>, ()>,
    timeout: Duration,
) -> (bool, bool, String) {
    match r {
        Ok(Ok(())) => (true, false, format!("{host}:{port} accepts connections")),
        Ok(Err(e)) => (
            false,
            e.kind() == std::io::ErrorKind::ConnectionRefused,
            format!("{host}:{port}: {e}"),
        ),
        Err(()) => (
            false,
            false,
            format!("{host}:{port}: no answer within {timeout:?}"),
        ),
    }
}

/// TCP connect to `host:port` within `timeout`.
pub async fn socket(node_id: &str, host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let t0 = Instant::now();
    let r = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map(|c| c.map(drop))
        .map_err(drop);
    let (success, refused, detail) = socket_outcome(host, port, r, timeout);
    ProbeResult {
        method: "socket",
        node_id: node_id.to_string(),
        success,
        duration: t0.elapsed(),
        detail,
        facts: Vec::new(),
        refused: Some(refused),
    }
}

/// Sends a ZooKeeper four-letter word and reads the whole answer (bounded in size).
async fn four_letters(
    host: &str,
    port: u16,
    word: &[u8; 4],
    timeout: Duration,
) -> Result<String, String> {
    let io = async {
        let mut s = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(word).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The parts of a `srvr` answer a condition needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Srvr {
    /// `leader`, `follower`, `standalone`, `observer`.
    pub mode: String,
    /// Last zxid.
    pub zxid: Option<u64>,
}

/// Why a `srvr` answer shows no serving node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrvrError {
    /// The node answered that it is not serving (no quorum, or still starting).
    #[error("not currently serving requests")]
    NotServing,
    /// The answer has no `Mode:` line (srvr not allowed, or not ZooKeeper); carries its
    /// first line.
    #[error("unexpected srvr answer: {0}")]
    Unexpected(String),
}

/// Parses a `srvr` answer; `Err` says why the node is not serving.
pub fn parse_srvr(text: &str) -> Result<Srvr, SrvrError> {
    if text.contains("not currently serving requests") {
        return Err(SrvrError::NotServing);
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let mode = field("Mode:").ok_or_else(|| {
        let first = text.lines().next().unwrap_or("(empty answer)");
        SrvrError::Unexpected(first.to_string())
    })?;
    let zxid =
        field("Zxid:").and_then(|z| u64::from_str_radix(z.trim_start_matches("0x"), 16).ok());
    Ok(Srvr { mode, zxid })
}

/// Parses `mntr` (tab-separated `key value` lines), keeping the numeric values.
pub fn parse_mntr(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            let v: f64 = v.trim().parse().ok()?;
            let k: String = k
                .trim()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            Some((
                format!("kafka_healing_zookeeper_{}", k.trim_start_matches("zk_")),
                v,
            ))
        })
        .collect()
}

/// `srvr` (and `mntr` when `with_mntr`): serving or not, mode, zxid and mntr values.
pub async fn zookeeper(
    node_id: &str,
    host: &str,
    port: u16,
    timeout: Duration,
    with_mntr: bool,
) -> ProbeResult {
    let t0 = Instant::now();
    let mut facts = Vec::new();
    let (success, detail) = match four_letters(host, port, b"srvr", timeout).await {
        Ok(text) => match parse_srvr(&text) {
            Ok(s) => {
                for m in ["leader", "follower", "standalone", "observer"] {
                    facts.push((
                        format!("kafka_healing_zookeeper_mode_{m}"),
                        if s.mode == m { 1.0 } else { 0.0 },
                    ));
                }
                if let Some(z) = s.zxid {
                    facts.push(("kafka_healing_zookeeper_zxid".to_string(), z as f64));
                }
                (true, format!("{host}:{port} serving, mode {}", s.mode))
            }
            Err(why) => (false, format!("{host}:{port}: {why}")),
        },
        Err(e) => (false, format!("{host}:{port}: {e}")),
    };
    if success && with_mntr {
        // mntr may be disallowed (4lw.commands.whitelist); that is not a failure of the node.
        if let Ok(text) = four_letters(host, port, b"mntr", timeout).await {
            facts.extend(parse_mntr(&text));
        }
    }
    ProbeResult {
        method: "zookeeper",
        node_id: node_id.to_string(),
        success,
        duration: t0.elapsed(),
        detail,
        facts,
        refused: None,
    }
}

/// GET `url`: up when it answers 2xx within `timeout`.
pub async fn http(
    node_id: &str,
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> ProbeResult {
    let t0 = Instant::now();
    let (success, detail) = match client.get(url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() => (true, format!("{url}: {}", r.status())),
        Ok(r) => (false, format!("{url}: HTTP {}", r.status())),
        Err(e) if e.is_timeout() => (false, format!("{url}: no answer within {timeout:?}")),
        Err(e) => (false, format!("{url}: {}", super::scrape::error_chain(&e))),
    };
    ProbeResult {
        method: "http",
        node_id: node_id.to_string(),
        success,
        duration: t0.elapsed(),
        detail,
        facts: Vec::new(),
        refused: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srvr_answers() {
        let ok = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nZxid: 0x1a\nMode: follower\nNode count: 5\n";
        assert_eq!(
            parse_srvr(ok),
            Ok(Srvr {
                mode: "follower".into(),
                zxid: Some(26)
            })
        );
        assert_eq!(
            parse_srvr("This ZooKeeper instance is not currently serving requests\n"),
            Err(SrvrError::NotServing)
        );
        let e = parse_srvr("").unwrap_err();
        assert_eq!(e, SrvrError::Unexpected("(empty answer)".into()));
        assert_eq!(e.to_string(), "unexpected srvr answer: (empty answer)");
        assert!(matches!(
            parse_srvr("srvr is not executed because it is not in the whitelist."),
            Err(SrvrError::Unexpected(_))
        ));
    }

    #[test]
    fn refused_is_told_apart_from_timed_out() {
        use std::io::{Error, ErrorKind};
        let t = Duration::from_secs(2);
        let o = |r| socket_outcome("h", 9092, r, t);
        assert_eq!(
            o(Ok(Ok(()))),
            (true, false, "h:9092 accepts connections".into())
        );
        let (up, refused, _) = o(Ok(Err(Error::from(ErrorKind::ConnectionRefused))));
        assert_eq!((up, refused), (false, true));
        // A hung host (or a firewall that drops) lets the connect time out: not refused.
        assert_eq!(
            o(Err(())),
            (false, false, "h:9092: no answer within 2s".into())
        );
        for kind in [
            ErrorKind::HostUnreachable,
            ErrorKind::TimedOut,
            ErrorKind::NotFound,
        ] {
            let (up, refused, _) = o(Ok(Err(Error::from(kind))));
            assert_eq!((up, refused), (false, false), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn socket_series_on_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        let closed = {
            let c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            c.local_addr().unwrap().port()
        };
        let t = Duration::from_secs(5);
        let value = |r: &ProbeResult, name: &str| {
            r.series()
                .into_iter()
                .find(|(l, _)| l["__name__"] == name)
                .map(|(l, v)| (l["method"].clone(), l["node_id"].clone(), v))
        };
        // The listener accepts but never answers (as a hung broker's kernel does).
        let r = socket("b1", "127.0.0.1", open, t).await;
        assert_eq!(
            value(&r, REFUSED),
            Some(("socket".into(), "b1".into(), 0.0))
        );
        let r = socket("b1", "127.0.0.1", closed, t).await;
        assert_eq!(
            value(&r, REFUSED),
            Some(("socket".into(), "b1".into(), 1.0))
        );
        assert_eq!(
            value(&r, "kafka_healing_probe_success").map(|v| v.2),
            Some(0.0)
        );
    }

    #[test]
    fn mntr_numbers() {
        let m = parse_mntr(
            "zk_version\t3.8.0\nzk_avg_latency\t0.5\nzk_server_state\tleader\nzk_num_alive_connections\t3\n",
        );
        assert_eq!(
            m,
            vec![
                ("kafka_healing_zookeeper_avg_latency".to_string(), 0.5),
                (
                    "kafka_healing_zookeeper_num_alive_connections".to_string(),
                    3.0
                )
            ]
        );
    }
}
