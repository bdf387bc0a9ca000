//! [`WebRtcAudio`]: the `SessionDescriptionHandler` for browsers (`UDP/TLS/RTP/SAVPF`), so that
//! a SIP.js or JsSIP page can call a sipua program and be called by it.
//!
//! The WebRTC machinery is [str0m](https://docs.rs/str0m), a sans-IO engine in the style of
//! our core: ICE (RFC 8445; answered STUN checks and consent freshness, RFC 7675), DTLS 1.2
//! with SRTP keys (RFC 5764; `AES_CM_128_HMAC_SHA1_80` and AEAD-GCM profiles), STUN, DTLS and
//! SRTP on one port (RFC 7983), BUNDLE and rtcp-mux (RFC 8843, RFC 5761). It owns the SDP of
//! the call (fingerprint, setup, ICE credentials, one host candidate). This module gives it a
//! socket, a clock and 20 ms frames of audio: the same [`AudioIo`] ends and codecs
//! ([`MediaCodec`]: G.711, Opus with the `opus` feature) as [`crate::RtpAudio`], and the same
//! [`MediaHandle`] for statistics and for waiting until a recording is complete.
//!
//! DTMF goes both ways as RFC 4733 telephone-events (a browser sends them with its
//! `RTCDTMFSender`, which SIP.js's `sendDtmf` uses); they come out as [`MediaEvent::Dtmf`].
//!
//! A peer that leaves without BYE (a closed tab: DTLS close_notify; a lost network: ICE
//! consent lapses, RFC 7675) ends the session: BYE, and [`sipua::EndReason::MediaFailure`] with
//! the reason.
//!
//! Hold and resume are renegotiations (RFC 3264 §8.4): a re-offer sets our direction
//! (`sendonly` on hold) and str0m answers the peer's. Not yet here: a jitter buffer (str0m
//! hands over packets in order; a lost one is concealed by the codec).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sipua::{
    BodyAndContentType, BoxFuture, SdhError, SessionContext, SessionDescriptionHandler,
    SessionDescriptionHandlerFactory, SessionDescriptionHandlerModifier,
    SessionDescriptionHandlerOptions, SessionEnder,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec as WebCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt, TelephoneEvent};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

use crate::codec::MediaCodec;
use crate::dtmf::DtmfReceiver;
use crate::resample::frame_samples;
use crate::rtp_audio::Control;
use crate::sdp::offer_answer::{Codec, MediaCapabilities};
use crate::stream::{MediaEvent, MediaStats};
use crate::{AudioIo, AudioIoFactory, MediaHandle};

/// Settings of [`WebRtcAudio`] handlers.
#[derive(Clone)]
pub struct WebRtcAudioOptions {
    /// Codecs offered and accepted, in order of preference: those of them a browser speaks
    /// (Opus with the `opus` feature, PCMU, PCMA) are used, and telephone-event on its payload
    /// type (at 8 kHz, and at 48 kHz on 110 beside Opus). Default: Opus first when built in,
    /// then PCMU and PCMA; telephone-event on 101.
    pub capabilities: MediaCapabilities,
    /// The address announced as our ICE candidate instead of the one signalling names towards
    /// the peer (a NAT's public address).
    pub public_address: Option<IpAddr>,
    /// The audio ends of each call (default: silence out, nothing kept).
    pub audio: AudioIoFactory,
    /// The sample rate of the frames the audio ends play and hear: 8 000 (the default),
    /// 16 000, 24 000 or 48 000 Hz. With Opus, 48 000 gives the browser's full band end to
    /// end; see `RtpAudioOptions::audio_rate`.
    pub audio_rate: u32,
}

impl Default for WebRtcAudioOptions {
    fn default() -> Self {
        #[allow(unused_mut)]
        let mut capabilities = MediaCapabilities::default();
        #[cfg(feature = "opus")]
        capabilities.codecs.insert(0, crate::codec::opus());
        WebRtcAudioOptions {
            capabilities,
            public_address: None,
            audio: Arc::new(|_| Ok(AudioIo::silence())),
            audio_rate: 8000,
        }
    }
}

impl std::fmt::Debug for WebRtcAudioOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcAudioOptions")
            .field("capabilities", &self.capabilities)
            .field("public_address", &self.public_address)
            .field("audio_rate", &self.audio_rate)
            .finish_non_exhaustive()
    }
}

