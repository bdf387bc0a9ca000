//! SIP over streams: TCP and TLS (RFC 3261 §18, §26.2; framed by Content-Length, §18.3) and
//! WebSocket / secure WebSocket (RFC 7118: one SIP message per WebSocket message, subprotocol
//! `sip`). A listener per transport, and one task per connection that frames what it reads,
//! answers CRLF keep-alive pings (RFC 5626 §4.4.1), writes what the driver sends, and closes
//! after an idle period or when framing is lost. Connections are keyed by transport and peer
//! address and reused both ways: a response goes back on the connection its request came in
//! on (§18.2.2), and the peer's requests can reach a WebSocket client only that way.
//!
//! One concern in one file (about 1 000 lines of code): connections of the four stream
//! transports share their table, framing, keep-alives and task; only the handshake differs.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sipua_message::{Frame, StreamFramer, Transport};
use sipua_proto::endpoint::TransactionId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{NetEvent, StreamLimits, TlsOptions};
use crate::error::{TransportError, TransportErrorKind};

/// Messages queued for one connection before sending fails fast.
const CONNECTION_QUEUE: usize = 256;
/// Events from every connection to the driver.
const EVENT_QUEUE: usize = 1024;
/// How long a CRLF ping may wait for its pong (RFC 5626 §4.4.1).
const PONG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The WebSocket subprotocol of RFC 7118.
const SUBPROTOCOL: &str = "sip";

type Outgoing = (Bytes, Option<TransactionId>);

/// Most bytes waiting in one connection's send queue (beside [`CONNECTION_QUEUE`] messages):
/// a peer that stops reading holds at most this much of our memory.
const CONNECTION_QUEUE_BYTES: usize = 1 << 20;

/// The sending end of a connection's queue, bounded in messages and in bytes.
#[derive(Clone)]
struct QueueTx {
    tx: mpsc::Sender<Outgoing>,
    bytes: Arc<AtomicUsize>,
}

/// The connection's end of its queue.
struct QueueRx {
    rx: mpsc::Receiver<Outgoing>,
    bytes: Arc<AtomicUsize>,
}

fn queue() -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            bytes: bytes.clone(),
        },
        QueueRx { rx, bytes },
    )
}

impl QueueTx {
    /// Queues `m` unless the queue is full in messages or in bytes.
    fn try_send(&self, m: Outgoing) -> Result<(), mpsc::error::TrySendError<Outgoing>> {
        let n = m.0.len();
        if self.bytes.fetch_add(n, Ordering::AcqRel) + n > CONNECTION_QUEUE_BYTES {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return Err(mpsc::error::TrySendError::Full(m));
        }
        self.tx.try_send(m).inspect_err(|_| {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
        })
    }
}

impl QueueRx {
    async fn recv(&mut self) -> Option<Outgoing> {
        let m = self.rx.recv().await?;
        self.bytes.fetch_sub(m.0.len(), Ordering::AcqRel);
        Some(m)
    }

    fn try_recv(&mut self) -> Result<Outgoing, mpsc::error::TryRecvError> {
        let m = self.rx.try_recv()?;
        self.bytes.fetch_sub(m.0.len(), Ordering::AcqRel);
        Ok(m)
    }

    fn close(&mut self) {
        self.rx.close();
    }
}

/// Any byte stream: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// What connection tasks and acceptors tell the transport.
enum StreamEvent {
    Net(NetEvent),
    Accepted(Transport, SocketAddr, QueueTx),
    Closed(Transport, SocketAddr, u64),
}

/// How to set up connections of each transport.
#[derive(Clone)]
struct Setup {
    limits: StreamLimits,
    tls_client: Option<tokio_rustls::TlsConnector>,
    tls_server: Option<tokio_rustls::TlsAcceptor>,
    /// Bytes of partial messages held by all connections (see `max_partial_bytes`).
    partial: Arc<AtomicUsize>,
}

/// Server names remembered per address (beyond it the table starts afresh).
const MAX_NAMES: usize = 4096;

/// What a server was reached by: the host name its certificate must show, and the path of
/// its WebSocket URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServerName {
    host: Option<Box<str>>,
    path: Option<Box<str>>,
}

/// Closed WebSocket flows that peers opened, remembered (up to this many) so that a request
/// to one fails at once: a WebSocket client accepts no connection (RFC 7118 §5).
const CLOSED_FLOWS: usize = 1024;

