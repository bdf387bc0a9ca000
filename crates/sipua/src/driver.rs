//! The driver: one tokio task owns the sans-IO [`UaCore`] and the transport. It feeds the core
//! datagrams, timers and commands, sends what the core wants sent, and routes the core's events
//! to the session tasks (by transaction and by dialog) or to whoever awaits a response. API
//! handles never touch the core: they send [`Command`]s and await the reply.
//!
//! The driver names nothing above it: what no task owns yet (a request outside any dialog, a
//! lost connection) goes up through the [`Incoming`] trait, which the user agent implements.
//!
//! One concern in one file (about 800 lines): the driver's loop and the commands it applies.

use sipua_proto::hash::{IdMap, KeyedMap};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sipua_message::{Header, HeaderName, Method, Request, Response, Transport, Uri};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::{Received, TransactionId, Transmit};
use sipua_proto::ua::{OutOfDialog, UaCore, UaError, UaEvent};
use tokio::sync::{mpsc, oneshot};

use crate::commands::{Command, SessionInput, SessionKey, Stats, SESSION_QUEUE};
use crate::error::{DnsError, DnsErrorKind, Error, TransportError, TransportErrorKind};
use crate::mailbox::{mailbox, Mailbox, MailboxReceiver};
use crate::tasks::Reply;
use crate::transport::{Net, NetEvent, OutboundProxy, Routes};

/// The layer above the driver, as the driver sees it: where a request outside any dialog goes
/// (a new session, the delegate), and who hears of a lost connection. The user agent
/// implements it on its shared state; the driver holds it weakly (gone: the agent is stopping)
/// and calls it once per such request, with no task hop or allocation of its own.
pub(crate) trait Incoming: Send + Sync {
    /// A key for a new session task, from the agent's one sequence.
    fn next_key(&self) -> SessionKey;

    /// `Allow` with the methods the API handles, for a 405.
    fn allow_header(&self) -> Header;

    /// A new INVITE (server transaction `id`): its session task is registered under `key`
    /// and reads `inputs`; `replaces` is the session an INVITE with Replaces takes the place
    /// of, `source` where the INVITE came from.
    fn invite(
        self: Arc<Self>,
        key: SessionKey,
        id: TransactionId,
        request: Request,
        inputs: MailboxReceiver<SessionInput>,
        replaces: Option<SessionKey>,
        source: Option<SocketAddr>,
    );

    /// A MESSAGE or NOTIFY outside any dialog.
    fn request(self: Arc<Self>, id: TransactionId, request: Request);

    /// A SUBSCRIBE outside any dialog.
    fn subscribe(self: Arc<Self>, id: TransactionId, request: Request);

    /// A connection we opened broke, for `error`.
    fn disconnected(&self, error: Error);
}

/// How long a graceful stop waits for BYEs and CANCELs to complete.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the responses of a client transaction go.
enum Route {
    Session(SessionKey),
    Waiter(Reply<Response>),
}

/// What a session owns in the routing tables, to clean them when it detaches.
#[derive(Default)]
struct Owned {
    transactions: Vec<TransactionId>,
    dialogs: Vec<DialogId>,
    /// Call-IDs of SUBSCRIBE or REFER requests whose NOTIFYs may create dialogs (boxed: a
    /// call has none, and the table holds a slot per call).
    #[allow(clippy::box_collection)] // 8 bytes in the slot instead of 24: the point
    call_ids: Option<Box<Vec<String>>>,
    /// When the session, parked, asked to be woken ([`Command::WakeAt`]), if it did.
    wake_at: Option<tokio::time::Instant>,
}