/// Makes a [`WebRtcAudio`] handler per session: put it in `UserAgentOptions`.
#[derive(Clone, Debug, Default)]
pub struct WebRtcAudioFactory {
    options: Arc<WebRtcAudioOptions>,
}

impl WebRtcAudioFactory {
    /// A factory with these settings.
    pub fn new(options: WebRtcAudioOptions) -> WebRtcAudioFactory {
        WebRtcAudioFactory {
            options: Arc::new(options),
        }
    }
}

impl SessionDescriptionHandlerFactory for WebRtcAudioFactory {
    fn create(
        &self,
        session: &SessionContext,
        _options: &SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn SessionDescriptionHandler>, SdhError> {
        Ok(Box::new(WebRtcAudio::new(session, self.options.clone())?))
    }
}

/// Whether an SDP body is a WebRTC offer (DTLS-SRTP transport, `UDP/TLS/RTP/SAVPF`): what a
/// browser sends, and what [`WebRtcAudio`] answers.
pub fn is_webrtc_sdp(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.lines().any(|l| {
        l.starts_with("m=") && (l.contains("UDP/TLS/RTP/SAVP") || l.contains("TCP/TLS/RTP/SAVP"))
    })
}

/// The payload type of telephone-event at Opus's 48 kHz clock (Chrome's own choice).
const OPUS_TELEPHONE_EVENT: u8 = 110;

/// One DTLS certificate for the whole process: making a key pair per call would cost a
/// browser call a few milliseconds of CPU for nothing (its fingerprint is in each SDP).
fn certificate() -> Result<DtlsCert, SdhError> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    })
    .clone()
    .ok_or_else(|| SdhError::new("no DTLS certificate could be made"))
}

/// The WebRTC audio handler of one session (see the module documentation).
pub struct WebRtcAudio {
    rtc: Option<Rtc>,
    socket: Option<StdUdpSocket>,
    /// Our ICE candidate: the address the browser sends to.
    candidate: SocketAddr,
    /// The peer's offer, waiting for our answer.
    remote_offer: Option<SdpOffer>,
    /// Our offer, waiting for the peer's answer.
    pending: Option<SdpPendingOffer>,
    /// Our audio's media id, once known (an offerer makes it; an answerer learns it when the
    /// media is added).
    mid: Option<Mid>,
    audio: Option<AudioIo>,
    handle: Arc<MediaHandle>,
    stats_tx: Option<watch::Sender<MediaStats>>,
    closed_tx: Option<watch::Sender<bool>>,
    running: bool,
    /// Ends the session when the peer leaves (consent lost, DTLS closed).
    ender: SessionEnder,
    /// The audio ends' sample rate.
    audio_rate: u32,
    /// Once the media task runs, the way to its `Rtc` (a renegotiation is done there).
    ops: Option<mpsc::Sender<RtcOp>>,
    /// The last description each side sent: a re-offer that changes nothing sends ours again,
    /// and the peer's repeated one (a 2xx after a 183) is no new offer.
    last_local: Option<String>,
    last_remote: Option<String>,
    /// Our last re-offer changed nothing: its answer has nothing to apply.
    offer_unchanged: bool,
}

/// Work for the media task's `Rtc` (with the audio's media id, once known): a renegotiation
/// step asked by the handler, whose result goes back on a one-shot channel inside.
type RtcOp = Box<dyn FnOnce(&mut Rtc, Option<Mid>) + Send>;

