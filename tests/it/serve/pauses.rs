//! Pauses end to end (issue 14, finding 12): every bad input to the API gets its 4xx and
//! changes nothing; `kafka-healing pause` and `resume` go through the running service;
//! a paused broker's alert is skipped with the pause's words, the pause survives a
//! restart, and `resume` heals it at once; a cluster pause expires by itself and releases
//! what it held; `history`, the journal's events and `/metrics` show it all.

use serde_json::{Value, json};

use super::harness::*;
use crate::common::{Scratch, run, stderr, stdout};

fn rules(rec: &str) -> String {
    format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
    broker_down: true
  - name: lag
    matchers: ['alertname="TopicLag"']
    runbook: describe
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["{rec}", "restart-{{{{target.node_id}}}}"]
  describe:
    disruptive: false
    steps:
      - name: describe
        exec: ["{rec}", "describe"]
"#
    )
}

async fn post_pause(srv: &Server, body: &str) -> (u16, Value) {
    srv.send_body(reqwest::Method::POST, "/api/v1/pauses", Some(body), true)
        .await
}

async fn pauses(srv: &Server) -> Vec<Value> {
    let (st, v) = srv.get("/api/v1/pauses").await;
    assert_eq!(st, 200, "{v}");
    v["pauses"].as_array().cloned().unwrap_or_default()
}

/// Runs the CLI with `args` against `srv` (its config, its URL).
fn cli(srv: &Server, cmd: &str, args: &[&str]) -> std::process::Output {
    let config = srv.dir.join("config.yaml");
    let mut all = vec![cmd, "-c", config.to_str().unwrap(), "--url", &srv.url];
    all.extend_from_slice(args);
    run(&all)
}

