//! Authentication (RFC 3261 §22).

pub mod digest;
pub mod server;
