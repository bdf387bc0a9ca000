//! RFC 3264 offer/answer for one audio stream, without IO.
//!
//! [`OfferAnswer`] holds the per-session negotiation state: it builds offers
//! (§5), answers offers (§6: every `m=` line answered in order, unusable ones
//! with port 0, the offer's payload type numbers kept, direction mirrored per
//! §6.1), reads answers (§7), and builds re-offers that keep the `m=` line
//! layout and payload type mapping of the session (§8, §8.3.2). Hold follows
//! §8.4: a direction attribute, and `c=0.0.0.0` from RFC 2543 peers read as
//! "do not send to me". DTMF is offered as RFC 4733 `telephone-event/8000`.
//! Glare and failed exchanges are handled with [`OfferAnswer::rollback`]
//! (RFC 6337 §3.3, RFC 3261 §14.1).
//!
//! `o=` versioning (RFC 3264 §8): the session id never changes; the version
//! starts at 0 and goes up by one each time we generate a description that
//! differs from the previous one we generated, so an identical re-offer or
//! re-answer (e.g. a session refresh) repeats the version. A rolled-back offer
//! still counts as generated, so a version is never reused for other content.
//!
//! RTCP multiplexed on the RTP port (RFC 5761 §5.1.1) when [`MediaCapabilities::rtcp_mux`]
//! is set: offered as `a=rtcp-mux`, answered only when offered, used only when both said it.
//!
//! SDES (RFC 4568) when the session allows it ([`OfferAnswer::set_sdes`]): an offer on
//! `RTP/SAVP` lists an `a=crypto` line per suite with our key; an answer takes the first
//! usable line of the offer's and answers it under the same tag with our key (§7.1); an
//! `RTP/SAVP` offer is refused when SDES is not allowed, and a plain one when it is required.
//!
//! One concern in one file (about 1 000 lines of code, its tests after): RFC 3264 for the
//! audio stream, with the SDES (RFC 4568) rules that change what is offered and accepted.

use super::crypto::{CryptoLine, KEY_LEN, SUITES};
use super::{
    Attribute, Connection, Direction, MediaDescription, Origin, RtpMap, SdpError,
    SessionDescription,
};
use std::error::Error;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Clock rate of the telephone-event format we offer and accept.
const TELEPHONE_EVENT_RATE: u32 = 8000;
/// The DTMF events we can send and receive (RFC 4733 §3.2, digits 0-9, *, #, A-D, flash).
const TELEPHONE_EVENT_FMTP: &str = "0-16";
/// The dynamic payload type range (RFC 3551 §3).
const DYNAMIC_PAYLOAD_TYPES: std::ops::RangeInclusive<u8> = 96..=127;

/// An audio codec as negotiated: payload type number, encoding and format
/// parameters; matched by encoding name (case-insensitive), clock and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type number.
    pub payload_type: u8,
    /// Encoding name, e.g. `PCMU`.
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count, normally 1.
    pub channels: u16,
    /// `a=fmtp` parameters; in [`Negotiated`] those the peer wrote.
    pub fmtp: Option<String>,
}

impl Codec {
    /// A mono codec without format parameters.
    pub fn new(payload_type: u8, encoding: &str, clock_rate: u32) -> Codec {
        Codec {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels: 1,
            fmtp: None,
        }
    }

    /// G.711 µ-law on its static payload type 0.
    pub fn pcmu() -> Codec {
        Codec::new(0, "PCMU", 8000)
    }

    /// G.711 A-law on its static payload type 8.
    pub fn pcma() -> Codec {
        Codec::new(8, "PCMA", 8000)
    }

    /// Whether `map` describes the same format (payload type ignored).
    pub fn matches(&self, map: &RtpMap) -> bool {
        self.encoding.eq_ignore_ascii_case(&map.encoding)
            && self.clock_rate == map.clock_rate
            && self.channels == map.channels
    }

    fn with_payload_type(&self, payload_type: u8) -> Codec {
        Codec {
            payload_type,
            ..self.clone()
        }
    }

    fn rtpmap_value(&self) -> String {
        if self.channels == 1 {
            format!(
                "{} {}/{}",
                self.payload_type, self.encoding, self.clock_rate
            )
        } else {
            format!(
                "{} {}/{}/{}",
                self.payload_type, self.encoding, self.clock_rate, self.channels
            )
        }
    }
}

/// What we can do, in preference order; the input to every negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCapabilities {
    /// Codecs in preference order, with the payload types we offer them on.
    pub codecs: Vec<Codec>,
    /// Dynamic payload type we offer RFC 4733 telephone-event/8000 on, if any.
    pub telephone_event: Option<u8>,
    /// Packet time we ask for, in milliseconds (`a=ptime`).
    pub ptime: u32,
    /// Whether we offer and accept RTCP on the RTP port (RFC 5761 `a=rtcp-mux`): one port
    /// per call to open in a firewall or keep alive through a NAT. A peer that does not
    /// answer it gets RTCP on the next port, as before.
    pub rtcp_mux: bool,
}

impl Default for MediaCapabilities {
    /// PCMU, PCMA, telephone-event on 101, 20 ms packets, rtcp-mux offered and accepted.
    fn default() -> MediaCapabilities {
        MediaCapabilities {
            codecs: vec![Codec::pcmu(), Codec::pcma()],
            telephone_event: Some(101),
            ptime: 20,
            rtcp_mux: true,
        }
    }
}

/// Our side of the stream: where we receive RTP and what the app wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address we receive RTP on (written in `o=` and `c=`).
    pub address: IpAddr,
    /// Port we receive RTP on; RTCP is expected on the next port.
    pub rtp_port: u16,
    /// What the app wants: `SendRecv`, or `SendOnly` to hold the peer.
    pub direction: Direction,
}

impl LocalMedia {
    /// A sendrecv stream on `address:rtp_port`.
    pub fn new(address: IpAddr, rtp_port: u16) -> LocalMedia {
        LocalMedia {
            address,
            rtp_port,
            direction: Direction::SendRecv,
        }
    }
}

/// SDES-SRTP for one session (RFC 4568): our master key, and how the session uses it. The
/// media handler decides (keys only over TLS signalling unless forced).
#[derive(Clone, PartialEq, Eq)]
pub struct SdesSetup {
    /// Our master key and salt: what the peer decrypts our packets with.
    pub key: [u8; KEY_LEN],
    /// Whether our offers are `RTP/SAVP` with keys (else we offer plain RTP and only answer
    /// the peer's `RTP/SAVP` offers with SRTP).
    pub offer: bool,
    /// Whether a plain `RTP/AVP` offer is refused (and a plain answer fails).
    pub required: bool,
}

impl fmt::Debug for SdesSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdesSetup")
            .field("offer", &self.offer)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// What SDES decided: the suite, and each side's master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKeys {
    /// The suite both sides use, as in [`SUITES`].
    pub suite: &'static str,
    /// Ours: we encrypt with it.
    pub local_key: [u8; KEY_LEN],
    /// The peer's: we decrypt with it.
    pub remote_key: [u8; KEY_LEN],
}

impl fmt::Debug for SdesKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdesKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// The outcome of a completed exchange: everything the RTP layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP.
    pub remote_address: SocketAddr,
    /// Where to send RTCP: the RTP address when multiplexed ([`rtcp_mux`](Self::rtcp_mux)),
    /// else RFC 3605 `a=rtcp` if given, else RTP port + 1.
    pub remote_rtcp: SocketAddr,
    /// Whether both sides agreed to carry RTCP on the RTP port (RFC 5761 §5.1.1): our RTCP
    /// goes out of the RTP socket to the peer's RTP address, and theirs arrives with the RTP.
    pub rtcp_mux: bool,
    /// Codec to send, numbered as the peer's description numbers it.
    pub codec: Codec,
    /// Payload type to send RFC 4733 DTMF with, if both sides support it.
    pub telephone_event: Option<u8>,
    /// OUR direction: whether we send and whether we receive.
    pub direction: Direction,
    /// Packet time to send with: the peer's `a=ptime` if given, else ours.
    pub ptime: u32,
    /// The peer's `a=ptime`, if it wrote one.
    pub remote_ptime: Option<u32>,
    /// SRTP keys, when the stream is `RTP/SAVP` (SDES); `None` for plain RTP.
    pub srtp: Option<SdesKeys>,
}

