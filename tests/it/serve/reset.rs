//! `kafka-healing reset` with hostile targets (issue 17, finding 9): the target is one
//! percent-encoded path segment, so no name can reach another route (`/-/reload`), and an
//! unknown target is an error, from the CLI and from the API.

use super::harness::*;
use crate::common::{Scratch, run, stderr};

const RULES: &str = "rules: []\n";

/// The count of reloads (any result) in the service's metrics.
async fn reloads(srv: &Server) -> u64 {
    srv.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("kafka_healing_reloads_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_reset_targets_reach_no_other_route_and_unknown_ones_fail() {
    let s = Scratch::new();
    let srv = Server::start(&s, &config(""), RULES);
    // The counter counts: a real reload moves it, so "unchanged" below means something.
    assert_eq!(reloads(&srv).await, 0);
    assert_eq!(srv.post_path("/-/reload").await.0, 200);
    assert_eq!(reloads(&srv).await, 1);
    let cfg = s.path().join("config.yaml");
    let cfg = cfg.to_str().unwrap();
    for target in [
        "x/../../../../-/reload#",
        "../../../-/reload",
        "x/../../../../-/reload?",
        "%2e%2e/%2e%2e/%2e%2e/-/reload",
        "kafka-1/../../../../-/reload",
    ] {
        let o = run(&["reset", "-c", cfg, target, "--url", &srv.url]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{target:?}: {err}");
        assert!(
            err.contains("HTTP 404 Not Found: ")
                && err.contains(&format!("`{target}` is not a configured broker")),
            "{target:?}: {err}"
        );
        let o = run(&["reset", "-c", cfg, "--rule", target, "--url", &srv.url]);
        assert_eq!(o.status.code(), Some(1), "rule {target:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("no rule named {target:?} is loaded")),
            "rule {target:?}: {}",
            stderr(&o)
        );
    }
    // `.` and `..` cannot be one segment (URL parsers resolve them): refused before
    // anything is sent.
    for target in ["..", ".", ""] {
        let o = run(&["reset", "-c", cfg, target, "--url", &srv.url]);
        assert_eq!(o.status.code(), Some(2), "{target:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot be a TARGET"),
            "{target:?}: {}",
            stderr(&o)
        );
    }
    // The server side: an encoded slash stays inside the one segment, and names no broker.
    let (st, body) = srv
        .post_path("/api/v1/targets/x%2F..%2F..%2F..%2F..%2F-%2Freload%23/reset")
        .await;
    assert_eq!(st, 404, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(
        body["error"],
        "`x/../../../../-/reload#` is not a configured broker"
    );
    assert_eq!(reloads(&srv).await, 1, "no reset reached /-/reload");
    // A known target still resets (nothing open: nothing closed).
    let o = run(&["reset", "-c", cfg, "kafka-2", "--url", &srv.url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(crate::common::stdout(&o), "kafka-2: no open circuit\n");
}