pub(crate) struct Driver {
    core: UaCore,
    net: Net,
    /// The layer above (see [`Incoming`]).
    up: Weak<dyn Incoming>,
    sessions: IdMap<SessionKey, (Mailbox<SessionInput>, Owned)>,
    by_tx: IdMap<TransactionId, Route>,
    by_dialog: KeyedMap<DialogId, SessionKey>,
    /// Tasks awaiting the dialogs their SUBSCRIBE or REFER creates, by Call-ID: a NOTIFY may
    /// come before the 2xx (RFC 6665 §4.1.2.4).
    by_call: KeyedMap<String, SessionKey>,
    /// Where a dialog's peer was last reached, when its target names no address.
    peers: KeyedMap<DialogId, SocketAddr>,
    /// Where each client INVITE went (the dialogs it creates inherit it).
    destinations: IdMap<TransactionId, SocketAddr>,
    stopping: Option<(tokio::time::Instant, oneshot::Sender<()>)>,
    /// Parked sessions' wake-up times, earliest first; an entry whose session has since
    /// asked for another time (its `Owned::wake_at`) is skipped. Bounded: past twice the
    /// sessions, it is rebuilt from their latest times.
    wakes: std::collections::BinaryHeap<std::cmp::Reverse<(tokio::time::Instant, SessionKey)>>,
    /// For an agent on a wildcard address without a public one: our address towards each
    /// peer, set in the core before each message it sends or answers.
    routes: Option<Arc<Routes>>,
    /// Why sending a transaction's message failed at once, until its owner hears of it.
    send_errors: IdMap<TransactionId, TransportError>,
    /// The agent's outbound proxy: what its connections check and ask for.
    outbound_proxy: Option<OutboundProxy>,
    /// With more than one listener: each one's transport and port, the primary first (what
    /// a message names is chosen by the transport that carries it).
    listeners: Vec<(Transport, u16)>,
    /// The addresses the outbound proxy was reached at (a few): an in-dialog request there
    /// keeps the proxy's name rather than its route's.
    proxy_destinations: Vec<SocketAddr>,
    /// Room for the UDP datagrams sent in one system call (kept between rounds).
    out: Vec<Transmit>,
}

/// Most addresses of the outbound proxy remembered.
const MAX_PROXY_DESTINATIONS: usize = 8;

/// Most failure reasons kept for [`Driver::send_errors`] (each is taken when the core reports
/// the failure, at once; this only bounds a pathological backlog).
const MAX_SEND_ERRORS: usize = 1024;

/// Most UDP datagrams sent in one system call (`sendmmsg`).
const SEND_BATCH: usize = 16;

/// How many queued commands the driver applies after the one its select woke for.
const COMMAND_BATCH: usize = 32;

