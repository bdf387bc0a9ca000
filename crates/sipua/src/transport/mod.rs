//! The sockets a user agent speaks through (RFC 3261 §18). The driver only needs "a message
//! arrived from an address over a transport" and "send these bytes to an address over a
//! transport"; this module gives it that over UDP, over TCP, TLS, WS and WSS (connections
//! opened on demand, reused in both directions, framed by Content-Length, keep-alives
//! answered, closed when idle), and over any [`DatagramTransport`] a user brings (a relay, a
//! tunnel, a test network). With the `test-util` feature, `MemoryNetwork` is one: an
//! in-process network with loss, duplication, delay and reordering on tokio's clock, so that
//! whole user agents are tested deterministically in virtual time.

#[cfg(feature = "test-util")]
mod memory;
mod route;
mod shards;
mod stream;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use sipua_message::{Transport, Uri};
use sipua_proto::endpoint::{TransactionId, Transmit};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

#[cfg(feature = "test-util")]
pub use memory::{LinkConfig, MemoryNetwork, MemorySocket};
pub(crate) use route::Routes;
pub use shards::udp_shards;
pub use tls::TlsOptions;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// Most datagrams one read of a UDP socket takes (each slot is a 64 KiB buffer, resident
/// only as far as datagrams fill it).
const RECV_BATCH: usize = 16;

/// A datagram transport a user brings in place of a UDP socket ([`Listen::Datagram`]): a
/// relay, a tunnel, an in-process network. It has UDP's semantics for SIP: messages are
/// whole datagrams, may be lost, and are retransmitted by the transactions (RFC 3261
/// §17); Via and Contact name it `UDP`.
pub trait DatagramTransport: Send + 'static {
    /// The address peers reach it at (what Via and Contact name).
    fn local_addr(&self) -> SocketAddr;
    /// Sends `datagram` to `to` now, without waiting: a datagram that cannot go is lost, as
    /// with UDP; an error fails the transaction that sent it at once. (A non-blocking
    /// `std::net::UdpSocket` sends without a readiness check; tokio's `try_send_to` may say
    /// `WouldBlock` until the reactor has seen the socket writable.)
    fn send_to(&mut self, datagram: Bytes, to: SocketAddr) -> io::Result<()>;
    /// The next datagram received and who sent it, or `Pending` (waking `cx` when one
    /// comes); `Ready(None)` when the transport has closed.
    fn poll_recv_from(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Bytes, SocketAddr)>>;
    /// For a transport that one of several agents shares ([`udp_shards`]): this agent's
    /// index and how many there are. Its core then makes Call-IDs that the transport hands
    /// back to it. `None` (the default) for a transport of one agent.
    fn shard(&self) -> Option<(usize, usize)> {
        None
    }

    /// Asks that the datagrams of the call in `message` (its Call-ID) come to this agent:
    /// the call began over a connection this agent accepted, and its later requests may come
    /// over UDP. A transport of one agent has nothing to do (the default).
    fn claim(&mut self, _message: &[u8]) {}
}

/// Makes a user agent's [`DatagramTransport`] each time it starts.
pub trait DatagramTransportFactory: Send + Sync + 'static {
    /// A bound transport, or why not (an address in use...).
    fn bind(&self) -> io::Result<Box<dyn DatagramTransport>>;
}

/// Where a user agent listens: the transport and the local address (port 0 picks one).
#[derive(Clone)]
pub enum Listen {
    /// A UDP socket (and a TCP listener on the same port when it is free, for requests too
    /// large for UDP, RFC 3261 §18.1.1).
    Udp(SocketAddr),
    /// A TCP listener; requests go over TCP connections.
    Tcp(SocketAddr),
    /// A TLS listener; requests go over TLS (RFC 3261 §26.2). Without
    /// [`TlsOptions::server`] nothing listens: the agent only opens connections.
    Tls(SocketAddr),
    /// A WebSocket listener, subprotocol `sip` (RFC 7118).
    Ws(SocketAddr),
    /// A secure WebSocket listener; without [`TlsOptions::server`], a client only.
    Wss(SocketAddr),
    /// A datagram transport of the user's own (`MemoryNetwork::listen` gives one on the
    /// test network).
    Datagram(Arc<dyn DatagramTransportFactory>),
}

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Listen {
    /// As [`Listen::parse`] reads it: `udp:127.0.0.1:5060`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, addr) = match self {
            Listen::Udp(a) => ("udp", a),
            Listen::Tcp(a) => ("tcp", a),
            Listen::Tls(a) => ("tls", a),
            Listen::Ws(a) => ("ws", a),
            Listen::Wss(a) => ("wss", a),
            Listen::Datagram(_) => return f.write_str("datagram"),
        };
        write!(f, "{scheme}:{addr}")
    }
}

