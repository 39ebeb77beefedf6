//! Webhook benchmark for `kafka-healing serve` (see BENCHMARKS.md).
//!
//! ```sh
//! benches/run-webhook                       # builds, runs everything, leaves nothing behind
//! # or by hand:
//! cargo build --release && cargo build --release --example loadgen
//! target/release/examples/loadgen --bin target/release/kafka-healing --out results.json
//! ```
//!
//! The generator starts the release binary itself (`--log info serve -c config.yaml`, with
//! `server.listen: 127.0.0.1:0`) in a scratch directory: three brokers, bearer auth, the
//! journal in the scratch directory, `recovery.cooldown_seconds: 0`, `max_attempts: 10`. It
//! talks to 127.0.0.1 only, and every phase is bounded in time and in count:
//!
//! - **a. throughput**: for each of `--connections` (a list), that many closed-loop clients
//!   post the Alertmanager fixture (2 alerts, ~1.2 KB) for `--duration` seconds or
//!   `--max-requests`, whichever ends first. The journal's alert count is read afterwards
//!   (read-only) and must equal 2 × the 200s.
//! - **b. ACK latency**: open loop (requests are sent on a fixed schedule, latency counts from
//!   the scheduled time, so a slow answer cannot hide the requests queued behind it) at each
//!   of `--rates` for `--rate-seconds`.
//! - **c. alert → first step**: `--probe-rate` req/s for `--probe-seconds`, one alert each
//!   with a unique `bench_id` label that is a rule param, so each alert is its own work key.
//!   The runbook's single `exec` step is this program again (`loadgen stamp DIR ID`), which
//!   writes the Unix time in ns to DIR/ID; that minus the time the request was sent is the
//!   end-to-end figure. The cost of spawning the same helper directly is measured apart.
//! - **d. decision storm** (kafka-healing only): `--storm-alerts` (20,000) distinct alerts,
//!   each with a unique `bench_id` label that is a param of the non-disruptive `bench-true`
//!   rule, posted as requests of `--storm-batch` (500) alerts over `--storm-connections` (4)
//!   connections as fast as the server answers. A 503 (the server's `max_pending_alerts`
//!   back-pressure) is retried after 50 ms and counted. From the first request, `/metrics` is
//!   read every 20 ms; the storm is decided when, after the last request got its 200,
//!   `kafka_healing_decision_backlog` reads 0. Reported: the posting time, the time from the
//!   first request to "all decided", decisions/s (alerts / that time), the peak RSS (VmHWM)
//!   and the executions by outcome. Bounded by `--storm-timeout` (120 s): a timeout is
//!   reported as such, with the backlog left. It runs first (before the warm-up), so with
//!   `--only d` alone the server is fresh. With `--storm-probe-rate R`, R requests per
//!   second of one distinct alert each are sent open-loop for `--storm-probe-seconds` (1)
//!   from the first request, and their ACK latency (from the scheduled send) is reported:
//!   the latency while the storm is being decided (its alerts delay the storm's "all
//!   decided", so decisions/s is measured without the probe).
//!
//! `loadgen stamp DIR ID` is that helper.
//!
//! **Side by side with a peer** (`--target am-executor --peer-bin PATH`): the same phases a
//! and b against `prometheus-am-executor`, started here on 127.0.0.1 with a config that runs
//! `/bin/true` for every request (its `-f` YAML, one command, no `match_labels`, no `max`).
//! It keeps no journal, so the loss check is "every request answered 2xx"; phase c does not
//! apply. `--payload unique` sends one alert per request with a unique `bench_id` label
//! instead of the fixture, so that kafka-healing also runs one `/bin/true` per request (each
//! alert is its own work key: no dedup, cooldown or attempt counting), like am-executor.
//! Each row also reports the server's CPU time from /proc/PID/stat (utime+stime, and that of
//! its reaped children, the `/bin/true` processes) and its peak RSS (VmHWM).
//!
//! **No-op ceiling** (`--target noop [--noop-bin PATH]`): phases a and b against
//! `examples/noop_server.rs`, an axum server (served like `kafka-healing serve`) that answers
//! `POST /api/v1/alerts` with 200 as soon as it has read the body. It runs as its own process,
//! started and measured exactly like the others, so its ACK latency is the floor on this
//! machine in the same run. By default it is looked for next to this binary.
//!
//! **Durable floor** (`--target floor`): the same server with `--durable`, which answers once
//! the raw body is committed to SQLite with fsync. Phase d applies to both ceilings when
//! `--storm-probe-rate` is set: the same storm is posted and the probe runs for its whole
//! `--storm-probe-seconds` (they decide nothing, so there is no backlog to wait for), so the
//! storm probe's latency has a no-op and a durable floor measured under the same load.
// Cargo.toml denies unsafe code; this benchmark tool needs `pre_exec` (see the SAFETY notes).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kafka_healing::journal::{ExecutionFilter, Journal};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token";

/// `/work/shared/fixtures/alertmanager-0.25/firing-two-brokers.json`, as Alertmanager 0.25
/// sent it (2 alerts, 1.2 KB).
const FIXTURE: &str = r#"{"receiver":"kafka-healing","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"KafkaBrokerDown","cluster":"prod-east","instance":"kafka-2.example.com:9404","job":"kafka","severity":"critical"},"annotations":{"runbook_url":"https://runbooks.example.com/kafka/broker-down","summary":"Kafka broker kafka-2 is down"},"startsAt":"2026-11-27T23:33:11Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example.com:9090/graph?g0.expr=up%7Bjob%3D%22kafka%22%7D+%3D%3D+0","fingerprint":"4bc93ef1eb7b9805"},{"status":"firing","labels":{"alertname":"KafkaBrokerDown","cluster":"prod-east","instance":"kafka-3.example.com:9404","job":"kafka","severity":"critical"},"annotations":{"summary":"Kafka broker kafka-3 is down"},"startsAt":"2026-11-27T23:33:11Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"41861009e54d0b9e"}],"groupLabels":{"alertname":"KafkaBrokerDown","cluster":"prod-east"},"commonLabels":{"alertname":"KafkaBrokerDown","cluster":"prod-east","job":"kafka","severity":"critical"},"commonAnnotations":{},"externalURL":"http://vm:9393","version":"4","groupKey":"{}:{alertname=\"KafkaBrokerDown\", cluster=\"prod-east\"}","truncatedAlerts":0}"#;
const FIXTURE_ALERTS: u64 = 2;

/// Next `bench_id` of `--payload unique` (unique over the whole run).
static NEXT_ID: AtomicU64 = AtomicU64::new(1_000_000);

/// Most probe alerts (phase c): the journal lists at most 1,000 executions at once.
const MAX_PROBES: u64 = 1000;

const USAGE: &str =
    "usage: loadgen [--bin PATH] [--connections N1,N2,..] [--duration S] [--max-requests N]
               [--rates R1,R2,..] [--rate-seconds S] [--max-inflight N]
               [--probe-rate R] [--probe-seconds S] [--spawn-samples N]
               [--workers N] [--server-log LEVEL] [--out FILE] [--pid-file FILE]
               [--keep] [--only a,b,c,d]
               [--target kafka-healing|am-executor|noop|floor] [--peer-bin PATH]
               [--noop-bin PATH] [--payload fixture|unique]
               [--storm-alerts N] [--storm-batch N] [--storm-connections N]
               [--storm-timeout S] [--storm-no-admission] [--storm-probe-rate R]
               [--storm-probe-seconds S]
       loadgen stamp DIR ID";

#[derive(Debug, Clone)]
struct Args {
    bin: PathBuf,
    connections: Vec<usize>,
    duration: f64,
    max_requests: u64,
    rates: Vec<u64>,
    rate_seconds: f64,
    max_inflight: usize,
    probe_rate: u64,
    probe_seconds: f64,
    spawn_samples: usize,
    workers: usize,
    server_log: String,
    out: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    keep: bool,
    only: String,
    /// `kafka-healing` (the default), `am-executor`, `noop` or `floor` (the no-op server with
    /// `--durable`).
    target: String,
    /// The prometheus-am-executor binary (with `--target am-executor`).
    peer_bin: Option<PathBuf>,
    /// The no-op ceiling server (with `--target noop` or `floor`; default: `noop_server` next
    /// to this binary).
    noop_bin: Option<PathBuf>,
    /// `fixture` (the default) or `unique`.
    payload: String,
    /// Phase d: distinct alerts in the storm.
    storm_alerts: u64,
    /// Phase d: alerts per request.
    storm_batch: u64,
    /// Phase d: concurrent connections posting the storm.
    storm_connections: usize,
    /// Phase d: longest wait, in seconds from the first request, for every alert to be decided.
    storm_timeout: f64,
    /// Phase d: the server takes every request (`server.admission_wait_ms: 0`) instead of
    /// holding back diagnostics while their queue is full, so the decisions are what is
    /// measured (beyond the queue, alerts are decided `skipped: queue full`).
    storm_no_admission: bool,
    /// Phase d: requests per second of one distinct alert each, sent open-loop for
    /// `storm_probe_seconds` from the storm's first request, whose ACK latency is measured
    /// (0: none).
    storm_probe_rate: u64,
    /// Phase d: how long the probe sends.
    storm_probe_seconds: f64,
}

