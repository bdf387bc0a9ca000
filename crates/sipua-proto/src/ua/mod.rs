//! The user-agent core (RFC 3261 §8, §12, §13, §15): on top of the [`Endpoint`]'s
//! transactions it creates and tracks dialogs, generates tags, Call-IDs and branches from a
//! seeded generator, acknowledges 2xx responses end to end (and again when they are
//! retransmitted, §13.2.2.4), retransmits its own 2xx until the ACK comes (§13.3.1.4), checks
//! in-dialog requests (481 without a dialog, 500 for an old CSeq) and sends in-dialog requests.
//!
//! Like the endpoint it is sans-IO: `handle_*` in, `poll_*` out, time as an argument.
//!
//! This file holds the core's state, configuration, events and the `handle_*`/`poll_*`
//! surface; by concern: `uac.rs` requests we send and their responses, `uas.rs` requests we
//! take and our responses, `routing.rs` where a dialog's requests go, `addressing.rs` what we
//! write from our own address (tags, branches, Call-IDs, Via, Contact); `prack.rs` (RFC 3262),
//! `subscribe.rs` (RFC 6665), `replaces.rs` (RFC 3891), `auth.rs` (digest) and `rules.rs`
//! (the UAS's own answers, §8.2).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::header::MediaType;
use sipua_message::header::BRANCH_COOKIE;
use sipua_message::{
    Header, HeaderName, Host, Method, NameAddr, Param, Params, Request, RequestBuilder, Response,
    Transport, Uri, Via, ViaTemplate,
};

use crate::auth::digest::Challenge;
use crate::auth::server::DigestServer;
pub use crate::auth::server::DigestServerConfig;
use crate::dialog::{
    Dialog, DialogError, DialogId, DialogIdRef, DialogState, Flow, UasParts, ViaValue,
};
use addressing::Addressed;
pub use routing::DialogRoute;
use routing::{destination_for, flow_of, route_of, transport_of_route};

mod addressing;
mod auth;
mod prack;
mod replaces;
mod routing;
mod rules;
mod subscribe;
mod uac;
mod uas;

use crate::endpoint::{self, Admission, Endpoint, Received, TransactionId, Transmit};
use crate::hash::{IdMap, KeyedMap, KeyedState};
use crate::rng::Rng;
use crate::timers::TimerQueue;
use crate::transaction::TimerConfig;
pub use auth::Credentials;
use rules::merge_key;
pub use rules::Capabilities;

