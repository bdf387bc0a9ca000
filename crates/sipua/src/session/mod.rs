//! Sessions (SIP.js `Session`, `Inviter`, `Invitation`): an INVITE dialog and its media
//! handler, from the first INVITE to the BYE (RFC 3261 §13–§15, offer/answer per RFC 3264 §5
//! through the [`SessionDescriptionHandler`](crate::SessionDescriptionHandler)).
//!
//! Each session runs as a small task that owns its state and its media handler (a held call
//! that idles parks instead, with no task until its next message, command or timer); [`Session`],
//! [`Inviter`] and [`Invitation`] are cheap handles to it. State changes are published on a
//! `watch` channel ([`Session::state_change`]) and requests from the peer go to the
//! [`SessionDelegate`]. Dropping every handle of a session disposes of it (BYE, CANCEL or
//! 480, as [`Session::dispose`]).

mod kept;
mod refer;
mod task;

pub use refer::{ReferNotification, ReferTarget, Referral, Referrer, SessionReferOptions};
pub use sipua_proto::session::timer::SessionTimerOptions;
// a leaf of its own, so that `Error::StateTransition` names it without naming this module
pub use crate::session_state::SessionState;

use std::sync::{Arc, Mutex};

use sipua_message::{Header, Request, Response, Uri};
use sipua_proto::dialog::DialogId;
use tokio::sync::{mpsc, oneshot, watch};

use crate::commands::{Command, SessionKey, SESSION_QUEUE};
use crate::error::Error;
use crate::mailbox::MailboxReceiver;
use crate::sdh::{
    BodyAndContentType, SessionDescriptionHandlerModifier, SessionDescriptionHandlerOptions,
};
use crate::tasks::TaskHandle;
use crate::user_agent::{Shared, UserAgent};

pub(crate) use task::spawn_invitation;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// We sent BYE.
    LocalBye,
    /// The peer sent BYE.
    RemoteBye,
    /// The INVITE was refused (3xx–6xx), by the peer or, as 487, after our CANCEL.
    Rejected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// We rejected the invitation (or it timed out unanswered with 480).
    LocalReject {
        /// The status we sent.
        status: u16,
    },
    /// The caller cancelled the invitation.
    Cancelled,
    /// No response to the INVITE (Timer B).
    Timeout,
    /// The INVITE could not be sent.
    TransportError,
    /// Our 2xx was never acknowledged: the session ended with BYE (RFC 3261 §13.3.1.4).
    AckTimeout,
    /// The media failed: its negotiation, or the media handler found the peer gone (a
    /// WebRTC peer's consent lapsed or it closed DTLS, [`crate::SessionEnder`]). The session
    /// was ended with BYE (or 488 before an answer); the error says why.
    MediaFailure(Box<Error>),
    /// Disposed before it was established.
    Disposed,
    /// No session refresh came in time (RFC 4028 §10): we sent BYE.
    SessionExpired,
    /// An INVITE with Replaces took this session's place (RFC 3891 §3): we sent BYE, or
    /// CANCEL for a call not answered yet.
    Replaced,
}

/// What the application is told about requests inside a session (SIP.js
/// `SessionDelegate`). Called on the session's task: return quickly. A BYE, INFO, MESSAGE
/// or NOTIFY comes as an object to answer ([`crate::IncomingRequest`]); dropped unanswered,
/// it is accepted (200).
pub trait SessionDelegate: Send + Sync {
    /// The peer hung up. The session ends whatever the answer (200 by default).
    fn on_bye(&self, bye: crate::Bye) {
        bye.accept();
    }
    /// An INFO (RFC 6086): DTMF, say. Accepted (200) by default.
    fn on_info(&self, info: crate::Info) {
        info.accept();
    }
    /// A MESSAGE in the session (RFC 3428). Accepted (200) by default.
    fn on_message(&self, message: crate::Message) {
        message.accept();
    }
    /// A NOTIFY in the session (other than a REFER's progress, which the [`Referrer`]
    /// takes). Accepted (200) by default.
    fn on_notify(&self, notification: crate::IncomingRequest) {
        notification.accept();
    }
    /// A re-INVITE from the peer was answered with `status` (informational).
    fn on_invite(&self, _request: &Request, _status: u16) {}
    /// The ACK for our 2xx arrived.
    fn on_ack(&self, _request: &Request) {}
    /// The caller cancelled (the INVITE is answered 487).
    fn on_cancel(&self) {}
    /// A provisional response to our INVITE (180 Ringing, 183 Session Progress...). A
    /// sipua addition: SIP.js reports it through a request delegate.
    fn on_progress(&self, _response: &Response) {}
    /// An UPDATE from the peer (RFC 3311) was answered with `status` (informational).
    fn on_update(&self, _request: &Request, _status: u16) {}
    /// A REFER (RFC 3515): the peer asks us to call someone (a transfer). Accept it and
    /// place the call with [`Referral::make_inviter`]. The default refuses it (603): unlike
    /// SIP.js, which follows every REFER, sipua places no call the application did not ask
    /// for.
    fn on_refer(&self, referral: Referral) {
        drop(referral);
    }
}

