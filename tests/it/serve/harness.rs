//! Starting and talking to a `kafka-healing serve` process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Scratch;

/// The bearer token every test config uses.
pub const TOKEN: &str = "s3cret";

/// One non-disruptive rule, `broker-down` on `KafkaBrokerDown`, whose step is `true`: for
/// tests of the intake and the HTTP surface, where what runs does not matter.
pub const NOOP_RULES: &str = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: noop
runbooks:
  noop:
    disruptive: false
    steps:
      - { name: t, exec: ["true"] }
"#;

/// A config for three brokers on 127.0.0.1:0 with bearer auth; `extra` is appended.
pub fn config(extra: &str) -> String {
    format!(
        "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: k1.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-2, host: k2.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-3, host: k3.example.com, port: 9092, jmx_port: 9404 }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n{extra}"
    )
}

/// A shell script (a test fixture: the program a runbook runs) that records each call
/// under `$1` (relative to the server's directory): start and end times in `$1.PID`, the
/// further arguments NUL-separated in `$1.argv.PID`, its environment in `$1.env.PID`.
/// It sleeps for the seconds in the file `sleep` and exits with the code in `exit`, when
/// those exist (files, because the server clears the children's environment).
pub const RECORDER: &str = r#"#!/bin/sh
out="$1"; shift
printf 'start=%s\n' "$(date +%s%N)" >> "$out.$$"
env > "$out.env.$$"
for a in "$@"; do printf '%s\0' "$a"; done > "$out.argv.$$"
sleep "$(cat sleep 2>/dev/null || echo 0)"
printf 'end=%s\n' "$(date +%s%N)" >> "$out.$$"
exit "$(cat exit 2>/dev/null || echo 0)"
"#;

/// Every `serve` sweeps this host for orphaned step processes when it starts. A test that
/// must know which start-up sweeps what takes this lock exclusively ([`exclusive_starts`]);
/// every other start takes it shared until the server is up (its sweep is done by then).
static STARTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds off every other server start of this test binary (and so its start-up sweep)
/// while the guard lives; start servers meanwhile with [`Server::start_holding`].
pub fn exclusive_starts() -> std::sync::RwLockWriteGuard<'static, ()> {
    STARTS.write().unwrap_or_else(|p| p.into_inner())
}

/// A running server.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// Base URL.
    pub url: String,
    /// The scratch directory with config, rules and state.
    pub dir: PathBuf,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the recorder script into `dir` and returns its path.
pub fn recorder(dir: &Path) -> PathBuf {
    let p = dir.join("record.sh");
    std::fs::write(&p, RECORDER).expect("write recorder");
    let mut perm = std::fs::metadata(&p).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).expect("chmod");
    p
}

impl Server {
    /// Writes `config` and `rules` into `scratch` and starts the server there.
    pub fn start(scratch: &Scratch, config: &str, rules: &str) -> Server {
        scratch.write("config.yaml", config);
        scratch.write("rules.yaml", rules);
        Server::start_in(scratch.path())
    }

    /// Like [`start`](Self::start) with extra environment variables for the server.
    pub fn start_env_in(
        scratch: &Scratch,
        config: &str,
        rules: &str,
        env: &[(&str, &str)],
    ) -> Server {
        scratch.write("config.yaml", config);
        scratch.write("rules.yaml", rules);
        Server::start_env(scratch.path(), env)
    }

    /// Starts the server on the config already in `dir`.
    pub fn start_in(dir: &Path) -> Server {
        Server::start_env(dir, &[])
    }

    /// Starts the server with extra environment variables.
    pub fn start_env(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_wrapped(dir, &[], env)
    }

    /// Starts the server on the config already in `dir` while this test holds
    /// [`exclusive_starts`].
    pub fn start_holding(dir: &Path, _starts: &std::sync::RwLockWriteGuard<'static, ()>) -> Server {
        Server::launch(dir, &[], &[])
    }