/// A connection's entry: its send queue, its id, whether a peer opened it, and when a
/// message last went either way on it.
struct Conn {
    tx: QueueTx,
    id: u64,
    accepted: bool,
    active: tokio::time::Instant,
}

/// A connection idle at least this long may be closed to make room for a new one when the
/// table is full (the oldest idle first), so that idle connections cannot lock callers out.
const EVICTABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) struct Streams {
    setup: Setup,
    conns: HashMap<(Transport, SocketAddr), Conn>,
    /// Recently closed WebSocket connections that peers opened, oldest first.
    closed_inbound: std::collections::VecDeque<(Transport, SocketAddr)>,
    /// Connections accepted per IP address (see `StreamLimits::max_connections_per_address`).
    per_address: HashMap<std::net::IpAddr, usize>,
    /// The host names that addresses were reached by (the URI's host, RFC 5922 §7.2): the
    /// name a TLS connection there must prove and asks for by SNI; and the path a WebSocket
    /// handshake there asks for (an outbound proxy's URL).
    names: HashMap<SocketAddr, ServerName>,
    events_tx: mpsc::Sender<StreamEvent>,
    events: mpsc::Receiver<StreamEvent>,
    next_id: u64,
    acceptors: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Streams {
    fn drop(&mut self) {
        for a in self.acceptors.drain(..) {
            a.abort();
        }
    }
}

fn is_secure(t: &Transport) -> bool {
    matches!(t, Transport::Tls | Transport::Wss)
}

fn is_websocket(t: &Transport) -> bool {
    matches!(t, Transport::Ws | Transport::Wss)
}

impl Streams {
    /// Stream transports that can open connections (TLS ones only with a client config).
    pub(crate) fn new(limits: StreamLimits, tls: &TlsOptions) -> Streams {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        Streams {
            setup: Setup {
                limits,
                tls_client: tls.client.clone().map(tokio_rustls::TlsConnector::from),
                tls_server: tls.server.clone().map(tokio_rustls::TlsAcceptor::from),
                partial: Arc::new(AtomicUsize::new(0)),
            },
            conns: HashMap::new(),
            closed_inbound: std::collections::VecDeque::new(),
            names: HashMap::new(),
            per_address: HashMap::new(),
            events_tx,
            events,
            next_id: 1,
            acceptors: Vec::new(),
        }
    }

    /// Listens for `transport` connections on `addr`; returns the bound address.
    pub(crate) async fn listen(
        &mut self,
        transport: Transport,
        addr: SocketAddr,
    ) -> io::Result<SocketAddr> {
        if is_secure(&transport) && self.setup.tls_server.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TLS listener needs a server certificate (TlsOptions::server)",
            ));
        }
        let listener = bind_listener(addr, self.setup.limits.reuse_port)?;
        let local = listener.local_addr()?;
        let (events, setup) = (self.events_tx.clone(), self.setup.clone());
        self.acceptors
            .push(tokio::spawn(accept(listener, transport, events, setup)));
        Ok(local)
    }

    /// Whether listeners are bound with `SO_REUSEPORT` (see `UserAgentOptions::reuse_port`).
    pub(crate) fn reuse_port(&self) -> bool {
        self.setup.limits.reuse_port
    }

    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Remembers that `addr` was reached by resolving `host`: a TLS connection opened to it
    /// checks the server's certificate against `host` (and sends it by SNI), not against the
    /// address (RFC 5922 §7.2, RFC 6125).
    pub(crate) fn set_server_name(
        &mut self,
        addr: SocketAddr,
        host: Option<&str>,
        path: Option<&str>,
    ) {
        let name = ServerName {
            host: host.map(Into::into),
            path: path.map(Into::into),
        };
        if self.names.get(&addr) == Some(&name) {
            return;
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert(addr, name);
    }

    /// The next message or failure from any connection: `Ready(None)` once no connection can
    /// report any more.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<NetEvent>> {
        loop {
            let event = match self.events.poll_recv(cx) {
                std::task::Poll::Ready(Some(e)) => e,
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            };
            match event {
                StreamEvent::Net(e) => {
                    if let NetEvent::Message(t, _, remote) = &e {
                        if let Some(c) = self.conns.get_mut(&(t.clone(), *remote)) {
                            c.active = tokio::time::Instant::now();
                        }
                    }
                    return std::task::Poll::Ready(Some(e));
                }
                StreamEvent::Accepted(t, remote, tx) => {
                    let from_there = self.per_address.get(&remote.ip()).copied().unwrap_or(0);
                    if from_there >= self.setup.limits.max_connections_per_address
                        || (self.conns.len() >= self.setup.limits.max_connections
                            && !self.evict_idle())
                    {
                        continue; // dropping the sender closes the connection
                    }
                    *self.per_address.entry(remote.ip()).or_default() += 1;
                    let id = self.next_id;
                    self.next_id += 1;
                    if !self.closed_inbound.is_empty() {
                        self.closed_inbound
                            .retain(|(ct, ca)| *ca != remote || *ct != t);
                    }
                    let active = tokio::time::Instant::now();
                    let conn = Conn {
                        tx,
                        id,
                        accepted: true,
                        active,
                    };
                    self.conns.insert((t, remote), conn);
                }
                StreamEvent::Closed(t, remote, id) => {
                    if id == 0 {
                        // an accepted connection that was counted (it had a slot)
                        if let std::collections::hash_map::Entry::Occupied(mut e) =
                            self.per_address.entry(remote.ip())
                        {
                            if self.conns.contains_key(&(t.clone(), remote)) {
                                *e.get_mut() -= 1;
                                if *e.get() == 0 {
                                    e.remove();
                                }
                            }
                        }
                    }
                    if id == 0 && is_websocket(&t) {
                        if self.closed_inbound.len() >= CLOSED_FLOWS {
                            self.closed_inbound.pop_front();
                        }
                        self.closed_inbound.push_back((t.clone(), remote));
                    }
                    let key = (t, remote);
                    if self.conns.get(&key).is_some_and(|c| c.id == id || id == 0) {
                        self.conns.remove(&key);
                    }
                }
            }
        }
    }

    /// Closes the connection a peer opened that has been idle longest, if idle for
    /// [`EVICTABLE_AFTER`], to make room in a full table; false when none can go. The
    /// connections we opened (to a registrar or proxy, kept alive by CRLF pings, RFC 5626)
    /// are never evicted: a flood of connections must not cost us our own flows.
    fn evict_idle(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let Some(key) = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.accepted && now.saturating_duration_since(c.active) >= EVICTABLE_AFTER
            })
            .min_by_key(|(_, c)| c.active)
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        // dropping its sender closes it; its slot is counted free now
        if let Some(c) = self.conns.remove(&key) {
            if c.accepted {
                if let std::collections::hash_map::Entry::Occupied(mut e) =
                    self.per_address.entry(key.1.ip())
                {
                    *e.get_mut() -= 1;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
            }
        }
        true
    }

    /// Queues `bytes` for `to` over `transport`, opening a connection if there is none.
    pub(crate) fn send(
        &mut self,
        transport: Transport,
        to: SocketAddr,
        bytes: Bytes,
        tx: Option<TransactionId>,
    ) -> io::Result<()> {
        let key = (transport.clone(), to);
        if let Some(c) = self.conns.get_mut(&key) {
            match c.tx.try_send((bytes, tx)) {
                Ok(()) => {
                    c.active = tokio::time::Instant::now();
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "connection send queue full",
                    ))
                }
                Err(mpsc::error::TrySendError::Closed((b, t))) => {
                    self.conns.remove(&key);
                    return self.send(transport, to, b, t);
                }
            }
        }
        if is_websocket(&transport) && self.closed_inbound.contains(&key) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the WebSocket flow from {to} is closed (a WebSocket client accepts no connection)"),
            ));
        }
        if self.conns.len() >= self.setup.limits.max_connections && !self.evict_idle() {
            return Err(io::Error::other("too many connections"));
        }
        let (otx, orx) = queue();
        let _ = otx.try_send((bytes, tx));
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn {
            tx: otx,
            id,
            accepted: false,
            active: tokio::time::Instant::now(),
        };
        self.conns.insert(key, conn);
        let name = self.names.get(&to).cloned().unwrap_or_default();
        tokio::spawn(connection(
            Dial::Out(name),
            transport,
            to,
            id,
            orx,
            self.events_tx.clone(),
            self.setup.clone(),
        ));
        Ok(())
    }
}