/// Extra headers and an optional body for a request or response (SIP.js `RequestOptions`).
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Headers added as given.
    pub extra_headers: Vec<Header>,
    /// A body.
    pub body: Option<BodyAndContentType>,
}

/// Options of an [`Inviter`] (SIP.js `InviterOptions`).
#[derive(Clone, Default)]
pub struct InviterOptions {
    /// Apply an answer found in a provisional response right away (early media).
    pub early_media: bool,
    /// Send the INVITE without an offer: the peer offers in its 2xx, we answer in the ACK.
    pub invite_without_sdp: bool,
    /// Headers added to the INVITE.
    pub extra_headers: Vec<Header>,
    /// Hide our identity: `From: "Anonymous" <sip:anonymous@anonymous.invalid>` with
    /// `Privacy: id` (RFC 3323) and our address of record in `P-Preferred-Identity` for a
    /// trusted proxy (RFC 3325), as SIP.js does.
    pub anonymous: bool,
    /// Told about requests in the session.
    pub delegate: Option<Arc<dyn SessionDelegate>>,
    /// Passed to the media handler.
    pub session_description_handler_options: SessionDescriptionHandlerOptions,
    /// Applied to our descriptions.
    pub session_description_handler_modifiers: Vec<SessionDescriptionHandlerModifier>,
}

/// Options of [`Inviter::invite`] (SIP.js `InviterInviteOptions`).
#[derive(Debug, Clone, Default)]
pub struct InviterInviteOptions {
    /// Headers added to this INVITE.
    pub extra_headers: Vec<Header>,
}

/// Options of [`Inviter::cancel`] (SIP.js `InviterCancelOptions`): a status and phrase become
/// `Reason: SIP;cause=..;text=".."` (RFC 3326).
#[derive(Debug, Clone, Default)]
pub struct InviterCancelOptions {
    /// The Reason cause.
    pub status_code: Option<u16>,
    /// The Reason text.
    pub reason_phrase: Option<String>,
    /// Headers added to the CANCEL.
    pub extra_headers: Vec<Header>,
}

/// Options of [`Invitation::accept`] (SIP.js `InvitationAcceptOptions`).
#[derive(Debug, Clone, Default)]
pub struct InvitationAcceptOptions {
    /// Headers added to the 200.
    pub extra_headers: Vec<Header>,
}

/// Options of [`Invitation::progress`] (SIP.js `InvitationProgressOptions`).
#[derive(Debug, Clone, Default)]
pub struct InvitationProgressOptions {
    /// 101–199; 180 when `None`. A 183 carries our session description (early media).
    pub status_code: Option<u16>,
    /// A reason phrase other than the standard one.
    pub reason_phrase: Option<String>,
    /// Headers added to the response.
    pub extra_headers: Vec<Header>,
    /// A body instead of the media handler's description.
    pub body: Option<BodyAndContentType>,
    /// Send it reliably (RFC 3262, SIP.js `rel100`): `Require: 100rel`, retransmitted until
    /// the caller's PRACK, which [`Invitation::progress`] then waits for. Always so when the
    /// INVITE requires 100rel; refused with [`Error::InvalidArgument`] when the caller does
    /// not support it.
    pub rel100: bool,
}

/// Options of [`Invitation::reject`] (SIP.js `InvitationRejectOptions`).
#[derive(Debug, Clone, Default)]
pub struct InvitationRejectOptions {
    /// 300–699; 480 when `None`. A 3xx redirects: put the new target in a Contact header.
    pub status_code: Option<u16>,
    /// A reason phrase other than the standard one.
    pub reason_phrase: Option<String>,
    /// Headers added to the response.
    pub extra_headers: Vec<Header>,
}

