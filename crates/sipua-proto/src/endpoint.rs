//! The endpoint: owns every transaction, matches what arrives to them (RFC 3261 §17.1.3,
//! §17.2.3, with the RFC 2543 fallback), answers what no transaction should see (unmatched
//! CANCEL with 481, malformed requests with 400/505, overload with 503), and routes responses
//! back per RFC 3261 §18.2.2 and RFC 3581.
//!
//! It is sans-IO: the driver feeds it datagrams ([`Endpoint::handle_datagram`]) and time
//! ([`Endpoint::handle_timeout`]), the transaction user calls [`Endpoint::send_request`] and
//! [`Endpoint::respond`], and both drain [`Endpoint::poll_transmit`], [`Endpoint::poll_event`]
//! and [`Endpoint::poll_timeout`].
//!
//! One concern in one file (about 1 200 lines of code): the transaction table and the
//! matching rules that every message passes through; the four machines it drives live in
//! [`crate::transaction`].

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::header::RetryAfter;
use sipua_message::text::{ip_text, push_decimal};
use sipua_message::{
    error_response, Header, HeaderName, Host, Message, Method, ParseError, Request, Response,
    Transport, Via, ViaText,
};

use crate::hash::IdMap;
use crate::timers::TimerQueue;
use crate::transaction::{
    ClientInvite, ClientNonInvite, Delivery, Output, Reliability, ServerInvite, ServerNonInvite,
    State, TimerConfig,
};

/// Limits and timers of an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct Config {
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// Most live transactions; new requests beyond it get 503 with Retry-After.
    pub max_transactions: usize,
    /// Largest message accepted from the network, in bytes.
    pub max_message_size: usize,
    /// Send 100 Trying for INVITEs (RFC 3261 §17.2.1).
    pub send_trying: bool,
    /// Hold the 100 Trying this long and send it only if the TU has not answered by then
    /// (§17.2.1 allows leaving it out when the TU responds within 200 ms); zero sends it
    /// at once.
    pub trying_delay: Duration,
    /// Seeds the keyed hash of transaction keys (pass randomness in production).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timers: TimerConfig::default(),
            max_transactions: 100_000,
            max_message_size: 65_535,
            send_trying: true,
            trying_delay: Duration::ZERO,
            seed: 0x5eed_5eed_5eed_5eed,
        }
    }
}

/// Which new requests outside a dialog (no To tag) the endpoint refuses with a stateless 503
/// before any transaction is made for them (RFC 3261 §8.2.7, §21.5.4): the cheapest refusal
/// there is, so that a flood of new calls costs a parse and a datagram each, and calls
/// already accepted keep the machine. ACK and CANCEL are never refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admission {
    /// Refuse every new request (a draining agent), OPTIONS included, so that a dispatcher
    /// probing with OPTIONS takes the instance out.
    pub draining: bool,
    /// New INVITEs per second beyond which they are refused (a token bucket holding one
    /// second's worth); 0: no limit.
    pub invites_per_second: u32,
    /// The Retry-After of these 503s, in seconds.
    pub retry_after: u32,
    /// New INVITEs are refused while the datagrams waiting to be read have been queueing
    /// longer than this ([`Endpoint::set_backlog`]): the agent is behind, and a call taken
    /// now would only be answered after its caller has begun to retransmit. Zero: off.
    pub max_queue_delay: Duration,
    /// RFC 7339: answer the clients that ask for overload control (their top Via carries
    /// `oc`) with the share of their traffic to cut in the Via of every response
    /// (`oc.rs`), counted from the INVITEs these rules refuse.
    pub overload_via: bool,
}

/// A message that arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The transport it came over.
    pub transport: Transport,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The bytes: one datagram, or one frame cut by the stream framer.
    pub bytes: Bytes,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The transport to use (for streams: the connection to `destination`).
    pub transport: Transport,
    /// Where to.
    pub destination: SocketAddr,
    /// The message.
    pub bytes: Bytes,
    /// The transaction that sent it, if any: report a failure to send with
    /// [`Endpoint::handle_transport_error`] (RFC 3261 §17.1.4, §17.2.4).
    pub transaction: Option<TransactionId>,
}

/// Names a transaction for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(u64);

/// What the endpoint tells its user.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request (not a retransmission, not an ACK or CANCEL): answer it with
    /// [`Endpoint::respond`].
    Request {
        /// The server transaction to respond on.
        id: TransactionId,
        /// The request.
        request: Request,
        /// Who sent it.
        source: SocketAddr,
        /// Over what.
        transport: Transport,
    },
    /// An ACK for a 2xx (it has no transaction: the dialog layer takes it).
    Ack {
        /// The ACK.
        request: Request,
        /// Who sent it.
        source: SocketAddr,
    },
    /// The INVITE of server transaction `id` was cancelled; the endpoint answered the CANCEL
    /// with 200. The TU should answer the INVITE with 487 (RFC 3261 §9.2).
    Cancelled {
        /// The INVITE's server transaction.
        id: TransactionId,
    },
    /// A response for client transaction `id`.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// A 2xx to an INVITE whose transaction is gone (a late retransmission or fork): the TU
    /// should ACK it again.
    StrayResponse {
        /// The response.
        response: Response,
    },
    /// Transaction `id` timed out (Timer B, F or H).
    Timeout {
        /// The transaction.
        id: TransactionId,
    },
    /// Sending for transaction `id` failed.
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// A message that did not parse (a request was answered with 400/505 when possible).
    Malformed {
        /// Who sent it.
        source: SocketAddr,
        /// What was wrong.
        error: ParseError,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The transaction table is full.
    Overloaded,
    /// No live transaction has this id.
    UnknownTransaction,
    /// The transaction's state does not allow this (a second final response, say).
    InvalidState,
    /// ACKs for 2xx are sent with [`Endpoint::send_ack`], not as transactions.
    AckIsNotATransaction,
    /// The request's top Via has no branch parameter.
    NoBranch,
    /// The message is not usable (no branch, unparsable Via...).
    Message(ParseError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Overloaded => f.write_str("too many transactions"),
            Error::UnknownTransaction => f.write_str("no such transaction"),
            Error::InvalidState => f.write_str("the transaction cannot do that in its state"),
            Error::AckIsNotATransaction => f.write_str("an ACK is sent with send_ack"),
            Error::NoBranch => f.write_str("the top Via has no branch"),
            Error::Message(e) => write!(f, "bad message: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Message(e) => Some(e),
            _ => None,
        }
    }
}