impl Listen {
    /// Parses `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`.
    pub fn parse(s: &str) -> Result<Listen, crate::Error> {
        let (scheme, addr) = s
            .split_once(':')
            .ok_or_else(|| invalid(format!("{s}: expected udp|tcp|tls|ws|wss:IP:PORT")))?;
        let addr: SocketAddr = addr.parse().map_err(|e| invalid(format!("{s}: {e}")))?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Listen::Udp(addr)),
            "tcp" => Ok(Listen::Tcp(addr)),
            "tls" => Ok(Listen::Tls(addr)),
            "ws" => Ok(Listen::Ws(addr)),
            "wss" => Ok(Listen::Wss(addr)),
            other => Err(invalid(format!("{s}: unknown transport {other}"))),
        }
    }

    /// The SIP transport this listener speaks.
    pub fn transport(&self) -> Transport {
        match self {
            Listen::Udp(_) | Listen::Datagram(_) => Transport::Udp,
            Listen::Tcp(_) => Transport::Tcp,
            Listen::Tls(_) => Transport::Tls,
            Listen::Ws(_) => Transport::Ws,
            Listen::Wss(_) => Transport::Wss,
        }
    }
}

/// The proxy a client sends its requests outside dialogs through (SIP.js
/// `transportOptions.server`; RFC 3261 §8.1.2's outbound proxy): written as users write it,
/// `wss://edge.example.com/ws`, `sips:proxy.example.com`, `sip:192.0.2.1:5060;transport=tcp`
/// or a bare `192.0.2.1:5060`. A SIP URI is located by RFC 3263 (NAPTR, SRV, A/AAAA, its
/// `transport` parameter choosing the transport), a WebSocket URL by its host and port; a
/// TLS or WSS connection checks the certificate against the host written here (RFC 5922
/// §7.2), and a WebSocket handshake asks for the URL's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundProxy {
    uri: Uri,
    ws_path: Option<Box<str>>,
}

impl OutboundProxy {
    /// Parses a `sip:` or `sips:` URI, a `ws://` or `wss://` URL, or `host:port` (a SIP URI
    /// without the scheme).
    pub fn parse(s: &str) -> Result<OutboundProxy, crate::Error> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        for (scheme, transport, default_port) in [("ws://", "ws", 80), ("wss://", "wss", 443)] {
            let Some(rest) = lower.strip_prefix(scheme).map(|_| &s[scheme.len()..]) else {
                continue;
            };
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let path = if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_owned()
            };
            let mut uri = Uri::parse(format!("sip:{authority};transport={transport}").as_bytes())
                .map_err(|e| invalid(format!("{s}: {e}")))?;
            if let Uri::Sip(u) = &mut uri {
                u.port.get_or_insert(default_port);
            }
            return Ok(OutboundProxy {
                uri,
                ws_path: Some(path.into()),
            });
        }
        let text = if lower.starts_with("sip:") || lower.starts_with("sips:") {
            s.to_owned()
        } else {
            format!("sip:{s}")
        };
        let uri = Uri::parse(text.as_bytes()).map_err(|e| invalid(format!("{s}: {e}")))?;
        if uri.as_sip().is_none() {
            return Err(invalid(format!("{s}: not a SIP URI or WebSocket URL")));
        }
        Ok(OutboundProxy { uri, ws_path: None })
    }

    /// The proxy as a SIP URI (a WebSocket URL becomes `sip:host:port;transport=ws|wss`).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path a WebSocket handshake asks for (`/` when the URL has none); `None` for a
    /// SIP URI.
    pub fn ws_path(&self) -> Option<&str> {
        self.ws_path.as_deref()
    }
}

