//! SIP over TCP (RFC 3261 §18): a listener, and one task per connection that frames incoming
//! bytes into messages (Content-Length, RFC 3261 §18.3), answers CRLF keep-alive pings
//! (RFC 5626 §4.4.1), writes what the driver sends, and closes after an idle period or when
//! framing is lost. Connections are keyed by the peer's address and reused both ways: a
//! response goes back on the connection its request came in on (§18.2.2).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use sipua_message::{Frame, StreamFramer, Transport};
use sipua_proto::endpoint::TransactionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{NetEvent, StreamLimits};

/// Messages queued for one connection before sending fails fast.
const CONNECTION_QUEUE: usize = 256;
/// Events from every connection to the driver.
const EVENT_QUEUE: usize = 1024;

type Outgoing = (Bytes, Option<TransactionId>);

/// What connection tasks and the acceptor tell the transport.
enum TcpEvent {
    Net(NetEvent),
    Accepted(SocketAddr, mpsc::Sender<Outgoing>),
    Closed(SocketAddr, u64),
}

pub(crate) struct Tcp {
    local: SocketAddr,
    limits: StreamLimits,
    conns: HashMap<SocketAddr, (mpsc::Sender<Outgoing>, u64)>,
    events_tx: mpsc::Sender<TcpEvent>,
    events: mpsc::Receiver<TcpEvent>,
    next_id: u64,
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Tcp {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }
}

impl Tcp {
    /// Listens on `addr`.
    pub(crate) async fn bind(addr: SocketAddr, limits: StreamLimits) -> io::Result<Tcp> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let mut t = Tcp::client_only(local, limits);
        let events = t.events_tx.clone();
        t.acceptor = Some(tokio::spawn(accept(listener, events, limits)));
        Ok(t)
    }

    /// TCP without a listener: connections we open only.
    pub(crate) fn client_only(local: SocketAddr, limits: StreamLimits) -> Tcp {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        Tcp {
            local,
            limits,
            conns: HashMap::new(),
            events_tx,
            events,
            next_id: 1,
            acceptor: None,
        }
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The next message or failure from any connection.
    pub(crate) async fn recv(&mut self) -> Option<NetEvent> {
        loop {
            match self.events.recv().await? {
                TcpEvent::Net(e) => return Some(e),
                TcpEvent::Accepted(remote, tx) => {
                    if self.conns.len() >= self.limits.max_connections {
                        continue; // dropping the sender closes it
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    self.conns.insert(remote, (tx, id));
                }
                TcpEvent::Closed(remote, id) => {
                    if self
                        .conns
                        .get(&remote)
                        .is_some_and(|(_, i)| *i == id || id == 0)
                    {
                        self.conns.remove(&remote);
                    }
                }
            }
        }
    }

    /// Queues `bytes` for `to`, opening a connection if there is none.
    pub(crate) fn send(
        &mut self,
        to: SocketAddr,
        bytes: Bytes,
        tx: Option<TransactionId>,
    ) -> io::Result<()> {
        if let Some((c, _)) = self.conns.get(&to) {
            match c.try_send((bytes, tx)) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "connection send queue full",
                    ))
                }
                Err(mpsc::error::TrySendError::Closed((b, t))) => {
                    self.conns.remove(&to);
                    return self.send(to, b, t);
                }
            }
        }
        if self.conns.len() >= self.limits.max_connections {
            return Err(io::Error::other("too many connections"));
        }
        let (otx, orx) = mpsc::channel(CONNECTION_QUEUE);
        let _ = otx.try_send((bytes, tx));
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(to, (otx, id));
        tokio::spawn(connection(
            None,
            to,
            id,
            orx,
            self.events_tx.clone(),
            self.limits,
        ));
        Ok(())
    }
}

async fn accept(listener: TcpListener, events: mpsc::Sender<TcpEvent>, limits: StreamLimits) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            // out of file descriptors and the like: wait a little rather than spin
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (otx, orx) = mpsc::channel(CONNECTION_QUEUE);
        if events.send(TcpEvent::Accepted(remote, otx)).await.is_err() {
            return;
        }
        // id 0: an accepted connection closes whatever entry its address has
        tokio::spawn(connection(
            Some(stream),
            remote,
            0,
            orx,
            events.clone(),
            limits,
        ));
    }
}

/// One connection: connect if needed, then read, frame, write and keep alive until closed.
async fn connection(
    stream: Option<TcpStream>,
    remote: SocketAddr,
    id: u64,
    mut out: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<TcpEvent>,
    limits: StreamLimits,
) {
    let stream = match stream {
        Some(s) => Some(s),
        None => {
            match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(remote)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    Some(s)
                }
                _ => None,
            }
        }
    };
    if let Some(stream) = stream {
        serve(stream, remote, &mut out, &events, limits).await;
    }
    // whatever is still queued will never leave: fail its transactions now
    out.close();
    while let Ok((_, tx)) = out.try_recv() {
        if let Some(tx) = tx {
            let _ = events.send(TcpEvent::Net(NetEvent::SendFailed(tx))).await;
        }
    }
    let _ = events.send(TcpEvent::Closed(remote, id)).await;
}

async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    out: &mut mpsc::Receiver<Outgoing>,
    events: &mpsc::Sender<TcpEvent>,
    limits: StreamLimits,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = StreamFramer::new(limits.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let idle = tokio::time::sleep(limits.idle);
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            let ev = TcpEvent::Net(NetEvent::Message(Transport::Tcp, m, remote));
                            if events.send(ev).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::Ping)) => {
                            if wr.write_all(b"\r\n").await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::Pong)) => {}
                        Ok(None) => break,
                        Err(_) => return, // framing is lost: only closing recovers
                    }
                }
            }
            m = out.recv() => {
                let Some((bytes, tx)) = m else { return };
                if wr.write_all(&bytes).await.is_err() {
                    if let Some(tx) = tx {
                        let _ = events.send(TcpEvent::Net(NetEvent::SendFailed(tx))).await;
                    }
                    return;
                }
            }
            _ = idle => return,
        }
    }
}