impl WebRtcAudio {
    /// A handler for `session`: binds its one UDP port now and makes its audio ends.
    pub fn new(
        session: &SessionContext,
        options: Arc<WebRtcAudioOptions>,
    ) -> Result<WebRtcAudio, SdhError> {
        crate::rtp_audio::check_audio_rate(options.audio_rate)?;
        let ip = match (options.public_address, session.local_ip) {
            (Some(p), _) => p,
            (None, ip) if !ip.is_unspecified() => ip,
            (None, ip) if ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, _) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        let socket = StdUdpSocket::bind(SocketAddr::new(session.bind_ip, 0)).map_err(io_err)?;
        socket.set_nonblocking(true).map_err(io_err)?;
        let candidate = SocketAddr::new(ip, socket.local_addr().map_err(io_err)?.port());
        let mut config = Rtc::builder().clear_codecs().set_dtls_cert(certificate()?);
        for c in &options.capabilities.codecs {
            let name = c.encoding.to_ascii_uppercase();
            config = match name.as_str() {
                #[cfg(feature = "opus")]
                "OPUS" => config.enable_opus(true, false),
                "PCMU" => config.enable_pcmu(true, false),
                "PCMA" => config.enable_pcma(true, false),
                _ => config,
            };
        }
        if let Some(te) = options.capabilities.telephone_event {
            let opus = options
                .capabilities
                .codecs
                .iter()
                .any(|c| c.encoding.eq_ignore_ascii_case("opus"));
            let mut tele = |pt: u8, rate: Frequency| {
                let codecs = config.codec_config();
                codecs.add_config(
                    Pt::from(pt),
                    None,
                    WebCodec::Tele,
                    rate,
                    None,
                    Default::default(),
                );
            };
            tele(te, Frequency::EIGHT_KHZ);
            if opus && te != OPUS_TELEPHONE_EVENT {
                tele(OPUS_TELEPHONE_EVENT, Frequency::FORTY_EIGHT_KHZ);
            }
        }
        let mut rtc = config.build(Instant::now());
        let host = Candidate::host(candidate, "udp")
            .map_err(|e| SdhError::new(format!("ICE candidate {candidate}: {e}")))?;
        rtc.add_local_candidate(host);
        let audio = (options.audio)(session)?;
        let (handle, stats_tx, closed_tx) = MediaHandle::unstarted(candidate);
        Ok(WebRtcAudio {
            rtc: Some(rtc),
            socket: Some(socket),
            candidate,
            remote_offer: None,
            pending: None,
            mid: None,
            audio: Some(audio),
            handle,
            stats_tx: Some(stats_tx),
            closed_tx: Some(closed_tx),
            running: false,
            ender: session.ender(),
            audio_rate: options.audio_rate,
            ops: None,
            last_local: None,
            last_remote: None,
            offer_unchanged: false,
        })
    }

    /// The handle the session exposes (also returned by `Session::media`).
    pub fn media_handle(&self) -> Arc<MediaHandle> {
        self.handle.clone()
    }

    /// Runs `f` on the call's `Rtc`: here before the media starts, in the media task after
    /// (so that its single-writer rule holds: every change is followed by draining its output).
    async fn on_rtc<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Rtc, Option<Mid>) -> T + Send + 'static,
    ) -> Result<T, SdhError> {
        if let Some(rtc) = self.rtc.as_mut() {
            return Ok(f(rtc, self.mid));
        }
        let gone = || SdhError::new("the WebRTC media has ended");
        let ops = self.ops.as_ref().ok_or_else(gone)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op: RtcOp = Box::new(move |rtc, mid| {
            let _ = tx.send(f(rtc, mid));
        });
        ops.send(op).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Starts the media task once offer and answer are both applied.
    fn start(&mut self) -> Result<(), SdhError> {
        let (Some(rtc), Some(socket), Some(audio), Some(stats_tx), Some(closed_tx)) = (
            self.rtc.take(),
            self.socket.take(),
            self.audio.take(),
            self.stats_tx.take(),
            self.closed_tx.take(),
        ) else {
            return Err(SdhError::new("media already closed"));
        };
        let socket = UdpSocket::from_std(socket).map_err(io_err)?;
        let (ops_tx, ops) = mpsc::channel(4);
        self.ops = Some(ops_tx);
        let (tx, rx) = mpsc::channel(16);
        *self
            .handle
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tx);
        tokio::spawn(run(Media {
            rtc,
            socket,
            candidate: self.candidate,
            mid: self.mid,
            audio,
            control: rx,
            stats_tx,
            closed_tx,
            events: self.handle.events.clone(),
            ender: self.ender.clone(),
            ops,
            audio_rate: self.audio_rate,
        }));
        self.running = true;
        Ok(())
    }
}