async fn accept(
    listener: TcpListener,
    transport: Transport,
    events: mpsc::Sender<StreamEvent>,
    setup: Setup,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            // out of file descriptors and the like: wait a little rather than spin
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (otx, orx) = queue();
        let accepted = StreamEvent::Accepted(transport.clone(), remote, otx);
        if events.send(accepted).await.is_err() {
            return;
        }
        // id 0: an accepted connection closes whatever entry its address has
        tokio::spawn(connection(
            Dial::In(stream),
            transport.clone(),
            remote,
            0,
            orx,
            events.clone(),
            setup.clone(),
        ));
    }
}

/// Connects to `remote` (TCP, then TLS if secure, checking the certificate against `name`
/// when the address was reached by one, else against the address), or says why it could not.
async fn connect(
    transport: &Transport,
    remote: SocketAddr,
    name: Option<&str>,
    setup: &Setup,
) -> Result<BoxIo, TransportError> {
    let timeout = setup.limits.connect_timeout;
    let context = || format!("{transport} connection to {remote}");
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(remote))
        .await
        .map_err(|_| {
            TransportError::new(
                TransportErrorKind::Timeout,
                format!("{}: no answer within {} s", context(), timeout.as_secs()),
            )
        })?
        .map_err(|e| TransportError::io(context(), e))?;
    let _ = tcp.set_nodelay(true);
    if !is_secure(transport) {
        return Ok(Box::new(tcp));
    }
    let name = match name.map(|n| rustls::pki_types::ServerName::try_from(n.to_owned())) {
        Some(Ok(n)) => n,
        _ => rustls::pki_types::ServerName::IpAddress(remote.ip().into()),
    };
    let client = match &setup.tls_client {
        Some(c) => c,
        None => platform_client().as_ref().ok_or_else(|| {
            TransportError::new(
                TransportErrorKind::Tls,
                format!(
                    "{}: no trusted roots: the platform has none (TlsOptions::client sets some)",
                    context()
                ),
            )
        })?,
    };
    let s = tokio::time::timeout(timeout, client.connect(name, tcp))
        .await
        .map_err(|_| {
            TransportError::new(
                TransportErrorKind::Timeout,
                format!(
                    "{}: no TLS handshake within {} s",
                    context(),
                    timeout.as_secs()
                ),
            )
        })?
        .map_err(|e| TransportError::io(format!("{}: TLS", context()), e))?;
    Ok(Box::new(s))
}

