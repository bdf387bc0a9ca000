//! The sockets a user agent speaks through. The driver only needs "receive a message from an
//! address" and "send bytes to an address"; this module gives it that over UDP (RFC 3261
//! §18) and over an in-process [`MemoryNetwork`] with loss, duplication, delay and reordering
//! on tokio's clock, so whole user agents can be tested deterministically with virtual time.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipua_message::Transport;
use sipua_proto::rng::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams waiting at a memory port beyond this are lost, as a full socket buffer loses them.
const PORT_QUEUE: usize = 4096;

/// Where a user agent listens: the transport and the local address (port 0 picks one).
#[derive(Debug, Clone)]
pub enum Listen {
    /// A UDP socket.
    Udp(SocketAddr),
    /// A port on an in-process [`MemoryNetwork`] (datagram semantics, like UDP).
    Memory(MemoryNetwork, SocketAddr),
}

impl Listen {
    /// Parses `udp:IP:PORT` (the only socket transport so far).
    pub fn parse(s: &str) -> Result<Listen, String> {
        let (scheme, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("{s}: expected udp:IP:PORT"))?;
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Listen::Udp(addr)),
            other => Err(format!("{s}: transport {other} is not supported yet")),
        }
    }
}

/// A bound transport, owned by the driver task.
pub(crate) enum Net {
    Udp(UdpSocket, Vec<u8>),
    Memory(MemoryPort),
}

impl Net {
    pub(crate) async fn bind(listen: &Listen) -> io::Result<Net> {
        Ok(match listen {
            Listen::Udp(a) => Net::Udp(UdpSocket::bind(a).await?, vec![0; MAX_DATAGRAM]),
            Listen::Memory(n, a) => Net::Memory(n.bind(*a)?),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Net::Udp(s, _) => s.local_addr(),
            Net::Memory(p) => Ok(p.addr),
        }
    }

    /// The SIP transport this is (what Via and Contact say).
    pub(crate) fn transport(&self) -> Transport {
        Transport::Udp
    }

    /// The next message and where it came from; `None` once the transport is gone.
    pub(crate) async fn recv(&mut self) -> Option<(Bytes, SocketAddr)> {
        match self {
            Net::Udp(s, buf) => loop {
                match s.recv_from(buf).await {
                    Ok((n, from)) => return Some((Bytes::copy_from_slice(&buf[..n]), from)),
                    // ICMP errors surface here on some systems: not fatal for a UDP server
                    Err(_) => continue,
                }
            },
            Net::Memory(p) => p.rx.recv().await,
        }
    }

    pub(crate) async fn send(&mut self, bytes: &Bytes, to: SocketAddr) -> io::Result<()> {
        match self {
            Net::Udp(s, _) => s.send_to(bytes, to).await.map(|_| ()),
            Net::Memory(p) => p.net.send(p.addr, to, bytes.clone()),
        }
    }
}

/// How the in-memory network treats each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter`: reorders datagrams.
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

type Filter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool + Send>;

struct NetInner {
    ports: HashMap<SocketAddr, mpsc::Sender<(Bytes, SocketAddr)>>,
    rng: Rng,
    link: LinkConfig,
    /// Drops datagrams for which it returns true (SIP.js's `receiveDropOnce`).
    filters: Vec<Filter>,
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

    /// Datagrams delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.delivered, g.dropped)
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<MemoryPort> {
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

    fn send(&self, from: SocketAddr, to: SocketAddr, bytes: Bytes) -> io::Result<()> {
        let mut g = self.lock();
        let Some(port) = g.ports.get(&to).cloned() else {
            // like UDP: nobody listening is not the sender's error
            g.dropped += 1;
            return Ok(());
        };
        let mut drop = false;
        for f in g.filters.iter_mut() {
            drop |= f(from, to, &bytes);
        }
        let link = g.link;
        if drop || g.rng.unit() < link.loss {
            g.dropped += 1;
            return Ok(());
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
        Ok(())
    }
}

/// A bound address on a [`MemoryNetwork`].
pub(crate) struct MemoryPort {
    net: MemoryNetwork,
    addr: SocketAddr,
    rx: mpsc::Receiver<(Bytes, SocketAddr)>,
}