/// Who this user agent is and where it listens.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The address in Via and Contact.
    pub local: SocketAddr,
    /// The transport in Via and Contact.
    pub transport: Transport,
    /// The user part of our Contact and address of record.
    pub user: String,
    /// The endpoint's limits and timers.
    pub endpoint: endpoint::Config,
    /// Seeds tags, Call-IDs and branches (pass randomness in production).
    pub seed: u64,
    /// What this UA accepts; requests outside it are answered by the core.
    pub capabilities: Capabilities,
    /// Answers digest challenges (401/407) with these, when set.
    pub credentials: Option<Credentials>,
    /// Challenges out-of-dialog requests (all but ACK, CANCEL and OPTIONS) for these users'
    /// credentials, when set (RFC 3261 §22.4): nonces that expire and are used once per
    /// count, failures limited per address ([`DigestServerConfig`]).
    pub authenticate: Option<DigestServerConfig>,
    /// Most live dialogs; a new INVITE beyond it gets 503 with Retry-After.
    pub max_dialogs: usize,
    /// Most calls answered 2xx and not yet acknowledged. A new INVITE beyond it (or beyond
    /// `max_unconfirmed_bytes`) ends the oldest such call first ([`UaEvent::AckTimeout`], a
    /// BYE sent), so a flood of INVITEs that are never acknowledged cannot hold the table, or
    /// memory, for the 32 s an ACK may take, while a real caller's ACK comes in milliseconds.
    pub max_unconfirmed: usize,
    /// Most bytes those calls may cost: their 2xx (kept to retransmit it) and their INVITE
    /// (which the TU keeps), counted as received (16 MiB; what a call really holds, with its
    /// session and media, is a few times that: see docs/SECURITY.md).
    pub max_unconfirmed_bytes: usize,
    /// Overload control (RFC 3261 §21.5.4): past this many requests received and not yet
    /// answered, a new request outside a dialog gets 503 with Retry-After at once, before
    /// the TU hears of it; requests inside dialogs (ACK, BYE, re-INVITE) and CANCELs are
    /// never shed, so calls already accepted go on. 0: no limit.
    pub max_pending_requests: usize,
    /// Past this many new INVITEs a second (a token bucket holding a second's worth), the
    /// same 503. 0: no limit.
    pub max_invites_per_second: u32,
    /// The Retry-After (seconds) of the 503s of overload control and of draining.
    pub overload_retry_after: u32,
    /// Overload control by queueing delay: while the datagrams waiting to be read have
    /// waited longer than this ([`UaCore::set_backlog`]), new INVITEs get the same 503. It
    /// needs no figure of the machine's capacity: it refuses exactly when the agent falls
    /// behind. Zero: off.
    pub max_queue_delay: Duration,
    /// RFC 7339 overload control, both ways. As a server: clients whose top Via carries
    /// `oc` read in our responses' Via how much of their traffic to cut (`oc`,
    /// `oc-validity`, `oc-seq`), from the share of new INVITEs the rules above refuse. As a
    /// client: our Vias carry `oc;oc-algo="loss"`, and a new INVITE to a next hop that asked
    /// for a cut is held back with that chance ([`UaError::Overloaded`]). Off by default (a
    /// server may tell only the neighbours it trusts, §11).
    pub overload_via: bool,
    /// Our address of record for From (and To of REGISTER), with its display name; `None`
    /// makes `sip:user@local-ip`.
    pub aor: Option<NameAddr>,
    /// SIP outbound (RFC 5626 §4.3): our Contact in dialog-forming requests and responses
    /// carries `;ob`, asking proxies to reach us over the flow we registered on (not in
    /// REGISTER's Contact, which names the flow by `reg-id`).
    pub outbound: bool,
    /// For one of several cores that share a socket: this core's index and how many there
    /// are. The Call-IDs it makes then hash to it ([`crate::hash::shard_of`]), so that the
    /// answers to its requests are handed back to it. `None`: one core.
    pub shard: Option<(usize, usize)>,
}

impl UaConfig {
    /// A UA at `local` over `transport` as `user`, with default limits and capabilities.
    pub fn new(local: SocketAddr, transport: Transport, user: &str) -> UaConfig {
        UaConfig {
            local,
            transport,
            user: user.to_owned(),
            endpoint: endpoint::Config::default(),
            seed: 0,
            capabilities: Capabilities::default(),
            credentials: None,
            authenticate: None,
            max_dialogs: 100_000,
            max_unconfirmed: 4096,
            max_unconfirmed_bytes: 16 << 20,
            max_pending_requests: 0,
            max_invites_per_second: 0,
            overload_retry_after: 5,
            max_queue_delay: Duration::ZERO,
            overload_via: false,
            aor: None,
            outbound: false,
            shard: None,
        }
    }
}

/// What an out-of-dialog request carries beyond its method and target
/// ([`UaCore::send_request_with`]).
#[derive(Debug, Clone, Default)]
pub struct OutOfDialog {
    /// The transport to use rather than the configured one (RFC 3263's choice).
    pub transport: Option<Transport>,
    /// A From other than our address of record (its tag is ours to add).
    pub from: Option<NameAddr>,
    /// Headers added as given.
    pub headers: Vec<Header>,
    /// A body and its type.
    pub body: Option<(MediaType, Bytes)>,
    /// The Call-ID to reuse (a registration keeps one Call-ID, RFC 3261 §10.2.4); a new
    /// one when `None`.
    pub call_id: Option<String>,
    /// The CSeq number (a registration's next one); 1 when `None`.
    pub cseq: Option<u32>,
    /// The To header (the address of record being registered, RFC 3261 §10.2); our own for
    /// REGISTER and the target otherwise when `None`.
    pub to: Option<NameAddr>,
    /// The Contact header, for REGISTER's `expires`, `+sip.instance` and `reg-id` or `*`;
    /// our own when `None` (for the methods that carry one).
    pub contact: Option<Header>,
    /// Parameters appended to our own Contact (`;expires=600;reg-id=1;+sip.instance=...`)
    /// when `contact` is `None`.
    pub contact_params: Option<String>,
}

