//! The errors of the session API, one enum with a variant per thing that can go wrong (the
//! SIP.js exceptions `RequestPendingError`, `SessionTerminatedError`, `StateTransitionError`...
//! become variants here), and the kinds of error kept inside it ([`TransportError`],
//! [`DnsError`], the media handler's [`SdhError`]). A leaf: every layer returns these, so
//! this module names nothing else of the crate but the [`SessionState`] an error reports (a
//! leaf below it).

use std::fmt;

use sipua_proto::ua::UaError;

use crate::session_state::SessionState;

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Another re-offer of ours (a re-INVITE or an UPDATE) is still under way, or an
    /// offer/answer exchange is open (RFC 3261 §14.1, RFC 3311 §5.1; SIP.js
    /// `RequestPendingError`); or a session's REFERs followed at once are at their bound
    /// (`sipua_proto::session::transfer::MAX_REFERS`).
    RequestPending,
    /// The session has ended; nothing more can be sent in it (SIP.js `SessionTerminatedError`).
    SessionTerminated,
    /// The call is not allowed in the current state, e.g. `accept()` on an answered
    /// invitation (SIP.js `StateTransitionError`).
    StateTransition {
        /// What was attempted.
        action: &'static str,
        /// The state it was attempted in.
        state: SessionState,
    },
    /// The user agent could not listen where its options say (`UserAgent::start`): the
    /// address is in use, not ours, or not allowed; `source` keeps the `io::Error`.
    Listen {
        /// The listener, as configured.
        listen: String,
        /// Why ([`IoError::kind`] tells `AddrInUse` from `AddrNotAvailable`...).
        source: IoError,
    },
    /// The session description handler failed (SIP.js `SessionDescriptionHandlerError`).
    SessionDescriptionHandler(SdhError),
    /// The media handler is out of a resource for now (no free RTP port pair); an incoming
    /// call is answered 503 with Retry-After.
    MediaUnavailable {
        /// What ran out.
        reason: String,
        /// Seconds after which to try again.
        retry_after: u32,
    },
    /// The peer's body has a content type no handler takes (SIP.js
    /// `ContentTypeUnsupportedError`).
    ContentTypeUnsupported(String),
    /// Sending failed on the wire: a connection refused or lost, a TLS handshake that
    /// failed (a certificate not trusted or for another name), a full send queue;
    /// [`TransportError::kind`] says which, and `source()` keeps the `io::Error` or
    /// `rustls::Error`.
    Transport(TransportError),
    /// No response came in time (Timer B or F, RFC 3261 §17.1).
    Timeout,
    /// The peer refused the request with this final response.
    Rejected {
        /// Status code, 300–699.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// The response itself, for its headers (Retry-After, Warning, Reason, a 3xx's
        /// Contacts); `None` when no response came (a transfer's outcome reported by NOTIFY,
        /// a 422 we sent ourselves).
        response: Option<sipua_message::Response>,
    },
    /// The target's host has no address: DNS said there is none, or no name server answered
    /// (RFC 3263 §4).
    Dns(DnsError),
    /// An argument is malformed (a URI, a header, a body).
    InvalidArgument(String),
    /// The user agent is not started, or has stopped.
    Stopped,
    /// The protocol core refused the command.
    Core(UaError),
    /// There is no call to act on, e.g. [`SimpleUser::answer`](crate::SimpleUser::answer)
    /// with no incoming call (SIP.js rejects with a plain `Error`).
    NoSession,
    /// The limit of simultaneous calls is reached
    /// ([`SessionManagerOptions::max_simultaneous_sessions`](crate::SessionManagerOptions);
    /// one for a [`SimpleUser`](crate::SimpleUser)).
    TooManySessions {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RequestPending => f.write_str("a request is already pending"),
            Error::SessionTerminated => f.write_str("the session has terminated"),
            Error::StateTransition { action, state } => {
                write!(f, "cannot {action} in state {state:?}")
            }
            Error::Listen { listen, source } => write!(f, "cannot listen on {listen}: {source}"),
            Error::SessionDescriptionHandler(e) => {
                write!(f, "session description handler: {e}")
            }
            Error::MediaUnavailable {
                reason,
                retry_after,
            } => write!(
                f,
                "media unavailable ({reason}); retry after {retry_after} s"
            ),
            Error::ContentTypeUnsupported(t) => write!(f, "unsupported content type {t}"),
            Error::Transport(e) => write!(f, "transport: {e}"),
            Error::Timeout => f.write_str("no response (timeout)"),
            Error::Rejected { status, reason, .. } => write!(f, "rejected: {status} {reason}"),
            Error::Dns(e) => e.fmt(f),
            Error::InvalidArgument(e) => write!(f, "invalid argument: {e}"),
            Error::Stopped => f.write_str("the user agent is not running"),
            Error::Core(e) => write!(f, "refused by the protocol core: {e}"),
            Error::NoSession => f.write_str("there is no call to act on"),
            Error::TooManySessions { limit } => {
                write!(f, "too many calls: at most {limit} at a time")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core(e) => Some(e),
            Error::Listen { source, .. } => Some(source.get_ref()),
            Error::Transport(e) => Some(e),
            Error::Dns(e) => Some(e),
            Error::SessionDescriptionHandler(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// `Ok` for a 2xx; [`Error::Rejected`] with the status and reason otherwise.
    pub(crate) fn check(response: &sipua_message::Response) -> Result<(), Error> {
        if response.is_success() {
            Ok(())
        } else {
            Err(Error::rejected(response))
        }
    }

    /// [`Error::Rejected`] by `response`.
    pub(crate) fn rejected(response: &sipua_message::Response) -> Error {
        Error::Rejected {
            status: response.status(),
            reason: response.reason().into_owned(),
            response: Some(response.clone()),
        }
    }
}

impl From<UaError> for Error {
    fn from(e: UaError) -> Error {
        match e {
            UaError::RequestPending => Error::RequestPending,
            e => Error::Core(e),
        }
    }
}

impl From<sipua_message::ParseError> for Error {
    fn from(e: sipua_message::ParseError) -> Error {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<SdhError> for Error {
    fn from(e: SdhError) -> Error {
        match e.retry_after() {
            Some(retry_after) => Error::MediaUnavailable {
                reason: e.message().to_owned(),
                retry_after,
            },
            None => Error::SessionDescriptionHandler(e),
        }
    }
}

/// Why a handler failed; a session answers 488 (or ends the call) when it does, or 503 with
/// Retry-After when the handler is out of a resource for now ([`SdhError::unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdhError {
    message: String,
    /// `Some(seconds)`: out of a resource (media ports), worth a retry after that long.
    retry_after: Option<u32>,
}

impl SdhError {
    /// A failure to negotiate or set up media (488 for an offer it could not answer).
    pub fn new(message: impl Into<String>) -> SdhError {
        SdhError {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The handler is out of a resource (no free RTP port pair): the caller is told to come
    /// back after `retry_after` seconds (503 with Retry-After, RFC 3261 §21.5.4) rather than
    /// that its offer is unacceptable.
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> SdhError {
        SdhError {
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For a failure of [`SdhError::unavailable`]: seconds after which to retry.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }
}

impl fmt::Display for SdhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SdhError {}

/// An `io::Error` kept as the source of an [`Error`]: shared so that `Error` stays `Clone`,
/// and compared by kind and text so that it stays `PartialEq`.
#[derive(Debug, Clone)]
pub struct IoError(std::sync::Arc<std::io::Error>);

impl IoError {
    /// The kind, to match on (`AddrInUse`, `PermissionDenied`...).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }

    /// The error itself.
    pub fn get_ref(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> IoError {
        IoError(std::sync::Arc::new(e))
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &IoError) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoError {}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A cause kept inside an error (an `io::Error`, a resolver's error), shared so that errors
/// stay `Clone`.
#[derive(Clone)]
struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// `: cause` after what was written, when there is one.
    fn write_after(cause: &Option<Cause>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match cause {
            Some(c) => write!(f, ": {}", c.0),
            None => Ok(()),
        }
    }

    /// The cause as `Error::source` gives it.
    fn as_source(cause: &Option<Cause>) -> Option<&(dyn std::error::Error + 'static)> {
        cause
            .as_ref()
            .map(|c| &*c.0 as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of failure a [`TransportError`] is, to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The operating system failed the connection or the send (refused, reset, network
    /// unreachable...), with its `io::ErrorKind`.
    Io(std::io::ErrorKind),
    /// The TLS handshake failed: the peer's certificate is not trusted or is for another
    /// name (RFC 5922 §7.2), the peer refused ours, or there are no trusted roots to check
    /// it with; [`TransportError::tls_error`] gives rustls's reason.
    Tls,
    /// No connection, or no TLS handshake, within the connect timeout.
    Timeout,
    /// The connection closed, or was lost, before the message went out or was answered.
    Closed,
    /// Too much is queued (a connection's send queue, the user agent's command queue).
    Overloaded,
}

/// A message that could not be sent, or a connection lost: where, of what kind, and the
/// underlying error as `source()`.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    context: Box<str>,
    source: Option<Cause>,
}

impl TransportError {
    /// A failure of `kind` described by `context` ("tcp connection to 192.0.2.1:5060").
    pub(crate) fn new(kind: TransportErrorKind, context: impl Into<Box<str>>) -> TransportError {
        TransportError {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// The `io::Error` `e` while doing `context`: of kind [`TransportErrorKind::Tls`] when it
    /// carries a `rustls::Error` (tokio-rustls reports a failed handshake, or an alert from
    /// the peer, that way), else of its `io::ErrorKind`.
    pub(crate) fn io(context: impl Into<Box<str>>, e: std::io::Error) -> TransportError {
        let tls = e
            .get_ref()
            .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>());
        TransportError {
            kind: if tls {
                TransportErrorKind::Tls
            } else {
                TransportErrorKind::Io(e.kind())
            },
            context: context.into(),
            source: Some(Cause(std::sync::Arc::new(e))),
        }
    }

    /// The same failure, said of `context` (which may name the request it cost).
    pub(crate) fn in_context(mut self, context: impl fmt::Display) -> TransportError {
        self.context = format!("{context}: {}", self.context).into();
        self
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The operating system's error, when there is one (connection refused, reset...).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.source.as_ref()?.0.downcast_ref::<std::io::Error>()
    }

    /// rustls's reason a TLS handshake failed (an invalid certificate, a name that does not
    /// match, an alert from the peer...).
    pub fn tls_error(&self) -> Option<&tokio_rustls::rustls::Error> {
        self.io_error()?.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        Cause::write_after(&self.source, f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Cause::as_source(&self.source)
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &TransportError) -> bool {
        self.to_string() == other.to_string() && self.kind == other.kind
    }
}

impl Eq for TransportError {}

/// What kind of failure a [`DnsError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsErrorKind {
    /// The name exists nowhere, or has no address (NXDOMAIN, no A/AAAA/SRV records).
    NotFound,
    /// No name server answered in time, or one answered with an error (SERVFAIL...).
    Failed,
    /// There is nothing to look up: the URI is not a SIP URI, or a dialog has no remote
    /// target.
    NoTarget,
}

/// A host that RFC 3263 server location could not turn into an address.
#[derive(Debug, Clone)]
pub struct DnsError {
    kind: DnsErrorKind,
    name: Box<str>,
    source: Option<Cause>,
}

impl DnsError {
    /// A failure of `kind` for `name`.
    pub(crate) fn new(kind: DnsErrorKind, name: impl Into<Box<str>>) -> DnsError {
        DnsError {
            kind,
            name: name.into(),
            source: None,
        }
    }

    /// The same, with the resolver's error kept as the source.
    pub(crate) fn with_source(
        mut self,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> DnsError {
        self.source = Some(Cause(std::sync::Arc::new(e)));
        self
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> DnsErrorKind {
        self.kind
    }

    /// The name (or URI) that was looked up.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DnsErrorKind::NotFound => write!(f, "no address for {}", self.name)?,
            DnsErrorKind::Failed => write!(f, "DNS lookup of {} failed", self.name)?,
            DnsErrorKind::NoTarget => write!(f, "nothing to look up: {}", self.name)?,
        }
        Cause::write_after(&self.source, f)
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Cause::as_source(&self.source)
    }
}

impl PartialEq for DnsError {
    fn eq(&self, other: &DnsError) -> bool {
        self.kind == other.kind && self.to_string() == other.to_string()
    }
}

impl Eq for DnsError {}
