//! The vocabulary between the API's tasks and the driver: the [`Command`]s handles and tasks
//! send, the [`SessionInput`]s the driver routes to a session task, the keys that name
//! tasks. A leaf: it names protocol and transport types but neither the driver nor the API
//! objects, so both sides depend on it and not on each other (issue 17's "arrows one way").

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sipua_message::header::MediaType;
use sipua_message::{Header, Method, NameAddr, Request, Response, Transport, Uri};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::TransactionId;
use sipua_proto::ua::OutOfDialog;
use tokio::sync::oneshot;

use crate::error::TransportError;
use crate::mailbox::Mailbox;
use crate::tasks::Reply;

/// Inputs a session task may fall behind on before the driver sheds load for it.
pub(crate) const SESSION_QUEUE: usize = 256;

/// Names a session task inside one user agent.
pub(crate) type SessionKey = u64;

/// What the driver passes to a session task.
#[derive(Debug)]
pub(crate) enum SessionInput {
    /// A response to one of the session's requests.
    Response {
        id: TransactionId,
        response: Response,
        dialog: Option<DialogId>,
    },
    /// A request inside one of the session's dialogs, or its initial INVITE.
    Request { id: TransactionId, request: Request },
    /// The ACK for our 2xx.
    Ack { request: Request },
    /// Our 2xx was never acknowledged; the core sent BYE.
    AckTimeout,
    /// The PRACK for our reliable provisional response (answered 200 by the core).
    Prack { request: Request },
    /// No PRACK came for our reliable provisional: the core refused the INVITE with 504.
    PrackTimeout,
    /// The peer cancelled the INVITE (already answered 487 by the core).
    Cancelled,
    /// A request of the session got no response, or could not be sent.
    Failed {
        id: TransactionId,
        timeout: bool,
        /// Why it could not be sent, when known (`None` for a timeout).
        reason: Option<TransportError>,
    },
    /// The user agent is stopping: end the session.
    Shutdown,
    /// The time a parked session asked for ([`Command::WakeAt`]) has come.
    Wake,
    /// An accepted INVITE with Replaces took this session's place (RFC 3891): end it.
    Replaced,
}

/// A body with its type, as the core takes it.
pub(crate) type Body = Option<(MediaType, Bytes)>;