/// What the UA core tells its user.
#[derive(Debug, Clone)]
pub enum UaEvent {
    /// A request: a new INVITE or out-of-dialog request (`dialog: None`), or one inside a
    /// dialog. Answer with [`UaCore::respond`].
    Request {
        /// Server transaction.
        id: TransactionId,
        /// The request.
        request: Request,
        /// Its dialog, for in-dialog requests.
        dialog: Option<DialogId>,
    },
    /// A response to our request (2xx to INVITE already acknowledged by the core).
    Response {
        /// Client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
        /// The dialog it created or belongs to.
        dialog: Option<DialogId>,
    },
    /// The ACK for our 2xx arrived (it carries the answer when our 2xx made the offer).
    Ack {
        /// The dialog.
        dialog: DialogId,
        /// The ACK itself.
        request: Request,
    },
    /// No ACK for our 2xx within 64·T1 (RFC 3261 §13.3.1.4), or none yet when a new INVITE
    /// needed the room ([`UaConfig::max_unconfirmed`], oldest first): the core has sent BYE.
    AckTimeout {
        /// The dialog.
        dialog: DialogId,
    },
    /// The peer cancelled the INVITE of `id`; the core answered 487 (RFC 3261 §9.2).
    Cancelled {
        /// The INVITE's server transaction.
        id: TransactionId,
    },
    /// Our request `id` got no response (Timer B or F) or the ACK of our non-2xx never came.
    Timeout {
        /// The transaction.
        id: TransactionId,
    },
    /// Sending for transaction `id` failed.
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// The PRACK for our reliable provisional response arrived (RFC 3262 §3); the core
    /// answered it 200. It may carry an answer to an offer in that response.
    Prack {
        /// The early dialog.
        dialog: DialogId,
        /// The PRACK.
        request: Request,
    },
    /// No PRACK came for our reliable provisional response to INVITE `id` within 64·T1: the
    /// core refused the INVITE with 504 (RFC 3262 §3).
    PrackTimeout {
        /// The INVITE's server transaction.
        id: TransactionId,
    },
}

/// Why a UA core command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UaError {
    /// From the transaction layer.
    Endpoint(endpoint::Error),
    /// No such dialog.
    UnknownDialog,
    /// No such server transaction awaiting an answer.
    UnknownTransaction,
    /// Building a message failed.
    Dialog(DialogError),
    /// A re-INVITE of ours in this dialog still awaits its final response (RFC 3261 §14.1).
    RequestPending,
    /// No 2xx of that dialog and CSeq is waiting for the TU's ACK.
    NothingToAck,
    /// [`UaCore::prack`]: no reliable provisional response of that dialog awaits the TU's
    /// PRACK.
    NothingToPrack,
    /// The command does not apply to what it names (e.g. a reliable 200).
    InvalidArgument(String),
    /// A new call held back by overload control: its next hop asked us to send `cut` % fewer
    /// (RFC 7339 §5.5), and this call drew the short straw. Nothing was sent.
    Overloaded {
        /// The share the server asked to cut, percent.
        cut: u8,
    },
}

impl std::fmt::Display for UaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UaError::Endpoint(e) => write!(f, "transaction layer: {e}"),
            UaError::UnknownDialog => f.write_str("no such dialog"),
            UaError::UnknownTransaction => f.write_str("no such transaction awaiting an answer"),
            UaError::Dialog(e) => write!(f, "dialog: {e}"),
            UaError::RequestPending => {
                f.write_str("a re-INVITE of ours in this dialog awaits its final response")
            }
            UaError::NothingToAck => f.write_str("no 2xx of that dialog and CSeq awaits an ACK"),
            UaError::NothingToPrack => {
                f.write_str("no reliable provisional response of that dialog awaits a PRACK")
            }
            UaError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            UaError::Overloaded { cut } => write!(
                f,
                "held back by overload control: the next hop asked for {cut} % fewer calls \
                 (RFC 7339)"
            ),
        }
    }
}

