//! The task behind each session: it owns the session's state, dialog and media handler, takes
//! commands from the handles and inputs from the driver, and publishes state changes.

use sipua_proto::hash::IdMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipua_message::header::Expires;
use sipua_message::{Header, HeaderName, Method, Request, Response, Uri};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::TransactionId;
use sipua_proto::rng::Rng;
use sipua_proto::session::{
    backoff, Message, Negotiation, OfferAnswer, OfferAnswerError, Received,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::refer::{ReferNotification, ReferTarget, Referral, Referrer, REFER_QUEUE};
use super::{
    attach, DelegateSlot, EndReason, Invitation, InvitationAcceptOptions,
    InvitationProgressOptions, InvitationRejectOptions, InviterCancelOptions, InviterInviteOptions,
    InviterOptions, Reply, RequestOptions, Session, SessionCommand, SessionDelegate, SessionInfo,
    SessionInviteOptions, SessionReferOptions, SessionState, SessionUpdateOptions,
};
use crate::body::{body_of, content_type_of};
use crate::commands::{Body, Command, SessionInput, SessionKey};
use crate::error::Error;
use crate::mailbox::{mailbox, Mailbox, MailboxReceiver, WeakMailbox};
use crate::sdh::{
    BodyAndContentType, SessionContext, SessionDescriptionHandler,
    SessionDescriptionHandlerModifier, SessionDescriptionHandlerOptions,
};
use crate::user_agent::Shared;

/// Commands queued from handles to one session.
const COMMAND_QUEUE: usize = 32;

/// The caller's side of the initial INVITE.
struct Uac {
    target: Uri,
    options: InviterOptions,
    invite: Option<TransactionId>,
    /// The INVITE carried our offer (a fact of the request; where the negotiation stands
    /// is [`Task::oa`]'s).
    offered: bool,
    /// The early dialog whose answer (in a 1xx) was applied for early media.
    early: Option<DialogId>,
    cancelled: bool,
    /// What the INVITE was sent with, to send it again after a 422 (RFC 4028 §7.4).
    resend: Option<Box<Resend>>,
}

/// An initial INVITE as sent, kept until its final response.
struct Resend {
    target: Uri,
    from: Option<sipua_message::NameAddr>,
    headers: Vec<Header>,
    body: Body,
    defer_ack: bool,
    /// Already sent again once after a 422.
    retried: bool,
}

/// The callee's side of the initial INVITE.
struct Uas {
    id: TransactionId,
    request: Arc<Request>,
    /// A final response has been sent.
    finished: bool,
    /// The INVITE's offer has been given to the media handler.
    offer_applied: bool,
    no_answer_at: Instant,
    expires_at: Option<Instant>,
    /// The session an INVITE with Replaces takes the place of once answered (RFC 3891).
    replaces: Option<SessionKey>,
}

enum Role {
    Uac(Box<Uac>),
    Uas(Box<Uas>),
}

/// Our UPDATE awaiting its final response (whether it offered is [`Task::oa`]'s
/// `LocalOffer(Update)`).
struct Update {
    id: TransactionId,
    reply: Reply<()>,
    /// The media options of its offer.
    options: Option<SessionDescriptionHandlerOptions>,
}

/// A re-INVITE to send again after glare: when, its options, who waits, attempts so far.
type Retry = (Instant, SessionInviteOptions, Reply<()>, u8);

/// A re-offer asked for while our 2xx's offer waits for the ACK that answers it: it goes
/// once the ACK has come (RFC 3264 §4: no new offer before the answer).
enum AfterAck {
    ReInvite(SessionInviteOptions, Reply<()>),
    Update(SessionUpdateOptions, Reply<()>),
}

/// Our re-INVITE waiting for its final response (whether it offered is [`Task::oa`]'s
/// `LocalOffer(Invite)`, else `AwaitingOffer`).
struct ReInvite {
    id: TransactionId,
    reply: Reply<()>,
    options: SessionInviteOptions,
    attempts: u8,
}

struct Task {
    key: SessionKey,
    /// The session's span (the task runs in it): the dialog's Call-ID and tags are
    /// recorded into it once known.
    span: tracing::Span,
    shared: Arc<Shared>,
    state: watch::Sender<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    commands: MailboxReceiver<Box<SessionCommand>>,
    inputs: MailboxReceiver<SessionInput>,
    handles_gone: bool,
    sdh: Option<Box<dyn SessionDescriptionHandler>>,
    sdh_options: SessionDescriptionHandlerOptions,
    /// The media options of our last accepted offer (hold, say): our answers to the peer's
    /// offers keep to them, so a peer's re-INVITE does not take a call off hold. `None`:
    /// the session's own.
    answer_options: Option<SessionDescriptionHandlerOptions>,
    modifiers: Vec<SessionDescriptionHandlerModifier>,
    delegate: DelegateSlot,
    dialog: Option<DialogId>,
    role: Role,
    /// Non-INVITE requests we sent, by transaction, with whoever waits for the answer.
    requests: IdMap<TransactionId, Option<Reply<Response>>>,
    reinvite: Option<Box<ReInvite>>,
    /// Our UPDATE in progress (RFC 3311).
    update: Option<Update>,
    /// The session timer, once negotiated (RFC 4028).
    timer: Option<super::timer::Running>,
    /// The peer's Allow lists UPDATE: refreshes use it rather than re-INVITE.
    peer_allows_update: bool,
    /// A re-INVITE to retry after glare, and when.
    retry: Option<Box<Retry>>,
    /// Our 2xx waits for its ACK (a BYE must wait too, RFC 3261 §15).
    awaiting_ack: bool,
    /// The peer's address (where the INVITE came from, or where ours goes), when known:
    /// on a wildcard address, the media handler names our address towards it.
    peer: Option<std::net::SocketAddr>,
    /// Where the session's offer/answer stands (RFC 3264, RFC 6337): which exchange is under
    /// way and which message may carry what. Every body sent or taken goes through it.
    oa: Negotiation,
    /// The last description we sent: a 2xx (or 1xx) after the exchange completed repeats
    /// it rather than asking the handler again (which would make a new offer).
    last_local: Option<BodyAndContentType>,
    /// A BYE asked for while our 2xx waits for its ACK.
    bye_after_ack: Option<Box<(RequestOptions, Reply<Response>)>>,
    /// A re-offer asked for while our 2xx's offer waits for its answer in the ACK.
    offer_after_ack: Option<Box<AfterAck>>,
    /// A reliable provisional response of ours awaits its PRACK (RFC 3262); the progress
    /// call that sent it resolves then.
    awaiting_prack: Option<Reply<()>>,
    rng: Rng,
    /// Our own command channel, weakly: for the referrals we hand out.
    me: Option<WeakMailbox<Box<SessionCommand>>>,
    /// Our REFERs' implicit subscriptions: the REFER's transaction, its CSeq once answered,
    /// and where its progress goes.
    refer_subs: Vec<(TransactionId, Option<u32>, mpsc::Sender<ReferNotification>)>,
    /// Our REFERs awaiting their final response.
    refer_waiters: IdMap<TransactionId, (Reply<Referrer>, mpsc::Receiver<ReferNotification>)>,
}

type Channels = (
    Mailbox<Box<SessionCommand>>,
    MailboxReceiver<Box<SessionCommand>>,
    watch::Sender<SessionState>,
    Arc<Mutex<SessionInfo>>,
    DelegateSlot,
);

fn new_channels(delegate: Option<Arc<dyn SessionDelegate>>) -> Channels {
    let (ctx, crx) = mailbox(COMMAND_QUEUE);
    let (stx, _) = watch::channel(SessionState::Initial);
    let info = Arc::new(Mutex::new(SessionInfo::default()));
    (ctx, crx, stx, info, Arc::new(Mutex::new(delegate)))
}

/// Starts the task of an outgoing call.
pub(crate) fn spawn_inviter(
    shared: Arc<Shared>,
    target: Uri,
    options: InviterOptions,
) -> Result<Session, Error> {
    if target.as_sip().is_none() {
        return Err(Error::InvalidArgument(format!(
            "{target}: only sip: and sips: targets can be called"
        )));
    }
    let key = shared.next_key();
    let inputs = attach(&shared, key)?;
    let (ctx, crx, stx, info, slot) = new_channels(options.delegate.clone());
    {
        let mut i = info.lock().unwrap_or_else(|e| e.into_inner());
        let mut local = sipua_message::NameAddr::new(shared.aor());
        local.display = shared.options.display_name.clone();
        i.local_identity = Some(Box::new(local));
        i.remote_identity = Some(Box::new(sipua_message::NameAddr::new(target.clone())));
    }
    let me = Some(ctx.downgrade());
    let session = Session::new(ctx, stx.subscribe(), info.clone(), slot.clone());
    let task = Task {
        key,
        me,
        rng: Rng::new(key ^ shared.local.port() as u64 ^ 0x5eed),
        sdh_options: options.session_description_handler_options.clone(),
        modifiers: options.session_description_handler_modifiers.clone(),
        ..Task::blank(
            shared,
            stx,
            info,
            crx,
            inputs,
            slot,
            Role::Uac(Box::new(Uac {
                target,
                options,
                invite: None,
                offered: false,
                early: None,
                cancelled: false,
                resend: None,
            })),
        )
    };
    let span = tracing::info_span!(
        target: "sipua",
        "session",
        key,
        role = "caller",
        call_id = tracing::field::Empty,
        local_tag = tracing::field::Empty,
        remote_tag = tracing::field::Empty,
    );
    let mut task = task;
    task.span = span.clone();
    tokio::spawn(tracing::Instrument::instrument(
        Box::pin(Box::new(task).run(None)),
        span,
    ));
    Ok(session)
}

/// Names the dialog in the session's span (its Call-ID and both tags), once it exists.
fn record_dialog(span: &tracing::Span, d: &DialogId) {
    if !span.is_disabled() {
        let cut = |s: &str| s.get(..80).unwrap_or(s).to_owned();
        span.record("call_id", cut(&d.call_id));
        span.record("local_tag", cut(&d.local_tag));
        span.record("remote_tag", cut(&d.remote_tag));
    }
}

/// Starts the task of an incoming call; the driver has already attached `key`.
pub(crate) fn spawn_invitation(
    shared: Arc<Shared>,
    key: SessionKey,
    id: TransactionId,
    request: Request,
    inputs: MailboxReceiver<SessionInput>,
    replaces: Option<SessionKey>,
    source: Option<std::net::SocketAddr>,
) {
    let (ctx, crx, stx, info, slot) = new_channels(None);
    let request = Arc::new(request);
    {
        let mut i = info.lock().unwrap_or_else(|e| e.into_inner());
        // the identities are read from the INVITE when asked (most servers never ask)
        i.invite = Some(request.clone());
        // RFC 3325: the identity a trusted proxy asserted
        i.asserted_identity = request
            .typed::<sipua_message::header::PAssertedIdentity>()
            .and_then(Result::ok)
            .map(|p| Box::new(p.0));
    }
    let me = Some(ctx.downgrade());
    let call_id_of = request.clone();
    let call_id = call_id_of.call_id();
    let invitation = Invitation {
        session: Session::new(ctx, stx.subscribe(), info.clone(), slot.clone()),
        request: request.clone(),
    };
    let now = Instant::now();
    let expires_at = request
        .typed::<Expires>()
        .and_then(Result::ok)
        .map(|e| now + Duration::from_secs(u64::from(e.0)));
    let no_answer_at = now + shared.options.no_answer_timeout;
    let offered = !request.body_bytes().is_empty();
    let task = Task {
        key,
        me,
        rng: Rng::new(key ^ shared.local.port() as u64 ^ 0xca11),
        peer: source,
        ..Task::blank(
            shared,
            stx,
            info,
            crx,
            inputs,
            slot,
            Role::Uas(Box::new(Uas {
                id,
                request,
                finished: false,
                offer_applied: false,
                no_answer_at,
                expires_at,
                replaces,
            })),
        )
    };
    // boxed: the future is about 3 KB, and a task cell holding it inline is moved whole
    // through spawn and rewritten whole at each stage change (several such copies a call)
    let span = tracing::info_span!(
        target: "sipua",
        "session",
        key,
        role = "callee",
        call_id = call_id.get(..80).unwrap_or(call_id),
        local_tag = tracing::field::Empty,
        remote_tag = tracing::field::Empty,
    );
    let mut task = task;
    task.span = span.clone();
    // the INVITE's offer, or the offer it asks of us (RFC 3261 §13.3.1); a fresh machine
    // takes either
    let _ = if offered {
        task.oa.receive(Message::Invite).map(|_| ())
    } else {
        task.oa.receive_invite_without_offer()
    };
    tokio::spawn(tracing::Instrument::instrument(
        Box::pin(Box::new(task).run(Some(invitation))),
        span,
    ));
}

impl Task {
    /// A task in its first state, with everything a role does not set; the role and the
    /// delegate's slot come in (a placeholder made only to be replaced would cost three
    /// allocations a call).
    fn blank(
        shared: Arc<Shared>,
        state: watch::Sender<SessionState>,
        info: Arc<Mutex<SessionInfo>>,
        commands: MailboxReceiver<Box<SessionCommand>>,
        inputs: MailboxReceiver<SessionInput>,
        delegate: Arc<Mutex<Option<Arc<dyn SessionDelegate>>>>,
        role: Role,
    ) -> Task {
        Task {
            key: 0,
            span: tracing::Span::none(),
            shared,
            state,
            info,
            commands,
            inputs,
            handles_gone: false,
            sdh: None,
            sdh_options: SessionDescriptionHandlerOptions::default(),
            answer_options: None,
            modifiers: Vec::new(),
            delegate,
            dialog: None,
            role,
            requests: IdMap::default(),
            reinvite: None,
            retry: None,
            awaiting_ack: false,
            peer: None,
            oa: Negotiation::new(),
            last_local: None,
            bye_after_ack: None,
            offer_after_ack: None,
            update: None,
            timer: None,
            peer_allows_update: false,
            awaiting_prack: None,
            rng: Rng::new(0),
            me: None,
            refer_subs: Vec::new(),
            refer_waiters: IdMap::default(),
        }
    }

    fn delegate(&self) -> Option<Arc<dyn SessionDelegate>> {
        self.delegate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn current(&self) -> SessionState {
        *self.state.borrow()
    }

    fn info(&self) -> std::sync::MutexGuard<'_, SessionInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `to` if the machine allows it (forward only).
    fn transition(&mut self, to: SessionState) {
        if to > self.current() {
            tracing::debug!(target: "sipua", state = ?to, "session state");
            self.state.send_replace(to);
        }
    }

    fn terminate(&mut self, reason: EndReason) {
        if self.current() == SessionState::Terminated {
            return;
        }
        self.info().end.get_or_insert(reason);
        self.transition(SessionState::Terminated);
    }

    fn done(&self) -> bool {
        self.current() == SessionState::Terminated
            && self.requests.is_empty()
            && self.reinvite.is_none()
    }

    fn invalid<T>(&self, action: &'static str) -> Result<T, Error> {
        if self.current() == SessionState::Terminated {
            return Err(Error::SessionTerminated);
        }
        Err(Error::StateTransition {
            action,
            state: self.current(),
        })
    }

    /// Runs the session to its end. The task comes boxed: an `async fn` keeps its receiver
    /// twice (captured, then moved into the body), and the future is copied whole into its
    /// own box at spawn, so a 544-byte receiver inline would cost about 1 KB a copy.
    async fn run(mut self: Box<Self>, invitation: Option<Invitation>) {
        if let Some(inv) = invitation {
            // hand the only handle over: when the application drops it, we dispose
            self.shared.offer_invitation(inv);
        }
        // Each handler's future is boxed while it runs: a held call then keeps only this loop's
        // small state (a few hundred bytes) instead of room for the largest handler (about
        // 3 KB). One allocation per input, command or timer is the price.
        // one timer, moved only when the deadline moves (a new Sleep per input would register
        // and cancel a timer-wheel entry each time)
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed = None;
        while !self.done() {
            let deadline = self.deadline();
            if let Some(at) = deadline.filter(|at| armed != Some(*at)) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(i) => Box::pin(self.on_input(i)).await,
                    None => {
                        self.terminate(EndReason::TransportError);
                        break;
                    }
                },
                cmd = self.commands.recv(), if !self.handles_gone => match cmd {
                    Some(c) => Box::pin(self.on_command(*c)).await,
                    None => {
                        self.handles_gone = true;
                        let _ = Box::pin(self.dispose()).await;
                    }
                },
                _ = &mut timer, if deadline.is_some() => {
                    armed = None;
                    Box::pin(self.on_timer()).await;
                }
            }
        }
        if let Some(sdh) = self.sdh.as_mut() {
            sdh.close();
        }
        let _ = Box::pin(self.shared.commands.send(Command::Detach { key: self.key })).await;
    }

    fn deadline(&self) -> Option<Instant> {
        let retry = self.retry.as_ref().map(|r| r.0);
        let answer = match &self.role {
            Role::Uas(u) if !u.finished => Some(match u.expires_at {
                Some(e) => e.min(u.no_answer_at),
                None => u.no_answer_at,
            }),
            _ => None,
        };
        let timer = self
            .timer
            .filter(|_| self.current() == SessionState::Established)
            .map(|t| t.at);
        [retry, answer, timer].into_iter().flatten().min()
    }

    /// The session timer fired: refresh (UPDATE without a body when the peer allows it,
    /// else a re-INVITE), or end the session the peer stopped refreshing (RFC 4028 §10).
    async fn on_session_timer(&mut self, now: Instant) {
        let Some(t) = self.timer else { return };
        if t.at > now || self.current() != SessionState::Established {
            return;
        }
        if !t.we_refresh {
            self.timer = None;
            self.info().end.get_or_insert(EndReason::SessionExpired);
            if let Some(d) = self.dialog.clone() {
                self.bye_dialog(&d).await;
            }
            self.terminate(EndReason::SessionExpired);
            return;
        }
        if self.reinvite.is_some()
            || self.update.is_some()
            || self.retry.is_some()
            || !self.oa.can_offer()
        {
            // an exchange is under way (an offer of ours refreshes the session when
            // answered): try again shortly
            self.timer = Some(super::timer::Running {
                at: now + Duration::from_secs(1),
                ..t
            });
            return;
        }
        let headers = vec![
            t.refresh_header(),
            Header::new(HeaderName::Supported, "timer"),
        ];
        let (reply, _) = tokio::sync::oneshot::channel();
        if self.peer_allows_update {
            let o = SessionUpdateOptions {
                extra_headers: headers,
                without_sdp: true,
                ..Default::default()
            };
            self.send_update(o, reply).await;
        } else {
            let o = SessionInviteOptions {
                extra_headers: headers,
                ..Default::default()
            };
            self.start_reinvite(o, reply, 0).await;
        }
        self.timer = Some(super::timer::Running::start(t.interval, true, now));
    }

    /// A re-INVITE or UPDATE from the peer refreshed the session: it refreshes from now on
    /// if it supports timers, else we still do; the header goes into our 2xx.
    fn refreshed_by_peer(&mut self, request: &Request) -> Option<Header> {
        let t = self.timer?;
        let (interval, we_refresh, header) = super::timer::answer_refresh(request, t.interval);
        self.timer = Some(super::timer::Running::start(
            interval,
            we_refresh,
            Instant::now(),
        ));
        Some(header)
    }

    /// Our re-INVITE or UPDATE was answered 2xx: the session is refreshed.
    fn refreshed_by_us(&mut self, response: &Response) {
        let Some(t) = self.timer else { return };
        let (interval, we) = super::timer::from_answer(response).unwrap_or((t.interval, true));
        self.timer = Some(super::timer::Running::start(interval, we, Instant::now()));
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        self.on_session_timer(now).await;
        if self.retry.as_ref().is_some_and(|r| r.0 <= now) {
            if let Some((_, options, reply, attempts)) = self.retry.take().map(|b| *b) {
                self.start_reinvite(options, reply, attempts).await;
            }
        }
        let timed_out = match &self.role {
            Role::Uas(u) if !u.finished => {
                if u.expires_at.is_some_and(|e| e <= now) {
                    Some(487) // the INVITE's Expires passed (RFC 3261 §13.3.1)
                } else if u.no_answer_at <= now {
                    Some(480)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(status) = timed_out {
            let _ = self
                .reject(InvitationRejectOptions {
                    status_code: Some(status),
                    ..Default::default()
                })
                .await;
        }
    }

    // ---- talking to the driver ----

    /// A `Warning` (RFC 3261 §20.43, code 399) saying why the media handler refused an
    /// offer, for the 488: the peer's logs (and a person reading them) learn the reason.
    fn warning(&self, e: &Error) -> Header {
        let text = match e {
            Error::SessionDescriptionHandler(h) => h.to_string(),
            other => other.to_string(),
        };
        let text: String = text
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| if c == '"' { '\'' } else { c })
            .filter(|&c| c != '\\')
            .take(200)
            .collect();
        let agent = self.shared.advertised_ip(self.peer);
        let agent = match agent {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        Header::new(HeaderName::Warning, format!("399 {agent} \"{text}\""))
    }

    async fn respond(
        &mut self,
        id: TransactionId,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
        body: Option<BodyAndContentType>,
    ) -> Result<Option<DialogId>, Error> {
        self.respond_with(id, status, reason, headers, body, false)
            .await
    }

    async fn respond_with(
        &mut self,
        id: TransactionId,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
        body: Option<BodyAndContentType>,
        reliable: bool,
    ) -> Result<Option<DialogId>, Error> {
        let body = to_body(body)?;
        let key = self.key;
        let mut headers = headers;
        if status >= 200 {
            headers.push(self.shared.server_line.clone());
        }
        let respond = |reply| Command::Respond {
            key: Some(key),
            id,
            status,
            reason,
            headers,
            body,
            reliable,
            reply,
        };
        if status < 200 && !reliable {
            // an unreliable provisional response is sent without waiting for the driver: the
            // session needs no dialog id from it, and the core refuses it only once the
            // INVITE has its final response, which this task sent itself or hears of as an
            // input (a CANCEL answered with 487)
            self.shared
                .commands
                .send(respond(None))
                .await
                .map_err(|_| Error::Stopped)?;
            return Ok(None);
        }
        self.shared.ask(|reply| respond(Some(reply))).await
    }

    /// Answers `id` without waiting for the outcome: for a response whose failure would
    /// change nothing (the 200 to a BYE, after which the session ends anyway).
    /// `request` as an object for the delegate to answer (200 if it does not).
    fn incoming(&self, id: TransactionId, request: Request) -> crate::IncomingRequest {
        crate::IncomingRequest::new(self.shared.clone(), id, request, 200)
    }

    async fn respond_and_forget(&mut self, id: TransactionId, status: u16) {
        let mut headers = Vec::new();
        if status >= 200 {
            headers.push(self.shared.server_line.clone());
        }
        let _ = self
            .shared
            .commands
            .send(Command::plain_response(
                Some(self.key),
                id,
                status,
                headers,
                None,
            ))
            .await;
    }

    async fn send_in_dialog(
        &mut self,
        dialog: &DialogId,
        method: Method,
        options: RequestOptions,
        defer_ack: bool,
    ) -> Result<TransactionId, Error> {
        let body = to_body(options.body)?;
        let (key, dialog) = (self.key, dialog.clone());
        let headers = options.extra_headers;
        self.shared
            .ask(|reply| Command::InDialog {
                key,
                dialog,
                method,
                headers,
                body,
                defer_ack,
                reply,
            })
            .await
    }

    /// Sends BYE in `dialog` and forgets its answer (forks, failed negotiations).
    async fn bye_dialog(&mut self, dialog: &DialogId) {
        if let Ok(id) = self
            .send_in_dialog(dialog, Method::Bye, RequestOptions::default(), false)
            .await
        {
            self.requests.insert(id, None);
        }
    }

    async fn ack(&mut self, dialog: &DialogId, seq: u32, body: Option<BodyAndContentType>) {
        let Ok(body) = to_body(body) else { return };
        let dialog = dialog.clone();
        let _ = self
            .shared
            .ask(|reply| Command::Ack {
                dialog,
                seq,
                body,
                reply,
            })
            .await;
    }

    // ---- media ----

    /// Whether this session's signalling is TLS or WSS to the next hop (see
    /// [`SessionContext::secure_signalling`]): the way a callee's INVITE came (its top Via),
    /// or the way a caller's goes.
    fn secure_signalling(&self) -> bool {
        match &self.role {
            Role::Uas(uas) => matches!(
                uas.request.top_via_transport(),
                Some(sipua_message::Transport::Tls | sipua_message::Transport::Wss)
            ),
            Role::Uac(uac) => self.shared.secure_towards(&uac.target),
        }
    }

    fn ensure_sdh(&mut self) -> Result<&mut Box<dyn SessionDescriptionHandler>, Error> {
        if self.sdh.is_none() {
            let ctx = SessionContext {
                local_ip: self.shared.advertised_ip(self.peer),
                bind_ip: self.shared.local.ip(),
                id: {
                    // the address as text was made once; a SocketAddr's Display is slow
                    let mut id = String::with_capacity(self.shared.local_text.len() + 21);
                    id.push_str(&self.shared.local_text);
                    let _ = std::fmt::Write::write_fmt(&mut id, format_args!("-{}", self.key));
                    id
                },
                session: Some(self.info.clone()),
                ender: self.me.clone(),
                secure_signalling: self.secure_signalling(),
            };
            let sdh = self
                .shared
                .options
                .session_description_handler_factory
                .create(&ctx, &self.sdh_options)
                .map_err(Error::from)?;
            if let Some(handle) = sdh.handle() {
                self.info().media = Some(handle);
            }
            self.sdh = Some(sdh);
        }
        self.sdh
            .as_mut()
            .ok_or_else(|| Error::SessionDescriptionHandler(crate::SdhError::new("no handler")))
    }

    async fn local_description(
        &mut self,
        options: Option<&SessionDescriptionHandlerOptions>,
    ) -> Result<BodyAndContentType, Error> {
        let options = options.cloned().unwrap_or_else(|| self.sdh_options.clone());
        let modifiers = self.modifiers.clone();
        let sdh = self.ensure_sdh()?;
        let d = sdh
            .get_description(&options, &modifiers)
            .await
            .map_err(Error::from)?;
        self.last_local = Some(d.clone());
        Ok(d)
    }

    /// The description a response to the initial INVITE carries (`m`: a 1xx or the 2xx),
    /// by where the negotiation stands: our answer to the INVITE's offer, our offer when it
    /// had none, or the last description again once an exchange completed (RFC 3261
    /// §13.3.1, RFC 6337 §3.1). Commit it with [`Task::sent_in_response`] once sent.
    async fn response_description(&mut self) -> Result<BodyAndContentType, Error> {
        match (self.oa.state(), &self.last_local) {
            (OfferAnswer::RemoteOffer(Message::Invite), _) => {
                self.apply_invite_offer().await?;
                self.local_description(None).await
            }
            // the same offer again (an unreliable 1xx showed it), or the session as it
            // stands after an exchange in a 1xx, PRACK or UPDATE
            (OfferAnswer::OweOffer | OfferAnswer::Stable | OfferAnswer::LocalOffer(_), Some(d)) => {
                Ok(d.clone())
            }
            _ => self.local_description(None).await,
        }
    }

    /// A response to the initial INVITE carrying [`Task::response_description`] went out
    /// in `m`: it answered the INVITE's offer, or made the offer the INVITE asked for.
    fn sent_in_response(&mut self, m: Message) {
        match self.oa.state() {
            OfferAnswer::RemoteOffer(offer) if offer.answered_by(m) => {
                let _ = self.oa.send_answer(m);
            }
            // an unreliable 1xx cannot carry the offer: the machine keeps waiting for the
            // reliable 1xx or the 2xx that will
            OfferAnswer::OweOffer => {
                let _ = self.oa.send_offer(m);
            }
            _ => {}
        }
    }

    /// Gives the peer's description in `body`/`content_type` to the handler.
    async fn remote_description(
        &mut self,
        message_body: Option<BodyAndContentType>,
    ) -> Result<(), Error> {
        let d = message_body.ok_or_else(|| {
            Error::SessionDescriptionHandler(crate::SdhError::new("no session description"))
        })?;
        let options = self.sdh_options.clone();
        let modifiers = self.modifiers.clone();
        let sdh = self.ensure_sdh()?;
        if !sdh.has_description(&d.content_type) {
            return Err(Error::ContentTypeUnsupported(d.content_type.clone()));
        }
        sdh.set_description(&d, &options, &modifiers)
            .await
            .map_err(Error::from)?;
        self.info().remote_description = Some(d);
        Ok(())
    }

    /// The exchange under way failed: the handler and the negotiation go back to the
    /// previous session (RFC 3264 §8).
    async fn rollback(&mut self) {
        self.oa.rollback();
        if let Some(sdh) = self.sdh.as_mut() {
            let _ = sdh.rollback_description().await;
        }
    }

    // ---- commands ----

    async fn on_command(&mut self, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Invite(o, reply) => {
                let r = if self.current() == SessionState::Established {
                    let options = SessionInviteOptions {
                        extra_headers: o.extra_headers,
                        ..Default::default()
                    };
                    return self.reinvite(options, reply).await;
                } else {
                    self.invite(o).await
                };
                let _ = reply.send(r);
            }
            SessionCommand::Cancel(o, reply) => {
                let r = self.cancel(o).await;
                let _ = reply.send(r);
            }
            SessionCommand::Accept(o, reply) => {
                let r = self.accept(o).await;
                let replaces = match &self.role {
                    Role::Uas(u) => u.replaces,
                    Role::Uac(_) => None,
                };
                if let (Ok(()), Some(key)) = (&r, replaces) {
                    // the new call is up: the one it replaces ends (RFC 3891 §3)
                    let _ = self.shared.commands.send(Command::Replaced { key }).await;
                }
                let _ = reply.send(r);
            }
            SessionCommand::Progress(o, reply) => match self.progress_with(o).await {
                // resolved by the PRACK (or its timeout)
                Ok(true) => self.awaiting_prack = Some(reply),
                Ok(false) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            SessionCommand::Reject(o, reply) => {
                let r = self.reject(o).await;
                let _ = reply.send(r);
            }
            SessionCommand::Bye(o, reply) => self.bye(o, reply).await,
            SessionCommand::MediaEnded(why) => {
                if self.current() == SessionState::Terminated {
                    return;
                }
                // a call up: BYE; one not answered yet: refused (as a failed offer is)
                if let Some(d) = self.dialog.clone() {
                    if self.current() == SessionState::Established {
                        self.bye_dialog(&d).await;
                    }
                }
                if let Some(id) = self.uas().filter(|u| !u.finished).map(|u| u.id) {
                    let _ = self.respond(id, 488, None, Vec::new(), None).await;
                    if let Some(u) = self.uas() {
                        u.finished = true;
                    }
                }
                self.terminate(EndReason::MediaFailure(Box::new(Error::from(why))));
            }
            SessionCommand::Request(method, o, reply) => {
                if self.current() != SessionState::Established {
                    let _ = reply.send(self.invalid("send a request"));
                    return;
                }
                let Some(d) = self.dialog.clone() else {
                    let _ = reply.send(self.invalid("send a request"));
                    return;
                };
                match self.send_in_dialog(&d, method, o, false).await {
                    Ok(id) => {
                        self.requests.insert(id, Some(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SessionCommand::ReInvite(o, reply) => self.reinvite(o, reply).await,
            SessionCommand::Dispose(reply) => {
                let r = self.dispose().await;
                let _ = reply.send(r);
            }
            SessionCommand::Update(o, reply) => self.send_update(o, reply).await,
            SessionCommand::Refer(to, o, reply) => self.refer(to, o, reply).await,
            SessionCommand::Respond(id, status, headers, reply) => {
                let r = self.respond(id, status, None, headers, None).await;
                let _ = reply.send(r.map(|_| ()));
            }
            SessionCommand::ReferNotify {
                event_id,
                sipfrag,
                terminated,
                reply,
            } => {
                self.refer_notify(event_id, sipfrag, terminated, reply)
                    .await
            }
            SessionCommand::Dtmf(tones, reply) => {
                let terminated = self.current() == SessionState::Terminated;
                let r = match self.sdh.as_mut() {
                    _ if terminated => Err(Error::SessionTerminated),
                    None => Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                        "no media yet",
                    ))),
                    Some(sdh) => {
                        if sdh.send_dtmf(&tones) {
                            Ok(())
                        } else {
                            Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                                "the media handler cannot send these DTMF tones",
                            )))
                        }
                    }
                };
                let _ = reply.send(r);
            }
        }
    }

    async fn invite(&mut self, o: InviterInviteOptions) -> Result<(), Error> {
        if self.current() != SessionState::Initial {
            return self.invalid("invite");
        }
        let Role::Uac(uac) = &self.role else {
            return self.invalid("invite");
        };
        let (target, without_sdp) = (uac.target.clone(), uac.options.invite_without_sdp);
        let mut headers = uac.options.extra_headers.clone();
        if !headers.iter().any(|h| *h.name() == HeaderName::Supported) {
            // we PRACK reliable provisional responses (RFC 3262 §4), and run session timers
            // unless they are off
            let tags = if self.shared.options.session_timers.is_some() {
                "100rel, timer"
            } else {
                "100rel"
            };
            headers.push(Header::new(HeaderName::Supported, tags));
        }
        if !headers.iter().any(|h| *h.name() == HeaderName::Allow) {
            // RFC 3261 §20.5: what we take in the dialog (UPDATE for refreshes, RFC 4028)
            headers.push(self.shared.allow_header());
        }
        if let Some(st) = &self.shared.options.session_timers {
            if !headers
                .iter()
                .any(|h| *h.name() == HeaderName::SessionExpires)
            {
                headers.extend(super::timer::invite_headers(st));
            }
        }
        // RFC 3323 / 3325: an anonymous From, our identity only for a trusted proxy
        let from = if uac.options.anonymous {
            headers.push(Header::new(HeaderName::from("Privacy"), "id"));
            let me = self.shared.options.uri.clone().map_or_else(
                || {
                    format!(
                        "<sip:{}@{}>",
                        self.shared.options.user,
                        self.shared.advertised_ip(self.peer)
                    )
                },
                |u| format!("<{u}>"),
            );
            headers.push(Header::new(HeaderName::from("P-Preferred-Identity"), me));
            sipua_message::NameAddr::parse(b"\"Anonymous\" <sip:anonymous@anonymous.invalid>").ok()
        } else {
            None
        };
        headers.extend(o.extra_headers);
        headers.push(Header::new(
            HeaderName::UserAgent,
            self.shared.options.user_agent_string.clone(),
        ));
        if self.shared.routes_matter() {
            // on a wildcard address the offer names our address towards the next hop
            if let Role::Uac(uac) = &self.role {
                let target = uac.target.clone();
                self.peer = self.shared.resolve(&target).await.ok().map(|(d, _)| d);
            }
        }
        let body = if without_sdp {
            None
        } else {
            Some(self.local_description(None).await?)
        };
        let body_for_core = to_body(body.clone())?;
        let resend = Resend {
            target,
            from,
            headers,
            body: body_for_core,
            defer_ack: without_sdp,
            retried: false,
        };
        let id = self.send_initial_invite(&resend).await?;
        if let Role::Uac(uac) = &mut self.role {
            uac.invite = Some(id);
            uac.offered = body.is_some();
            uac.resend = Some(Box::new(resend));
        }
        let _ = if body.is_some() {
            self.oa.send_offer(Message::Invite)
        } else {
            self.oa.send_invite_without_offer()
        };
        self.transition(SessionState::Establishing);
        Ok(())
    }

    async fn send_initial_invite(&mut self, r: &Resend) -> Result<TransactionId, Error> {
        let (destination, transport) = self.shared.resolve(&r.target).await?;
        let key = self.key;
        let (id, sent) = self
            .shared
            .ask(|reply| Command::Invite {
                key,
                target: r.target.clone(),
                destination,
                transport,
                from: r.from.clone().map(Box::new),
                headers: r.headers.clone(),
                body: r.body.clone(),
                defer_ack: r.defer_ack,
                reply,
            })
            .await?;
        self.info().sent_invite = sent;
        Ok(id)
    }

    /// A 422 to our INVITE (RFC 4028 §7.4): send it again, once, asking for the callee's
    /// Min-SE. True when it went out again.
    async fn retry_after_422(&mut self, response: &Response) -> bool {
        let min = response
            .typed::<sipua_message::header::MinSe>()
            .and_then(Result::ok)
            .map(|m| m.0);
        let Role::Uac(uac) = &mut self.role else {
            return false;
        };
        let (Some(min), Some(mut resend)) = (min, uac.resend.take()) else {
            return false;
        };
        if resend.retried || uac.cancelled {
            return false;
        }
        resend.retried = true;
        resend
            .headers
            .retain(|h| *h.name() != HeaderName::SessionExpires && *h.name() != HeaderName::MinSe);
        resend
            .headers
            .push(Header::new(HeaderName::SessionExpires, min.to_string()));
        resend
            .headers
            .push(Header::new(HeaderName::MinSe, min.to_string()));
        match self.send_initial_invite(&resend).await {
            Ok(id) => {
                if let Role::Uac(uac) = &mut self.role {
                    uac.invite = Some(id);
                    uac.resend = Some(resend);
                }
                true
            }
            Err(_) => false,
        }
    }

    async fn cancel(&mut self, o: InviterCancelOptions) -> Result<(), Error> {
        let state = self.current();
        let Role::Uac(uac) = &mut self.role else {
            return self.invalid("cancel");
        };
        match (state, uac.invite) {
            (SessionState::Initial, _) => {
                uac.cancelled = true;
                self.terminate(EndReason::Disposed);
                Ok(())
            }
            (SessionState::Establishing, Some(id)) if !uac.cancelled => {
                uac.cancelled = true;
                let mut reasons = o.extra_headers;
                if let Some(code) = o.status_code {
                    let text = o.reason_phrase.unwrap_or_default().replace('"', "'");
                    reasons.push(Header::new(
                        HeaderName::Reason,
                        format!("SIP;cause={code};text=\"{text}\""),
                    ));
                }
                self.shared
                    .ask(|reply| Command::Cancel { id, reasons, reply })
                    .await?;
                self.transition(SessionState::Terminating);
                Ok(())
            }
            _ => self.invalid("cancel"),
        }
    }

    fn uas(&mut self) -> Option<&mut Uas> {
        match &mut self.role {
            Role::Uas(u) => Some(u),
            Role::Uac(_) => None,
        }
    }

    /// Applies the INVITE's offer once, if it has one. `Ok(true)` when it had one.
    async fn apply_invite_offer(&mut self) -> Result<bool, Error> {
        let Some(u) = self.uas() else {
            return Ok(false);
        };
        let request = u.request.clone();
        if u.offer_applied {
            return Ok(true);
        }
        let Some(body) = body_and_type(&*request) else {
            return Ok(false);
        };
        self.remote_description(Some(body)).await?;
        if let Some(u) = self.uas() {
            u.offer_applied = true;
        }
        Ok(true)
    }

    async fn accept(&mut self, o: InvitationAcceptOptions) -> Result<(), Error> {
        let state = self.current();
        let Some(u) = self.uas() else {
            return self.invalid("accept");
        };
        if u.finished || state > SessionState::Establishing {
            return self.invalid("accept");
        }
        let id = u.id;
        self.transition(SessionState::Establishing);
        let answer = match self.response_description().await {
            Ok(x) => x,
            Err(e) => {
                let (status, headers) = match &e {
                    Error::ContentTypeUnsupported(_) => (415, Vec::new()),
                    // out of media ports for now: come back later (RFC 3261 §21.5.4)
                    Error::MediaUnavailable { retry_after, .. } => (
                        503,
                        vec![Header::typed(&sipua_message::header::RetryAfter {
                            delta: *retry_after,
                            comment: None,
                            params: Default::default(),
                        })],
                    ),
                    _ => (488, vec![self.warning(&e)]),
                };
                let _ = self.respond(id, status, None, headers, None).await;
                if let Some(u) = self.uas() {
                    u.finished = true;
                }
                self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
                return Err(e);
            }
        };
        let mut extra = o.extra_headers;
        if !extra.iter().any(|h| *h.name() == HeaderName::Allow) {
            extra.push(self.shared.allow_header());
        }
        let mut timer = None;
        let invite = self.uas().map(|u| u.request.clone());
        if let (Some(st), Some(invite)) = (self.shared.options.session_timers, invite) {
            self.peer_allows_update = super::timer::allows_update(&invite.headers());
            match super::timer::decide(&invite, &st) {
                super::timer::Decision::TooBrief(min) => {
                    // RFC 4028 §8.1: 422 with our minimum; the caller may try again
                    let min_se = Header::new(HeaderName::MinSe, min.to_string());
                    let _ = self.respond(id, 422, None, vec![min_se], None).await;
                    self.rollback().await;
                    if let Some(u) = self.uas() {
                        u.finished = true;
                    }
                    self.terminate(EndReason::LocalReject { status: 422 });
                    return Err(Error::Rejected {
                        status: 422,
                        reason: "Session Interval Too Small".into(),
                        response: None,
                    });
                }
                super::timer::Decision::Run {
                    interval,
                    we_refresh,
                    headers,
                } => {
                    extra.extend(headers);
                    timer = Some((interval, we_refresh));
                }
            }
        }
        let dialog = self.respond(id, 200, None, extra, Some(answer)).await?;
        self.sent_in_response(Message::Success);
        if let Some(u) = self.uas() {
            u.finished = true;
        }
        self.timer = timer.map(|(i, we)| super::timer::Running::start(i, we, Instant::now()));
        if let Some(d) = &dialog {
            record_dialog(&self.span, d);
        }
        self.dialog = dialog.clone();
        self.info().dialog = dialog;
        // when our 2xx made the offer, the ACK owes the answer (the machine's
        // LocalOffer(Success))
        self.awaiting_ack = true;
        self.transition(SessionState::Established);
        Ok(())
    }

    /// Sends the provisional response; `Ok(true)` when it went reliably and the PRACK is
    /// awaited.
    async fn progress_with(&mut self, o: InvitationProgressOptions) -> Result<bool, Error> {
        let state = self.current();
        let Some(u) = self.uas() else {
            return self.invalid("progress");
        };
        if u.finished || state > SessionState::Establishing {
            return self.invalid("progress");
        }
        let id = u.id;
        let option_tags = |name: HeaderName| -> bool {
            u.request.headers().iter().any(|h| {
                h.is(&name)
                    && h.elements()
                        .iter()
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"100rel"))
            })
        };
        let (required, supported) = (
            option_tags(HeaderName::Require),
            option_tags(HeaderName::Supported),
        );
        let status = o.status_code.unwrap_or(180).clamp(101, 199);
        let reliable = (o.rel100 || required) && status > 100;
        if reliable && !(required || supported) {
            return Err(Error::InvalidArgument(
                "rel100: the caller does not support 100rel".into(),
            ));
        }
        if reliable && self.awaiting_prack.is_some() {
            return Err(Error::RequestPending);
        }
        // early media: our answer (or offer) in the 183; a body of the application's own
        // is outside the negotiation
        let (body, negotiated) = match (o.body, status) {
            (Some(b), _) => (Some(b), false),
            (None, 183) => (Some(self.response_description().await?), true),
            _ => (None, false),
        };
        self.transition(SessionState::Establishing);
        self.respond_with(id, status, o.reason_phrase, o.extra_headers, body, reliable)
            .await?;
        if negotiated {
            self.sent_in_response(Message::Provisional { reliable });
        }
        Ok(reliable)
    }

    async fn reject(&mut self, o: InvitationRejectOptions) -> Result<(), Error> {
        let Some(u) = self.uas() else {
            return self.invalid("reject");
        };
        if u.finished {
            return self.invalid("reject");
        }
        let id = u.id;
        let status = o.status_code.unwrap_or(480).clamp(300, 699);
        u.finished = true;
        self.respond(id, status, o.reason_phrase, o.extra_headers, None)
            .await?;
        self.terminate(EndReason::LocalReject { status });
        Ok(())
    }

    async fn bye(&mut self, o: RequestOptions, reply: Reply<Response>) {
        let state = self.current();
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| state == SessionState::Established)
        else {
            let _ = reply.send(self.invalid("bye"));
            return;
        };
        if self.awaiting_ack {
            // RFC 3261 §15: a callee does not send BYE before the ACK (or its timeout)
            self.transition(SessionState::Terminating);
            self.bye_after_ack = Some(Box::new((o, reply)));
            return;
        }
        match self.send_in_dialog(&d, Method::Bye, o, false).await {
            Ok(id) => {
                self.requests.insert(id, Some(reply));
                self.terminate(EndReason::LocalBye);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    async fn dispose(&mut self) -> Result<(), Error> {
        match self.current() {
            SessionState::Terminated | SessionState::Terminating => Ok(()),
            SessionState::Established => {
                let (tx, _rx) = tokio::sync::oneshot::channel();
                self.bye(RequestOptions::default(), tx).await;
                Ok(())
            }
            SessionState::Initial | SessionState::Establishing => match &self.role {
                Role::Uac(_) => {
                    let r = self.cancel(InviterCancelOptions::default()).await;
                    if r.is_err() {
                        self.terminate(EndReason::Disposed);
                    }
                    Ok(())
                }
                Role::Uas(_) => {
                    let r = self.reject(InvitationRejectOptions::default()).await;
                    if r.is_err() {
                        self.terminate(EndReason::Disposed);
                    }
                    Ok(())
                }
            },
        }
    }

    async fn reinvite(&mut self, o: SessionInviteOptions, reply: Reply<()>) {
        if self.current() != SessionState::Established || self.dialog.is_none() {
            let _ = reply.send(self.invalid("re-INVITE"));
            return;
        }
        if self.reinvite.is_some() || self.retry.is_some() || self.offer_after_ack.is_some() {
            let _ = reply.send(Err(Error::RequestPending));
            return;
        }
        if self.answer_awaits_ack() {
            self.offer_after_ack = Some(Box::new(AfterAck::ReInvite(o, reply)));
            return;
        }
        self.start_reinvite(o, reply, 0).await;
    }

    /// Our 2xx made an offer whose answer comes in the ACK, not here yet.
    fn answer_awaits_ack(&self) -> bool {
        self.awaiting_ack && self.oa.state() == OfferAnswer::LocalOffer(Message::Success)
    }

    /// The offer of a re-INVITE or UPDATE from the media handler; none `without_sdp`.
    async fn offer_body(
        &mut self,
        without_sdp: bool,
        options: Option<&SessionDescriptionHandlerOptions>,
    ) -> Result<Option<BodyAndContentType>, Error> {
        if without_sdp {
            return Ok(None);
        }
        self.local_description(options).await.map(Some)
    }

    async fn start_reinvite(&mut self, o: SessionInviteOptions, reply: Reply<()>, attempts: u8) {
        let Some(d) = self.dialog.clone() else {
            let _ = reply.send(Err(Error::SessionTerminated));
            return;
        };
        let sent = self
            .send_offer(
                &d,
                Method::Invite,
                o.without_sdp,
                o.session_description_handler_options.as_ref(),
                o.extra_headers.clone(),
            )
            .await;
        match sent {
            Ok(id) => {
                self.reinvite = Some(Box::new(ReInvite {
                    id,
                    reply,
                    options: o,
                    attempts,
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Sends a re-INVITE or an UPDATE in dialog `d`, with our offer from the handler unless
    /// `without_sdp` (RFC 3264 §8, RFC 3311 §5.1). An offer that could not be sent is rolled
    /// back. A re-INVITE without an offer gets one in its 2xx, whose ACK then carries our
    /// answer; an UPDATE without one (a refresh) opens no exchange. While an exchange is
    /// under way no other may start: [`Error::RequestPending`].
    async fn send_offer(
        &mut self,
        d: &DialogId,
        method: Method,
        without_sdp: bool,
        sdh_options: Option<&SessionDescriptionHandlerOptions>,
        extra_headers: Vec<Header>,
    ) -> Result<TransactionId, Error> {
        let invite = method == Method::Invite;
        let opens = invite || !without_sdp;
        if opens && !self.oa.can_offer() {
            return Err(Error::RequestPending);
        }
        let body = self.offer_body(without_sdp, sdh_options).await?;
        let offered = body.is_some();
        let defer_ack = method == Method::Invite && !offered;
        let options = RequestOptions {
            extra_headers,
            body,
        };
        match self.send_in_dialog(d, method, options, defer_ack).await {
            Ok(id) => {
                let carrier = if invite {
                    Message::Invite
                } else {
                    Message::Update
                };
                let _ = match (offered, invite) {
                    (true, _) => self.oa.send_offer(carrier),
                    (false, true) => self.oa.send_invite_without_offer(),
                    (false, false) => Ok(()),
                };
                Ok(id)
            }
            Err(e) => {
                if offered {
                    self.rollback().await;
                }
                Err(e)
            }
        }
    }

    /// The dialog an UPDATE goes in: the confirmed one, or the early one of a caller.
    fn update_dialog(&self) -> Option<DialogId> {
        self.dialog.clone().or_else(|| match &self.role {
            Role::Uac(u) => u.early.clone(),
            Role::Uas(_) => None,
        })
    }

    async fn send_update(&mut self, o: SessionUpdateOptions, reply: Reply<()>) {
        let Some(d) = self
            .update_dialog()
            .filter(|_| self.current() < SessionState::Terminating)
        else {
            let _ = reply.send(self.invalid("UPDATE"));
            return;
        };
        if self.update.is_some()
            || self.reinvite.is_some()
            || self.retry.is_some()
            || self.offer_after_ack.is_some()
        {
            let _ = reply.send(Err(Error::RequestPending));
            return;
        }
        if !o.without_sdp && self.answer_awaits_ack() {
            self.offer_after_ack = Some(Box::new(AfterAck::Update(o, reply)));
            return;
        }
        let sent = self
            .send_offer(
                &d,
                Method::Update,
                o.without_sdp,
                o.session_description_handler_options.as_ref(),
                o.extra_headers,
            )
            .await;
        match sent {
            Ok(id) => {
                self.update = Some(Update {
                    id,
                    reply,
                    options: o.session_description_handler_options,
                })
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    async fn on_update_response(&mut self, response: Response) {
        let Some(u) = self.update.take() else { return };
        let offered = self.oa.state() == OfferAnswer::LocalOffer(Message::Update);
        if response.is_success() {
            self.refreshed_by_us(&response);
        }
        if response.is_success() && offered {
            self.answer_options = u.options.clone();
        }
        let r = if response.is_success() {
            match body_and_type(&response) {
                Some(answer) if offered => {
                    let _ = self.oa.receive(Message::UpdateSuccess);
                    self.remote_description(Some(answer)).await
                }
                None if offered => {
                    self.rollback().await;
                    Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                        "the 2xx to our UPDATE carried no answer",
                    )))
                }
                _ => Ok(()),
            }
        } else {
            // RFC 3311 §5.1: a refused offer leaves the previous session as it was
            if offered {
                self.rollback().await;
            }
            Err(Error::rejected(&response))
        };
        let _ = u.reply.send(r);
    }

    /// An UPDATE from the peer (RFC 3311 §5.2): its offer answered in the 200; 491 while an
    /// offer of ours awaits its answer, 500 with Retry-After while one of the peer's awaits
    /// ours; 488 when the media handler refuses it; 200 without a body for a refresh.
    async fn on_update(&mut self, id: TransactionId, request: Request) {
        let offer = body_and_type(&request);
        let taken = offer.as_ref().map(|_| self.oa.receive(Message::Update));
        let status = match (offer, taken) {
            (Some(_), Some(Err(e))) => self.refuse_offer(id, e).await,
            (Some(offer), _) => {
                let answer = match self.remote_description(Some(offer)).await {
                    Ok(()) => {
                        self.local_description(self.answer_options.clone().as_ref())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(desc) => {
                        let refresh: Vec<Header> =
                            self.refreshed_by_peer(&request).into_iter().collect();
                        match self.respond(id, 200, None, refresh, Some(desc)).await {
                            Ok(_) => {
                                let _ = self.oa.send_answer(Message::UpdateSuccess);
                                200
                            }
                            Err(_) => {
                                self.oa.rollback();
                                500
                            }
                        }
                    }
                    Err(e) => {
                        self.rollback().await;
                        let warning = vec![self.warning(&e)];
                        let _ = self.respond(id, 488, None, warning, None).await;
                        488
                    }
                }
            }
            (None, _) => {
                let refresh: Vec<Header> = self.refreshed_by_peer(&request).into_iter().collect();
                let _ = self.respond(id, 200, None, refresh, None).await;
                200
            }
        };
        if let Some(d) = &self.delegate() {
            d.on_update(&request, status);
        }
    }

    /// Refuses a request whose offer the negotiation cannot take now (RFC 3261 §14.2,
    /// RFC 3311 §5.2): 491 on glare with an offer of ours; 500 with a Retry-After of 0–10 s
    /// while an offer of the peer's still awaits our answer. The status sent.
    async fn refuse_offer(&mut self, id: TransactionId, why: OfferAnswerError) -> u16 {
        let (status, headers) = match why {
            OfferAnswerError::Glare => (491, Vec::new()),
            OfferAnswerError::Pending | OfferAnswerError::Unexpected => (
                500,
                vec![Header::typed(&sipua_message::header::RetryAfter {
                    delta: (self.rng.next_u64() % 11) as u32,
                    comment: None,
                    params: Default::default(),
                })],
            ),
        };
        tracing::debug!(target: "sipua", status, %why, "offer refused");
        let _ = self.respond(id, status, None, headers, None).await;
        status
    }

    // ---- inputs ----

    async fn on_input(&mut self, input: SessionInput) {
        match input {
            SessionInput::Response {
                id,
                response,
                dialog,
            } => {
                let initial = matches!(&self.role, Role::Uac(u) if u.invite == Some(id));
                if initial {
                    self.on_invite_response(response, dialog).await;
                } else if self.reinvite.as_ref().is_some_and(|r| r.id == id) {
                    self.on_reinvite_response(response).await;
                } else if self.update.as_ref().is_some_and(|u| u.id == id) {
                    if response.status() >= 200 {
                        self.on_update_response(response).await;
                    }
                } else if self.refer_waiters.contains_key(&id) {
                    if response.status() >= 200 {
                        self.on_refer_response(id, response);
                    }
                } else if response.status() >= 200 {
                    if let Some(waiter) = self.requests.remove(&id) {
                        if let Some(w) = waiter {
                            let _ = w.send(Ok(response));
                        }
                    } else if response.is_success() && response.cseq().method == Method::Invite {
                        // a 2xx from another fork, after ours: end that dialog
                        if let Some(d) = dialog.filter(|d| Some(d) != self.dialog.as_ref()) {
                            self.end_fork(&d, &response).await;
                        }
                    }
                }
            }
            SessionInput::Request { id, request } => self.on_request(id, request).await,
            SessionInput::Replaced => {
                self.info().end.get_or_insert(EndReason::Replaced);
                let _ = self.dispose().await;
            }
            SessionInput::Ack { request } => self.on_ack(request).await,
            SessionInput::Prack { request } => {
                if let Some(reply) = self.awaiting_prack.take() {
                    // a PRACK may carry the answer to an offer in our reliable 1xx
                    let body = body_and_type(&request);
                    let r = match body.as_ref().map(|_| self.oa.receive(Message::Prack)) {
                        Some(Ok(Received::Answer)) => self.remote_description(body).await,
                        Some(Ok(Received::Offer)) => {
                            // its answer belongs in the PRACK's 2xx, which the core sent
                            // without one: the offer is not taken
                            tracing::debug!(target: "sipua", "an offer in a PRACK ignored");
                            self.oa.rollback();
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    let _ = reply.send(r);
                }
            }
            SessionInput::PrackTimeout => {
                if let Some(reply) = self.awaiting_prack.take() {
                    let _ = reply.send(Err(Error::Timeout));
                }
                if let Some(u) = self.uas() {
                    u.finished = true;
                }
                self.terminate(EndReason::LocalReject { status: 504 });
            }
            SessionInput::AckTimeout => {
                self.awaiting_ack = false;
                if let Some((_, reply)) = self.bye_after_ack.take().map(|b| *b) {
                    let _ = reply.send(Err(Error::Timeout));
                }
                if let Some(AfterAck::ReInvite(_, reply) | AfterAck::Update(_, reply)) =
                    self.offer_after_ack.take().map(|b| *b)
                {
                    let _ = reply.send(Err(Error::Timeout));
                }
                self.terminate(EndReason::AckTimeout);
            }
            SessionInput::Cancelled => {
                if let Some(u) = self.uas() {
                    u.finished = true;
                }
                if let Some(d) = &self.delegate() {
                    d.on_cancel();
                }
                self.terminate(EndReason::Cancelled);
            }
            SessionInput::Failed {
                id,
                timeout,
                reason,
            } => {
                let initial = matches!(&self.role, Role::Uac(u) if u.invite == Some(id));
                // the driver gives a reason for every failure but a timeout
                let e = match reason {
                    Some(r) => Error::Transport(r),
                    None => Error::Timeout,
                };
                if initial {
                    if let Error::Transport(why) = &e {
                        self.info().send_failure = Some(why.clone());
                    }
                    self.terminate(if timeout {
                        EndReason::Timeout
                    } else {
                        EndReason::TransportError
                    });
                } else if self.reinvite.as_ref().is_some_and(|r| r.id == id) {
                    if let Some(r) = self.reinvite.take() {
                        self.rollback().await;
                        let _ = r.reply.send(Err(e));
                    }
                } else if self.update.as_ref().is_some_and(|u| u.id == id) {
                    if let Some(u) = self.update.take() {
                        if self.oa.state() == OfferAnswer::LocalOffer(Message::Update) {
                            self.rollback().await;
                        }
                        let _ = u.reply.send(Err(e));
                    }
                } else if let Some(Some(w)) = self.requests.remove(&id) {
                    let _ = w.send(Err(e));
                }
            }
            SessionInput::Shutdown => {
                let _ = self.dispose().await;
            }
        }
    }

    /// ACK then BYE a dialog made by another fork's 2xx (SIP.js does the same).
    async fn end_fork(&mut self, d: &DialogId, response: &Response) {
        let deferred = matches!(&self.role, Role::Uac(u) if !u.offered);
        if deferred {
            // its 2xx made an offer: the ACK owes it an answer, from a handler of its own
            let ctx = SessionContext {
                local_ip: self.shared.advertised_ip(self.peer),
                bind_ip: self.shared.local.ip(),
                id: format!("{}-{}-fork", self.shared.local, self.key),
                session: None,
                ender: None,
                secure_signalling: self.secure_signalling(),
            };
            let pending = throwaway_answer(
                self.shared.clone(),
                ctx,
                self.sdh_options.clone(),
                body_and_type(response),
            );
            let answer = pending.await;
            self.ack(d, response.cseq().seq, answer).await;
        }
        self.bye_dialog(d).await;
    }

    async fn on_invite_response(&mut self, response: Response, dialog: Option<DialogId>) {
        let status = response.status();
        let Role::Uac(uac) = &self.role else { return };
        let (offered, cancelled, early_media) =
            (uac.offered, uac.cancelled, uac.options.early_media);
        if status < 200 {
            if let Some(d) = &self.delegate() {
                d.on_progress(&response);
            }
            let body = body_and_type(&response);
            // early media: the first 1xx answer to our INVITE's offer (an offer in a reliable
            // 1xx to an INVITE without one would be answered in the PRACK, which the core
            // sends without a body: the 2xx's offer is taken instead)
            let wanted = early_media
                && self.oa.state() == OfferAnswer::LocalOffer(Message::Invite)
                && dialog.is_some();
            if wanted && body.is_some() && self.remote_description(body).await.is_ok() {
                let reliable = response.headers().get(&HeaderName::RSeq).is_some();
                let _ = self.oa.receive(Message::Provisional { reliable });
                if let Role::Uac(u) = &mut self.role {
                    u.early = dialog;
                }
            }
            return;
        }
        if status == 422 && self.retry_after_422(&response).await {
            return;
        }
        if status >= 300 {
            self.info().final_response = Some(response.clone());
            self.terminate(EndReason::Rejected {
                status,
                reason: response.reason().into_owned(),
            });
            return;
        }
        let Some(d) = dialog else { return };
        if self.dialog.as_ref().is_some_and(|x| *x != d) {
            self.end_fork(&d, &response).await;
            return;
        }
        if self.dialog.is_some() {
            return; // a retransmission, already handled
        }
        if cancelled {
            // the CANCEL lost the race: the core acknowledged the 2xx and sent BYE
            self.terminate(EndReason::LocalBye);
            return;
        }
        record_dialog(&self.span, &d);
        self.dialog = Some(d.clone());
        {
            let mut i = self.info();
            i.dialog = Some(d.clone());
            if let Ok(to) = response.to() {
                i.remote_identity = Some(Box::new(super::identity(to)));
            }
            i.asserted_identity = response
                .typed::<sipua_message::header::PAssertedIdentity>()
                .and_then(Result::ok)
                .map(|p| Box::new(p.0));
        }
        let seq = response.cseq().seq;
        let body = body_and_type(&response);
        let early = match &self.role {
            Role::Uac(u) => u.early.clone(),
            Role::Uas(_) => None,
        };
        let outcome = if offered {
            if early.is_some() && (early.as_ref() == Some(&d) || body.is_none()) {
                Ok(()) // the early answer of this very dialog stands
            } else {
                // the answer; or another fork answered and its answer replaces the early one
                // (SIP.js gives up the call here; the media follows the dialog that won)
                if body.is_some() {
                    let _ = self.oa.receive(Message::Success);
                }
                self.remote_description(body).await
            }
        } else {
            // the 2xx offers; our answer goes in the ACK
            self.answer_in_ack(&d, seq, body).await
        };
        if outcome.is_ok() {
            self.peer_allows_update = super::timer::allows_update(&response.headers());
            if self.shared.options.session_timers.is_some() {
                self.timer = super::timer::from_answer(&response).map(|(interval, we)| {
                    super::timer::Running::start(interval, we, Instant::now())
                });
            }
        }
        match outcome {
            Ok(()) => {
                // the peer's 2xx, acknowledged by us: the dialog is confirmed
                if let Some(sdh) = self.sdh.as_mut() {
                    sdh.confirmed();
                }
                self.transition(SessionState::Established)
            }
            Err(e) => {
                self.bye_dialog(&d).await;
                self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
            }
        }
    }

    /// A 2xx to our INVITE without offer carried the offer: apply it and put our answer in
    /// the ACK (RFC 3264 §5). The ACK goes out even when negotiation fails (without a body),
    /// so the peer stops retransmitting; the error tells the caller to end the session.
    async fn answer_in_ack(
        &mut self,
        d: &DialogId,
        seq: u32,
        offer: Option<BodyAndContentType>,
    ) -> Result<(), Error> {
        let taken = offer.as_ref().map(|_| self.oa.receive(Message::Success));
        let answer = match taken {
            Some(Ok(Received::Offer)) | None => match self.remote_description(offer).await {
                Ok(()) => {
                    self.local_description(self.answer_options.clone().as_ref())
                        .await
                }
                Err(e) => Err(e),
            },
            Some(other) => Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                format!("the 2xx carried no offer ({other:?})"),
            ))),
        };
        match answer {
            Ok(answer) => {
                let _ = self.oa.send_answer(Message::Ack);
                self.ack(d, seq, Some(answer)).await;
                Ok(())
            }
            Err(e) => {
                self.oa.rollback();
                self.ack(d, seq, None).await;
                Err(e)
            }
        }
    }

    async fn on_reinvite_response(&mut self, response: Response) {
        let status = response.status();
        if status < 200 {
            return;
        }
        let Some(r) = self.reinvite.take() else {
            return;
        };
        let Some(d) = self.dialog.clone() else {
            let _ = r.reply.send(Err(Error::SessionTerminated));
            return;
        };
        if response.is_success() {
            self.refreshed_by_us(&response);
            if !r.options.without_sdp || r.options.session_description_handler_options.is_some() {
                self.answer_options = r.options.session_description_handler_options.clone();
            }
            let body = body_and_type(&response);
            let outcome = if self.oa.state() == OfferAnswer::LocalOffer(Message::Invite) {
                if body.is_some() {
                    let _ = self.oa.receive(Message::Success);
                }
                self.remote_description(body).await
            } else {
                self.answer_in_ack(&d, response.cseq().seq, body).await
            };
            match outcome {
                Ok(()) => {
                    let _ = r.reply.send(Ok(()));
                }
                Err(e) => {
                    // RFC 3261 §14.1 leaves this to the UA; like SIP.js we end the call
                    let _ = r.reply.send(Err(e.clone()));
                    self.bye_dialog(&d).await;
                    self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
                }
            }
            return;
        }
        self.rollback().await;
        // glare (491) or a peer still busy with an earlier INVITE (500 with Retry-After):
        // try again after the back-off of RFC 3261 §14
        let caller = matches!(self.role, Role::Uac(_));
        let after = retry_after_secs(&response);
        if let Some(wait) =
            backoff::retry_after(status, r.attempts + 1, caller, after, &mut self.rng)
        {
            self.retry = Some(Box::new((
                Instant::now() + wait,
                r.options,
                r.reply,
                r.attempts + 1,
            )));
            return;
        }
        let _ = r.reply.send(Err(Error::rejected(&response)));
        if matches!(status, 408 | 481) {
            // RFC 3261 §12.2.1.2: the dialog is gone
            self.terminate(EndReason::Rejected {
                status,
                reason: response.reason().into_owned(),
            });
        }
    }

    async fn on_ack(&mut self, request: Request) {
        if !self.awaiting_ack {
            return;
        }
        self.awaiting_ack = false;
        if self.oa.state() == OfferAnswer::LocalOffer(Message::Success) {
            // our 2xx offered: the ACK answers (RFC 3264 §5)
            let body = body_and_type(&request);
            match body {
                Some(_) => drop(self.oa.receive(Message::Ack)),
                None => self.oa.rollback(),
            }
            if let Err(e) = self.remote_description(body).await {
                if let Some(d) = self.dialog.clone() {
                    self.bye_dialog(&d).await;
                }
                self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
                return;
            }
        }
        // our 2xx is acknowledged: the peer is who its offer says (RFC 3261 §13.3.1.4)
        if let Some(sdh) = self.sdh.as_mut() {
            sdh.confirmed();
        }
        if let Some(d) = &self.delegate() {
            d.on_ack(&request);
        }
        if let Some((o, reply)) = self.bye_after_ack.take().map(|b| *b) {
            self.state.send_replace(SessionState::Established);
            self.bye(o, reply).await;
        }
        match self.offer_after_ack.take().map(|b| *b) {
            Some(AfterAck::ReInvite(o, reply)) => self.reinvite(o, reply).await,
            Some(AfterAck::Update(o, reply)) => self.send_update(o, reply).await,
            None => {}
        }
    }

    async fn on_request(&mut self, id: TransactionId, request: Request) {
        let delegate = self.delegate();
        match request.method() {
            Method::Bye => {
                match &delegate {
                    Some(d) => d.on_bye(self.incoming(id, request)),
                    None => self.respond_and_forget(id, 200).await,
                }
                if let Some((_, reply)) = self.bye_after_ack.take().map(|b| *b) {
                    let _ = reply.send(Err(Error::SessionTerminated));
                }
                self.terminate(EndReason::RemoteBye);
            }
            Method::Invite => self.on_reinvite(id, request).await,
            Method::Update => self.on_update(id, request).await,
            Method::Refer => self.on_refer(id, request).await,
            Method::Notify if is_refer_event(&request) => {
                let status = self.on_refer_notify(&request);
                let _ = self.respond(id, status, None, Vec::new(), None).await;
            }
            m => match (delegate, m) {
                (Some(d), Method::Info) => d.on_info(self.incoming(id, request)),
                (Some(d), Method::Message) => d.on_message(self.incoming(id, request)),
                (Some(d), Method::Notify) => d.on_notify(self.incoming(id, request)),
                (_, m) => {
                    let status = match m {
                        Method::Info | Method::Message | Method::Notify => 200,
                        _ => 501,
                    };
                    let _ = self.respond(id, status, None, Vec::new(), None).await;
                }
            },
        }
    }

    /// A re-INVITE from the peer: answered from the media handler, 488 if it fails; 491 or
    /// 500 when an exchange is already under way (an UPDATE's, RFC 3311 §5.2; the core
    /// refuses the INVITE-on-INVITE cases itself, RFC 3261 §14.2).
    async fn on_reinvite(&mut self, id: TransactionId, request: Request) {
        let offer = body_and_type(&request);
        let has_offer = offer.is_some();
        let taken = if has_offer {
            self.oa.receive(Message::Invite).map(|_| ())
        } else {
            self.oa.receive_invite_without_offer()
        };
        if let Err(why) = taken {
            let status = self.refuse_offer(id, why).await;
            if let Some(d) = &self.delegate() {
                d.on_invite(&request, status);
            }
            return;
        }
        let negotiated = if has_offer {
            match self.remote_description(offer).await {
                Ok(()) => {
                    self.local_description(self.answer_options.clone().as_ref())
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            self.local_description(self.answer_options.clone().as_ref())
                .await
        };
        let refresh: Vec<Header> = self.refreshed_by_peer(&request).into_iter().collect();
        let status = match negotiated {
            Ok(desc) => match self.respond(id, 200, None, refresh, Some(desc)).await {
                Ok(_) => {
                    // our answer; or, for a re-INVITE without one, our offer, which the ACK
                    // answers
                    self.awaiting_ack = true;
                    let _ = if has_offer {
                        self.oa.send_answer(Message::Success)
                    } else {
                        self.oa.send_offer(Message::Success)
                    };
                    200
                }
                Err(_) => {
                    self.oa.rollback();
                    500
                }
            },
            Err(e) => {
                self.rollback().await;
                let warning = vec![self.warning(&e)];
                let _ = self.respond(id, 488, None, warning, None).await;
                488
            }
        };
        if let Some(d) = &self.delegate() {
            d.on_invite(&request, status);
        }
    }
}

/// Whether a NOTIFY belongs to the refer package (RFC 3515 §2.4.4).
fn is_refer_event(request: &Request) -> bool {
    request
        .typed::<sipua_message::header::Event>()
        .and_then(Result::ok)
        .is_some_and(|e| e.package.eq_ignore_ascii_case("refer"))
}

impl Task {
    /// Sends a REFER (SIP.js `Session.refer`); the reply comes with its final response.
    async fn refer(&mut self, to: ReferTarget, o: SessionReferOptions, reply: Reply<Referrer>) {
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| self.current() == SessionState::Established)
        else {
            let _ = reply.send(self.invalid("refer"));
            return;
        };
        let refer_to = match self.refer_to(to).await {
            Ok(v) => v,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut headers = vec![
            Header::new(HeaderName::ReferTo, refer_to),
            Header::new(HeaderName::ReferredBy, format!("<{}>", self.shared.aor())),
        ];
        if o.no_subscription {
            headers.push(Header::new(HeaderName::ReferSub, "false"));
            headers.push(Header::new(HeaderName::Supported, "norefersub"));
        }
        headers.extend(o.extra_headers);
        let options = RequestOptions {
            extra_headers: headers,
            body: None,
        };
        match self.send_in_dialog(&d, Method::Refer, options, false).await {
            Ok(id) => {
                let (tx, rx) = mpsc::channel(REFER_QUEUE);
                // a NOTIFY may overtake the 2xx: the subscription is listened to already
                self.refer_subs.push((id, None, tx));
                self.refer_waiters.insert(id, (reply, rx));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The Refer-To value for a target: a URI, or the other session's peer with the
    /// `Replaces` that names its dialog from that peer's side (RFC 3891 §5).
    async fn refer_to(&mut self, to: ReferTarget) -> Result<String, Error> {
        let other = match to {
            ReferTarget::Uri(u) => return Ok(format!("<{u}>")),
            ReferTarget::Session(s) => s,
        };
        let Some(od) = other.dialog() else {
            return Err(Error::InvalidArgument(
                "the session to replace has no dialog yet".into(),
            ));
        };
        let dialog = self
            .shared
            .ask(|reply| Command::DialogInfo {
                dialog: od.clone(),
                reply,
            })
            .await?
            .ok_or(Error::SessionTerminated)?;
        let mut target = dialog.remote_target.clone();
        let Some(sip) = target.as_sip_mut() else {
            return Err(Error::InvalidArgument(
                "the session to replace has no SIP target".into(),
            ));
        };
        sip.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("replaces"));
        sip.headers.push((
            "Replaces".into(),
            format!(
                "{};to-tag={};from-tag={}",
                od.call_id, od.remote_tag, od.local_tag
            ),
        ));
        let mut addr = dialog.remote_uri.clone();
        addr.uri = target;
        addr.params = Default::default();
        Ok(addr.to_string())
    }

    fn on_refer_response(&mut self, id: TransactionId, response: Response) {
        let Some((reply, rx)) = self.refer_waiters.remove(&id) else {
            return;
        };
        if response.is_success() {
            let no_sub = response
                .headers()
                .get(&HeaderName::ReferSub)
                .is_some_and(|v| v.value().trim_ascii().eq_ignore_ascii_case(b"false"));
            if no_sub {
                self.refer_subs.retain(|(t, _, _)| *t != id);
            } else if let Some(s) = self.refer_subs.iter_mut().find(|(t, _, _)| *t == id) {
                s.1 = Some(response.cseq().seq);
            }
            let _ = reply.send(Ok(Referrer::new(response, rx)));
        } else {
            self.refer_subs.retain(|(t, _, _)| *t != id);
            let _ = reply.send(Err(Error::rejected(&response)));
        }
    }

    /// A NOTIFY of one of our REFERs: its progress goes to the [`Referrer`]. Returns the
    /// status to answer with (481 when no REFER of ours matches, RFC 6665 §4.1.3).
    fn on_refer_notify(&mut self, request: &Request) -> u16 {
        let id = request
            .typed::<sipua_message::header::Event>()
            .and_then(Result::ok)
            .and_then(|e| e.id().and_then(|v| v.parse::<u32>().ok()));
        let at = match id {
            Some(seq) => self
                .refer_subs
                .iter()
                .position(|(_, c, _)| *c == Some(seq))
                .or_else(|| self.refer_subs.iter().position(|(_, c, _)| c.is_none())),
            None => (!self.refer_subs.is_empty()).then_some(0),
        };
        let Some(at) = at else {
            return 481;
        };
        let terminated = request
            .typed::<sipua_message::header::SubscriptionState>()
            .and_then(Result::ok)
            .is_some_and(|s| s.state.eq_ignore_ascii_case("terminated"));
        if let Some(n) = ReferNotification::parse(request, terminated) {
            let _ = self.refer_subs[at].2.try_send(n);
        }
        if terminated {
            self.refer_subs.remove(at);
        }
        200
    }

    /// A REFER from the peer: to the delegate as a [`Referral`], or refused.
    async fn on_refer(&mut self, id: TransactionId, request: Request) {
        if self.current() != SessionState::Established {
            let _ = self.respond(id, 403, None, Vec::new(), None).await;
            return;
        }
        let Some(me) = self.me.clone() else {
            let _ = self.respond(id, 500, None, Vec::new(), None).await;
            return;
        };
        match Referral::new(request, id, me, self.shared.clone()) {
            Err(status) => {
                let _ = self.respond(id, status, None, Vec::new(), None).await;
            }
            // without a delegate, dropping it refuses it (603)
            Ok(referral) => match self.delegate() {
                Some(d) => d.on_refer(referral),
                None => drop(referral),
            },
        }
    }

    /// Sends a progress NOTIFY of the peer's REFER (RFC 3515 §2.4.4).
    async fn refer_notify(
        &mut self,
        event_id: u32,
        sipfrag: String,
        terminated: bool,
        reply: Reply<()>,
    ) {
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| self.current() != SessionState::Terminated)
        else {
            let _ = reply.send(Err(Error::SessionTerminated));
            return;
        };
        let state = if terminated {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let options = RequestOptions {
            extra_headers: vec![
                Header::new(HeaderName::Event, format!("refer;id={event_id}")),
                Header::new(HeaderName::SubscriptionState, state),
            ],
            body: Some(BodyAndContentType {
                body: Bytes::from(sipfrag),
                content_type: "message/sipfrag;version=2.0".into(),
            }),
        };
        match self
            .send_in_dialog(&d, Method::Notify, options, false)
            .await
        {
            Ok(id) => {
                // resolved with the NOTIFY's answer
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.requests.insert(id, Some(tx));
                tokio::spawn(async move {
                    let r = match rx.await {
                        Ok(Ok(resp)) => Error::check(&resp),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(Error::SessionTerminated),
                    };
                    let _ = reply.send(r);
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// An answer to `offer` from a fresh handler that is closed at once: for a dialog that is
/// acknowledged only to be ended (a losing fork).
async fn throwaway_answer(
    shared: Arc<Shared>,
    ctx: SessionContext,
    options: SessionDescriptionHandlerOptions,
    offer: Option<BodyAndContentType>,
) -> Option<BodyAndContentType> {
    let offer = offer?;
    let factory = &shared.options.session_description_handler_factory;
    let mut sdh = factory.create(&ctx, &options).ok()?;
    let answer = match sdh.set_description(&offer, &options, &[]).await {
        Ok(()) => sdh.get_description(&options, &[]).await.ok(),
        Err(_) => None,
    };
    sdh.close();
    answer
}

/// The body of a message with its content type, if it has a body.
fn body_and_type<M: HasBody>(m: &M) -> Option<BodyAndContentType> {
    let body = m.body_bytes();
    if body.is_empty() {
        return None;
    }
    // `type/subtype` as written when the header is only that (the usual case, no parse);
    // else what the parse finds, without its parameters
    let plain = m.content_type_text().and_then(|v| {
        let v = std::str::from_utf8(v).ok()?.trim_matches([' ', '\t']);
        let (kind, subtype) = v.split_once('/')?;
        // RFC 3261 §25.1 token characters
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        };
        (token(kind) && token(subtype)).then(|| v.to_owned())
    });
    let content_type = plain.unwrap_or_else(|| {
        m.media_type()
            .map_or_else(|| "application/sdp".to_owned(), |t| content_type_of(&t))
    });
    Some(BodyAndContentType { body, content_type })
}

trait HasBody {
    fn body_bytes(&self) -> Bytes;
    fn content_type_text(&self) -> Option<&[u8]>;
    fn media_type(&self) -> Option<sipua_message::header::MediaType>;
}

impl HasBody for Request {
    fn body_bytes(&self) -> Bytes {
        Request::body_bytes(self)
    }
    fn content_type_text(&self) -> Option<&[u8]> {
        self.headers()
            .get(&HeaderName::ContentType)
            .map(|h| h.value())
    }
    fn media_type(&self) -> Option<sipua_message::header::MediaType> {
        self.content_type()
    }
}

impl HasBody for Response {
    fn body_bytes(&self) -> Bytes {
        Response::body_bytes(self)
    }
    fn content_type_text(&self) -> Option<&[u8]> {
        self.headers()
            .get(&HeaderName::ContentType)
            .map(|h| h.value())
    }
    fn media_type(&self) -> Option<sipua_message::header::MediaType> {
        self.content_type()
    }
}

fn to_body(b: Option<BodyAndContentType>) -> Result<Body, Error> {
    body_of(b.map(|b| (b.content_type, b.body)))
}

/// The seconds of a response's Retry-After (RFC 3261 §20.33).
fn retry_after_secs(response: &Response) -> Option<u64> {
    response
        .typed::<sipua_message::header::RetryAfter>()
        .and_then(Result::ok)
        .map(|r| u64::from(r.delta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::Message;

    fn request_with(content_type: Option<&str>) -> Request {
        let ct = content_type.map_or(String::new(), |c| format!("Content-Type:{c}\r\n"));
        let text = format!(
            "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: k\r\nCSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\n{ct}Content-Length: 3\r\n\r\nv=0"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_body_s_type_is_type_slash_subtype_without_parameters() {
        for (header, want) in [
            (Some(" application/sdp"), "application/sdp"),
            (Some("Application/SDP "), "Application/SDP"),
            (Some(" text/plain;charset=utf-8"), "text/plain"),
            (Some(" multipart/mixed ; boundary=x"), "multipart/mixed"),
            (Some(" application / sdp"), "application/sdp"),
            (None, "application/sdp"),
        ] {
            let b = body_and_type(&request_with(header)).unwrap();
            assert_eq!(b.content_type, want, "{header:?}");
            assert_eq!(&b.body[..], b"v=0");
        }
    }
}