/// Where a transaction sends.
#[derive(Debug, Clone)]
struct Peer {
    transport: Transport,
    destination: SocketAddr,
}

/// The four machines, by their RFC 3261 nicknames.
#[derive(Debug)]
enum Tx {
    /// INVITE client transaction (boxed: it keeps the INVITE to build ACKs).
    Ict(Box<ClientInvite>),
    /// Non-INVITE client transaction.
    Nict(ClientNonInvite),
    /// INVITE server transaction.
    Ist(ServerInvite),
    /// Non-INVITE server transaction.
    Nist(ServerNonInvite),
}

#[derive(Debug)]
struct Entry {
    tx: Tx,
    peer: Peer,
    key: u64,
    client: bool,
    /// Server side: whether it is in `Endpoint::lingering`.
    lingering: bool,
    /// Server side: the request and the top Via of its responses.
    request: Option<Incoming>,
}

/// What a server transaction keeps of its request.
#[derive(Debug)]
struct Incoming {
    request: Request,
    /// The top Via its responses carry ([`received_via`], as text), made once for all of
    /// them.
    via: Option<String>,
}

impl Entry {
    fn state(&self) -> State {
        match &self.tx {
            Tx::Ict(t) => t.state(),
            Tx::Nict(t) => t.state(),
            Tx::Ist(t) => t.state(),
            Tx::Nist(t) => t.state(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match &self.tx {
            Tx::Ict(t) => t.next_deadline(),
            Tx::Nict(t) => t.next_deadline(),
            Tx::Ist(t) => t.next_deadline(),
            Tx::Nist(t) => t.next_deadline(),
        }
    }
}

/// The transaction layer and the stateless rules around it. See the module docs.
#[derive(Debug)]
pub struct Endpoint {
    cfg: Config,
    next_id: u64,
    /// Boxed: a transaction outlives its call by 32 s over UDP (Timers J and L), and an
    /// entry inline would make every slot of the table, used or not, its full size.
    txs: IdMap<TransactionId, Box<Entry>>,
    client_keys: IdMap<u64, TransactionId>,
    server_keys: IdMap<u64, TransactionId>,
    timers: TimerQueue<TransactionId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    scratch: Vec<Output>,
    /// Server transactions that have answered and linger only to absorb retransmissions
    /// (Timers J, L, H, I), in the order they began to: when the table is full, the oldest
    /// of them that has lingered [`LINGER_EVICTABLE`] makes room for a new request.
    lingering: VecDeque<(TransactionId, Instant)>,
    /// Which new requests are refused before a transaction is made.
    admission: Admission,
    /// The INVITE token bucket of [`Admission::invites_per_second`]: tokens, and when they
    /// were last counted.
    invite_tokens: (f64, Option<Instant>),
    /// Requests refused by [`Admission`] so far.
    refused: u64,
    /// The To tag of every stateless 503 (random per endpoint, from the seed): its ACK is
    /// known by it before any parse ([`crate::shed`]).
    shed_tag: String,
    /// When a request was last refused: ACKs are looked at for [`Self::shed_tag`] until
    /// 64×T1 after it (the longest an ACK of that 503 may come, §17.1.1.2 Timer B).
    last_refusal: Option<Instant>,
    /// Since when the datagrams waiting to be read have been waiting, as the driver last
    /// said ([`Endpoint::set_backlog`]).
    backlog_since: Option<Instant>,
    /// The RFC 7339 figure of [`Admission::overload_via`].
    oc: crate::oc::OcServer,
    /// What the servers we send to told us of their overload (RFC 7339 §5.4).
    oc_told: crate::oc::OcClient,
}

/// How long an answered server transaction lingers before a full table may drop it for a new
/// request: by then its peer has had several retransmission intervals to hear the answer.
const LINGER_EVICTABLE: Duration = Duration::from_secs(4);

fn reliability(t: &Transport) -> Reliability {
    if t.is_reliable() {
        Reliability::Reliable
    } else {
        Reliability::Unreliable
    }
}

impl Endpoint {
    /// An endpoint with no transactions.
    pub fn new(cfg: Config) -> Endpoint {
        let shed_tag = format!(
            "{:016x}",
            crate::rng::Rng::new(cfg.seed ^ 0x7a67_5348_4544_0001).next_u64()
        );
        Endpoint {
            cfg,
            next_id: 1,
            txs: IdMap::default(),
            client_keys: IdMap::default(),
            server_keys: IdMap::default(),
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            lingering: VecDeque::new(),
            admission: Admission::default(),
            invite_tokens: (0.0, None),
            refused: 0,
            shed_tag,
            last_refusal: None,
            backlog_since: None,
            oc: crate::oc::OcServer::default(),
            oc_told: crate::oc::OcClient::default(),
        }
    }

    /// Sets which new requests are refused before a transaction is made.
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// Tells how far behind the reading is: `Some(t)` when datagrams have been waiting to
    /// be read since `t` with no moment of an empty socket in between, `None` when the
    /// socket was just found empty. The driver says it when it changes; past
    /// [`Admission::max_queue_delay`] of it, new INVITEs are refused.
    pub fn set_backlog(&mut self, since: Option<Instant>) {
        self.backlog_since = since;
    }

    /// Whether the reading is further behind than [`Admission::max_queue_delay`].
    fn behind(&self, now: Instant) -> bool {
        let max = self.admission.max_queue_delay;
        !max.is_zero()
            && self
                .backlog_since
                .is_some_and(|since| now.saturating_duration_since(since) > max)
    }

    /// The share of its new requests that `server` asked us to hold back (RFC 7339 `oc`,
    /// percent), as long as its figure holds; 0 without [`Admission::overload_via`].
    pub fn overload_cut_at(&self, now: Instant, server: SocketAddr) -> u8 {
        self.oc_told.cut(now, server)
    }

    /// The share of new INVITEs we ask RFC 7339 clients to hold back now (percent): 0 when
    /// nothing is refused, or without [`Admission::overload_via`].
    pub fn overload_cut(&mut self, now: Instant) -> u8 {
        if !self.admission.overload_via {
            return 0;
        }
        self.oc.cut(now)
    }

    /// Requests refused with 503 by [`Admission`] so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether a new request outside a dialog is refused now (taking an INVITE token when
    /// it is not); a new INVITE's answer counts toward the RFC 7339 figure.
    fn refuses(&mut self, now: Instant, method: &Method) -> bool {
        let refused = self.refused_by_rules(now, method);
        if self.admission.overload_via && *method == Method::Invite {
            self.oc.record(now, refused);
        }
        refused
    }

    /// [`Self::refuses`]'s rules.
    fn refused_by_rules(&mut self, now: Instant, method: &Method) -> bool {
        if self.admission.draining {
            return true;
        }
        if *method != Method::Invite {
            return false;
        }
        if self.behind(now) {
            return true;
        }
        if self.admission.invites_per_second == 0 {
            return false;
        }
        let tokens = self.invite_tokens_at(now);
        let refused = tokens < 1.0;
        self.invite_tokens = (if refused { tokens } else { tokens - 1.0 }, Some(now));
        refused
    }

    /// The INVITE tokens in the bucket at `now` (refilled, not taken).
    fn invite_tokens_at(&self, now: Instant) -> f64 {
        let rate = f64::from(self.admission.invites_per_second);
        let (tokens, at) = self.invite_tokens;
        let elapsed = at.map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64());
        (tokens + elapsed * rate).min(rate)
    }

    /// Whether a new INVITE would be refused now (nothing taken).
    fn refusing_invites(&self, now: Instant) -> bool {
        self.admission.draining
            || self.behind(now)
            || (self.admission.invites_per_second > 0 && self.invite_tokens_at(now) < 1.0)
    }

    /// The refusals taken from the raw datagram ([`crate::shed`]), before the parser: an
    /// INVITE refused now gets its 503, and the ACK of one of our 503s is dropped. Whether
    /// the datagram was dealt with (else it takes the full path).
    fn shed_raw(&mut self, now: Instant, rx: &Received) -> bool {
        if rx.transport != Transport::Udp {
            return false;
        }
        let window = self.cfg.timers.t1 * 64;
        if self
            .last_refusal
            .is_some_and(|t| now.saturating_duration_since(t) < window)
            && crate::shed::is_ack_of_refusal(&rx.bytes, &self.shed_tag)
        {
            return true;
        }
        if !self.refusing_invites(now) {
            return false;
        }
        // a client that may ask for overload control gets its figure in the Via: the parser's
        // path writes it
        if self.admission.overload_via && memchr::memmem::find(&rx.bytes, b";oc").is_some() {
            return false;
        }
        let Some(invite) = crate::shed::invite(&rx.bytes, rx.remote) else {
            return false;
        };
        // counted as the full path counts it (the bucket refilled, no token taken)
        let refused = self.refuses(now, &Method::Invite);
        debug_assert!(refused);
        self.refused += 1;
        self.last_refusal = Some(now);
        let bytes = crate::shed::refusal(
            &rx.bytes,
            &invite,
            &self.shed_tag,
            self.admission.retry_after,
        );
        self.transmits.push_back(Transmit {
            transport: Transport::Udp,
            destination: rx.remote,
            bytes: Bytes::from(bytes),
            transaction: None,
        });
        true
    }

    /// Number of live transactions.
    pub fn transactions(&self) -> usize {
        self.txs.len()
    }

    /// The state of a live transaction.
    pub fn state(&self, id: TransactionId) -> Option<State> {
        self.txs.get(&id).map(|e| e.state())
    }

    /// The INVITE a live INVITE client transaction sends.
    pub fn sent_invite(&self, id: TransactionId) -> Option<&Request> {
        match &self.txs.get(&id)?.tx {
            Tx::Ict(t) => Some(t.request()),
            _ => None,
        }
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next (may be early, never late).
    /// Deadlines of timers that were stopped or moved are dropped first: a transaction
    /// answered before its 100 Trying was due, for one, wakes no one.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let txs = &self.txs;
        self.timers
            .drop_stale_fronts(|at, id| txs.get(id).is_some_and(|e| e.next_deadline() == Some(at)));
        self.timers.next_deadline()
    }

    /// The keyed hash of a transaction key's parts, each length-prefixed so that the parts
    /// cannot run into each other; fed to the hasher in one write when they fit on the stack.
    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = DefaultHasher::new();
        // the seed, a mark for the form, then the parts: one write when they fit
        let mut buf = [0u8; 256];
        buf[..8].copy_from_slice(&self.cfg.seed.to_le_bytes());
        let total: usize = parts.iter().map(|p| 2 + p.len()).sum();
        if 9 + total <= buf.len() {
            let mut n = 9;
            for p in parts {
                // a part is at most 245 bytes here
                buf[n..n + 2].copy_from_slice(&(p.len() as u16).to_le_bytes());
                buf[n + 2..n + 2 + p.len()].copy_from_slice(p);
                n += 2 + p.len();
            }
            h.write(&buf[..n]);
        } else {
            // a key this long is rare: its parts one by one
            buf[8] = 1;
            h.write(&buf[..9]);
            for p in parts {
                p.hash(&mut h);
            }
        }
        h.finish()
    }