impl std::str::FromStr for OutboundProxy {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<OutboundProxy, crate::Error> {
        OutboundProxy::parse(s)
    }
}

impl From<SocketAddr> for OutboundProxy {
    /// The proxy at this address, over the agent's own transport.
    fn from(a: SocketAddr) -> OutboundProxy {
        let host = match a.ip() {
            std::net::IpAddr::V4(ip) => sipua_message::Host::Ipv4(ip),
            std::net::IpAddr::V6(ip) => sipua_message::Host::Ipv6(ip),
        };
        let mut uri = sipua_message::SipUri::new(host);
        uri.port = Some(a.port());
        OutboundProxy {
            uri: Uri::Sip(uri),
            ws_path: None,
        }
    }
}

impl std::fmt::Display for OutboundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.ws_path, self.uri.as_sip()) {
            (Some(path), Some(u)) => {
                let scheme = match u.transport() {
                    Some(t) if t.eq_ignore_ascii_case("wss") => "wss",
                    _ => "ws",
                };
                write!(f, "{scheme}://{}", u.host)?;
                if let Some(p) = u.port {
                    write!(f, ":{p}")?;
                }
                f.write_str(path)
            }
            _ => self.uri.fmt(f),
        }
    }
}

/// A configuration argument that does not hold.
fn invalid(why: String) -> crate::Error {
    crate::Error::InvalidArgument(why)
}

/// Receive buffer asked for UDP sockets: a burst of datagrams while the driver is busy
/// waits here instead of being dropped by the kernel (capped by `net.core.rmem_max`).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// A non-blocking UDP socket bound to `addr`, with a large receive buffer.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::from_std(udp_socket_std(addr)?.into())
}

/// A bound, non-blocking UDP socket with a large receive buffer, not yet registered with a
/// runtime.
fn udp_socket_std(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // best effort: the kernel caps it, and a smaller buffer still works
    let _ = s.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Limits of stream transports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// A connection with no traffic in either direction for this long is closed.
    pub(crate) idle: Duration,
    /// Largest message accepted on a stream.
    pub(crate) max_message: usize,
    /// Most open connections; beyond it new ones are refused.
    pub(crate) max_connections: usize,
    /// How long a connection attempt may take.
    pub(crate) connect_timeout: Duration,
    /// CRLF keep-alive interval on TCP/TLS connections we open (RFC 5626 §4.4.1).
    pub(crate) keepalive: Option<Duration>,
    /// Most connections accepted from one IP address: one peer cannot take every slot.
    pub(crate) max_connections_per_address: usize,
    /// How long a message may take to arrive once its first byte has (a slow sender
    /// cannot hold a connection open a byte at a time).
    pub(crate) message_deadline: Duration,
    /// Most bytes of messages still arriving, summed over every connection.
    pub(crate) max_partial_bytes: usize,
    /// Listeners bound with `SO_REUSEPORT` (one per agent on a shared address).
    pub(crate) reuse_port: bool,
}

/// What the transports report to the driver.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A message arrived.
    Message(Transport, Bytes, SocketAddr),
    /// Bytes of transaction `id` could not be sent (connection refused, reset...), with why
    /// when known.
    SendFailed(TransactionId, Option<crate::TransportError>),
    /// A connection we opened broke (closed by the peer, reset, keep-alive unanswered).
    FlowLost(Transport, SocketAddr),
}

/// Datagrams read from one UDP socket at a time per system call (`recvmmsg`, see
/// [`sipua_udp`]): under a flood, a system call and a readiness check per datagram were
/// most of what a refused call cost.
pub(super) struct UdpRx {
    socket: UdpSocket,
    batch: sipua_udp::RecvBatch,
    /// The next datagram of `batch` to hand on.
    next: usize,
    /// Whether the last read took fewer datagrams than `batch` has room for (the socket was
    /// empty then).
    dry_after: bool,
    /// Whether batched reads work here; if not, `one` is read into, one datagram at a time.
    batched: bool,
    one: Vec<u8>,
}

impl UdpRx {
    pub(super) fn new(socket: UdpSocket) -> UdpRx {
        UdpRx {
            socket,
            batch: sipua_udp::RecvBatch::new(RECV_BATCH),
            next: 0,
            dry_after: false,
            batched: cfg!(target_os = "linux"),
            one: Vec::new(),
        }
    }

