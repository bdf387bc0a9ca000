//! # sipua-media
//!
//! `SessionDescriptionHandler` implementations for sipua: SDP (RFC 4566) and offer/answer
//! (RFC 3264), RTP/RTCP audio (RFC 3550, G.711, RFC 4733 DTMF). Not written yet: see the
//! project's issues.

#![forbid(unsafe_code)]