/// A client configuration trusting the platform's roots (rustls-native-certs: the system's
/// store, or the file `SSL_CERT_FILE` names), loaded once, at the first TLS connection that
/// has no configuration of its own; `None` when the platform has no roots at all.
fn platform_client() -> &'static Option<tokio_rustls::TlsConnector> {
    static CLIENT: std::sync::OnceLock<Option<tokio_rustls::TlsConnector>> =
        std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        (added > 0).then(|| {
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        })
    })
}

/// The TLS handshake of an accepted connection, when the transport is secure.
async fn secure(transport: &Transport, tcp: TcpStream, setup: &Setup) -> Option<BoxIo> {
    if !is_secure(transport) {
        return Some(Box::new(tcp));
    }
    let tls = setup.tls_server.as_ref()?.accept(tcp);
    let s = tokio::time::timeout(setup.limits.connect_timeout, tls)
        .await
        .ok()?
        .ok()?;
    Some(Box::new(s))
}

fn ws_config(limits: &StreamLimits) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(limits.max_message);
    c.max_frame_size = Some(limits.max_message);
    c
}

/// How a connection starts: accepted, or opened by us to a server known by a host name and
/// path (or only by its address).
enum Dial {
    In(TcpStream),
    Out(ServerName),
}

/// One connection: set it up, then read, frame, write and keep alive until closed.
async fn connection(
    dial: Dial,
    transport: Transport,
    remote: SocketAddr,
    id: u64,
    mut out: QueueRx,
    events: mpsc::Sender<StreamEvent>,
    setup: Setup,
) {
    let (io, name) = match dial {
        Dial::In(tcp) => (
            secure(&transport, tcp, &setup).await.ok_or(None),
            ServerName::default(),
        ),
        Dial::Out(name) => (
            connect(&transport, remote, name.host.as_deref(), &setup)
                .await
                .map_err(Some),
            name,
        ),
    };
    let mut why: Option<TransportError> = None;
    match io {
        Err(e) => why = e,
        Ok(io) => {
            let accepted = id == 0;
            let mut unanswered = Unanswered::default();
            let ended = if is_websocket(&transport) {
                let lines = (&transport, remote, &mut out, &events);
                websocket(io, accepted, &name, lines, &setup).await
            } else {
                let lines = (&transport, remote, &mut out, &events);
                bytestream(io, accepted, lines, &setup, &mut unanswered).await
            };
            if ended == Ended::Lost && !unanswered.sent.is_empty() {
                // the peer closed a connection we opened before sending a byte back (a TLS
                // server refusing our client certificate, say): what we sent on it will not
                // be answered, so its transactions fail now rather than at Timer B
                let context =
                    format!("{transport} connection to {remote} closed before any answer");
                let why = match unanswered.error {
                    Some(e) => TransportError::io(context, e),
                    None => TransportError::new(TransportErrorKind::Closed, context),
                };
                for tx in unanswered.sent {
                    let ev = NetEvent::SendFailed(tx, Some(why.clone()));
                    let _ = events.send(StreamEvent::Net(ev)).await;
                }
            }
            if !accepted && ended == Ended::Lost {
                // a flow we opened (to a registrar, a proxy) broke: the user agent may recover
                let ev = NetEvent::FlowLost(transport.clone(), remote);
                let _ = events.send(StreamEvent::Net(ev)).await;
            }
        }
    }
    // whatever is still queued will never leave: fail its transactions now
    out.close();
    while let Ok((_, tx)) = out.try_recv() {
        if let Some(tx) = tx {
            let ev = NetEvent::SendFailed(tx, why.clone());
            let _ = events.send(StreamEvent::Net(ev)).await;
        }
    }
    let _ = events
        .send(StreamEvent::Closed(transport, remote, id))
        .await;
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// We closed it: idle, or the transport is going away.
    Closed,
    /// The peer closed it, it failed, or its keep-alive went unanswered.
    Lost,
}