impl SessionDescriptionHandler for WebRtcAudio {
    fn get_description<'a>(
        &'a mut self,
        options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<BodyAndContentType, SdhError>> {
        Box::pin(async move {
            let sdp = if let Some(offer) = self.remote_offer.take() {
                // the peer's offer, first or later (hold, resume): str0m answers it
                let answer = self
                    .on_rtc(move |rtc, _| {
                        rtc.sdp_api().accept_offer(offer).map(|a| a.to_sdp_string())
                    })
                    .await?
                    .map_err(|e| SdhError::new(format!("the WebRTC offer: {e}")))?;
                if !self.running {
                    self.start()?;
                }
                answer
            } else if self.rtc.is_some() && self.mid.is_none() {
                // our first offer: one audio stream
                let (offer, pending, mid) = self
                    .on_rtc(|rtc, _| {
                        let mut api = rtc.sdp_api();
                        let mid =
                            api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
                        api.apply().map(|(o, p)| (o.to_sdp_string(), p, mid))
                    })
                    .await?
                    .ok_or_else(|| SdhError::new("no WebRTC offer to make"))?;
                self.pending = Some(pending);
                self.mid = Some(mid);
                offer
            } else {
                // a re-offer: on hold we only send (RFC 3264 §8.4), else both ways
                let dir = if options.hold {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
                let made = self
                    .on_rtc(move |rtc, mid| {
                        let mut api = rtc.sdp_api();
                        if let Some(m) = mid {
                            api.set_direction(m, dir);
                        }
                        api.apply().map(|(o, p)| (o.to_sdp_string(), p))
                    })
                    .await?;
                match made {
                    Some((offer, pending)) => {
                        self.pending = Some(pending);
                        offer
                    }
                    None => {
                        // nothing changes (a refresh): the same description again
                        self.offer_unchanged = true;
                        self.last_local
                            .clone()
                            .ok_or_else(|| SdhError::new("no WebRTC offer to make"))?
                    }
                }
            };
            self.last_local = Some(sdp.clone());
            BodyAndContentType::sdp(sdp).modified(modifiers)
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
            let text =
                std::str::from_utf8(&d.body).map_err(|_| SdhError::new("the SDP is not UTF-8"))?;
            if let Some(pending) = self.pending.take() {
                let answer = SdpAnswer::from_sdp_string(text)
                    .map_err(|e| SdhError::new(format!("the WebRTC answer: {e}")))?;
                self.on_rtc(move |rtc, _| rtc.sdp_api().accept_answer(pending, answer))
                    .await?
                    .map_err(|e| SdhError::new(format!("the WebRTC answer: {e}")))?;
                if !self.running {
                    self.start()?;
                }
            } else if std::mem::take(&mut self.offer_unchanged)
                || self.last_remote.as_deref() == Some(text)
            {
                // the answer to a re-offer that changed nothing, or the same description
                // again (a 2xx after a 183): nothing new
            } else {
                let offer = SdpOffer::from_sdp_string(text)
                    .map_err(|e| SdhError::new(format!("the WebRTC offer: {e}")))?;
                self.remote_offer = Some(offer);
            }
            self.last_remote = Some(text.to_owned());
            Ok(())
        })
    }

    fn has_description(&self, content_type: &str) -> bool {
        BodyAndContentType::is_sdp_type(content_type)
    }

    fn rollback_description(&mut self) -> BoxFuture<'_, Result<(), SdhError>> {
        // the offer refused: the session stays as it was (str0m forgets a pending offer
        // when the next one is made)
        self.remote_offer = None;
        self.pending = None;
        self.offer_unchanged = false;
        Box::pin(async { Ok(()) })
    }

    fn handle(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.handle.clone())
    }

    fn send_dtmf(&mut self, tones: &str) -> bool {
        let valid = !tones.is_empty()
            && tones
                .chars()
                .all(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d'));
        valid && self.running && self.handle.send_dtmf(&tones.to_ascii_uppercase())
    }

    fn close(&mut self) {
        self.handle.close(&mut self.audio, &mut self.closed_tx);
    }
}

impl Drop for WebRtcAudio {
    fn drop(&mut self) {
        self.close();
    }
}

/// Our codec for what str0m negotiated.
fn codec_of(codec: WebCodec) -> Option<Codec> {
    match codec {
        WebCodec::PCMU => Some(Codec::pcmu()),
        WebCodec::PCMA => Some(Codec::pcma()),
        #[cfg(feature = "opus")]
        WebCodec::Opus => Some(crate::codec::opus()),
        _ => None,
    }
}

/// The sending side: the payload type and codec chosen, and where the RTP clock is.
struct Sender {
    pt: Pt,
    codec: MediaCodec,
    clock: Frequency,
    timestamp: u64,
}

