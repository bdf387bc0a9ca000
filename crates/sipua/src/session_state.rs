//! The state of a session ([`SessionState`]). A leaf of its own, below even the errors: an
//! [`Error::StateTransition`](crate::Error::StateTransition) reports the state a call was
//! refused in, and the error type is imported by every layer, so the state cannot live with
//! the sessions it describes (they sit at the top).

/// Where a session is (SIP.js `SessionState`). Moves only forward:
/// `Initial → Establishing → Established → Terminating → Terminated`, skipping allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionState {
    /// Created; no INVITE sent or answered yet.
    Initial,
    /// INVITE sent (caller) or being answered (callee).
    Establishing,
    /// 2xx sent or received and acknowledged.
    Established,
    /// Ending: CANCEL sent, or BYE waiting for the ACK of our 2xx.
    Terminating,
    /// Over.
    Terminated,
}