    /// The next datagram the last read took, if any is left.
    fn take_batched(&mut self) -> Option<(Bytes, SocketAddr)> {
        while self.next < self.batch.len() {
            let i = self.next;
            self.next += 1;
            if let Some((d, from)) = self.batch.get(i) {
                return Some((Bytes::copy_from_slice(d), from));
            }
        }
        None
    }

    #[cfg(unix)]
    fn read_batch(&mut self) -> io::Result<usize> {
        use std::os::fd::AsFd;
        let (socket, batch) = (&self.socket, &mut self.batch);
        socket.try_io(tokio::io::Interest::READABLE, || {
            sipua_udp::recv_batch(socket.as_fd(), batch)
        })
    }

    #[cfg(unix)]
    fn send_batch(&self, batch: &[Transmit]) -> io::Result<usize> {
        use std::os::fd::AsFd;
        let socket = &self.socket;
        socket.try_io(tokio::io::Interest::WRITABLE, || {
            let datagrams = batch.iter().map(|t| (&t.bytes[..], t.destination));
            sipua_udp::send_batch(socket.as_fd(), datagrams)
        })
    }

    #[cfg(not(unix))]
    fn send_batch(&self, _batch: &[Transmit]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(not(unix))]
    fn read_batch(&mut self) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// The next datagram: what the last batched read still holds, else a new read (a batch,
    /// or one datagram where batched reads are not available). `Pending` when the socket
    /// is empty (the waker registered). Charges nothing to tokio's budget for a datagram
    /// already read: the callers do, one per datagram.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(Bytes, SocketAddr)> {
        loop {
            if let Some(d) = self.take_batched() {
                return Poll::Ready(d);
            }
            if !self.batched {
                if self.one.is_empty() {
                    self.one = vec![0; MAX_DATAGRAM];
                }
                let mut rb = ReadBuf::new(&mut self.one);
                match self.socket.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(from)) => {
                        return Poll::Ready((Bytes::copy_from_slice(rb.filled()), from))
                    }
                    // ICMP errors surface here on some systems: not fatal for a server
                    Poll::Ready(Err(_)) => continue,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.socket.poll_recv_ready(cx).is_pending() {
                return Poll::Pending;
            }
            match self.read_batch() {
                Ok(n) => {
                    self.next = 0;
                    self.dry_after = n < self.batch.slots();
                }
                // readiness was stale (`try_io` cleared it): the next poll waits again
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // no recvmmsg here (another system, a seccomp filter): one at a time
                Err(e) if not_available(&e) => self.batched = false,
                // ICMP errors surface here on some systems: not fatal for a server
                Err(_) => {}
            }
        }
    }
}

/// Whether a batched read's error says the system call cannot be used here (not built in,
/// or refused by a seccomp filter as ENOSYS, EPERM or EINVAL), rather than a datagram's
/// error (an ICMP error surfaces on the next read and is gone after it).
fn not_available(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput
    )
}

/// The bound transports, owned by the driver task.
pub(crate) struct Net {
    udp: Option<UdpRx>,
    custom: Option<Box<dyn DatagramTransport>>,
    streams: stream::Streams,
    primary: Transport,
    local: SocketAddr,
    /// Each listener's transport and address, the primary first.
    listeners: Vec<(Transport, SocketAddr)>,
    /// Which source [`Net::poll_recv`] asks first.
    turn: u8,
    /// Whether the datagram source was found empty since the last datagram
    /// ([`Net::take_ran_dry`]).
    ran_dry: bool,
}