/// What API handles and session tasks ask of the driver.
pub(crate) enum Command {
    /// A session task starts receiving inputs under `key`.
    Attach {
        key: SessionKey,
        sink: Mailbox<SessionInput>,
    },
    /// A session task has ended.
    Detach { key: SessionKey },
    /// A parked session (no task while it waits, `session::task::park`) is due at `at`:
    /// send it [`SessionInput::Wake`] then (its latest such time only).
    WakeAt {
        key: SessionKey,
        at: tokio::time::Instant,
    },
    /// A new INVITE for session `key`.
    Invite {
        key: SessionKey,
        target: Uri,
        destination: SocketAddr,
        transport: Option<Transport>,
        from: Option<Box<NameAddr>>,
        headers: Vec<Header>,
        body: Body,
        defer_ack: bool,
        /// The transaction and the INVITE as sent.
        reply: Reply<(TransactionId, Option<Arc<Request>>)>,
    },
    /// A response on server transaction `id`; a dialog it creates belongs to `key`.
    Respond {
        key: Option<SessionKey>,
        id: TransactionId,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
        body: Body,
        /// Send a 1xx reliably (RFC 3262: Require 100rel, RSeq, retransmitted until PRACK).
        reliable: bool,
        /// Where the outcome goes; `None` when nobody waits for it (a session answering a
        /// BYE ends without one more round trip to the driver).
        reply: Option<Reply<Option<DialogId>>>,
    },
    /// A request inside `dialog`; its responses go to session `key`.
    InDialog {
        key: SessionKey,
        dialog: DialogId,
        method: Method,
        headers: Vec<Header>,
        body: Body,
        defer_ack: bool,
        reply: Reply<TransactionId>,
    },
    /// The ACK (with the answer) of a 2xx whose INVITE carried no offer.
    Ack {
        dialog: DialogId,
        seq: u32,
        body: Body,
        reply: Reply<()>,
    },
    /// The PRACK (with the answer) of a reliable provisional response that carried the
    /// offer our INVITE did not make (RFC 3262 §5).
    Prack {
        dialog: DialogId,
        body: Body,
        reply: Reply<()>,
    },
    /// CANCEL our INVITE `id`.
    Cancel {
        id: TransactionId,
        reasons: Vec<Header>,
        reply: Reply<()>,
    },
    /// An out-of-dialog request (MESSAGE, OPTIONS...): the reply is its final response.
    Request {
        method: Method,
        target: Uri,
        destination: SocketAddr,
        /// Everything but the method and target (transport, headers, body, Call-ID...).
        opts: Box<OutOfDialog>,
        reply: Reply<Response>,
    },
    /// An out-of-dialog request whose responses, and the dialogs they or NOTIFYs create
    /// (SUBSCRIBE, REFER: matched by Call-ID), go to task `key`.
    RequestFor {
        key: SessionKey,
        method: Method,
        target: Uri,
        destination: SocketAddr,
        opts: Box<OutOfDialog>,
        reply: Reply<TransactionId>,
    },
    /// Session `key` has been replaced by an accepted INVITE with Replaces: it ends.
    Replaced { key: SessionKey },
    /// A copy of the core's state of `dialog` (remote target, tags...).
    DialogInfo {
        dialog: DialogId,
        reply: Reply<Option<sipua_proto::dialog::Dialog>>,
    },
    /// A task is done with `dialog` (a subscription that ended): the core forgets it.
    EndDialog { dialog: DialogId },
    /// End every session, wait for them (bounded), then stop.
    Stop { reply: oneshot::Sender<()> },
    /// Counts of what the agent holds.
    Stats { reply: oneshot::Sender<Stats> },
    /// SIP outbound is in use (a registration with `reg-id` succeeded): our Contact in
    /// dialog-forming messages carries `;ob` (RFC 5626 §4.3).
    Outbound(bool),
    /// Draining: every new request outside a dialog is answered 503 (see
    /// `UaCore::set_draining`).
    Draining(bool),
}

impl Command {
    /// A response with neither reason phrase nor body, sent unreliably: the common answer
    /// of a session or a subscription to a request of its peer.
    pub(crate) fn plain_response(
        key: Option<SessionKey>,
        id: TransactionId,
        status: u16,
        headers: Vec<Header>,
        reply: Option<Reply<Option<DialogId>>>,
    ) -> Command {
        Command::Respond {
            key,
            id,
            status,
            reason: None,
            headers,
            body: None,
            reliable: false,
            reply,
        }
    }
}

// here rather than beside `UserAgent`: the driver fills it in for `Command::Stats`, and
// names no API module
/// A snapshot of what a user agent holds ([`UserAgent::stats`](crate::UserAgent::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Session tasks alive (calls in any state).
    pub sessions: usize,
    /// Dialogs in the protocol core.
    pub dialogs: usize,
    /// Transactions in the protocol core.
    pub transactions: usize,
    /// Open TCP connections.
    pub connections: usize,
    /// Transactions whose events the agent routes to a session or a waiting request: those
    /// under way, however old the calls (a long call's INFOs and refreshes do not add up).
    pub routes: usize,
    /// New requests refused with 503 by overload control or draining
    /// ([`UserAgentOptions::max_pending_requests`](crate::UserAgentOptions::max_pending_requests),
    /// [`UserAgent::drain`](crate::UserAgent::drain)).
    pub shed: u64,
    /// The share of new INVITEs (percent) this agent asks RFC 7339 clients to hold back
    /// now ([`UserAgentOptions::overload_via`](crate::UserAgentOptions::overload_via)): 0
    /// when it refuses nothing, or without the option.
    pub overload_cut: u8,
    /// New INVITEs of ours held back, never sent, because their next hop asked for a cut
    /// (RFC 7339; [`Error::Core`](crate::Error::Core) with `Overloaded`).
    pub held_back: u64,
}
