//! The task behind each session: it owns the session's dialog and media handler, takes
//! commands from the handles and inputs from the driver, and publishes state changes.
//!
//! Split by concern: this file holds the task's fields, its loop (commands, driver inputs,
//! the timer) and what every part shares (the state the handles see, the events of the
//! lifecycle and re-offer machines); [`commands`] what the handles ask, [`inputs`] what the
//! driver hands over; [`caller`] and [`callee`] the two sides of the initial
//! INVITE, [`reoffer`] re-INVITE, UPDATE and session-timer refreshes, [`transfer`] REFER,
//! [`media`] the media handler and message bodies. The rules are the sans-IO machine
//! [`Task::session`]'s (`sipua_proto::session::Session`): where the session is and what its
//! clock and the ACK ask for (its `Lifecycle`), where the offer/answer stands and what the
//! media handler is to do (its `Media`: the task does what its `poll_ask` asks, in
//! [`media`]), which re-offer of ours is under way and when a refused one goes again (its
//! `Reoffers`). The task arms one timer at its `poll_timeout` and does what its
//! `poll_event` asks.

mod callee;
mod caller;
mod commands;
mod inputs;
mod media;
mod park;
mod reoffer;
mod signalling;
mod start;
mod transfer;

use sipua_proto::hash::IdMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sipua_message::header::Expires;
use sipua_message::{Header, HeaderName, Method, Request, Response, Uri};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::TransactionId;
use sipua_proto::rng::Rng;
use sipua_proto::session::callee::{ProgressError, Rel100};
use sipua_proto::session::caller::{Confirm, Final};
use sipua_proto::session::lifecycle::{self, Bye, Cancel};
use sipua_proto::session::machine::{Event as SessionEvent, Refusal};
use sipua_proto::session::media::Ask as MediaAsk;
use sipua_proto::session::reoffer::{Ask, Event as ReofferEvent, Kind, Outcome};
use sipua_proto::session::timer;
use sipua_proto::session::transfer::Refers;
use sipua_proto::session::{
    Callee, Caller, Message, OfferAnswer, OfferAnswerError, Received, Session as Machine,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::refer::{ReferNotification, ReferTarget, Referral, Referrer, REFER_QUEUE};
use super::{
    attach, EndReason, Invitation, InvitationAcceptOptions, InvitationProgressOptions,
    InvitationRejectOptions, InviterCancelOptions, InviterInviteOptions, InviterOptions, Reply,
    RequestOptions, Session, SessionCommand, SessionDelegate, SessionInfo, SessionInviteOptions,
    SessionReferOptions, SessionState, SessionUpdateOptions,
};
use crate::body::{body_of, content_type_of};
use crate::commands::{Body, Command, SessionInput, SessionKey};
use crate::error::Error;
use crate::mailbox::{mailbox, Mailbox, MailboxReceiver, WeakMailbox};
use crate::sdh::{
    BodyAndContentType, SessionContext, SessionDescriptionHandler,
    SessionDescriptionHandlerModifier, SessionDescriptionHandlerOptions,
};
use crate::tasks::{state_channel, StateSender};
use crate::user_agent::Shared;
use media::{body_and_type, offer_answer_error, retry_after_secs, to_body};
use park::Next;
use start::record_dialog;
pub(crate) use start::{spawn_invitation, spawn_inviter};
use transfer::is_refer_event;

/// Commands queued from handles to one session.
const COMMAND_QUEUE: usize = 32;

/// The caller's side of the initial INVITE.
struct Uac {
    target: Uri,
    options: InviterOptions,
    invite: Option<TransactionId>,
    /// What the INVITE's responses mean (whether it offered, the early dialog whose answer
    /// was applied, the dialog that won, the one resend after a 422); where the negotiation
    /// stands is [`Task::session`]'s.
    caller: Caller<DialogId>,
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
}

/// The callee's side of the initial INVITE.
struct Uas {
    id: TransactionId,
    /// The INVITE, until its final response (then only [`SessionInfo::invite`] keeps it,
    /// as its bytes while nobody reads it: a held call does not keep it parsed).
    request: Option<Arc<Request>>,
    /// The INVITE came over TLS or WSS (its top Via).
    secure: bool,
    /// What the INVITE allows of reliable provisional responses, whether one awaits its
    /// PRACK, and whether the INVITE's offer was taken.
    callee: Callee,
    /// The session an INVITE with Replaces takes the place of once answered (RFC 3891).
    replaces: Option<SessionKey>,
    /// Who waits for the PRACK of our reliable provisional response (RFC 3262; that one is
    /// awaited is the `Callee` machine's): the progress call that sent it resolves then.
    awaiting_prack: Option<Reply<()>>,
}

enum Role {
    Uac(Box<Uac>),
    Uas(Box<Uas>),
}

/// Our re-offer as the application asked for it, and who waits for its outcome. Where it
/// stands (sent, backing off after glare, held for the ACK) is [`Task::session`]'s; whether
/// it offered is its media's.
struct Pending {
    request: Reoffer,
    reply: Reply<()>,
}

/// What a [`Pending`] re-offer was asked with: a re-INVITE keeps its options whole, to go
/// again after glare; an UPDATE keeps its media options, which our later answers keep to.
enum Reoffer {
    ReInvite(SessionInviteOptions),
    Update(SessionUpdateOptions),
}

struct Task {
    key: SessionKey,
    /// The session's span (the task runs in it): the dialog's Call-ID and tags are
    /// recorded into it once known.
    span: tracing::Span,
    shared: Arc<Shared>,
    state: StateSender<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    commands: MailboxReceiver<Box<SessionCommand>>,
    inputs: MailboxReceiver<SessionInput>,
    /// Every handle is gone (the command mailbox closed).
    handles_gone: bool,
    sdh: Option<Box<dyn SessionDescriptionHandler>>,
    sdh_options: SessionDescriptionHandlerOptions,
    /// The media options of our last accepted offer (hold, say): our answers to the peer's
    /// offers keep to them, so a peer's re-INVITE does not take a call off hold. `None`:
    /// the session's own.
    answer_options: Option<SessionDescriptionHandlerOptions>,
    modifiers: Box<[SessionDescriptionHandlerModifier]>,
    dialog: Option<DialogId>,
    role: Role,
    /// Non-INVITE requests we sent, by transaction, with whoever waits for the answer.
    requests: IdMap<TransactionId, Option<Reply<Response>>>,
    /// The session's rules (`sipua_proto::session::Session`): where it is and what its
    /// clock and the ACK ask for (its `Lifecycle`), where the offer/answer stands and what
    /// the media handler is asked to do (its `Media`: every body sent or taken goes through
    /// it, and the handler is called only for its asks, [`Task::media_asks`]), and which
    /// re-INVITE or UPDATE of ours is under way (its `Reoffers`: one at a time, for the
    /// application's and the session timer's alike).
    session: Machine<Instant, TransactionId>,
    /// Our re-offer's options and who waits for it.
    pending: Option<Box<Pending>>,
    /// The peer's address (where the INVITE came from, or where ours goes), when known:
    /// on a wildcard address, the media handler names our address towards it.
    peer: Option<std::net::SocketAddr>,
    /// Callee, while the INVITE is unanswered: the last description we sent, which a 2xx
    /// (or 1xx) after the exchange completed repeats ([`MediaAsk::Repeat`])
    /// rather than asking the handler again (which would make a new offer). Let go with the
    /// 2xx: a held call does not keep it.
    last_local: Option<Box<BodyAndContentType>>,
    /// A BYE asked for while our 2xx waits for its ACK (held until
    /// [`lifecycle::Event::SendBye`]).
    bye_after_ack: Option<Box<(RequestOptions, Reply<Response>)>>,
    rng: Rng,
    /// Our own command channel, weakly: for the referrals we hand out.
    me: Option<WeakMailbox<Box<SessionCommand>>>,
    /// Our REFERs and their subscriptions, from the first `refer()` on (most calls never
    /// transfer: boxed, an untransferred call keeps 8 bytes for them instead of 88).
    transfers: Option<Box<Transfers>>,
    /// The time the driver was last asked to wake this session, parked, at (see [`park`]).
    wake_asked: Option<Instant>,
}

/// Our REFERs' implicit subscriptions (which REFER a NOTIFY reports on, and when each
/// ends), where each one's progress goes, and who waits for each one's final response.
struct Transfers {
    refers: Refers<TransactionId>,
    sinks: IdMap<TransactionId, mpsc::Sender<ReferNotification>>,
    waiters: IdMap<TransactionId, (Reply<Referrer>, mpsc::Receiver<ReferNotification>)>,
}

impl Default for Transfers {
    fn default() -> Transfers {
        Transfers {
            refers: Refers::new(),
            sinks: IdMap::default(),
            waiters: IdMap::default(),
        }
    }
}

impl Transfers {
    /// Our REFER `id` got no final response (its transaction failed): it is not followed
    /// any more, and who waited for it is returned to hear why.
    fn failed(&mut self, id: TransactionId) -> Option<Reply<Referrer>> {
        let (reply, _) = self.waiters.remove(&id)?;
        self.refers.failed(id);
        self.sinks.remove(&id);
        Some(reply)
    }
}

impl Task {
    fn delegate(&self) -> Option<Arc<dyn SessionDelegate>> {
        self.info().delegate.clone()
    }

    fn current(&self) -> SessionState {
        self.session.life().state()
    }

    /// Shows the handles the machine's state, if it moved.
    fn publish(&self) {
        let now = self.session.life().state();
        self.state.send_if_modified(|s| {
            let changed = *s != now;
            if changed {
                tracing::debug!(target: "sipua", state = ?now, "session state");
                *s = now;
            }
            changed
        });
    }

    fn info(&self) -> std::sync::MutexGuard<'_, SessionInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `to` if the machine allows it (forward only).
    fn transition(&mut self, to: SessionState) {
        let (moved, ended) = self.session.advance(to);
        self.ended_reoffer(ended, Error::SessionTerminated);
        if moved {
            self.publish();
        }
    }

    /// Ends the session for `reason`, unless it had one already (the machine may have ended
    /// it first: the ACK's timeout, the session timer).
    fn terminate(&mut self, reason: EndReason) {
        self.info().end.get_or_insert_with(|| Box::new(reason));
        let ended = self.session.terminate();
        self.ended_reoffer(ended, Error::SessionTerminated);
        self.publish();
    }

    /// The session is past established: a re-offer of ours that waits (for its retry or
    /// for the ACK) will not go, and whoever asked for it hears `why`. One on the wire
    /// still gets its response.
    fn end_reoffers(&mut self, why: Error) {
        let ended = self.session.end_reoffers();
        self.ended_reoffer(ended, why);
    }

    /// The machine ended a re-offer of ours that waited (`ended`): whoever asked for it
    /// hears `why`.
    fn ended_reoffer(&mut self, ended: Option<Kind>, why: Error) {
        if ended.is_some() {
            if let Some(p) = self.pending.take() {
                let _ = p.reply.send(Err(why));
            }
        }
    }

    /// A callee's INVITE: the task's own until the final response, then as the session's
    /// info keeps it (parsed again if nobody holds it).
    fn received_invite(&self) -> Option<Arc<Request>> {
        match &self.role {
            Role::Uas(u) => u
                .request
                .clone()
                .or_else(|| self.info().invite.as_ref()?.get()),
            Role::Uac(_) => None,
        }
    }

    /// Once the INVITE's final response went (or the session ended unanswered), the task
    /// no longer holds it parsed: a held call keeps its bytes only.
    fn let_go_of_invite(&mut self) {
        if self.session.life().may_answer() {
            return;
        }
        if let Role::Uas(u) = &mut self.role {
            u.request = None;
        }
    }

    fn done(&self) -> bool {
        // a re-INVITE's 2xx still wants its ACK, so its transaction is waited for
        self.session.done() && self.requests.is_empty()
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
    async fn run(self: Box<Self>, invitation: Option<Invitation>) {
        if let Some(inv) = invitation {
            // hand the only handle over: when the application drops it, we dispose
            self.shared.offer_invitation(inv);
        }
        self.resume().await
    }

    /// The session's loop: commands, driver inputs and the timer, until the session ends,
    /// or until it parks ([`park`]: established, idle for [`park::IDLE`] and nothing due
    /// sooner, a held call keeps no task). A parked session goes on in a new task at its
    /// next command or input, or when the driver wakes it at its deadline.
    async fn resume(mut self: Box<Self>) {
        // Each handler's future is boxed while it runs: the loop then keeps only its own
        // small state (a few hundred bytes) instead of room for the largest handler (about
        // 3 KB). One allocation per input, command or timer is the price.
        // one timer, moved only when the deadline moves (a new Sleep per input would register
        // and cancel a timer-wheel entry each time)
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed = None;
        // an established session idle this long parks (see `park`): a short call never does
        let mut idle_since = Instant::now();
        while !self.done() {
            let deadline = self.session.poll_timeout();
            let park_at =
                (self.current() == SessionState::Established).then(|| idle_since + park::IDLE);
            let wake = deadline.into_iter().chain(park_at).min();
            if let Some(at) = wake.filter(|at| armed != Some(*at)) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            let mut next = tokio::select! {
                input = self.inputs.recv() => Next::Input(input),
                cmd = self.commands.recv(), if !self.handles_gone => Next::Command(cmd),
                _ = &mut timer, if wake.is_some() => Next::Timer,
            };
            if matches!(next, Next::Timer) {
                armed = None;
                let now = Instant::now();
                let idle = park_at.is_some_and(|at| at <= now);
                if idle {
                    // whether it parks or not, it counts as idle from now on
                    idle_since = now;
                }
                if idle && deadline.is_none_or(|at| at > now + park::IDLE) {
                    match park::park(self, deadline) {
                        park::Parked::Yes => return,
                        park::Parked::No(task, waiting) => {
                            self = task;
                            match waiting {
                                Some(w) => next = w,
                                // the driver could not take the time: try again later
                                None => continue,
                            }
                        }
                    }
                }
            }
            if !matches!(next, Next::Timer) {
                idle_since = Instant::now();
            }
            match next {
                Next::Input(Some(i)) => Box::pin(self.on_input(i)).await,
                Next::Input(None) => {
                    self.terminate(EndReason::TransportError);
                    break;
                }
                Next::Command(Some(c)) => Box::pin(self.on_command(*c)).await,
                Next::Command(None) => {
                    self.handles_gone = true;
                    // unless a handle detached the session (SessionInfo::detached)
                    if !self.info().detached {
                        let _ = Box::pin(self.dispose()).await;
                    }
                }
                Next::Timer => {
                    let now = Instant::now();
                    self.session.handle_timeout(now);
                }
            }
            if self.current() > SessionState::Established {
                self.end_reoffers(Error::SessionTerminated);
            }
            if self.session.has_events() {
                Box::pin(self.on_events()).await;
            }
            self.publish();
            self.let_go_of_invite();
        }
        if let Some(sdh) = self.sdh.as_mut() {
            sdh.close();
        }
        let _ = Box::pin(self.shared.commands.send(Command::Detach { key: self.key })).await;
    }

    /// Does what the machine asks for (its timers fired, or the ACK came or never did).
    async fn on_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            let event = match event {
                SessionEvent::Life(e) => e,
                SessionEvent::Reoffer(e) => {
                    self.on_reoffer_event(e).await;
                    continue;
                }
            };
            match event {
                lifecycle::Event::AnswerTimeout(status) => {
                    let _ = self
                        .reject(InvitationRejectOptions {
                            status_code: Some(status),
                            ..Default::default()
                        })
                        .await;
                }
                lifecycle::Event::SendBye => {
                    // ended: why is said before the handles see it
                    self.info()
                        .end
                        .get_or_insert_with(|| Box::new(EndReason::LocalBye));
                    self.publish();
                    if let Some((o, reply)) = self.bye_after_ack.take().map(|b| *b) {
                        self.send_bye(o, reply).await;
                    }
                }
                lifecycle::Event::ByeAbandoned => {
                    if let Some((_, reply)) = self.bye_after_ack.take().map(|b| *b) {
                        let acked =
                            !matches!(self.info().end.as_deref(), Some(EndReason::AckTimeout));
                        let _ = reply.send(Err(if acked {
                            Error::SessionTerminated
                        } else {
                            Error::Timeout
                        }));
                    }
                }
                lifecycle::Event::Refresh => self.refresh_session().await,
                lifecycle::Event::Expired => self.session_expired().await,
            }
        }
    }

    /// Does what the re-offer machine asks: our refused re-INVITE goes again, or a re-offer
    /// held for the ACK is asked for again.
    async fn on_reoffer_event(&mut self, event: ReofferEvent) {
        {
            let Some(p) = self.pending.take() else {
                self.session.reoffers_mut().not_sent();
                return;
            };
            match (event, p.request) {
                // the back-off after glare is over: the same re-INVITE again
                (ReofferEvent::Retry, Reoffer::ReInvite(o)) => {
                    self.start_reinvite(o, p.reply).await
                }
                // the ACK answered our 2xx's offer: the held re-offer is asked for again
                (ReofferEvent::Release(_), Reoffer::ReInvite(o)) => self.reinvite(o, p.reply).await,
                (ReofferEvent::Release(_), Reoffer::Update(o)) => {
                    self.send_update(o, p.reply).await
                }
                (ReofferEvent::Retry, Reoffer::Update(_)) => {}
            }
            // whatever did not go (the session moved on meanwhile) frees the machine
            self.session.reoffers_mut().not_sent();
        }
    }
}

#[cfg(test)]
mod tests {
    /// A session task is boxed while its call is doing something, and a held call's memory
    /// is counted in bytes (docs/PERFORMANCE.md): it stays in the allocator's 448-byte class.
    #[test]
    fn a_session_task_stays_in_the_448_byte_allocation_class() {
        let size = std::mem::size_of::<super::Task>();
        assert!(size <= 448, "Task is {size} bytes");
    }
}