/// How long each digit we send lasts, and the silence after it (RFC 4733 §2.5.1.2 suggests
/// at least 40 ms between events; str0m wants 50).
const DIGIT: Duration = Duration::from_millis(100);
const DIGIT_GAP: Duration = Duration::from_millis(70);

/// How long a peer that closed its connection has to send its BYE before we end the session.
const BYE_GRACE: Duration = Duration::from_secs(2);

/// How late a frame may be sent; a later one is skipped.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);

/// Digits waiting to be sent at most.
const MAX_QUEUED_DIGITS: usize = 64;

/// Loss from the sequence numbers str0m extends (RFC 3550 A.3): the span seen so far against
/// the packets that arrived (audio and telephone-events: they share the sequence).
#[derive(Default)]
struct SeqCount {
    first: Option<u64>,
    last: u64,
    arrived: u64,
}

impl SeqCount {
    /// Counts the packets of `range` and updates the loss in `stats`; returns how many.
    fn saw(
        &mut self,
        range: &std::ops::RangeInclusive<str0m::rtp::SeqNo>,
        stats: &mut MediaStats,
    ) -> u64 {
        let (lo, hi) = (**range.start(), **range.end());
        let n = hi.saturating_sub(lo) + 1;
        self.arrived += n;
        let first = self.first.map_or(lo, |f| f.min(lo));
        self.first = Some(first);
        self.last = self.last.max(hi);
        let expected = self.last.saturating_sub(first) + 1;
        let lost = expected.saturating_sub(self.arrived);
        stats.packets_lost = lost as i64;
        stats.loss_fraction = lost as f32 / expected as f32;
        n
    }
}

/// What a call's media task owns.
struct Media {
    rtc: Rtc,
    socket: UdpSocket,
    /// Our ICE candidate (what str0m matches received datagrams against).
    candidate: SocketAddr,
    /// Our audio's media id, when known before the media is added.
    mid: Option<Mid>,
    audio: AudioIo,
    control: mpsc::Receiver<Control>,
    stats_tx: watch::Sender<MediaStats>,
    closed_tx: watch::Sender<bool>,
    /// Where received DTMF goes (the handle's events).
    events: broadcast::Sender<MediaEvent>,
    /// Ends the session when the peer leaves.
    ender: SessionEnder,
    /// Renegotiation steps from the handler.
    ops: mpsc::Receiver<RtcOp>,
    /// The audio ends' sample rate.
    audio_rate: u32,
}

