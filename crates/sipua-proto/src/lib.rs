//! # sipua-proto
//!
//! The sans-IO core of sipua (RFC 3261 §8, §12, §17, §22): transactions, dialogs, the UA core
//! and digest authentication as plain state machines driven by `handle_*(now, input)` and
//! drained with `poll_*()`. Nothing here reads a clock, opens a socket or spawns a task: time
//! is an argument, output is data.
//!
//! Built so far: the four transaction machines of RFC 3261 §17 with RFC 6026
//! ([`transaction`]) and digest authentication, client and server side ([`auth::digest`]).
//! The UA core that owns and routes them comes next.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod dialog;
pub mod endpoint;
#[doc(hidden)] // shared with the other sipua crates, not part of the API
pub mod hash;
pub mod locate;
#[doc(hidden)] // shared with the other sipua crates, not part of the API
pub mod rng;
#[cfg(any(test, feature = "test-util"))]
pub mod sim;
mod timers;
pub mod transaction;
pub mod ua;

pub use sipua_message as message;
