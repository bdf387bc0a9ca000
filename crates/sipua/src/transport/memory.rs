//! An in-process datagram network for tests, with loss, duplication, delay and reordering on
//! tokio's clock.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipua_proto::rng::Rng;
use tokio::sync::mpsc;

/// Datagrams waiting at a memory port beyond this are lost, as a full socket buffer loses them.
const PORT_QUEUE: usize = 4096;

/// How the in-memory network treats each datagram: the same knobs as the sans-IO
/// simulator's links (delay, jitter, loss, duplication).
pub use sipua_proto::sim::LinkConfig;

type Filter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send>;

struct NetInner {
    ports: HashMap<SocketAddr, mpsc::Sender<(Bytes, SocketAddr)>>,
    rng: Rng,
    link: LinkConfig,
    /// Drops datagrams for which it returns true (SIP.js's `receiveDropOnce`).
    filters: Vec<Filter>,
    /// Datagrams to an alias go to each of its addresses (a forking proxy, in effect).
    aliases: HashMap<SocketAddr, Vec<SocketAddr>>,
    delivered: u64,
    dropped: u64,
}

/// An in-process datagram network for tests: user agents bind "addresses" on it and exchange
/// datagrams with seeded loss, duplication, delay and jitter. Delays run on tokio's clock, so
/// under `#[tokio::test(start_paused = true)]` a minute of SIP timers passes instantly and a
/// seed replays the same run.
#[derive(Clone)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<NetInner>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryNetwork")
    }
}

impl MemoryNetwork {
    /// A network whose randomness comes from `seed`.
    pub fn new(seed: u64, link: LinkConfig) -> MemoryNetwork {
        MemoryNetwork {
            inner: Arc::new(Mutex::new(NetInner {
                ports: HashMap::new(),
                rng: Rng::new(seed),
                link,
                filters: Vec::new(),
                aliases: HashMap::new(),
                delivered: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how datagrams are treated from now on.
    pub fn set_link(&self, link: LinkConfig) {
        self.lock().link = link;
    }

    /// Drops every datagram for which `filter(from, to, bytes)` returns true, from now on; a
    /// filter that counts lets through all but the first N.
    pub fn drop_when(
        &self,
        filter: impl FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send + 'static,
    ) {
        self.lock().filters.push(Box::new(filter));
    }

    /// Drops the next `n` datagrams whose bytes start with `prefix` (e.g. `b"ACK "`).
    pub fn drop_next(&self, prefix: &'static [u8], n: usize) {
        let mut left = n;
        self.drop_when(move |_, _, b| {
            if left > 0 && b.starts_with(prefix) {
                left -= 1;
                true
            } else {
                false
            }
        });
    }

    /// Makes `alias` deliver every datagram to each of `targets`, as a forking proxy would
    /// fork a request (RFC 3261 §16.6): each target answers the sender directly.
    pub fn fork(&self, alias: SocketAddr, targets: &[SocketAddr]) {
        self.lock().aliases.insert(alias, targets.to_vec());
    }

    /// Where a user agent listens to be at `addr` on this network.
    pub fn listen(&self, addr: SocketAddr) -> super::Listen {
        super::Listen::Datagram(std::sync::Arc::new(MemoryBind {
            net: self.clone(),
            addr,
        }))
    }

    /// A raw datagram socket at `addr`, for tests that script a peer by hand (a notifier
    /// sending malformed NOTIFYs, a registrar...).
    pub fn socket(&self, addr: SocketAddr) -> io::Result<MemorySocket> {
        Ok(MemorySocket(self.bind(addr)?))
    }

    /// Datagrams delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.delivered, g.dropped)
    }

    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<MemoryPort> {
        let mut g = self.lock();
        if g.ports.get(&addr).is_some_and(|t| !t.is_closed()) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, addr.to_string()));
        }
        let (tx, rx) = mpsc::channel(PORT_QUEUE);
        g.ports.insert(addr, tx);
        Ok(MemoryPort {
            net: self.clone(),
            addr,
            rx,
        })
    }

    pub(crate) fn send(&self, from: SocketAddr, to: SocketAddr, bytes: Bytes) -> io::Result<()> {
        let targets = self.lock().aliases.get(&to).cloned();
        if let Some(targets) = targets {
            for t in targets {
                self.send_one(from, t, bytes.clone());
            }
            return Ok(());
        }
        self.send_one(from, to, bytes);
        Ok(())
    }

    fn send_one(&self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        let mut g = self.lock();
        let Some(port) = g.ports.get(&to).cloned() else {
            // like UDP: nobody listening is not the sender's error
            g.dropped += 1;
            return;
        };
        let mut drop = false;
        for f in g.filters.iter_mut() {
            drop |= f(from, to, &bytes);
        }
        let link = g.link;
        if drop || g.rng.unit() < link.loss {
            g.dropped += 1;
            return;
        }
        let copies = if g.rng.unit() < link.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if link.jitter.is_zero() {
                Duration::ZERO
            } else {
                link.jitter.mul_f64(g.rng.unit())
            };
            let delay = link.delay + jitter;
            let (port, bytes) = (port.clone(), bytes.clone());
            g.delivered += 1;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = port.try_send((bytes, from));
            });
        }
    }
}

/// A bound address on a [`MemoryNetwork`].
pub(crate) struct MemoryPort {
    pub(crate) net: MemoryNetwork,
    pub(crate) addr: SocketAddr,
    pub(crate) rx: mpsc::Receiver<(Bytes, SocketAddr)>,
}

impl super::DatagramTransport for MemoryPort {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send_to(&mut self, datagram: Bytes, to: SocketAddr) -> io::Result<()> {
        self.net.send(self.addr, to, datagram)
    }

    fn poll_recv_from(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(Bytes, SocketAddr)>> {
        self.rx.poll_recv(cx)
    }
}

/// Binds a user agent at its address on the network ([`MemoryNetwork::listen`]).
struct MemoryBind {
    net: MemoryNetwork,
    addr: SocketAddr,
}

impl super::DatagramTransportFactory for MemoryBind {
    fn bind(&self) -> io::Result<Box<dyn super::DatagramTransport>> {
        Ok(Box::new(self.net.bind(self.addr)?))
    }
}

/// A raw datagram socket on a [`MemoryNetwork`] ([`MemoryNetwork::socket`]).
pub struct MemorySocket(MemoryPort);

impl std::fmt::Debug for MemorySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemorySocket({})", self.0.addr)
    }
}

impl MemorySocket {
    /// Its address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Sends a datagram (subject to the network's loss, delay and filters).
    pub fn send_to(&self, bytes: impl Into<Bytes>, to: SocketAddr) -> io::Result<()> {
        self.0.net.send(self.0.addr, to, bytes.into())
    }

    /// The next datagram and who sent it.
    pub async fn recv_from(&mut self) -> Option<(Bytes, SocketAddr)> {
        self.0.rx.recv().await
    }
}