/// The media task: moves datagrams, time and audio frames between the socket, str0m and
/// the call's audio ends.
async fn run(media: Media) {
    let Media {
        mut rtc,
        socket,
        candidate,
        mut mid,
        mut audio,
        mut control,
        stats_tx,
        closed_tx,
        events,
        ender,
        mut ops,
        audio_rate,
    } = media;
    let mut ops_open = true;
    let mut buf = vec![0u8; 2048];
    let mut sender: Option<Sender> = None;
    let mut decoders: Vec<(Pt, MediaCodec)> = Vec::new();
    let frame_len = frame_samples(audio_rate);
    let mut frame = vec![0i16; frame_len];
    let mut decoded = Vec::with_capacity(frame_len * 6);
    let mut payload = Vec::with_capacity(1500);
    let mut stats = MediaStats {
        srtp: Some("DTLS-SRTP"),
        ..MediaStats::default()
    };
    let mut dtmf_rx: Option<DtmfReceiver> = None;
    let mut seq = SeqCount::default();
    let mut peer_closed = false;
    let mut dtmf_queue: VecDeque<u8> = VecDeque::new();
    let mut next_digit_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // a frame every 20 ms on average: ticks missed while the task waited for a core are made
    // up at once (as RtpAudio's stream does), unless too late to matter (then skipped, the
    // RTP clock still moving on)
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    'call: loop {
        // drain everything str0m has to say after the last input, up to its next deadline
        let deadline = loop {
            let out = match rtc.poll_output() {
                Ok(o) => o,
                Err(_) => break 'call,
            };
            match out {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::MediaAdded(m)) if m.kind == MediaKind::Audio => {
                    mid = Some(m.mid);
                }
                Output::Event(Event::MediaData(d)) if d.params.spec().codec == WebCodec::Tele => {
                    // telephone-events share the audio's SSRC and sequence numbers
                    seq.saw(&d.seq_range, &mut stats);
                    // an RFC 4733 report (str0m hands over the first of a packet's)
                    let rate = d.params.spec().clock_rate.get();
                    let rx = dtmf_rx.get_or_insert_with(|| DtmfReceiver::new(rate));
                    if let Some(digit) =
                        rx.on_packet(d.time.numer() as u32, &d.data, Instant::now())
                    {
                        stats.dtmf_received += 1;
                        let _ = events.send(MediaEvent::Dtmf {
                            digit: digit.digit,
                            duration_ms: digit.duration_ms,
                        });
                    }
                }
                Output::Event(Event::MediaData(d)) => {
                    stats.packets_received += seq.saw(&d.seq_range, &mut stats);
                    stats.octets_received += d.data.len() as u64;
                    let known = decoders.iter().position(|(pt, _)| *pt == d.pt);
                    let index = known.or_else(|| {
                        let codec =
                            MediaCodec::with_rate(&codec_of(d.params.spec().codec)?, audio_rate)
                                .ok()?;
                        decoders.push((d.pt, codec));
                        Some(decoders.len() - 1)
                    });
                    if let Some((_, dec)) = index.and_then(|i| decoders.get_mut(i)) {
                        decoded.clear();
                        dec.decode(&d.data, &mut decoded);
                        for chunk in decoded.chunks(frame_len) {
                            audio.sink.write(chunk);
                        }
                    }
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    // the browser is gone without a word: its consent lapsed (RFC 7675)
                    ender.end(SdhError::new("the peer left: its ICE consent expired"));
                    break 'call;
                }
                Output::Event(Event::Closed) => {
                    // the browser closed its connection (DTLS close_notify). A peer hanging
                    // up does that beside its BYE, and the close may come first: give the
                    // BYE a moment (the session then closes us) before ending the session
                    // as a closed tab's
                    peer_closed = true;
                    break 'call;
                }
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        let input = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => match buf[..n].try_into() {
                    Ok(contents) if stats.remote.is_none() => {
                        stats.remote = Some(source);
                        Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: candidate,
                            contents,
                        })
                    }
                    Ok(contents) => Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        // str0m matches this against our candidate: a socket on a wildcard
                        // address reports the announced one
                        destination: candidate,
                        contents,
                    }),
                    Err(_) => continue,
                },
                Err(_) => continue,
            },
            _ = tokio::time::sleep_until(deadline.max(now).into()) => Input::Timeout(Instant::now()),
            due = tick.tick() => {
                let now = Instant::now();
                let late = now.saturating_duration_since(due.into_std()) > MAX_CATCH_UP;
                if late {
                    if let Some(s) = sender.as_mut() {
                        s.timestamp += u64::from(s.codec.timestamp_step());
                    }
                    continue;
                }
                let Some(m) = mid else { continue };
                let Some(writer) = rtc.writer(m) else { continue };
                if sender.is_none() {
                    sender = writer.payload_params().find_map(|p| {
                        let spec = p.spec();
                        let codec = MediaCodec::with_rate(&codec_of(spec.codec)?, audio_rate).ok()?;
                        Some(Sender { pt: p.pt(), codec, clock: spec.clock_rate, timestamp: 0 })
                    });
                    if let Some(s) = &sender {
                        stats.codec = s.codec.name().to_owned();
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                // the end of a digit the peer's receiver reports once, then the gap
                if let Some(rx) = dtmf_rx.as_mut() {
                    if let Some(digit) = rx.handle_timeout(now) {
                        stats.dtmf_received += 1;
                        let _ = events.send(MediaEvent::Dtmf {
                            digit: digit.digit,
                            duration_ms: digit.duration_ms,
                        });
                    }
                }
                let tone = if now >= next_digit_at {
                    dtmf_queue.pop_front()
                } else {
                    None
                };
                let writer = match tone {
                    Some(event) => {
                        next_digit_at = now + DIGIT + DIGIT_GAP;
                        stats.dtmf_sent += 1;
                        writer.telephone_event(TelephoneEvent {
                            event,
                            end: true,
                            volume: 10,
                            duration: DIGIT,
                        })
                    }
                    None => writer,
                };
                audio.source.read(&mut frame);
                payload.clear();
                s.codec.encode(&frame, &mut payload);
                let at = MediaTime::new(s.timestamp, s.clock);
                s.timestamp += u64::from(s.codec.timestamp_step());
                if writer.write(s.pt, now, at, payload.clone()).is_ok() {
                    stats.packets_sent += 1;
                    stats.octets_sent += payload.len() as u64;
                }
                stats_tx.send_replace(stats.clone());
                // the write was an input: drain again before the next
                continue;
            }
            op = ops.recv(), if ops_open => {
                match op {
                    // a change: drained at the top of the loop, as after any input
                    Some(op) => op(&mut rtc, mid),
                    None => ops_open = false,
                }
                continue;
            }
            c = control.recv() => match c {
                Some(Control::Close) | None => break 'call,
                Some(Control::Dtmf(digits)) => {
                    // bounded: a flood of digits beyond a few seconds' worth is dropped
                    for d in digits.chars().filter_map(crate::dtmf::digit_to_event) {
                        if dtmf_queue.len() < MAX_QUEUED_DIGITS {
                            dtmf_queue.push_back(d);
                        }
                    }
                    continue;
                }
                Some(_) => continue,
            },
        };
        if rtc.handle_input(input).is_err() {
            break;
        }
    }
    if peer_closed {
        tokio::select! {
            _ = control.recv() => {}
            _ = tokio::time::sleep(BYE_GRACE) => {
                ender.end(SdhError::new("the peer closed its WebRTC connection"));
            }
        }
    }
    rtc.disconnect();
    // the DTLS close alert and anything else still queued
    while let Ok(Output::Transmit(t)) = rtc.poll_output() {
        let _ = socket.try_send_to(&t.contents, t.destination);
    }
    stats_tx.send_replace(stats);
    audio.sink.finish();
    let _ = closed_tx.send(true);
}

