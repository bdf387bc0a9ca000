//! The user-agent core (RFC 3261 §8, §12, §13, §15): on top of the [`Endpoint`]'s
//! transactions it creates and tracks dialogs, generates tags, Call-IDs and branches from a
//! seeded generator, acknowledges 2xx responses end to end (and again when they are
//! retransmitted, §13.2.2.4), retransmits its own 2xx until the ACK comes (§13.3.1.4), checks
//! in-dialog requests (481 without a dialog, 500 for an old CSeq) and sends in-dialog requests.
//!
//! Like the endpoint it is sans-IO: `handle_*` in, `poll_*` out, time as an argument.

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

mod auth;
mod prack;
mod replaces;
mod rules;
mod subscribe;

use crate::endpoint::{self, Endpoint, Received, TransactionId, Transmit};
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
    /// The command does not apply to what it names (e.g. a reliable 200).
    InvalidArgument(String),
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
            UaError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
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
    /// Draining ([`UaCore::set_draining`]): every new request outside a dialog gets 503.
    draining: bool,
    /// The INVITE token bucket of [`UaConfig::max_invites_per_second`]: tokens, and when
    /// they were counted.
    invite_tokens: (f64, Option<Instant>),
    /// Requests refused by overload control or draining.
    shed: u64,
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
        UaCore {
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
            invite_tokens: (0.0, None),
            shed: 0,
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
        }
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
    }

    /// Requests refused with 503 by overload control or draining so far.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Whether a new request outside a dialog is refused for load: draining, too many
    /// requests unanswered, or INVITEs past their rate. ACK and CANCEL never are.
    fn sheds(&mut self, now: Instant, method: &Method) -> bool {
        if matches!(method, Method::Ack | Method::Cancel) {
            return false;
        }
        if self.draining {
            return true;
        }
        let max = self.cfg.max_pending_requests;
        // `incoming` holds this request too
        if max > 0 && self.incoming.len() > max {
            return true;
        }
        let rate = self.cfg.max_invites_per_second;
        if rate == 0 || *method != Method::Invite {
            return false;
        }
        let (tokens, at) = self.invite_tokens;
        let elapsed = at.map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let tokens = (tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        if tokens >= 1.0 {
            self.invite_tokens = (tokens - 1.0, Some(now));
            false
        } else {
            self.invite_tokens = (tokens, Some(now));
            true
        }
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

    /// `len` random lower-case hex digits (tags, Call-IDs, branches, cnonces).
    fn token(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        self.push_token(&mut s, len);
        s
    }

    /// Appends [`UaCore::token`]'s digits to `s`.
    fn push_token(&mut self, s: &mut String, len: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let end = s.len() + len;
        while s.len() < end {
            let mut x = self.rng.next_u64();
            for _ in 0..16.min(end - s.len()) {
                s.push(char::from(HEX[(x & 0xf) as usize]));
                x >>= 4;
            }
        }
    }

    /// Our Via with a new branch and `rport` (RFC 3581): `Via::new` plus the `rport` flag,
    /// made directly (one allocation per part).
    fn via(&mut self) -> Via {
        let mut branch = String::with_capacity(BRANCH_COOKIE.len() + 16);
        branch.push_str(BRANCH_COOKIE);
        self.push_token(&mut branch, 16);
        let param = |name: &str, value| Param {
            name: name.to_owned(),
            value,
            quoted: false,
        };
        Via {
            protocol: "SIP/2.0".to_owned(),
            transport: self.cfg.transport.clone(),
            host: Host::from(self.cfg.local.ip()),
            port: Some(self.cfg.local.port()),
            params: Params(vec![param("branch", Some(branch)), param("rport", None)]),
        }
    }

    /// Our Via as text with `branch`.
    fn via_text_with(&self, branch: &str) -> String {
        let mut v = String::with_capacity(self.ours.via_prefix.len() + branch.len() + 6);
        v.push_str(&self.ours.via_prefix);
        v.push_str(branch);
        v.push_str(";rport");
        v
    }

    /// [`UaCore::via`] as text, as it writes (the part before the branch is made once); the
    /// template with the same branch writes the same.
    #[cfg(test)]
    fn via_text(&mut self) -> String {
        let branch = self.branch();
        let text = self.via_text_with(&branch);
        if let Some(t) = &self.ours.via_template {
            assert_eq!(t.with_branch(&branch), text);
        }
        text
    }

    /// A new branch: the RFC 3261 cookie and random digits, as [`UaCore::via`] has it.
    fn branch(&mut self) -> String {
        let mut branch = String::with_capacity(BRANCH_COOKIE.len() + 16);
        branch.push_str(BRANCH_COOKIE);
        self.push_token(&mut branch, 16);
        branch
    }

    /// Our Via for a new request with `branch` ([`UaCore::branch`]): the template with it,
    /// or the text (what [`UaCore::via_text`] writes).
    fn via_value(&self, branch: String) -> ViaValue<'_> {
        match &self.ours.via_template {
            Some(t) => ViaValue::Branch(t, branch),
            None => ViaValue::Text(self.via_text_with(&branch)),
        }
    }

    /// A new Call-ID: random digits `@` our address (of our shard, when we are one of
    /// several: on average as many draws as there are shards).
    fn call_id(&mut self) -> String {
        let mut id = String::with_capacity(20 + self.ours.call_id_suffix.len());
        for _ in 0..1000 {
            id.clear();
            self.push_token(&mut id, 20);
            id.push_str(&self.ours.call_id_suffix);
            match self.cfg.shard {
                Some((index, count)) if crate::hash::shard_of(id.as_bytes(), count) != index => {}
                _ => break,
            }
        }
        id
    }

    fn contact(&self) -> Header {
        self.ours.contact.clone()
    }

    /// Our Contact for a request of `method`: without `;ob` in a REGISTER (RFC 5626 §4.2).
    fn contact_for(&self, method: &Method) -> Header {
        if self.cfg.outbound && *method == Method::Register {
            let v = String::from_utf8_lossy(self.ours.contact.value()).replace(";ob>", ">");
            return Header::new(HeaderName::Contact, v);
        }
        self.contact()
    }

    fn make_contact(cfg: &UaConfig) -> Header {
        let transport = match cfg.transport {
            Transport::Udp => String::new(),
            ref t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        let host = Host::from(cfg.local.ip());
        let ob = if cfg.outbound { ";ob" } else { "" };
        Header::new(
            HeaderName::Contact,
            format!(
                "<sip:{}@{}:{}{transport}{ob}>",
                cfg.user,
                host,
                cfg.local.port()
            ),
        )
    }

    fn make_aor(cfg: &UaConfig) -> NameAddr {
        if let Some(a) = &cfg.aor {
            let mut a = a.clone();
            a.params.remove("tag");
            return a;
        }
        let uri: Uri = format!("sip:{}@{}", cfg.user, Host::from(cfg.local.ip()))
            .parse()
            .unwrap_or_else(|_| Uri::Sip(sipua_message::SipUri::new(Host::from(cfg.local.ip()))));
        NameAddr::new(uri)
    }

    /// Sends an INVITE to `target` through `destination` (the next hop, already resolved).
    pub fn invite(
        &mut self,
        now: Instant,
        target: Uri,
        destination: SocketAddr,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        self.send_request(now, Method::Invite, target, destination, Vec::new(), body)
    }

    /// Sends an out-of-dialog request (REGISTER, MESSAGE, OPTIONS, SUBSCRIBE, INVITE...) to
    /// `target` through `destination`, with a new Call-ID and From tag. Requests that create
    /// dialogs or bindings carry our Contact.
    pub fn send_request(
        &mut self,
        now: Instant,
        method: Method,
        target: Uri,
        destination: SocketAddr,
        headers: Vec<Header>,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        let opts = OutOfDialog {
            headers,
            body,
            ..OutOfDialog::default()
        };
        self.send_request_with(now, method, target, destination, opts)
    }

    /// Like [`UaCore::send_request`], with the choices of [`OutOfDialog`]: the transport
    /// RFC 3263 server location picked, another From (an anonymous caller, RFC 3323).
    pub fn send_request_with(
        &mut self,
        now: Instant,
        method: Method,
        target: Uri,
        destination: SocketAddr,
        opts: OutOfDialog,
    ) -> Result<TransactionId, UaError> {
        let OutOfDialog {
            transport,
            from,
            headers,
            body,
            call_id,
            cseq,
            to,
            contact,
            contact_params,
        } = opts;
        let tag = self.token(10);
        let call_id = call_id.unwrap_or_else(|| self.call_id());
        let branch = self.branch();
        // From is our address of record (or the caller's choice) with a new tag, written
        // without a copy; To the registered address, the target or the caller's choice
        let b = RequestBuilder::new_ref(method.clone(), &target);
        let mut b = match self.via_value(branch) {
            ViaValue::Branch(t, branch) => b.via_branch(t, &branch),
            ViaValue::Text(v) => b.via_text(v),
            ViaValue::Typed(v) => b.via(v),
        }
        .from_tagged(from.as_ref().unwrap_or(&self.ours.aor), &tag);
        b = match to {
            Some(to) => b.to(to),
            None if method == Method::Register => b.to_ref(&self.ours.aor),
            None => b.to(NameAddr::new(target)),
        };
        b = b.call_id(call_id).cseq(cseq.unwrap_or(1));
        if let Some(c) = contact {
            b = b.header(c);
        } else if let Some(p) = contact_params {
            let ours = self.contact_for(&method);
            let value = format!("{}{p}", String::from_utf8_lossy(ours.value()));
            b = b.header(Header::new(HeaderName::Contact, value));
        } else if matches!(
            method,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Register
        ) {
            b = b.header(self.contact_for(&method));
        }
        for h in headers {
            b = b.header(h);
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        let request = b.build()?;
        let from_aor = from.is_none();
        let id = self.start(now, request, destination, None, transport)?;
        if let Some(o) = self.outgoing.get_mut(&id) {
            o.from_aor = from_aor;
        }
        Ok(id)
    }

    /// Starts a client transaction for `request`; `original` names the first attempt of a
    /// request re-sent with credentials.
    fn start(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        original: Option<(TransactionId, u8)>,
        hint: Option<Transport>,
    ) -> Result<TransactionId, UaError> {
        let mut request = request;
        if original.is_none() {
            self.authorize_from_cache(&mut request, destination);
        }
        // the transport chosen by server location (RFC 3263), else the one in our Via
        let via_transport = request.via_transport().clone();
        let base = hint.unwrap_or_else(|| via_transport.clone());
        // RFC 3261 §18.1.1: a request too large for UDP goes over TCP, unless the URI insists
        // (the URI is only parsed when the size asks the question)
        let size = request.to_bytes().len();
        let forced_udp = crate::locate::transport_for_size(&base, size, false) != base
            && request
                .uri()
                .as_sip()
                .and_then(|u| u.transport())
                .is_some_and(|t| t.eq_ignore_ascii_case("udp"));
        let transport = crate::locate::transport_for_size(&base, size, forced_udp);
        if transport != via_transport {
            if let Ok(mut via) = request.top_via().cloned() {
                via.transport = transport.clone();
                request.set_top_via(&via)?;
            }
        }
        let id =
            self.endpoint
                .send_request(now, request.clone(), transport.clone(), destination)?;
        let (original, auth_attempts) = original.unwrap_or((id, 0));
        if matches!(request.method(), Method::Subscribe | Method::Refer) && !request.has_to_tag() {
            self.remember_subscribe(now, &request);
        }
        self.outgoing.insert(
            id,
            Outgoing {
                request,
                transport,
                destination,
                original,
                auth_attempts,
                forget_at: None,
                provisional: false,
                from_aor: false,
                cancel: None,
                defer_ack: false,
            },
        );
        Ok(id)
    }

    /// Sends a request inside dialog `dialog` (BYE, INFO, re-INVITE...) to `destination`.
    pub fn request_in_dialog(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        method: Method,
        destination: SocketAddr,
    ) -> Result<TransactionId, UaError> {
        self.request_in_dialog_with(now, dialog, method, destination, Vec::new(), None)
    }

    /// Like [`UaCore::request_in_dialog`], with extra headers and a body (INFO payloads,
    /// re-INVITE offers, in-dialog MESSAGE).
    pub fn request_in_dialog_with(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        method: Method,
        destination: SocketAddr,
        extra: Vec<Header>,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        if !self.dialogs.contains_key(dialog) {
            return Err(UaError::UnknownDialog);
        }
        if method == Method::Invite && self.invites_out.contains_key(dialog) {
            return Err(UaError::RequestPending);
        }
        let branch = self.branch();
        // target refresh requests, and REFER, say where the peer's requests go (RFC 3261
        // §12.2.1.1, RFC 3311 §5.1, RFC 6665 §4.1.2.1 and §4.2.2, RFC 3515 §2.4.1)
        let refresh = matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        );
        let mut headers = if refresh && !extra.iter().any(|h| h.name() == &HeaderName::Contact) {
            vec![self.contact()]
        } else {
            Vec::new()
        };
        headers.extend(extra);
        let via = match &self.ours.via_template {
            Some(t) => ViaValue::Branch(t, branch),
            None => ViaValue::Text(self.via_text_with(&branch)),
        };
        let d = self.dialogs.get_mut(dialog).ok_or(UaError::UnknownDialog)?;
        let mut request = d.request_via(method.clone(), via, headers)?;
        // the flow the peer is reachable over, else a transport parameter in the next hop
        // (the peer's Contact or first route) decides
        let hint = match flow_in_use(d) {
            Some(f) => Some(f.transport.clone()),
            None => d
                .next_hop()
                .as_sip()
                .and_then(|u| u.transport())
                .map(|t| Transport::parse(t.as_bytes())),
        };
        if let Some((ct, body)) = body {
            request.set_body(Some(&ct), &body)?;
        }
        let is_invite = *request.method() == Method::Invite;
        let id = self.start(now, request, destination, None, hint)?;
        if is_invite {
            self.invites_out.insert(dialog.clone(), id);
        }
        if method == Method::Bye {
            self.forget_dialog(dialog);
        }
        Ok(id)
    }

    /// How long to wait before retrying a re-INVITE refused with 491 (RFC 3261 §14.1):
    /// 2.1–4 s if we chose the Call-ID, else 0–2 s, in steps of 10 ms.
    pub fn glare_backoff(&mut self, dialog: &DialogId) -> Duration {
        let caller = self.dialogs.get(dialog).is_some_and(|d| d.caller);
        let r = self.rng.next_u64();
        if caller {
            Duration::from_millis(2100 + (r % 191) * 10)
        } else {
            Duration::from_millis((r % 201) * 10)
        }
    }

    /// Cancels the INVITE of client transaction `id` (RFC 3261 §9.1) with optional Reason
    /// headers (RFC 3326). The CANCEL goes out once a provisional response has arrived; if the
    /// callee answers anyway (the CANCEL/200 race), the core acknowledges the 2xx and sends
    /// BYE.
    pub fn cancel(
        &mut self,
        now: Instant,
        id: TransactionId,
        reasons: Vec<Header>,
    ) -> Result<(), UaError> {
        let current = self
            .outgoing
            .iter()
            .find(|(_, o)| o.original == id)
            .map(|(k, _)| *k)
            .unwrap_or(id);
        let out = self
            .outgoing
            .get_mut(&current)
            .ok_or(UaError::UnknownTransaction)?;
        if *out.request.method() != Method::Invite || out.cancel.is_some() {
            return Err(UaError::UnknownTransaction);
        }
        out.cancel = Some(reasons);
        if out.provisional {
            self.send_cancel(now, current);
        }
        Ok(())
    }

    fn send_cancel(&mut self, now: Instant, id: TransactionId) {
        let Some(out) = self.outgoing.get(&id) else {
            return;
        };
        let reasons = out.cancel.clone().unwrap_or_default();
        let (destination, transport) = (out.destination, out.transport.clone());
        if let Ok(cancel) = out.request.cancel(&reasons) {
            let _ = self
                .endpoint
                .send_request(now, cancel, transport, destination);
        }
    }

    /// A response to request `id` with our To tag (the same for every response of the
    /// transaction) and, for dialog-creating INVITE responses, our Contact.
    pub fn response(&self, id: TransactionId, status: u16) -> Result<Response, UaError> {
        self.response_with(id, status, Vec::new())
    }

    /// [`UaCore::response`] with `headers` added in the same pass (one serialisation, one
    /// parse; adding them afterwards would rebuild the response once each).
    pub fn response_with(
        &self,
        id: TransactionId,
        status: u16,
        headers: Vec<Header>,
    ) -> Result<Response, UaError> {
        self.response_full(id, status, None, headers, None)
    }

    /// [`UaCore::response_with`] with a reason phrase of the caller's (`None`: the standard
    /// one) and a body of the given type, all in the one pass.
    pub fn response_full(
        &self,
        id: TransactionId,
        status: u16,
        reason: Option<&str>,
        headers: Vec<Header>,
        body: Option<(&MediaType, &[u8])>,
    ) -> Result<Response, UaError> {
        let inc = self.incoming.get(&id).ok_or(UaError::UnknownTransaction)?;
        // a To that does not parse (answered with 400) gets no tag rather than no answer
        let tag = (status > 100 && !inc.request.has_to_tag()).then_some(inc.local_tag.as_str());
        let contact = match inc.request.method() {
            Method::Invite => (101..300).contains(&status),
            // the notifier's 2xx names its target (RFC 6665 §4.2.1, RFC 3515 §2.4.2)
            Method::Subscribe | Method::Refer | Method::Update => (200..300).contains(&status),
            _ => false,
        };
        // our Contact first; borrowed, without a list, when it is the only extra header
        let mut extra = headers;
        let with_contact = contact && !extra.iter().any(|h| h.name() == &HeaderName::Contact);
        if with_contact && !extra.is_empty() {
            extra.insert(0, self.contact());
        }
        let extra: &[Header] = if with_contact && extra.is_empty() {
            std::slice::from_ref(&self.ours.contact)
        } else {
            &extra
        };
        // made once by the endpoint when the request arrived; made here if it is gone
        let made;
        let via = match self.endpoint.received_via_of(id) {
            Some(v) => v,
            None => {
                made = endpoint::received_via_text(&inc.request, inc.source);
                made.as_deref()
            }
        };
        Ok(Response::from_request_with_parts(
            &inc.request,
            status,
            reason,
            tag,
            via,
            extra,
            body,
        )?)
    }

    /// Sends `response` on server transaction `id`. A 1xx/2xx to an INVITE with a To tag
    /// creates or confirms the dialog; a 2xx is then retransmitted until its ACK.
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<Option<DialogId>, UaError> {
        let status = response.status();
        let inc = self
            .incoming
            .get_mut(&id)
            .ok_or(UaError::UnknownTransaction)?;
        let mut dialog_id = None;
        if *inc.request.method() == Method::Invite
            && (101..300).contains(&status)
            && response.has_to_tag()
        {
            let state = if status < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            };
            let local_tag = response.to_tag().unwrap_or_default();
            match Dialog::ref_of_request(&inc.request).and_then(|r| known(&self.dialogs, r)) {
                // re-INVITE inside an existing dialog
                Some(existing) => dialog_id = Some(existing),
                None => {
                    // the id Dialog::uas gives: a dialog of this INVITE that a provisional
                    // response made early is confirmed, not made again
                    let r = DialogIdRef {
                        call_id: inc.request.call_id(),
                        local_tag,
                        remote_tag: inc.request.from_tag().unwrap_or_default(),
                    };
                    let did = match self.dialogs.get_key_value(r.key()) {
                        Some((did, _)) => {
                            let did = did.clone();
                            if let Some(x) = self.dialogs.get_mut(&did) {
                                x.state = state;
                            }
                            did
                        }
                        None => {
                            let parts = inc.parts.take();
                            let mut d = Dialog::uas_with(&inc.request, local_tag, state, parts)?;
                            d.flow = flow_of(&inc.transport, inc.source);
                            debug_assert_eq!(d.id.as_ref(), r);
                            let did = d.id.clone();
                            self.dialogs.insert(did.clone(), Box::new(d));
                            did
                        }
                    };
                    dialog_id = Some(did);
                }
            }
        } else if matches!(inc.request.method(), Method::Subscribe | Method::Refer)
            && !inc.request.has_to_tag()
            && response.is_success()
        {
            // a 2xx to SUBSCRIBE or REFER creates the subscription's dialog (RFC 6665
            // §4.2.1, RFC 3515 §2.4.4)
            let local_tag = response.to_tag().unwrap_or(&inc.local_tag).to_owned();
            let parts = inc.parts.take();
            let mut d = Dialog::uas_with(&inc.request, &local_tag, DialogState::Confirmed, parts)?;
            d.flow = flow_of(&inc.transport, inc.source);
            let did = d.id.clone();
            self.dialogs.entry(did.clone()).or_insert(Box::new(d));
            dialog_id = Some(did);
        } else if let Some(did) =
            Dialog::ref_of_request(&inc.request).and_then(|r| known(&self.dialogs, r))
        {
            dialog_id = Some(did);
        }
        let (request, source, transport) = (inc.request.clone(), inc.source, inc.transport.clone());
        // our tag, for an early dialog that a final non-2xx ends (below)
        let ends_early =
            *request.method() == Method::Invite && status >= 300 && !request.has_to_tag();
        let local_tag = ends_early.then(|| response.to_tag().unwrap_or(&inc.local_tag).to_owned());
        // whether the request's top Via gets received/rport in responses (known on arrival;
        // the endpoint lets go of the request at the final response)
        let via_changes = matches!(self.endpoint.received_via_of(id), Some(Some(_)));
        self.endpoint.respond(now, id, response.clone())?;
        if status >= 200 && *request.method() == Method::Invite {
            self.invites_in.retain(|_, t| *t != id);
            self.prack_final(id);
        }
        if status >= 200 {
            // (its merged-request entry stays while the transaction lingers: a copy of the
            // request along another path still gets 482, RFC 3261 §8.2.2.2; swept below)
            self.incoming.remove(&id);
        }
        if *request.method() == Method::Invite && (200..300).contains(&status) {
            if let Some(did) = &dialog_id {
                // the endpoint sent it once; the core retransmits it until the ACK
                let t1 = self.timers_cfg.t1;
                let bytes = if via_changes {
                    endpoint::with_received(response, &request, source).to_bytes()
                } else {
                    response.to_bytes()
                };
                let key = Arc::new((did.clone(), request.cseq().seq));
                let destination = if transport.is_reliable() {
                    source
                } else {
                    destination_for(&request, source)
                };
                if !transport.is_reliable() {
                    self.timers.push(now, now + t1, key.clone());
                }
                let give_up = now + self.timers_cfg.t1x64();
                self.timers.push(now, give_up, key.clone());
                let cost = bytes.len() + request.to_bytes().len();
                self.unconfirmed_bytes += cost;
                self.unconfirmed.push_back(key.clone());
                let old = self.pending_2xx.insert(
                    key,
                    Pending2xx {
                        bytes,
                        transport,
                        destination,
                        interval: t1,
                        next: now + t1,
                        give_up,
                        cost,
                    },
                );
                if let Some(old) = old {
                    self.unconfirmed_bytes -= old.cost;
                }
            }
        }
        if let Some(local_tag) = local_tag {
            let r = DialogIdRef {
                call_id: request.call_id(),
                local_tag: &local_tag,
                remote_tag: request.from_tag().unwrap_or_default(),
            };
            // an early dialog created by a provisional response ends with the final answer
            if self
                .dialogs
                .get(r.key())
                .is_some_and(|d| d.state == DialogState::Early)
            {
                self.dialogs.remove(r.key());
            }
        }
        Ok(dialog_id)
    }

    /// Ends a dialog the TU is done with: a subscription that terminated (RFC 6665 §4.4.1),
    /// whose dialog no BYE ends. Later requests in it get 481.
    pub fn end_dialog(&mut self, id: &DialogId) {
        // nor may a late NOTIFY of that SUBSCRIBE create it again
        self.subscribing
            .remove(&(id.call_id.to_string(), id.local_tag.to_string()));
        self.forget_dialog(id);
    }

    fn forget_dialog(&mut self, id: &DialogId) {
        self.prack.forget(id);
        self.dialogs.remove(id);
        if !self.pending_2xx.is_empty() {
            let mut freed = 0;
            self.pending_2xx.retain(|k, p| {
                let keep = k.0 != *id;
                if !keep {
                    freed += p.cost;
                }
                keep
            });
            self.unconfirmed_bytes -= freed;
        }
        if !self.awaiting_ack.is_empty() {
            self.awaiting_ack.retain(|(d, _), _| d != id);
        }
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

    fn on_request(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let in_dialog = request.has_to_tag();
        // our tag for the responses: a request inside a dialog already names it
        let local_tag = if in_dialog {
            String::new()
        } else {
            self.token(10)
        };
        let mut parts = None;
        let stateless = self.check_request(&request, &mut parts);
        self.incoming.insert(
            id,
            Incoming {
                request: request.clone(),
                source,
                transport,
                local_tag,
                parts,
            },
        );
        if let Some((status, headers)) = stateless {
            self.answer(now, id, status, headers);
            return;
        }
        if !in_dialog && self.sheds(now, request.method()) {
            // the cheapest answer: nothing made for it but the transaction that absorbs its
            // retransmissions
            self.shed += 1;
            let after = Header::new(
                HeaderName::RetryAfter,
                self.cfg.overload_retry_after.to_string(),
            );
            self.answer(now, id, 503, vec![after]);
            return;
        }
        if !in_dialog
            && *request.method() != Method::Options
            && !self.authenticated(now, id, &request, source)
        {
            return;
        }
        if !in_dialog {
            if let Some(key) = merge_key(&self.keys, &request) {
                let branch = self.keys.hash_one(request.branch().unwrap_or_default());
                // §8.2.2.2: the same request over another path (one lookup for both uses)
                match self.merged.entry(key) {
                    Entry::Occupied(e)
                        if e.get().1 != branch && self.endpoint.state(e.get().0).is_some() =>
                    {
                        self.answer(now, id, 482, Vec::new());
                        return;
                    }
                    Entry::Occupied(mut e) => {
                        e.insert((id, branch));
                    }
                    Entry::Vacant(v) => {
                        v.insert((id, branch));
                    }
                }
            }
            if *request.method() == Method::Options && self.cfg.capabilities.answer_options {
                let headers = self.capability_headers();
                self.answer(now, id, 200, headers);
                return;
            }
        }
        if in_dialog {
            let r = Dialog::ref_of_request(&request);
            if *request.method() == Method::Notify {
                if let Some(r) = r.filter(|r| !self.dialogs.contains_key(r.key())) {
                    self.dialog_from_notify(&r.to_owned_id(), &request);
                }
            }
            // the table's own id: its parts are shared, so this copy counts references
            let did = r.and_then(|r| known(&self.dialogs, r));
            let checked = did
                .as_ref()
                .and_then(|d| self.dialogs.get_mut(d))
                .map(|d| d.on_request(&request));
            let mut status = match checked {
                None => Some(481),
                Some(Err(DialogError::CSeqTooLow)) => Some(500),
                Some(Err(_)) => Some(400),
                Some(Ok(())) => None,
            };
            let mut headers = Vec::new();
            if let (None, Some(d), Method::Invite) = (status, &did, request.method()) {
                // §14.2: glare with our own re-INVITE gets 491; a second INVITE while one is
                // unanswered, or while our 2xx waits for its ACK, gets 500 with Retry-After
                if self.invites_out.contains_key(d) {
                    status = Some(491);
                } else if self.invites_in.contains_key(d)
                    || self.pending_2xx.keys().any(|k| k.0 == *d)
                {
                    status = Some(500);
                    let secs = (self.rng.next_u64() % 10) as u32;
                    headers.push(Header::typed(&sipua_message::header::RetryAfter {
                        delta: secs,
                        comment: None,
                        params: Default::default(),
                    }));
                } else {
                    self.invites_in.insert(d.clone(), id);
                }
            }
            if let Some(status) = status {
                self.answer(now, id, status, headers);
                return;
            }
            if *request.method() == Method::Bye {
                if let Some(d) = &did {
                    self.forget_dialog(d);
                }
            }
            if let Some(d) = &did {
                if self.on_prack(now, id, &request, d) {
                    return;
                }
            }
            self.events.push_back(UaEvent::Request {
                id,
                request,
                dialog: did,
            });
        } else {
            if *request.method() == Method::Invite {
                self.make_room(now, request.to_bytes().len());
            }
            self.events.push_back(UaEvent::Request {
                id,
                request,
                dialog: None,
            });
        }
    }

    fn on_response(&mut self, now: Instant, id: Option<TransactionId>, response: Response) {
        let is_invite = response.cseq().method == Method::Invite;
        if response.cseq().method == Method::Prack {
            // our own PRACK's answer: nobody else asked (auth challenges are retried first)
            if let Some(i) = id {
                if matches!(response.status(), 401 | 407)
                    && self.retry_with_credentials(now, i, &response)
                {
                    return;
                }
                if response.status() >= 200 {
                    self.outgoing.remove(&i);
                    if self.prack.take_ours(i) {
                        return;
                    }
                }
            }
        }
        if let Some(i) = id {
            if matches!(response.status(), 401 | 407)
                && self.retry_with_credentials(now, i, &response)
            {
                return;
            }
        }
        let original = id.map(|i| self.outgoing.get(&i).map_or(i, |o| o.original));
        if let (Some(i), true) = (id, is_invite && response.status() < 200) {
            let first = self
                .outgoing
                .get_mut(&i)
                .is_some_and(|o| !std::mem::replace(&mut o.provisional, true));
            if first && self.outgoing.get(&i).is_some_and(|o| o.cancel.is_some()) {
                self.send_cancel(now, i);
            }
        }
        let cancelled = id
            .and_then(|i| self.outgoing.get(&i))
            .is_some_and(|o| o.cancel.is_some());
        if response.status() >= 200 && is_invite {
            if let Some(o) = original {
                self.invites_out.retain(|_, t| *t != o && Some(*t) != id);
            }
        }
        // the dialog id of a 2xx, made once for the two uses below
        let mut success_id = None;
        if is_invite && response.is_success() {
            // a retransmitted 2xx (its ACK was lost): ACK it again, tell no one
            if let Some(r) = Dialog::ref_of_response(&response) {
                let seq = response.cseq().seq;
                let did = known(&self.dialogs, r).unwrap_or_else(|| r.to_owned_id());
                let key = (did, seq);
                if !self.awaiting_ack.is_empty() && self.awaiting_ack.contains_key(&key) {
                    return; // the TU has it and has not acknowledged it yet
                }
                if let Some(a) = self.sent_acks.get(&key) {
                    let t = Transmit {
                        transport: a.transport.clone(),
                        destination: a.destination,
                        bytes: a.bytes.clone(),
                        transaction: None,
                    };
                    self.queue.push_back(t);
                    return;
                }
                success_id = Some(key.0);
            }
        }
        let mut dialog = None;
        if is_invite && response.status() > 100 && response.status() < 300 && response.has_to_tag()
        {
            let did = success_id.or_else(|| Dialog::id_of_response(&response));
            let out = id.and_then(|i| self.outgoing.get(&i));
            match (did, out) {
                (Some(did), Some(out)) => {
                    match self.dialogs.get_mut(&did) {
                        Some(d) => d.on_response(&response),
                        None => {
                            // our From is our address of record with the request's tag: the
                            // dialog takes it from there rather than parsing it
                            let local = (out.from_aor && self.ours.aor_round_trips)
                                .then(|| out.request.from_tag())
                                .flatten()
                                .map(|tag| {
                                    // room for the tag and no more: the dialog keeps it
                                    let mut a = self.ours.aor.clone();
                                    a.params.0.reserve_exact(1);
                                    a.set_tag(tag);
                                    a
                                });
                            if let Ok(mut d) = Dialog::uac_with(&out.request, &response, local) {
                                d.flow = flow_of(&out.transport, out.destination);
                                self.dialogs.insert(did.clone(), Box::new(d));
                            }
                        }
                    }
                    dialog = Some(did);
                }
                (Some(did), None) => dialog = Some(did),
                _ => {}
            }
        }
        if matches!(response.cseq().method, Method::Subscribe | Method::Refer)
            && response.is_success()
        {
            dialog = self.subscription_dialog(id, &response);
        }
        if let (Some(did), Some(i), true) = (&dialog, id, is_invite && response.status() < 200) {
            let dest = self.outgoing.get(&i).map(|o| o.destination);
            if let Some(dest) = dest {
                if !self.on_reliable_provisional(now, &response, did, dest) {
                    return;
                }
            }
        }
        let deferred = id
            .and_then(|i| self.outgoing.get(&i))
            .is_some_and(|o| o.defer_ack && o.cancel.is_none());
        if is_invite && response.is_success() && deferred {
            if let (Some(did), Some(i)) = (&dialog, id) {
                // the TU sends the ACK (with its answer) through `ack`
                self.awaiting_ack
                    .insert((did.clone(), response.cseq().seq), (i, now));
            }
        } else if is_invite && response.is_success() {
            if let Some(did) = &dialog {
                self.ack_2xx(now, id, did, &response, None);
                if cancelled {
                    // the CANCEL lost the race: end the call that came up anyway
                    let dest = id
                        .and_then(|i| self.outgoing.get(&i))
                        .map(|o| self.dialog_destination(did).unwrap_or(o.destination));
                    if let Some(dest) = dest {
                        let _ = self.request_in_dialog(now, did, Method::Bye, dest);
                    }
                }
            }
            if id.is_none() {
                return; // a retransmission after the transaction ended: re-ACKed, not news
            }
        }
        if let (Some(i), true) = (id, response.status() >= 200) {
            if is_invite && response.is_success() {
                let forget = now + self.timers_cfg.t1x64();
                if let Some(o) = self.outgoing.get_mut(&i) {
                    o.forget_at = Some(forget);
                }
            } else {
                self.outgoing.remove(&i);
            }
            if !response.is_success() {
                if let Some(r) = Dialog::ref_of_response(&response) {
                    if self
                        .dialogs
                        .get(r.key())
                        .is_some_and(|d| d.state == DialogState::Early)
                    {
                        self.dialogs.remove(r.key());
                    }
                }
            }
        }
        if let Some(id) = original {
            self.events.push_back(UaEvent::Response {
                id,
                response,
                dialog,
            });
        }
    }

    /// Marks our INVITE `id` (initial or re-INVITE) so that its 2xx responses are reported but
    /// not acknowledged: the TU calls [`UaCore::ack`] with the answer when the INVITE carried no
    /// offer (RFC 3264 §5: the offer is in the 2xx, the answer in the ACK).
    pub fn defer_ack(&mut self, id: TransactionId) -> Result<(), UaError> {
        let o = self
            .outgoing
            .get_mut(&id)
            .ok_or(UaError::UnknownTransaction)?;
        o.defer_ack = true;
        Ok(())
    }

    /// Acknowledges the 2xx of dialog `dialog` to the INVITE with CSeq `seq`, with an
    /// optional body (the answer to an offer in the 2xx). Only for INVITEs marked with
    /// [`UaCore::defer_ack`]; the ACK is kept and repeated for retransmitted 2xx.
    pub fn ack(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        seq: u32,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<(), UaError> {
        let (id, _) = self
            .awaiting_ack
            .remove(&(dialog.clone(), seq))
            .ok_or(UaError::NothingToAck)?;
        self.ack_seq(now, Some(id), dialog, seq, body);
        Ok(())
    }

    /// Sends the ACK for a 2xx (RFC 3261 §13.2.2.4) and keeps it for retransmitted 2xx.
    fn ack_2xx(
        &mut self,
        now: Instant,
        id: Option<TransactionId>,
        did: &DialogId,
        response: &Response,
        body: Option<(MediaType, Bytes)>,
    ) {
        self.ack_seq(now, id, did, response.cseq().seq, body)
    }

    fn ack_seq(
        &mut self,
        now: Instant,
        id: Option<TransactionId>,
        did: &DialogId,
        seq: u32,
        body: Option<(MediaType, Bytes)>,
    ) {
        let key = (did.clone(), seq);
        let Some(out) = id.and_then(|i| self.outgoing.get(&i)) else {
            return;
        };
        let (mut transport, fallback) = (out.transport.clone(), out.destination);
        let branch = self.branch();
        // one lookup of the dialog for where the ACK goes and what it holds
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        if let Some(f) = flow_in_use(d) {
            transport = f.transport.clone();
        }
        let destination = destination_of(d).unwrap_or(fallback);
        let via = self.via_value(branch);
        let Ok(mut ack) = d.ack_via(seq, via) else {
            return;
        };
        if let Some((ct, body)) = body {
            if ack.set_body(Some(&ct), &body).is_err() {
                return;
            }
        }
        let bytes = ack.to_bytes();
        self.queue.push_back(Transmit {
            transport: transport.clone(),
            destination,
            bytes: bytes.clone(),
            transaction: None,
        });
        self.sent_acks.insert(
            key,
            SentAck {
                bytes,
                transport,
                destination,
                expires: now + self.timers_cfg.t1x64(),
            },
        );
    }

    /// Where in-dialog requests of `dialog` go when its next hop (first route, else the
    /// remote target) names an address: RFC 3261 §12.2.1.1 routing, which for the ACK of a
    /// 2xx (§13.2.2.4) and the BYE after a lost race may differ from where the INVITE went
    /// (a forking proxy that did not record-route). `None` for a host name: the caller's
    /// resolved address applies.
    pub fn dialog_destination(&self, dialog: &DialogId) -> Option<SocketAddr> {
        destination_of(self.dialogs.get(dialog)?)
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

/// The connection dialog `d`'s requests go over instead of its next hop: the peer can be
/// reached only over it ([`Dialog::uses_flow`]), or the next hop names no address we could
/// reach without DNS while the peer reached us over a connection.
fn flow_in_use(d: &Dialog) -> Option<&Flow> {
    let f = d.flow.as_deref()?;
    (d.uses_flow() || next_hop_address(d).is_none()).then_some(f)
}

/// The flow a dialog made by a message over `transport` from (or to) `remote` keeps.
fn flow_of(transport: &Transport, remote: SocketAddr) -> Option<Box<Flow>> {
    transport.is_reliable().then(|| {
        Box::new(Flow {
            transport: transport.clone(),
            remote,
        })
    })
}

/// What the core writes from its own address, made once per address.
#[derive(Debug)]
struct Addressed {
    /// Our Contact header.
    contact: Header,
    /// Our address of record.
    aor: NameAddr,
    /// Our address of record written with a tag parses back to it with that tag (checked
    /// once): a dialog's local address is then made from it, not parsed.
    aor_round_trips: bool,
    /// `@` and our address, the end of the Call-IDs we make.
    call_id_suffix: String,
    /// Our Via up to its branch value (`SIP/2.0/UDP host:port;branch=`).
    via_prefix: String,
    /// The same with `;rport` after the branch, checked once (`None` if it does not parse:
    /// then requests carry [`UaCore::via_text`], checked each time).
    via_template: Option<ViaTemplate>,
}

impl Addressed {
    fn new(cfg: &UaConfig) -> Addressed {
        let aor = UaCore::make_aor(cfg);
        // what UaCore::via writes before its branch value
        let via_prefix = {
            let mut v = Via::new(
                cfg.transport.clone(),
                Host::from(cfg.local.ip()),
                Some(cfg.local.port()),
                "",
            );
            v.params = Params::new();
            format!("{v};branch=")
        };
        Addressed {
            contact: UaCore::make_contact(cfg),
            aor_round_trips: {
                let mut tagged = aor.clone();
                tagged.set_tag("0123456789");
                NameAddr::parse(tagged.to_string().as_bytes()).is_ok_and(|a| a == tagged)
            },
            aor,
            call_id_suffix: format!("@{}", Host::from(cfg.local.ip())),
            via_template: ViaTemplate::new(&via_prefix, ";rport").ok(),
            via_prefix,
        }
    }
}

/// [`UaCore::dialog_destination`] of dialog `d`.
fn destination_of(d: &Dialog) -> Option<SocketAddr> {
    match flow_in_use(d) {
        Some(f) => Some(f.remote),
        None => next_hop_address(d),
    }
}

/// Where the next hop of dialog `d` is, when it names an address (RFC 3263 without DNS).
fn next_hop_address(d: &Dialog) -> Option<SocketAddr> {
    // the usual next hop, an IP address with a port and no maddr or transport parameter,
    // is where the locator would send (RFC 3263 §4.2), without making one
    if let Some(sip) = d.next_hop().as_sip() {
        if let (Some(ip), Some(port), None, None) =
            (sip.host.ip(), sip.port, sip.maddr(), sip.transport())
        {
            return Some(SocketAddr::new(ip, port));
        }
    }
    let mut l = crate::locate::Locator::new(d.next_hop(), 0).ok()?;
    match l.step() {
        crate::locate::Step::Done(t) => t.first().map(|(_, a)| *a),
        _ => None,
    }
}

/// Where responses to `request` go over UDP (RFC 3261 §18.2.2, RFC 3581).
fn destination_for(request: &Request, source: SocketAddr) -> SocketAddr {
    // the Via as written when it can be read so (no typed Via), else parsed
    if let Some(v) = request.top_via_text() {
        return match v.rport() {
            None => SocketAddr::new(source.ip(), v.port_or_default()),
            Some(_) => source,
        };
    }
    match request.top_via() {
        Ok(v) if v.rport().is_none() => SocketAddr::new(source.ip(), v.port_or_default()),
        _ => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_via_as_text_is_our_via_written() {
        for (local, transport) in [
            ("192.0.2.1:5060", Transport::Udp),
            ("192.0.2.1:5070", Transport::Tcp),
            ("[2001:db8::1]:5061", Transport::Tls),
        ] {
            let cfg = UaConfig {
                seed: 7,
                ..UaConfig::new(local.parse().unwrap(), transport, "alice")
            };
            let (mut a, mut b) = (UaCore::new(cfg.clone()), UaCore::new(cfg));
            assert!(a.ours.via_template.is_some());
            for _ in 0..3 {
                assert_eq!(a.via_text(), b.via().to_string());
            }
        }
    }
}
