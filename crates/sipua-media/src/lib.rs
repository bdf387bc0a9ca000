//! # sipua-media
//!
//! Real audio for sipua calls: [`RtpAudio`], a `SessionDescriptionHandler` for plain
//! `RTP/AVP` that negotiates with SDP offer/answer (RFC 8866, RFC 3264), sends and receives
//! G.711 μ-law and A-law over symmetric RTP with RTCP reports (RFC 3550, RFC 3551), carries
//! DTMF as telephone-events (RFC 4733), and plays out through a jitter buffer.
//!
//! Layers, as in the rest of sipua: the protocol parts are plain state machines with no I/O
//! ([`sdp`], [`rtp`], [`dtmf`], [`jitter`], [`stream::AudioStream`]); [`RtpAudio`] is the thin
//! tokio driver that gives them sockets and a clock. Audio goes in through an
//! [`audio::AudioSource`] (silence, a tone, a WAV file, an echo) and comes out through an
//! [`audio::AudioSink`] (a WAV recorder, memory, nothing).
//!
//! ```no_run
//! use std::sync::Arc;
//! use sipua::{UserAgent, UserAgentOptions};
//! use sipua_media::{AudioIo, RtpAudioFactory, RtpAudioOptions};
//!
//! // every call answers with an echo of what it hears
//! let ua = UserAgent::new(UserAgentOptions {
//!     session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
//!         audio: Arc::new(|_| Ok(AudioIo::echo())),
//!         ..Default::default()
//!     })),
//!     ..Default::default()
//! });
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "test-util"))]
pub mod analysis;
pub mod audio;
pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod jitter;
mod ports;
pub mod resample;
pub mod rtp;
mod rtp_audio;
pub mod sdp;
#[cfg(feature = "srtp")]
pub mod srtp;
pub mod stream;
pub mod wav;
#[cfg(feature = "webrtc")]
pub mod webrtc;

pub use rtp_audio::{
    AudioIo, AudioIoFactory, MediaHandle, RtpAudio, RtpAudioFactory, RtpAudioOptions, SessionAudio,
    SrtpPolicy, PACKET_TARGET,
};
pub use stream::{MediaEvent, MediaStats, RemoteReport};
#[cfg(feature = "webrtc")]
pub use webrtc::{AutoAudioFactory, WebRtcAudio, WebRtcAudioFactory, WebRtcAudioOptions};

/// The README's examples, compiled as doctests (here, where `sipua`, `sipua-media` and
/// `sipua-message` are all in reach), so that every snippet a user copies builds.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The guide's examples, compiled as doctests like the README's.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct GuideDoctests;
