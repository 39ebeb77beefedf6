//! The step executor against real child processes, a tiny HTTP server and TCP listeners.
//!
//! Scripts are test fixtures run as `/bin/sh SCRIPT ARGS…` (the executor itself never
//! involves a shell: it runs whatever argv it is given).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use kafka_healing::journal::{StepRecord, StepStatus};
use kafka_healing::rules::model::OnFailure;
use kafka_healing::runbook::RenderedStep;
use kafka_healing::runbook::exec::{
    DEFAULT_PATH, ENV_ALLOWED_PREFIX, ENV_ALLOWLIST, ExecOptions, STEP_COOKIE_VAR, child_env,
    run_step,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::common::Scratch;

/// Upper bound on any single `run_step` in these tests.
const BOUND: Duration = Duration::from_secs(60);

fn step(kind: &'static str, argv: &[&str]) -> RenderedStep {
    RenderedStep {
        name: format!("test-{kind}"),
        kind,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        body: None,
        timeout_seconds: Some(30.0),
        retries: 0,
        on_failure: OnFailure::Abort,
    }
}

/// Fast pauses; no proxy (the test environment's proxy settings must not catch 127.0.0.1).
fn opts() -> ExecOptions {
    ExecOptions {
        kill_grace: Duration::from_secs(1),
        retry_pause: Duration::from_millis(100),
        wait_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_millis(500),
        http_client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client"),
        ..ExecOptions::new(child_env(&[]))
    }
}

/// Runs `s` with a bound, returning the record and the wall time taken.
async fn run(
    s: &RenderedStep,
    o: &ExecOptions,
    cancel: &CancellationToken,
) -> (StepRecord, Duration) {
    let t0 = Instant::now();
    let rec = tokio::time::timeout(BOUND, run_step(s, 7, o, cancel))
        .await
        .expect("run_step finished within its bound");
    (rec, t0.elapsed())
}

/// Writes a `/bin/sh` script fixture and returns the argv prefix that runs it.
fn script(dir: &Scratch, name: &str, body: &str) -> Vec<String> {
    let p = dir.write(name, body);
    vec!["/bin/sh".to_string(), p.display().to_string()]
}

fn argv_of(prefix: Vec<String>, rest: &[&str]) -> Vec<String> {
    let mut v = prefix;
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn exec_step(argv: Vec<String>) -> RenderedStep {
    RenderedStep {
        argv,
        ..step("exec", &[])
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Waits (bounded) until `path` has a pid in it.
async fn read_pid(path: &Path) -> i32 {
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", path.display());
}

/// Whether `pid` is gone (or a zombie awaiting its new parent's reaping), within 5 s.
async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                // The state follows the parenthesised command name.
                let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
                if state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X')) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn argv_reaches_the_program_byte_for_byte() {
    let dir = Scratch::new();
    let out = dir.path().join("argv.bin");
    let prefix = script(
        &dir,
        "argv.sh",
        "out=$1; shift\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$out\"\n",
    );
    let hostile = [
        "plain",
        "two words",
        "",
        "$(touch pwned)",
        "`touch pwned`",
        "; touch pwned",
        "a\nb\tc",
        "'\"\\",
        "*",
        "--flag=x",
        "ünïcødé ✓",
        "-",
        // What `setpriv` would take for options, were the argv not after its `--`.
        "--",
        "--pdeathsig",
        "--reuid=0",
    ];
    let mut rest = vec![path_str(&out)];
    rest.extend(hostile.iter().map(|s| s.to_string()));
    let s = exec_step(argv_of(
        prefix,
        &rest.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // Through `setpriv` (this host has it) and directly: the same bytes.
    let through = opts();
    assert!(
        through.setpriv.is_some(),
        "util-linux setpriv is needed here"
    );
    let direct = ExecOptions {
        setpriv: None,
        ..opts()
    };
    for o in [through, direct] {
        let _ = std::fs::remove_file(&out);
        let (rec, _) = run(&s, &o, &CancellationToken::new()).await;
        assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
        assert_eq!(rec.exit_code, Some(0));
        assert_eq!(rec.signal, None);
        assert_eq!(rec.attempts, 1);
        assert_eq!(rec.index, 7);
        assert_eq!(rec.argv, s.argv);
        let bytes = std::fs::read(&out).expect("argv dump");
        let mut expected = Vec::new();
        for a in hostile {
            expected.extend_from_slice(a.as_bytes());
            expected.push(0);
        }
        assert_eq!(bytes, expected, "setpriv: {:?}", o.setpriv);
        assert!(!dir.path().join("pwned").exists());
    }
}

/// The step's own view of its parent-death signal, as `setpriv --dump` prints it (the
/// signal survives `exec`). The step first sleeps, and the thread that polled its start
/// has exited by then: the signal must not fire while the service lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_has_a_parent_death_signal_that_only_the_service_s_death_fires() {
    let Some(setpriv) = opts().setpriv else {
        panic!("util-linux setpriv with --pdeathsig is needed here");
    };
    let dump = format!("sleep 1; exec {} --dump", setpriv.display());
    for (o, want) in [
        (opts(), "Parent death signal: KILL"),
        (
            ExecOptions {
                setpriv: None,
                ..opts()
            },
            "Parent death signal: [none]",
        ),
    ] {
        let s = step("exec", &["/bin/sh", "-c", &dump]);
        let cancel = CancellationToken::new();
        // Polled first on a thread of its own, which exits once the step has started (as
        // an idle blocking-pool thread would), then finished here.
        let mut fut = Box::pin(async move { run_step(&s, 0, &o, &cancel).await });
        let handle = tokio::runtime::Handle::current();
        let (mut fut, early) = std::thread::spawn(move || {
            let early = handle.block_on(async {
                tokio::select! {
                    rec = &mut fut => Some(rec),
                    _ = tokio::time::sleep(Duration::from_millis(300)) => None,
                }
            });
            (fut, early)
        })
        .join()
        .expect("thread");
        assert!(early.is_none(), "the step ended before its thread did");
        let rec = tokio::time::timeout(BOUND, &mut fut)
            .await
            .expect("bounded");
        assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
        assert_eq!(rec.signal, None);
        assert!(rec.stdout.contains(want), "{}", rec.stdout);
    }
}

#[tokio::test]
async fn environment_is_the_allowlist_plus_extras() {
    let extras = vec![
        ("KAFKA_HEALING_RULE".to_string(), "broker-down".to_string()),
        (
            "KAFKA_HEALING_LABEL_INSTANCE".to_string(),
            "k1:9092; rm -rf /".to_string(),
        ),
    ];
    let env = child_env(&extras);
    let o = ExecOptions {
        env: env.clone(),
        ..opts()
    };
    // `env -0` is run directly: no shell adds PWD, SHLVL or `_`.
    let (rec, _) = run(&step("exec", &["env", "-0"]), &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    let mut seen: BTreeSet<(String, String)> = rec
        .stdout
        .split('\0')
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Plus the try's cookie (`SERVICE_PID-N`), by which a stopped step's daemons are found.
    let cookie: Vec<_> = seen
        .iter()
        .filter(|(k, _)| k == STEP_COOKIE_VAR)
        .cloned()
        .collect();
    assert_eq!(cookie.len(), 1, "{seen:?}");
    assert!(
        cookie[0].1.starts_with(&format!("{}-", std::process::id())),
        "{cookie:?}"
    );
    seen.remove(&cookie[0]);
    let want: BTreeSet<(String, String)> = env.iter().cloned().collect();
    assert_eq!(seen, want);
    assert!(seen.contains(&("KAFKA_HEALING_RULE".into(), "broker-down".into())));
    assert!(seen.contains(&(
        "KAFKA_HEALING_LABEL_INSTANCE".into(),
        "k1:9092; rm -rf /".into()
    )));
    let names: BTreeSet<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains("PATH"));
    // Whatever the test process has beyond the allowlist (cargo sets CARGO*, for one) is absent.
    let parent_only: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !ENV_ALLOWLIST.contains(&k.as_str()) && !k.starts_with(ENV_ALLOWED_PREFIX))
        .collect();
    assert!(
        !parent_only.is_empty(),
        "the test process has non-allowlisted variables"
    );
    for k in &parent_only {
        assert!(!names.contains(k.as_str()), "{k} leaked to the child");
    }
    // PATH is the parent's when it has one, the default otherwise.
    let path = seen
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let parent_path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
    assert_eq!(path, Some(parent_path));
}

#[tokio::test]
async fn exit_code_stdout_and_stderr_are_captured() {
    let dir = Scratch::new();
    let prefix = script(&dir, "fail.sh", "echo out\necho 'err line' >&2\nexit 3\n");
    let (rec, _) = run(&exec_step(prefix), &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.exit_code, Some(3));
    assert_eq!(rec.signal, None);
    assert_eq!(rec.stdout, "out\n");
    assert_eq!(rec.stderr, "err line\n");
    assert!(!rec.stdout_truncated && !rec.stderr_truncated);
    assert_eq!(rec.error, None);
    assert_eq!(rec.attempts, 1);
}

#[tokio::test]
async fn output_is_truncated_and_the_child_never_blocks() {
    let dir = Scratch::new();
    // 10 MiB on stderr first, then 10 MiB on stdout: a reader that drained the streams one
    // after the other, or stopped reading at the cap, would leave the child blocked.
    let prefix = script(
        &dir,
        "flood.sh",
        "yes 0123456789 | head -c 10485760 >&2\nyes abcdefgh | head -c 10485760\necho done >&2\n",
    );
    let o = ExecOptions {
        max_output: 1000,
        ..opts()
    };
    let (rec, took) = run(&exec_step(prefix), &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout.len(), 1000);
    assert_eq!(rec.stderr.len(), 1000);
    assert!(rec.stdout.starts_with("abcdefgh\nabcdefgh\n"));
    assert!(rec.stderr.starts_with("0123456789\n"));
    assert!(rec.stdout_truncated && rec.stderr_truncated);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("truncation: 2 × 10 MiB in {took:?}");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = Scratch::new();
    let pidfile = dir.path().join("grandchild.pid");
    let prefix = script(
        &dir,
        "hang.sh",
        "sleep 300 &\necho $! > \"$1\"\necho started\nsleep 300\n",
    );
    let s = RenderedStep {
        timeout_seconds: Some(1.0),
        ..exec_step(argv_of(prefix, &[&path_str(&pidfile)]))
    };
    let (rec, took) = run(&s, &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    assert_eq!(rec.signal, Some(15), "{rec:?}");
    assert_eq!(rec.exit_code, None);
    assert_eq!(rec.stdout, "started\n");
    assert!(
        rec.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out"))
    );
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let grandchild = read_pid(&pidfile).await;
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
    eprintln!("timeout 1 s: returned after {took:?}");
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = Scratch::new();
    let pidfile = dir.path().join("stubborn.pid");
    // The ignored disposition is inherited: the background sleep ignores SIGTERM too.
    let prefix = script(
        &dir,
        "stubborn.sh",
        "trap '' TERM\nsleep 300 &\necho $! > \"$1\"\nwait\n",
    );
    let s = RenderedStep {
        timeout_seconds: Some(0.5),
        ..exec_step(argv_of(prefix, &[&path_str(&pidfile)]))
    };
    let o = ExecOptions {
        kill_grace: Duration::from_secs(1),
        ..opts()
    };
    let (rec, took) = run(&s, &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    assert_eq!(rec.signal, Some(9), "{rec:?}");
    assert!(rec.error.as_deref().is_some_and(|e| e.contains("SIGKILL")));
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let sleeper = read_pid(&pidfile).await;
    assert!(gone(sleeper).await, "{sleeper} survived");
    eprintln!("SIGTERM ignored, 0.5 s timeout + 1 s grace: returned after {took:?}");
}

#[tokio::test]
async fn a_group_that_obeys_sigterm_is_not_held_for_the_grace() {
    let dir = Scratch::new();
    let prefix = script(&dir, "obedient.sh", "sleep 300 &\nsleep 300\n");
    let s = RenderedStep {
        timeout_seconds: Some(0.5),
        ..exec_step(prefix)
    };
    let o = ExecOptions {
        kill_grace: Duration::from_secs(20),
        ..opts()
    };
    let (rec, took) = run(&s, &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut);
    assert_eq!(rec.signal, Some(15));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// The output is read while the group is being stopped: a child that writes more than a
/// pipe holds as it handles SIGTERM ends by itself, and is not held until the SIGKILL.
#[tokio::test]
async fn a_child_writing_as_it_handles_sigterm_is_read_and_ends_by_itself() {
    let dir = Scratch::new();
    let prefix = script(
        &dir,
        "farewell.sh",
        "trap 'yes farewell | head -c 1048576; exit 3' TERM\necho started\nsleep 300 &\nwait $!\n",
    );
    let s = RenderedStep {
        timeout_seconds: Some(0.5),
        ..exec_step(prefix)
    };
    let o = ExecOptions {
        kill_grace: Duration::from_secs(20),
        max_output: 1000,
        ..opts()
    };
    let (rec, took) = run(&s, &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    // It exited (code 3) after its 1 MiB farewell: nobody had to SIGKILL it.
    assert_eq!(rec.exit_code, Some(3), "{rec:?}");
    assert_eq!(rec.signal, Some(15), "{rec:?}");
    assert!(rec.stdout.starts_with("started\nfarewell\n"), "{rec:?}");
    assert_eq!(rec.stdout.len(), 1000);
    assert!(rec.stdout_truncated);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn output_held_open_by_a_leftover_does_not_block() {
    let dir = Scratch::new();
    let pidfile = dir.path().join("leftover.pid");
    // The script exits at once, but its background sleep keeps stdout open.
    let prefix = script(
        &dir,
        "leftover.sh",
        "sleep 300 &\necho $! > \"$1\"\necho bye\nexit 0\n",
    );
    let (rec, took) = run(
        &exec_step(argv_of(prefix, &[&path_str(&pidfile)])),
        &opts(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout, "bye\n");
    // Reading stopped after the 500 ms drain: the stream may have been cut.
    assert!(rec.stdout_truncated);
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Not ours to kill after a normal exit; clean up the fixture.
    let pid = read_pid(&pidfile).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn retries_until_success() {
    let dir = Scratch::new();
    let body = "n=$(cat \"$1\" 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > \"$1\"\nif [ $n -lt 3 ]; then echo \"try $n\" >&2; exit 1; fi\necho ok\n";
    let prefix = script(&dir, "flaky.sh", body);

    let counter = dir.path().join("count-a");
    let s = RenderedStep {
        retries: 2,
        ..exec_step(argv_of(prefix.clone(), &[&path_str(&counter)]))
    };
    let (rec, _) = run(&s, &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.stdout, "ok\n");
    assert_eq!(rec.stderr, "");
    assert_eq!(
        std::fs::read_to_string(&counter).expect("counter").trim(),
        "3"
    );
    assert!(
        rec.duration_ms >= 200,
        "two 100 ms pauses: {}",
        rec.duration_ms
    );

    // One retry is not enough: the record holds the last try.
    let counter = dir.path().join("count-b");
    let s = RenderedStep {
        retries: 1,
        ..exec_step(argv_of(prefix, &[&path_str(&counter)]))
    };
    let (rec, _) = run(&s, &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.exit_code, Some(1));
    assert_eq!(rec.stderr, "try 2\n");
}

#[tokio::test]
async fn spawn_failure_names_the_program() {
    let (rec, _) = run(
        &step("exec", &["/nonexistent/kafka-healing-nope", "x"]),
        &opts(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.exit_code, None);
    let e = rec.error.expect("error");
    assert!(e.contains("/nonexistent/kafka-healing-nope"), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");

    // Looked up through the children's PATH.
    let (rec, _) = run(
        &step("systemctl", &["kafka-healing-no-such-program"]),
        &opts(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert!(
        rec.error
            .as_deref()
            .is_some_and(|e| e.contains("kafka-healing-no-such-program")),
        "{rec:?}"
    );
}

#[tokio::test]
async fn malformed_steps_fail_without_panicking() {
    let cancel = CancellationToken::new();
    let cases: Vec<(RenderedStep, &str)> = vec![
        (step("exec", &[]), "empty argv"),
        (step("ansible", &[""]), "program name is empty"),
        (step("teleport", &["x"]), "unknown step kind"),
        (step("http", &["GET"]), "[METHOD, URL]"),
        (
            step("http", &["G ET", "http://127.0.0.1:1/"]),
            "not an HTTP method",
        ),
        (step("http", &["GET", "ftp://x/"]), "not http(s)"),
        (step("http", &["GET", "not a url"]), "not a URL"),
        (step("wait_for", &["udp", "x:1"]), "[tcp, HOST:PORT]"),
        (step("wait_for", &[]), "[tcp, HOST:PORT]"),
    ];
    for (s, want) in cases {
        let s = RenderedStep { retries: 3, ..s };
        let (rec, took) = run(&s, &opts(), &cancel).await;
        assert_eq!(rec.status, StepStatus::Failed, "{s:?}");
        assert_eq!(rec.attempts, 1, "not retried: {s:?}");
        let e = rec.error.unwrap_or_default();
        assert!(e.contains(want), "{e} ∌ {want}");
        assert!(took < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn odd_timeouts_do_not_panic() {
    for t in [f64::NAN, -5.0, f64::INFINITY, 1e300] {
        let s = RenderedStep {
            timeout_seconds: Some(t),
            ..step("exec", &["true"])
        };
        let (rec, _) = run(&s, &opts(), &CancellationToken::new()).await;
        let want = if t < 0.0 {
            StepStatus::TimedOut
        } else {
            StepStatus::Succeeded
        };
        // A zero limit may still see a very fast `true` exit first.
        assert!(
            rec.status == want || t < 0.0 && rec.status == StepStatus::Succeeded,
            "{t}: {rec:?}"
        );
    }
}

#[tokio::test]
async fn cancellation_stops_the_group() {
    let dir = Scratch::new();
    let pidfile = dir.path().join("grandchild.pid");
    let prefix = script(
        &dir,
        "hang.sh",
        "sleep 300 &\necho $! > \"$1\"\nsleep 300\n",
    );
    let s = RenderedStep {
        retries: 5,
        ..exec_step(argv_of(prefix, &[&path_str(&pidfile)]))
    };
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.cancel();
    });
    let (rec, took) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::Failed, "{rec:?}");
    assert_eq!(rec.error.as_deref(), Some("cancelled"));
    assert_eq!(rec.signal, Some(15));
    assert_eq!(rec.attempts, 1);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let grandchild = read_pid(&pidfile).await;
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");

    // Already cancelled: nothing runs.
    let dir = Scratch::new();
    let marker = dir.path().join("ran");
    let (rec, _) = run(
        &step("exec", &["touch", &path_str(&marker)]),
        &opts(),
        &cancel,
    )
    .await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("cancelled"));
    assert_eq!(rec.attempts, 0);
    assert!(!marker.exists());
}

/// A request as the test server saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: String,
}

/// A one-request-per-connection HTTP server: `/ok` → 200 `hello`, `/fail` → 500 `boom`,
/// `/hang` → never answers; anything else → 404.
async fn server() -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let _ = tx.send(Seen { head, body });
                let (code, text) = match path.as_str() {
                    "/ok" => ("200 OK", "hello"),
                    "/fail" => ("500 Internal Server Error", "boom"),
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    _ => ("404 Not Found", "nope"),
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, rx)
}

/// A port nothing listens on (bound, then released).
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn http_steps() {
    let (base, mut seen) = server().await;
    let cancel = CancellationToken::new();

    let s = RenderedStep {
        body: Some(r#"{"broker": 1}"#.to_string()),
        ..step("http", &["POST", &format!("{base}/ok")])
    };
    let (rec, _) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout, "hello");
    assert_eq!(rec.exit_code, None);
    assert_eq!(rec.error, None);
    let req = seen.recv().await.expect("request");
    assert!(
        req.head.starts_with("post /ok http/1.1\r\n"),
        "{}",
        req.head
    );
    assert!(
        req.head.contains("content-type: application/json\r\n"),
        "{}",
        req.head
    );
    assert_eq!(req.body, r#"{"broker": 1}"#);

    let s = RenderedStep {
        body: Some("not json".to_string()),
        retries: 1,
        ..step("http", &["PUT", &format!("{base}/fail")])
    };
    let (rec, _) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.exit_code, None);
    assert_eq!(rec.error.as_deref(), Some("HTTP 500 Internal Server Error"));
    assert_eq!(rec.stdout, "boom");
    let req = seen.recv().await.expect("request");
    assert!(req.head.starts_with("put /fail "), "{}", req.head);
    assert!(
        req.head.contains("content-type: text/plain"),
        "{}",
        req.head
    );
    assert_eq!(req.body, "not json");

    let o = ExecOptions {
        max_output: 2,
        ..opts()
    };
    let (rec, _) = run(&step("http", &["GET", &format!("{base}/ok")]), &o, &cancel).await;
    assert_eq!(rec.stdout, "he");
    assert!(rec.stdout_truncated);

    let port = free_port().await;
    let url = format!("http://127.0.0.1:{port}/");
    let (rec, _) = run(&step("http", &["GET", &url]), &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.exit_code, None);
    let e = rec.error.unwrap_or_default();
    assert!(e.to_lowercase().contains("connection refused"), "{e}");

    let s = RenderedStep {
        timeout_seconds: Some(0.5),
        ..step("http", &["GET", &format!("{base}/hang")])
    };
    let (rec, took) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn wait_for_tcp_becomes_ready() {
    let port = free_port().await;
    let addr = format!("127.0.0.1:{port}");
    let bind_at = addr.clone();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let l = TcpListener::bind(&bind_at).await.expect("rebind the port");
        tokio::time::timeout(Duration::from_secs(30), async {
            while l.accept().await.is_ok() {}
        })
        .await
    });
    let s = RenderedStep {
        timeout_seconds: Some(15.0),
        ..step("wait_for", &["tcp", &addr])
    };
    let (rec, took) = run(&s, &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.attempts, 1);
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    server.abort();
    eprintln!("wait_for tcp: ready after {took:?}");
}

#[tokio::test]
async fn wait_for_tcp_times_out() {
    let port = free_port().await;
    let s = RenderedStep {
        timeout_seconds: Some(1.5),
        ..step("wait_for", &["tcp", &format!("127.0.0.1:{port}")])
    };
    let (rec, took) = run(&s, &opts(), &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    let e = rec.error.unwrap_or_default();
    assert!(e.to_lowercase().contains("connection refused"), "{e}");
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
async fn wait_for_http() {
    let (base, _seen) = server().await;
    let cancel = CancellationToken::new();
    let (rec, _) = run(
        &step("wait_for", &["http", &format!("{base}/ok")]),
        &opts(),
        &cancel,
    )
    .await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout, "hello");

    let s = RenderedStep {
        timeout_seconds: Some(1.0),
        ..step("wait_for", &["http", &format!("{base}/fail")])
    };
    let (rec, took) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::TimedOut);
    let e = rec.error.unwrap_or_default();
    assert!(e.contains("HTTP 500"), "{e}");
    assert_eq!(rec.stdout, "boom");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // Cancelled while waiting.
    let port = free_port().await;
    let s = RenderedStep {
        timeout_seconds: Some(30.0),
        ..step("wait_for", &["tcp", &format!("127.0.0.1:{port}")])
    };
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let (rec, took) = run(&s, &opts(), &cancel).await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("cancelled"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
