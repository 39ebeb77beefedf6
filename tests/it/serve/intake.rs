//! The webhook's answers to bad input: 401, 413, 400 (bad JSON, wrong version), 503 when
//! the journal cannot write, and in every case nothing half-written.

use serde_json::json;

use super::harness::*;
use crate::common::Scratch;

/// The answer a webhook request gets when the journal cannot take its alerts.
fn assert_journal_unavailable(status: u16, v: &serde_json::Value) {
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("journal unavailable"),
        "{v}"
    );
}

async fn alert_rows(srv: &Server) -> u64 {
    // Executions are created only from journaled alerts; count the journal's alerts.
    let j = kafka_healing::journal::Journal::open_read_only(&srv.dir.join("state/journal.db"))
        .expect("journal");
    j.alert_count().expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_4xx_and_write_nothing() {
    let s = Scratch::new();
    let cfg = config("").replace(
        "  auth: { bearer_token: s3cret }\n",
        "  auth: { bearer_token: s3cret }\n  body_limit_bytes: 4096\n",
    );
    let srv = Server::start(&s, &cfg, NOOP_RULES);
    let good = webhook("r", vec![alert("firing", down("kafka-1"))]);
    let (st, v) = srv.post_with(&good, None).await;
    assert_eq!(
        (st, v["error"].clone()),
        (401, json!("missing or wrong credentials"))
    );
    let (st, _) = srv.post_with(&good, Some("Bearer wrong")).await;
    assert_eq!(st, 401);
    let (st, _) = srv.post_with(&good, Some("Basic czNjcmV0Og==")).await;
    assert_eq!(st, 401);
    let big = webhook(
        "r",
        vec![alert(
            "firing",
            json!({"alertname": "X", "v": "x".repeat(5000)}),
        )],
    );
    let (st, v) = srv.post(&big).await;
    assert_eq!(st, 413, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("server.body_limit_bytes = 4096"),
        "{v}"
    );
    let (st, v) = srv.post("{\"version\": \"4\", \"alerts\": [").await;
    assert_eq!(st, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed webhook body at line 1"),
        "{v}"
    );
    let (st, v) = srv
        .post(&good.replace("\"version\":\"4\"", "\"version\":\"3\""))
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"],
        "unsupported webhook version \"3\": kafka-healing speaks Alertmanager's version \"4\""
    );
    let (st, v) = srv.post("[]").await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = srv
        .post(&good.replace("Z\",\"status\":\"firing\"", "Z\",\"status\":\"pending\""))
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        alert_rows(&srv).await,
        0,
        "nothing journaled from rejected requests"
    );
    assert!(srv.executions().await.is_empty());
    let (st, _) = srv.post(&good).await;
    assert_eq!(st, 200);
    assert_eq!(alert_rows(&srv).await, 1);
    // Metrics count the refusals by reason.
    let m = srv.metrics().await;
    assert!(
        m.contains("kafka_healing_webhook_rejected_total{reason=\"unauthorized\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("kafka_healing_webhook_rejected_total{reason=\"too_large\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kafka_healing_webhook_rejected_total{reason=\"bad_request\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("kafka_healing_alerts_received_total{status=\"firing\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_that_cannot_write_answers_503() {
    let s = Scratch::new();
    let srv = Server::start(&s, &config(""), NOOP_RULES);
    let good = webhook("r", vec![alert("firing", down("kafka-1"))]);
    assert_eq!(srv.post(&good).await.0, 200);
    // Replace the journal's files under the running server (root ignores permissions).
    let state = s.path().join("state");
    std::fs::rename(&state, s.path().join("state.moved")).unwrap();
    std::fs::create_dir_all(state.join("journal.db")).unwrap();
    let (st, v) = srv.post(&good).await;
    assert_journal_unavailable(st, &v);
    let ready = reqwest::get(format!("{}/-/ready", srv.url)).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // The moved journal holds exactly the one acknowledged alert: nothing half-written.
    let j =
        kafka_healing::journal::Journal::open_read_only(&s.path().join("state.moved/journal.db"))
            .unwrap();
    assert_eq!(j.alert_count().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_journaled_in_part_answers_503_and_what_was_journaled_is_decided() {
    let s = Scratch::new();
    let srv = Server::start(&s, &config(""), NOOP_RULES);
    let part = kafka_healing::journal::INTAKE_PART;
    // The second part of the request holds kafka-70, whose insert the trigger refuses.
    let side = rusqlite::Connection::open(srv.dir.join("state/journal.db")).unwrap();
    side.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    side.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN instr(NEW.labels, '\"kafka-70\"') > 0 \
         BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END;",
    )
    .unwrap();
    let alerts = (0..3 * part)
        .map(|n| alert("firing", down(&format!("kafka-{n}"))))
        .collect();
    let (st, v) = srv.post(&webhook("r", alerts)).await;
    assert_journal_unavailable(st, &v);
    assert_eq!(alert_rows(&srv).await, 2 * part as u64, "parts 1 and 3");
    // Journaled is decided: nothing waits for a restart to be decided.
    let j =
        kafka_healing::journal::Journal::open_read_only(&srv.dir.join("state/journal.db")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !j.undecided_alerts(0, 1000).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "journaled alerts left undecided"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And the backlog keeps no place for the part that was not journaled.
    loop {
        let m = srv.metrics().await;
        if m.contains("kafka_healing_decision_backlog 0\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backlog never back to 0: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let s = Scratch::new();
    let srv = Server::start(&s, &config(""), NOOP_RULES);
    let h = reqwest::get(format!("{}/-/healthy", srv.url))
        .await
        .unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let r = reqwest::get(format!("{}/-/ready", srv.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ready: 1 rules\n");
    let (st, v) = srv.get("/api/v1/executions?status=bogus").await;
    assert_eq!(
        (st, v["error"].clone()),
        (400, json!("unknown status `bogus`"))
    );
    let (st, _) = srv.get("/api/v1/executions?colour=red").await;
    assert_eq!(st, 400);
    let (st, _) = srv.get("/api/v1/executions/999").await;
    assert_eq!(st, 404);
    let (st, _) = srv.get("/api/v1/executions/abc").await;
    assert_eq!(st, 400);
    let no_auth = reqwest::get(format!("{}/api/v1/executions", srv.url))
        .await
        .unwrap();
    assert_eq!(no_auth.status().as_u16(), 401);
    assert_eq!(
        no_auth.headers()["www-authenticate"],
        "Bearer realm=\"kafka-healing\""
    );
    // Without a `coordination:` section there is no lease: no coordination series at all
    // (a `coordination_up 0` would page whoever alerts on 0), the others as ever.
    let m = srv.metrics().await;
    assert!(!m.contains("kafka_healing_coordination_"), "{m}");
    assert!(m.contains("\nkafka_healing_pauses_active 0\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_the_webhook_over_https() {
    let s = Scratch::new();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    s.write("tls/cert.pem", &cert.cert.pem());
    s.write("tls/key.pem", &cert.signing_key.serialize_pem());
    let cfg = config("").replace(
        "  auth: { bearer_token: s3cret }\n",
        "  auth: { bearer_token: s3cret }\n  tls: { cert_file: tls/cert.pem, key_file: tls/key.pem }\n",
    );
    let srv = Server::start(&s, &cfg, NOOP_RULES);
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = webhook("r", vec![alert("firing", down("kafka-1"))]);
    let resp = client
        .post(format!("{}/api/v1/alerts", srv.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(srv.url.replace("https://", "http://") + "/api/v1/alerts")
        .body(body)
        .send()
        .await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));
}

/// Back-pressure: when more alerts wait for a decision than `server.max_pending_alerts`, the
/// webhook answers 503 *before* journaling (Alertmanager retries it), and every alert of an
/// answered-200 request is in the journal. The storm is of distinct alerts whose decisions
/// each cost a journal commit, so the intake outruns the decision loop.
#[tokio::test(flavor = "multi_thread")]
async fn decision_backlog_answers_503_before_journaling() {
    let s = Scratch::new();
    let rules = r#"rules:
  - name: per-topic
    matchers: ['alertname="TopicLag"']
    runbook: describe
    params:
      topic: { value: "{{alert.labels.topic}}", pattern: "[a-z0-9]+" }
runbooks:
  describe:
    disruptive: false
    steps:
      - { name: d, exec: ["true"] }
"#;
    // A queue that never fills: the diagnostics admission (its own test) stays out of it.
    let cfg = config("recovery: { max_concurrent_diagnostics: 1, max_queued: 1000000 }\n")
        .replace("  auth: {", "  max_pending_alerts: 100\n  auth: {");
    assert!(cfg.contains("max_pending_alerts: 100"), "{cfg}");
    let srv = Server::start(&s, &cfg, rules);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for r in 0..64 {
        let body = webhook(
            "am",
            (0..200)
                .map(|i| {
                    alert(
                        "firing",
                        json!({"alertname": "TopicLag", "topic": format!("r{r}x{i}")}),
                    )
                })
                .collect(),
        );
        let (client, url) = (client.clone(), format!("{}/api/v1/alerts", srv.url));
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, v)
        }));
    }
    let (mut ok, mut refused) = (0u64, Vec::new());
    for t in tasks {
        let (status, v) = t.await.expect("task");
        match status {
            200 => ok += 200,
            503 => refused.push(v["error"].as_str().unwrap_or_default().to_string()),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "64 × 200 distinct alerts never outran the decision loop"
    );
    for e in &refused {
        assert!(
            e.starts_with("decision backlog: ")
                && e.ends_with("(server.max_pending_alerts = 100); retry later"),
            "{e}"
        );
    }
    // Exactly the acknowledged alerts are journaled: the refused ones were not written.
    assert_eq!(alert_rows(&srv).await, ok);
    // Once the loop has caught up, the webhook takes alerts again.
    let body = webhook(
        "am",
        vec![alert(
            "firing",
            json!({"alertname": "TopicLag", "topic": "late"}),
        )],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (st, v) = srv.post(&body).await;
        if st == 200 {
            break;
        }
        assert_eq!(st, 503, "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog never drained: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(alert_rows(&srv).await, ok + 1);
}

/// Admission: while the diagnostics queue is full, a request of diagnostics alerts waits
/// `server.admission_wait_ms`, then gets 503 and is not journaled (Alertmanager retries it
/// later, rather than it being journaled and skipped); an alert of a disruptive rule and a
/// resolved alert are taken at once; room freed by a cancellation lets diagnostics in again.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_diagnostics_queue_holds_back_diagnostics_only() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "30");
    let rules = format!(
        r#"rules:
  - name: per-topic
    matchers: ['alertname="TopicLag"']
    runbook: describe
    params:
      topic: {{ value: "{{{{alert.labels.topic}}}}", pattern: "[a-z0-9]+" }}
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  describe:
    disruptive: false
    steps:
      - {{ name: d, exec: ["{rec}", "topic-{{{{params.topic}}}}"] }}
  restart:
    steps:
      - {{ name: r, exec: ["{rec}", "restart-{{{{target.node_id}}}}"] }}
"#,
        rec = rec.display()
    );
    let cfg = config("recovery: { max_concurrent_diagnostics: 1, max_queued: 10 }\n")
        .replace("  auth: {", "  admission_wait_ms: 1500\n  auth: {");
    let srv = Server::start(&s, &cfg, &rules);
    let topic = |t: &str, status: &str| {
        webhook(
            "am",
            vec![alert(status, json!({"alertname": "TopicLag", "topic": t}))],
        )
    };
    // One runs (for 30 s), ten wait: the queue is full.
    let first = webhook(
        "am",
        (0..11)
            .map(|i| {
                alert(
                    "firing",
                    json!({"alertname": "TopicLag", "topic": format!("t{i}")}),
                )
            })
            .collect(),
    );
    assert_eq!(srv.post(&first).await.0, 200);
    srv.wait_until(20, "one running and ten queued", |l| {
        l.iter().filter(|e| e["status"] == "running").count() == 1
            && l.iter().filter(|e| e["status"] == "queued").count() == 10
    })
    .await;
    let rows = alert_rows(&srv).await;
    // Another diagnostics alert: held for the wait, then refused, not journaled.
    let t0 = std::time::Instant::now();
    let (st, v) = srv.post(&topic("more", "firing")).await;
    let held = t0.elapsed();
    assert_eq!(st, 503, "{v}");
    assert!(
        held >= std::time::Duration::from_millis(1400),
        "answered after {held:?}, not after the admission wait"
    );
    assert_eq!(
        v["error"],
        "diagnostics queue full: 10 executions wait (recovery.max_queued = 10) and none \
         started within 1500 ms (server.admission_wait_ms); retry later"
    );
    assert_eq!(
        alert_rows(&srv).await,
        rows,
        "the refused alert is not journaled"
    );
    // A flood while full: at most 256 requests are held, the others refused at once.
    let client = reqwest::Client::new();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{}/api/v1/alerts", srv.url));
            let body = topic(&format!("f{i}"), "firing");
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                (status, v["error"].as_str().unwrap_or_default().to_string())
            })
        })
        .collect();
    let mut at_once = 0;
    for t in flood {
        let (status, e) = t.await.expect("task");
        assert_eq!(status, 503, "{e}");
        if e.ends_with("and 256 requests are held back already; retry later") {
            at_once += 1;
        } else {
            assert!(e.contains("none started within 1500 ms"), "{e}");
        }
    }
    assert!(
        at_once >= 44,
        "only {at_once} of 300 refused beyond the 256 held"
    );
    assert_eq!(
        alert_rows(&srv).await,
        rows,
        "nothing of the flood is journaled"
    );
    // A broker-down alert is taken at once, whatever the diagnostics queue.
    let t0 = std::time::Instant::now();
    let (st, v) = srv
        .post(&webhook("am", vec![alert("firing", down("kafka-2"))]))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(t0.elapsed() < std::time::Duration::from_millis(1000));
    srv.wait_until(20, "the broker-down run", |l| {
        l.iter()
            .any(|e| e["rule"] == "broker-down" && e["status"] == "running")
    })
    .await;
    // A resolved alert is taken at once too, and cancels its queued work: room again.
    let t0 = std::time::Instant::now();
    assert_eq!(srv.post(&topic("t5", "resolved")).await.0, 200);
    assert!(t0.elapsed() < std::time::Duration::from_millis(1000));
    srv.wait_until(20, "t5 cancelled", |l| {
        l.iter().any(|e| e["status"] == "cancelled")
    })
    .await;
    let (st, v) = srv.post(&topic("more", "firing")).await;
    assert_eq!(st, 200, "room freed by the cancellation: {v}");
    srv.wait_until(20, "the new diagnostics queued", |l| {
        l.iter().filter(|e| e["status"] == "queued").count() == 10
    })
    .await;
}

/// Finding 5 (issue 14): remediation has its own queue budget. With the diagnostics queue
/// full, a broker-down alert that must wait is queued, not skipped; when the remediation
/// budget itself is full, a request that would add to it gets 503 before journaling
/// (Alertmanager retries it), never 200 and then a silent skip; one that needs no place (a
/// resolve, diagnostics) is still taken, and room freed lets the refused alert in.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_remediation_budget_answers_503_and_diagnostics_never_take_it() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "30");
    let rules = format!(
        r#"rules:
  - name: per-topic
    matchers: ['alertname="TopicLag"']
    runbook: describe
    params:
      topic: {{ value: "{{{{alert.labels.topic}}}}", pattern: "[a-z0-9]+" }}
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
    broker_down: true
runbooks:
  describe:
    disruptive: false
    steps:
      - {{ name: d, exec: ["{rec}", "topic-{{{{params.topic}}}}"] }}
  restart:
    steps:
      - {{ name: r, exec: ["{rec}", "restart-{{{{target.node_id}}}}"] }}
"#,
        rec = rec.display()
    );
    let cfg = config(
        "recovery: { max_concurrent_diagnostics: 1, max_queued: 10, max_queued_remediation: 1 }\n",
    )
    .replace("  auth: {", "  admission_wait_ms: 0\n  auth: {");
    let srv = Server::start(&s, &cfg, &rules);
    // Diagnostics fill their queue: one runs, ten wait, the twelfth is skipped.
    let lags = webhook(
        "am",
        (0..12)
            .map(|i| {
                alert(
                    "firing",
                    json!({"alertname": "TopicLag", "topic": format!("t{i}")}),
                )
            })
            .collect(),
    );
    assert_eq!(srv.post(&lags).await.0, 200);
    srv.wait_until(20, "ten diagnostics queued", |l| {
        l.iter().filter(|e| e["status"] == "queued").count() == 10
    })
    .await;
    // kafka-1 restarts; kafka-2 must wait for the cluster slot: queued, in its own budget.
    let srv = &srv;
    let post_down = |node: &'static str, status: &'static str| {
        let body = webhook("am", vec![alert(status, down(node))]);
        async move { srv.post(&body).await }
    };
    assert_eq!(post_down("kafka-1", "firing").await.0, 200);
    // (The webhook sees the budget as the engine last published it.)
    srv.wait_until(20, "kafka-1 running", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-1" && e["status"] == "running")
    })
    .await;
    assert_eq!(post_down("kafka-2", "firing").await.0, 200);
    srv.wait_until(20, "kafka-2 queued behind kafka-1", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-1" && e["status"] == "running")
            && l.iter()
                .any(|e| e["target"] == "kafka-2" && e["status"] == "queued")
    })
    .await;
    let list = srv.executions().await;
    assert!(
        !list
            .iter()
            .any(|e| e["rule"] == "broker-down" && e["status"] == "skipped"),
        "no broker-down work was skipped: {list:?}"
    );
    // The remediation budget is full (1 of 1): kafka-3 is refused before journaling.
    let rows = alert_rows(srv).await;
    let (st, v) = post_down("kafka-3", "firing").await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(
        v["error"],
        "remediation queue full: 1 executions wait (recovery.max_queued_remediation = 1); \
         retry later"
    );
    assert_eq!(
        alert_rows(srv).await,
        rows,
        "the refused alert is not journaled"
    );
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains(r#"kafka_healing_webhook_rejected_total{reason="remediation_full"} 1"#),
        "{metrics}"
    );
    // A request that needs no remediation place is taken: a resolve (it frees kafka-2's).
    assert_eq!(post_down("kafka-2", "resolved").await.0, 200);
    srv.wait_until(20, "kafka-2 cancelled", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-2" && e["status"] == "cancelled")
    })
    .await;
    // Room again: Alertmanager's retry of kafka-3 is taken and queued.
    let (st, v) = post_down("kafka-3", "firing").await;
    assert_eq!(st, 200, "{v}");
    srv.wait_until(20, "kafka-3 queued", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-3" && e["status"] == "queued")
    })
    .await;
}