    /// Client key (§17.1.3): top Via branch and CSeq method.
    fn client_key(&self, msg_branch: &str, method: &Method) -> u64 {
        self.hash(&[b"c", msg_branch.as_bytes(), method.as_str().as_bytes()])
    }

    /// Server key (§17.2.3): branch, sent-by and method (ACK counts as INVITE); requests
    /// without the RFC 3261 cookie use the RFC 2543 fields.
    fn server_key(&self, req: &Request, method: &Method) -> u64 {
        let method = if *method == Method::Ack {
            &Method::Invite
        } else {
            method
        };
        let v = req.via_key();
        match v.branch.filter(|b| b.len() > 7 && b.starts_with("z9hG4bK")) {
            Some(branch) => {
                let port = v
                    .port
                    .unwrap_or_else(|| v.transport.default_port())
                    .to_be_bytes();
                // the host compares case-insensitively: hash it in lower case (on the
                // stack for any usual length)
                let mut small = [0u8; 64];
                let long;
                let host: &[u8] = match small.get_mut(..v.host.len()) {
                    Some(s) => {
                        s.copy_from_slice(v.host.as_bytes());
                        s.make_ascii_lowercase();
                        s
                    }
                    None => {
                        long = v.host.to_ascii_lowercase();
                        long.as_bytes()
                    }
                };
                self.hash(&[
                    b"s",
                    branch.as_bytes(),
                    host,
                    &port,
                    method.as_str().as_bytes(),
                ])
            }
            None => {
                let seq = req.cseq().seq.to_be_bytes();
                self.hash(&[
                    b"2543",
                    req.uri_bytes(),
                    req.call_id().as_bytes(),
                    req.from_tag().unwrap_or("").as_bytes(),
                    &seq,
                    v.host.as_bytes(),
                    method.as_str().as_bytes(),
                ])
            }
        }
    }