/// The driver's clock: tokio's, so a paused runtime gives virtual time.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    /// A driver for `core` on `net`, handing up to `up`. `routes` is our address towards
    /// each peer, used when `net` listens on a wildcard address (`None` when a public address
    /// is set); `outbound_proxy` the agent's.
    pub(crate) fn new(
        core: UaCore,
        net: Net,
        up: Weak<dyn Incoming>,
        routes: Option<Arc<Routes>>,
        outbound_proxy: Option<OutboundProxy>,
    ) -> Driver {
        let routes = routes.filter(|_| net.local_addr().ip().is_unspecified());
        let listeners = match net.listeners() {
            [_] | [] => Vec::new(),
            all => all.iter().map(|(t, a)| (t.clone(), a.port())).collect(),
        };
        Driver {
            routes,
            outbound_proxy,
            proxy_destinations: Vec::new(),
            out: Vec::with_capacity(SEND_BATCH),
            listeners,
            send_errors: IdMap::default(),
            core,
            net,
            up,
            sessions: IdMap::default(),
            by_tx: IdMap::default(),
            by_dialog: KeyedMap::default(),
            by_call: KeyedMap::default(),
            peers: KeyedMap::default(),
            destinations: IdMap::default(),
            stopping: None,
            wakes: std::collections::BinaryHeap::new(),
        }
    }

    /// The loop: the only place that touches the transport and the clock.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // one timer, moved only when the core's next deadline moves (not made anew for each
        // message: that would register and cancel a timer-wheel entry every time)
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<tokio::time::Instant> = None;
        loop {
            // what the core queued, UDP datagrams in batches of one system call each
            let mut carry: Option<Transmit> = None;
            while let Some(t) = carry.take().or_else(|| self.core.poll_transmit()) {
                if t.transport != Transport::Udp || !self.net.batches_udp() {
                    self.transmit(&t).await;
                    continue;
                }
                let mut batch = std::mem::take(&mut self.out);
                batch.push(t);
                while batch.len() < SEND_BATCH {
                    match self.core.poll_transmit() {
                        Some(t) if t.transport == Transport::Udp => batch.push(t),
                        other => {
                            carry = other;
                            break;
                        }
                    }
                }
                let sent = if batch.len() > 1 {
                    let local = self.core.local_addr();
                    let sent = self.net.send_udp_batch(&batch);
                    for t in &batch[..sent] {
                        crate::trace::message(true, &t.transport, local, t.destination, &t.bytes);
                    }
                    sent
                } else {
                    0
                };
                // one at a time what the batch did not send: each error to its transaction
                for t in &batch[sent..] {
                    self.transmit(t).await;
                }
                batch.clear();
                self.out = batch;
            }
            while let Some(ev) = self.core.poll_event() {
                self.route(ev);
            }
            if let Some((deadline, _)) = &self.stopping {
                // sessions end once their BYE or CANCEL is answered; lingering
                // transactions (Timer D, J, K) only absorb retransmissions
                let idle = self.sessions.is_empty()
                    && !self.by_tx.values().any(|r| matches!(r, Route::Waiter(_)));
                if idle || tokio::time::Instant::now() >= *deadline {
                    if let Some((_, reply)) = self.stopping.take() {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
            let mut sleep = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            if let Some(std::cmp::Reverse((at, _))) = self.wakes.peek() {
                sleep = Some(sleep.map_or(*at, |s| s.min(*at)));
            }
            if let Some((deadline, _)) = &self.stopping {
                sleep = Some(sleep.map_or(*deadline, |s| s.min(*deadline)));
            }
            if let Some(at) = sleep.filter(|at| armed != Some(*at)) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            tokio::select! {
                r = std::future::poll_fn(|cx| self.net.poll_recv(cx)) => match r {
                    None => return,
                    Some(NetEvent::Message(transport, bytes, remote)) => {
                        self.received(transport, bytes, remote);
                        // the rest of a batched UDP read, without a round of the loop each;
                        // each counted against the task's budget, so that the sessions still
                        // run as often as when every datagram was one read
                        while tokio::task::coop::has_budget_remaining() {
                            let Some((bytes, remote)) = self.net.take_batched() else { break };
                            tokio::task::coop::consume_budget().await;
                            self.received(Transport::Udp, bytes, remote);
                        }
                    }
                    Some(NetEvent::SendFailed(id, why)) => self.send_failed(id, why),
                    Some(NetEvent::FlowLost(transport, remote)) => self.flow_lost(&transport, remote),
                },
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.apply(cmd);
                    // what else the sessions queued meanwhile, in order, before the next
                    // select (each round polls every source and the core's deadline); bounded
                    // so that the network is read between batches
                    for _ in 0..COMMAND_BATCH {
                        match commands.try_recv() {
                            Ok(cmd) => self.apply(cmd),
                            Err(_) => break,
                        }
                    }
                }
                _ = &mut timer, if sleep.is_some() => {
                    armed = None;
                    self.core.handle_timeout(now());
                    self.wake_due(tokio::time::Instant::now());
                }
            }
        }
    }

    /// Parked session `key` asks to be woken at `at` (instead of any earlier request).
    fn wake_at(&mut self, key: SessionKey, at: tokio::time::Instant) {
        let Some((_, owned)) = self.sessions.get_mut(&key) else {
            return;
        };
        owned.wake_at = Some(at);
        self.wakes.push(std::cmp::Reverse((at, key)));
        if self.wakes.len() > 2 * self.sessions.len() + 64 {
            // what was asked for since is all that counts: one entry per session
            self.wakes = self
                .sessions
                .iter()
                .filter_map(|(k, (_, o))| Some(std::cmp::Reverse((o.wake_at?, *k))))
                .collect();
        }
    }

    /// Wakes the parked sessions whose time has come.
    fn wake_due(&mut self, now: tokio::time::Instant) {
        while let Some(std::cmp::Reverse((at, key))) = self.wakes.peek().copied() {
            if at > now {
                break;
            }
            self.wakes.pop();
            if let Some((sink, owned)) = self.sessions.get_mut(&key) {
                if owned.wake_at == Some(at) {
                    owned.wake_at = None;
                    // a full mailbox has woken the session already
                    let _ = sink.try_send(SessionInput::Wake);
                }
            }
        }
    }

    /// Sends one message; a failure goes to its transaction.
    async fn transmit(&mut self, t: &Transmit) {
        let local = self.core.local_addr();
        crate::trace::message(true, &t.transport, local, t.destination, &t.bytes);
        if let Err(e) = self.net.send(t).await {
            if let Some(tx) = t.transaction {
                let context = format!("sending over {} to {}", t.transport, t.destination);
                let why = if e.kind() == std::io::ErrorKind::WouldBlock {
                    TransportError::new(TransportErrorKind::Overloaded, format!("{context}: {e}"))
                } else {
                    TransportError::io(context, e)
                };
                tracing::warn!(target: "sipua", "{why}");
                self.send_failed(tx, Some(why));
            }
        }
    }

    /// A message arrived: to the core.
    fn received(&mut self, transport: Transport, bytes: bytes::Bytes, remote: SocketAddr) {
        let local = self.core.local_addr();
        crate::trace::message(false, &transport, local, remote, &bytes);
        self.advertise_to(Some(remote));
        // a call that began over a connection this agent accepted is this agent's, whatever
        // its Call-ID's hash: its later requests may come over UDP (small ones after a large
        // INVITE, RFC 3261 §18.1.1)
        if transport != Transport::Udp && bytes.starts_with(b"INVITE ") {
            self.net.claim_call(&bytes);
        }
        let now = now();
        if transport == Transport::Udp && self.net.take_ran_dry() {
            // the socket was empty before this one: nothing has waited longer
            self.core.set_backlog(Some(now));
        }
        self.core.handle_datagram(
            now,
            Received {
                transport,
                remote,
                bytes,
            },
        );
    }

    /// The message of transaction `id` could not be sent: the core hears of it, and the
    /// reason (when known) waits for the transaction's owner.
    fn send_failed(&mut self, id: TransactionId, why: Option<TransportError>) {
        if let Some(why) = why {
            if self.send_errors.len() >= MAX_SEND_ERRORS {
                self.send_errors.clear();
            }
            self.send_errors.insert(id, why);
        }
        self.core.handle_transport_error(now(), id);
    }

    /// Remembers that `destination` was reached by resolving `uri`'s host, so that a TLS
    /// connection there checks that name (RFC 5922 §7.2); not for the outbound proxy, which
    /// keeps its own.
    fn name_destination(&mut self, destination: SocketAddr, uri: &Uri) {
        if self.proxy_destinations.contains(&destination) {
            return;
        }
        if let Some(sip) = uri.as_sip() {
            self.net.set_server_name(destination, &sip.host, None);
        }
    }

    /// With several listeners, names in what the core writes next the listener of
    /// `transport` (the primary's when `None` or when none listens on it).
    fn use_listener(&mut self, transport: Option<&Transport>) {
        let Some((primary, primary_port)) = self.listeners.first().cloned() else {
            return;
        };
        let (t, port) = transport
            .and_then(|t| self.listeners.iter().find(|(have, _)| have == t).cloned())
            .unwrap_or((primary, primary_port));
        self.core.set_listener(t, port);
    }

    /// Names the destination of a request outside a dialog: the outbound proxy's host (and
    /// WebSocket path) when there is one, for that is where it goes; else `target`'s host.
    fn name_out_of_dialog(&mut self, destination: SocketAddr, target: &Uri) {
        let Some(proxy) = &self.outbound_proxy else {
            return self.name_destination(destination, target);
        };
        if let Some(sip) = proxy.uri().as_sip() {
            self.net
                .set_server_name(destination, &sip.host, proxy.ws_path());
        }
        if !self.proxy_destinations.contains(&destination) {
            if self.proxy_destinations.len() >= MAX_PROXY_DESTINATIONS {
                self.proxy_destinations.remove(0);
            }
            self.proxy_destinations.push(destination);
        }
    }

    /// On a wildcard address, names in what the core writes next the address the kernel
    /// routes to `peer` from (see [`UaCore::set_local_ip`]).
    fn advertise_to(&mut self, peer: Option<SocketAddr>) {
        if let (Some(routes), Some(peer)) = (&self.routes, peer) {
            self.core.set_local_ip(routes.source_for(peer.ip()));
        }
    }

    /// [`Driver::advertise_to`] the destination of dialog `dialog`'s requests (looked up
    /// only on a wildcard address, where it matters).
    fn advertise_in(&mut self, dialog: &DialogId) {
        if self.routes.is_some() {
            self.advertise_to(self.dialog_destination(dialog));
        }
    }

    fn deliver(&mut self, key: SessionKey, input: SessionInput) -> bool {
        let Some((sink, _)) = self.sessions.get(&key) else {
            return false;
        };
        // a session that stopped reading loses inputs rather than stalling every other call
        sink.try_send(input).is_ok()
    }

    fn own_tx(&mut self, key: SessionKey, id: TransactionId) {
        self.by_tx.insert(id, Route::Session(key));
        if let Some((_, owned)) = self.sessions.get_mut(&key) {
            owned.transactions.push(id);
        }
    }

    /// Transaction `id` is over for whoever it was routed to (its final response sent or
    /// received, or the transaction failed): its route goes, and is returned; a session's
    /// list of transactions forgets it too, so that a long call's INFOs and refreshes do not
    /// pile up until it ends. The list's buffer goes when it empties: a held call keeps none.
    fn forget_tx(&mut self, id: TransactionId) -> Option<Route> {
        let route = self.by_tx.remove(&id)?;
        self.destinations.remove(&id);
        if let Route::Session(key) = &route {
            if let Some((_, owned)) = self.sessions.get_mut(key) {
                if let Some(at) = owned.transactions.iter().position(|t| *t == id) {
                    owned.transactions.swap_remove(at);
                }
                if owned.transactions.is_empty() {
                    owned.transactions = Vec::new();
                }
            }
        }
        Some(route)
    }

    fn own_dialog(&mut self, key: SessionKey, dialog: &DialogId) {
        // the 180 and the 200 of a call name the same dialog: no copies the second time
        if self.by_dialog.get(dialog) == Some(&key) {
            return;
        }
        if self.by_dialog.insert(dialog.clone(), key) != Some(key) {
            if let Some((_, owned)) = self.sessions.get_mut(&key) {
                // room for one: a call has one dialog unless it forks (a first push would
                // make room for four, 192 bytes a call)
                owned.dialogs.reserve_exact(1);
                owned.dialogs.push(dialog.clone());
            }
        }
    }

    /// Sends a core event where it belongs.
    fn route(&mut self, ev: UaEvent) {
        match ev {
            UaEvent::Request {
                id,
                request,
                dialog: Some(dialog),
            } => match self.dialog_owner(&dialog) {
                Some(key) if self.deliver(key, SessionInput::Request { id, request }) => {
                    self.own_tx(key, id);
                }
                Some(_) => self.answer(id, 503),
                None => self.answer(id, 481),
            },
            UaEvent::Request {
                id,
                request,
                dialog: None,
            } => self.incoming(id, request),
            UaEvent::Response {
                id,
                response,
                dialog,
            } => {
                let last = response.status() >= 200
                    && (response.cseq().method != Method::Invite || !response.is_success());
                match self.by_tx.get(&id) {
                    Some(Route::Session(key)) => {
                        let key = *key;
                        if let Some(d) = &dialog {
                            self.own_dialog(key, d);
                            if let Some(dest) = self.destinations.get(&id) {
                                self.peers.insert(d.clone(), *dest);
                            }
                        }
                        self.deliver(
                            key,
                            SessionInput::Response {
                                id,
                                response,
                                dialog,
                            },
                        );
                        if last {
                            self.forget_tx(id);
                        }
                    }
                    Some(Route::Waiter(_)) if response.status() >= 200 => {
                        if let Some(Route::Waiter(w)) = self.by_tx.remove(&id) {
                            let _ = w.send(Ok(response));
                        }
                    }
                    _ => {}
                }
            }
            UaEvent::Ack { dialog, request } => {
                if let Some(key) = self.by_dialog.get(&dialog).copied() {
                    self.deliver(key, SessionInput::Ack { request });
                }
            }
            UaEvent::Prack { dialog, request } => {
                if let Some(key) = self.by_dialog.get(&dialog).copied() {
                    self.deliver(key, SessionInput::Prack { request });
                }
            }
            UaEvent::PrackTimeout { id } => {
                if let Some(Route::Session(key)) = self.by_tx.get(&id) {
                    let key = *key;
                    self.deliver(key, SessionInput::PrackTimeout);
                }
            }
            UaEvent::AckTimeout { dialog } => {
                if let Some(key) = self.by_dialog.get(&dialog).copied() {
                    self.deliver(key, SessionInput::AckTimeout);
                }
            }
            UaEvent::Cancelled { id } => {
                if let Some(Route::Session(key)) = self.by_tx.get(&id) {
                    let key = *key;
                    self.deliver(key, SessionInput::Cancelled);
                }
            }
            UaEvent::Timeout { id } | UaEvent::TransportError { id } => {
                let timeout = matches!(ev, UaEvent::Timeout { .. });
                self.destinations.remove(&id);
                let reason = if timeout {
                    None
                } else {
                    Some(self.send_errors.remove(&id).unwrap_or_else(|| {
                        TransportError::new(
                            TransportErrorKind::Closed,
                            "could not send: the connection failed or was closed",
                        )
                    }))
                };
                match self.forget_tx(id) {
                    Some(Route::Session(key)) => {
                        self.deliver(
                            key,
                            SessionInput::Failed {
                                id,
                                timeout,
                                reason,
                            },
                        );
                    }
                    Some(Route::Waiter(w)) => {
                        let _ = w.send(Err(match reason {
                            None => Error::Timeout,
                            Some(r) => Error::Transport(r),
                        }));
                    }
                    None => {}
                }
            }
        }
    }

    /// A connection we opened broke: the delegate hears of it (RFC 5626 §4.4 leaves the
    /// recovery, a new flow and a new registration, to the user agent's user).
    fn flow_lost(&self, transport: &Transport, remote: SocketAddr) {
        if self.stopping.is_some() {
            return;
        }
        if let Some(up) = self.up.upgrade() {
            up.disconnected(Error::Transport(TransportError::new(
                TransportErrorKind::Closed,
                format!("the {transport} connection to {remote} was lost"),
            )));
        }
    }

    /// The task a dialog belongs to; a new dialog of a SUBSCRIBE or REFER (made by a NOTIFY)
    /// becomes its task's.
    fn dialog_owner(&mut self, dialog: &DialogId) -> Option<SessionKey> {
        if let Some(key) = self.by_dialog.get(dialog) {
            return Some(*key);
        }
        let key = *self.by_call.get(&*dialog.call_id)?;
        self.own_dialog(key, dialog);
        Some(key)
    }

    /// A request outside any dialog.
    fn incoming(&mut self, id: TransactionId, request: Request) {
        let Some(up) = self.up.upgrade() else {
            self.answer(id, 503);
            return;
        };
        if self.stopping.is_some() {
            self.answer(id, 503);
            return;
        }
        match request.method() {
            Method::Invite => {
                let replaces = if request.headers().get(&HeaderName::Replaces).is_some() {
                    match self.replaced_session(&request) {
                        Ok(k) => Some(k),
                        Err(status) => return self.answer(id, status),
                    }
                } else {
                    None
                };
                let key = up.next_key();
                let (sink, inputs) = mailbox(SESSION_QUEUE);
                self.sessions.insert(key, (sink, Owned::default()));
                self.own_tx(key, id);
                let source = self.core.request_source(id);
                up.invite(key, id, request, inputs, replaces, source);
            }
            Method::Message | Method::Notify => up.request(id, request),
            Method::Subscribe => up.subscribe(id, request),
            // REFER outside a dialog (RFC 3515 allows it) would place calls for whoever
            // asks: declined, as an unhandled REFER inside a call is
            Method::Refer => self.answer(id, 603),
            _ => self.answer(id, 405),
        }
    }

    /// The session an INVITE with Replaces takes the place of: the core matches the
    /// dialog (RFC 3891 §3, or the status to refuse with), we know its session.
    fn replaced_session(&self, request: &Request) -> Result<SessionKey, u16> {
        let did = self.core.replaced_dialog(request)?.ok_or(400u16)?;
        self.by_dialog.get(&did).copied().ok_or(481)
    }

    fn answer(&mut self, id: TransactionId, status: u16) {
        let t = now();
        self.advertise_to(self.core.request_source(id));
        if let Ok(mut r) = self.core.response(id, status) {
            if status == 405 {
                if let Some(up) = self.up.upgrade() {
                    let _ = r.push_header(up.allow_header());
                }
            }
            let _ = self.core.respond(t, id, r);
        }
    }

    /// The next hop of an in-dialog request: the dialog's route or target when it names an
    /// address, else where its peer was last reached.
    fn dialog_destination(&self, dialog: &DialogId) -> Option<SocketAddr> {
        self.core
            .dialog_destination(dialog)
            .or_else(|| self.peers.get(dialog).copied())
    }

    /// Marks a just-started INVITE so that the session acknowledges its 2xx itself (with the
    /// answer, when the INVITE carried no offer).
    fn deferring_ack(
        &mut self,
        started: Result<TransactionId, UaError>,
        defer_ack: bool,
    ) -> Result<TransactionId, UaError> {
        let id = started?;
        if defer_ack {
            self.core.defer_ack(id)?;
        }
        Ok(id)
    }

    fn apply(&mut self, cmd: Command) {
        let t = now();
        match cmd {
            Command::Attach { key, sink } => {
                self.sessions.insert(key, (sink, Owned::default()));
            }
            Command::WakeAt { key, at } => self.wake_at(key, at),
            Command::Detach { key } => {
                if let Some((_, owned)) = self.sessions.remove(&key) {
                    for id in owned.transactions {
                        if matches!(self.by_tx.get(&id), Some(Route::Session(k)) if *k == key) {
                            self.by_tx.remove(&id);
                            self.destinations.remove(&id);
                        }
                    }
                    for c in owned.call_ids.into_iter().flat_map(|c| *c) {
                        if self.by_call.get(&c) == Some(&key) {
                            self.by_call.remove(&c);
                        }
                    }
                    for d in owned.dialogs {
                        if self.by_dialog.get(&d) == Some(&key) {
                            self.by_dialog.remove(&d);
                            self.peers.remove(&d);
                        }
                    }
                }
            }
            Command::Invite {
                key,
                target,
                destination,
                transport,
                from,
                headers,
                body,
                defer_ack,
                reply,
            } => {
                self.use_listener(transport.as_ref());
                self.advertise_to(Some(destination));
                self.name_out_of_dialog(destination, &target);
                let opts = OutOfDialog {
                    transport,
                    from: from.map(|f| *f),
                    headers,
                    body,
                    ..OutOfDialog::default()
                };
                let r = self
                    .core
                    .send_request_with(t, Method::Invite, target, destination, opts);
                let r = self.deferring_ack(r, defer_ack);
                if let Ok(id) = r {
                    self.own_tx(key, id);
                    self.destinations.insert(id, destination);
                }
                let r = r.map(|id| (id, self.core.sent_invite(id).cloned().map(Arc::new)));
                let _ = reply.send(r.map_err(Error::from));
            }
            Command::Respond {
                key,
                id,
                status,
                reason,
                headers,
                body,
                reliable,
                reply,
            } => {
                if !self.listeners.is_empty() {
                    let t = self.core.request_transport(id).cloned();
                    self.use_listener(t.as_ref());
                }
                self.advertise_to(self.core.request_source(id));
                let body = body.as_ref().map(|(ct, b)| (ct, &b[..]));
                let r = self
                    .core
                    .response_full(id, status, reason.as_deref(), headers, body)
                    .and_then(|resp| {
                        if reliable {
                            self.core.respond_reliably(t, id, resp)
                        } else {
                            self.core.respond(t, id, resp)
                        }
                    });
                if let (Some(key), Ok(Some(d))) = (key, &r) {
                    self.own_dialog(key, d);
                }
                // a final response ends the server transaction for the session: what the
                // core does after it (2xx retransmissions, the ACK) goes by the dialog
                if status >= 200 && r.is_ok() {
                    self.forget_tx(id);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r.map_err(Error::from));
                }
            }
            Command::InDialog {
                key,
                dialog,
                method,
                headers,
                body,
                defer_ack,
                reply,
            } => {
                // the next hop is kept written: parsed once here, for the address, the
                // transport and the name
                let route = self.core.dialog_route(&dialog);
                let destination = route
                    .as_ref()
                    .and_then(|r| r.destination)
                    .or_else(|| self.peers.get(&dialog).copied());
                let Some(destination) = destination else {
                    let _ = reply.send(Err(Error::Dns(DnsError::new(
                        DnsErrorKind::NoTarget,
                        format!("the remote target of dialog {}", dialog.call_id),
                    ))));
                    return;
                };
                let (transport, named) = route.map_or((None, false), |r| (r.transport, r.named));
                if !self.listeners.is_empty() {
                    // the dialog's connection, else what its next hop asks for
                    let flow = self
                        .core
                        .dialog(&dialog)
                        .and_then(|d| d.flow.as_ref().map(|f| f.transport.clone()));
                    self.use_listener(flow.or_else(|| transport.clone()).as_ref());
                }
                self.advertise_to(Some(destination));
                if named {
                    // a TLS or WSS connection to it is named by the hop's host
                    let hop = self
                        .core
                        .dialog(&dialog)
                        .and_then(|d| d.next_hop().ok().map(|h| h.into_owned()));
                    if let Some(hop) = hop {
                        self.name_destination(destination, &hop);
                    }
                }
                let r = self.core.request_in_dialog_over(
                    t,
                    &dialog,
                    method,
                    destination,
                    transport,
                    headers,
                    body,
                );
                let r = self.deferring_ack(r, defer_ack);
                if let Ok(id) = r {
                    self.own_tx(key, id);
                }
                let _ = reply.send(r.map_err(Error::from));
            }
            Command::Ack {
                dialog,
                seq,
                body,
                reply,
            } => {
                self.advertise_in(&dialog);
                let _ = reply.send(self.core.ack(t, &dialog, seq, body).map_err(Error::from));
            }
            Command::Prack {
                dialog,
                body,
                reply,
            } => {
                self.advertise_in(&dialog);
                let sent = self.core.prack(t, &dialog, body).map(drop);
                let _ = reply.send(sent.map_err(Error::from));
            }
            Command::Cancel { id, reasons, reply } => {
                let _ = reply.send(self.core.cancel(t, id, reasons).map_err(Error::from));
            }
            Command::Request {
                method,
                target,
                destination,
                opts,
                reply,
            } => {
                self.use_listener(opts.transport.as_ref());
                self.advertise_to(Some(destination));
                self.name_out_of_dialog(destination, &target);
                match self
                    .core
                    .send_request_with(t, method, target, destination, *opts)
                {
                    Ok(id) => {
                        self.by_tx.insert(id, Route::Waiter(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::RequestFor {
                key,
                method,
                target,
                destination,
                opts,
                reply,
            } => {
                self.use_listener(opts.transport.as_ref());
                self.advertise_to(Some(destination));
                self.name_out_of_dialog(destination, &target);
                let call_id = opts.call_id.clone();
                let creates = matches!(method, Method::Subscribe | Method::Refer);
                let r = self
                    .core
                    .send_request_with(t, method, target, destination, *opts);
                if let Ok(id) = r {
                    self.own_tx(key, id);
                    self.destinations.insert(id, destination);
                    if let (true, Some(c)) = (creates, call_id) {
                        self.by_call.insert(c.clone(), key);
                        if let Some((_, owned)) = self.sessions.get_mut(&key) {
                            owned.call_ids.get_or_insert_with(Default::default).push(c);
                        }
                    }
                }
                let _ = reply.send(r.map_err(Error::from));
            }
            Command::Replaced { key } => {
                self.deliver(key, SessionInput::Replaced);
            }
            Command::DialogInfo { dialog, reply } => {
                let _ = reply.send(Ok(self.core.dialog(&dialog).cloned()));
            }
            Command::EndDialog { dialog } => {
                self.core.end_dialog(&dialog);
                self.by_dialog.remove(&dialog);
                self.peers.remove(&dialog);
            }
            Command::Outbound(on) => self.core.set_outbound(on),
            Command::Draining(on) => self.core.set_draining(on),
            Command::Stats { reply } => {
                let _ = reply.send(Stats {
                    sessions: self.sessions.len(),
                    dialogs: self.core.dialogs(),
                    transactions: self.core.transactions(),
                    connections: self.net.connections(),
                    routes: self.by_tx.len(),
                    shed: self.core.shed(),
                    overload_cut: self.core.overload_cut(now()),
                    held_back: self.core.held_back(),
                });
            }
            Command::Stop { reply } => {
                for (sink, _) in self.sessions.values() {
                    let _ = sink.try_send(SessionInput::Shutdown);
                }
                self.stopping = Some((tokio::time::Instant::now() + STOP_GRACE, reply));
            }
        }
    }
}

/// Starts the driver task for `core` on `net`, taking `commands` and handing up to `up` (see
/// [`Driver::new`] for `routes` and `outbound_proxy`).
pub(crate) fn spawn(
    core: UaCore,
    net: Net,
    up: Weak<dyn Incoming>,
    routes: Option<Arc<Routes>>,
    outbound_proxy: Option<OutboundProxy>,
    commands: mpsc::Receiver<Command>,
) -> tokio::task::JoinHandle<()> {
    use tracing::Instrument;
    let span = tracing::info_span!(target: "sipua", "user_agent", local = %core.local_addr());
    let driver = Driver::new(core, net, up, routes, outbound_proxy);
    tokio::spawn(driver.run(commands).instrument(span))
}