impl Net {
    /// Binds `listen` (the primary listener: its address and transport are what messages
    /// name unless another listener's transport carries them) and each of `also`.
    pub(crate) async fn bind(
        listen: &Listen,
        also: &[Listen],
        limits: StreamLimits,
        tls: &TlsOptions,
    ) -> io::Result<Net> {
        let mut net = Net {
            udp: None,
            custom: None,
            streams: stream::Streams::new(limits, tls),
            primary: listen.transport(),
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            listeners: Vec::new(),
            turn: 0,
            ran_dry: true,
        };
        net.local = net.add(listen, tls, true).await?;
        for l in also {
            let t = l.transport();
            if net.listeners.iter().any(|(have, _)| *have == t) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{l}: a second {t} listener (one per transport)"),
                ));
            }
            net.add(l, tls, false).await?;
        }
        Ok(net)
    }

    /// Binds one listener; its local address.
    async fn add(
        &mut self,
        listen: &Listen,
        tls: &TlsOptions,
        primary: bool,
    ) -> io::Result<SocketAddr> {
        let local = match listen {
            Listen::Udp(a) => {
                let s = udp_socket(*a)?;
                let local = s.local_addr()?;
                // a TCP listener on the same port if free; else TCP works as a client only
                if primary {
                    let _ = self.streams.listen(Transport::Tcp, local).await;
                }
                self.udp = Some(UdpRx::new(s));
                local
            }
            Listen::Tls(a) | Listen::Wss(a) if tls.server.is_none() => {
                if !primary {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{listen}: a TLS listener needs a server certificate"),
                    ));
                }
                // a client without a certificate: connections we open only; Via and Contact
                // still need a port, so take a free one
                let probe = std::net::TcpListener::bind(a)?;
                probe.local_addr()?
            }
            Listen::Tcp(a) | Listen::Tls(a) | Listen::Ws(a) | Listen::Wss(a) => {
                self.streams.listen(listen.transport(), *a).await?
            }
            Listen::Datagram(factory) => {
                let t = factory.bind()?;
                let local = t.local_addr();
                // the first share of a UDP socket takes TCP on its port, as `Listen::Udp` does;
                // with SO_REUSEPORT every share does, and the kernel spreads the connections
                if primary && (matches!(t.shard(), Some((0, _))) || self.streams.reuse_port()) {
                    let _ = self.streams.listen(Transport::Tcp, local).await;
                }
                self.custom = Some(t);
                local
            }
        };
        self.listeners.push((listen.transport(), local));
        Ok(local)
    }

    /// Sends the datagrams of the call in `message` to this agent from now on (see
    /// [`DatagramTransport::claim`]).
    pub(crate) fn claim_call(&mut self, message: &[u8]) {
        if let Some(c) = self.custom.as_mut() {
            c.claim(message);
        }
    }

    /// This agent's share of a UDP socket several agents serve, when it has one: its index
    /// and the number of shards ([`DatagramTransport::shard`]).
    pub(crate) fn shard(&self) -> Option<(usize, usize)> {
        self.custom.as_ref().and_then(|c| c.shard())
    }

    /// Every listener's transport and address, the primary first.
    pub(crate) fn listeners(&self) -> &[(Transport, SocketAddr)] {
        &self.listeners
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SIP transport Via and Contact name.
    pub(crate) fn transport(&self) -> Transport {
        self.primary.clone()
    }

    /// The next event: a poll, so that the driver's loop makes no future per round (and a
    /// UDP socket that is not ready keeps its waker in place instead of joining and leaving
    /// a waiter list each time). `Ready(None)` once the stream transports or the simulated
    /// network are gone. The sources take turns at being asked first, so that a flood on
    /// one cannot starve the others.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<NetEvent>> {
        self.turn = (self.turn + 1) % 3;
        for i in 0..3 {
            let polled = match (self.turn + i) % 3 {
                0 => self.poll_udp(cx),
                1 => match self.custom.as_mut() {
                    Some(t) => {
                        let polled = t
                            .poll_recv_from(cx)
                            .map(|m| m.map(|(b, from)| NetEvent::Message(Transport::Udp, b, from)));
                        self.ran_dry |= polled.is_pending();
                        polled
                    }
                    None => Poll::Pending,
                },
                _ => self.streams.poll_recv(cx),
            };
            if polled.is_ready() {
                return polled;
            }
        }
        Poll::Pending
    }

    /// The next datagram of the UDP socket's last batched read, if it holds more; never
    /// reads the socket (the driver takes a read's datagrams in one round of its loop).
    pub(crate) fn take_batched(&mut self) -> Option<(Bytes, SocketAddr)> {
        self.udp.as_mut()?.take_batched()
    }

    /// Whether the datagram source (the UDP socket, or this agent's share of it) was found
    /// empty since the last datagram taken: the driver's measure of how far behind it is
    /// (see [`sipua_proto::ua::UaConfig::max_queue_delay`]).
    pub(crate) fn take_ran_dry(&mut self) -> bool {
        std::mem::take(&mut self.ran_dry)
    }

    fn poll_udp(&mut self, cx: &mut Context<'_>) -> Poll<Option<NetEvent>> {
        let Some(u) = self.udp.as_mut() else {
            return Poll::Pending;
        };
        // what the last batch read still holds comes first, each datagram counted against
        // the task's budget as a read of the socket would be: otherwise the driver yields to
        // the sessions a batch's size less often, and under a flood their answers wait
        // behind thousands of datagrams
        if u.next < u.batch.len() {
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            if let Some((bytes, from)) = u.take_batched() {
                coop.made_progress();
                return Poll::Ready(Some(NetEvent::Message(Transport::Udp, bytes, from)));
            }
        }
        if std::mem::take(&mut u.dry_after) {
            // the last read took less than it could: the socket was empty after it
            self.ran_dry = true;
        }
        match u.poll_next(cx) {
            Poll::Ready((bytes, from)) => {
                Poll::Ready(Some(NetEvent::Message(Transport::Udp, bytes, from)))
            }
            Poll::Pending => {
                self.ran_dry = true;
                Poll::Pending
            }
        }
    }

    /// Whether UDP datagrams go out in batches ([`Net::send_udp_batch`]): on a UDP socket
    /// of our own where the system has `sendmmsg`.
    pub(crate) fn batches_udp(&self) -> bool {
        self.udp.as_ref().is_some_and(|u| u.batched)
    }

    /// Sends UDP datagrams `batch` (at most [`sipua_udp::MAX_SLOTS`] of them) in one system
    /// call: how many went, counted from the first; the caller sends the rest one at a
    /// time, which tells each one's error.
    pub(crate) fn send_udp_batch(&mut self, batch: &[Transmit]) -> usize {
        let Some(u) = self.udp.as_mut() else {
            return 0;
        };
        match u.send_batch(batch) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() == io::ErrorKind::Unsupported {
                    u.batched = false;
                }
                0
            }
        }
    }

    /// Sends `t` over its transport. An error means it failed at once (the driver reports it
    /// to the core); failures found later come back as [`NetEvent::SendFailed`].
    pub(crate) async fn send(&mut self, t: &Transmit) -> io::Result<()> {
        match t.transport {
            Transport::Udp => {
                if let Some(UdpRx { socket: s, .. }) = &self.udp {
                    // straight to the socket; the readiness future only when its buffer is full
                    return match s.try_send_to(&t.bytes, t.destination) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            s.send_to(&t.bytes, t.destination).await.map(|_| ())
                        }
                        r => r.map(|_| ()),
                    };
                }
                if let Some(c) = &mut self.custom {
                    return c.send_to(t.bytes.clone(), t.destination);
                }
                Err(io::Error::new(io::ErrorKind::Unsupported, "no UDP socket"))
            }
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                // a user's own datagram transport (a test network) has no stream transports
                // beside it, unless it is a share of a real UDP socket
                if self.custom.as_ref().is_some_and(|c| c.shard().is_none()) {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "a datagram transport carries datagrams only",
                    ));
                }
                self.streams.send(
                    t.transport.clone(),
                    t.destination,
                    t.bytes.clone(),
                    t.transaction,
                )
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "transport not available",
            )),
        }
    }

    /// Open stream connections.
    pub(crate) fn connections(&self) -> usize {
        self.streams.connections()
    }

    /// Remembers that `addr` was reached by resolving the host name `host` (see
    /// `Streams::set_server_name`), and the path a WebSocket handshake there asks for; an IP
    /// literal names nothing more than the address.
    pub(crate) fn set_server_name(
        &mut self,
        addr: SocketAddr,
        host: &sipua_message::Host,
        ws_path: Option<&str>,
    ) {
        let name = match host {
            sipua_message::Host::Domain(d) => Some(d.as_str()),
            _ => None,
        };
        if name.is_some() || ws_path.is_some() {
            self.streams.set_server_name(addr, name, ws_path);
        }
    }
}