    fn new_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Replaces [`Output::Trying`] in the scratch outputs by the 100 Trying for the request
    /// of server transaction `id` (RFC 3261 §17.2.1, §8.2.6).
    fn build_trying(&mut self, id: TransactionId) {
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        let Some(inc) = &entry.request else {
            return;
        };
        let bytes =
            Response::from_request_with_via_text(&inc.request, 100, None, inc.via.as_deref(), &[])
                .to_bytes();
        if let Tx::Ist(ist) = &mut entry.tx {
            ist.set_trying(bytes.clone());
        }
        for o in self.scratch.iter_mut() {
            if *o == Output::Trying {
                *o = Output::Transmit(bytes.clone());
            }
        }
    }

    /// Moves the scratch outputs of transaction `id` to the queues, reschedules its timer, and
    /// forgets it once terminated.
    fn settle(&mut self, now: Instant, id: TransactionId) {
        if self.scratch.contains(&Output::Trying) {
            self.build_trying(id);
        }
        let Some(entry) = self.txs.get(&id) else {
            return;
        };
        let peer = &entry.peer;
        for o in self.scratch.drain(..) {
            match o {
                Output::Trying => {} // built above
                Output::Transmit(bytes) => self.transmits.push_back(Transmit {
                    transport: peer.transport.clone(),
                    destination: peer.destination,
                    bytes,
                    transaction: Some(id),
                }),
                Output::Timeout => self.events.push_back(Event::Timeout { id }),
                Output::TransportError => self.events.push_back(Event::TransportError { id }),
            }
        }
        let state = entry.state();
        if state == State::Terminated {
            self.forget(id);
            return;
        }
        if let Some(at) = entry.next_deadline() {
            self.timers.push(now, at, id);
        }
        let answered = matches!(state, State::Completed | State::Accepted | State::Confirmed);
        if answered && !entry.client && !entry.lingering {
            if let Some(e) = self.txs.get_mut(&id) {
                e.lingering = true;
            }
            self.lingering.push_back((id, now));
        }
    }

    /// Drops transaction `id` and its key.
    fn forget(&mut self, id: TransactionId) {
        let Some(entry) = self.txs.remove(&id) else {
            return;
        };
        let keys = if entry.client {
            &mut self.client_keys
        } else {
            &mut self.server_keys
        };
        if keys.get(&entry.key) == Some(&id) {
            keys.remove(&entry.key);
        }
    }

