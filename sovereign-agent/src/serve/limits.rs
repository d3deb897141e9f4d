//! Bounds on the TCP listeners (an agent's TCP API, the collector): how many connections at
//! once in all and from one client address, and how long a client has to finish its TLS
//! handshake. Without them, anyone who can reach the port holds connections open that never
//! send a ClientHello until the process runs out of file descriptors, and no agent can push.
//!
//! A connection over a cap is closed as soon as it is accepted (before any TLS), counted, and
//! logged once per cap and client burst. The per-client cap is what keeps one host from taking
//! the whole total: a fleet behind one NAT address needs it raised.
use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, from everyone (0: no cap).
    pub max_connections: usize,
    /// Connections open at once from one client IP address (0: no cap).
    pub max_connections_per_client: usize,
    /// A client that has not finished its TLS handshake by then is disconnected.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_client: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What the caps refused since the listener started.
#[derive(Debug, Default)]
pub struct Refused {
    pub over_total: AtomicU64,
    pub over_per_client: AtomicU64,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// The open connections of one listener, and the admission rule.
#[derive(Clone)]
pub struct Admission {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
    pub refused: Arc<Refused>,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// A slot for a connection from `client`, held until the guard is dropped; `None` when a
    /// cap is reached (counted).
    pub fn admit(&self, client: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let l = &self.limits;
        if l.max_connections != 0 && open.total >= l.max_connections {
            self.refused.over_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mine = open.by_client.get(&client).copied().unwrap_or(0);
        if l.max_connections_per_client != 0 && mine >= l.max_connections_per_client {
            self.refused.over_per_client.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        open.total += 1;
        open.by_client.insert(client, mine + 1);
        Some(Slot {
            client,
            open: self.open.clone(),
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One admitted connection's place; freed on drop.
pub struct Slot {
    client: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// The listener's accepted connections that are within the caps (what tonic serves).
pub struct CappedIncoming {
    listener: TcpListener,
    admission: Admission,
    /// Refusals already logged (a log line per burst, not per connection).
    logged: u64,
}

impl CappedIncoming {
    pub fn new(listener: TcpListener, admission: Admission) -> Self {
        Self {
            listener,
            admission,
            logged: 0,
        }
    }
}

impl Stream for CappedIncoming {
    type Item = io::Result<CappedStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let (stream, peer) = ready!(self.listener.poll_accept(cx))?;
            let Some(slot) = self.admission.admit(peer.ip()) else {
                // Closed at once: no TLS, no state kept for it.
                drop(stream);
                let refused = &self.admission.refused;
                let total = refused.over_total.load(Ordering::Relaxed)
                    + refused.over_per_client.load(Ordering::Relaxed);
                if total >= self.logged.saturating_mul(2).max(1) {
                    tracing::warn!(
                        client = %peer.ip(),
                        refused = total,
                        open = self.admission.open(),
                        "connection refused: over the listener's connection caps"
                    );
                    self.logged = total;
                }
                continue;
            };
            // Without TCP_NODELAY a small write that follows another (a push acknowledgement,
            // one alert to a subscriber) waits for the peer's delayed ACK: ~40 ms a batch.
            let _ = stream.set_nodelay(true);
            return Poll::Ready(Some(Ok(CappedStream {
                stream,
                _slot: slot,
            })));
        }
    }
}

/// An admitted connection: the socket, and its place under the caps.
pub struct CappedStream {
    stream: TcpStream,
    _slot: Slot,
}

impl Connected for CappedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_client: per_client,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share_and_a_closed_slot_is_reused() {
        let a = Admission::new(limits(10, 2));
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let agent: IpAddr = "192.0.2.2".parse().unwrap();
        let first = a.admit(attacker).unwrap();
        let _second = a.admit(attacker).unwrap();
        assert!(a.admit(attacker).is_none());
        assert!(a.admit(agent).is_some(), "another client still gets in");
        assert_eq!(a.refused.over_per_client.load(Ordering::Relaxed), 1);
        drop(first);
        assert!(
            a.admit(attacker).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn the_total_cap_holds_across_clients_and_zero_means_no_cap() {
        let a = Admission::new(limits(3, 0));
        let slots: Vec<_> = (1..=3u8)
            .map(|i| a.admit(IpAddr::from([192, 0, 2, i])).unwrap())
            .collect();
        assert!(a.admit("192.0.2.9".parse().unwrap()).is_none());
        assert_eq!(a.refused.over_total.load(Ordering::Relaxed), 1);
        assert_eq!(a.open(), 3);
        drop(slots);
        assert_eq!(a.open(), 0);
        let unbounded = Admission::new(limits(0, 0));
        let held: Vec<_> = (0..5000)
            .map(|_| unbounded.admit("192.0.2.1".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(unbounded.open(), held.len());
    }
}
