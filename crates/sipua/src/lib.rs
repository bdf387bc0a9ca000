//! # sipua
//!
//! The async SIP user-agent library: tokio driver, transports and the SIP.js-style API
//! (`UserAgent`, `Inviter`, `Invitation`, `Session`, `Registerer`, ...). Today: a UDP driver
//! for the sans-IO core ([`udp::UdpUserAgent`]); the rest lands with the project's next issues.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod udp;

pub use sipua_message as message;
pub use sipua_proto as proto;