/// Options of [`Session::update`] (RFC 3311; SIP.js has no UPDATE).
#[derive(Debug, Clone, Default)]
pub struct SessionUpdateOptions {
    /// Headers added to the UPDATE.
    pub extra_headers: Vec<Header>,
    /// Send no offer: the UPDATE only refreshes the session (RFC 4028) or the target.
    pub without_sdp: bool,
    /// Replaces the session's media options for this offer (e.g. `hold`).
    pub session_description_handler_options: Option<SessionDescriptionHandlerOptions>,
}

/// Options of [`Session::invite`], a re-INVITE (SIP.js `SessionInviteOptions`).
#[derive(Debug, Clone, Default)]
pub struct SessionInviteOptions {
    /// Headers added to the re-INVITE.
    pub extra_headers: Vec<Header>,
    /// Send no offer: the peer offers in its 2xx and we answer in the ACK.
    pub without_sdp: bool,
    /// Replaces the session's media options for this offer (e.g. `hold`).
    pub session_description_handler_options: Option<SessionDescriptionHandlerOptions>,
}

pub(crate) use crate::tasks::Reply;

/// What handles ask of the session task.
pub(crate) enum SessionCommand {
    Invite(InviterInviteOptions, Reply<()>),
    Cancel(InviterCancelOptions, Reply<()>),
    Accept(InvitationAcceptOptions, Reply<()>),
    Progress(InvitationProgressOptions, Reply<()>),
    Reject(InvitationRejectOptions, Reply<()>),
    Bye(RequestOptions, Reply<Response>),
    Request(sipua_message::Method, RequestOptions, Reply<Response>),
    ReInvite(SessionInviteOptions, Reply<()>),
    Dispose(Reply<()>),
    Dtmf(String, Reply<()>),
    Update(SessionUpdateOptions, Reply<()>),
    Refer(ReferTarget, SessionReferOptions, Reply<Referrer>),
    /// Answer a request the application holds (a REFER).
    Respond(
        sipua_proto::endpoint::TransactionId,
        u16,
        Vec<Header>,
        Reply<()>,
    ),
    /// The media handler says the media is gone (the peer left: ICE consent lost, DTLS
    /// closed): the session ends with BYE.
    MediaEnded(crate::SdhError),
    /// A NOTIFY of the implicit subscription of the peer's REFER with CSeq `event_id`.
    ReferNotify {
        event_id: u32,
        sipfrag: String,
        terminated: bool,
        reply: Reply<()>,
    },
}

/// What handles can read without asking the task.
#[derive(Default)]
pub(crate) struct SessionInfo {
    pub(crate) dialog: Option<DialogId>,
    /// Boxed: set once, at the end (24 bytes less for every live call).
    pub(crate) end: Option<Box<EndReason>>,
    pub(crate) remote_description: Option<BodyAndContentType>,
    pub(crate) media: Option<Arc<dyn std::any::Any + Send + Sync>>,
    // boxed, as the asserted identity: each is 176 bytes, and a callee's session sets none
    pub(crate) local_identity: Option<Box<sipua_message::NameAddr>>,
    pub(crate) remote_identity: Option<Box<sipua_message::NameAddr>>,
    /// A callee's INVITE: its To and From are the identities when none were set. Kept as
    /// its bytes once nobody holds the parsed form ([`kept`]).
    pub(crate) invite: Option<Arc<kept::KeptRequest>>,
    pub(crate) asserted_identity: Option<Box<sipua_message::NameAddr>>,
    /// What only a caller's session knows (boxed: a callee's, most of a server's, has none).
    pub(crate) caller: Option<Box<CallerInfo>>,
    /// Who is told about requests in this session: from the options, or set by a handle
    /// after the session started (SIP.js sets `session.delegate` the same way).
    pub(crate) delegate: Option<Arc<dyn SessionDelegate>>,
    /// [`Session::detach`]: the last handle going does not end the session.
    pub(crate) detached: bool,
}

/// What handles read of a caller's session only.
#[derive(Default)]
pub(crate) struct CallerInfo {
    /// Why the INVITE could not be sent, when the session ended so.
    pub(crate) send_failure: Option<crate::TransportError>,
    /// The final response that refused the INVITE.
    pub(crate) final_response: Option<sipua_message::Response>,
    /// The INVITE as last sent (a 401/407 or 422 sends it again, changed).
    pub(crate) sent_invite: Option<Arc<sipua_message::Request>>,
}