/// Where the exchange stands (RFC 3264 §4; the JSEP-like names of SIP.js).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationState {
    /// No offer outstanding; a new offer may be made or received.
    Stable,
    /// We sent an offer and wait for the answer.
    HaveLocalOffer,
    /// We received an offer and owe an answer.
    HaveRemoteOffer,
}

/// Why an offer or answer cannot be used; the session maps these to SIP
/// responses (488 for an unacceptable offer, 491 for glare, BYE for a bad answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferAnswerError {
    /// No audio line shares a codec with us.
    NoCommonCodec,
    /// The answer disabled our audio line (port 0).
    Rejected,
    /// No usable audio line: none with a non-zero port and RTP/AVP(F).
    NoAudio,
    /// The number of `m=` lines breaks RFC 3264 §6/§8 (answer ≠ offer,
    /// or a re-offer with fewer lines than the session).
    MediaCountMismatch {
        /// Lines required.
        expected: usize,
        /// Lines found.
        found: usize,
    },
    /// The accepted audio line has no usable `c=` address.
    NoConnectionAddress,
    /// An answer arrived while we had no offer outstanding.
    UnexpectedAnswer,
    /// An offer arrived while an offer was already outstanding (glare).
    UnexpectedOffer,
    /// An answer was requested but no remote offer is pending.
    NoPendingOffer,
    /// SDES could not be agreed: the reason.
    Crypto(&'static str),
    /// The body is not valid SDP.
    Parse(SdpError),
}

impl fmt::Display for OfferAnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferAnswerError::NoCommonCodec => f.write_str("no audio codec in common"),
            OfferAnswerError::Rejected => f.write_str("audio stream rejected (port 0)"),
            OfferAnswerError::NoAudio => f.write_str("no usable RTP audio stream"),
            OfferAnswerError::MediaCountMismatch { expected, found } => {
                write!(f, "expected {expected} m= lines, found {found}")
            }
            OfferAnswerError::NoConnectionAddress => {
                f.write_str("audio stream has no usable connection address")
            }
            OfferAnswerError::UnexpectedAnswer => {
                f.write_str("answer without an outstanding offer")
            }
            OfferAnswerError::UnexpectedOffer => f.write_str("offer while an offer is outstanding"),
            OfferAnswerError::NoPendingOffer => f.write_str("no remote offer to answer"),
            OfferAnswerError::Crypto(why) => write!(f, "SRTP: {why}"),
            OfferAnswerError::Parse(e) => write!(f, "invalid SDP: {e}"),
        }
    }
}