    /// Makes room in a full table by dropping the server transactions that have lingered
    /// longest after their answer (at least [`LINGER_EVICTABLE`]); false if none could go.
    fn make_room(&mut self, now: Instant) -> bool {
        while self.txs.len() >= self.cfg.max_transactions {
            let Some(&(old, since)) = self.lingering.front() else {
                return false;
            };
            if !self.txs.contains_key(&old) {
                self.lingering.pop_front(); // ended on its own
                continue;
            }
            if now.saturating_duration_since(since) < LINGER_EVICTABLE {
                return false;
            }
            self.lingering.pop_front();
            self.forget(old);
        }
        true
    }

    /// Sends a request in a new client transaction to `destination` over `transport`.
    /// The request's top Via must carry an RFC 3261 branch.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        transport: Transport,
        destination: SocketAddr,
    ) -> Result<TransactionId, Error> {
        if *request.method() == Method::Ack {
            return Err(Error::AckIsNotATransaction);
        }
        if self.txs.len() >= self.cfg.max_transactions {
            return Err(Error::Overloaded);
        }
        let branch = request.branch().ok_or(Error::NoBranch)?;
        let key = self.client_key(branch, request.method());
        let id = self.new_id();
        let rel = reliability(&transport);
        let tx = if *request.method() == Method::Invite {
            Tx::Ict(Box::new(ClientInvite::new(
                now,
                request,
                rel,
                self.cfg.timers,
                &mut self.scratch,
            )))
        } else {
            Tx::Nict(ClientNonInvite::new(
                now,
                request.to_bytes(),
                rel,
                self.cfg.timers,
                &mut self.scratch,
            ))
        };
        self.txs.insert(
            id,
            Box::new(Entry {
                tx,
                peer: Peer {
                    transport,
                    destination,
                },
                key,
                client: true,
                lingering: false,
                request: None,
            }),
        );
        self.client_keys.insert(key, id);
        self.settle(now, id);
        Ok(id)
    }

    /// Sends an ACK for a 2xx (end to end, no transaction: RFC 3261 §13.2.2.4).
    pub fn send_ack(&mut self, ack: &Request, transport: Transport, destination: SocketAddr) {
        self.transmits.push_back(Transmit {
            transport,
            destination,
            bytes: ack.to_bytes(),
            transaction: None,
        });
    }

    /// Sends `response` on server transaction `id`.
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<(), Error> {
        let entry = self.txs.get_mut(&id).ok_or(Error::UnknownTransaction)?;
        let status = response.status();
        let response = match &entry.request {
            // the request's top Via needs no received/rport (`via` was made on arrival): the
            // response carries it as it came, without reading the Via again
            Some(Incoming {
                request,
                via: Some(via),
                ..
            }) if same_top_via(&response, request) => with_top_via(response, via),
            _ => response,
        };
        let bytes = response.to_bytes();
        let ok = match &mut entry.tx {
            Tx::Ist(t) => t.respond(now, status, bytes, &mut self.scratch),
            Tx::Nist(t) => t.respond(now, status, bytes, &mut self.scratch),
            _ => return Err(Error::UnknownTransaction),
        };
        if ok && status >= 200 {
            // what lingers (Timers J, L, H) needs the key and the last response only: a
            // request kept for 32 s more would cost its buffer and parsed head per call
            entry.request = None;
        }
        self.settle(now, id);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidState)
        }
    }

    /// The driver could not send a message of transaction `id` (connection refused, ICMP
    /// unreachable...): the transaction ends and its user hears of it.
    pub fn handle_transport_error(&mut self, now: Instant, id: TransactionId) {
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        match &mut entry.tx {
            Tx::Ict(t) => t.on_transport_error(&mut self.scratch),
            Tx::Nict(t) => t.on_transport_error(&mut self.scratch),
            Tx::Ist(t) => t.on_transport_error(&mut self.scratch),
            Tx::Nist(t) => t.on_transport_error(&mut self.scratch),
        }
        self.settle(now, id);
    }

    /// Gives memory back after a load peak: tables far larger than their contents shrink.
    fn shrink(&mut self) {
        fn fit<K: std::hash::Hash + Eq, V>(m: &mut IdMap<K, V>) {
            if m.capacity() > 1024 && m.len() * 4 < m.capacity() {
                m.shrink_to_fit();
            }
        }
        fit(&mut self.txs);
        fit(&mut self.client_keys);
        fit(&mut self.server_keys);
        self.timers.shrink();
    }

    /// Fires every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(entry) = self.txs.get_mut(&id) else {
                continue;
            };
            // a stale heap entry: the transaction's timer moved
            if entry.next_deadline() != Some(at) {
                continue;
            }
            match &mut entry.tx {
                Tx::Ict(t) => t.on_timeout(now, &mut self.scratch),
                Tx::Nict(t) => t.on_timeout(now, &mut self.scratch),
                Tx::Ist(t) => t.on_timeout(now, &mut self.scratch),
                Tx::Nist(t) => t.on_timeout(now),
            }
            self.settle(now, id);
        }
        // the transactions that ended lingering, from the front (they end in about the order
        // they began to linger)
        while let Some(&(id, _)) = self.lingering.front() {
            if self.txs.contains_key(&id) {
                break;
            }
            self.lingering.pop_front();
        }
        self.shrink();
    }

    /// Takes in one message from the network.
    pub fn handle_datagram(&mut self, now: Instant, rx: Received) {
        if rx.bytes.len() > self.cfg.max_message_size {
            let error = ParseError::too_large_for(&rx.bytes, self.cfg.max_message_size);
            self.answer_malformed(&rx, &error);
            self.events.push_back(Event::Malformed {
                source: rx.remote,
                error,
            });
            return;
        }
        if self.shed_raw(now, &rx) {
            return;
        }
        match Message::parse_bytes(rx.bytes.clone()) {
            Err(error) => {
                self.answer_malformed(&rx, &error);
                self.events.push_back(Event::Malformed {
                    source: rx.remote,
                    error,
                });
            }
            Ok(Message::Response(resp)) => self.on_response(now, resp),
            Ok(Message::Request(req)) => self.on_request(now, req, rx.transport, rx.remote),
        }
    }

    fn answer_malformed(&mut self, rx: &Received, error: &ParseError) {
        if let Some(bytes) = error_response(&rx.bytes, error, "") {
            self.transmits.push_back(Transmit {
                transport: rx.transport.clone(),
                destination: rx.remote,
                bytes,
                transaction: None,
            });
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response) {
        let Some(branch) = resp.branch() else {
            return;
        };
        let key = self.client_key(branch, &resp.cseq().method);
        let Some(&id) = self.client_keys.get(&key) else {
            if resp.is_success() && resp.cseq().method == Method::Invite {
                self.events
                    .push_back(Event::StrayResponse { response: resp });
            }
            return;
        };
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        if self.admission.overload_via {
            // our Via asked for overload control: what the server says of its load
            if let Ok(v) = resp.top_via() {
                let p = &v.params;
                self.oc_told.heard(
                    now,
                    entry.peer.destination,
                    p.get("oc"),
                    p.get("oc-validity"),
                    p.get("oc-seq"),
                );
            }
        }
        let delivery = match &mut entry.tx {
            Tx::Ict(t) => t.on_response(now, &resp, &mut self.scratch),
            Tx::Nict(t) => t.on_response(now, resp.status()),
            _ => Delivery::Absorb,
        };
        self.settle(now, id);
        if delivery == Delivery::Pass {
            self.events
                .push_back(Event::Response { id, response: resp });
        }
    }

    fn on_request(&mut self, now: Instant, req: Request, transport: Transport, source: SocketAddr) {
        let method = req.method().clone();
        let key = self.server_key(&req, &method);
        if let Some(&id) = self.server_keys.get(&key) {
            self.on_retransmission(now, id, req, source);
            return;
        }
        match method {
            Method::Ack => {
                // no INVITE transaction: the ACK of a 2xx, for the dialog layer
                self.events.push_back(Event::Ack {
                    request: req,
                    source,
                });
            }
            Method::Cancel => self.on_cancel(now, req, key, transport, source),
            _ if !req.has_to_tag() && self.refuses(now, &method) => {
                self.refused += 1;
                let after = self.admission.retry_after;
                self.stateless_503(now, &req, after, transport, source);
            }
            _ => {
                let Some(id) = self.new_server_tx(now, &req, key, transport, source) else {
                    return;
                };
                self.events.push_back(Event::Request {
                    id,
                    request: req,
                    source,
                    transport: self.txs[&id].peer.transport.clone(),
                });
            }
        }
    }

    fn on_retransmission(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
    ) {
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        let is_ack = *req.method() == Method::Ack;
        let delivery = match &mut entry.tx {
            Tx::Ist(t) if is_ack => t.on_ack(now),
            Tx::Ist(t) => t.on_invite(&mut self.scratch),
            Tx::Nist(t) => t.on_request(&mut self.scratch),
            _ => Delivery::Absorb,
        };
        self.settle(now, id);
        if is_ack && delivery == Delivery::Pass {
            self.events.push_back(Event::Ack {
                request: req,
                source,
            });
        }
    }

    /// RFC 3261 §9.2: a CANCEL matches the INVITE with the same branch; it gets 200 if so,
    /// 481 if not, in a transaction of its own.
    fn on_cancel(
        &mut self,
        now: Instant,
        req: Request,
        key: u64,
        transport: Transport,
        source: SocketAddr,
    ) {
        let invite_key = self.server_key(&req, &Method::Invite);
        let target = self.server_keys.get(&invite_key).copied();
        let Some(cancel_id) = self.new_server_tx(now, &req, key, transport, source) else {
            return;
        };
        let status = match target.and_then(|t| self.txs.get(&t).map(|e| (t, e.state()))) {
            Some((invite, State::Proceeding)) => {
                self.events.push_back(Event::Cancelled { id: invite });
                200
            }
            // already answered: the CANCEL has no effect but still gets 200
            Some(_) => 200,
            None => 481,
        };
        let mut resp = Response::from_request(&req, status);
        // RFC 3261 §9.2: the 200 carries the To tag of the INVITE's responses
        let tag = target
            .and_then(|t| match self.txs.get(&t).map(|e| &e.tx) {
                Some(Tx::Ist(ist)) => ist.last_response().cloned(),
                _ => None,
            })
            .and_then(|b| sipua_message::Message::parse_bytes(b).ok())
            .and_then(|m| match m {
                sipua_message::Message::Response(r) => r.to_tag().map(str::to_owned),
                sipua_message::Message::Request(_) => None,
            });
        if let (Some(tag), true) = (tag, !req.has_to_tag()) {
            let _ = resp.set_to_tag(&tag);
        }
        let _ = self.respond(now, cancel_id, resp);
    }

    /// Answers `req` with 503 and a Retry-After of `after` seconds, with no transaction: the
    /// To tag is the endpoint's shed tag, so a retransmission gets the same response (RFC 3261
    /// §8.2.7), and the ACK of it is known by that tag and dropped before the parser.
    fn stateless_503(
        &mut self,
        now: Instant,
        req: &Request,
        after: u32,
        transport: Transport,
        source: SocketAddr,
    ) {
        let via_text = req.top_via_text();
        let destination = response_destination(req, via_text.as_ref(), &transport, source);
        // one pass: the Via with received/rport, our tag and the Retry-After written as the
        // response is built (each edit afterwards would rebuild it)
        let via = self.response_via(now, req, via_text.as_ref(), source);
        // the tag that lets its ACK be dropped unparsed
        let tag = (!req.has_to_tag()).then_some(self.shed_tag.as_str());
        self.last_refusal = Some(now);
        let retry = Header::typed(&RetryAfter::seconds(after));
        let resp = Response::from_request_with_via_text(req, 503, tag, via.as_deref(), &[retry]);
        self.transmits.push_back(Transmit {
            transport,
            destination,
            bytes: resp.to_bytes(),
            transaction: None,
        });
    }

    /// Creates a server transaction, or answers 503 statelessly when full.
    fn new_server_tx(
        &mut self,
        now: Instant,
        req: &Request,
        key: u64,
        transport: Transport,
        source: SocketAddr,
    ) -> Option<TransactionId> {
        // the top Via read once, for the destination and the Via of the responses
        let via_text = req.top_via_text();
        let peer = Peer {
            destination: response_destination(req, via_text.as_ref(), &transport, source),
            transport,
        };
        if self.txs.len() >= self.cfg.max_transactions && !self.make_room(now) {
            self.stateless_503(now, req, 5, peer.transport, source);
            return None;
        }
        let id = self.new_id();
        let rel = reliability(&peer.transport);
        let via = self.response_via(now, req, via_text.as_ref(), source);
        let tx = if *req.method() == Method::Invite {
            if self.cfg.send_trying && !self.cfg.trying_delay.is_zero() {
                Tx::Ist(
                    ServerInvite::new(rel, self.cfg.timers, None, &mut self.scratch)
                        .with_delayed_trying(now + self.cfg.trying_delay),
                )
            } else {
                let trying = self.cfg.send_trying.then(|| {
                    Response::from_request_with_via_text(req, 100, None, via.as_deref(), &[])
                        .to_bytes()
                });
                Tx::Ist(ServerInvite::new(
                    rel,
                    self.cfg.timers,
                    trying,
                    &mut self.scratch,
                ))
            }
        } else {
            Tx::Nist(ServerNonInvite::new(rel, self.cfg.timers))
        };
        self.txs.insert(
            id,
            Box::new(Entry {
                tx,
                peer,
                key,
                client: false,
                lingering: false,
                request: Some(Incoming {
                    request: req.clone(),
                    via,
                }),
            }),
        );
        self.server_keys.insert(key, id);
        self.settle(now, id);
        Some(id)
    }
}