fn io_err(e: std::io::Error) -> SdhError {
    SdhError::new(format!("media socket: {e}"))
}

/// Picks each call's media handler by what the call needs, so that one agent serves
/// browsers and phones at once (`sipua serve --listen wss:… --listen udp:…`): an offer from a
/// browser (`UDP/TLS/RTP/SAVPF`) is answered by [`WebRtcAudio`], any other by
/// [`crate::RtpAudio`]. A callee with no offer in the INVITE offers WebRTC when the INVITE
/// came over WebSocket (a browser's transport), plain RTP otherwise; a caller offers WebRTC
/// when [`AutoAudioFactory::offering_webrtc`] says so.
#[derive(Clone, Debug)]
pub struct AutoAudioFactory {
    rtp: crate::RtpAudioFactory,
    webrtc: WebRtcAudioFactory,
    offer_webrtc: bool,
}

impl AutoAudioFactory {
    /// Plain RTP by `rtp`'s settings, WebRTC by `webrtc`'s; calls we make offer plain RTP.
    pub fn new(rtp: crate::RtpAudioFactory, webrtc: WebRtcAudioFactory) -> AutoAudioFactory {
        AutoAudioFactory {
            rtp,
            webrtc,
            offer_webrtc: false,
        }
    }

    /// Calls we make offer WebRTC (to call a browser) when `yes`.
    pub fn offering_webrtc(mut self, yes: bool) -> AutoAudioFactory {
        self.offer_webrtc = yes;
        self
    }

    /// Whether a session's media should be WebRTC.
    fn wants_webrtc(&self, session: &SessionContext) -> bool {
        let Some(invite) = session.request() else {
            return self.offer_webrtc;
        };
        if !invite.body().is_empty() {
            return is_webrtc_sdp(invite.body());
        }
        // no offer: we make it, in the kind the caller's transport suggests
        invite
            .headers()
            .get(&sipua::message::HeaderName::Via)
            .is_some_and(|v| {
                let v = String::from_utf8_lossy(v.value()).to_ascii_uppercase();
                v.starts_with("SIP/2.0/WS")
            })
    }
}

impl SessionDescriptionHandlerFactory for AutoAudioFactory {
    fn create(
        &self,
        session: &SessionContext,
        options: &SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn SessionDescriptionHandler>, SdhError> {
        if self.wants_webrtc(session) {
            self.webrtc.create(session, options)
        } else {
            self.rtp.create(session, options)
        }
    }
}
