//! The seam between signalling and media, as in SIP.js: a session asks its
//! [`SessionDescriptionHandler`] for an offer or an answer ([`get_description`]) and hands it
//! the peer's ([`set_description`]); the bodies are opaque to signalling (RFC 3264 offer/answer
//! is the handler's business). A [`SessionDescriptionHandlerFactory`] makes one handler per
//! session.
//!
//! [`FixedSdp`] is the built-in handler: it offers and answers one fixed audio stream, so calls
//! complete before real media is plugged in. `sipua-media` provides the RTP handler.
//!
//! [`get_description`]: SessionDescriptionHandler::get_description
//! [`set_description`]: SessionDescriptionHandler::set_description

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use sipua_message::sdp::Direction;
use sipua_message::text::{push_decimal, push_ip};

// defined with the crate's other errors, which wrap it: `error` is a leaf, this module is not
pub use crate::error::SdhError;
use crate::mailbox::WeakPost;

/// A boxed future, as the handler traits return (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A body and its content type (SIP.js `BodyAndContentType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyAndContentType {
    /// The body, e.g. an SDP.
    pub body: Bytes,
    /// Its media type, e.g. `application/sdp`.
    pub content_type: String,
}

impl BodyAndContentType {
    /// An `application/sdp` body.
    pub fn sdp(body: impl Into<Bytes>) -> BodyAndContentType {
        BodyAndContentType {
            body: body.into(),
            content_type: "application/sdp".into(),
        }
    }
}

impl BodyAndContentType {
    /// Whether the content type is `application/sdp` (parameters and case ignored).
    pub fn is_sdp_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    }

    /// The description after `modifiers`, in order (SIP.js applies them the same way).
    pub fn modified(
        self,
        modifiers: &[SessionDescriptionHandlerModifier],
    ) -> Result<BodyAndContentType, SdhError> {
        modifiers.iter().try_fold(self, |d, m| m(d))
    }

    /// A received SDP after `modifiers`: an error unless its content type is SDP.
    pub fn received_sdp(
        &self,
        modifiers: &[SessionDescriptionHandlerModifier],
    ) -> Result<BodyAndContentType, SdhError> {
        if !BodyAndContentType::is_sdp_type(&self.content_type) {
            return Err(SdhError::new(format!(
                "unsupported content type {}",
                self.content_type
            )));
        }
        self.clone().modified(modifiers)
    }
}

/// Options passed to the handler with each call (SIP.js
/// `SessionDescriptionHandlerOptions`); handlers read what they understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionDescriptionHandlerOptions {
    /// Put the media on hold: offer `sendonly` (or answer `recvonly`/`inactive`).
    pub hold: bool,
}

impl SessionDescriptionHandlerOptions {
    /// Options that put the media on hold (SIP.js `sessionDescriptionHandlerOptions:
    /// { hold: true }`), e.g. for a re-INVITE.
    pub fn hold() -> SessionDescriptionHandlerOptions {
        SessionDescriptionHandlerOptions { hold: true }
    }
}

/// Rewrites a description before it is sent or after it is received (SIP.js
/// `SessionDescriptionHandlerModifier`), e.g. to strip a codec.
pub type SessionDescriptionHandlerModifier =
    Arc<dyn Fn(BodyAndContentType) -> Result<BodyAndContentType, SdhError> + Send + Sync>;

/// The media side of one session (SIP.js `SessionDescriptionHandler`).
pub trait SessionDescriptionHandler: Send {
    /// The local description: an offer when none has been received, else the answer.
    fn get_description<'a>(
        &'a mut self,
        options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<BodyAndContentType, SdhError>>;

    /// Applies the peer's description (an offer or the answer to ours).
    fn set_description<'a>(
        &'a mut self,
        description: &'a BodyAndContentType,
        options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<(), SdhError>>;

    /// Whether this handler understands bodies of `content_type`.
    fn has_description(&self, content_type: &str) -> bool;

    /// Forgets an offer that was refused (RFC 3264 §8: the previous session stays).
    fn rollback_description(&mut self) -> BoxFuture<'_, Result<(), SdhError>> {
        Box::pin(async { Ok(()) })
    }

    /// Sends DTMF tones in the media, if the handler can (RFC 4733); false when it cannot
    /// (no telephone-event negotiated, no media yet, or characters other than `0-9*#A-D,`).
    fn send_dtmf(&mut self, _tones: &str) -> bool {
        false
    }

    /// A handle the application can reach through [`Session::media`](crate::Session::media),
    /// e.g. to read media statistics or receive DTMF events; `None` when the handler has none.
    fn handle(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        None
    }

    /// Releases the media resources; called once when the session ends.
    fn close(&mut self);

    /// The dialog is confirmed: our 2xx was acknowledged, or we acknowledged the peer's. A
    /// handler that answered an offer holds its media back until then (or until media comes
    /// from the peer), so that a spoofed INVITE cannot aim it at a stranger. Default: nothing.
    fn confirmed(&mut self) {}
}

