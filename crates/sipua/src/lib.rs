//! # sipua
//!
//! The async SIP user-agent library: tokio driver, transports and the SIP.js-style API
//! (`UserAgent`, `Inviter`, `Invitation`, `Session`, `Registerer`, ...). Today it re-exports
//! the message layer; the rest lands with the project's next issues.

#![forbid(unsafe_code)]

pub use sipua_message as message;
pub use sipua_proto as proto;