impl Error for OfferAnswerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OfferAnswerError::Parse(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SdpError> for OfferAnswerError {
    fn from(e: SdpError) -> OfferAnswerError {
        OfferAnswerError::Parse(e)
    }
}

/// The offer we are waiting on, or the one we owe an answer to.
#[derive(Debug, Clone)]
enum Pending {
    None,
    Local {
        offer: SessionDescription,
        audio_index: usize,
        codecs: Vec<Codec>,
        telephone_event: Option<u8>,
        /// Whether the offer was `RTP/SAVP` with our keys.
        savp: bool,
    },
    Remote(SessionDescription),
}

/// The audio line chosen from an offer, with what we share with it.
struct Choice {
    index: usize,
    /// Common codecs on the offer's numbers and with the offer's fmtp, in the
    /// offer's order, each paired with our own fmtp for the answer.
    codecs: Vec<(Codec, Option<String>)>,
    telephone_event: Option<u8>,
    /// The offer's crypto line we take, for an `RTP/SAVP` line.
    crypto: Option<CryptoLine>,
}

/// Per-session RFC 3264 negotiation state, sans IO: feed it parsed bodies,
/// send the descriptions it returns, and hand [`Negotiated`] to the RTP layer.
#[derive(Debug, Clone)]
pub struct OfferAnswer {
    caps: MediaCapabilities,
    session_id: u64,
    last_generated: Option<SessionDescription>,
    local: Option<SessionDescription>,
    audio_index: usize,
    pending: Pending,
    /// Our last offer once answered: a forked INVITE can draw a second answer to it.
    answered: Option<Pending>,
    current: Option<Negotiated>,
    /// SDES, when this session may use it.
    sdes: Option<SdesSetup>,
}

impl OfferAnswer {
    /// Starts a session's negotiation with our capabilities and the `o=`
    /// session id used for its whole lifetime.
    pub fn new(caps: MediaCapabilities, session_id: u64) -> OfferAnswer {
        OfferAnswer {
            caps,
            session_id,
            last_generated: None,
            local: None,
            audio_index: 0,
            pending: Pending::None,
            answered: None,
            current: None,
            sdes: None,
        }
    }

    /// Allows SDES-SRTP in this session (or not, with `None`): see [`SdesSetup`].
    pub fn set_sdes(&mut self, sdes: Option<SdesSetup>) {
        self.sdes = sdes;
    }

    /// Whether an offer is outstanding, and whose.
    pub fn state(&self) -> NegotiationState {
        match self.pending {
            Pending::None => NegotiationState::Stable,
            Pending::Local { .. } => NegotiationState::HaveLocalOffer,
            Pending::Remote(_) => NegotiationState::HaveRemoteOffer,
        }
    }

    /// The result of the last successful exchange, if any.
    pub fn current(&self) -> Option<&Negotiated> {
        self.current.as_ref()
    }

    /// Our description from the last successful exchange (what the peer
    /// holds for us), e.g. to resend unchanged.
    pub fn local_description(&self) -> Option<&SessionDescription> {
        self.local.as_ref()
    }

    /// Builds an offer (initial or re-offer) and makes it pending, replacing
    /// any pending offer of ours or of the peer's (answer that first). A
    /// re-offer keeps the session's `m=` lines in order (others stay port 0)
    /// and the payload type numbers already in use (RFC 3264 §8.3.2).
    pub fn create_offer(&mut self, local: &LocalMedia) -> SessionDescription {
        let previous_audio = self
            .local
            .as_ref()
            .and_then(|sdp| sdp.media.get(self.audio_index));
        let (codecs, telephone_event) = self.offer_codecs(previous_audio);
        // SRTP once the session is on it, or from the first offer when we offer it
        let was_savp = previous_audio.is_some_and(|m| is_savp(&m.proto));
        let sdes = self
            .sdes
            .as_ref()
            .filter(|s| s.offer || was_savp)
            .map(|s| s.key);
        let proto = match previous_audio {
            Some(m) if is_rtp_avp(&m.proto) || is_savp(&m.proto) => m.proto.clone(),
            _ if sdes.is_some() => "RTP/SAVP".to_owned(),
            _ => "RTP/AVP".to_owned(),
        };
        let mut audio = self.audio_section(
            local,
            &proto,
            codecs.iter().map(|c| (c, c.fmtp.as_deref())),
            telephone_event,
            local.direction,
            self.caps.rtcp_mux,
        );
        if let Some(key) = sdes {
            for (tag, suite) in (1..).zip(SUITES) {
                let line = CryptoLine { tag, suite, key };
                audio
                    .attributes
                    .push(Attribute::new("crypto", &line.value()));
            }
        }

        let (media, audio_index) = match (&self.local, previous_audio) {
            (Some(previous), Some(_)) => (
                with_audio_at(&previous.media, self.audio_index, audio),
                self.audio_index,
            ),
            _ => (vec![audio], 0),
        };
        let offer = self.finish(local, media);
        self.answered = None;
        self.pending = Pending::Local {
            offer: offer.clone(),
            audio_index,
            codecs,
            telephone_event,
            savp: sdes.is_some(),
        };
        offer
    }

    /// Applies the peer's answer to our pending offer (RFC 3264 §7). On
    /// error the exchange is over: the pending offer is dropped and the
    /// previous [`current`](Self::current) result stays in force.
    pub fn receive_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<Negotiated, OfferAnswerError> {
        let (offer, audio_index, codecs, telephone_event, savp) =
            match std::mem::replace(&mut self.pending, Pending::None) {
                Pending::Local {
                    offer,
                    audio_index,
                    codecs,
                    telephone_event,
                    savp,
                } => (offer, audio_index, codecs, telephone_event, savp),
                other => {
                    self.pending = other;
                    return Err(OfferAnswerError::UnexpectedAnswer);
                }
            };
        self.answered = Some(Pending::Local {
            offer: offer.clone(),
            audio_index,
            codecs: codecs.clone(),
            telephone_event,
            savp,
        });
        if answer.media.len() != offer.media.len() {
            return Err(OfferAnswerError::MediaCountMismatch {
                expected: offer.media.len(),
                found: answer.media.len(),
            });
        }
        let (Some(ours), Some(theirs)) =
            (offer.media.get(audio_index), answer.media.get(audio_index))
        else {
            return Err(OfferAnswerError::NoAudio);
        };
        if !theirs.media.eq_ignore_ascii_case("audio") {
            return Err(OfferAnswerError::NoAudio);
        }
        if theirs.port == 0 {
            return Err(OfferAnswerError::Rejected);
        }
        // A sloppy answerer may reuse our number without an rtpmap line.
        let map_of = |pt: u8| theirs.rtpmap(pt).or_else(|| ours.rtpmap(pt));
        let codec = theirs
            .payload_types()
            .find_map(|pt| {
                let map = map_of(pt)?;
                let offered = codecs.iter().find(|c| c.matches(&map))?;
                Some(Codec {
                    fmtp: theirs.fmtp(pt).map(str::to_owned),
                    ..offered.with_payload_type(pt)
                })
            })
            .ok_or(OfferAnswerError::NoCommonCodec)?;
        let telephone_event = telephone_event.and_then(|_| {
            theirs
                .payload_types()
                .find(|&pt| map_of(pt).is_some_and(|m| is_telephone_event(&m)))
        });
        let ip = answer
            .connection_for(theirs)
            .ok_or(OfferAnswerError::NoConnectionAddress)?;
        let srtp = match (savp, &self.sdes) {
            (true, Some(sdes)) => Some(answered_keys(ours, theirs, sdes.key)?),
            _ if self.sdes.as_ref().is_some_and(|s| s.required) => {
                return Err(OfferAnswerError::Crypto("the answer is not encrypted"))
            }
            _ => None,
        };
        let offered = offer.media_direction(ours);
        let direction = offered.intersect(answer.media_direction(theirs).reverse());
        // RFC 5761 §5.1.1: multiplexed only when we offered it and the answer took it
        let mux = has_rtcp_mux(ours) && has_rtcp_mux(theirs);
        let negotiated = Negotiated {
            srtp,
            ..self.negotiated(answer, theirs, ip, codec, telephone_event, direction, mux)
        };

        self.local = Some(offer);
        self.audio_index = audio_index;
        self.current = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// Applies another answer to the offer we last had answered: with forking (RFC 3261
    /// §13.2.2.4) each branch answers the same offer, and the media follows the branch whose
    /// dialog wins. Fails with `UnexpectedAnswer` when our last exchange was not our offer.
    pub fn receive_forked_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<Negotiated, OfferAnswerError> {
        if !matches!(self.pending, Pending::None) {
            return Err(OfferAnswerError::UnexpectedAnswer);
        }
        let Some(answered) = self.answered.clone() else {
            return Err(OfferAnswerError::UnexpectedAnswer);
        };
        self.pending = answered;
        self.receive_answer(answer)
    }

    /// Whether [`receive_forked_answer`](Self::receive_forked_answer) has an offer to apply
    /// an answer to.
    pub fn can_take_forked_answer(&self) -> bool {
        matches!(self.pending, Pending::None) && self.answered.is_some()
    }

    /// Accepts the peer's offer for a later [`create_answer`](Self::create_answer).
    /// Fails with `UnexpectedOffer` on glare (answer 491) and with
    /// `MediaCountMismatch` if a re-offer drops `m=` lines (RFC 3264 §8).
    pub fn receive_offer(&mut self, offer: &SessionDescription) -> Result<(), OfferAnswerError> {
        if !matches!(self.pending, Pending::None) {
            return Err(OfferAnswerError::UnexpectedOffer);
        }
        if let Some(previous) = &self.local {
            if offer.media.len() < previous.media.len() {
                return Err(OfferAnswerError::MediaCountMismatch {
                    expected: previous.media.len(),
                    found: offer.media.len(),
                });
            }
        }
        self.pending = Pending::Remote(offer.clone());
        self.answered = None;
        Ok(())
    }

    /// Answers the pending remote offer (RFC 3264 §6): the first RTP/AVP(F)
    /// audio line with a common codec is accepted on the offer's payload
    /// numbers, every other line gets port 0. On error (answer 488) the
    /// pending offer is dropped and the previous result stays in force.
    pub fn create_answer(
        &mut self,
        local: &LocalMedia,
    ) -> Result<(SessionDescription, Negotiated), OfferAnswerError> {
        let offer = match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Remote(offer) => offer,
            other => {
                self.pending = other;
                return Err(OfferAnswerError::NoPendingOffer);
            }
        };
        let choice = self.choose_audio(&offer)?;
        let Some(theirs) = offer.media.get(choice.index) else {
            return Err(OfferAnswerError::NoAudio);
        };
        let ip = offer
            .connection_for(theirs)
            .ok_or(OfferAnswerError::NoConnectionAddress)?;
        let mut offered = offer.media_direction(theirs);
        if ip.is_unspecified() {
            // RFC 3264 §8.4: c=0.0.0.0 means "send nothing to me".
            offered = Direction::from_flags(offered.sends(), false);
        }
        let direction = offered.reverse().intersect(local.direction);
        // RFC 5761 §5.1.1: answered only when offered
        let mux = self.caps.rtcp_mux && has_rtcp_mux(theirs);

        let mut audio = self.audio_section(
            local,
            &theirs.proto,
            choice.codecs.iter().map(|(c, ours)| (c, ours.as_deref())),
            choice.telephone_event,
            direction,
            mux,
        );
        // the offer's crypto line we take, answered under its tag with our key
        let srtp = match (&choice.crypto, &self.sdes) {
            (Some(theirs), Some(sdes)) => {
                let ours = CryptoLine {
                    key: sdes.key,
                    ..theirs.clone()
                };
                audio
                    .attributes
                    .push(Attribute::new("crypto", &ours.value()));
                Some(SdesKeys {
                    suite: theirs.suite,
                    local_key: sdes.key,
                    remote_key: theirs.key,
                })
            }
            _ => None,
        };
        if let Some(pt) = choice.telephone_event {
            // RFC 4733 §2.4.1: answer with the events both sides know, not all of ours
            let events = theirs
                .fmtp(pt)
                .map_or_else(|| TELEPHONE_EVENT_FMTP.to_owned(), common_events);
            let ours = format!("{pt} {TELEPHONE_EVENT_FMTP}");
            for a in &mut audio.attributes {
                if a.name == "fmtp" && a.value.as_deref() == Some(ours.as_str()) {
                    a.value = Some(format!("{pt} {events}"));
                }
            }
        }
        let media = with_audio_at(&offer.media, choice.index, audio);
        let answer = self.finish(local, media);

        let Some((codec, _)) = choice.codecs.into_iter().next() else {
            return Err(OfferAnswerError::NoCommonCodec);
        };
        let negotiated = Negotiated {
            srtp,
            ..self.negotiated(
                &offer,
                theirs,
                ip,
                codec,
                choice.telephone_event,
                direction,
                mux,
            )
        };
        self.local = Some(answer.clone());
        self.audio_index = choice.index;
        self.current = Some(negotiated.clone());
        Ok((answer, negotiated))
    }

    /// Forgets a pending offer, ours or the peer's, returning to the last
    /// stable state (RFC 3264 §8 failed re-offer, RFC 6337 glare).
    pub fn rollback(&mut self) {
        self.pending = Pending::None;
    }

    /// Assigns payload types for an offer: numbers already used in the
    /// session first, then our preferred ones, then free dynamic ones.
    fn offer_codecs(&self, previous: Option<&MediaDescription>) -> (Vec<Codec>, Option<u8>) {
        let used_before = |matches: &dyn Fn(&RtpMap) -> bool| {
            previous.and_then(|m| {
                m.payload_types()
                    .find(|&pt| m.rtpmap(pt).is_some_and(|map| matches(&map)))
            })
        };
        let remembered: Vec<Option<u8>> = self
            .caps
            .codecs
            .iter()
            .map(|c| used_before(&|map| c.matches(map)))
            .collect();
        let remembered_te = self
            .caps
            .telephone_event
            .and(used_before(&is_telephone_event));
        let reserved: Vec<u8> = remembered
            .iter()
            .copied()
            .chain([remembered_te])
            .flatten()
            .collect();

        let mut taken: Vec<u8> = Vec::new();
        let mut pick = |remembered: Option<u8>, preferred: u8| {
            let want = remembered.unwrap_or(preferred);
            let clash = taken.contains(&want) || (remembered.is_none() && reserved.contains(&want));
            let pt = if clash {
                DYNAMIC_PAYLOAD_TYPES
                    .clone()
                    .find(|pt| !taken.contains(pt) && !reserved.contains(pt))
            } else {
                Some(want)
            };
            if let Some(pt) = pt {
                taken.push(pt);
            }
            pt
        };
        let codecs = self
            .caps
            .codecs
            .iter()
            .zip(&remembered)
            .filter_map(|(c, &r)| pick(r, c.payload_type).map(|pt| c.with_payload_type(pt)))
            .collect();
        let telephone_event = self
            .caps
            .telephone_event
            .and_then(|preferred| pick(remembered_te, preferred));
        (codecs, telephone_event)
    }

    /// Picks the audio line to accept from an offer.
    fn choose_audio(&self, offer: &SessionDescription) -> Result<Choice, OfferAnswerError> {
        let mut saw_audio = false;
        let mut crypto_refused = None;
        for (index, m) in offer.media.iter().enumerate() {
            if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
                continue;
            }
            let crypto = if is_savp(&m.proto) {
                // SDES: the first line we can use, if SRTP is allowed here at all
                if self.sdes.is_none() {
                    crypto_refused =
                        Some("encrypted media offered, and SDES keys are not allowed here");
                    continue;
                }
                let line = m
                    .attributes
                    .iter()
                    .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
                    .find_map(|a| CryptoLine::parse(a.value.as_deref()?));
                match line {
                    Some(line) => Some(line),
                    None => {
                        crypto_refused = Some("no crypto suite in common");
                        continue;
                    }
                }
            } else if is_rtp_avp(&m.proto) {
                if self.sdes.as_ref().is_some_and(|s| s.required) {
                    crypto_refused = Some("plain RTP offered, and SRTP is required");
                    continue;
                }
                None
            } else {
                continue;
            };
            saw_audio = true;
            let mut codecs: Vec<(Codec, Option<String>)> = Vec::new();
            let mut telephone_event = None;
            for pt in m.payload_types() {
                let Some(map) = m.rtpmap(pt) else { continue };
                if is_telephone_event(&map) {
                    if self.caps.telephone_event.is_some() && telephone_event.is_none() {
                        telephone_event = Some(pt);
                    }
                    continue;
                }
                let Some(cap) = self.caps.codecs.iter().find(|c| c.matches(&map)) else {
                    continue;
                };
                if codecs.iter().any(|(c, _)| cap.matches(&rtpmap_of(c))) {
                    continue;
                }
                let codec = Codec {
                    fmtp: m.fmtp(pt).map(str::to_owned),
                    ..cap.with_payload_type(pt)
                };
                codecs.push((codec, cap.fmtp.clone()));
            }
            if !codecs.is_empty() {
                return Ok(Choice {
                    index,
                    codecs,
                    telephone_event,
                    crypto,
                });
            }
        }
        Err(match crypto_refused {
            _ if saw_audio => OfferAnswerError::NoCommonCodec,
            Some(why) => OfferAnswerError::Crypto(why),
            None => OfferAnswerError::NoAudio,
        })
    }

    /// Our audio `m=` section: rtpmap for every codec, fmtp where we have
    /// parameters, telephone-event, ptime, the direction and `a=rtcp-mux` if `mux`.
    fn audio_section<'a>(
        &self,
        local: &LocalMedia,
        proto: &str,
        codecs: impl Iterator<Item = (&'a Codec, Option<&'a str>)> + Clone,
        telephone_event: Option<u8>,
        direction: Direction,
        mux: bool,
    ) -> MediaDescription {
        let formats = codecs
            .clone()
            .map(|(c, _)| c.payload_type.to_string())
            .chain(telephone_event.map(|pt| pt.to_string()))
            .collect();
        let mut m = MediaDescription::new("audio", local.rtp_port, proto, formats);
        for (codec, fmtp) in codecs {
            m.attributes
                .push(Attribute::new("rtpmap", &codec.rtpmap_value()));
            if let Some(fmtp) = fmtp {
                m.attributes.push(Attribute::new(
                    "fmtp",
                    &format!("{} {}", codec.payload_type, fmtp),
                ));
            }
        }
        if let Some(pt) = telephone_event {
            m.attributes.push(Attribute::new(
                "rtpmap",
                &format!("{pt} telephone-event/{TELEPHONE_EVENT_RATE}"),
            ));
            m.attributes.push(Attribute::new(
                "fmtp",
                &format!("{pt} {TELEPHONE_EVENT_FMTP}"),
            ));
        }
        m.attributes
            .push(Attribute::new("ptime", &self.caps.ptime.to_string()));
        m.attributes.push(Attribute::flag(direction.as_str()));
        if mux {
            m.attributes.push(Attribute::flag("rtcp-mux"));
        }
        m
    }

    /// Wraps media sections in session lines and applies the `o=` version rule.
    fn finish(&mut self, local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
        let connection = Connection::new(local.address);
        let mut sdp = SessionDescription {
            version: 0,
            origin: Origin {
                username: "-".to_owned(),
                session_id: self.session_id.to_string(),
                session_version: 0,
                net_type: connection.net_type.clone(),
                addr_type: connection.addr_type.clone(),
                address: connection.address.clone(),
            },
            session_name: "-".to_owned(),
            connection: Some(connection),
            attributes: Vec::new(),
            other_lines: vec![super::SdpLine {
                kind: 't',
                value: "0 0".to_owned(),
            }],
            media,
        };
        if let Some(previous) = &self.last_generated {
            sdp.origin.session_version = previous.origin.session_version;
            if sdp != *previous {
                sdp.origin.session_version = previous.origin.session_version.saturating_add(1);
            }
        }
        self.last_generated = Some(sdp.clone());
        sdp
    }

    /// Builds the result from the peer's description of the audio line.
    #[allow(clippy::too_many_arguments)] // the parts of one result, each computed apart
    fn negotiated(
        &self,
        remote: &SessionDescription,
        media: &MediaDescription,
        ip: IpAddr,
        codec: Codec,
        telephone_event: Option<u8>,
        mut direction: Direction,
        rtcp_mux: bool,
    ) -> Negotiated {
        if ip.is_unspecified() {
            // RFC 2543 hold: the peer receives nothing, so we send nothing.
            direction = Direction::from_flags(false, direction.receives());
        }
        let remote_rtcp = match media.rtcp() {
            _ if rtcp_mux => SocketAddr::new(ip, media.port),
            Some((port, address)) => SocketAddr::new(address.unwrap_or(ip), port),
            None => SocketAddr::new(ip, media.port.saturating_add(1)),
        };
        let remote_ptime = remote.ptime_for(media);
        Negotiated {
            remote_address: SocketAddr::new(ip, media.port),
            remote_rtcp,
            rtcp_mux,
            codec,
            telephone_event,
            direction,
            ptime: remote_ptime.unwrap_or(self.caps.ptime),
            remote_ptime,
            srtp: None,
        }
    }
}

