//! One UDP port served by several user agents, one per core ([`udp_shards`]): the SIP core
//! is single-threaded by design (sans-IO, one task owns its transactions and dialogs), so a
//! machine's cores are used by running one agent per core, each owning the calls whose
//! Call-ID hashes to it (RFC 3261 §8.1.1.4: every message of a dialog and of its
//! transactions carries the same Call-ID, so a dialog never crosses shards).
//!
//! A single peer (one SIPp, one proxy) sends from one address, so the kernel's
//! `SO_REUSEPORT` spreading, which hashes the address pair, would put everything on one
//! socket. Here one socket is shared: the first shard reads it and hands each datagram that
//! is not its own to the shard it belongs to over a bounded queue (full: the datagram is
//! dropped, as a full socket buffer would; the sender's retransmission recovers it), reading
//! up to 16 datagrams per system call (`recvmmsg`, [`sipua_udp`]). Every shard sends on the
//! socket directly. Each shard's core makes Call-IDs that hash to itself
//! ([`sipua_proto::ua::UaConfig::shard`]), so answers to its own requests come back to it.
//!
//! Two exceptions to the Call-ID rule, kept in one bounded table by the reading shard. A call
//! that began over a connection one agent accepted is that agent's (its later requests may
//! come over UDP: small ones after an INVITE too large for UDP, RFC 3261 §18.1.1), so the
//! agent claims its Call-ID ([`DatagramTransport::claim`]). And an INVITE with Replaces
//! (RFC 3891, attended transfer) must reach the agent that holds the dialog it replaces,
//! named by the Call-ID inside the Replaces header: it goes there, and so does every later
//! message of its own Call-ID.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sipua_proto::hash::shard_of;
use tokio::sync::mpsc;

use super::{DatagramTransport, DatagramTransportFactory, Listen};

/// Datagrams waiting for one shard; past it they are dropped.
const SHARD_QUEUE: usize = 8192;

/// Most datagrams of other shards the reading shard hands on in one poll, before it lets its
/// own agent run.
const HAND_ON_BURST: usize = 256;

/// Most Call-IDs routed by a Replaces rather than by their hash that are remembered (the
/// oldest is forgotten first: a call that outlives 65 536 later transfers loses its route).
const MAX_EXCEPTIONS: usize = 65_536;

/// Binds one UDP socket at `addr` and returns `count` listeners on it, one for each agent
/// that shares it: run each agent (its [`UserAgentOptions::listen`](crate::UserAgentOptions::listen))
/// on a thread or runtime of its own. Every listener names the same address in Via and
/// Contact. The first one's agent reads the socket for all; start it, and keep it running,
/// while any other runs.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let listens = sipua::transport::udp_shards("127.0.0.1:5060".parse().unwrap(), 2)?;
/// for listen in listens {
///     std::thread::spawn(move || {
///         let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
///         rt.block_on(async move {
///             let ua = sipua::UserAgent::new(sipua::UserAgentOptions {
///                 listen,
///                 ..Default::default()
///             });
///             ua.start().await.unwrap();
///             std::future::pending::<()>().await
///         })
///     });
/// }
/// # Ok(()) }
/// ```
pub fn udp_shards(addr: SocketAddr, count: usize) -> io::Result<Vec<Listen>> {
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "udp_shards: at least one shard",
        ));
    }
    let socket = std::net::UdpSocket::from(super::udp_socket_std(addr)?);
    let local = socket.local_addr()?;
    let mut senders = Vec::with_capacity(count);
    let mut receivers = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = mpsc::channel(SHARD_QUEUE);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let shared = Arc::new(Shared {
        socket,
        local,
        senders,
        receivers: Mutex::new(receivers),
        claims: Mutex::new(Vec::new()),
    });
    Ok((0..count)
        .map(|index| {
            Listen::Datagram(Arc::new(ShardBind {
                shared: shared.clone(),
                index,
            }))
        })
        .collect())
}

/// One shard's queue of datagrams and their senders.
type Queue = mpsc::Receiver<(Bytes, SocketAddr)>;

/// What the shards of one socket share.
struct Shared {
    /// Non-blocking: every shard sends on it from its own thread.
    socket: std::net::UdpSocket,
    local: SocketAddr,
    /// Each shard's queue of datagrams (the first's is unused: it reads the socket).
    senders: Vec<mpsc::Sender<(Bytes, SocketAddr)>>,
    /// Taken by each shard's transport when its agent starts.
    receivers: Mutex<Vec<Option<Queue>>>,
    /// Calls the other shards claimed (a Call-ID and the shard), for the reader to add to
    /// its exceptions; bounded by [`MAX_CLAIMS`].
    claims: Mutex<Vec<(Box<[u8]>, usize)>>,
}

