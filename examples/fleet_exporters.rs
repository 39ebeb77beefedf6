//! Synthetic fleet for benches/fleet: N fake brokers on loopback, each with a JMX-exporter
//! port serving one body (HTTP/1.1, keep-alive) and a broker port that accepts and closes
//! (what the `socket` probe sees). Prints `PORTS i exporter_port broker_port` per broker,
//! then `READY`. Commands on stdin:
//!   `kill A B`  closes both ports of brokers A..B (0-based, B excluded) and their
//!               connections: the process died;
//!   `stats`     prints `STATS requests body_bytes` (served since start).
//! Loopback only; ends when stdin closes.
//!
//!   cargo run --release --example fleet_exporters -- N BODY_FILE

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn exporter(
    l: TcpListener,
    resp: Arc<Vec<u8>>,
    body: u64,
    stop: CancellationToken,
    st: Arc<Stats>,
) {
    loop {
        let (mut s, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = l.accept() => match r { Ok(c) => c, Err(_) => continue },
        };
        let (resp, stop, st) = (resp.clone(), stop.clone(), st.clone());
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = s.read(&mut chunk) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                };
                buf.extend_from_slice(&chunk[..n]);
                // One response per complete request head (keep-alive).
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    if s.write_all(&resp).await.is_err() {
                        return;
                    }
                    st.requests.fetch_add(1, Ordering::Relaxed);
                    st.bytes.fetch_add(body, Ordering::Relaxed);
                }
                if buf.len() > 64 * 1024 {
                    return;
                }
            }
        });
    }
}

async fn broker(l: TcpListener, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = l.accept() => drop(r),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(file)) = (args.get(1), args.get(2)) else {
        return Err("usage: fleet_exporters N BODY_FILE".into());
    };
    let n: usize = n.parse()?;
    let body = std::fs::read(file)?;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let resp = Arc::new([head.into_bytes(), body.clone()].concat());
    let st = Arc::new(Stats::default());
    let mut stops = Vec::with_capacity(n);
    let mut out = String::new();
    for i in 0..n {
        let e = TcpListener::bind("127.0.0.1:0").await?;
        let b = TcpListener::bind("127.0.0.1:0").await?;
        out.push_str(&format!(
            "PORTS {i} {} {}\n",
            e.local_addr()?.port(),
            b.local_addr()?.port()
        ));
        let stop = CancellationToken::new();
        tokio::spawn(exporter(
            e,
            resp.clone(),
            body.len() as u64,
            stop.clone(),
            st.clone(),
        ));
        tokio::spawn(broker(b, stop.clone()));
        stops.push(stop);
    }
    let mut stdout = tokio::io::stdout();
    stdout.write_all(out.as_bytes()).await?;
    stdout.write_all(b"READY\n").await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["kill", a, b] => {
                let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
                for s in stops.iter().take(b.min(n)).skip(a) {
                    s.cancel();
                }
                stdout
                    .write_all(format!("KILLED {a} {b}\n").as_bytes())
                    .await?;
            }
            ["stats"] => {
                let r = st.requests.load(Ordering::Relaxed);
                let by = st.bytes.load(Ordering::Relaxed);
                stdout
                    .write_all(format!("STATS {r} {by}\n").as_bytes())
                    .await?;
            }
            _ => stdout.write_all(b"ERR unknown command\n").await?,
        }
        stdout.flush().await?;
    }
    Ok(())
}