/// RFC 3261 §18.2.2 with RFC 3581: over a stream, back on the connection; over UDP, to
/// `maddr` if given, else to the source address (with the source port when `rport` was asked
/// for, the sent-by port otherwise).
fn response_destination(
    req: &Request,
    via: Option<&ViaText<'_>>,
    transport: &Transport,
    source: SocketAddr,
) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    // the Via as written when it can be read so (`via`, no typed Via), else parsed
    let (maddr, rport, port) = match via {
        Some(v) => (v.maddr(), v.rport().is_some(), v.port_or_default()),
        None => match req.top_via() {
            Ok(v) => (v.maddr(), v.rport().is_some(), v.port_or_default()),
            Err(_) => return source,
        },
    };
    if let Some(Host::Ipv4(a)) = maddr {
        return SocketAddr::new(IpAddr::V4(a), port);
    }
    if rport {
        return source;
    }
    SocketAddr::new(source.ip(), port)
}

/// The request's top Via with `received` (when the source IP differs from sent-by) and a
/// filled `rport` (when asked for), as responses must carry it (RFC 3261 §18.2.1, RFC 3581
/// §4); `None` when nothing needs adding.
pub fn received_via(req: &Request, source: SocketAddr) -> Option<Via> {
    let via = req.top_via().ok()?;
    let wants_rport = via.rport().is_some();
    if via.host.ip() == Some(source.ip()) && !wants_rport {
        return None;
    }
    let mut v = via.clone();
    v.params.set("received", Some(&ip_text(source.ip())));
    if wants_rport {
        let mut port = String::with_capacity(5);
        push_decimal(&mut port, u64::from(source.port()));
        v.params.set("rport", Some(&port));
    }
    Some(v)
}