/// Claims waiting for the reader at most; past it a claim is dropped (its call's UDP
/// requests then go by the hash, and may get 481).
const MAX_CLAIMS: usize = 4096;

/// Makes shard `index`'s transport when its agent starts.
struct ShardBind {
    shared: Arc<Shared>,
    index: usize,
}

impl DatagramTransportFactory for ShardBind {
    fn bind(&self) -> io::Result<Box<dyn DatagramTransport>> {
        let rx = self
            .shared
            .receivers
            .lock()
            .map_err(|_| io::Error::other("udp_shards: poisoned"))?
            .get_mut(self.index)
            .and_then(Option::take)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("udp shard {} is in use", self.index),
                )
            })?;
        // the reading shard registers the socket with the runtime it runs on
        let reader = if self.index == 0 {
            let s = self.shared.socket.try_clone()?;
            Some(Reader::new(tokio::net::UdpSocket::from_std(s)?))
        } else {
            None
        };
        Ok(Box::new(Shard {
            shared: self.shared.clone(),
            index: self.index,
            rx,
            reader,
        }))
    }
}

/// One agent's share of the socket.
struct Shard {
    shared: Arc<Shared>,
    index: usize,
    rx: Queue,
    /// The socket and what routing needs, for the shard that reads.
    reader: Option<Reader>,
}

/// The reading shard's socket (read in batches, as an agent's own is) and routing exceptions.
struct Reader {
    rx: super::UdpRx,
    /// Call-IDs that go to another shard than their hash says (see the module's text).
    exceptions: std::collections::HashMap<Box<[u8]>, usize>,
    order: std::collections::VecDeque<Box<[u8]>>,
}

impl Reader {
    fn new(socket: tokio::net::UdpSocket) -> Reader {
        Reader {
            rx: super::UdpRx::new(socket),
            exceptions: Default::default(),
            order: Default::default(),
        }
    }

    /// Sends Call-ID `id` to shard `to` from now on; the oldest exception goes when the
    /// table is full.
    fn except(&mut self, id: &[u8], to: usize) {
        if self.order.len() >= MAX_EXCEPTIONS {
            if let Some(old) = self.order.pop_front() {
                self.exceptions.remove(&old);
            }
        }
        let key: Box<[u8]> = id.into();
        if self.exceptions.insert(key.clone(), to).is_none() {
            self.order.push_back(key);
        }
    }

    /// Which of `count` shards datagram `d` goes to.
    fn route(&mut self, d: &[u8], count: usize) -> usize {
        let id = call_id(d);
        if let Some(&to) = id.and_then(|id| self.exceptions.get(id)) {
            return to;
        }
        if let Some(replaced) = d.starts_with(b"INVITE ").then(|| replaces(d)).flatten() {
            let to = shard_of(replaced, count);
            if let Some(id) = id.filter(|id| shard_of(id, count) != to) {
                self.except(id, to);
            }
            return to;
        }
        id.map_or(0, |id| shard_of(id, count))
    }
}

impl DatagramTransport for Shard {
    fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    fn send_to(&mut self, datagram: Bytes, to: SocketAddr) -> io::Result<()> {
        match self.shared.socket.send_to(&datagram, to) {
            // the send buffer is full: lost, as on a congested link; retransmissions recover
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            r => r.map(|_| ()),
        }
    }

    fn poll_recv_from(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Bytes, SocketAddr)>> {
        let count = self.shared.senders.len();
        if let Some(reader) = self.reader.as_mut() {
            let claims = match self.shared.claims.lock() {
                Ok(mut c) if !c.is_empty() => std::mem::take(&mut *c),
                _ => Vec::new(),
            };
            for (id, to) in claims {
                reader.except(&id, to);
            }
            for _ in 0..HAND_ON_BURST {
                // each datagram counted against the task's budget, as a read of its own
                // would be (a batched read is one operation for tokio)
                let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
                match reader.rx.poll_next(cx) {
                    Poll::Ready((d, from)) => {
                        coop.made_progress();
                        let to = reader.route(&d, count);
                        if to == self.index {
                            return Poll::Ready(Some((d, from)));
                        }
                        // full: dropped, as a full socket buffer would
                        let _ = self.shared.senders[to].try_send((d, from));
                    }
                    Poll::Pending => return self.rx.poll_recv(cx),
                }
            }
            // more may be waiting: let this shard's agent run first, then come back
            cx.waker().wake_by_ref();
            return match self.rx.poll_recv(cx) {
                Poll::Ready(Some(m)) => Poll::Ready(Some(m)),
                _ => Poll::Pending,
            };
        }
        self.rx.poll_recv(cx)
    }