/// What a factory knows about the session it makes a handler for.
#[derive(Clone)]
#[non_exhaustive]
pub struct SessionContext {
    /// The address to name in the description: the one signalling names towards this
    /// session's peer (never a wildcard, unless nothing better is known).
    pub local_ip: IpAddr,
    /// The address signalling listens on (a handler binds media there: a wildcard address
    /// when the agent listens on one).
    pub bind_ip: IpAddr,
    /// The session's id (the Call-ID and tags, once known), for logs.
    pub id: String,
    /// Whether the session's signalling is encrypted hop by hop: a callee's INVITE came over
    /// TLS or secure WebSocket, or a caller's goes out so. A handler puts keys in its
    /// descriptions (SDES, RFC 4568 §8.3) only when this holds, unless told otherwise.
    pub secure_signalling: bool,
    /// The session the handler is for, read when asked (parsing who is calling costs
    /// thousands of instructions a call; most handlers never ask).
    pub(crate) session: Option<Arc<dyn SessionView>>,
    /// The session's commands, weakly (see [`SessionContext::ender`]).
    pub(crate) ender: Option<WeakPost<SdhError>>,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("local_ip", &self.local_ip)
            .field("bind_ip", &self.bind_ip)
            .field("id", &self.id)
            .field("secure_signalling", &self.secure_signalling)
            .finish_non_exhaustive()
    }
}

/// What a handler may read of its session, implemented by the session layer above: the
/// handler names no session type (the arrow runs from `session` to `sdh` only).
pub(crate) trait SessionView: Send + Sync {
    /// Who we are in the call.
    fn local_identity(&self) -> Option<sipua_message::NameAddr>;
    /// Who the peer is.
    fn remote_identity(&self) -> Option<sipua_message::NameAddr>;
    /// A callee's INVITE.
    fn request(&self) -> Option<Arc<sipua_message::Request>>;
}

impl SessionContext {
    /// Who we are in the call (our From as a caller, the INVITE's To as a callee).
    pub fn local_identity(&self) -> Option<sipua_message::NameAddr> {
        self.session.as_ref()?.local_identity()
    }

    /// Who the peer is (the caller's From, or the target we call): a bot names its
    /// recording, or picks its prompt, by it.
    pub fn remote_identity(&self) -> Option<sipua_message::NameAddr> {
        self.session.as_ref()?.remote_identity()
    }

    /// What ends the session when its media is gone for good (the peer left: its ICE
    /// consent expired, it closed DTLS): a handler's media task keeps it and calls
    /// [`SessionEnder::end`].
    pub fn ender(&self) -> SessionEnder {
        SessionEnder(self.ender.clone())
    }

    /// The INVITE that started a callee's session (its headers: what the caller dialled,
    /// what a proxy added); `None` for a caller.
    pub fn request(&self) -> Option<Arc<sipua_message::Request>> {
        self.session.as_ref()?.request()
    }
}

/// Ends a session from its media handler ([`SessionContext::ender`]): the session sends BYE
/// (or refuses a call not answered yet) and ends with [`crate::EndReason::MediaFailure`]
/// carrying the handler's reason. It holds the session weakly: a session already gone is
/// left alone.
#[derive(Clone, Default)]
pub struct SessionEnder(Option<WeakPost<SdhError>>);

impl SessionEnder {
    /// Ends the session because its media is gone, for `why`.
    pub fn end(&self, why: SdhError) {
        if let Some(session) = self.0.as_ref().and_then(std::sync::Weak::upgrade) {
            session.post(why);
        }
    }
}

impl std::fmt::Debug for SessionEnder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEnder").finish_non_exhaustive()
    }
}