impl std::error::Error for UaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UaError::Endpoint(e) => Some(e),
            UaError::Dialog(e) => Some(e),
            _ => None,
        }
    }
}

impl From<endpoint::Error> for UaError {
    fn from(e: endpoint::Error) -> UaError {
        UaError::Endpoint(e)
    }
}

impl From<DialogError> for UaError {
    fn from(e: DialogError) -> UaError {
        UaError::Dialog(e)
    }
}

impl From<sipua_message::ParseError> for UaError {
    fn from(e: sipua_message::ParseError) -> UaError {
        UaError::Dialog(DialogError::Message(e))
    }
}

/// A 2xx we retransmit until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    bytes: Bytes,
    transport: Transport,
    destination: SocketAddr,
    interval: Duration,
    next: Instant,
    give_up: Instant,
    /// What it counts against [`UaConfig::max_unconfirmed_bytes`].
    cost: usize,
}

/// The dialog and CSeq of a 2xx awaiting its ACK, shared by its table entry and its timers.
type AckKey = Arc<(DialogId, u32)>;

/// An ACK we sent, kept to answer retransmitted 2xx responses.
#[derive(Debug)]
struct SentAck {
    bytes: Bytes,
    transport: Transport,
    destination: SocketAddr,
    expires: Instant,
}

/// A request we are answering, kept until its final response.
#[derive(Debug)]
struct Incoming {
    request: Request,
    source: SocketAddr,
    transport: Transport,
    /// Our To tag for its responses (empty for a request inside a dialog, whose To has one).
    local_tag: String,
    /// For a request that makes a dialog: what the dialog takes of it, parsed when it was
    /// checked.
    parts: Option<UasParts>,
}

/// An INVITE we sent, kept to build the ACK of its 2xx.
#[derive(Debug)]
struct Outgoing {
    request: Request,
    transport: Transport,
    destination: SocketAddr,
    /// The transaction the TU knows this request by (a retry with credentials gets a new
    /// transaction, reported under the first one's id).
    original: TransactionId,
    auth_attempts: u8,
    /// For an answered INVITE: when to forget it (forked 2xx stop after 64·T1).
    forget_at: Option<Instant>,
    /// A provisional response arrived (a CANCEL may be sent, RFC 3261 §9.1).
    provisional: bool,
    /// The From is our address of record with a tag (as `from_tagged` writes it), so a
    /// dialog takes it from [`UaCore::aor`] instead of parsing it.
    from_aor: bool,
    /// The TU cancelled: CANCEL sent, or to send on the first provisional response; a 2xx
    /// that still arrives is acknowledged and ended with BYE.
    cancel: Option<Vec<Header>>,
    /// The TU acknowledges 2xx responses itself ([`UaCore::ack`]), to put an answer in the ACK.
    defer_ack: bool,
}