impl Args {
    fn is_peer(&self) -> bool {
        self.target == "am-executor"
    }

    /// The no-op server, plain or durable.
    fn is_noop(&self) -> bool {
        self.target == "noop" || self.target == "floor"
    }

    /// kafka-healing itself (journal, engine, metrics).
    fn is_kh(&self) -> bool {
        self.target == "kafka-healing"
    }

    fn unique(&self) -> bool {
        self.payload == "unique"
    }

    /// Alerts in one request of phases a and b.
    fn alerts_per_request(&self) -> u64 {
        if self.unique() { 1 } else { FIXTURE_ALERTS }
    }

    /// The body of one request of phases a and b.
    fn body(&self) -> reqwest::Body {
        make_body(self.unique())
    }
}

/// The fixture, or (`unique`) one alert with the next `bench_id`.
fn make_body(unique: bool) -> reqwest::Body {
    if unique {
        unique_body(NEXT_ID.fetch_add(1, Ordering::Relaxed)).into()
    } else {
        FIXTURE.into()
    }
}

impl Default for Args {
    fn default() -> Self {
        Args {
            bin: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kafka-healing"),
            connections: vec![64, 256],
            duration: 10.0,
            max_requests: 1_000_000,
            rates: vec![100, 1000, 5000],
            rate_seconds: 8.0,
            max_inflight: 2000,
            probe_rate: 200,
            probe_seconds: 5.0,
            spawn_samples: 200,
            workers: 1,
            server_log: "info".into(),
            out: None,
            pid_file: None,
            keep: false,
            only: "a,b,c".into(),
            target: "kafka-healing".into(),
            peer_bin: None,
            noop_bin: None,
            payload: "fixture".into(),
            storm_alerts: 20_000,
            storm_batch: 500,
            storm_connections: 4,
            storm_timeout: 120.0,
            storm_no_admission: false,
            storm_probe_rate: 0,
            storm_probe_seconds: 1.0,
        }
    }
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag}: not a number: {v:?}"))
    }
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            a.keep = true;
            continue;
        }
        if flag == "--storm-no-admission" {
            a.storm_no_admission = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        match flag.as_str() {
            "--bin" => a.bin = PathBuf::from(v),
            "--connections" => {
                a.connections = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(flag, s))
                    .collect::<Result<_, _>>()?
            }
            "--duration" => a.duration = num(flag, v)?,
            "--max-requests" => a.max_requests = num(flag, v)?,
            "--rates" => {
                a.rates = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(flag, s))
                    .collect::<Result<_, _>>()?
            }
            "--rate-seconds" => a.rate_seconds = num(flag, v)?,
            "--max-inflight" => a.max_inflight = num(flag, v)?,
            "--probe-rate" => a.probe_rate = num(flag, v)?,
            "--probe-seconds" => a.probe_seconds = num(flag, v)?,
            "--spawn-samples" => a.spawn_samples = num(flag, v)?,
            "--workers" => a.workers = num(flag, v)?,
            "--server-log" => a.server_log = v.to_string(),
            "--out" => a.out = Some(PathBuf::from(v)),
            "--pid-file" => a.pid_file = Some(PathBuf::from(v)),
            "--only" => a.only = v.to_string(),
            "--target" => a.target = v.to_string(),
            "--peer-bin" => a.peer_bin = Some(PathBuf::from(v)),
            "--noop-bin" => a.noop_bin = Some(PathBuf::from(v)),
            "--payload" => a.payload = v.to_string(),
            "--storm-alerts" => a.storm_alerts = num(flag, v)?,
            "--storm-batch" => a.storm_batch = num(flag, v)?,
            "--storm-connections" => a.storm_connections = num(flag, v)?,
            "--storm-timeout" => a.storm_timeout = num(flag, v)?,
            "--storm-probe-rate" => a.storm_probe_rate = num(flag, v)?,
            "--storm-probe-seconds" => a.storm_probe_seconds = num(flag, v)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    // Bounded both ways, whatever is asked.
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    check(
        !a.connections.is_empty() && a.connections.iter().all(|c| (1..=1024).contains(c)),
        "--connections: each 1..=1024",
    )?;
    check(
        a.duration > 0.0 && a.duration <= 120.0,
        "--duration: (0, 120]",
    )?;
    check(
        (1..=10_000_000).contains(&a.max_requests),
        "--max-requests: 1..=10000000",
    )?;
    check(
        a.rates.iter().all(|r| (1..=50_000).contains(r)),
        "--rates: each 1..=50000",
    )?;
    check(
        a.rate_seconds > 0.0 && a.rate_seconds <= 60.0,
        "--rate-seconds: (0, 60]",
    )?;
    check(
        (1..=20_000).contains(&a.max_inflight),
        "--max-inflight: 1..=20000",
    )?;
    check(
        a.probe_rate >= 1
            && a.probe_seconds > 0.0
            && (a.probe_rate as f64 * a.probe_seconds) as u64 <= MAX_PROBES,
        "--probe-rate × --probe-seconds: at most 1000 probes",
    )?;
    check(a.spawn_samples <= 10_000, "--spawn-samples: at most 10000")?;
    check((1..=64).contains(&a.workers), "--workers: 1..=64")?;
    check(
        ["kafka-healing", "am-executor", "noop", "floor"].contains(&a.target.as_str()),
        "--target: kafka-healing, am-executor, noop or floor",
    )?;
    check(
        !a.is_peer() || a.peer_bin.is_some(),
        "--target am-executor needs --peer-bin",
    )?;
    check(
        a.payload == "fixture" || a.payload == "unique",
        "--payload: fixture or unique",
    )?;
    check(
        (1..=200_000).contains(&a.storm_alerts),
        "--storm-alerts: 1..=200000",
    )?;
    // 1,000 alerts of ~450 bytes stay under the server's 1 MiB body limit.
    check(
        (1..=1000).contains(&a.storm_batch),
        "--storm-batch: 1..=1000",
    )?;
    check(
        (1..=64).contains(&a.storm_connections),
        "--storm-connections: 1..=64",
    )?;
    check(
        a.storm_timeout > 0.0 && a.storm_timeout <= 600.0,
        "--storm-timeout: (0, 600]",
    )?;
    check(
        a.storm_probe_rate <= 10_000,
        "--storm-probe-rate: 0..=10000",
    )?;
    check(
        a.storm_probe_seconds > 0.0 && a.storm_probe_seconds <= 60.0,
        "--storm-probe-seconds: (0, 60]",
    )?;
    if !a.is_kh() {
        // Phase c needs kafka-healing's runbooks and journal (phase d is noted as not
        // applicable in the report).
        a.only = a.only.replace('c', "");
    }
    Ok(a)
}

fn unix_ns() -> u128 {
    kafka_healing::clock::now_ns()
}

