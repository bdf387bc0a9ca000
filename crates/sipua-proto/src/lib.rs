//! # sipua-proto
//!
//! The sans-IO core of sipua (RFC 3261 §8, §12, §17, §22): transactions, dialogs, the UA core
//! and digest authentication as a plain state machine driven by `handle_*(now, input)` and
//! drained with `poll_*()`. Not written yet: see the project's issues.

#![forbid(unsafe_code)]

pub use sipua_message as message;