/// Makes a handler per session (SIP.js `SessionDescriptionHandlerFactory`).
pub trait SessionDescriptionHandlerFactory: Send + Sync {
    /// A new handler for `session`.
    fn create(
        &self,
        session: &SessionContext,
        options: &SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn SessionDescriptionHandler>, SdhError>;
}

/// A handler that offers and answers one fixed G.711 audio stream and sends no media: enough
/// for signalling to complete against real peers (they see a valid SDP) before real media is
/// plugged in.
#[derive(Debug, Clone)]
pub struct FixedSdp {
    ip: IpAddr,
    port: u16,
    version: u64,
    session_id: u64,
    remote: Option<BodyAndContentType>,
    /// Our offer waits for its answer.
    offering: bool,
    /// The peer's offer waits for our answer; its direction attribute.
    answering: Option<Direction>,
    closed: bool,
}

impl FixedSdp {
    /// A handler announcing media at `ip:port`.
    pub fn new(ip: IpAddr, port: u16, session_id: u64) -> FixedSdp {
        FixedSdp {
            ip,
            port,
            version: 0,
            session_id,
            remote: None,
            offering: false,
            answering: None,
            closed: false,
        }
    }

    /// The peer's last description, if any.
    pub fn remote(&self) -> Option<&BodyAndContentType> {
        self.remote.as_ref()
    }

    fn render(&mut self, hold: bool) -> String {
        self.version += 1;
        let family = if self.ip.is_ipv4() { "IP4" } else { "IP6" };
        // RFC 3264 §6.1: an answer mirrors the offer's direction (holding, it sends at
        // most); an offer holds or not
        let local = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let direction = match self.answering.take() {
            Some(offered) => Direction::answer(offered, local),
            None => {
                self.offering = true;
                local
            }
        }
        .as_str();
        // written piece by piece, numbers and the address without the formatting machinery
        // (an IPv4 address through `Display` alone costs about a thousand instructions):
        // this runs for every call a server answers
        let mut sdp = String::with_capacity(320);
        sdp.push_str("v=0\r\no=sipua ");
        push_decimal(&mut sdp, self.session_id);
        sdp.push(' ');
        push_decimal(&mut sdp, self.version);
        for line in [" IN ", "\r\ns=sipua\r\nc=IN "] {
            sdp.push_str(line);
            sdp.push_str(family);
            sdp.push(' ');
            push_ip(&mut sdp, self.ip);
        }
        sdp.push_str("\r\nt=0 0\r\nm=audio ");
        push_decimal(&mut sdp, u64::from(self.port));
        sdp.push_str(" RTP/AVP 0 8 101\r\n");
        sdp.push_str(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\na=ptime:20\r\na=",
        );
        sdp.push_str(direction);
        sdp.push_str("\r\n");
        sdp
    }
}

impl SessionDescriptionHandler for FixedSdp {
    fn get_description<'a>(
        &'a mut self,
        options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<BodyAndContentType, SdhError>> {
        Box::pin(async move {
            if self.closed {
                return Err(SdhError::new("closed"));
            }
            BodyAndContentType::sdp(self.render(options.hold)).modified(modifiers)
        })
    }

    fn set_description<'a>(
        &'a mut self,
        description: &'a BodyAndContentType,
        _options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<(), SdhError>> {
        Box::pin(async move {
            let d = description.received_sdp(modifiers)?;
            if !d.body.starts_with(b"v=0") {
                return Err(SdhError::new("not an SDP (no v=0 line)"));
            }
            if std::mem::take(&mut self.offering) {
                self.answering = None; // the answer to our offer
            } else {
                // the last direction attribute wins (a media-level one after the session's)
                self.answering = Some(Direction::last_in(&d.body));
            }
            self.remote = Some(d);
            Ok(())
        })
    }

    fn has_description(&self, content_type: &str) -> bool {
        BodyAndContentType::is_sdp_type(content_type)
    }

    fn rollback_description(&mut self) -> BoxFuture<'_, Result<(), SdhError>> {
        self.offering = false;
        self.answering = None;
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) {
        self.closed = true;
    }
}

/// The factory of [`FixedSdp`] handlers: the default of [`crate::UserAgentOptions`].
#[derive(Debug, Clone, Default)]
pub struct FixedSdpFactory {
    /// The media port announced (nothing listens there); 0 picks 49170.
    pub port: u16,
}