impl SessionInfo {
    /// The caller's part, made on first use.
    pub(crate) fn caller_mut(&mut self) -> &mut CallerInfo {
        self.caller.get_or_insert_with(Default::default)
    }
}

/// Who we are in a session: as set, else the To of a callee's INVITE.
pub(crate) fn local_identity_of(info: &Mutex<SessionInfo>) -> Option<sipua_message::NameAddr> {
    let i = info.lock().unwrap_or_else(|e| e.into_inner());
    i.local_identity
        .as_deref()
        .cloned()
        .or_else(|| i.invite.as_ref()?.get()?.to().ok().map(identity))
}

/// Who the peer is: as set, else the From of a callee's INVITE.
pub(crate) fn remote_identity_of(info: &Mutex<SessionInfo>) -> Option<sipua_message::NameAddr> {
    let i = info.lock().unwrap_or_else(|e| e.into_inner());
    i.remote_identity
        .as_deref()
        .cloned()
        .or_else(|| i.invite.as_ref()?.get()?.from().ok().map(identity))
}

/// What the session's media handler reads of it (`SessionContext`'s identities and request).
impl crate::sdh::SessionView for Mutex<SessionInfo> {
    fn local_identity(&self) -> Option<sipua_message::NameAddr> {
        local_identity_of(self)
    }

    fn remote_identity(&self) -> Option<sipua_message::NameAddr> {
        remote_identity_of(self)
    }

    fn request(&self) -> Option<Arc<sipua_message::Request>> {
        let i = self.lock().unwrap_or_else(|e| e.into_inner());
        i.invite.as_ref()?.get()
    }
}

/// A media handler's [`crate::SessionEnder`] posts its reason; the session takes it as this
/// command.
impl From<crate::sdh::SdhError> for Box<SessionCommand> {
    fn from(why: crate::sdh::SdhError) -> Self {
        Box::new(SessionCommand::MediaEnded(why))
    }
}

/// A From or To without its tag: who a party is, not which dialog.
pub(crate) fn identity(a: &sipua_message::NameAddr) -> sipua_message::NameAddr {
    let mut a = a.clone();
    a.params.remove("tag");
    a
}

struct Handle {
    task: TaskHandle<Box<SessionCommand>, SessionState>,
    info: Arc<Mutex<SessionInfo>>,
}

/// A call, from either side (SIP.js `Session`). [`Inviter`] and [`Invitation`] dereference
/// to it. Clones are handles to the same session.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they are handles to the same session (so a
/// [`SessionManager`](crate::SessionManager) can find the call it is handed back).
impl PartialEq for Session {
    fn eq(&self, other: &Session) -> bool {
        Arc::ptr_eq(&self.handle.info, &other.handle.info)
    }
}

impl Eq for Session {}

impl Session {
    fn new(
        commands: crate::mailbox::Mailbox<Box<SessionCommand>>,
        state: Arc<crate::tasks::Watched<SessionState>>,
        info: Arc<Mutex<SessionInfo>>,
    ) -> Session {
        Session {
            handle: Arc::new(Handle {
                task: TaskHandle::new(commands, state),
                info,
            }),
        }
    }

    /// Sets who is told about requests in this session (replacing any delegate given in
    /// the options); typically called on an [`Invitation`] before answering it.
    pub fn set_delegate(&self, delegate: Arc<dyn SessionDelegate>) {
        self.shared_info().delegate = Some(delegate);
    }