    /// Starts the server through `wrapper` (a program and its arguments, which must end by
    /// exec'ing the server's argv it is given last, so the child is the server).
    pub fn start_wrapped(dir: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> Server {
        let _shared = STARTS.read().unwrap_or_else(|p| p.into_inner());
        Server::launch(dir, wrapper, env)
    }

    fn launch(dir: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> Server {
        let bin = env!("CARGO_BIN_EXE_kafka-healing");
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["--log", "info", "serve", "-c"])
            .arg(dir.join("config.yaml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("server.log")).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                panic!("server did not start; log:\n{log}");
            }
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            url,
            dir: dir.to_path_buf(),
            client: reqwest::Client::new(),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// POSTs a webhook body with the right token; returns (status, JSON body).
    pub async fn post(&self, body: &str) -> (u16, Value) {
        self.post_with(body, Some(&format!("Bearer {TOKEN}"))).await
    }

    /// POSTs a webhook body with an explicit Authorization header (or none).
    pub async fn post_with(&self, body: &str, auth: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/v1/alerts", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GET with the token; returns (status, JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path).await
    }

    /// POST with the token and no body; returns (status, JSON).
    pub async fn post_path(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::POST, path).await
    }

    /// `method` on `path` with the token and a body (none when `None`); (status, JSON).
    pub async fn send_body(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        auth: bool,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if auth {
            req = req.header("Authorization", format!("Bearer {TOKEN}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// All executions, oldest first.
    pub async fn executions(&self) -> Vec<Value> {
        let (s, v) = self.get("/api/v1/executions?limit=1000").await;
        assert_eq!(s, 200, "{v}");
        let mut list = v["executions"].as_array().cloned().unwrap_or_default();
        list.reverse();
        list
    }

    /// Polls the executions until `done` holds (at most `secs` seconds).
    pub async fn wait_until(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let list = self.executions().await;
            if done(&list) {
                return list;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; executions:\n{}\nlog:\n{}",
                    json!(list),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("kill");
    }
}

/// One alert in Alertmanager's shape.
pub fn alert(status: &str, labels: Value) -> Value {
    json!({
        "status": status,
        "labels": labels,
        "annotations": {"summary": "test"},
        "startsAt": "2026-11-27T23:33:11Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com/graph",
    })
}

/// A webhook body around `alerts`, as receiver `receiver`.
pub fn webhook(receiver: &str, alerts: Vec<Value>) -> String {
    json!({
        "receiver": receiver,
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0
    })
    .to_string()
}

/// Broker-down labels for `node`.
pub fn down(node: &str) -> Value {
    json!({"alertname": "KafkaBrokerDown", "node_id": node, "severity": "critical"})
}

/// Live (not zombie) processes whose environment holds `KAFKA_HEALING_STEP_ID=cookie`.
pub fn cookie_holders(cookie: &str) -> Vec<i32> {
    let needle = format!("{}={cookie}", kafka_healing::runbook::exec::STEP_COOKIE_VAR);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == needle.as_bytes()))
                && alive(*pid)
        })
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie awaiting its reaper).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X"))
    })
}

/// The pids of the recorder's calls under `dir` with prefix `name` (from its `name.PID`
/// files), sorted.
pub fn recorded_pids(dir: &Path, name: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix(&format!("{name}."))?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    pids.sort();
    pids
}

/// The step cookie in the environment the recorder dumped for one call.
pub fn recorded_cookie(env: &str) -> Option<String> {
    let prefix = format!("{}=", kafka_healing::runbook::exec::STEP_COOKIE_VAR);
    env.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

/// Reads the recorder's per-call files under `dir` with prefix `name`: for each call,
/// (start ns, end ns, argv, env).
pub fn recorded(dir: &Path, name: &str) -> Vec<(u128, u128, Vec<String>, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        let Some(pid) = f.strip_prefix(&format!("{name}.")) else {
            continue;
        };
        if pid.contains('.') {
            continue;
        }
        let times = std::fs::read_to_string(e.path()).unwrap_or_default();
        let get = |k: &str| {
            times
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.parse::<u128>().ok())
                .unwrap_or(0)
        };
        let argv = std::fs::read(dir.join(format!("{name}.argv.{pid}"))).unwrap_or_default();
        // Each argument is followed by a NUL: the last split piece is the empty tail.
        let mut argv: Vec<String> = argv
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        argv.pop();
        let env =
            std::fs::read_to_string(dir.join(format!("{name}.env.{pid}"))).unwrap_or_default();
        out.push((get("start="), get("end="), argv, env));
    }
    out.sort();
    out
}

/// The `node_id`s with a firing alert named `alertname` that the self-watch journaled in
/// the journal at `db` (read-only; empty while the journal is not there yet).
pub fn self_alerted(db: &Path, alertname: &str) -> std::collections::BTreeSet<String> {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Default::default();
    };
    let Ok(mut st) = c.prepare(
        "SELECT json_extract(labels, '$.node_id') FROM alerts \
         WHERE source = 'self' AND status = 'firing' \
         AND json_extract(labels, '$.alertname') = ?1",
    ) else {
        return Default::default();
    };
    st.query_map([alertname], |r| r.get::<_, String>(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}