impl SessionDescriptionHandlerFactory for FixedSdpFactory {
    fn create(
        &self,
        session: &SessionContext,
        _options: &SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn SessionDescriptionHandler>, SdhError> {
        let id = session.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) % 1_000_000_000;
        let port = if self.port == 0 { 49170 } else { self.port };
        Ok(Box::new(FixedSdp::new(session.local_ip, port, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn direction(d: &BodyAndContentType) -> String {
        let t = String::from_utf8_lossy(&d.body).into_owned();
        t.lines()
            .find_map(|l| {
                l.strip_prefix("a=").filter(|a| {
                    a.ends_with("send")
                        || a.ends_with("recv")
                        || a.ends_with("only")
                        || *a == "inactive"
                })
            })
            .unwrap_or_default()
            .to_owned()
    }

    /// A fresh fixed handler and its answer to the offer `sdp`.
    async fn answer_to(sdp: String) -> (FixedSdp, BodyAndContentType) {
        let o = SessionDescriptionHandlerOptions::default();
        let mut h = FixedSdp::new("127.0.0.1".parse().unwrap(), 4000, 1);
        h.set_description(&BodyAndContentType::sdp(sdp), &o, &[])
            .await
            .unwrap();
        let a = h.get_description(&o, &[]).await.unwrap();
        (h, a)
    }

    #[test]
    fn answers_mirror_the_direction_of_the_offer() {
        run(async {
            let o = SessionDescriptionHandlerOptions::default();
            for (offer, answer) in [
                ("sendonly", "recvonly"),
                ("recvonly", "sendonly"),
                ("inactive", "inactive"),
                ("sendrecv", "sendrecv"),
            ] {
                let sdp = format!("v=0\r\nm=audio 5000 RTP/AVP 0\r\na={offer}\r\n");
                let (mut h, a) = answer_to(sdp).await;
                assert_eq!(direction(&a), answer, "offer {offer}");
                // the next description is a new offer again
                let next = h.get_description(&o, &[]).await.unwrap();
                assert_eq!(direction(&next), "sendrecv");
            }
        });
    }

    #[test]
    fn the_fixed_description_is_written_in_full() {
        let mut h = FixedSdp::new("192.0.2.5".parse().unwrap(), 4000, 77);
        assert_eq!(
            h.render(false),
            "v=0\r\no=sipua 77 1 IN IP4 192.0.2.5\r\ns=sipua\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let mut h = FixedSdp::new("2001:db8::5".parse().unwrap(), 4002, 1);
        let sdp = h.render(true);
        assert!(
            sdp.starts_with("v=0\r\no=sipua 1 1 IN IP6 2001:db8::5\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("\r\nc=IN IP6 2001:db8::5\r\n") && sdp.ends_with("a=sendonly\r\n"));
        assert!(
            h.render(false).contains("o=sipua 1 2 IN"),
            "the version goes up"
        );
    }

    #[test]
    fn a_media_level_direction_overrides_the_session_level_one() {
        run(async {
            for (offer, answer) in [
                (
                    "a=sendonly\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n",
                    "sendrecv",
                ),
                (
                    "a=sendrecv\r\nm=audio 5000 RTP/AVP 0\r\na=inactive\r\n",
                    "inactive",
                ),
                ("a=recvonly\r\nm=audio 5000 RTP/AVP 0\r\n", "sendonly"),
                // CRLF or bare LF line ends, trailing blanks
                ("m=audio 5000 RTP/AVP 0\na=sendonly \n", "recvonly"),
            ] {
                let (_, a) = answer_to(format!("v=0\r\n{offer}")).await;
                assert_eq!(direction(&a), answer, "offer {offer:?}");
            }
        });
    }

    #[test]
    fn a_holding_answer_sends_at_most_what_the_offer_lets_it() {
        run(async {
            let hold = SessionDescriptionHandlerOptions { hold: true };
            // RFC 3264 §6.1, §8.4: holding, we only send; to a peer that holds too, nothing
            for (offer, answer) in [
                ("sendrecv", "sendonly"),
                ("recvonly", "sendonly"),
                ("sendonly", "inactive"),
                ("inactive", "inactive"),
            ] {
                let mut h = FixedSdp::new("127.0.0.1".parse().unwrap(), 4000, 1);
                let sdp = BodyAndContentType::sdp(format!("v=0\r\na={offer}\r\n"));
                h.set_description(&sdp, &hold, &[]).await.unwrap();
                let a = h.get_description(&hold, &[]).await.unwrap();
                assert_eq!(direction(&a), answer, "offer {offer}");
            }
        });
    }

    #[test]
    fn hold_offers_sendonly_and_its_answer_is_not_taken_for_an_offer() {
        run(async {
            let hold = SessionDescriptionHandlerOptions { hold: true };
            let mut h = FixedSdp::new("127.0.0.1".parse().unwrap(), 4000, 1);
            let offer = h.get_description(&hold, &[]).await.unwrap();
            assert_eq!(direction(&offer), "sendonly");
            let answer = BodyAndContentType::sdp("v=0\r\na=recvonly\r\n");
            h.set_description(&answer, &hold, &[]).await.unwrap();
            let o = SessionDescriptionHandlerOptions::default();
            assert_eq!(
                direction(&h.get_description(&o, &[]).await.unwrap()),
                "sendrecv"
            );
        });
    }
}
