//! The listener's guard: a bounded number of connections, each registered by its peer
//! address so the request guard can find it, sniffed for ambiguous framing, and
//! displaceable while it has not yet sent an authenticated request.
//!
//! When every slot is taken, a new connection displaces the oldest unproven one (a
//! half-open flood cannot starve Alertmanager); when all are proven it is closed at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::sniff::Sniffer;
use crate::metrics::conns::ConnMetrics;

/// How long a new connection waits for the slot of the one it displaced.
const DISPLACE_WAIT: Duration = Duration::from_secs(2);

/// New connections waiting for a displaced one's slot, at most.
const MAX_WAITING: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One open connection.
#[derive(Debug, Default)]
pub struct Conn {
    seq: u64,
    proven: AtomicBool,
    displaced: AtomicBool,
    waker: Mutex<Option<Waker>>,
    sniffer: Mutex<Sniffer>,
}

impl Conn {
    /// Marks the connection as having sent an authenticated request: never displaced.
    pub fn prove(&self) {
        self.proven.store(true, Ordering::Relaxed);
    }

    /// Whether the next request head (in order) carried both `Content-Length` and
    /// `Transfer-Encoding`; `None` when the sniffer did not follow it.
    pub fn next_verdict(&self) -> Option<bool> {
        lock(&self.sniffer).verdicts.pop_front()
    }

    fn displace(&self) {
        self.displaced.store(true, Ordering::SeqCst);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
}

/// The open connections.
#[derive(Debug)]
pub struct Conns {
    limit: usize,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    next: AtomicU64,
    metrics: ConnMetrics,
    waiting: AtomicUsize,
}

impl Conns {
    /// Room for `limit` connections, counted in `metrics`.
    pub fn new(limit: usize, metrics: ConnMetrics) -> Arc<Conns> {
        Arc::new(Conns {
            limit,
            slots: Arc::new(Semaphore::new(limit)),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            metrics,
            waiting: AtomicUsize::new(0),
        })
    }

    /// The connection from `peer`, while it is open.
    pub fn get(&self, peer: &SocketAddr) -> Option<Arc<Conn>> {
        lock(&self.open).get(peer).cloned()
    }

    /// Displaces the oldest unproven connection; false when every one is proven.
    fn displace_oldest(&self) -> bool {
        let open = lock(&self.open);
        let victim = open
            .values()
            .filter(|c| !c.proven.load(Ordering::Relaxed) && !c.displaced.load(Ordering::SeqCst))
            .min_by_key(|c| c.seq);
        match victim {
            Some(c) => {
                c.displace();
                true
            }
            None => false,
        }
    }

    async fn admit(self: &Arc<Self>) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        // Bounded: each waiter holds a descriptor outside the count.
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let slot = if waiting < MAX_WAITING && self.displace_oldest() {
            self.displaced_slot().await
        } else {
            None
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if slot.is_some() {
            return slot;
        }
        let n = self.metrics.refused.inc();
        if (n + 1).is_power_of_two() {
            warn!(
                refused = n + 1,
                limit = self.limit,
                "server.max_connections reached: new connection closed"
            );
        }
        None
    }

    /// The slot a displaced connection frees.
    async fn displaced_slot(self: &Arc<Self>) -> Option<OwnedSemaphorePermit> {
        {
            let n = self.metrics.displaced.inc();
            if (n + 1).is_power_of_two() {
                info!(
                    displaced = n + 1,
                    limit = self.limit,
                    "server.max_connections reached: displacing connections that sent no authenticated request"
                );
            }
        }
        match tokio::time::timeout(DISPLACE_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }

    fn register(self: &Arc<Self>, peer: SocketAddr) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            ..Default::default()
        });
        lock(&self.open).insert(peer, conn.clone());
        self.metrics.open.inc();
        conn
    }
}

/// An accepted connection holding its slot.
pub struct Guarded<S> {
    inner: S,
    conn: Arc<Conn>,
    peer: SocketAddr,
    conns: Arc<Conns>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.conns.metrics.open.dec();
        let mut open = lock(&self.conns.open);
        if open
            .get(&self.peer)
            .is_some_and(|c| Arc::ptr_eq(c, &self.conn))
        {
            open.remove(&self.peer);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        *lock(&self.conn.waker) = Some(cx.waker().clone());
        if self.conn.displaced.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// The plaintext side of a connection (inside TLS when there is TLS), sniffed.
pub struct Sniffed<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            lock(&self.conn.sniffer).feed(&buf.filled()[before..]);
        }
        r
    }
}

macro_rules! write_through {
    ($t:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $t<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, data)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
write_through!(Guarded);
write_through!(Sniffed);

/// Wraps an acceptor (plain or TLS): a slot first, then the inner acceptor.
#[derive(Clone)]
pub struct GuardAcceptor<A> {
    inner: A,
    conns: Arc<Conns>,
}

impl<A> GuardAcceptor<A> {
    /// Guards `inner` with `conns`.
    pub fn new(inner: A, conns: Arc<Conns>) -> Self {
        GuardAcceptor { inner, conns }
    }
}

type Accepted<St, Sv> = io::Result<(Sniffed<St>, Sv)>;

impl<A, S> Accept<TcpStream, S> for GuardAcceptor<A>
where
    A: Accept<Guarded<TcpStream>, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = Sniffed<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = Accepted<A::Stream, A::Service>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let inner = self.inner.clone();
        let conns = self.conns.clone();
        Box::pin(async move {
            let Some(slot) = conns.admit().await else {
                return Err(io::Error::other("server.max_connections reached"));
            };
            let peer = stream.peer_addr()?;
            let conn = conns.register(peer);
            // Guarded below TLS, so a displaced connection ends even mid-handshake.
            let guarded = Guarded {
                inner: stream,
                conn: conn.clone(),
                peer,
                conns,
                _slot: slot,
            };
            let (s, svc) = inner.accept(guarded, service).await?;
            Ok((Sniffed { inner: s, conn }, svc))
        })
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime does); returns
/// (soft before, soft now).
pub fn raise_nofile() -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (now, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft, now))
}