/// Whether an `m=` section carries RFC 5761's `a=rtcp-mux`.
fn has_rtcp_mux(m: &MediaDescription) -> bool {
    m.attribute("rtcp-mux").is_some()
}

fn is_rtp_avp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// `RTP/SAVP` or `RTP/SAVPF`: SRTP keyed in the SDP (not WebRTC's `UDP/TLS/RTP/SAVPF`).
fn is_savp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

/// The keys of an answer to our `RTP/SAVP` offer: the answer's crypto line must answer one of
/// ours (same tag, same suite) with its own key (RFC 4568 §7.1.3).
fn answered_keys(
    ours: &MediaDescription,
    theirs: &MediaDescription,
    key: [u8; KEY_LEN],
) -> Result<SdesKeys, OfferAnswerError> {
    if !is_savp(&theirs.proto) {
        return Err(OfferAnswerError::Crypto("the answer is not encrypted"));
    }
    let lines = |m: &MediaDescription| -> Vec<CryptoLine> {
        m.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
            .filter_map(|a| CryptoLine::parse(a.value.as_deref()?))
            .collect()
    };
    let offered = lines(ours);
    lines(theirs)
        .into_iter()
        .find(|t| offered.iter().any(|o| o.tag == t.tag && o.suite == t.suite))
        .map(|t| SdesKeys {
            suite: t.suite,
            local_key: key,
            remote_key: t.key,
        })
        .ok_or(OfferAnswerError::Crypto(
            "the answer's crypto line answers none of ours",
        ))
}