/// A connection's part of [`Setup::partial`], given back when dropped.
struct Share<'a> {
    total: &'a AtomicUsize,
    mine: usize,
}

impl Share<'_> {
    /// Sets this connection's partial bytes to `now`; false if that would take the total
    /// past `limit` (the share is then unchanged).
    fn set(&mut self, now: usize, limit: usize) -> bool {
        if now > self.mine {
            let more = now - self.mine;
            if self.total.fetch_add(more, Ordering::AcqRel) + more > limit {
                self.total.fetch_sub(more, Ordering::AcqRel);
                return false;
            }
        } else {
            self.total.fetch_sub(self.mine - now, Ordering::AcqRel);
        }
        self.mine = now;
        true
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::AcqRel);
    }
}

/// On a connection we opened, the transactions whose requests went out before the peer
/// sent a single byte (at most a few: the first requests), and the error that ended it.
#[derive(Default)]
struct Unanswered {
    sent: Vec<TransactionId>,
    error: Option<std::io::Error>,
}

/// What a connection reads and writes for: its transport and peer, the queue of what to
/// send, and where to report.
type Lines<'a> = (
    &'a Transport,
    SocketAddr,
    &'a mut QueueRx,
    &'a mpsc::Sender<StreamEvent>,
);

/// TCP and TLS: messages cut from the byte stream by Content-Length.
async fn bytestream(
    io: BoxIo,
    accepted: bool,
    (transport, remote, out, events): Lines<'_>,
    setup: &Setup,
    unanswered: &mut Unanswered,
) -> Ended {
    // until the first byte comes back, what we send is remembered (see Unanswered)
    let mut heard = accepted;
    // this connection's share of the partial bytes of all connections, given back at the end
    let mut share = Share {
        total: &setup.partial,
        mine: 0,
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut framer = StreamFramer::new(setup.limits.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    // RFC 5626 §4.4.1: the side that opened the flow keeps it alive with CRLF pings and
    // gives it up when a pong does not come within 10 s; it is then not closed for idleness
    let keepalive = keepalive_of(accepted, setup);
    let mut ping_sent = false;
    // when the message now being read began to arrive: it must end within the deadline
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        let wait = next_wait(keepalive, ping_sent, setup);
        let wake = tokio::time::Instant::now() + wait;
        let wake = match partial_since {
            Some(t) => wake.min(t + setup.limits.message_deadline),
            None => wake,
        };
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return Ended::Lost,
                    Err(e) => {
                        unanswered.error = Some(e);
                        return Ended::Lost;
                    }
                    Ok(n) => n,
                };
                if !heard {
                    heard = true;
                    unanswered.sent = Vec::new();
                }
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            let ev = NetEvent::Message(transport.clone(), m, remote);
                            if events.send(StreamEvent::Net(ev)).await.is_err() {
                                return Ended::Closed;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {
                            if wr.write_all(b"\r\n").await.is_err() {
                                return Ended::Lost;
                            }
                        }
                        Ok(Some(Frame::Pong)) => ping_sent = false,
                        Ok(None) => break,
                        Err(e) => {
                            // framing is lost: only closing recovers; a message too large
                            // is told why first (413/513)
                            if let Some(answer) = framer.error_answer(&e) {
                                let _ = wr.write_all(&answer).await;
                                let _ = wr.flush().await;
                            }
                            return Ended::Lost;
                        }
                    }
                }
                if !share.set(framer.pending(), setup.limits.max_partial_bytes) {
                    return Ended::Lost; // too much held by half-received messages
                }
                partial_since = match (framer.pending(), partial_since) {
                    (0, _) => None,
                    (_, None) => Some(tokio::time::Instant::now()),
                    (_, started) => started,
                };
            }
            m = out.recv() => {
                let Some((bytes, tx)) = m else { return Ended::Closed };
                if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                    if let Some(tx) = tx {
                        let _ = events.send(StreamEvent::Net(NetEvent::SendFailed(tx, None))).await;
                    }
                    return Ended::Lost;
                }
                if let (false, Some(tx)) = (heard, tx) {
                    if unanswered.sent.len() < 64 {
                        unanswered.sent.push(tx);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if partial_since
                    .is_some_and(|t| t + setup.limits.message_deadline <= tokio::time::Instant::now())
                {
                    return Ended::Lost; // a message that never ends: a slow sender, or a stall
                }
                if keepalive.is_none() {
                    return Ended::Closed; // idle
                }
                if ping_sent {
                    return Ended::Lost; // no pong: the flow failed (RFC 5626 §4.4.1)
                }
                if wr.write_all(b"\r\n\r\n").await.is_err() {
                    return Ended::Lost;
                }
                ping_sent = true;
            }
        }
    }
}

