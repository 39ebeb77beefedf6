//! High availability with a real etcd (Debian's `etcd-server`): several `kafka-healing
//! serve` processes share the work. Exactly one runs an alert's remediation; a killed
//! holder's work is taken over after its lease expires; without etcd nothing runs and it
//! is escalated once; self-watch targets are split among the live instances.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Scratch;
use crate::mailbox::free_port;
use crate::serve::harness::{
    Server, TOKEN, alert, alive, config, cookie_holders, down, recorded, recorded_cookie,
    recorded_pids, recorder, self_alerted, webhook,
};

const ETCD: &str = "/usr/bin/etcd";
/// The lease TTL the tests use (seconds).
const TTL: u64 = 3;

/// A single-member etcd on 127.0.0.1 with a temporary data directory; killed when dropped.
struct Etcd {
    child: Option<Child>,
    url: String,
}

impl Etcd {
    async fn start(dir: &Path) -> Etcd {
        Etcd::start_tls(dir, None).await
    }

    /// With `pki`, etcd serves https with its server certificate.
    async fn start_tls(dir: &Path, pki: Option<&crate::mailbox::Pki>) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's `etcd-server` package (scripts/test does)"
        );
        let (client, peer) = (free_port(), free_port());
        let scheme = if pki.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join(format!("etcd-{client}"));
        let mut cmd = Command::new(ETCD);
        if let Some(p) = pki {
            cmd.arg("--cert-file").arg(&p.cert);
            cmd.arg("--key-file").arg(&p.key);
        }
        let child = cmd
            .args(["--name", "ha-test", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("ha-test={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("etcd-{client}.log"))).expect("log"))
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd {
            child: Some(child),
            url,
        };
        // Ready when the v3 gateway answers a range (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut http = reqwest::Client::builder();
        if let Some(p) = pki {
            let pem = std::fs::read(&p.ca).expect("read CA");
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA"));
        }
        let http = http.build().expect("client");
        loop {
            let ok = http
                .post(format!("{}/v3/kv/range", etcd.url))
                .body(r#"{"key":"AA=="}"#)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not start on {client}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops etcd for good (SIGKILL).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The HA part of a config: `instance` among peers on `etcd`. A dead endpoint comes first:
/// the client must fail over to the live one.
fn coordination(etcd: &Etcd, instance: &str) -> String {
    format!(
        "coordination:\n  endpoints: [http://127.0.0.1:{}, {}]\n  lease_ttl_seconds: {TTL}\n  key_prefix: /kh-test/\n  instance_id: {instance}\n",
        free_port(),
        etcd.url
    )
}

/// Rules whose runbook appends `INSTANCE NANOS restart` to `marker`, then sleeps `settle`
/// seconds (a second, disruptive step, during which a test may kill the holder). Each step
/// has a time limit of its own ([`SETTLE_SLACK`] more than its work), which bounds how long
/// a peer waits when the holder dies mid-step.
fn rules(marker: &Path, settle: u32) -> String {
    format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_INSTANCE_ID $(date +%s%N) restart\" >> '{}'"]
        timeout: {SETTLE_SLACK}
      - name: settle
        exec: ["/bin/sleep", "{settle}"]
        timeout: {}
"#,
        marker.display(),
        settle + SETTLE_SLACK
    )
}

/// How much longer than its work a step of [`rules`] may take (seconds).
const SETTLE_SLACK: u32 = 3;
/// The kill grace of the tests that kill a holder mid-step (`recovery.kill_grace_seconds`).
const GRACE: u64 = 1;
/// The margin the executor adds to a step's time limit and kill grace for its deadline.
const STOP_MARGIN: u64 = 1;

/// Starts `n` instances `ha-0`… on `etcd`, each in its own directory with its own journal.
fn instances(dirs: &[Scratch], etcd: &Etcd, extra: &str, rules: &str) -> Vec<Server> {
    dirs.iter()
        .enumerate()
        .map(|(i, d)| {
            let cfg = config(&format!(
                "monitoring: {{ interval_seconds: 3600, timeout_seconds: 1, methods: [socket] }}\n{extra}{}",
                coordination(etcd, &format!("ha-{i}"))
            ));
            Server::start(d, &cfg, rules)
        })
        .collect()
}

/// The marker's lines: (instance, nanoseconds since the epoch).
fn marker_lines(marker: &Path) -> Vec<(String, u128)> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

async fn metrics(srv: &Server) -> String {
    reqwest::get(format!("{}/metrics", srv.url))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}

/// The value of the metric line that starts with `series ` (exactly).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Posts `body` to every server at once (as Alertmanager's fan-out would).
async fn post_all(servers: &[Server], body: &str) {
    for (status, v) in join_all(servers.iter().map(|s| s.post(body)).collect()).await {
        assert_eq!(status, 200, "{v}");
    }
}

/// Polls the futures together until all are ready (join_all without a dependency).
async fn join_all<F: std::future::Future<Output = (u16, Value)>>(
    futs: Vec<F>,
) -> Vec<(u16, Value)> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<(u16, Value)>> = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn statuses(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn now_ns() -> u128 {
    kafka_healing::clock::now_ns()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_alert_on_three_instances_runs_once() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    let srv = instances(&dirs, &etcd, "", &rules(&marker, 1));
    let body = webhook("am", vec![alert("firing", down("kafka-1"))]);
    post_all(&srv, &body).await;
    // Every instance ends its copy: one ran it, the others skipped it as done by a peer.
    let mut lists = Vec::new();
    for x in &srv {
        lists.push(
            x.wait_until(30, "the copy to end", |l| {
                !l.is_empty()
                    && l.iter()
                        .all(|e| e["status"] != "queued" && e["status"] != "running")
            })
            .await,
        );
    }
    let lines = marker_lines(&marker);
    assert_eq!(lines.len(), 1, "exactly one execution: {lines:?}");
    let holder = &lines[0].0;
    let mut ran = 0;
    for (i, l) in lists.iter().enumerate() {
        let st = statuses(l);
        if format!("ha-{i}") == *holder {
            assert_eq!(st, ["succeeded"], "{}", json!(l));
            ran += 1;
        } else {
            assert_eq!(st, ["skipped"], "{}", json!(l));
            let reason = l[0]["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains(&format!("HA: already done by instance {holder}")),
                "{reason}"
            );
        }
    }
    assert_eq!(ran, 1);
}

/// The (kind, message) of each event of execution `id` on `srv`.
async fn events_of(srv: &Server, id: &Value) -> Vec<(String, String)> {
    let (_, detail) = srv.get(&format!("/api/v1/executions/{id}")).await;
    detail["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (f("kind"), f("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The keys under `prefix` in `etcd` (their names).
async fn etcd_keys(etcd: &Etcd, prefix: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let v: Value = reqwest::Client::new()
        .post(format!("{}/v3/kv/range", etcd.url))
        .json(&json!({"key": b64.encode(prefix), "range_end": b64.encode(end), "keys_only": true}))
        .send()
        .await
        .expect("range")
        .json()
        .await
        .expect("json");
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| b64.decode(kv["key"].as_str()?).ok())
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The holder dies while no recorded step of the work runs (its disruptive step is over, a
/// read-only `wait_for` runs): a peer takes over as soon as the holder's lease is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_holder_is_taken_over_after_its_lease_when_no_step_of_it_may_run() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    // `restart` (disruptive, recorded), then `watch`: a `wait_for` on a port nothing
    // listens on yet (read-only: not recorded).
    let port = free_port();
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_INSTANCE_ID $(date +%s%N) restart\" >> '{}'"]
        timeout: 3s
      - name: watch
        wait_for: {{ tcp: "127.0.0.1:{port}", timeout: 30s }}
"#,
        marker.display()
    );
    let mut srv = instances(&dirs, &etcd, "", &rules);
    let body = webhook("am", vec![alert("firing", down("kafka-1"))]);
    post_all(&srv, &body).await;
    // Kill -9 the holder once `restart` ran and its step record is deleted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(l) = marker_lines(&marker).first()
            && etcd_keys(&etcd, "/kh-test/test/steps/").await.is_empty()
        {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "nobody ran the runbook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let idx: usize = first
        .0
        .trim_start_matches("ha-")
        .parse()
        .expect("instance id");
    let mut dead = srv.remove(idx);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    let killed_ns = now_ns();
    let killed = Instant::now();
    // The successor's `watch` finds the port open.
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        if let Some(l) = marker_lines(&marker).get(1) {
            break l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no takeover; logs:\n{}\n{}",
            srv[0].log(),
            srv[1].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let takeover = killed.elapsed();
    println!("takeover after kill -9 with no step recorded: {takeover:?} (lease TTL {TTL}s)");
    assert_ne!(second.0, first.0);
    assert!(second.1 > killed_ns, "the successor started after the kill");
    // Generous bound: TTL plus renewal, retry period and a loaded machine.
    assert!(
        takeover < Duration::from_secs(TTL + 8),
        "takeover took {takeover:?}"
    );
    // The successor finishes; the third instance then skips it as done.
    for x in &srv {
        x.wait_until(30, "the copy to end", |l| {
            !l.is_empty()
                && l.iter()
                    .all(|e| e["status"] != "queued" && e["status"] != "running")
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = marker_lines(&marker);
    assert_eq!(
        lines.len(),
        2,
        "ran once before the kill, once after: {lines:?}"
    );
    let mut st: Vec<String> = Vec::new();
    for x in &srv {
        st.extend(statuses(&x.executions().await));
    }
    st.sort();
    assert_eq!(st, ["skipped", "succeeded"]);
    // The successor's journal tells the story: it waited on the holder, then took the lock;
    // no step of the holder held it back.
    let succ: usize = second
        .0
        .trim_start_matches("ha-")
        .parse()
        .expect("instance id");
    let succ = &srv[if succ > idx { succ - 1 } else { succ }];
    let list = succ.executions().await;
    let events = events_of(succ, &list[0]["id"]).await;
    let held = events.iter().position(|(k, m)| {
        k == "waiting" && m.contains(&format!("HA: the lock is held by instance {}", first.0))
    });
    let taken = events.iter().position(|(k, _)| k == "lock_acquired");
    assert!(
        matches!((held, taken), (Some(h), Some(t)) if h < t),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, m)| m.contains("the lock is free but")),
        "{events:?}"
    );
}

/// Issue 14, finding 11: the holder is killed during a 15 s step. Its step's leader dies
/// with it (parent-death signal); the survivor starts the same work only after every
/// process of the old step is gone, and not before the step's recorded deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_never_overlaps_the_step_a_killed_holder_was_running() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let rec = recorder(s.path());
    let out = s.path().join("run");
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    for d in &dirs {
        d.write("sleep", "15");
    }
    let limit = 16;
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["{}", "{}"]
        timeout: {limit}
"#,
        rec.display(),
        out.display()
    );
    let extra = format!("recovery: {{ kill_grace_seconds: {GRACE} }}\n");
    let mut srv = instances(&dirs, &etcd, &extra, &rules);
    post_all(&srv, &webhook("am", vec![alert("firing", down("kafka-1"))])).await;
    // The holder's step has started (its leader and the leader's `sleep 15`).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (leader, started_ns, cookie, holder) = loop {
        let runs = recorded(s.path(), "run");
        let pids = recorded_pids(s.path(), "run");
        if let (Some(run), Some(&pid)) = (runs.first(), pids.first())
            && let Some(cookie) = recorded_cookie(&run.3)
            && cookie_holders(&cookie).len() >= 2
        {
            let holder = run
                .3
                .lines()
                .find_map(|l| l.strip_prefix("KAFKA_HEALING_INSTANCE_ID="))
                .expect("instance id in the step's environment")
                .to_string();
            break (pid, run.0, cookie, holder);
        }
        assert!(Instant::now() < deadline, "nobody ran the step");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let idx: usize = holder
        .trim_start_matches("ha-")
        .parse()
        .expect("instance id");
    // Mid-step, as in the issue (there 1.6 s in).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The successor's own run is short.
    for (i, d) in dirs.iter().enumerate() {
        if i != idx {
            d.write("sleep", "1");
        }
    }
    let mut dead = srv.remove(idx);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    let killed_ns = now_ns();
    // Watch the old step's processes until the survivor's run appears: when its leader
    // was first seen gone, and when none of its processes was left.
    let mut leader_gone_ns = None;
    let mut all_gone_ns = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = now_ns();
        if leader_gone_ns.is_none() && !alive(leader) {
            leader_gone_ns = Some(now);
        }
        if all_gone_ns.is_none() && cookie_holders(&cookie).is_empty() {
            all_gone_ns = Some(now);
        }
        if recorded(s.path(), "run").len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover; logs:\n{}\n{}",
            srv[0].log(),
            srv[1].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for x in &srv {
        x.wait_until(30, "the copy to end", |l| {
            !l.is_empty()
                && l.iter()
                    .all(|e| e["status"] != "queued" && e["status"] != "running")
        })
        .await;
    }
    let runs = recorded(s.path(), "run");
    assert_eq!(runs.len(), 2, "once before the kill, once after: {runs:?}");
    let (first, second) = (&runs[0], &runs[1]);
    assert_eq!(first.0, started_ns);
    let secs = |ns: u128| ns as f64 / 1e9;
    let budget = u128::from(limit + GRACE + STOP_MARGIN) * 1_000_000_000;
    println!(
        "kill -9 {:.2}s into the 15 s step; leader gone {:.2}s after the kill, every process of the step {:.2}s after; the survivor's step started {:.2}s after the kill ({:.2}s after the old step's start; its deadline: {}s)",
        secs(killed_ns - first.0),
        secs(leader_gone_ns.unwrap_or(0).saturating_sub(killed_ns)),
        secs(all_gone_ns.unwrap_or(0).saturating_sub(killed_ns)),
        secs(second.0 - killed_ns),
        secs(second.0 - first.0),
        budget / 1_000_000_000
    );
    // The old step was killed mid-run by the parent-death signal: its recorder never
    // wrote an end, and its leader died before its own `sleep 15` could have ended.
    assert_eq!(first.1, 0, "the killed holder's step recorded an end");
    let leader_gone = leader_gone_ns.expect("the old step's leader died");
    assert!(
        leader_gone < first.0 + 15_000_000_000,
        "the leader lived as long as its sleep"
    );
    // No overlap: every process of the old step was gone before the survivor's step
    // started, which came after the old step's deadline; the survivor's run completed.
    let all_gone = all_gone_ns.expect("the old step's processes ended");
    assert!(
        all_gone < second.0,
        "the survivor started {:.2}s before the old step's last process ended",
        secs(all_gone - second.0)
    );
    assert!(
        second.0 >= first.0 + budget,
        "the survivor started before the old step's deadline"
    );
    assert!(second.1 > second.0, "the survivor's step completed");
    assert_ne!(
        second
            .3
            .lines()
            .find(|l| l.starts_with("KAFKA_HEALING_INSTANCE_ID=")),
        Some(format!("KAFKA_HEALING_INSTANCE_ID={holder}").as_str())
    );
    // The survivor said whose step it waited for, and until when, before taking the lock.
    let mut waited = false;
    for x in &srv {
        let list = x.executions().await;
        if list[0]["status"] != "succeeded" {
            continue;
        }
        let events = events_of(x, &list[0]["id"]).await;
        let step = events.iter().position(|(k, m)| {
            k == "waiting"
                && m.contains(&format!(
                    "HA: the lock is free but step `restart` of instance {holder}"
                ))
                && m.contains("which may run until ")
        });
        let taken = events.iter().position(|(k, _)| k == "lock_acquired");
        assert!(
            matches!((step, taken), (Some(s), Some(t)) if s < t),
            "{events:?}"
        );
        waited = true;
    }
    assert!(waited, "no survivor ran the work");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_etcd_nothing_runs_and_it_is_escalated_once() {
    let s = Scratch::new();
    let mut etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..1).map(|_| Scratch::new()).collect();
    // SMTP on a closed port: messages stay in the outbox, where the test reads them.
    let smtp = format!(
        "notifications:\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none, from_email: kh@example.com, to_emails: [oncall@example.com] }}\n  escalation: {{ to_emails: [boss@example.com] }}\n",
        free_port()
    );
    let srv = instances(&dirs, &etcd, &smtp, &rules(&marker, 0));
    let srv = &srv[0];
    let up = "kafka_healing_coordination_up";
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&metrics(srv).await, up) != Some(1.0) {
        assert!(Instant::now() < deadline, "coordination never up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd.kill();
    let deadline = Instant::now() + Duration::from_secs(TTL + 10);
    while metric(&metrics(srv).await, up) != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "coordination still up without etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several alerts, several times: nothing runs, one escalation.
    for node in ["kafka-1", "kafka-2", "kafka-3"] {
        for _ in 0..3 {
            let (st, v) = srv
                .post(&webhook("am", vec![alert("firing", down(node))]))
                .await;
            assert_eq!(st, 200, "{v}");
        }
    }
    let db = dirs[0].path().join("state/journal.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    let escalations = |db: &PathBuf| {
        kafka_healing::journal::Journal::open_read_only(db)
            .and_then(|j| j.recent_mails(100))
            .map(|m| {
                m.into_iter()
                    .filter(|m| m.mail.kind == "escalation")
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    while escalations(&db).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no escalation; log:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the engine time to (wrongly) run something or escalate again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(marker_lines(&marker).is_empty(), "a step ran without etcd");
    let esc = escalations(&db);
    assert_eq!(esc.len(), 1, "rate-limited: one escalation for the outage");
    assert!(
        esc[0].mail.subject.contains("coordination") || esc[0].mail.text.contains("coordination"),
        "{:?}",
        esc[0].mail.subject
    );
    let list = srv.executions().await;
    assert_eq!(
        statuses(&list),
        ["queued", "queued", "queued"],
        "{}",
        json!(list)
    );
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert!(
        detail.to_string().contains("HA: coordination unavailable"),
        "{detail}"
    );
    let m = metrics(srv).await;
    assert_eq!(metric(&m, up), Some(0.0), "{m}");
    assert!(
        metric(&m, "kafka_healing_coordination_lease_lost_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
}

/// Which instance watches `target`, per each server's /metrics (None: not yet decided,
/// or two claim it).
async fn shard_owners(srv: &[Server], targets: &[String]) -> Option<Vec<usize>> {
    let mut texts = Vec::new();
    for x in srv {
        texts.push(metrics(x).await);
    }
    targets
        .iter()
        .map(|t| {
            let series = format!("kafka_healing_watch_assigned{{target=\"{t}\"}}");
            let owners: Vec<usize> = texts
                .iter()
                .enumerate()
                .filter(|(_, m)| metric(m, &series) == Some(1.0))
                .map(|(i, _)| i)
                .collect();
            let all_know = texts.iter().all(|m| metric(m, &series).is_some());
            (all_know && owners.len() == 1).then(|| owners[0])
        })
        .collect()
}

/// Three instances `ha-0..2` in `dirs`, self-watching `brokers` (socket probe every 5 s)
/// with `rules`, once the targets are split among all three; with each target's owner.
async fn watching_three(
    dirs: &[Scratch],
    etcd: &Etcd,
    brokers: &str,
    extra: &str,
    rules: &str,
    targets: &[String],
) -> (Vec<Server>, Vec<usize>) {
    let srv: Vec<Server> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cfg = format!(
                "cluster:\n  name: test\n  kafka_brokers:\n{brokers}monitoring: {{ interval_seconds: 5, timeout_seconds: 1, methods: [socket] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n{extra}{}",
                coordination(etcd, &format!("ha-{i}"))
            );
            Server::start(d, &cfg, rules)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(o) = shard_owners(&srv, targets).await
            && (0..3).all(|i| o.contains(&i))
        {
            return (srv, o);
        }
        assert!(
            Instant::now() < deadline,
            "targets never split among the three"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn self_watch_targets_are_split_and_a_dead_instances_share_is_taken_over() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let n = 6;
    let brokers: String = (0..n)
        .map(|i| {
            format!(
                "    - {{ node_id: b{i}, host: 127.0.0.1, port: {} }}\n",
                free_port()
            )
        })
        .collect();
    let targets: Vec<String> = (0..n).map(|i| format!("kafka/b{i}")).collect();
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    let (mut srv, owners) =
        watching_three(&dirs, &etcd, &brokers, "", &rules(&marker, 0), &targets).await;
    // Each watched target is probed by its owner only.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (t, owner) in owners.iter().enumerate() {
        let series = format!("kafka_healing_target_up{{node_id=\"b{t}\",method=\"socket\"}}");
        for (i, x) in srv.iter().enumerate() {
            let m = metrics(x).await;
            assert_eq!(
                metric(&m, &series).is_some(),
                i == *owner,
                "b{t} on ha-{i}: {m}"
            );
        }
    }
    // Kill the owner of b0: the two others split everything, b0's owner's share moves.
    let victim = owners[0];
    let mut dead = srv.remove(victim);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(40);
    let after = loop {
        if let Some(o) = shard_owners(&srv, &targets).await {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "the dead instance's share was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("shard rebalanced {:?} after kill -9", killed.elapsed());
    // Index in `after` is into the two survivors; map back to the old numbering.
    let old = |i: usize| if i >= victim { i + 1 } else { i };
    for (t, o) in owners.iter().enumerate() {
        if *o != victim {
            assert_eq!(old(after[t]), *o, "b{t} moved although its owner lives");
        }
    }
}

#[test]
fn check_validates_the_coordination_section() {
    use crate::common::{GOOD_RULES, config_with, run, stderr};
    let s = Scratch::new();
    s.write("rules/r.yaml", GOOD_RULES);
    // A bad keyword and an unknown key, each alone.
    for (bad, want) in [
        (
            "coordination:\n  backend: zookeeper\n  endpoints: ['http://e:2379']\n",
            "config.yaml:10: error: coordination.backend: unknown coordination backend `zookeeper`, expected one of: etcd",
        ),
        (
            "coordination:\n  endpoints: ['http://e:2379']\n  ttl: 10\n",
            "config.yaml:11: error: coordination.ttl: unknown field `ttl`",
        ),
        (
            "coordination:\n  endpoints: ['http://e:2379']\n  username: root\n",
            "config.yaml:11: error: coordination.username: set both username and password, or neither",
        ),
    ] {
        let cfg = s.write("config.yaml", &config_with(bad));
        let o = run(&["check", "-c", cfg.to_str().expect("utf-8 path")]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o).replace(&format!("{}/", s.path().display()), "");
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    let bad = "coordination:\n  endpoints: ['ftp://x', 'not a url']\n  lease_ttl_seconds: 1\n  key_prefix: kh\n  instance_id: 'a/b'\n";
    let cfg = s.write("config.yaml", &config_with(bad));
    let o = run(&["check", "-c", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o).replace(&format!("{}/", s.path().display()), "");
    for want in [
        "config.yaml:10: error: coordination.endpoints[0]: `ftp://x` is not an http(s) URL",
        "coordination.endpoints[1]: `not a url` is not a URL",
        "config.yaml:11: error: coordination.lease_ttl_seconds: must be between 2 and 300, got 1",
        "config.yaml:12: error: coordination.key_prefix: must start and end with `/`",
        "config.yaml:13: error: coordination.instance_id: must be a non-empty name without `/`",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    let good = "coordination:\n  endpoints: ['http://127.0.0.1:2379']\n";
    let cfg = s.write("config.yaml", &config_with(good));
    let o = run(&["check", "-c", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_lost_its_lock_runs_no_further_disruptive_step() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..1).map(|_| Scratch::new()).collect();
    // `prepare` (2 s), then the disruptive `restart`; the lock vanishes in between.
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: prepare
        exec: ["/bin/sleep", "2"]
      - name: restart
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_INSTANCE_ID $(date +%s%N) restart\" >> '{}'"]
"#,
        marker.display()
    );
    let srv = instances(&dirs, &etcd, "", &rules);
    let srv = &srv[0];
    let (st, v) = srv
        .post(&webhook("am", vec![alert("firing", down("kafka-1"))]))
        .await;
    assert_eq!(st, 200, "{v}");
    srv.wait_until(15, "the execution to run", |l| {
        l.iter().any(|e| e["status"] == "running")
    })
    .await;
    // Another party takes the lock away (as after a partition and the lease's expiry).
    let prefix = "/kh-test/test/locks/";
    let end = {
        let mut b = prefix.as_bytes().to_vec();
        if let Some(last) = b.last_mut() {
            *last += 1;
        }
        b
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let resp = reqwest::Client::new()
        .post(format!("{}/v3/kv/deleterange", etcd.url))
        .json(&json!({"key": b64.encode(prefix), "range_end": b64.encode(end)}))
        .send()
        .await
        .expect("deleterange");
    let deleted: Value = resp.json().await.expect("json");
    assert!(deleted["deleted"].as_str().is_some(), "{deleted}");
    let list = srv
        .wait_until(15, "the execution to end", |l| {
            l.iter().any(|e| e["status"] == "interrupted")
        })
        .await;
    let reason = list[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("fenced before step `restart`"),
        "{reason}"
    );
    assert!(marker_lines(&marker).is_empty(), "the disruptive step ran");
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kinds.contains(&"lock_acquired") && kinds.contains(&"fenced"),
        "{detail}"
    );
    let m = metrics(srv).await;
    assert_eq!(
        metric(&m, "kafka_healing_coordination_fenced_total"),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instances_own_done_record_leaves_its_own_policy_in_charge() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..1).map(|_| Scratch::new()).collect();
    // No cooldown: the instance's own policy lets the work run again at once; the `done`
    // record it left in etcd (one lease TTL at least) must not stop it.
    let srv = instances(
        &dirs,
        &etcd,
        "recovery: { cooldown_seconds: 0 }\n",
        &rules(&marker, 0),
    );
    let srv = &srv[0];
    let body = webhook("am", vec![alert("firing", down("kafka-1"))]);
    for n in 1..=2 {
        let (st, v) = srv.post(&body).await;
        assert_eq!(st, 200, "{v}");
        srv.wait_until(15, "the run to end", |l| {
            l.len() == n && l.iter().all(|e| e["status"] == "succeeded")
        })
        .await;
    }
    assert_eq!(marker_lines(&marker).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_limit_holds_across_instances() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..2).map(|_| Scratch::new()).collect();
    // Each restart writes `start`, settles 2 s, writes `end` (max_concurrent_per_cluster 1).
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_TARGET $(date +%s%N) start\" >> '{m}'"]
      - name: settle
        exec: ["/bin/sleep", "2"]
      - name: end
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_TARGET $(date +%s%N) end\" >> '{m}'"]
"#,
        m = marker.display()
    );
    let srv = instances(&dirs, &etcd, "", &rules);
    // Different brokers, different instances: locally each is alone, the slot is shared.
    let a = webhook("am", vec![alert("firing", down("kafka-1"))]);
    let b = webhook("am", vec![alert("firing", down("kafka-2"))]);
    let ((sa, va), (sb, vb)) = tokio::join!(srv[0].post(&a), srv[1].post(&b));
    assert_eq!((sa, sb), (200, 200), "{va} {vb}");
    for x in &srv {
        x.wait_until(30, "the restart to succeed", |l| {
            l.len() == 1 && l[0]["status"] == "succeeded"
        })
        .await;
    }
    let text = std::fs::read_to_string(&marker).unwrap_or_default();
    let mut lines: Vec<(u128, String, String)> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.get(1)?.parse().ok()?,
                w.first()?.to_string(),
                w.get(2)?.to_string(),
            ))
        })
        .collect();
    lines.sort();
    let order: Vec<(&str, &str)> = lines
        .iter()
        .map(|(_, t, w)| (t.as_str(), w.as_str()))
        .collect();
    assert_eq!(order.len(), 4, "{text}");
    assert_eq!(
        order[0].0, order[1].0,
        "one restart ends before the other starts: {text}"
    );
    assert_eq!(
        (order[0].1, order[1].1, order[2].1, order[3].1),
        ("start", "end", "start", "end"),
        "{text}"
    );
    // The second one's journal says what it waited for.
    let second = if order[2].0 == "kafka-1" {
        &srv[0]
    } else {
        &srv[1]
    };
    let list = second.executions().await;
    let (_, detail) = second
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert!(
        detail
            .to_string()
            .contains("cluster slot 0 held by instance"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_over_tls_with_authentication() {
    let s = Scratch::new();
    let pki = crate::mailbox::pki(s.path());
    let etcd = Etcd::start_tls(s.path(), Some(&pki)).await;
    // Turn authentication on: a root user, then auth/enable.
    let pem = std::fs::read(&pki.ca).expect("read CA");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA"))
        .build()
        .expect("client");
    for (path, body) in [
        (
            "/v3/auth/user/add",
            json!({"name": "root", "password": "s3cr3t"}),
        ),
        (
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        ),
        ("/v3/auth/enable", json!({})),
    ] {
        let r = http
            .post(format!("{}{path}", etcd.url))
            .json(&body)
            .send()
            .await
            .expect("etcd admin request");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..2).map(|_| Scratch::new()).collect();
    let mut srv = Vec::new();
    // ha-0 has the right password (from the environment), ha-1 a wrong one.
    for (i, password) in ["s3cr3t", "wrong"].iter().enumerate() {
        let cfg = config(&format!(
            "monitoring: {{ interval_seconds: 3600, timeout_seconds: 1, methods: [socket] }}\ncoordination:\n  endpoints: [{}]\n  lease_ttl_seconds: {TTL}\n  instance_id: ha-{i}\n  username: root\n  password: ${{ETCD_PASSWORD}}\n  ca_file: {}\n",
            etcd.url,
            pki.ca.display()
        ));
        srv.push(Server::start_env_in(
            &dirs[i],
            &cfg,
            &rules(&marker, 0),
            &[("ETCD_PASSWORD", password)],
        ));
    }
    let up = "kafka_healing_coordination_up";
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&metrics(&srv[0]).await, up) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no lease over TLS; log:\n{}",
            srv[0].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    post_all(&srv, &webhook("am", vec![alert("firing", down("kafka-1"))])).await;
    srv[0]
        .wait_until(15, "the run to succeed", |l| {
            l.len() == 1 && l[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(marker_lines(&marker).len(), 1);
    assert_eq!(marker_lines(&marker)[0].0, "ha-0");
    // The instance etcd refuses never gets a lease: it runs nothing.
    assert_eq!(metric(&metrics(&srv[1]).await, up), Some(0.0));
    assert_eq!(statuses(&srv[1].executions().await), ["queued"]);
    assert!(
        srv[1].log().contains("authentication failed"),
        "{}",
        srv[1].log()
    );
}

/// Issue 14, finding 10: attempts and open circuits are shared through etcd. The holder is
/// killed after 2 of 3 failed attempts; the survivor, asked again by Alertmanager's repeats,
/// makes exactly 1 more (attempt 3/3), then its circuit is open on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_grants_no_fresh_attempts() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let marker = s.path().join("marker");
    let dirs: Vec<Scratch> = (0..2).map(|_| Scratch::new()).collect();
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/sh", "-c", "echo \"$KAFKA_HEALING_INSTANCE_ID $(date +%s%N) restart\" >> '{}'; exit 1"]
"#,
        marker.display()
    );
    let recovery =
        "recovery: { max_attempts: 3, initial_delay_seconds: 3, backoff_multiplier: 1 }\n";
    let mut srv = instances(&dirs, &etcd, recovery, &rules);
    let body = webhook("am", vec![alert("firing", down("kafka-1"))]);
    post_all(&srv, &body).await;
    // Two failed attempts by the holder (its journal has both: their etcd records are
    // written before the journal hears of the end), then kill -9 before the third.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let lines = marker_lines(&marker);
        if lines.len() >= 2 {
            let idx: usize = lines[0]
                .0
                .trim_start_matches("ha-")
                .parse()
                .expect("instance id");
            let failed = srv[idx]
                .executions()
                .await
                .iter()
                .filter(|e| e["status"] == "failed")
                .count();
            if failed == 2 {
                break idx;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no two failed attempts: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut dead = srv.remove(holder);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    let lines = marker_lines(&marker);
    assert_eq!(lines.len(), 2, "killed before its third attempt: {lines:?}");
    assert!(lines.iter().all(|(i, _)| *i == format!("ha-{holder}")));
    // Alertmanager repeats the alert to the survivor until it acts (the holder's `done`
    // record and lock keep it off for a few seconds).
    let survivor = &srv[0];
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let list = survivor.executions().await;
        if list.iter().any(|e| e["status"] == "failed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor never ran: {list:?}"
        );
        assert_eq!(survivor.post(&body).await.0, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Its run was attempt 3/3: the circuit opens, and further repeats run nothing.
    for _ in 0..3 {
        assert_eq!(survivor.post(&body).await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list = survivor.executions().await;
    let lines = marker_lines(&marker);
    let mine: Vec<_> = lines
        .iter()
        .filter(|(i, _)| *i != format!("ha-{holder}"))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "the survivor made exactly one attempt: {lines:?} {list:?}"
    );
    assert_eq!(
        metric(&metrics(survivor).await, "kafka_healing_circuits_open"),
        Some(1.0)
    );
    let run = list
        .iter()
        .find(|e| e["status"] == "failed")
        .expect("its run");
    let (_, detail) = survivor
        .get(&format!("/api/v1/executions/{}", run["id"]))
        .await;
    let acquired = detail["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "lock_acquired")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        acquired.ends_with("; attempt 3/3 counting every instance's"),
        "{acquired}"
    );
}

/// Issue 16's HA case: nine live brokers (real listeners, so every socket probe passes)
/// split among three instances; one instance is killed with `kill -9` and, at that moment,
/// every broker of its share dies too (the worst case: nobody watches them when they go).
/// The survivors take the share over within a round plus the lease TTL and detect every
/// one of them; no broker of the survivors' own shares is reported.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_instances_share_is_taken_over_and_its_dead_brokers_are_all_detected() {
    let s = Scratch::new();
    let etcd = Etcd::start(s.path()).await;
    let n = 9;
    let mut listeners = Vec::new();
    let mut brokers = String::new();
    for i in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        brokers.push_str(&format!(
            "    - {{ node_id: b{i}, host: 127.0.0.1, port: {port} }}\n"
        ));
        listeners.push(tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                drop(sock);
            }
        }));
    }
    let targets: Vec<String> = (0..n).map(|i| format!("kafka/b{i}")).collect();
    let rules = r#"rules:
  - name: socket-down
    matchers: ['alertname="socket-down"']
    condition:
      expr: kafka_healing_probe_success{method="socket"} == 0
    runbook: noop
runbooks:
  noop:
    steps:
      - name: noop
        exec: ["/bin/true"]
"#;
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    let (mut srv, owners) = watching_three(
        &dirs,
        &etcd,
        &brokers,
        "recovery: { dry_run: true }\n",
        rules,
        &targets,
    )
    .await;
    let share = |i: usize| owners.iter().filter(|o| **o == i).count();
    println!("shares: {} / {} / {}", share(0), share(1), share(2));
    // Let every instance see its share up at least once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let victim = owners[0];
    let theirs: Vec<usize> = (0..n).filter(|b| owners[*b] == victim).collect();
    let mut dead = srv.remove(victim);
    dead.child.kill().expect("kill -9");
    let _ = dead.child.wait();
    for b in &theirs {
        listeners[*b].abort();
    }
    let killed = Instant::now();
    let survivors: Vec<PathBuf> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| dirs[i].path().join("state/journal.db"))
        .collect();
    let want: Vec<String> = theirs.iter().map(|b| format!("b{b}")).collect();
    // A round (5 s) plus the lease TTL, plus a round to see the broker down, plus slack.
    let deadline = killed + Duration::from_secs(5 + TTL + 5 + 20);
    let seen = loop {
        let seen: Vec<String> = survivors
            .iter()
            .flat_map(|db| self_alerted(db, "socket-down"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if want.iter().all(|w| seen.contains(w)) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "detected {seen:?} of {want:?}; logs:\n{}\n{}",
            srv[0].log(),
            srv[1].log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!(
        "the dead instance's {} dead broker(s) detected by the survivors {:?} after kill -9",
        want.len(),
        killed.elapsed()
    );
    assert_eq!(seen, want, "only the dead share's brokers are down");
}