    fn shard(&self) -> Option<(usize, usize)> {
        Some((self.index, self.shared.senders.len()))
    }

    fn claim(&mut self, message: &[u8]) {
        let Some(id) = call_id(message) else { return };
        if shard_of(id, self.shared.senders.len()) == self.index {
            return;
        }
        if let Ok(mut c) = self.shared.claims.lock() {
            if c.len() < MAX_CLAIMS {
                c.push((id.into(), self.index));
            }
        }
    }
}

/// The Call-ID of a SIP message in `d`, as the parser will read it (the value between the
/// colon and the line end, without surrounding white space), or `None` when there is none
/// in the headers (a keep-alive, garbage: the first shard answers those).
pub(crate) fn call_id(d: &[u8]) -> Option<&[u8]> {
    header(d, b"call-id", b"i")
}

/// The Call-ID of the dialog a request's Replaces header names (RFC 3891 §6.1: the value up
/// to its first parameter).
fn replaces(d: &[u8]) -> Option<&[u8]> {
    let v = header(d, b"replaces", b"replaces")?;
    let id = v.split(|&b| b == b';').next()?.trim_ascii();
    (!id.is_empty()).then_some(id)
}

/// The first value of header `name` (or its compact form) in the header section of `d`.
fn header<'a>(d: &'a [u8], name: &[u8], compact: &[u8]) -> Option<&'a [u8]> {
    let mut at = memchr::memchr(b'\n', d)? + 1;
    while at < d.len() {
        let end = memchr::memchr(b'\n', &d[at..]).map_or(d.len(), |n| at + n);
        let line = &d[at..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // the end of the headers
        }
        let name_end = line
            .iter()
            .position(|&b| b == b':' || b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let found = &line[..name_end];
        if found.eq_ignore_ascii_case(name) || found.eq_ignore_ascii_case(compact) {
            let rest = line[name_end..].trim_ascii_start();
            if let Some(value) = rest.strip_prefix(b":") {
                let value = value.trim_ascii();
                return (!value.is_empty()).then_some(value);
            }
        }
        at = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_id_is_found_as_the_parser_reads_it() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                  Call-ID:  abc@host \r\nCSeq: 1 INVITE\r\n\r\nbody\r\nCall-ID: no\r\n";
        assert_eq!(call_id(m), Some(&b"abc@host"[..]));
        let compact = b"SIP/2.0 200 OK\nv: SIP/2.0/UDP h\ni:x1\n\n";
        assert_eq!(call_id(compact), Some(&b"x1"[..]));
        let spaced = b"BYE sip:a@b SIP/2.0\r\ncall-id\t : Q\r\n\r\n";
        assert_eq!(call_id(spaced), Some(&b"Q"[..]));
        // a header whose name only starts like it, one in the body, none at all
        assert_eq!(call_id(b"BYE x SIP/2.0\r\nCall-IDs: y\r\n\r\n"), None);
        assert_eq!(call_id(b"BYE x SIP/2.0\r\n\r\nCall-ID: y\r\n"), None);
        assert_eq!(call_id(b"\r\n\r\n"), None);
        assert_eq!(call_id(b""), None);
        // the same Call-ID as the parser sees it
        let valid = b"OPTIONS sip:b@192.0.2.2 SIP/2.0\r\n\
                      Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\n\
                      From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.2>\r\n\
                      Call-ID: \t x-y.z@192.0.2.1  \r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
                      Content-Length: 0\r\n\r\n";
        let parsed = sipua_message::Message::parse(valid).unwrap();
        assert_eq!(parsed.call_id().as_bytes(), call_id(valid).unwrap());
    }

    #[tokio::test]
    async fn an_invite_with_replaces_goes_where_the_replaced_call_is_and_its_call_follows() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut reader = Reader::new(socket);
        let n = 4;
        // a replaced call and a new Call-ID that hash to different shards
        let old = "old-call@host";
        let new = (0..)
            .map(|i| format!("new-{i}@host"))
            .find(|id| shard_of(id.as_bytes(), n) != shard_of(old.as_bytes(), n))
            .unwrap();
        let home = shard_of(old.as_bytes(), n);
        let invite = format!(
            "INVITE sip:a@b SIP/2.0\r\nCall-ID: {new}\r\n\
             Replaces: {old};to-tag=1;from-tag=2\r\n\r\n"
        );
        assert_eq!(reader.route(invite.as_bytes(), n), home);
        // the new call's later messages follow it, responses too
        for m in [
            format!("ACK sip:a@b SIP/2.0\r\ni: {new}\r\n\r\n"),
            format!("BYE sip:a@b SIP/2.0\r\nCall-ID: {new}\r\n\r\n"),
            format!("SIP/2.0 200 OK\r\nCall-ID: {new}\r\n\r\n"),
        ] {
            assert_eq!(reader.route(m.as_bytes(), n), home, "{m}");
        }
        // a Replaces outside an INVITE changes nothing; other calls go by their hash
        let other = format!("MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nReplaces: {old}\r\n\r\n");
        assert_eq!(reader.route(other.as_bytes(), n), shard_of(b"x", n));
        // the table is bounded: the oldest exception goes first
        for i in 0..2 * MAX_EXCEPTIONS {
            let invite =
                format!("INVITE sip:a@b SIP/2.0\r\nCall-ID: c{i}\r\nReplaces: {old}\r\n\r\n");
            reader.route(invite.as_bytes(), n);
        }
        assert!(reader.exceptions.len() <= MAX_EXCEPTIONS);
        assert_eq!(reader.exceptions.len(), reader.order.len());
        assert!(!reader.exceptions.contains_key(new.as_bytes()));
    }

    /// Each shard's transport, as its agent would bind it.
    fn bind_all(listens: &[Listen]) -> Vec<Box<dyn DatagramTransport>> {
        listens
            .iter()
            .map(|l| match l {
                Listen::Datagram(f) => f.bind().unwrap(),
                _ => unreachable!(),
            })
            .collect()
    }

    /// What a shard has for its agent now, without waiting.
    async fn poll_once(s: &mut dyn DatagramTransport) -> Option<(Bytes, SocketAddr)> {
        std::future::poll_fn(|cx| match s.poll_recv_from(cx) {
            Poll::Pending => Poll::Ready(None),
            r => r,
        })
        .await
    }

    #[tokio::test]
    async fn each_datagram_reaches_the_shard_its_call_id_hashes_to() {
        let listens = udp_shards("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let mut shards = bind_all(&listens);
        // a second agent cannot take a shard already taken
        match &listens[1] {
            Listen::Datagram(f) => assert!(f.bind().is_err()),
            _ => unreachable!(),
        }
        let addr = shards[0].local_addr();
        assert!(shards.iter().all(|s| s.local_addr() == addr));
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ids: Vec<String> = (0..60).map(|i| format!("call-{i}@peer")).collect();
        for id in &ids {
            let m = format!("OPTIONS sip:x@y SIP/2.0\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\n\r\n");
            peer.send_to(m.as_bytes(), addr).await.unwrap();
        }
        let mut got: Vec<Vec<String>> = vec![Vec::new(); 3];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < ids.len() {
            assert!(tokio::time::Instant::now() < deadline, "datagrams lost");
            for (i, s) in shards.iter_mut().enumerate() {
                let polled = poll_once(s.as_mut()).await;
                if let Some((d, from)) = polled {
                    assert_eq!(from, peer.local_addr().unwrap());
                    let id = String::from_utf8(call_id(&d).unwrap().to_vec()).unwrap();
                    got[i].push(id);
                }
            }
            tokio::task::yield_now().await;
        }
        for (i, ids) in got.iter().enumerate() {
            assert!(!ids.is_empty(), "shard {i} got nothing of 60 calls");
            for id in ids {
                assert_eq!(shard_of(id.as_bytes(), 3), i, "{id}");
            }
        }
        // each shard sends from the shared address
        shards[2]
            .send_to(Bytes::from_static(b"hi"), peer.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hi"[..], addr));
    }

    #[tokio::test]
    async fn a_call_claimed_by_the_agent_that_took_its_connection_comes_to_it_over_udp() {
        let listens = udp_shards("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let mut shards = bind_all(&listens);
        let addr = shards[0].local_addr();
        // a Call-ID that hashes to shard 1, whose INVITE shard 2 took over a connection
        let id = (0..)
            .map(|i| format!("big-{i}@peer"))
            .find(|id| shard_of(id.as_bytes(), 3) == 1)
            .unwrap();
        let invite = format!("INVITE sip:x@y SIP/2.0\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\r\n");
        shards[2].claim(invite.as_bytes());
        // a claim for a call already one's own changes nothing
        shards[1].claim(invite.as_bytes());
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let bye = format!("BYE sip:x@y SIP/2.0\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\n\r\n");
        peer.send_to(bye.as_bytes(), addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "the BYE was lost");
            let mut arrived = None;
            for (i, s) in shards.iter_mut().enumerate() {
                let polled = poll_once(s.as_mut()).await;
                if polled.is_some() {
                    arrived = Some(i);
                }
            }
            if let Some(i) = arrived {
                assert_eq!(
                    i, 2,
                    "the BYE went to shard {i}, not the one that claimed it"
                );
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