    fn shared_info(&self) -> std::sync::MutexGuard<'_, SessionInfo> {
        self.handle.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> SessionCommand) -> Result<T, Error> {
        self.handle.task.ask(|r| Box::new(make(r))).await
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.handle.task.state()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<SessionState> {
        self.handle.task.state_change()
    }

    /// Waits until the session is established; an error says why it ended instead.
    pub async fn established(&self) -> Result<(), Error> {
        // the receiver awaited in place: a nested async helper would grow every caller's
        // future (an application that keeps a task per call pays it per call)
        let mut rx = self.state_change();
        let s = *rx
            .wait_for(|s| *s >= SessionState::Established)
            .await
            .map_err(|_| Error::SessionTerminated)?;
        if s == SessionState::Established {
            return Ok(());
        }
        Err(match self.end_reason() {
            Some(EndReason::Rejected { status, reason }) => Error::Rejected {
                status,
                reason,
                response: self
                    .shared_info()
                    .caller
                    .as_ref()
                    .and_then(|c| c.final_response.clone()),
            },
            Some(EndReason::Timeout) => Error::Timeout,
            Some(EndReason::TransportError) => Error::Transport(match self.send_failure() {
                Some(why) => why.in_context("the INVITE could not be sent"),
                None => crate::TransportError::new(
                    crate::TransportErrorKind::Closed,
                    "the INVITE could not be sent",
                ),
            }),
            _ => Error::SessionTerminated,
        })
    }

    /// Waits until the session has terminated and says why.
    pub async fn terminated(&self) -> EndReason {
        let mut rx = self.state_change();
        let _ = rx.wait_for(|s| *s == SessionState::Terminated).await;
        self.end_reason().unwrap_or(EndReason::Disposed)
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared_info().end.as_deref().cloned()
    }

    /// Why the INVITE could not be sent, when the session ended with
    /// [`EndReason::TransportError`]: the connection refused, the TLS handshake's error (a
    /// certificate for another name, say), the closed flow of a WebSocket client...
    pub fn send_failure(&self) -> Option<crate::TransportError> {
        self.shared_info()
            .caller
            .as_ref()
            .and_then(|c| c.send_failure.clone())
    }

    /// Who we are in this call (SIP.js `localIdentity`): our From as a caller, the To of
    /// the INVITE as a callee.
    pub fn local_identity(&self) -> Option<sipua_message::NameAddr> {
        local_identity_of(&self.handle.info)
    }

    /// Who the peer is (SIP.js `remoteIdentity`): the caller's From, or the callee's To as
    /// its answer gave it (the target until then).
    pub fn remote_identity(&self) -> Option<sipua_message::NameAddr> {
        remote_identity_of(&self.handle.info)
    }

    /// The peer's identity as a trusted proxy asserted it (P-Asserted-Identity, RFC 3325;
    /// SIP.js `assertedIdentity`), from the INVITE or the 2xx.
    pub fn asserted_identity(&self) -> Option<sipua_message::NameAddr> {
        self.shared_info().asserted_identity.as_deref().cloned()
    }

    /// The session's id as SIP.js makes it: the Call-ID followed by the caller's From tag.
    /// A callee knows it from the start; a caller once its INVITE has made a dialog.
    pub fn id(&self) -> Option<String> {
        let info = self.shared_info();
        if let Some(invite) = info.invite.as_ref().and_then(|i| i.get()) {
            return Some(format!(
                "{}{}",
                invite.call_id(),
                invite.from_tag().unwrap_or_default()
            ));
        }
        info.dialog
            .as_ref()
            .map(|d| format!("{}{}", d.call_id, d.local_tag))
    }

    /// The dialog (Call-ID and tags), once there is one.
    pub fn dialog(&self) -> Option<DialogId> {
        self.shared_info().dialog.clone()
    }

    /// The peer's last session description (offer or answer).
    pub fn remote_description(&self) -> Option<BodyAndContentType> {
        self.shared_info().remote_description.clone()
    }

    /// The media handler's handle, if it offers one of type `T` (for `sipua-media`'s
    /// `RtpAudio`, its `MediaHandle`: statistics, DTMF events). Available once the session
    /// has made its first offer or answer.
    pub fn media<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let any = self.shared_info().media.clone()?;
        any.downcast::<T>().ok()
    }

    /// Sends DTMF tones through the media handler (RFC 4733 telephone-events with
    /// `RtpAudio`): `0-9`, `*`, `#`, `A-D`, and `,` for a pause. Fails with
    /// [`Error::SessionDescriptionHandler`] when the handler cannot send them.
    pub async fn send_dtmf(&self, tones: &str) -> Result<(), Error> {
        let tones = tones.to_owned();
        self.ask(|r| SessionCommand::Dtmf(tones, r)).await
    }

    /// Hangs up an established session (BYE) and returns the BYE's final response. The
    /// state is `Terminated` as soon as the BYE is sent; a callee whose 2xx is not yet
    /// acknowledged waits for the ACK first (RFC 3261 §15).
    pub async fn bye(&self) -> Result<Response, Error> {
        self.bye_with(RequestOptions::default()).await
    }

    /// [`Session::bye`] with extra headers or a body.
    pub async fn bye_with(&self, options: RequestOptions) -> Result<Response, Error> {
        self.ask(|r| SessionCommand::Bye(options, r)).await
    }

    /// Sends INFO (RFC 6086) and returns its final response (SIP.js `session.info()`).
    pub async fn info(&self, options: RequestOptions) -> Result<Response, Error> {
        self.ask(|r| SessionCommand::Request(sipua_message::Method::Info, options, r))
            .await
    }

    /// Sends MESSAGE inside the session and returns its final response.
    pub async fn message(&self, options: RequestOptions) -> Result<Response, Error> {
        self.ask(|r| SessionCommand::Request(sipua_message::Method::Message, options, r))
            .await
    }

    /// Re-INVITE: a new offer (e.g. hold) in an established session. Resolves when the
    /// re-INVITE is answered: `Ok` for 2xx, [`Error::Rejected`] otherwise (the previous
    /// media stays). A 491 (glare) is retried after the back-off of RFC 3261 §14.1, up to
    /// three times. A call while a re-INVITE or UPDATE of ours is under way (sent, or
    /// waiting out that back-off), or while another offer/answer exchange is open, is
    /// [`Error::RequestPending`]; one made while our 2xx's offer
    /// waits for its answer in the ACK goes once the ACK has come.
    pub async fn invite(&self, options: SessionInviteOptions) -> Result<(), Error> {
        self.ask(|r| SessionCommand::ReInvite(options, r)).await
    }

    /// UPDATE (RFC 3311): a new offer without a re-INVITE, also in an early dialog (before
    /// the call is answered, once a provisional response made the dialog). Resolves when
    /// the UPDATE is answered: `Ok` for 2xx (the answer is applied), [`Error::Rejected`]
    /// otherwise (491 on glare, the previous media stays). A call while a re-INVITE or UPDATE
    /// of ours is under way (one without a body included), or while the peer's offer awaits
    /// our answer, is [`Error::RequestPending`];
    /// one made while our 2xx's offer waits for its answer in the ACK goes once the ACK
    /// has come. Without a body (`without_sdp`) it is a refresh and opens no exchange.
    pub async fn update(&self, options: SessionUpdateOptions) -> Result<(), Error> {
        self.ask(|r| SessionCommand::Update(options, r)).await
    }

    /// Transfers the peer (REFER, RFC 3515): to a URI (blind transfer) or to the peer of
    /// another session, whose call the new one replaces (attended transfer, RFC 3891).
    /// Resolves once the peer accepts the REFER (2xx); the [`Referrer`] then reports the
    /// transfer's progress. Hanging up afterwards is the application's choice.
    ///
    /// ```no_run
    /// # async fn demo(session: sipua::Session) -> Result<(), sipua::Error> {
    /// let referrer = session.refer("sip:carol@example.com".parse::<sipua::message::Uri>()?, Default::default()).await?;
    /// referrer.outcome().await?; // Carol answered the transferred call
    /// session.bye().await?;
    /// # Ok(()) }
    /// ```
    pub async fn refer(
        &self,
        to: impl Into<ReferTarget>,
        options: SessionReferOptions,
    ) -> Result<Referrer, Error> {
        let to = to.into();
        self.ask(|r| SessionCommand::Refer(to, options, r)).await
    }

    /// Lets the session run to its end without handles: from now on the last handle going
    /// does not end the call (as it otherwise does, SIP.js's dispose), which then ends as any
    /// call does: a BYE or CANCEL from the peer, its timers, the media handler, or
    /// [`UserAgent::stop`](crate::UserAgent::stop). For a server that answers and forgets,
    /// so that it need not keep a task per call only to hold its handle. Nothing to undo:
    /// the handles that remain work as before. A flag the task reads when the last handle
    /// goes: no round trip to the task.
    pub fn detach(&self) {
        self.shared_info().detached = true;
    }

    /// Ends the session whatever its state: CANCEL or BYE for a caller, 480 or BYE for a
    /// callee; nothing once terminated.
    pub async fn dispose(&self) -> Result<(), Error> {
        match self.ask(SessionCommand::Dispose).await {
            Err(Error::SessionTerminated) => Ok(()),
            r => r,
        }
    }
}