/// The user-agent core. See the module docs.
#[derive(Debug)]
pub struct UaCore {
    cfg: UaConfig,
    timers_cfg: TimerConfig,
    endpoint: Endpoint,
    rng: Rng,
    /// The dialogs, boxed: the table then holds a key and a pointer per slot, and its
    /// spare slots (up to half of them after it grows) cost little.
    dialogs: KeyedMap<DialogId, Box<Dialog>>,
    incoming: IdMap<TransactionId, Incoming>,
    outgoing: IdMap<TransactionId, Outgoing>,
    /// By (dialog, CSeq), shared with the timers that retransmit them (no copy of the id).
    pending_2xx: KeyedMap<AckKey, Pending2xx>,
    /// The keys of `pending_2xx` in the order the 2xx went out, for dropping the oldest first
    /// (keys already acknowledged are skipped, and swept).
    unconfirmed: VecDeque<AckKey>,
    /// The sum of the `cost` of `pending_2xx`.
    unconfirmed_bytes: usize,
    sent_acks: KeyedMap<(DialogId, u32), SentAck>,
    timers: TimerQueue<AckKey>,
    events: VecDeque<UaEvent>,
    /// What the core itself sends (2xx retransmissions, ACKs), before the endpoint's output.
    queue: VecDeque<Transmit>,
    /// What we write from our own address, made once per address.
    ours: Addressed,
    /// Requests without a To tag being answered, by the keyed hash of (From tag, Call-ID,
    /// CSeq), with the keyed hash of their branch, to spot merged requests (RFC 3261
    /// §8.2.2.2).
    merged: IdMap<u64, (TransactionId, u64)>,
    /// Draining ([`UaCore::set_draining`]): the endpoint refuses every new request outside a
    /// dialog with 503, before a transaction is made.
    draining: bool,
    /// Requests refused past [`UaConfig::max_pending_requests`] (the endpoint counts those
    /// refused for rate or draining).
    shed: u64,
    /// New INVITEs held back for an RFC 7339 cut ([`UaCore::held_back`]).
    held_back: u64,
    /// The secret keys of the hashes above.
    keys: KeyedState,
    /// The last digest challenge answered per next hop, reused for the following requests
    /// there with an increasing nonce count (RFC 3261 §22.3): (challenge, proxy?, nc).
    auth_cache: KeyedMap<SocketAddr, (Challenge, bool, u32)>,
    /// Dialogs with a re-INVITE of ours awaiting its final response (RFC 3261 §14.1).
    invites_out: KeyedMap<DialogId, TransactionId>,
    /// Dialogs with an INVITE from the peer not yet finally answered (RFC 3261 §14.2).
    invites_in: KeyedMap<DialogId, TransactionId>,
    /// 2xx responses the TU will acknowledge itself ([`UaCore::defer_ack`]), with the client
    /// transaction and when the 2xx came (forgotten after 64·T1).
    awaiting_ack: KeyedMap<(DialogId, u32), (TransactionId, Instant)>,
    /// Reliable provisional responses, sent and received (RFC 3262).
    prack: prack::PrackState,
    /// Our out-of-dialog SUBSCRIBE and REFER requests by (Call-ID, From tag), kept 64·T1 so
    /// that a NOTIFY arriving before (or instead of) the 2xx creates the subscription's
    /// dialog (RFC 6665 §4.1.2.4), as may several forked NOTIFYs.
    subscribing: KeyedMap<(String, String), (Request, Instant)>,
    /// When [`UaCore::handle_timeout`] next sweeps the tables whose entries expire lazily.
    next_sweep: Option<Instant>,
    /// Checks credentials when [`UaConfig::authenticate`] is set (made at the first request).
    auth_server: Option<Box<DigestServer>>,
    /// Sweeps so far (some tables are swept only every few).
    sweeps: u32,
}

/// The table's own id of the dialog `r` names, if the table holds it: a copy that counts
/// references instead of copying strings.
fn known(dialogs: &KeyedMap<DialogId, Box<Dialog>>, r: DialogIdRef<'_>) -> Option<DialogId> {
    dialogs.get_key_value(r.key()).map(|(k, _)| k.clone())
}

impl UaCore {
    /// A user agent with no dialogs.
    pub fn new(cfg: UaConfig) -> UaCore {
        let ours = Addressed::new(&cfg);
        let mut core = UaCore {
            timers_cfg: cfg.endpoint.timers,
            endpoint: Endpoint::new(cfg.endpoint.clone()),
            rng: Rng::new(cfg.seed),
            cfg,
            dialogs: KeyedMap::default(),
            incoming: IdMap::default(),
            outgoing: IdMap::default(),
            pending_2xx: KeyedMap::default(),
            unconfirmed: VecDeque::new(),
            unconfirmed_bytes: 0,
            sent_acks: KeyedMap::default(),
            timers: TimerQueue::default(),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            ours,
            merged: IdMap::default(),
            draining: false,
            shed: 0,
            held_back: 0,
            keys: KeyedState::default(),
            auth_cache: KeyedMap::default(),
            invites_out: KeyedMap::default(),
            invites_in: KeyedMap::default(),
            awaiting_ack: KeyedMap::default(),
            prack: prack::PrackState::default(),
            subscribing: KeyedMap::default(),
            next_sweep: None,
            auth_server: None,
            sweeps: 0,
        };
        let admission = core.admission();
        core.endpoint.set_admission(admission);
        core
    }

