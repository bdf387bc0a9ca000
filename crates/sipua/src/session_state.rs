//! The state of a session ([`SessionState`]). A leaf of its own, below even the errors: an
//! [`Error::StateTransition`](crate::Error::StateTransition) reports the state a call was
//! refused in, and the error type is imported by every layer, so the state cannot live with
//! the sessions it describes (they sit at the top). The enum itself is the sans-IO core's
//! (`sipua_proto::session::lifecycle`), whose machine moves it.

pub use sipua_proto::session::SessionState;