/// An outgoing call (SIP.js `Inviter`).
#[derive(Clone, Debug)]
pub struct Inviter {
    session: Session,
}

impl std::ops::Deref for Inviter {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Inviter {
    /// A call to `target` from `ua` (which must be started). Nothing is sent until
    /// [`Inviter::invite`].
    pub fn new(ua: &UserAgent, target: Uri, options: InviterOptions) -> Result<Inviter, Error> {
        let shared = ua.shared().ok_or(Error::Stopped)?;
        let session = task::spawn_inviter(shared, target, options)?;
        Ok(Inviter { session })
    }

    /// The session handle.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The INVITE as sent (SIP.js `inviter.request`), once [`Inviter::invite`] has sent it:
    /// the Call-ID, From tag and headers the peer sees. After a 422 this is the INVITE sent
    /// again; a retry answering a challenge (401/407) keeps its Call-ID and tags but has a
    /// new CSeq and the credentials.
    pub fn request(&self) -> Option<Arc<Request>> {
        self.session
            .shared_info()
            .caller
            .as_ref()
            .and_then(|c| c.sent_invite.clone())
    }

    /// Sends the INVITE (with an offer from the media handler, unless `invite_without_sdp`).
    /// Resolves once it is sent; follow [`Session::state_change`] or await
    /// [`Session::established`] for the outcome. On an established session it re-INVITEs.
    pub async fn invite(&self, options: InviterInviteOptions) -> Result<(), Error> {
        self.session
            .ask(|r| SessionCommand::Invite(options, r))
            .await
    }