    /// The address our Via, Contact, Call-IDs and (when no address of record was set) From
    /// name from now on. A user agent listening on a wildcard address (`0.0.0.0`, `::`)
    /// sets, before each message, the address the kernel routes to that peer from, so that
    /// no message names the wildcard (its driver looks the route up; this core reads no
    /// socket). Cheap when the address does not change.
    pub fn set_local_ip(&mut self, ip: IpAddr) {
        if ip == self.cfg.local.ip() {
            return;
        }
        self.cfg.local.set_ip(ip);
        self.ours = Addressed::new(&self.cfg);
    }

    /// Names from now on the listener at `port` for `transport` in Via and Contact (an agent
    /// listening on several transports sets it before each message, for the transport that
    /// carries it); the IP address stays ([`UaCore::set_local_ip`]).
    pub fn set_listener(&mut self, transport: Transport, port: u16) {
        if transport == self.cfg.transport && port == self.cfg.local.port() {
            return;
        }
        self.cfg.transport = transport;
        self.cfg.local.set_port(port);
        self.ours = Addressed::new(&self.cfg);
    }

    /// The transport request `id` (a server transaction still being answered) came over.
    pub fn request_transport(&self, id: TransactionId) -> Option<&Transport> {
        self.incoming.get(&id).map(|i| &i.transport)
    }