/// `resp` with the Via of [`received_via`], unless it already differs from the request's
/// (the UA core built it so).
pub fn with_received(mut resp: Response, req: &Request, source: SocketAddr) -> Response {
    if !same_top_via(&resp, req) {
        return resp;
    }
    if let Some(v) = received_via(req, source) {
        let _ = resp.set_top_via(&v);
    }
    resp
}

/// [`received_via`] written as text ([`Via::to_string_with`], no copy of the Via): what
/// responses made by the endpoint and the UA core carry.
pub(crate) fn received_via_text(req: &Request, source: SocketAddr) -> Option<String> {
    received_via_text_of(req, req.top_via_text().as_ref(), source)
}

/// [`received_via_text`] given the request's [`Request::top_via_text`].
fn received_via_text_of(
    req: &Request,
    via: Option<&ViaText<'_>>,
    source: SocketAddr,
) -> Option<String> {
    // the Via as written when it can be read so (`via`, no typed Via), else parsed
    let text = match via {
        Some(v) => received_params(v.rport().is_some(), v.host_ip(), source, |set| {
            v.to_string_with(set)
        }),
        None => {
            let v = req.top_via().ok()?;
            received_params(v.rport().is_some(), v.host.ip(), source, |set| {
                v.to_string_with(set)
            })
        }
    }?;
    debug_assert_eq!(
        Some(&text),
        received_via(req, source).map(|v| v.to_string()).as_ref()
    );
    Some(text)
}