    /// Cancels the INVITE (RFC 3261 §9.1). The CANCEL leaves once a provisional response has
    /// come; if the callee answers anyway, the call is acknowledged and ended with BYE.
    pub async fn cancel(&self, options: InviterCancelOptions) -> Result<(), Error> {
        self.session
            .ask(|r| SessionCommand::Cancel(options, r))
            .await
    }
}

/// An incoming call (SIP.js `Invitation`), from the delegate or
/// [`UserAgent::next_invitation`].
#[derive(Clone, Debug)]
pub struct Invitation {
    session: Session,
    request: Arc<Request>,
}

impl std::ops::Deref for Invitation {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Invitation {
    /// The session handle.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The INVITE. An `Invitation` holds it parsed (about 1.3 KB); once the call is
    /// answered, keep [`Invitation::session`] instead for a long call: the session then
    /// keeps only the INVITE's bytes, and its identities and id still read from them.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Answers 200 with our description (the answer to the INVITE's offer, or an offer).
    /// Resolves once the 200 is sent; the session is then `Established`.
    pub async fn accept(&self, options: InvitationAcceptOptions) -> Result<(), Error> {
        self.session
            .ask(|r| SessionCommand::Accept(options, r))
            .await
    }

    /// Sends a provisional response (180 by default; 183 carries our description).
    pub async fn progress(&self, options: InvitationProgressOptions) -> Result<(), Error> {
        self.session
            .ask(|r| SessionCommand::Progress(options, r))
            .await
    }

    /// Refuses the call (480 by default; 3xx redirects).
    pub async fn reject(&self, options: InvitationRejectOptions) -> Result<(), Error> {
        self.session
            .ask(|r| SessionCommand::Reject(options, r))
            .await
    }

    /// Rejects without waiting (used when no one takes the invitation).
    pub(crate) fn reject_nowait(&self, status: u16) {
        let (tx, _rx) = oneshot::channel();
        let _ = self
            .session
            .handle
            .task
            .commands()
            .try_send(Box::new(SessionCommand::Reject(
                InvitationRejectOptions {
                    status_code: Some(status),
                    ..Default::default()
                },
                tx,
            )));
    }
}

/// Creates the input channel of a new session and registers it with the driver.
fn attach(
    shared: &Shared,
    key: SessionKey,
) -> Result<MailboxReceiver<crate::commands::SessionInput>, Error> {
    let (sink, inputs) = crate::mailbox::mailbox(SESSION_QUEUE);
    shared
        .commands
        .try_send(Command::Attach { key, sink })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Transport(crate::TransportError::new(
                crate::TransportErrorKind::Overloaded,
                "the user agent is overloaded",
            )),
            mpsc::error::TrySendError::Closed(_) => Error::Stopped,
        })?;
    Ok(inputs)
}