    /// Drains (or stops draining): every new request outside a dialog, OPTIONS included, is
    /// answered 503 with Retry-After, so that a dispatcher probing with OPTIONS takes this
    /// instance out while its calls go on to their end.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
        self.endpoint.set_admission(self.admission());
    }

    /// What the endpoint refuses before a transaction is made: new requests while
    /// draining, INVITEs past [`UaConfig::max_invites_per_second`].
    fn admission(&self) -> Admission {
        Admission {
            draining: self.draining,
            invites_per_second: self.cfg.max_invites_per_second,
            retry_after: self.cfg.overload_retry_after,
            max_queue_delay: self.cfg.max_queue_delay,
            overload_via: self.cfg.overload_via,
        }
    }

    /// How far behind the driver's reading is (see [`UaConfig::max_queue_delay`]): `Some(t)`
    /// while datagrams have been waiting since `t`, `None` once the socket is found empty.
    pub fn set_backlog(&mut self, since: Option<Instant>) {
        self.endpoint.set_backlog(since);
    }

    /// Requests refused with 503 by overload control or draining so far.
    pub fn shed(&self) -> u64 {
        self.shed + self.endpoint.refused()
    }

    /// The share of new INVITEs we ask RFC 7339 clients to hold back now, percent
    /// ([`UaConfig::overload_via`]; 0 without it or when nothing is refused).
    pub fn overload_cut(&mut self, now: Instant) -> u8 {
        self.endpoint.overload_cut(now)
    }

    /// New INVITEs of ours held back so far because their next hop asked for a cut
    /// (RFC 7339, [`UaError::Overloaded`]).
    pub fn held_back(&self) -> u64 {
        self.held_back
    }

    /// Turns SIP outbound on or off ([`UaConfig::outbound`]): a registration that uses it
    /// (`reg-id`, RFC 5626 §4.2) turns it on for the agent's dialogs.
    pub fn set_outbound(&mut self, on: bool) {
        if on == self.cfg.outbound {
            return;
        }
        self.cfg.outbound = on;
        self.ours.contact = UaCore::make_contact(&self.cfg);
    }

    /// The address our messages name now ([`UaCore::set_local_ip`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.local
    }

    /// Where request `id` (a server transaction still being answered) came from.
    pub fn request_source(&self, id: TransactionId) -> Option<SocketAddr> {
        self.incoming.get(&id).map(|i| i.source)
    }

    /// The INVITE that client transaction `id` sends, while it lives.
    pub fn sent_invite(&self, id: TransactionId) -> Option<&Request> {
        self.endpoint.sent_invite(id)
    }

    /// A dialog, if it exists.
    pub fn dialog(&self, id: &DialogId) -> Option<&Dialog> {
        self.dialogs.get(id).map(|d| &**d)
    }

    /// Number of live dialogs.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Number of live transactions.
    pub fn transactions(&self) -> usize {
        self.endpoint.transactions()
    }

    /// Takes in one message from the network.
    pub fn handle_datagram(&mut self, now: Instant, rx: Received) {
        self.endpoint.handle_datagram(now, rx);
        self.pump(now);
    }

    /// The driver could not send a message of transaction `id` (see [`Transmit::transaction`]).
    pub fn handle_transport_error(&mut self, now: Instant, id: TransactionId) {
        self.endpoint.handle_transport_error(now, id);
        self.pump(now);
    }

    /// Fires the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        while let Some((_, key)) = self.timers.pop_due(now) {
            let Some(p) = self.pending_2xx.get_mut(&*key) else {
                continue;
            };
            if now >= p.give_up {
                // §13.3.1.4: the dialog is confirmed, but the session ends with a BYE
                self.give_up_on_ack(now, &key);
                continue;
            }
            if p.next <= now {
                self.queue.push_back(Transmit {
                    transport: p.transport.clone(),
                    destination: p.destination,
                    bytes: p.bytes.clone(),
                    transaction: None,
                });
                p.interval = (p.interval * 2).min(self.timers_cfg.t2);
                p.next = now + p.interval;
                let next = p.next;
                self.timers.push(now, next, key);
            }
        }
        // the sweeps below walk whole tables: at most once per T1, however often timers
        // fire (a caller at thousands of calls a second keeps tens of thousands of ACKs)
        if self.next_sweep.is_none_or(|at| now >= at) {
            self.next_sweep = Some(now + self.timers_cfg.t1);
            self.sweep(now);
        }
        self.prack_timeouts(now);
        self.pump(now);
    }

    /// Ends the call whose 2xx `key` names for want of its ACK (RFC 3261 §13.3.1.4): a BYE,
    /// and [`UaEvent::AckTimeout`] for the TU. False when that 2xx is no longer pending.
    fn give_up_on_ack(&mut self, now: Instant, key: &AckKey) -> bool {
        let Some(p) = self.pending_2xx.remove(&**key) else {
            return false;
        };
        self.unconfirmed_bytes -= p.cost;
        let _ = self.request_in_dialog(now, &key.0, Method::Bye, p.destination);
        self.events.push_back(UaEvent::AckTimeout {
            dialog: key.0.clone(),
        });
        true
    }

    /// Makes room for a new call of `size` bytes within [`UaConfig::max_unconfirmed`] and
    /// [`UaConfig::max_unconfirmed_bytes`] by ending the oldest calls still awaiting their ACK.
    fn make_room(&mut self, now: Instant, size: usize) {
        while self.pending_2xx.len() >= self.cfg.max_unconfirmed
            || self.unconfirmed_bytes + size > self.cfg.max_unconfirmed_bytes
        {
            let Some(key) = self.unconfirmed.pop_front() else {
                break;
            };
            self.give_up_on_ack(now, &key);
        }
    }

    /// Forgets what has outlived its use (kept ACKs, finished client transactions, awaited
    /// ACKs and SUBSCRIBEs past 64·T1) and shrinks tables far larger than their contents.
    /// What it forgets stays harmless until then: it is late by at most T1.
    fn sweep(&mut self, now: Instant) {
        self.sent_acks.retain(|_, a| a.expires > now);
        let t1x64 = self.timers_cfg.t1x64();
        self.awaiting_ack.retain(|_, (_, at)| *at + t1x64 > now);
        self.outgoing
            .retain(|_, o| o.forget_at.is_none_or(|t| t > now));
        self.subscribing.retain(|_, (_, at)| *at > now);
        fn fit<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(m: &mut HashMap<K, V, S>) {
            if m.capacity() > 1024 && m.len() * 4 < m.capacity() {
                m.shrink_to_fit();
            }
        }
        // merged-request entries outlive their transactions by up to 8 sweeps (4 s): looking
        // each one up every T1 for its 32 s would cost more than the entry itself
        self.sweeps = self.sweeps.wrapping_add(1);
        if self.sweeps.is_multiple_of(8) {
            let endpoint = &self.endpoint;
            self.merged
                .retain(|_, (id, _)| endpoint.state(*id).is_some());
        }
        let pending = &self.pending_2xx;
        self.unconfirmed.retain(|k| pending.contains_key(&**k));
        fit(&mut self.sent_acks);
        fit(&mut self.outgoing);
        fit(&mut self.incoming);
        fit(&mut self.pending_2xx);
        fit(&mut self.merged);
        self.timers.shrink();
        fit(&mut self.subscribing);
    }

    /// Translates the endpoint's events into the core's.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                endpoint::Event::Request {
                    id,
                    request,
                    source,
                    transport,
                } => self.on_request(now, id, request, source, transport),
                endpoint::Event::Ack { request, .. } => {
                    // a 2xx awaits its ACK only in a dialog the table holds
                    let Some(did) =
                        Dialog::ref_of_request(&request).and_then(|r| known(&self.dialogs, r))
                    else {
                        continue;
                    };
                    let key = (did, request.cseq().seq);
                    if let Some(p) = self.pending_2xx.remove(&key) {
                        self.unconfirmed_bytes -= p.cost;
                        self.events.push_back(UaEvent::Ack {
                            dialog: key.0,
                            request,
                        });
                    }
                }
                endpoint::Event::Cancelled { id } => {
                    if let Ok(resp) = self.response(id, 487) {
                        let _ = self.respond(now, id, resp);
                    }
                    self.events.push_back(UaEvent::Cancelled { id });
                }
                endpoint::Event::Response { id, response } => {
                    self.on_response(now, Some(id), response)
                }
                endpoint::Event::StrayResponse { response } => {
                    self.on_response(now, None, response)
                }
                endpoint::Event::Timeout { id } => {
                    let id = self.outgoing.remove(&id).map_or(id, |o| o.original);
                    self.incoming.remove(&id);
                    self.events.push_back(UaEvent::Timeout { id });
                }
                endpoint::Event::TransportError { id } => {
                    let id = self.outgoing.remove(&id).map_or(id, |o| o.original);
                    self.incoming.remove(&id);
                    self.events.push_back(UaEvent::TransportError { id });
                }
                endpoint::Event::Malformed { .. } => {}
            }
        }
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue
            .pop_front()
            .or_else(|| self.endpoint.poll_transmit())
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// When [`UaCore::handle_timeout`] must be called next. Deadlines that no longer matter
    /// (a 2xx acknowledged before its retransmission was due, a transaction answered before
    /// its 100 Trying) are dropped first, so that they wake no one.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // kept ACKs expire lazily, on the next timeout of anything else
        let pending = &self.pending_2xx;
        self.timers.drop_stale_fronts(|at, key| {
            pending
                .get(&**key)
                .is_some_and(|p| p.next == at || p.give_up == at)
        });
        let own = self.timers.next_deadline();
        [own, self.prack.next_timeout(), self.endpoint.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_via_as_text_is_our_via_written() {
        for (local, transport, overload_via) in [
            ("192.0.2.1:5060", Transport::Udp, false),
            ("192.0.2.1:5070", Transport::Tcp, false),
            ("[2001:db8::1]:5061", Transport::Tls, false),
            ("192.0.2.1:5060", Transport::Udp, true),
        ] {
            let cfg = UaConfig {
                seed: 7,
                overload_via,
                ..UaConfig::new(local.parse().unwrap(), transport, "alice")
            };
            let (mut a, mut b) = (UaCore::new(cfg.clone()), UaCore::new(cfg));
            assert!(a.ours.via_template.is_some());
            for _ in 0..3 {
                let text = a.via_text();
                assert_eq!(text, b.via().to_string());
                // RFC 7339 §4.1: a client that takes part says so in every Via it adds
                assert_eq!(
                    text.ends_with(";rport;oc;oc-algo=\"loss\""),
                    overload_via,
                    "{text}"
                );
            }
        }
    }
}