/// What [`received_via`] sets on a Via that asked for `rport` (`wants_rport`) or not, sent
/// from `host_ip`, that came from `source`: `write` gives the Via with those parameters set;
/// `None` when nothing needs setting.
fn received_params(
    wants_rport: bool,
    host_ip: Option<IpAddr>,
    source: SocketAddr,
    write: impl FnOnce(&[(&str, Option<&str>)]) -> String,
) -> Option<String> {
    if host_ip == Some(source.ip()) && !wants_rport {
        return None;
    }
    let ip = ip_text(source.ip());
    if wants_rport {
        let mut port = String::with_capacity(5);
        push_decimal(&mut port, u64::from(source.port()));
        Some(write(&[("received", Some(&ip)), ("rport", Some(&port))]))
    } else {
        Some(write(&[("received", Some(&ip))]))
    }
}

/// `resp` with `via` (a [`received_via_text`], or the same with RFC 7339's figures) as its
/// top Via.
fn with_top_via(mut resp: Response, via: &str) -> Response {
    if let Ok(v) = Via::parse(via.as_bytes()) {
        let _ = resp.set_top_via(&v);
    }
    resp
}

impl Endpoint {
    /// The top Via of the responses to `req` (`via`: its top Via read in place, when it can
    /// be): [`received_via_text`], and RFC 7339's figures when overload control is on and
    /// the client asks for it (§5.2). `None`: the Via as it came.
    fn response_via(
        &mut self,
        now: Instant,
        req: &Request,
        via: Option<&ViaText<'_>>,
        source: SocketAddr,
    ) -> Option<String> {
        if self.admission.overload_via {
            if let Ok(v) = req.top_via() {
                if crate::oc::asks(v.params.get("oc"), v.params.get("oc-algo")) {
                    return Some(self.overload_via_text(now, req, v, source));
                }
            }
        }
        received_via_text_of(req, via, source)
    }

    /// `v` (`req`'s top Via) with `received`/`rport` as [`received_via`] sets them and the
    /// overload figures: `oc`, `oc-algo="loss"`, `oc-validity` and `oc-seq` (RFC 7339 §4).
    fn overload_via_text(
        &mut self,
        now: Instant,
        req: &Request,
        v: &Via,
        source: SocketAddr,
    ) -> String {
        let p = self.oc.params(now);
        let mut v = received_via(req, source).unwrap_or_else(|| v.clone());
        v.params.set("oc", Some(&p.oc));
        // the algorithm is a quoted list (§9)
        v.params.set_quoted("oc-algo", "loss");
        v.params.set("oc-validity", Some(&p.validity));
        v.params.set("oc-seq", Some(&p.seq));
        v.to_string()
    }
}

/// Whether `resp` still has the top Via line of `req` as it came (not yet given `received`).
fn same_top_via(resp: &Response, req: &Request) -> bool {
    fn first(h: sipua_message::Headers<'_>) -> Option<&[u8]> {
        h.get(&HeaderName::Via).map(|v| v.value())
    }
    first(resp.headers()) == first(req.headers())
}

impl Endpoint {
    /// The top Via that responses on server transaction `id` carry ([`received_via`] of its
    /// request), made when the request arrived.
    pub(crate) fn received_via_of(&self, id: TransactionId) -> Option<Option<&str>> {
        let inc = self.txs.get(&id)?.request.as_ref()?;
        Some(inc.via.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server transaction keeps its request until the final response only: what lingers
    /// for Timers J and L (32 s over UDP, thousands of calls at a time) absorbs
    /// retransmissions with the key and the last response.
    #[test]
    fn a_final_response_lets_go_of_the_request_and_retransmissions_are_still_answered() {
        let now = Instant::now();
        let mut ep = Endpoint::new(Config::default());
        let peer: SocketAddr = "192.0.2.9:5060".parse().unwrap();
        for (method, status) in [("INVITE", 486u16), ("INVITE", 200), ("BYE", 200)] {
            let raw = format!(
                "{method} sip:b@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK{method}{status}\r\n\
                 From: <sip:a@192.0.2.9>;tag=1\r\nTo: <sip:b@192.0.2.1>\r\nCall-ID: c{status}\r\n\
                 CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:a@192.0.2.9>\r\nContent-Length: 0\r\n\r\n"
            );
            let rx = || Received {
                transport: Transport::Udp,
                remote: peer,
                bytes: Bytes::from(raw.clone()),
            };
            ep.handle_datagram(now, rx());
            let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
                panic!("{method}: no request event")
            };
            while ep.poll_transmit().is_some() {}
            let mut resp = Response::from_request(&request, status);
            resp.set_to_tag("t").unwrap();
            ep.respond(now, id, resp).unwrap();
            assert!(
                ep.txs[&id].request.is_none(),
                "{method} {status}: request kept"
            );
            while ep.poll_transmit().is_some() {}
            // a retransmission is absorbed; a non-2xx final answers it again
            ep.handle_datagram(now, rx());
            assert!(
                ep.poll_event().is_none(),
                "{method} {status}: retransmission passed up"
            );
            let again = ep.poll_transmit();
            if method == "INVITE" && status == 200 {
                assert!(
                    again.is_none(),
                    "the UA core, not the transaction, repeats a 2xx"
                );
            } else {
                let t = again.expect("the final response again");
                let code = format!("SIP/2.0 {status} ");
                assert!(t.bytes.starts_with(code.as_bytes()));
            }
        }
    }
}