/// RFC 5626 §4.4.1: the side that opened a flow keeps it alive (every `keepalive`), and is
/// then not closed for idleness; the side that accepted it waits for the pings.
fn keepalive_of(accepted: bool, setup: &Setup) -> Option<std::time::Duration> {
    if accepted {
        None
    } else {
        setup.limits.keepalive
    }
}

/// How long a connection may stay silent now: until the pong of a ping sent, the next ping,
/// or (without keep-alives) the idle limit.
fn next_wait(
    keepalive: Option<std::time::Duration>,
    ping_sent: bool,
    setup: &Setup,
) -> std::time::Duration {
    match keepalive {
        Some(_) if ping_sent => PONG_TIMEOUT,
        Some(interval) => interval,
        None => setup.limits.idle,
    }
}

/// The server side of the handshake: the client must offer subprotocol `sip` (RFC 7118
/// §4.1), which the answer then names; anything else is refused with 400.
// the callback's signature is tungstenite's, large error type included
#[allow(clippy::result_large_err)]
fn require_sip(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offers_sip = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        let mut e = ErrorResponse::new(Some("subprotocol sip required".into()));
        *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
        return Err(e);
    }
    resp.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

/// WS and WSS: the handshake with subprotocol `sip`, then one SIP message per WebSocket
/// message (RFC 7118 §5).
async fn websocket(
    io: BoxIo,
    accepted: bool,
    name: &ServerName,
    (transport, remote, out, events): Lines<'_>,
    setup: &Setup,
) -> Ended {
    let config = Some(ws_config(&setup.limits));
    let handshake = async {
        if accepted {
            tokio_tungstenite::accept_hdr_async_with_config(io, require_sip, config)
                .await
                .ok()
        } else {
            // the URL names the host (its Host header) and path the server was configured by
            let scheme = if is_secure(transport) { "wss" } else { "ws" };
            let authority = match &name.host {
                Some(h) => format!("{h}:{}", remote.port()),
                None => remote.to_string(),
            };
            let path = name.path.as_deref().unwrap_or("/");
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    format!("{scheme}://{authority}{path}"),
                )
                .ok()?;
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            let (ws, resp) = tokio_tungstenite::client_async_with_config(req, io, config)
                .await
                .ok()?;
            let agreed = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(SUBPROTOCOL));
            agreed.then_some(ws)
        }
    };
    let Ok(Some(mut ws)) = tokio::time::timeout(setup.limits.connect_timeout, handshake).await
    else {
        return Ended::Closed;
    };
    // RFC 5626 §4.4.1 over WebSocket: the side that opened the flow pings (a WebSocket Ping,
    // which every server answers, RFC 6455 §5.5.2) and gives the flow up when no Pong comes
    let keepalive = keepalive_of(accepted, setup);
    let mut ping_sent = false;
    loop {
        let wait = next_wait(keepalive, ping_sent, setup);
        let idle = tokio::time::sleep(wait);
        tokio::select! {
            m = ws.next() => {
                let data: Bytes = match m {
                    Some(Ok(WsMessage::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(WsMessage::Binary(b))) => b,
                    Some(Ok(WsMessage::Pong(_))) => {
                        ping_sent = false;
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) => {
                        // the library queued our Close in reply: send it before letting go
                        // (RFC 6455 §5.5.1; a peer that never hears it reports 1006)
                        let _ = tokio::time::timeout(WS_CLOSE_WAIT, ws.flush()).await;
                        return Ended::Lost;
                    }
                    None | Some(Err(_)) => return Ended::Lost,
                    Some(Ok(_)) => continue, // ping/pong frames: answered by the library
                };
                if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    // a keep-alive as SIP.js sends it: a CRLF CRLF ping gets a CRLF pong
                    // (RFC 5626 §4.4.1); a lone CRLF is a pong and needs nothing
                    if data.len() >= 4 && ws.send(WsMessage::Text("\r\n".into())).await.is_err() {
                        return Ended::Lost;
                    }
                    ping_sent = false;
                    continue;
                }
                let ev = NetEvent::Message(transport.clone(), data, remote);
                if events.send(StreamEvent::Net(ev)).await.is_err() {
                    return Ended::Closed;
                }
            }
            m = out.recv() => {
                let Some((bytes, tx)) = m else {
                    close_ws(&mut ws).await;
                    return Ended::Closed;
                };
                // SIP is text; browsers' SIP stacks expect text frames
                let msg = match std::str::from_utf8(&bytes) {
                    Ok(s) => WsMessage::Text(s.into()),
                    Err(_) => WsMessage::Binary(bytes.clone()),
                };
                if ws.send(msg).await.is_err() {
                    if let Some(tx) = tx {
                        let _ = events.send(StreamEvent::Net(NetEvent::SendFailed(tx, None))).await;
                    }
                    return Ended::Lost;
                }
            }
            _ = idle => {
                if keepalive.is_none() {
                    close_ws(&mut ws).await;
                    return Ended::Closed; // idle
                }
                if ping_sent {
                    return Ended::Lost; // no pong: the flow failed (RFC 5626 §4.4.1)
                }
                if ws.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    return Ended::Lost;
                }
                ping_sent = true;
            }
        }
    }
}

