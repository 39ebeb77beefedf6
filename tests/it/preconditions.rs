//! Preconditions, `wait_in_sync` and the retry gate against a real broker (the single
//! KRaft broker of tests/it/kafka.rs, with its real JMX exporter agent): what each verdict
//! says of a serving broker, then of the same broker hung with SIGSTOP (its port still
//! accepts, it answers nothing). The real-cluster scenarios of issue 15 are in
//! tests/it/safety/.

use std::time::{Duration, Instant};

use kafka_healing::config::Broker as BrokerConfig;
use kafka_healing::journal::StepStatus;
use kafka_healing::kafka::ClientOptions;
use kafka_healing::rules::model::{OnFailure, Precondition};
use kafka_healing::runbook::RenderedStep;
use kafka_healing::runbook::exec::{ExecOptions, run_step, run_step_gated};
use kafka_healing::runbook::precondition::Safety;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::common::Scratch;
use crate::kafka::Broker;
use crate::kafka_client::{create_topic_with, wait_stopped};

const ALL: [Precondition; 3] = [
    Precondition::BrokerUnreachable,
    Precondition::RestartSafe,
    Precondition::NotStarting,
];

fn wait_step(node: &str, addr: &str, secs: u64) -> RenderedStep {
    RenderedStep {
        name: "back in sync".into(),
        kind: "wait_in_sync",
        argv: vec![
            node.into(),
            addr.into(),
            format!("timeout={secs}"),
            format!("recovery_timeout={secs}"),
        ],
        body: None,
        timeout_seconds: Some(secs as f64),
        retries: 0,
        on_failure: OnFailure::Abort,
    }
}

fn failing_restart() -> RenderedStep {
    RenderedStep {
        name: "restart".into(),
        kind: "exec",
        argv: vec!["false".into()],
        body: None,
        timeout_seconds: Some(10.0),
        retries: 2,
        on_failure: OnFailure::Abort,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preconditions_and_wait_in_sync_on_a_real_broker() {
    let dir = Scratch::new();
    let broker = Broker::start_with(dir.path(), "", &[]).await;
    let port = broker.port;
    tokio::task::spawn_blocking(move || create_topic_with(port, "orders", 3, 1))
        .await
        .unwrap()
        .unwrap();
    let target = BrokerConfig {
        node_id: "1".into(),
        host: "127.0.0.1".into(),
        port,
        jmx_port: None,
        metrics_url: Some(broker.metrics_url.clone()),
    };
    let safety = std::sync::Arc::new(Safety::new(
        ClientOptions::plaintext(Duration::from_secs(2)),
        vec![target.clone()],
    ));
    let mut opts = ExecOptions {
        wait_interval: Duration::from_millis(200),
        retry_pause: Duration::from_millis(50),
        ..ExecOptions::default()
    };
    opts.safety = Some(safety.clone());
    let cancel = CancellationToken::new();
    let addr = format!("127.0.0.1:{port}");

    // 1. Serving. The topic's metadata may take a moment to reach the broker's cache.
    let t0 = Instant::now();
    let j = loop {
        let j = safety.judge(&ALL, &target).await;
        if j.verdicts[1].reason.starts_with("3 partition(s)")
            || t0.elapsed() > Duration::from_secs(60)
        {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let [unreachable, safe, starting] = [&j.verdicts[0], &j.verdicts[1], &j.verdicts[2]];
    assert!(!unreachable.holds);
    assert!(
        unreachable.reason.starts_with(&format!(
            "broker 1 ({addr}) answers the Kafka protocol (ApiVersions in "
        )),
        "{}",
        unreachable.reason
    );
    // The only broker: each of the topic's partitions (RF 1) would have no replica left.
    assert!(!safe.holds);
    assert!(
        safe.reason.starts_with("3 partition(s) would fall below min.insync.replicas without broker 1 (brokers answering: {1}): orders-"),
        "{}",
        safe.reason
    );
    assert!(starting.holds);
    assert_eq!(
        starting.reason,
        format!(
            "broker 1 reports BrokerState RUNNING (3) on {}",
            broker.metrics_url
        )
    );
    let why = j.refusal().expect("refused");
    assert!(why.starts_with("broker_unreachable: broker 1"), "{why}");
    assert!(why.contains("; restart_safe: 3 partition(s)"), "{why}");
    assert!(
        j.summary().starts_with("preconditions judged in "),
        "{}",
        j.summary()
    );

    // The post-condition passes: registered, in the ISR of its 3 partitions.
    let rec = run_step(&wait_step("1", &addr, 30), 1, &opts, &cancel).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert!(
        rec.stdout.starts_with("broker 1 answers (ApiVersions in ")
            && rec.stdout.contains(
                ", is in the ISR of all 3 partition(s) it hosts; BrokerState RUNNING (3) after "
            ),
        "{}",
        rec.stdout
    );

    // The retry gate: a failed restart is not tried again while the broker answers.
    let gate = || -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        let (safety, target) = (safety.clone(), target.clone());
        Box::pin(async move {
            let j = safety.judge(&[Precondition::BrokerUnreachable], &target).await;
            j.refusal().map_or(Ok(()), Err)
        })
    };
    let run = run_step_gated(&failing_restart(), 0, &opts, &cancel, Some(&gate)).await;
    assert_eq!(
        (run.record.status, run.record.attempts),
        (StepStatus::Failed, 1)
    );
    let refused = run.refused.expect("refused before try 2");
    assert!(
        refused.starts_with("broker_unreachable: broker 1"),
        "{refused}"
    );
    assert!(
        run.record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("; try 2 refused: broker_unreachable: broker 1")),
        "{:?}",
        run.record.error
    );

    // 2. Hung: the JVM is stopped, its port still accepts.
    let pid = broker.pid().expect("running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
    wait_stopped(pid, true).await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the port still accepts"
    );
    let j = safety.judge(&ALL, &target).await;
    let [unreachable, safe, starting] = [&j.verdicts[0], &j.verdicts[1], &j.verdicts[2]];
    assert!(unreachable.holds, "{}", unreachable.reason);
    assert!(
        unreachable.reason.starts_with(&format!(
            "broker 1 ({addr}) does not answer: {addr}: no answer to ApiVersions within 2s"
        )),
        "{}",
        unreachable.reason
    );
    assert!(safe.holds, "{}", safe.reason);
    assert!(
        safe.reason.contains("cannot lower availability"),
        "{}",
        safe.reason
    );
    // The exporter lives in the same stopped JVM: no state is reported.
    assert!(starting.holds);
    assert!(
        starting.reason.contains("does not answer"),
        "{}",
        starting.reason
    );
    assert_eq!(j.refusal(), None);
    // Two tries within the timeout, nothing more: the look is bounded.
    assert!(j.took < Duration::from_secs(8), "{:?}", j.took);

    let rec = run_step(&wait_step("1", &addr, 3), 1, &opts, &cancel).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    let e = rec.error.unwrap_or_default();
    assert!(
        e.starts_with("not back in sync in time: broker 1 does not answer ("),
        "{e}"
    );

    // The gate lets the retries run: the broker does not answer.
    let run = run_step_gated(&failing_restart(), 0, &opts, &cancel, Some(&gate)).await;
    assert_eq!((run.record.attempts, run.refused), (3, None));

    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("SIGCONT");
}
