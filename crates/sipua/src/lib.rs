//! # sipua
//!
//! The async SIP user-agent library, with the object model of SIP.js: a [`UserAgent`] that
//! owns a transport and the sans-IO protocol core ([`sipua_proto`]), [`Inviter`] and
//! [`Invitation`] for outgoing and incoming calls, both a [`Session`] with a
//! [`SessionState`] machine and a [`SessionDelegate`], and media behind a pluggable
//! [`SessionDescriptionHandler`].
//!
//! For applications that want a phone rather than a toolkit, [`SimpleUser`] (one call at a
//! time) and [`SessionManager`] (many) put the agent, its registration and its calls behind
//! one handle and one delegate, as SIP.js's `SimpleUser` and `SessionManager` do.
//!
//! One tokio task (the driver) owns the core and the socket; each session runs as a small
//! task of its own; the types here are handles that send commands and await answers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod commands;
pub mod dns;
mod driver;
mod error;
mod mailbox;
mod messager;
mod notifier;
mod publisher;
mod registerer;
pub mod sdh;
#[doc = include_str!("sipjs.md")]
pub mod sipjs {}
mod session;
mod session_manager;
mod session_state;
mod simple_user;
mod subscription;
mod tasks;
pub mod trace;
pub mod transport;
mod user_agent;

pub use commands::Stats;
pub use dns::{DnsResolver, Located};
pub use error::{DnsError, DnsErrorKind, Error, IoError, TransportError, TransportErrorKind};
pub use messager::{Messager, MessagerOptions};
pub use notifier::{IncomingSubscription, Notifier, NotifierOptions, NotifierState};
pub use publisher::{Publisher, PublisherOptions, PublisherState};
pub use registerer::{
    Registerer, RegistererOptions, RegistererState, RegistererUnregisterOptions, Registration,
};
pub use sdh::{
    BodyAndContentType, BoxFuture, FixedSdp, FixedSdpFactory, SdhError, SessionContext,
    SessionDescriptionHandler, SessionDescriptionHandlerFactory, SessionDescriptionHandlerModifier,
    SessionDescriptionHandlerOptions, SessionEnder,
};
pub use session::{
    EndReason, Invitation, InvitationAcceptOptions, InvitationProgressOptions,
    InvitationRejectOptions, Inviter, InviterCancelOptions, InviterInviteOptions, InviterOptions,
    ReferNotification, ReferTarget, Referral, Referrer, RequestOptions, Session, SessionDelegate,
    SessionInviteOptions, SessionReferOptions, SessionState, SessionTimerOptions,
    SessionUpdateOptions,
};
pub use session_manager::{SessionManager, SessionManagerDelegate, SessionManagerOptions};
pub use simple_user::{SimpleUser, SimpleUserDelegate, SimpleUserOptions};
pub use subscription::{
    Notification, Subscriber, SubscriberOptions, SubscriptionDelegate, SubscriptionState,
    Termination,
};
pub use transport::{
    DatagramTransport, DatagramTransportFactory, Listen, OutboundProxy, TlsOptions,
};
#[cfg(feature = "test-util")]
pub use transport::{LinkConfig, MemoryNetwork, MemorySocket};

/// The rustls crate sipua uses, for building [`TlsOptions`].
pub use tokio_rustls::rustls;
pub use user_agent::{
    Bye, IncomingRequest, Info, Message, UserAgent, UserAgentDelegate, UserAgentOptions,
    UserAgentState,
};

pub use sipua_message as message;
pub use sipua_message::{NameAddr, Uri};
pub use sipua_proto as proto;
/// A user name and password for digest challenges (401/407), as
/// [`UserAgentOptions::credentials`] takes them.
pub use sipua_proto::ua::{Credentials, DigestServerConfig};