/// How long a WebSocket close handshake may take, each way.
const WS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Our side of the close handshake (RFC 6455 §5.5.1, §7.1.2): a Close frame, then the
/// peer's Close in reply (what else it sends meanwhile is dropped), within [`WS_CLOSE_WAIT`].
async fn close_ws<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if ws.close(None).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(WS_CLOSE_WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A TCP listener on `addr`; with `reuse_port`, one of several on the same address (each
/// agent of `serve --threads` has one, and the kernel spreads connections among them).
fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // as std's bind does: a restarted server is not refused its port while old connections
    // of the previous run linger in TIME_WAIT
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuseport(true)?;
        #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT is not available on this system",
        ));
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_queue_is_bounded_in_bytes_as_well_as_messages() {
        let (tx, mut rx) = queue();
        let big = || (Bytes::from(vec![0u8; 600 * 1024]), None);
        tx.try_send(big()).unwrap();
        // a second 600 KiB would pass 1 MiB: refused, and the count is not disturbed
        assert!(matches!(
            tx.try_send(big()),
            Err(mpsc::error::TrySendError::Full(_))
        ));
        assert_eq!(tx.bytes.load(Ordering::Acquire), 600 * 1024);
        // once the connection has taken the first, there is room again
        rx.recv().await.unwrap();
        assert_eq!(tx.bytes.load(Ordering::Acquire), 0);
        tx.try_send(big()).unwrap();
        // small messages stop at the message count
        let (tx, _rx) = queue();
        let sent = (0..CONNECTION_QUEUE + 10)
            .filter(|_| tx.try_send((Bytes::from_static(b"x"), None)).is_ok())
            .count();
        assert_eq!(sent, CONNECTION_QUEUE);
    }
}