fn is_telephone_event(map: &RtpMap) -> bool {
    map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == TELEPHONE_EVENT_RATE
}

fn rtpmap_of(codec: &Codec) -> RtpMap {
    RtpMap {
        encoding: codec.encoding.clone(),
        clock_rate: codec.clock_rate,
        channels: codec.channels,
    }
}

/// A line we do not use, answered or re-offered disabled (RFC 3264 §6, §8.2).
fn disabled_copy(m: &MediaDescription) -> MediaDescription {
    MediaDescription::new(&m.media, 0, &m.proto, m.formats.clone())
}

/// Every line of `layout` disabled (port 0), except `audio` at `index`.
fn with_audio_at(
    layout: &[MediaDescription],
    index: usize,
    audio: MediaDescription,
) -> Vec<MediaDescription> {
    let mut media: Vec<MediaDescription> = layout.iter().map(disabled_copy).collect();
    match media.get_mut(index) {
        Some(slot) => *slot = audio,
        None => media.push(audio),
    }
    media
}

/// The telephone-events of an offer's fmtp (`0-15`, `0-11,16`) that we also take (0–16),
/// in the same notation; ours when none are left or the list is not understood.
fn common_events(offered: &str) -> String {
    let mut out = Vec::new();
    for item in offered.split(',').map(str::trim) {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>(), b.trim().parse::<u16>()),
            None => (item.parse::<u16>(), item.parse::<u16>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return TELEPHONE_EVENT_FMTP.to_owned();
        };
        let hi = hi.min(16);
        if lo > hi {
            continue;
        }
        out.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        });
    }
    if out.is_empty() {
        TELEPHONE_EVENT_FMTP.to_owned()
    } else {
        out.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: &str = "192.0.2.10";
    const PEER: &str = "198.51.100.7";

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }

    fn sock(s: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip(s), port)
    }

    fn local() -> LocalMedia {
        LocalMedia::new(ip(US), 40000)
    }

    fn holding() -> LocalMedia {
        LocalMedia {
            direction: Direction::SendOnly,
            ..local()
        }
    }

    fn parse(text: &str) -> SessionDescription {
        match SessionDescription::parse(text) {
            Ok(sdp) => sdp,
            Err(e) => panic!("test SDP failed to parse: {e}"),
        }
    }

    /// A peer description with session-level `c=` at `address` and the
    /// given media sections (LF line ends, as sloppy peers send).
    fn peer_sdp(address: &str, version: u64, media: &str) -> SessionDescription {
        parse(&format!(
            "v=0\no=peer 7777 {version} IN IP4 {address}\ns=call\nc=IN IP4 {address}\nt=0 0\n{media}"
        ))
    }

    const PCMU_PCMA_DTMF: &str = "m=audio 6000 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n";

    fn pcma_only() -> MediaCapabilities {
        MediaCapabilities {
            codecs: vec![Codec::pcma()],
            telephone_event: Some(100),
            ptime: 20,
            rtcp_mux: true,
        }
    }

    fn answer_offer(
        oa: &mut OfferAnswer,
        offer: &SessionDescription,
        local: &LocalMedia,
    ) -> Result<(SessionDescription, Negotiated), OfferAnswerError> {
        oa.receive_offer(offer)?;
        oa.create_answer(local)
    }

    fn formats(m: &MediaDescription) -> Vec<&str> {
        m.formats.iter().map(String::as_str).collect()
    }

    #[test]
    fn initial_offer_lists_capabilities_with_rtpmap_dtmf_and_ptime_and_rtcp_mux() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = oa.create_offer(&local());
        assert_eq!(
            offer.to_string(),
            "v=0\r\no=- 42 0 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\n"
        );
        assert_eq!(oa.state(), NegotiationState::HaveLocalOffer);
        assert_eq!(parse(&offer.to_string()), offer);
    }

    #[test]
    fn ipv6_local_address_is_written_as_ip6() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        let offer = oa.create_offer(&LocalMedia::new(ip("2001:db8::5"), 40000));
        assert_eq!(offer.origin.addr_type, "IP6");
        assert_eq!(
            offer.connection.map(|c| c.to_string()),
            Some("IN IP6 2001:db8::5".to_owned())
        );
    }

    #[test]
    fn answer_keeps_the_offers_payload_type_numbers() {
        let mut oa = OfferAnswer::new(pcma_only(), 9);
        let offer = peer_sdp(PEER, 1, PCMU_PCMA_DTMF);
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        let audio = &answer.media[0];
        assert_eq!(formats(audio), ["8", "101"]);
        assert_eq!(audio.port, 40000);
        assert_eq!(
            audio.rtpmap(101).map(|m| m.encoding),
            Some("telephone-event".into())
        );
        // the offer's events (0-15), not all of ours (0-16)
        assert_eq!(audio.fmtp(101), Some("0-15"));
        assert_eq!(negotiated.codec, Codec::pcma());
        assert_eq!(negotiated.telephone_event, Some(101));
        assert_eq!(negotiated.remote_address, sock(PEER, 6000));
        assert_eq!(negotiated.direction, Direction::SendRecv);
        assert_eq!(oa.state(), NegotiationState::Stable);
        assert_eq!(oa.current(), Some(&negotiated));
    }

    #[test]
    fn rtpmap_by_name_wins_over_the_payload_type_number() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(
            PEER,
            1,
            "m=audio 6000 RTP/AVP 96 8\na=rtpmap:96 PCMU/8000\na=rtpmap:8 PCMA/8000\n",
        );
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(formats(&answer.media[0]), ["96", "8"]);
        assert_eq!(
            answer.media[0]
                .attribute("rtpmap")
                .and_then(|a| a.value.clone()),
            Some("96 PCMU/8000".into())
        );
        assert_eq!(negotiated.codec.payload_type, 96);
        assert_eq!(negotiated.codec.encoding, "PCMU");
        assert_eq!(negotiated.telephone_event, None);
    }

    #[test]
    fn answer_lists_common_codecs_in_the_offerers_order() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(
            PEER,
            1,
            "m=audio 6000 RTP/AVP 18 8 0 101\na=rtpmap:101 telephone-event/8000\n",
        );
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(formats(&answer.media[0]), ["8", "0", "101"]);
        assert_eq!(negotiated.codec, Codec::pcma());
    }

    #[test]
    fn video_and_extra_lines_are_answered_with_port_zero() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(
            PEER,
            1,
            "m=video 6002 RTP/AVP 96\na=rtpmap:96 VP8/90000\n\
m=audio 6004 RTP/SAVP 0\n\
m=audio 6000 RTP/AVP 0\n\
m=audio 6006 RTP/AVP 8\n\
m=application 6008 UDP/BFCP *\n",
        );
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(answer.media.len(), offer.media.len());
        let ports: Vec<u16> = answer.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 0, 40000, 0, 0]);
        assert_eq!(answer.media[0].media, "video");
        assert_eq!(formats(&answer.media[0]), ["96"]);
        assert_eq!(answer.media[1].proto, "RTP/SAVP");
        assert_eq!(formats(&answer.media[4]), ["*"]);
        assert!(answer.media[0].attributes.is_empty());
        assert_eq!(negotiated.remote_address, sock(PEER, 6000));
    }

    #[test]
    fn avpf_audio_is_accepted_with_the_same_proto() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVPF 0\n");
        let (answer, _) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(answer.media[0].proto, "RTP/AVPF");
    }

    #[test]
    fn offer_with_only_g729_has_no_common_codec() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(
            PEER,
            1,
            "m=audio 6000 RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000\n",
        );
        assert_eq!(
            answer_offer(&mut oa, &offer, &local()).err(),
            Some(OfferAnswerError::NoCommonCodec)
        );
        assert_eq!(oa.state(), NegotiationState::Stable);
        assert_eq!(oa.current(), None);
    }

    #[test]
    fn offer_without_usable_audio_is_refused_as_no_audio() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(
            PEER,
            1,
            "m=video 6002 RTP/AVP 96\nm=audio 0 RTP/AVP 0\nm=audio 6000 TCP/MSRP 0\n",
        );
        assert_eq!(
            answer_offer(&mut oa, &offer, &local()).err(),
            Some(OfferAnswerError::NoAudio)
        );
        // encrypted audio with no SDES allowed says so
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = peer_sdp(PEER, 1, "m=audio 0 RTP/AVP 0\nm=audio 6000 RTP/SAVP 0\n");
        assert!(matches!(
            answer_offer(&mut oa, &offer, &local()),
            Err(OfferAnswerError::Crypto(_))
        ));
    }

    #[test]
    fn offer_without_connection_address_is_refused() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 9);
        let offer = parse("v=0\r\no=- 1 1 IN IP4 h.example\r\nm=audio 6000 RTP/AVP 0\r\n");
        assert_eq!(
            answer_offer(&mut oa, &offer, &local()).err(),
            Some(OfferAnswerError::NoConnectionAddress)
        );
    }

    #[test]
    fn peers_answer_uses_the_first_common_codec_and_its_numbers() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(
            PEER,
            1,
            "m=audio 6000 RTP/AVP 18 8 0 100\na=rtpmap:100 telephone-event/8000\na=ptime:30\n",
        );
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.codec, Codec::pcma());
        assert_eq!(negotiated.telephone_event, Some(100));
        assert_eq!(negotiated.remote_address, sock(PEER, 6000));
        assert_eq!(negotiated.remote_rtcp, sock(PEER, 6001));
        assert_eq!(negotiated.ptime, 30);
        assert_eq!(negotiated.remote_ptime, Some(30));
        assert_eq!(negotiated.direction, Direction::SendRecv);
        assert_eq!(oa.state(), NegotiationState::Stable);
    }

    #[test]
    fn answer_without_rtpmap_for_our_dynamic_number_still_gets_dtmf() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0 101\n");
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.telephone_event, Some(101));
        assert_eq!(negotiated.ptime, 20);
        assert_eq!(negotiated.remote_ptime, None);
    }

    #[test]
    fn rtcp_mux_is_offered_and_used_only_when_the_answer_takes_it() {
        // RFC 5761 §5.1.1: the answer decides
        for (answer_mux, used) in [("a=rtcp-mux\n", true), ("", false)] {
            let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
            let offer = oa.create_offer(&local());
            assert!(has_rtcp_mux(&offer.media[0]), "{offer}");
            let answer = peer_sdp(
                PEER,
                1,
                &format!("m=audio 6000 RTP/AVP 0\na=rtcp:7005\n{answer_mux}"),
            );
            let negotiated = oa.receive_answer(&answer).expect("negotiated");
            assert_eq!(negotiated.rtcp_mux, used);
            // multiplexed, RTCP goes to the RTP port whatever a=rtcp says
            let rtcp_port = if used { 6000 } else { 7005 };
            assert_eq!(negotiated.remote_rtcp, sock(PEER, rtcp_port));
            // a re-offer keeps offering it (§5.1.3 once agreed)
            assert!(has_rtcp_mux(&oa.create_offer(&local()).media[0]));
        }
        // an answer that adds it to an offer without it does not get it
        let mut oa = OfferAnswer::new(
            MediaCapabilities {
                rtcp_mux: false,
                ..Default::default()
            },
            42,
        );
        let offer = oa.create_offer(&local());
        assert!(!has_rtcp_mux(&offer.media[0]), "{offer}");
        let answer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\na=rtcp-mux\n");
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert!(!negotiated.rtcp_mux);
        assert_eq!(negotiated.remote_rtcp, sock(PEER, 6001));
    }

    #[test]
    fn rtcp_mux_is_answered_only_when_offered_and_wanted() {
        for (offer_mux, ours, used) in [
            ("a=rtcp-mux\n", true, true),
            ("", true, false),
            ("a=rtcp-mux\n", false, false),
        ] {
            let caps = MediaCapabilities {
                rtcp_mux: ours,
                ..Default::default()
            };
            let mut oa = OfferAnswer::new(caps, 9);
            let offer = peer_sdp(PEER, 1, &format!("m=audio 6000 RTP/AVP 0\n{offer_mux}"));
            let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
            assert_eq!(has_rtcp_mux(&answer.media[0]), used, "{answer}");
            assert_eq!(negotiated.rtcp_mux, used);
            let rtcp_port = if used { 6000 } else { 6001 };
            assert_eq!(negotiated.remote_rtcp, sock(PEER, rtcp_port));
        }
    }

    #[test]
    fn a_rtcp_attribute_gives_the_remote_rtcp_address() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(
            PEER,
            1,
            "m=audio 6000 RTP/AVP 0\na=rtcp:7005 IN IP4 198.51.100.9\n",
        );
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.remote_rtcp, sock("198.51.100.9", 7005));

        let offer = peer_sdp(PEER, 2, "m=audio 6000 RTP/AVP 0\na=rtcp:6011\n");
        let (_, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(negotiated.remote_rtcp, sock(PEER, 6011));
    }

    #[test]
    fn answer_with_port_zero_is_rejected() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(PEER, 1, "m=audio 0 RTP/AVP 0\n");
        assert_eq!(oa.receive_answer(&answer), Err(OfferAnswerError::Rejected));
        assert_eq!(oa.state(), NegotiationState::Stable);
        assert_eq!(oa.current(), None);
    }

    #[test]
    fn answer_with_another_number_of_lines_is_a_mismatch() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\nm=video 0 RTP/AVP 96\n");
        assert_eq!(
            oa.receive_answer(&answer),
            Err(OfferAnswerError::MediaCountMismatch {
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn answer_or_offer_out_of_turn_is_refused() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let sdp = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\n");
        assert_eq!(
            oa.receive_answer(&sdp),
            Err(OfferAnswerError::UnexpectedAnswer)
        );
        assert_eq!(
            oa.create_answer(&local()).err(),
            Some(OfferAnswerError::NoPendingOffer)
        );
        oa.create_offer(&local());
        // Glare: both sides offered.
        assert_eq!(
            oa.receive_offer(&sdp),
            Err(OfferAnswerError::UnexpectedOffer)
        );
        assert_eq!(oa.state(), NegotiationState::HaveLocalOffer);
        oa.rollback();
        assert_eq!(oa.state(), NegotiationState::Stable);
        assert_eq!(oa.receive_offer(&sdp), Ok(()));
        assert_eq!(oa.state(), NegotiationState::HaveRemoteOffer);
        assert_eq!(
            oa.receive_offer(&sdp),
            Err(OfferAnswerError::UnexpectedOffer)
        );
        assert_eq!(
            oa.receive_answer(&sdp),
            Err(OfferAnswerError::UnexpectedAnswer)
        );
        assert_eq!(oa.state(), NegotiationState::HaveRemoteOffer);
    }

    #[test]
    fn we_hold_with_sendonly_and_peer_answers_recvonly() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = oa.create_offer(&holding());
        assert_eq!(offer.media[0].direction(), Direction::SendOnly);
        let answer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\na=recvonly\n");
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.direction, Direction::SendOnly);
    }

    #[test]
    fn peer_answering_inactive_to_our_sendrecv_stops_media() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        let answer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\na=inactive\n");
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.direction, Direction::Inactive);
    }

    #[test]
    fn peer_holding_with_sendonly_gets_recvonly() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\na=sendonly\n");
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(answer.media[0].direction(), Direction::RecvOnly);
        assert_eq!(negotiated.direction, Direction::RecvOnly);
        assert!(!negotiated.direction.sends());
    }

    #[test]
    fn peer_offering_inactive_gets_inactive() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\na=inactive\n");
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(answer.media[0].direction(), Direction::Inactive);
        assert_eq!(negotiated.direction, Direction::Inactive);
    }

    #[test]
    fn peer_holding_with_zero_address_is_not_sent_to() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp("0.0.0.0", 1, "m=audio 6000 RTP/AVP 0\n");
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(answer.media[0].direction(), Direction::RecvOnly);
        assert!(!negotiated.direction.sends());
        assert!(negotiated.direction.receives());

        // The same hold style in an answer to our offer.
        oa.create_offer(&local());
        let answer = peer_sdp("0.0.0.0", 2, "m=audio 6000 RTP/AVP 0\n");
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.direction, Direction::RecvOnly);
    }

    #[test]
    fn holding_while_answering_combines_both_sides() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\n");
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &holding()).expect("answer");
        assert_eq!(answer.media[0].direction(), Direction::SendOnly);
        assert_eq!(negotiated.direction, Direction::SendOnly);

        let offer = peer_sdp(PEER, 2, "m=audio 6000 RTP/AVP 0\na=sendonly\n");
        let (answer, negotiated) = answer_offer(&mut oa, &offer, &holding()).expect("answer");
        assert_eq!(answer.media[0].direction(), Direction::Inactive);
        assert_eq!(negotiated.direction, Direction::Inactive);
    }

    #[test]
    fn hold_then_unhold_returns_to_sendrecv_and_bumps_the_version() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let answer = |dir: &str| peer_sdp(PEER, 1, &format!("m=audio 6000 RTP/AVP 0\na={dir}\n"));

        let first = oa.create_offer(&local());
        oa.receive_answer(&answer("sendrecv")).expect("initial");
        let hold = oa.create_offer(&holding());
        let negotiated = oa.receive_answer(&answer("recvonly")).expect("hold");
        assert_eq!(negotiated.direction, Direction::SendOnly);
        let unhold = oa.create_offer(&local());
        assert_eq!(unhold.media[0].direction(), Direction::SendRecv);
        let negotiated = oa.receive_answer(&answer("sendrecv")).expect("unhold");
        assert_eq!(negotiated.direction, Direction::SendRecv);

        let versions = [&first, &hold, &unhold].map(|s| s.origin.session_version);
        assert_eq!(versions, [0, 1, 2]);
        let ids = [&first, &hold, &unhold].map(|s| s.origin.session_id.clone());
        assert_eq!(ids, ["42", "42", "42"]);
    }

    #[test]
    fn identical_re_offer_and_re_answer_keep_the_version() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let first = oa.create_offer(&local());
        oa.receive_answer(&peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0 8 101\n"))
            .expect("initial");
        let refresh = oa.create_offer(&local());
        assert_eq!(refresh, first);
        oa.receive_answer(&peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0 8 101\n"))
            .expect("refresh");

        // Peer refreshes the session: the same offer twice gives the same answer.
        let offer = peer_sdp(
            PEER,
            2,
            "m=audio 6000 RTP/AVP 8 0 101\na=rtpmap:101 telephone-event/8000\n",
        );
        let (a1, _) = answer_offer(&mut oa, &offer, &local()).expect("answer");
        assert_eq!(formats(&a1.media[0]), ["8", "0", "101"]);
        let (a2, _) = answer_offer(&mut oa, &offer, &local()).expect("re-answer");
        assert_eq!(a1.origin.session_version, 1);
        assert_eq!(a2, a1);
        let (a3, _) = answer_offer(&mut oa, &offer, &holding()).expect("hold answer");
        assert_eq!(a3.origin.session_version, 2);
    }

    #[test]
    fn rolled_back_offer_never_has_its_version_reused_for_other_content() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        oa.create_offer(&local());
        oa.receive_answer(&peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\n"))
            .expect("initial");
        let hold = oa.create_offer(&holding());
        oa.rollback();
        assert_eq!(oa.current().map(|n| n.direction), Some(Direction::SendRecv));
        let other = oa.create_offer(&LocalMedia::new(ip(US), 40002));
        assert_eq!(hold.origin.session_version, 1);
        assert_eq!(other.origin.session_version, 2);
    }

    #[test]
    fn re_offer_keeps_the_sessions_m_lines_and_payload_numbers() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp(
            PEER,
            1,
            "m=video 6002 RTP/AVP 96\nm=audio 6000 RTP/AVP 97 8 100\na=rtpmap:97 PCMU/8000\na=rtpmap:100 telephone-event/8000\n",
        );
        answer_offer(&mut oa, &offer, &local()).expect("answer");
        let re_offer = oa.create_offer(&holding());
        assert_eq!(re_offer.media.len(), 2);
        assert_eq!(re_offer.media[0].media, "video");
        assert_eq!(re_offer.media[0].port, 0);
        assert_eq!(re_offer.media[1].port, 40000);
        assert_eq!(formats(&re_offer.media[1]), ["97", "8", "100"]);
        assert_eq!(re_offer.media[1].direction(), Direction::SendOnly);

        let answer = peer_sdp(
            PEER,
            2,
            "m=video 0 RTP/AVP 96\nm=audio 6000 RTP/AVP 97 100\na=rtpmap:97 PCMU/8000\na=rtpmap:100 telephone-event/8000\na=recvonly\n",
        );
        let negotiated = oa.receive_answer(&answer).expect("negotiated");
        assert_eq!(negotiated.codec.payload_type, 97);
        assert_eq!(negotiated.telephone_event, Some(100));
        assert_eq!(negotiated.direction, Direction::SendOnly);
    }

    #[test]
    fn re_offer_moves_clashing_preferred_numbers_to_a_free_dynamic_one() {
        let caps = MediaCapabilities {
            codecs: vec![Codec::new(97, "speex", 8000), Codec::pcmu()],
            telephone_event: Some(101),
            ptime: 20,
            rtcp_mux: true,
        };
        let mut oa = OfferAnswer::new(caps, 42);
        // The peer numbered PCMU 97, the number we prefer for speex.
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 97\na=rtpmap:97 PCMU/8000\n");
        answer_offer(&mut oa, &offer, &local()).expect("answer");
        let re_offer = oa.create_offer(&local());
        let audio = &re_offer.media[0];
        assert_eq!(formats(audio), ["96", "97", "101"]);
        assert_eq!(audio.rtpmap(96).map(|m| m.encoding), Some("speex".into()));
        assert_eq!(audio.rtpmap(97).map(|m| m.encoding), Some("PCMU".into()));
    }

    #[test]
    fn re_offer_with_fewer_lines_is_refused() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 42);
        let offer = peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\nm=video 6002 RTP/AVP 96\n");
        answer_offer(&mut oa, &offer, &local()).expect("answer");
        let shorter = peer_sdp(PEER, 2, "m=audio 6000 RTP/AVP 0\n");
        assert_eq!(
            oa.receive_offer(&shorter),
            Err(OfferAnswerError::MediaCountMismatch {
                expected: 2,
                found: 1
            })
        );
    }

    #[test]
    fn errors_display_and_wrap_parse_errors() {
        let e = OfferAnswerError::from(SdpError::MissingOrigin);
        assert_eq!(e.to_string(), "invalid SDP: SDP body has no o= line");
        assert!(e.source().is_some());
        assert_eq!(
            OfferAnswerError::NoCommonCodec.to_string(),
            "no audio codec in common"
        );
    }

    #[test]
    fn the_answer_lists_only_the_telephone_events_the_offer_has() {
        assert_eq!(common_events("0-15"), "0-15");
        assert_eq!(common_events("0-11,16,32-40"), "0-11,16");
        assert_eq!(common_events("0-255"), "0-16");
        assert_eq!(common_events("junk"), "0-16");
        let offer = peer_sdp(PEER, 1, PCMU_PCMA_DTMF);
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 7);
        oa.receive_offer(&offer).unwrap();
        let (answer, _) = oa.create_answer(&local()).unwrap();
        assert_eq!(answer.media[0].fmtp(101), Some("0-15"));
    }

    const PEER_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    fn sdes(offer: bool, required: bool) -> Option<SdesSetup> {
        Some(SdesSetup {
            key: [7; KEY_LEN],
            offer,
            required,
        })
    }

    fn crypto_lines(m: &MediaDescription) -> Vec<CryptoLine> {
        m.attributes
            .iter()
            .filter(|a| a.name == "crypto")
            .map(|a| CryptoLine::parse(a.value.as_deref().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn an_sdes_offer_is_savp_with_a_key_per_suite_and_takes_the_answers_key() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes(true, false));
        let offer = oa.create_offer(&local());
        let audio = &offer.media[0];
        assert_eq!(audio.proto, "RTP/SAVP");
        let lines = crypto_lines(audio);
        assert_eq!(
            lines.iter().map(|l| (l.tag, l.suite)).collect::<Vec<_>>(),
            [(1, SUITES[0]), (2, SUITES[1])]
        );
        assert!(lines.iter().all(|l| l.key == [7; KEY_LEN]));
        let answer = peer_sdp(
            PEER,
            1,
            &format!(
                "m=audio 6000 RTP/SAVP 0\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{PEER_KEY}\n"
            ),
        );
        let n = oa.receive_answer(&answer).unwrap();
        let keys = n.srtp.unwrap();
        assert_eq!(keys.suite, "AES_CM_128_HMAC_SHA1_32");
        assert_eq!(keys.local_key, [7; KEY_LEN]);
        assert_eq!(
            keys.remote_key.to_vec(),
            super::super::crypto::decode_base64(PEER_KEY).unwrap()
        );
        // a re-offer stays encrypted
        let again = oa.create_offer(&local());
        assert_eq!(again.media[0].proto, "RTP/SAVP");
        assert_eq!(crypto_lines(&again.media[0]).len(), 2);
    }

    #[test]
    fn an_answer_to_an_sdes_offer_must_answer_one_of_its_lines() {
        for (answer, why) in [
            ("m=audio 6000 RTP/AVP 0\n", "the answer is not encrypted"),
            ("m=audio 6000 RTP/SAVP 0\n", "the answer's crypto line answers none of ours"),
            (
                "m=audio 6000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\n",
                "the answer's crypto line answers none of ours",
            ),
        ] {
            let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
            oa.set_sdes(sdes(true, false));
            oa.create_offer(&local());
            let e = oa.receive_answer(&peer_sdp(PEER, 1, answer)).unwrap_err();
            assert_eq!(e, OfferAnswerError::Crypto(why), "{answer}");
            assert!(e.to_string().starts_with("SRTP: "));
        }
    }

    #[test]
    fn a_savp_offer_is_answered_with_our_key_under_its_tag_when_sdes_is_allowed() {
        let offer = peer_sdp(
            PEER,
            1,
            &format!(
                "m=audio 6000 RTP/SAVP 0 101\na=rtpmap:101 telephone-event/8000\n\
                 a=crypto:3 AEAD_AES_256_GCM inline:{PEER_KEY}\n\
                 a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{PEER_KEY}|2^31\n"
            ),
        );
        // accepted, though we would not offer it ourselves
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes(false, false));
        let (answer, n) = answer_offer(&mut oa, &offer, &local()).unwrap();
        assert_eq!(answer.media[0].proto, "RTP/SAVP");
        let lines = crypto_lines(&answer.media[0]);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].tag, lines[0].suite),
            (5, "AES_CM_128_HMAC_SHA1_80")
        );
        assert_eq!(lines[0].key, [7; KEY_LEN]);
        let keys = n.srtp.unwrap();
        assert_eq!(
            (keys.suite, keys.local_key),
            ("AES_CM_128_HMAC_SHA1_80", [7; KEY_LEN])
        );
        // without SDES (keys over plain UDP, say) it is refused, with the reason
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        let e = answer_offer(&mut oa, &offer, &local()).unwrap_err();
        assert_eq!(
            e,
            OfferAnswerError::Crypto("encrypted media offered, and SDES keys are not allowed here")
        );
        // a SAVP line without a usable key is passed over for a plain one beside it
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes(false, false));
        let two = peer_sdp(PEER, 1, "m=audio 6000 RTP/SAVP 0\nm=audio 6002 RTP/AVP 0\n");
        let (answer, n) = answer_offer(&mut oa, &two, &local()).unwrap();
        assert_eq!((answer.media[0].port, answer.media[1].port), (0, 40000));
        assert!(n.srtp.is_none());
    }

    #[test]
    fn required_sdes_refuses_plain_rtp() {
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes(true, true));
        let e = answer_offer(
            &mut oa,
            &peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\n"),
            &local(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            OfferAnswerError::Crypto("plain RTP offered, and SRTP is required")
        );
        // not required: plain RTP answered plainly, and our offers stay plain
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes(false, false));
        let (answer, n) = answer_offer(
            &mut oa,
            &peer_sdp(PEER, 1, "m=audio 6000 RTP/AVP 0\n"),
            &local(),
        )
        .unwrap();
        assert_eq!(answer.media[0].proto, "RTP/AVP");
        assert!(crypto_lines(&answer.media[0]).is_empty() && n.srtp.is_none());
        assert_eq!(oa.create_offer(&local()).media[0].proto, "RTP/AVP");
    }
}