/// `loadgen stamp DIR ID`: writes the Unix time in ns to DIR/ID.
fn stamp(args: &[String]) -> ExitCode {
    let now = unix_ns();
    let [dir, id] = args else {
        eprintln!("usage: loadgen stamp DIR ID");
        return ExitCode::from(2);
    };
    match std::fs::write(Path::new(dir).join(id), now.to_string()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen stamp: {dir}/{id}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- statistics

#[derive(Debug, Clone, Copy, Default)]
struct Dist {
    n: usize,
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Dist {
    /// Nearest-rank percentiles of `v` (sorted here).
    fn of(mut v: Vec<f64>) -> Dist {
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let at = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Dist {
            n,
            mean: v.iter().sum::<f64>() / n as f64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: v[n - 1],
        }
    }

    fn json(&self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({"n": self.n, "mean_ms": r(self.mean), "p50_ms": r(self.p50), "p90_ms": r(self.p90),
               "p99_ms": r(self.p99), "p999_ms": r(self.p999), "max_ms": r(self.max)})
    }
}

/// Outcome counts of a batch of requests.
#[derive(Debug, Default, Clone)]
struct Outcomes {
    ok: u64,
    non_2xx: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Outcomes {
    fn add(&mut self, r: &Result<u16, String>) {
        match r {
            Ok(s) if (200..300).contains(s) => self.ok += 1,
            Ok(s) => *self.non_2xx.entry(*s).or_default() += 1,
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.clone());
                }
            }
        }
    }

    fn merge(&mut self, o: Outcomes) {
        self.ok += o.ok;
        for (k, v) in o.non_2xx {
            *self.non_2xx.entry(k).or_default() += v;
        }
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn non_2xx_total(&self) -> u64 {
        self.non_2xx.values().sum()
    }

    fn json(&self) -> Value {
        let m: BTreeMap<String, u64> = self
            .non_2xx
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        json!({"ok_2xx": self.ok, "non_2xx": m, "transport_errors": self.errors,
               "first_error": self.first_error})
    }
}

// ---------------------------------------------------------------- the server

struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path, log: &str) -> Result<Server, String> {
        let log_file = std::fs::File::create(dir.join("server.log"))
            .map_err(|e| format!("cannot create {}/server.log: {e}", dir.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--log", log, "serve", "-c"])
            .arg(dir.join("config.yaml"))
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: only an async-signal-safe prctl(2) between fork and exec. The server is
        // killed if this generator dies, so nothing is left behind even on a panic.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Server::await_listening(child, dir)
    }

    /// Starts the no-op ceiling (`examples/noop_server.rs`) on 127.0.0.1:0 in `dir`, with
    /// `--durable` when `durable`.
    fn start_noop(bin: &Path, dir: &Path, durable: bool) -> Result<Server, String> {
        let log_file = std::fs::File::create(dir.join("server.log"))
            .map_err(|e| format!("cannot create {}/server.log: {e}", dir.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("127.0.0.1:0")
            .args(durable.then_some("--durable"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: as in `start`: only prctl(2) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Server::await_listening(child, dir)
    }

    /// Waits (up to 20 s) for the `listening on http://127.0.0.1:PORT` line that
    /// `kafka-healing serve` and the no-op server print first on stdout; stops `child` if it
    /// does not come.
    fn await_listening(mut child: Child, dir: &Path) -> Result<Server, String> {
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(20));
        let mut srv = Server {
            child,
            url: String::new(),
            dir: dir.to_path_buf(),
        };
        match line.ok().and_then(|l| {
            l.strip_prefix("listening on ")
                .map(|u| u.trim().to_string())
        }) {
            Some(url) if url.starts_with("http://127.0.0.1:") => {
                srv.url = url;
                Ok(srv)
            }
            other => {
                srv.stop();
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                Err(format!(
                    "the server did not start (first stdout line {other:?}); its log:\n{log}"
                ))
            }
        }
    }

    /// Starts prometheus-am-executor on a free 127.0.0.1 port with `amx.yml` from `dir`,
    /// and waits (up to 20 s) for its `/_health`.
    fn start_peer(bin: &Path, dir: &Path) -> Result<Server, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot pick a free port: {e}"))?
            .port();
        std::fs::write(
            dir.join("amx.yml"),
            format!(
                "listen_address: \"127.0.0.1:{port}\"\nverbose: false\ncommands:\n  - cmd: /bin/true\n"
            ),
        )
        .map_err(|e| format!("cannot write amx.yml: {e}"))?;
        let log_file = std::fs::File::create(dir.join("server.log"))
            .map_err(|e| format!("cannot create {}/server.log: {e}", dir.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(dir.join("amx.yml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // SAFETY: as in `start`: only prctl(2) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut srv = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /_health HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut head = String::new();
                let _ = BufReader::new(s).read_line(&mut head);
                if head.contains(" 200 ") {
                    return Ok(srv);
                }
            }
            if let Ok(Some(st)) = srv.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                return Err(format!("am-executor exited ({st}); its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        srv.stop();
        Err("am-executor did not answer /_health within 20 s".into())
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, up to 10 s to drain, then SIGKILL.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("server did not stop within 10 s of SIGTERM: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("state/journal.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_scratch(dir: &Path, helper: &Path, no_admission: bool) -> Result<(), String> {
    let admission = if no_admission {
        "  admission_wait_ms: 0\n"
    } else {
        ""
    };
    let w = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    std::fs::create_dir_all(dir.join("stamps")).map_err(|e| format!("mkdir stamps: {e}"))?;
    w(
        "config.yaml",
        &format!(
            "cluster:
  name: prod-east
  kafka_brokers:
    - {{ node_id: kafka-1, host: kafka-1.example.com, port: 9092, jmx_port: 9404 }}
    - {{ node_id: kafka-2, host: kafka-2.example.com, port: 9092, jmx_port: 9404 }}
    - {{ node_id: kafka-3, host: kafka-3.example.com, port: 9092, jmx_port: 9404 }}
server:
  listen: 127.0.0.1:0
  auth: {{ bearer_token: {TOKEN} }}
{admission}
rules: [rules.yaml]
state: {{ path: state/journal.db }}
recovery: {{ cooldown_seconds: 0, max_attempts: 10, max_concurrent_diagnostics: 64 }}
# 64 runs at once at most: the bound am-executor has with 64 clients (the default is 8).
# No self-scrape or socket probe of the (fictitious) brokers: all traffic stays on loopback.
monitoring: {{ methods: [] }}
"
        ),
    )?;
    w(
        "rules.yaml",
        &format!(
            r#"rules:
  # Phases a and b: the fixture's KafkaBrokerDown alerts, a cheap diagnostic step.
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: noop
  # Phase c: one work key per alert (bench_id is a param), non-disruptive, so nothing waits.
  - name: bench-probe
    matchers: ['alertname="KafkaBenchProbe"']
    runbook: stamp
    params:
      id: {{ value: "{{{{alert.labels.bench_id}}}}", pattern: "[0-9]{{1,12}}" }}
  # --payload unique: one alert per request, each its own work key, one /bin/true each.
  - name: bench-true
    matchers: ['alertname="KafkaBenchTrue"']
    runbook: bin-true
    params:
      id: {{ value: "{{{{alert.labels.bench_id}}}}", pattern: "[0-9]{{1,12}}" }}
runbooks:
  bin-true:
    disruptive: false
    steps:
      - {{ name: "true", exec: ["/bin/true"] }}
  noop:
    disruptive: false
    steps:
      - {{ name: noop, exec: ["true"] }}
  stamp:
    disruptive: false
    steps:
      - name: stamp
        exec: [{helper}, stamp, {stamps}, "{{{{params.id}}}}"]
"#,
            helper = q(helper),
            stamps = q(&dir.join("stamps")),
        ),
    )
}

// ---------------------------------------------------------------- HTTP

fn client(pool: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> Result<u16, String> {
    let resp = c
        .post(url)
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    // Read the body so the connection goes back to the pool.
    resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// `kafka_healing_journal_write_seconds` (sum, count) and the rejected counters.
async fn scrape(c: &reqwest::Client, base: &str) -> (f64, f64, BTreeMap<String, f64>) {
    let text = match c
        .get(format!("{base}/metrics"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let (mut sum, mut count) = (0.0, 0.0);
    let mut rejected = BTreeMap::new();
    for l in text.lines() {
        let mut parts = l.rsplitn(2, ' ');
        let (Some(v), Some(k)) = (parts.next(), parts.next()) else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        if k == "kafka_healing_journal_write_seconds_sum" {
            sum = v;
        } else if k == "kafka_healing_journal_write_seconds_count" {
            count = v;
        } else if k.starts_with("kafka_healing_webhook_rejected_total") {
            rejected.insert(k.to_string(), v);
        }
    }
    (sum, count, rejected)
}

/// kafka-healing's executions: (finished with any outcome, queued or running, finished after
/// running their steps), from its `/metrics`. The first counts decisions journaled as
/// `skipped` (e.g. queue full) too; the last does not (nor `cancelled`): those are the
/// `/bin/true` runs.
async fn exec_counts(c: &reqwest::Client, base: &str) -> (f64, f64, f64) {
    let text = match c
        .get(format!("{base}/metrics"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let (mut done, mut inflight) = (0.0, 0.0);
    for l in text.lines() {
        let Some((k, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        if k.starts_with("kafka_healing_executions_total") {
            done += v;
        } else if k.starts_with("kafka_healing_executions_in_flight") {
            inflight += v;
        }
    }
    let not_run: f64 = executions_by_outcome(&text)
        .iter()
        .filter(|(o, _)| *o == "skipped" || *o == "cancelled")
        .map(|(_, n)| n)
        .sum();
    (done, inflight, done - not_run)
}

// ---------------------------------------------------------------- /proc

/// Per thread name of `pid` (threads named alike are summed): (CPU seconds, seconds spent
/// runnable but waiting for a CPU), from /proc/PID/task/*/schedstat.
fn thread_cpu(pid: i32) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        let f: Vec<f64> = sched
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 2 {
            let e = out.entry(name).or_insert((0.0, 0.0));
            e.0 += f[0] / 1e9;
            e.1 += f[1] / 1e9;
        }
    }
    out
}

/// Both figures of [`thread_cpu`] over the whole process, summed over its threads.
fn process_cpu(pid: i32) -> (f64, f64) {
    thread_cpu(pid)
        .values()
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn diff_cpu(
    a: &BTreeMap<String, (f64, f64)>,
    b: &BTreeMap<String, (f64, f64)>,
    wall: f64,
) -> Value {
    let mut m = serde_json::Map::new();
    let pct = |x: f64| (x / wall * 1000.0).round() / 10.0;
    for (k, v) in b {
        let (c0, w0) = a.get(k).copied().unwrap_or((0.0, 0.0));
        m.insert(
            k.clone(),
            json!({"cpu_pct": pct(v.0 - c0), "runq_wait_pct": pct(v.1 - w0)}),
        );
    }
    Value::Object(m)
}

/// Machine-wide (busy, total) jiffies from /proc/stat, to see what else ran meanwhile.
fn machine_ticks() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// The 1-minute load average (as `uptime` prints it).
fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(-1.0)
}

fn busy_pct(a: (f64, f64), b: (f64, f64)) -> f64 {
    let total = b.1 - a.1;
    if total <= 0.0 {
        return 0.0;
    }
    ((b.0 - a.0) / total * 1000.0).round() / 10.0
}

/// CPU seconds of `pid` from /proc/PID/stat: (utime + stime, cutime + cstime), the latter
/// being its reaped children (the steps / commands it ran). USER_HZ is 100 on Linux.
fn proc_cpu_s(pid: i32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let f: Vec<f64> = s
        .rsplit_once(')')
        .map(|(_, t)| t)
        .unwrap_or("")
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (g(11) + g(12), g(13) + g(14))
}

fn cpu_json(a: (f64, f64), b: (f64, f64), requests: u64) -> Value {
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    let own = b.0 - a.0;
    let children = b.1 - a.1;
    json!({"own_s": r(own), "children_s": r(children),
           "us_per_request_own": if requests > 0 { (own / requests as f64 * 1e7).round() / 10.0 } else { 0.0 },
           "us_per_request_total": if requests > 0 { ((own + children) / requests as f64 * 1e7).round() / 10.0 } else { 0.0 }})
}

fn rss_kb(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn journal_alerts(path: &Path) -> Result<u64, String> {
    Journal::open_read_only(path)
        .and_then(|j| j.alert_count())
        .map_err(|e| {
            format!(
                "cannot count the journal's alerts in {}: {e}",
                path.display()
            )
        })
}

/// fsync cost of this disk: 4 KiB write + fdatasync, `n` times (what a commit at least costs).
fn fsync_probe(dir: &Path, n: usize) -> Result<Dist, String> {
    let p = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&p).map_err(|e| format!("fsync probe: {e}"))?;
    let buf = vec![7u8; 4096];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).map_err(|e| format!("fsync probe: {e}"))?;
        f.sync_data().map_err(|e| format!("fsync probe: {e}"))?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_file(&p);
    Ok(Dist::of(v))
}

// ---------------------------------------------------------------- phases

/// Phase a: closed loop, `conns` clients, until `secs` or `max` requests.
async fn throughput(
    c: &reqwest::Client,
    url: &str,
    unique: bool,
    conns: usize,
    secs: f64,
    max: u64,
) -> (Outcomes, Dist, f64) {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (c, url, issued) = (c.clone(), url.to_string(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut o = Outcomes::default();
            let mut lat = Vec::new();
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                let t = Instant::now();
                let r = post(&c, &url, make_body(unique)).await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                o.add(&r);
            }
            (o, lat)
        }));
    }
    let mut all = Outcomes::default();
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok((o, l)) => {
                all.merge(o);
                lat.extend(l);
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert(format!("client task: {e}"));
            }
        }
    }
    (all, Dist::of(lat), start.elapsed().as_secs_f64())
}

struct Shot {
    idx: u64,
    /// Unix ns just before the request was handed to the client.
    sent_unix_ns: u128,
    /// From the scheduled send time to the answer (coordinated-omission free).
    from_schedule_ms: f64,
    /// From the actual send to the answer.
    from_send_ms: f64,
    /// How late the dispatcher sent it.
    send_lag_ms: f64,
    result: Result<u16, String>,
}

struct OpenLoop {
    shots: Vec<Shot>,
    /// Not sent because `max_inflight` requests were outstanding (the server fell behind).
    skipped: u64,
    /// From the first scheduled send to the last answer.
    wall: f64,
    /// From the first to the last actual send.
    send_span: f64,
}

/// Open loop: request `i` is due at `i / rate` s; latency counts from that time.
async fn open_loop(
    c: &reqwest::Client,
    url: &str,
    rate: u64,
    secs: f64,
    max_inflight: usize,
    body: impl Fn(u64) -> reqwest::Body,
) -> OpenLoop {
    let n = ((rate as f64) * secs).round().max(1.0) as u64;
    let interval_ns = 1e9 / rate as f64;
    let inflight = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n as usize);
    let mut skipped = 0;
    let mut last_send = t0;
    for i in 0..n {
        let due = t0 + Duration::from_nanos((i as f64 * interval_ns) as u64);
        tokio::time::sleep_until(due.into()).await;
        if inflight.load(Ordering::Relaxed) >= max_inflight {
            skipped += 1;
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let (c, url, inflight, b) = (c.clone(), url.to_string(), inflight.clone(), body(i));
        last_send = Instant::now();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let sent_unix_ns = unix_ns();
            let result = post(&c, &url, b).await;
            let done = Instant::now();
            inflight.fetch_sub(1, Ordering::Relaxed);
            Shot {
                idx: i,
                sent_unix_ns,
                from_schedule_ms: done.duration_since(due).as_secs_f64() * 1e3,
                from_send_ms: done.duration_since(sent).as_secs_f64() * 1e3,
                send_lag_ms: sent.saturating_duration_since(due).as_secs_f64() * 1e3,
                result,
            }
        }));
    }
    let mut shots = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(s) = t.await {
            shots.push(s);
        }
    }
    OpenLoop {
        shots,
        skipped,
        wall: t0.elapsed().as_secs_f64(),
        send_span: last_send.saturating_duration_since(t0).as_secs_f64(),
    }
}

fn probe_body(id: u64) -> String {
    alert_body(id, "KafkaBenchProbe")
}

/// One alert named `KafkaBenchTrue` with `bench_id` = `id` (`--payload unique`).
fn unique_body(id: u64) -> String {
    alert_body(id, "KafkaBenchTrue")
}

fn alert_body(id: u64, alertname: &str) -> String {
    let node = id % 3 + 1;
    json!({
        "receiver": "kafka-healing",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "bench_id": id.to_string(),
                       "cluster": "prod-east", "instance": format!("kafka-{node}.example.com:9404"),
                       "job": "kafka", "severity": "warning"},
            "annotations": {"summary": format!("benchmark probe {id}"),
                            "runbook_url": "https://runbooks.example.com/kafka/bench"},
            "startsAt": "2026-11-27T23:33:11Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=bench",
        }],
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "cluster": "prod-east"},
        "commonAnnotations": {},
        "externalURL": "http://vm:9393",
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0
    })
    .to_string()
}

/// `count` alerts named `KafkaBenchTrue` with `bench_id` = `first`, `first + 1`, ... in one
/// Alertmanager body (phase d).
fn storm_body(first: u64, count: u64) -> String {
    let alerts: Vec<Value> = (first..first + count)
        .map(|id| {
            let node = id % 3 + 1;
            json!({
                "status": "firing",
                "labels": {"alertname": "KafkaBenchTrue", "bench_id": id.to_string(),
                           "cluster": "prod-east", "instance": format!("kafka-{node}.example.com:9404"),
                           "job": "kafka", "severity": "warning"},
                "annotations": {"summary": format!("benchmark storm {id}")},
                "startsAt": "2026-11-27T23:33:11Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=bench",
            })
        })
        .collect();
    json!({
        "receiver": "kafka-healing",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "KafkaBenchTrue"},
        "commonLabels": {"alertname": "KafkaBenchTrue", "cluster": "prod-east"},
        "commonAnnotations": {},
        "externalURL": "http://vm:9393",
        "version": "4",
        "groupKey": "{}:{alertname=\"KafkaBenchTrue\"}",
        "truncatedAlerts": 0
    })
    .to_string()
}

/// The server's `/metrics` text (an error when it cannot be read).
async fn metrics_text(c: &reqwest::Client, base: &str) -> Result<String, String> {
    let r = c
        .get(format!("{base}/metrics"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET /metrics: {}", r.status()));
    }
    r.text()
        .await
        .map_err(|e| format!("GET /metrics body: {e}"))
}

/// The sum of the samples of `name` (with or without labels), or None when it is absent.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines() {
        let Some((k, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let matches = k == name
            || k.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'));
        if matches && let Ok(v) = v.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `kafka_healing_executions_total` by `outcome` label (summed over rules).
fn executions_by_outcome(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("kafka_healing_executions_total{") else {
            continue;
        };
        let Some((labels, v)) = rest.rsplit_once(' ') else {
            continue;
        };
        let outcome = labels
            .split_once("outcome=\"")
            .and_then(|(_, t)| t.split_once('"'))
            .map(|(o, _)| o.to_string())
            .unwrap_or_else(|| "?".into());
        *m.entry(outcome).or_default() += v.parse::<f64>().unwrap_or(0.0);
    }
    m
}

const BACKLOG: &str = "kafka_healing_decision_backlog";

/// Phase d: posts the storm, then waits (bounded) until the decision backlog reads 0.
/// Returns the report, the alerts acknowledged, the request outcomes, and the alerts of
/// requests that got no answer.
async fn decision_storm(
    args: &Args,
    base: &str,
    url: &str,
    jpath: &Path,
    pid: i32,
) -> Result<(Value, u64, Outcomes, u64), String> {
    let (total, batch) = (args.storm_alerts, args.storm_batch);
    let requests = total.div_ceil(batch);
    // Bodies are built before the clock starts.
    let first_id = NEXT_ID.fetch_add(total, Ordering::Relaxed);
    let bodies: Arc<Vec<(u64, String)>> = Arc::new(
        (0..requests)
            .map(|i| {
                let lo = i * batch;
                let n = batch.min(total - lo);
                (n, storm_body(first_id + lo, n))
            })
            .collect(),
    );
    let body_bytes = bodies.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    eprintln!(
        "d: decision storm: {total} distinct alerts in {requests} requests of {batch} ({} KB each), {} connections",
        body_bytes / 1024,
        args.storm_connections
    );
    // A request of 500 alerts is one journal commit, but may wait behind the engine's own
    // writes: a longer timeout than the other phases.
    let c = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.storm_connections + 1)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    // A ceiling server decides nothing: no backlog to read, and its "journal" is what it
    // acknowledged.
    let decides = args.is_kh();
    let backlog0 = if decides {
        let text0 = metrics_text(&c, base).await?;
        metric_sum(&text0, BACKLOG).ok_or_else(|| {
            format!("phase d needs the {BACKLOG} gauge, which this server's /metrics does not have")
        })?
    } else {
        0.0
    };
    let journaled0 = if decides { journal_alerts(jpath)? } else { 0 };
    let (rss0, _) = rss_kb(pid);
    let pc0 = proc_cpu_s(pid);
    let cpu0 = thread_cpu(pid);
    let m0 = machine_ticks();
    let load0 = load_avg();

    let timeout = Duration::from_secs_f64(args.storm_timeout);
    let start = Instant::now();
    let deadline = start + timeout;
    let posted = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The ACK probe: one distinct alert per request at a fixed rate, scheduled from the
    // storm's first request for `storm_probe_seconds` (its alerts keep the backlog above 0
    // while it sends, so the storm's end is read after it), or until the poller is done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe_client = client(64)?;
    let probe = (args.storm_probe_rate > 0).then(|| {
        let (c, url, stop) = (probe_client, url.to_string(), stop.clone());
        let interval_ns = 1e9 / args.storm_probe_rate as f64;
        let until = start + Duration::from_secs_f64(args.storm_probe_seconds);
        tokio::spawn(async move {
            let mut shots = Vec::new();
            for i in 0u64.. {
                let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                if stop.load(Ordering::SeqCst) || due >= until.min(deadline) {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let (c, url) = (c.clone(), url.clone());
                let body = unique_body(NEXT_ID.fetch_add(1, Ordering::Relaxed));
                shots.push(tokio::spawn(async move {
                    let r = post(&c, &url, body).await;
                    (r, due.elapsed().as_secs_f64() * 1e3)
                }));
            }
            let (mut o, mut lat) = (Outcomes::default(), Vec::new());
            for s in shots {
                if let Ok((r, ms)) = s.await {
                    o.add(&r);
                    lat.push(ms);
                }
            }
            (o, lat)
        })
    });

    // The poller: from the first request until the backlog reads 0 after the last 200. A
    // ceiling server has no backlog: its "poller" waits for the last 200 and the probe's
    // end, so the probe runs its whole time.
    let probe_end = start + Duration::from_secs_f64(args.storm_probe_seconds);
    let poller = if !decides {
        let posted = posted.clone();
        tokio::spawn(async move {
            loop {
                let now = Instant::now();
                if (posted.load(Ordering::SeqCst) && now >= probe_end) || now >= deadline {
                    return (Some(now.duration_since(start)), 0.0, 0.0, 0, 0, Vec::new());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    } else {
        let (c, base, posted) = (c.clone(), base.to_string(), posted.clone());
        tokio::spawn(async move {
            let (mut max, mut polls, mut failed, mut last) = (backlog0, 0u64, 0u64, backlog0);
            let mut trace = Vec::new();
            let mut next_trace = start;
            loop {
                let after_posts = posted.load(Ordering::SeqCst);
                let v = match metrics_text(&c, &base).await {
                    Ok(t) => metric_sum(&t, BACKLOG),
                    Err(_) => None,
                };
                let now = Instant::now();
                polls += 1;
                match v {
                    Some(v) => {
                        max = max.max(v);
                        last = v;
                        if now >= next_trace {
                            trace.push(json!([now.duration_since(start).as_millis() as u64, v]));
                            next_trace = now + Duration::from_millis(250);
                        }
                        if after_posts && v == 0.0 {
                            return (
                                Some(now.duration_since(start)),
                                max,
                                last,
                                polls,
                                failed,
                                trace,
                            );
                        }
                    }
                    None => failed += 1,
                }
                if now >= deadline {
                    return (None, max, last, polls, failed, trace);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The posters: each takes the next request; a 503 is retried after 50 ms (bounded by the
    // deadline); anything else is final.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.storm_connections {
        let (c, url, bodies, next) = (c.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut o, mut acked, mut unsure, mut retries, mut gave_up) =
                (Outcomes::default(), 0u64, 0u64, 0u64, 0u64);
            let mut last_ack: Option<Instant> = None;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((n, body)) = bodies.get(i) else {
                    break;
                };
                loop {
                    if Instant::now() >= deadline {
                        gave_up += 1;
                        break;
                    }
                    let t = Instant::now();
                    let r = post(&c, &url, body.clone()).await;
                    if r == Ok(503) {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    o.add(&r);
                    match r {
                        Ok(200..=299) => {
                            acked += n;
                            last_ack = Some(Instant::now());
                        }
                        Err(_) => unsure += n,
                        Ok(_) => {}
                    }
                    break;
                }
            }
            (o, acked, unsure, retries, gave_up, last_ack, lat)
        }));
    }
    let (mut o, mut acked, mut unsure, mut retries, mut gave_up) =
        (Outcomes::default(), 0u64, 0u64, 0u64, 0u64);
    let mut last_ack: Option<Instant> = None;
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok((o1, a1, u1, r1, g1, l1, lat1)) => {
                o.merge(o1);
                acked += a1;
                unsure += u1;
                retries += r1;
                gave_up += g1;
                last_ack = last_ack.max(l1);
                lat.extend(lat1);
            }
            Err(e) => {
                o.errors += 1;
                o.first_error.get_or_insert(format!("storm task: {e}"));
            }
        }
    }
    let post_s = last_ack.map(|t| t.duration_since(start).as_secs_f64());
    posted.store(true, Ordering::SeqCst);
    let (decided, backlog_max, backlog_last, polls, failed_polls, trace) = poller
        .await
        .map_err(|e| format!("phase d: the backlog poller failed: {e}"))?;
    stop.store(true, Ordering::SeqCst);
    let probe = match probe {
        Some(p) => Some(
            p.await
                .map_err(|e| format!("phase d: the ACK probe failed: {e}"))?,
        ),
        None => None,
    };
    let probe_acked = probe.as_ref().map_or(0, |(o, _)| o.ok);
    let probe_unsure = probe.as_ref().map_or(0, |(o, _)| o.errors);
    // The caller's totals (and its zero-loss check) count the probe's alerts too.
    let mut all = o.clone();
    if let Some((po, _)) = &probe {
        all.merge(po.clone());
    }
    let wall = start.elapsed().as_secs_f64();
    let pc1 = proc_cpu_s(pid);
    let cpu1 = thread_cpu(pid);
    let m1 = machine_ticks();
    let (rss1, hwm1) = rss_kb(pid);
    let text1 = metrics_text(&c, base).await.unwrap_or_default();
    let journaled = if decides {
        journal_alerts(jpath)? - journaled0
    } else {
        acked + probe_acked
    };
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let decided_s = decided.filter(|_| decides).map(|d| d.as_secs_f64());
    // Decided by the end: everything acknowledged, less what was still waiting.
    let decided_alerts = (acked as f64 - backlog_last).max(0.0);
    let d = json!({
        "decides": decides,
        "alerts": total,
        "requests": requests,
        "alerts_per_request": batch,
        "request_bytes_max": body_bytes,
        "connections": args.storm_connections,
        "timeout_s": args.storm_timeout,
        "backlog_at_start": backlog0,
        "outcomes": o.json(),
        "retries_503": retries,
        "requests_given_up_at_timeout": gave_up,
        "alerts_acknowledged": acked,
        "alerts_journaled": journaled,
        "probe_alerts_acknowledged": probe_acked,
        // The probe's alerts are journaled too (one per request).
        "zero_loss": journaled >= acked + probe_acked
            && journaled <= acked + unsure + probe_acked + probe_unsure,
        "ack_probe": probe.map(|(o, lat)| json!({
            "rate_target": args.storm_probe_rate,
            "seconds": args.storm_probe_seconds,
            "requests": lat.len(),
            "outcomes": o.json(),
            "latency_from_schedule": Dist::of(lat).json(),
        })),
        "post_s": post_s.map(r3),
        "request_latency": Dist::of(lat).json(),
        "decided_s": decided_s.map(r3),
        "decided_after_last_ack_s": match (decided_s, post_s) {
            (Some(d), Some(p)) => json!(r3(d - p)),
            _ => Value::Null,
        },
        "timed_out": decided.is_none(),
        "decisions_per_s": decided_s.filter(|d| *d > 0.0).map(|d| (acked as f64 / d).round()),
        "decided_alerts_at_end": decided_alerts,
        "decisions_per_s_lower_bound": (decided_alerts / wall.max(1e-9)).round(),
        "backlog_max_seen": backlog_max,
        "backlog_at_end": backlog_last,
        "backlog_polls": polls,
        "backlog_polls_failed": failed_polls,
        "backlog_trace_ms": trace,
        "executions_by_outcome": executions_by_outcome(&text1),
        "executions_in_flight": metric_sum(&text1, "kafka_healing_executions_in_flight"),
        "webhook_rejected_all_reasons": metric_sum(&text1, "kafka_healing_webhook_rejected_total"),
        "server_rss_kb_before": rss0,
        "server_rss_kb_at_end": rss1,
        "server_peak_rss_kb": hwm1,
        // Per alert here (`us_per_request_*` = µs per alert).
        "server_cpu": cpu_json(pc0, pc1, acked),
        "server_threads_cpu": diff_cpu(&cpu0, &cpu1, wall),
        "machine_busy_pct_all_cores": busy_pct(m0, m1),
        "uptime_load_before": load0,
        "uptime_load": load_avg(),
    });
    match decided_s {
        None if !decides => eprintln!(
            "d: {acked} alerts posted in {:.2} s ({retries} retries after 503); nothing to decide",
            post_s.unwrap_or(f64::NAN)
        ),
        Some(t) => eprintln!(
            "d: {acked} alerts posted in {:.2} s ({retries} retries after 503), all decided {t:.2} s after the first request: {:.0} decisions/s",
            post_s.unwrap_or(f64::NAN),
            acked as f64 / t.max(1e-9)
        ),
        None => eprintln!(
            "d: TIMEOUT: {backlog_last} alerts still waiting for a decision {:.0} s after the first request",
            args.storm_timeout
        ),
    }
    Ok((d, acked + probe_acked, all, unsure + probe_unsure))
}

/// Time from just before spawning the helper (as the server spawns steps) to its stamp.
async fn spawn_cost(helper: &Path, dir: &Path, n: usize) -> Result<Dist, String> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("spawn-{i}");
        let before = unix_ns();
        let mut child = tokio::process::Command::new(helper)
            .arg("stamp")
            .arg(dir)
            .arg(&id)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", helper.display()))?;
        child
            .wait()
            .await
            .map_err(|e| format!("wait for the helper: {e}"))?;
        let at: u128 = std::fs::read_to_string(dir.join(&id))
            .map_err(|e| format!("helper stamp {id}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("helper stamp {id}: {e}"))?;
        v.push(at.saturating_sub(before) as f64 / 1e6);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Dist::of(v))
}

// ---------------------------------------------------------------- main

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("stamp") {
        return stamp(&argv[2..]);
    }
    let args = match parse_args(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen: FAILED: some alerts acknowledged with 200 are not in the journal");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; Ok(false) when a loss check failed.
fn run(args: &Args) -> Result<bool, String> {
    if !args.bin.is_file() {
        return Err(format!(
            "no server binary at {} (run `cargo build --release` first, or pass --bin)",
            args.bin.display()
        ));
    }
    // The server runs in the scratch directory: the binary's path must not be relative.
    let bin =
        std::fs::canonicalize(&args.bin).map_err(|e| format!("{}: {e}", args.bin.display()))?;
    let helper = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let scratch = tempfile::Builder::new()
        .prefix("kh-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let dir = scratch.path().to_path_buf();
    write_scratch(&dir, &helper, args.storm_no_admission)?;
    eprintln!("scratch directory: {}", dir.display());

    let fsync = fsync_probe(&dir, 200)?;
    let mut server = match &args.peer_bin {
        Some(peer) if args.is_peer() => {
            let peer =
                std::fs::canonicalize(peer).map_err(|e| format!("{}: {e}", peer.display()))?;
            Server::start_peer(&peer, &dir)?
        }
        _ if args.is_noop() => {
            let noop = match &args.noop_bin {
                Some(p) => p.clone(),
                None => helper.with_file_name("noop_server"),
            };
            let noop = std::fs::canonicalize(&noop).map_err(|e| {
                format!(
                    "{}: {e} (build it: cargo build --release --locked --example noop_server, \
                     or pass --noop-bin)",
                    noop.display()
                )
            })?;
            Server::start_noop(&noop, &dir, args.target == "floor")?
        }
        _ => Server::start(&bin, &dir, &args.server_log)?,
    };
    if let Some(p) = &args.pid_file {
        std::fs::write(p, server.pid().to_string())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    eprintln!("server pid {} at {}", server.pid(), server.url);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = rt.block_on(phases(args, &server, &helper, &dir, fsync));
    // Work triggered by the requests may still run (kafka-healing answers before it
    // remediates): wait, bounded, until the server is idle, then take its whole CPU time.
    let drain_start = Instant::now();
    let mut last = proc_cpu_s(server.pid());
    while drain_start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let now = proc_cpu_s(server.pid());
        let busy = (now.0 + now.1) - (last.0 + last.1);
        last = now;
        if busy < 0.03 {
            break;
        }
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let (rss, hwm) = rss_kb(server.pid());
    server.stop();
    drop(rt);
    let mut report = result?;
    report["server_rss_kb_at_end"] = json!(rss);
    report["server_peak_rss_kb"] = json!(hwm);
    report["server_cpu_whole_run"] = json!({"own_s": last.0, "children_s": last.1,
        "idle_wait_after_last_phase_s": (drain_s * 10.0).round() / 10.0});
    report["target"] = json!(args.target);
    report["payload"] = json!(args.payload);
    report["server_log"] = scan_log(&dir.join("server.log"));
    let ok = !args.is_kh() || report["zero_loss"].as_bool().unwrap_or(false);

    print_tables(&report);
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    println!("\nJSON:\n{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        let log_copy = out.with_extension("server.log");
        let _ = std::fs::copy(dir.join("server.log"), &log_copy);
        eprintln!(
            "results in {}, server log in {}",
            out.display(),
            log_copy.display()
        );
    }
    if args.keep {
        let kept = scratch.keep();
        eprintln!("kept the scratch directory {}", kept.display());
    }
    Ok(ok)
}

/// WARN and ERROR lines of the server's log: counts and a few distinct examples.
fn scan_log(path: &Path) -> Value {
    let Ok(f) = std::fs::File::open(path) else {
        return json!({"error": "no server log"});
    };
    let (mut lines, mut bytes, mut warn, mut error) = (0u64, 0u64, 0u64, 0u64);
    let mut examples: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for l in BufReader::new(f).lines().map_while(Result::ok) {
        lines += 1;
        bytes += l.len() as u64 + 1;
        let level = if l.contains("ERROR") {
            error += 1;
            "ERROR"
        } else if l.contains("WARN") {
            warn += 1;
            "WARN"
        } else {
            continue;
        };
        // Group by the text after the level, without numbers (ids, times).
        let tail = l.split_once(level).map(|(_, t)| t).unwrap_or(&l);
        let key: String = tail
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(120)
            .collect();
        let e = examples.entry(key).or_insert((0, l.clone()));
        e.0 += 1;
    }
    let ex: Vec<Value> = examples
        .into_values()
        .take(10)
        .map(|(n, l)| json!({"count": n, "example": l.chars().take(400).collect::<String>()}))
        .collect();
    json!({"lines": lines, "bytes": bytes, "warn": warn, "error": error, "distinct": ex})
}

async fn phases(
    args: &Args,
    server: &Server,
    helper: &Path,
    dir: &Path,
    fsync: Dist,
) -> Result<Value, String> {
    let base = server.url.clone();
    let url = format!("{base}/api/v1/alerts");
    let jpath = server.journal_path();
    let pid = server.pid();
    let kh = args.is_kh();
    let per_req = args.alerts_per_request();
    let url = if args.is_peer() {
        format!("{base}/")
    } else {
        url
    };
    // am-executor and the no-op server keep no journal: their "journal count" is what they
    // acknowledged.
    let acked_so_far = AtomicU64::new(0);
    let journal_alerts = |p: &Path| {
        if kh {
            journal_alerts(p)
        } else {
            Ok(acked_so_far.load(Ordering::Relaxed))
        }
    };
    let c = client(
        args.connections
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(args.max_inflight),
    )?;
    let mut report = json!({
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
                .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, m)| m.trim().to_string())),
        },
        "target": args.target,
        "payload": args.payload,
        "payload_bytes": if args.unique() { unique_body(0).len() } else { FIXTURE.len() },
        "alerts_per_request": per_req,
        "generator_worker_threads": args.workers,
        "server_log_level": args.server_log,
        "fsync_4k": fsync.json(),
    });
    let mut total = Outcomes::default();
    let mut alerts_ok = 0u64;
    // Alerts of requests that got no answer (they may or may not be journaled).
    let mut alerts_unsure = 0u64;

    // d. Decision storm, first, on a fresh server.
    if args.only.contains('d') {
        if kh || (args.is_noop() && args.storm_probe_rate > 0) {
            let (d, ok, o, unsure) = decision_storm(args, &base, &url, &jpath, pid).await?;
            report["decision_storm"] = d;
            alerts_ok += ok;
            alerts_unsure += unsure;
            total.merge(o);
        } else {
            let why = if args.is_peer() {
                "am-executor runs its command before it answers: no decision step, no backlog"
            } else {
                "the no-op server answers without deciding anything (with --storm-probe-rate, \
                 the storm is posted and only the probe is measured)"
            };
            eprintln!("d: not applicable to {}: {why}", args.target);
            report["decision_storm"] = json!({"not_applicable": why});
        }
    }

    // Warm-up: connections, page cache, the journal's first pages.
    if args.only.contains(['a', 'b', 'c']) {
        let warm = open_loop(&c, &url, 200, 1.0, args.max_inflight, |_| args.body()).await;
        for s in &warm.shots {
            total.add(&s.result);
        }
        alerts_ok += per_req
            * warm
                .shots
                .iter()
                .filter(|s| matches!(s.result, Ok(200..=299)))
                .count() as u64;
    }

    // b. ACK latency at fixed rates (open loop).
    if args.only.contains('b') {
        let mut rows = Vec::new();
        for &rate in &args.rates {
            eprintln!("b: open loop at {rate} req/s for {} s", args.rate_seconds);
            let cpu0 = thread_cpu(pid);
            let m0 = machine_ticks();
            let pc0 = proc_cpu_s(pid);
            let r = open_loop(&c, &url, rate, args.rate_seconds, args.max_inflight, |_| {
                args.body()
            })
            .await;
            let cpu1 = thread_cpu(pid);
            let pc1 = proc_cpu_s(pid);
            let mut o = Outcomes::default();
            for s in &r.shots {
                o.add(&s.result);
            }
            let answered = r.shots.len() as u64;
            let achieved = answered as f64 / r.send_span.max(1e-9);
            let sched = Dist::of(r.shots.iter().map(|s| s.from_schedule_ms).collect());
            let sent = Dist::of(r.shots.iter().map(|s| s.from_send_ms).collect());
            let lag = Dist::of(r.shots.iter().map(|s| s.send_lag_ms).collect());
            let kept_up = r.skipped == 0
                && o.ok == answered
                && achieved >= rate as f64 * 0.95
                && r.wall <= args.rate_seconds + 1.0;
            alerts_ok += per_req * o.ok;
            rows.push(json!({
                "server_cpu": cpu_json(pc0, pc1, answered),
                "uptime_load": load_avg(),
                "rate_target": rate,
                "rate_sent": (achieved * 10.0).round() / 10.0,
                "requests": answered + r.skipped,
                "skipped_backlog": r.skipped,
                "kept_up": kept_up,
                "outcomes": o.json(),
                "latency_from_schedule": sched.json(),
                "latency_from_send": sent.json(),
                "dispatcher_lag": lag.json(),
                "server_threads_cpu": diff_cpu(&cpu0, &cpu1, r.wall),
                "machine_busy_pct_all_cores": busy_pct(m0, machine_ticks()),
            }));
            total.merge(o);
        }
        report["ack_latency"] = json!(rows);
    }

    // a. Max journaled throughput (closed loop).
    if args.only.contains('a') {
        let mut runs = Vec::new();
        for &conns in &args.connections {
            eprintln!(
                "a: {} connections, {} s or {} requests",
                conns, args.duration, args.max_requests
            );
            acked_so_far.store(0, Ordering::Relaxed);
            let before = journal_alerts(&jpath)?;
            let m0 = scrape(&c, &base).await;
            let e0 = exec_counts(&c, &base).await;
            let pc0 = proc_cpu_s(pid);
            let cpu0 = thread_cpu(pid);
            let mt0 = machine_ticks();
            let me0 = process_cpu(std::process::id() as i32);
            let (o, lat, wall) = throughput(
                &c,
                &url,
                args.unique(),
                conns,
                args.duration,
                args.max_requests,
            )
            .await;
            let cpu1 = thread_cpu(pid);
            let pc1 = proc_cpu_s(pid);
            acked_so_far.store(per_req * o.ok, Ordering::Relaxed);
            let mt1 = machine_ticks();
            let me1 = process_cpu(std::process::id() as i32);
            let m1 = scrape(&c, &base).await;
            let e1 = exec_counts(&c, &base).await;
            // am-executor runs the command before it answers: one per 2xx request; the no-op
            // server runs nothing. kafka-healing: executions finished with any outcome
            // (including decisions journaled `skipped`), and those that ran their step.
            let (executed, ran) = if kh {
                (e1.0 - e0.0, e1.2 - e0.2)
            } else if args.is_peer() {
                (o.ok as f64, o.ok as f64)
            } else {
                (0.0, 0.0)
            };
            let after = journal_alerts(&jpath)?;
            let journaled = after - before;
            let expected = per_req * o.ok;
            let unsure = per_req * o.errors; // no answer: may or may not be journaled
            let lossless = journaled >= expected && journaled <= expected + unsure;
            let wcount = m1.1 - m0.1;
            alerts_ok += expected;
            runs.push(json!({
            "connections": conns,
            "seconds": (wall * 1000.0).round() / 1000.0,
            "server_cpu": cpu_json(pc0, pc1, o.ok + o.non_2xx_total() + o.errors),
            "executions_finished_per_s": (executed / wall).round(),
            "runs_finished_per_s": (ran / wall).round(),
            "executions_in_flight_at_end": if kh { e1.1 } else { 0.0 },
            "uptime_load": load_avg(),
            "requests": o.ok + o.non_2xx_total() + o.errors,
            "outcomes": o.json(),
            "requests_per_s_2xx": (o.ok as f64 / wall).round(),
            "alerts_per_s_journaled": (journaled as f64 / wall).round(),
            "alerts_acknowledged": expected,
            "alerts_journaled": journaled,
            "zero_loss": lossless,
            "closed_loop_latency": lat.json(),
            "journal_write_mean_ms": if wcount > 0.0 { ((m1.0 - m0.0) / wcount * 1e6).round() / 1e3 } else { 0.0 },
            "server_threads_cpu": diff_cpu(&cpu0, &cpu1, wall),
            "generator_cpu_pct": ((me1.0 - me0.0) / wall * 1000.0).round() / 10.0,
            "machine_busy_pct_all_cores": busy_pct(mt0, mt1),
            "generator_runq_wait_pct": ((me1.1 - me0.1) / wall * 1000.0).round() / 10.0,
            "webhook_rejected": m1.2,
        }));
            total.merge(o);
        }
        report["throughput"] = json!(runs);
    }

    // c. Alert received -> first step started.
    if args.only.contains('c') {
        let spawn_dir = dir.join("spawn-stamps");
        std::fs::create_dir_all(&spawn_dir).map_err(|e| format!("mkdir: {e}"))?;
        eprintln!(
            "c: spawn cost of the helper ({} samples)",
            args.spawn_samples
        );
        let spawn = spawn_cost(helper, &spawn_dir, args.spawn_samples).await?;
        eprintln!(
            "c: {} probes at {} req/s",
            (args.probe_rate as f64 * args.probe_seconds) as u64,
            args.probe_rate
        );
        let r = open_loop(
            &c,
            &url,
            args.probe_rate,
            args.probe_seconds,
            args.max_inflight,
            |i| probe_body(i).into(),
        )
        .await;
        let mut o = Outcomes::default();
        for s in &r.shots {
            o.add(&s.result);
        }
        alerts_ok += o.ok;
        let acked: Vec<&Shot> = r
            .shots
            .iter()
            .filter(|s| matches!(s.result, Ok(200..=299)))
            .collect();
        // Wait (bounded) for every acknowledged probe's step to have run.
        let stamps = dir.join("stamps");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = std::fs::read_dir(&stamps).map(|d| d.count()).unwrap_or(0);
            if n >= acked.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut e2e = Vec::new();
        let mut missing = 0u64;
        for s in &acked {
            match std::fs::read_to_string(stamps.join(s.idx.to_string()))
                .ok()
                .and_then(|t| t.trim().parse::<u128>().ok())
            {
                Some(at) => e2e.push(at.saturating_sub(s.sent_unix_ns) as f64 / 1e6),
                None => missing += 1,
            }
        }
        // The journal's view: alert received -> execution created -> execution started.
        let (mut created_to_started, mut received_to_created, mut statuses) =
            (Vec::new(), Vec::new(), BTreeMap::<String, u64>::new());
        let j = Journal::open_read_only(&jpath).map_err(|e| format!("journal: {e}"))?;
        let execs = j
            .list_executions(&ExecutionFilter {
                rule: Some("bench-probe".into()),
                limit: Some(1000),
                ..Default::default()
            })
            .map_err(|e| format!("journal executions: {e}"))?;
        for e in &execs {
            *statuses.entry(e.status.as_str().to_string()).or_default() += 1;
            if let Some(st) = e.started_ms {
                created_to_started.push((st - e.created_ms) as f64);
            }
            if let Ok(a) = j.alerts_by_fingerprint(&e.fingerprint)
                && let Some((_, first)) = a.first()
            {
                received_to_created.push((e.created_ms - first.received_ms) as f64);
            }
        }
        let ack = Dist::of(r.shots.iter().map(|s| s.from_schedule_ms).collect());
        let e2e = Dist::of(e2e);
        report["alert_to_step"] = json!({
            "rate": args.probe_rate,
            "probes": r.shots.len() as u64 + r.skipped,
            "outcomes": o.json(),
            "steps_missing_after_30s": missing,
            "executions": execs.len(),
            "execution_statuses": statuses,
            "send_to_step_process_running": e2e.json(),
            "helper_spawn_direct": spawn.json(),
            "ack_latency_from_schedule": ack.json(),
            "journal_received_to_created_ms": Dist::of(received_to_created).json(),
            "journal_created_to_started_ms": Dist::of(created_to_started).json(),
        });
        total.merge(o);
    }

    // Let the work the requests triggered finish (bounded), to count it.
    if kh {
        let t = Instant::now();
        // Alerts not yet planned are not "in flight": also wait while the count moves.
        let mut e = exec_counts(&c, &base).await;
        while t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let prev = e;
            e = exec_counts(&c, &base).await;
            if e.1 == 0.0 && e.0 == prev.0 {
                break;
            }
        }
        report["executions_after_drain"] = json!({"finished": e.0, "in_flight": e.1,
            "runs_finished": e.2,
            "waited_s": (t.elapsed().as_secs_f64() * 10.0).round() / 10.0});
    }

    // Zero loss over the whole run: every 2xx alert is in the journal.
    acked_so_far.store(alerts_ok, Ordering::Relaxed);
    let in_journal = journal_alerts(&jpath)?;
    let unsure = total.errors * per_req.max(FIXTURE_ALERTS) + alerts_unsure;
    let zero_loss = in_journal >= alerts_ok && in_journal <= alerts_ok + unsure;
    report["totals"] = json!({
        "outcomes": total.json(),
        "alerts_acknowledged": alerts_ok,
        "alerts_in_journal": in_journal,
    });
    let runs_lossless = report["throughput"]
        .as_array()
        .is_none_or(|runs| runs.iter().all(|r| r["zero_loss"] == json!(true)))
        && report["decision_storm"]["zero_loss"] != json!(false);
    // am-executor and the no-op server keep no journal: nothing to check beyond their status
    // codes.
    report["zero_loss"] = if kh {
        json!(zero_loss && runs_lossless)
    } else {
        Value::Null
    };
    report["all_2xx"] = json!(total.non_2xx_total() == 0 && total.errors == 0);
    Ok(report)
}

fn print_tables(r: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    };
    let v = |x: &Value| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!();
    println!(
        "machine: {} cores, {}; generator threads {}; server --log {}",
        r["machine"]["nproc"],
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["generator_worker_threads"],
        r["server_log_level"].as_str().unwrap_or("?")
    );
    println!(
        "fsync (4 KiB + fdatasync): p50 {} ms, p99 {} ms",
        f(&r["fsync_4k"]["p50_ms"]),
        f(&r["fsync_4k"]["p99_ms"])
    );
    let d = &r["decision_storm"];
    if let Some(why) = d["not_applicable"].as_str() {
        println!("\nd. Decision storm: not applicable ({why})");
    } else if !d.is_null() {
        println!(
            "\nd. Decision storm: {} distinct alerts, {} requests of {}, {} connections",
            d["alerts"], d["requests"], d["alerts_per_request"], d["connections"]
        );
        println!(
            "  posted (first request -> last 200): {} s; 503 retries {}; outcomes {}",
            f(&d["post_s"]),
            d["retries_503"],
            d["outcomes"]
        );
        if d["timed_out"] == json!(true) {
            println!(
                "  TIMEOUT after {} s: backlog still {} (at least {} decisions/s)",
                d["timeout_s"], d["backlog_at_end"], d["decisions_per_s_lower_bound"]
            );
        } else {
            println!(
                "  all decided {} s after the first request ({} s after the last 200): {} decisions/s",
                f(&d["decided_s"]),
                f(&d["decided_after_last_ack_s"]),
                d["decisions_per_s"]
            );
        }
        println!(
            "  backlog max seen {}; executions by outcome {}; in flight {}",
            d["backlog_max_seen"], d["executions_by_outcome"], d["executions_in_flight"]
        );
        println!(
            "  server peak RSS {} kB (before {} kB); acknowledged {} = journaled {}: {}",
            d["server_peak_rss_kb"],
            d["server_rss_kb_before"],
            d["alerts_acknowledged"],
            d["alerts_journaled"],
            d["zero_loss"]
        );
    }
    if let Some(rows) = r["ack_latency"].as_array() {
        println!("\nb. ACK latency, open loop (ms, from the scheduled send time)");
        println!(
            "    rate    sent/s    kept      p50      p99     p999      max p99 send   non-2xx/err"
        );
        for row in rows {
            let l = &row["latency_from_schedule"];
            println!(
                "{:>8} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>12}",
                v(&row["rate_target"]),
                v(&row["rate_sent"]),
                v(&row["kept_up"]),
                f(&l["p50_ms"]),
                f(&l["p99_ms"]),
                f(&l["p999_ms"]),
                f(&l["max_ms"]),
                f(&row["latency_from_send"]["p99_ms"]),
                format!(
                    "{}/{}",
                    row["outcomes"]["non_2xx"]
                        .as_object()
                        .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
                        .unwrap_or(0),
                    row["outcomes"]["transport_errors"]
                ),
            );
        }
    }
    if let Some(runs) = r["throughput"].as_array() {
        println!("\na. Max journaled throughput (closed loop)");
        for t in runs {
            println!(
                "{} connections, {} s: {} req/s (2xx), {} alerts/s journaled; {} acknowledged, {} journaled, zero loss: {}",
                t["connections"],
                t["seconds"],
                t["requests_per_s_2xx"],
                t["alerts_per_s_journaled"],
                t["alerts_acknowledged"],
                t["alerts_journaled"],
                t["zero_loss"]
            );
            println!(
                "  non-2xx {}, transport errors {}; closed-loop latency p50 {} ms p99 {} ms; journal wait mean {} ms; generator CPU {}%",
                t["outcomes"]["non_2xx"],
                t["outcomes"]["transport_errors"],
                f(&t["closed_loop_latency"]["p50_ms"]),
                f(&t["closed_loop_latency"]["p99_ms"]),
                t["journal_write_mean_ms"],
                t["generator_cpu_pct"]
            );
            println!(
                "  machine busy (all cores, every process) {}%; generator run-queue wait {}%",
                t["machine_busy_pct_all_cores"], t["generator_runq_wait_pct"]
            );
            println!(
                "  server threads (% of one core): {}",
                t["server_threads_cpu"]
            );
        }
    }
    let c = &r["alert_to_step"];
    if !c.is_null() {
        println!(
            "\nc. Alert in -> first step started ({} probes at {} req/s)",
            c["probes"], c["rate"]
        );
        println!(
            "                                                  p50      p99      max        n"
        );
        for (name, k) in [
            (
                "request sent -> step process running",
                "send_to_step_process_running",
            ),
            (
                "helper spawned directly (spawn cost)",
                "helper_spawn_direct",
            ),
            (
                "journal: execution created -> started",
                "journal_created_to_started_ms",
            ),
            (
                "journal: alert received -> exec created",
                "journal_received_to_created_ms",
            ),
            ("ACK latency (from schedule)", "ack_latency_from_schedule"),
        ] {
            println!(
                "{:<44} {:>8} {:>8} {:>8} {:>8}",
                name,
                f(&c[k]["p50_ms"]),
                f(&c[k]["p99_ms"]),
                f(&c[k]["max_ms"]),
                v(&c[k]["n"])
            );
        }
        println!(
            "steps missing after 30 s: {}; execution statuses: {}",
            c["steps_missing_after_30s"], c["execution_statuses"]
        );
    }
    println!(
        "\ntotals: {}; journal {} alerts for {} acknowledged; zero loss: {}",
        r["totals"]["outcomes"],
        r["totals"]["alerts_in_journal"],
        r["totals"]["alerts_acknowledged"],
        r["zero_loss"]
    );
    println!(
        "server: peak RSS {} kB; log {} lines, {} WARN, {} ERROR",
        r["server_peak_rss_kb"],
        r["server_log"]["lines"],
        r["server_log"]["warn"],
        r["server_log"]["error"]
    );
    if let Some(d) = r["server_log"]["distinct"].as_array() {
        for e in d {
            println!("  {}x {}", e["count"], e["example"].as_str().unwrap_or(""));
        }
    }
}