/// Stops `srv` with SIGTERM and waits for its clean exit.
async fn stop(srv: Server) {
    srv.signal(nix::sys::signal::Signal::SIGTERM);
    let st = tokio::task::spawn_blocking(move || {
        let mut srv = srv;
        srv.child.wait().expect("wait")
    })
    .await
    .expect("join");
    assert!(st.success(), "clean exit: {st:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_pause_requests_get_a_clear_4xx_and_change_nothing() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    // A small body limit: the whole oversized body is sent before the 413 (a body of
    // megabytes would meet a closed connection half-way).
    let cfg = config("").replace(
        "  auth: { bearer_token: s3cret }\n",
        "  auth: { bearer_token: s3cret }\n  body_limit_bytes: 4096\n",
    );
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap()));
    let ok = r#"{"target": "kafka-2", "for": "30m", "reason": "upgrade"}"#;
    let long_reason = "r".repeat(501);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "{".into(),
            400,
            "malformed pause request: EOF while parsing an object at line 1 column 1",
        ),
        (
            "[]".into(),
            400,
            "malformed pause request: the body must be a JSON object",
        ),
        (
            r#"{"target": "kafka-2", "for": "30m", "reason": "x", "colour": "red"}"#.into(),
            400,
            "malformed pause request: unknown field `colour`, expected one of `target`, `cluster`, `for`, `reason`",
        ),
        (
            r#"{"for": "30m", "reason": "x"}"#.into(),
            400,
            "give `target` (a broker's node_id) or `\"cluster\": true` for every broker",
        ),
        (
            r#"{"cluster": false, "for": "30m", "reason": "x"}"#.into(),
            400,
            "give `target` (a broker's node_id) or `\"cluster\": true` for every broker",
        ),
        (
            r#"{"target": "kafka-2", "cluster": true, "for": "30m", "reason": "x"}"#.into(),
            400,
            "give either `target` or `\"cluster\": true`, not both",
        ),
        (
            r#"{"target": "kafka-9\n", "for": "30m", "reason": "x"}"#.into(),
            400,
            "`kafka-9\\n` is not a configured broker",
        ),
        (
            r#"{"target": 2, "for": "30m", "reason": "x"}"#.into(),
            400,
            "malformed pause request: invalid type: integer `2`, expected a string",
        ),
        (
            r#"{"target": "kafka-2", "reason": "x"}"#.into(),
            400,
            "`for` is missing or empty: give a duration such as 30m, 2h or 1h30m",
        ),
        (
            r#"{"target": "kafka-2", "for": 1800, "reason": "x"}"#.into(),
            400,
            "malformed pause request: invalid type: integer `1800`, expected a string",
        ),
        (
            r#"{"target": "kafka-2", "for": "0s", "reason": "x"}"#.into(),
            400,
            "`for` \"0s\" is too short: a pause lasts at least 1s",
        ),
        (
            r#"{"target": "kafka-2", "for": "-5m", "reason": "x"}"#.into(),
            400,
            "`for` \"-5m\" is not a duration: a positive number and a unit, such as 30m, 2h, 1h30m or 1d (expected number at 0)",
        ),
        (
            r#"{"target": "kafka-2", "for": "soon", "reason": "x"}"#.into(),
            400,
            "`for` \"soon\" is not a duration: a positive number and a unit, such as 30m, 2h, 1h30m or 1d (expected number at 0)",
        ),
        (
            r#"{"target": "kafka-2", "for": "8d", "reason": "x"}"#.into(),
            400,
            "`for` \"8d\" is too long: a pause lasts at most 7 days (168h); for longer, take the broker out of the config",
        ),
        (
            r#"{"target": "kafka-2", "for": "30m"}"#.into(),
            400,
            "`reason` is missing or empty: say why (it is shown with every decision the pause causes)",
        ),
        (
            r#"{"target": "kafka-2", "for": "30m", "reason": "  "}"#.into(),
            400,
            "`reason` is missing or empty: say why (it is shown with every decision the pause causes)",
        ),
        (
            format!(r#"{{"target": "kafka-2", "for": "30m", "reason": "{long_reason}"}}"#),
            400,
            "`reason` is 501 characters long; at most 500",
        ),
        (
            r#"{"target": "kafka-2", "for": "30m", "reason": "a\nb"}"#.into(),
            400,
            "`reason` contains the character U+000A (a control or bidirectional-formatting character); use plain text on one line",
        ),
    ];
    for (body, want_status, want_error) in &cases {
        let (st, v) = post_pause(&srv, body).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (*want_status, Some(*want_error)),
            "{body}"
        );
        assert_eq!(v["status"], "error");
    }
    // Credentials, size, methods, an unknown broker's route.
    let (st, v) = srv
        .send_body(reqwest::Method::POST, "/api/v1/pauses", Some(ok), false)
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("missing or wrong credentials"))
    );
    let (st, _) = srv
        .send_body(reqwest::Method::GET, "/api/v1/pauses", None, false)
        .await;
    assert_eq!(st, 401);
    let (st, _) = srv
        .send_body(
            reqwest::Method::DELETE,
            "/api/v1/pauses/cluster",
            None,
            false,
        )
        .await;
    assert_eq!(st, 401);
    let huge = format!(
        r#"{{"target": "kafka-2", "for": "30m", "reason": "{}"}}"#,
        "x".repeat(5000)
    );
    let (st, v) = post_pause(&srv, &huge).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (
            413,
            Some(
                "Failed to buffer the request body: length limit exceeded (server.body_limit_bytes = 4096)"
            )
        )
    );
    let (st, _) = srv
        .send_body(reqwest::Method::PUT, "/api/v1/pauses", Some(ok), true)
        .await;
    assert_eq!(st, 405);
    let (st, v) = srv
        .send_body(
            reqwest::Method::DELETE,
            "/api/v1/pauses/targets/kafka-9",
            None,
            true,
        )
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (404, Some("`kafka-9` is not a configured broker"))
    );
    // Nothing was paused.
    assert_eq!(pauses(&srv).await, Vec::<Value>::new());
    let m = srv.metrics().await;
    assert!(m.contains("kafka_healing_pauses_active 0\n"), "{m}");
    // The CLI checks duration and reason itself (exit 2, no request) and reports the
    // service's refusals (exit 1).
    let o = cli(
        &srv,
        "pause",
        &["--target", "kafka-2", "--for", "-5m", "--reason", "x"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: `for` \"-5m\" is not a duration: a positive number and a unit, such as 30m, 2h, 1h30m or 1d (expected number at 0)\n"
    );
    let o = cli(&srv, "pause", &["--cluster", "--for", "1h", "--reason", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cli(
        &srv,
        "pause",
        &["--target", "kafka-9", "--for", "1h", "--reason", "x"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}/api/v1/pauses: HTTP 400 Bad Request: `kafka-9` is not a configured broker\n",
            srv.url
        )
    );
    let o = cli(&srv, "resume", &["--target", "kafka-9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("HTTP 404 Not Found: `kafka-9` is not a configured broker\n"),
        "{}",
        stderr(&o)
    );
    // Dot segments would be resolved away by the URL (to `/api/v1/pauses`, the list):
    // refused before anything is sent. Other hostile names are one encoded segment.
    for bad in ["..", "."] {
        let o = cli(&srv, "resume", &["--target", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!("error: `{bad}` cannot be a name in the service's path\n")
        );
    }
    let o = cli(&srv, "resume", &["--target", "x/../../../-/reload#"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/api/v1/pauses/targets/x%2F..%2F..%2F..%2F-%2Freload%23: HTTP 404"),
        "{}",
        stderr(&o)
    );
    assert_eq!(pauses(&srv).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_broker_is_left_alone_across_a_restart_and_healed_on_resume() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let srv = Server::start(&s, &config(""), &rules(rec.to_str().unwrap()));
    // Paused through the CLI.
    let o = cli(
        &srv,
        "pause",
        &[
            "--target",
            "kafka-2",
            "--for",
            "30m",
            "--reason",
            "upgrade <3.9> \"rolling\"",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("kafka-2: paused until ")
            && out.ends_with(
                " (\"upgrade <3.9> \\\"rolling\\\"\"); end it early with kafka-healing resume --target kafka-2\n"
            ),
        "{out}"
    );
    let list = pauses(&srv).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let p = &list[0];
    assert_eq!(
        (
            &p["scope"],
            &p["target"],
            &p["reason"],
            &p["resume"],
            &p["resume_route"]
        ),
        (
            &json!("target"),
            &json!("kafka-2"),
            &json!("upgrade <3.9> \"rolling\""),
            &json!("kafka-healing resume --target kafka-2"),
            &json!("DELETE /api/v1/pauses/targets/kafka-2"),
        )
    );
    let until = p["until"].as_str().unwrap().to_string();
    assert_eq!(
        p["until_ms"].as_i64().unwrap() - p["from_ms"].as_i64().unwrap(),
        30 * 60_000
    );
    // kafka-2 goes down for its upgrade: skipped with the pause's words; nothing runs.
    let body = webhook("am", vec![alert("firing", down("kafka-2"))]);
    assert_eq!(srv.post(&body).await.0, 200);
    let list = srv.wait_until(15, "the skip", |l| !l.is_empty()).await;
    let reason = format!(
        "paused: kafka-2 is paused until {until} (\"upgrade <3.9> \\\"rolling\\\"\"); nothing runs for it meanwhile, and the alert is decided again when the pause ends if it still fires; end the pause early with kafka-healing resume --target kafka-2 (or DELETE /api/v1/pauses/targets/kafka-2)"
    );
    assert_eq!(
        (
            &list[0]["status"],
            &list[0]["target"],
            list[0]["reason"].as_str()
        ),
        (&json!("skipped"), &json!("kafka-2"), Some(reason.as_str()))
    );
    let m = srv.metrics().await;
    assert!(m.contains("kafka_healing_pauses_active 1\n"), "{m}");
    assert!(
        m.contains(&format!(
            "kafka_healing_pause_end_timestamp_seconds{{scope=\"target\",target=\"kafka-2\"}} {}\n",
            p["until_ms"].as_i64().unwrap() / 1000
        )),
        "{m}"
    );
    assert!(
        m.contains("kafka_healing_skips_total{cause=\"paused\"} 1\n"),
        "{m}"
    );
    // A restart: the pause is restored from the journal and still in force.
    let dir = srv.dir.clone();
    stop(srv).await;
    let srv = Server::start_in(&dir);
    assert!(
        srv.log().contains("pause restored from the journal"),
        "{}",
        srv.log()
    );
    let list = pauses(&srv).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["until"], json!(until));
    assert_eq!(srv.post(&body).await.0, 200);
    let list = srv.wait_until(15, "a second skip", |l| l.len() == 2).await;
    assert_eq!(list[1]["reason"].as_str(), Some(reason.as_str()));
    assert!(recorded(&dir, "restart-kafka-2").is_empty(), "nothing ran");
    // Resumed over the API: the held alert is decided again at once, and kafka-2 restarts.
    let (st, v) = srv
        .send_body(
            reqwest::Method::DELETE,
            "/api/v1/pauses/targets/kafka-2",
            None,
            true,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["resumed"]["target"], "kafka-2");
    let list = srv
        .wait_until(15, "the restart after the resume", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    assert_eq!(list.len(), 3, "{}", json!(list));
    assert_eq!(list[2]["target"], "kafka-2");
    assert_eq!(recorded(&dir, "restart-kafka-2").len(), 1);
    assert_eq!(pauses(&srv).await, Vec::<Value>::new());
    // Resuming again: nothing to do, said plainly.
    let (st, v) = srv
        .send_body(
            reqwest::Method::DELETE,
            "/api/v1/pauses/targets/kafka-2",
            None,
            true,
        )
        .await;
    assert_eq!((st, &v["resumed"]), (200, &Value::Null));
    let o = cli(&srv, "resume", &["--target", "kafka-2"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "kafka-2: not paused (nothing to resume)\n");
    // kafka-2 is back.
    let up = webhook("am", vec![alert("resolved", down("kafka-2"))]);
    assert_eq!(srv.post(&up).await.0, 200);

    // The cluster, for an hour: work without a target is held too. Then replaced by a
    // pause of 2 seconds, which expires by itself and releases what the first one held
    // (so no step of the test races a short pause).
    let (st, v) = post_pause(
        &srv,
        r#"{"cluster": true, "for": "1h", "reason": "network maintenance"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["pause"]["scope"], &v["pause"]["target"]),
        (&json!("cluster"), &Value::Null)
    );
    let lag = webhook(
        "am",
        vec![alert(
            "firing",
            json!({"alertname": "TopicLag", "topic": "orders"}),
        )],
    );
    assert_eq!(srv.post(&lag).await.0, 200);
    srv.wait_until(15, "the lag alert skipped", |l| {
        l.iter().any(|e| e["rule"] == "lag")
    })
    .await;
    let (st, v) = post_pause(
        &srv,
        r#"{"cluster": true, "for": "2s", "reason": "almost done"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let list = srv
        .wait_until(
            30,
            "the lag alert skipped, then run after the expiry",
            |l| {
                l.iter()
                    .any(|e| e["rule"] == "lag" && e["status"] == "succeeded")
            },
        )
        .await;
    let lag: Vec<&Value> = list.iter().filter(|e| e["rule"] == "lag").collect();
    assert_eq!(lag.len(), 2, "{}", json!(list));
    assert!(
        lag[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("paused: the cluster is paused until "),
        "{}",
        lag[0]
    );
    assert!(lag[0]["reason"].as_str().unwrap().ends_with(
        "end the pause early with kafka-healing resume --cluster (or DELETE /api/v1/pauses/cluster)"
    ));
    assert_eq!(recorded(&dir, "describe").len(), 1);
    assert_eq!(pauses(&srv).await, Vec::<Value>::new());
    let m = srv.metrics().await;
    assert!(m.contains("kafka_healing_pauses_active 0\n"), "{m}");
    assert!(
        !m.contains("kafka_healing_pause_end_timestamp_seconds{"),
        "{m}"
    );
    assert!(
        m.contains("kafka_healing_skips_total{cause=\"paused\"} 2\n"),
        "{m}"
    );

    // The journal: paused and resumed events, and history shows them.
    let j = kafka_healing::journal::Journal::open_read_only(&dir.join("state/journal.db")).unwrap();
    let recs = j.recent_pauses(10, None).unwrap();
    let states: Vec<(Option<&str>, Option<&str>)> = recs
        .iter()
        .map(|r| (r.target.as_deref(), r.ended_by.map(|e| e.as_str())))
        .collect();
    assert_eq!(
        states,
        vec![
            (None, Some("expired")),
            (None, Some("replaced")),
            (Some("kafka-2"), Some("resumed"))
        ]
    );
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("state/journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let kinds: Vec<(String, Option<String>)> = conn
        .prepare("SELECT kind, target FROM events WHERE kind IN ('paused', 'resumed') ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("paused".into(), Some("kafka-2".into())),
            ("resumed".into(), Some("kafka-2".into())),
            ("paused".into(), None),
            ("paused".into(), None),
            ("resumed".into(), None),
        ]
    );
    let replaced: String = conn
        .query_row(
            "SELECT message FROM events WHERE kind = 'paused' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        replaced.starts_with("the cluster paused until ")
            && replaced.contains(" (2s): \"almost done\"; nothing runs for it meanwhile; end it early with kafka-healing resume --cluster (or DELETE /api/v1/pauses/cluster); it replaces the pause until ")
            && replaced.ends_with(" (\"network maintenance\")"),
        "{replaced}"
    );
    let o = run(&["history", "-c", dir.join("config.yaml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    // The pauses section, without the time column.
    let tail: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.ends_with("pauses"))
        .map(|l| l.split_once("  ").map_or(l, |(_, rest)| rest).trim_start())
        .collect();
    assert_eq!(tail.len(), 7, "{out}");
    assert_eq!(tail[0], "event     target      pauses", "{out}");
    assert_eq!(tail[1], "resumed   cluster     expired", "{out}");
    assert!(
        tail[2].starts_with("paused    cluster     until ")
            && tail[2].ends_with(" (2s): \"almost done\""),
        "{out}"
    );
    assert_eq!(
        tail[3], "resumed   cluster     replaced by a new pause",
        "{out}"
    );
    assert!(
        tail[4].starts_with("paused    cluster     until ")
            && tail[4].ends_with(" (1h): \"network maintenance\""),
        "{out}"
    );
    assert_eq!(
        tail[5], "resumed   kafka-2     ended early by resume",
        "{out}"
    );
    assert!(
        tail[6].starts_with("paused    kafka-2     until ")
            && tail[6].ends_with(" (30m): \"upgrade <3.9> \\\"rolling\\\"\""),
        "{out}"
    );
    let o = run(&[
        "history",
        "-c",
        dir.join("config.yaml").to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let states: Vec<&str> = v["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["expired", "replaced", "resumed"]);
    // The events carry the pause's words.
    let msgs: Vec<String> = conn
        .prepare("SELECT message FROM events WHERE kind = 'resumed' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        msgs[0].starts_with("kafka-2 resumed before its pause ended (it was paused until "),
        "{msgs:?}"
    );
    assert!(
        msgs[1].starts_with("the cluster: the pause ended at "),
        "{msgs:?}"
    );
}
