//! The errors of the session API, one enum with a variant per thing that can go wrong (the
//! SIP.js exceptions `RequestPendingError`, `SessionTerminatedError`, `StateTransitionError`...
//! become variants here).

use std::fmt;

use sipua_proto::ua::UaError;

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A request of the same kind is still waiting for its final response (a second
    /// re-INVITE, RFC 3261 §14.1; SIP.js `RequestPendingError`).
    RequestPending,
    /// The session has ended; nothing more can be sent in it (SIP.js `SessionTerminatedError`).
    SessionTerminated,
    /// The call is not allowed in the current state, e.g. `accept()` on an answered
    /// invitation (SIP.js `StateTransitionError`).
    StateTransition {
        /// What was attempted.
        action: &'static str,
        /// The state it was attempted in.
        state: crate::SessionState,
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
    SessionDescriptionHandler(String),
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
    /// Sending failed, or the transport is closed.
    Transport(String),
    /// No response came in time (Timer B or F, RFC 3261 §17.1).
    Timeout,
    /// The peer refused the request with this final response.
    Rejected {
        /// Status code, 300–699.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The target cannot be reached: no address for its host.
    Unresolvable(String),
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
            Error::Rejected { status, reason } => write!(f, "rejected: {status} {reason}"),
            Error::Unresolvable(h) => write!(f, "no address for {h}"),
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
            Err(Error::Rejected {
                status: response.status(),
                reason: response.reason().into_owned(),
            })
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

impl From<crate::sdh::SdhError> for Error {
    fn from(e: crate::sdh::SdhError) -> Error {
        match e.retry_after() {
            Some(retry_after) => Error::MediaUnavailable {
                reason: e.message().to_owned(),
                retry_after,
            },
            None => Error::SessionDescriptionHandler(e.message().to_owned()),
        }
    }
}

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
