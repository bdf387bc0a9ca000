//! [`WebRtcAudio`]: the `SessionDescriptionHandler` for browsers (`UDP/TLS/RTP/SAVPF`), so that
//! a SIP.js or JsSIP page can call a sipua program and be called by it.
//!
//! The WebRTC machinery is [str0m](https://docs.rs/str0m), a sans-IO engine in the style of
//! our core: ICE (RFC 8445; answered STUN checks and consent freshness, RFC 7675), DTLS 1.2
//! with SRTP keys (RFC 5764; `AES_CM_128_HMAC_SHA1_80` and AEAD-GCM profiles), STUN, DTLS and
//! SRTP on one port (RFC 7983), BUNDLE and rtcp-mux (RFC 8843, RFC 5761). It owns the SDP of
//! the call (fingerprint, setup, ICE credentials, one host candidate). [`WebRtcMedia`]
//! (`media.rs`) is a call's media without I/O: str0m plus frames, codecs, DTMF and the peer's
//! leaving as events, tested over a simulated lossy network in virtual time. This module gives
//! it a socket, a clock and 20 ms frames of audio: the same [`AudioIo`] ends and codecs
//! ([`MediaCodec`](crate::codec::MediaCodec): G.711, Opus with the `opus` feature) as [`crate::RtpAudio`], and the same
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

mod media;

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
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

pub use media::{WebRtcEvent, WebRtcMedia};

use crate::codec::CodecSettings;
use crate::rtp_audio::Control;
use crate::sdp::offer_answer::MediaCapabilities;
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
    /// Opus encoder complexity, 0 to 10 (`None`: libopus's default); see
    /// [`crate::codec::CodecSettings`].
    pub opus_complexity: Option<u8>,
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
            opus_complexity: None,
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

/// The `Rtc` of a call announcing `candidate`, with the codecs and telephone-events of
/// `options` and this process's DTLS certificate.
pub(crate) fn build_rtc(
    options: &WebRtcAudioOptions,
    candidate: SocketAddr,
    now: Instant,
) -> Result<Rtc, SdhError> {
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
    let mut rtc = config.build(now);
    let host = Candidate::host(candidate, "udp")
        .map_err(|e| SdhError::new(format!("ICE candidate {candidate}: {e}")))?;
    rtc.add_local_candidate(host);
    Ok(rtc)
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
    /// How the codecs run (the audio ends' sample rate, Opus's complexity).
    settings: CodecSettings,
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
        let rtc = build_rtc(&options, candidate, Instant::now())?;
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
            settings: CodecSettings {
                audio_rate: options.audio_rate,
                opus_complexity: options.opus_complexity,
            },
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
        let media = WebRtcMedia::new(
            rtc,
            self.candidate,
            self.mid,
            audio,
            self.settings,
            Instant::now(),
        );
        tokio::spawn(run(Task {
            media,
            socket,
            control: rx,
            stats_tx,
            closed_tx,
            events: self.handle.events.clone(),
            ender: self.ender.clone(),
            ops,
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

/// How long a peer that closed its connection has to send its BYE before we end the session.
const BYE_GRACE: Duration = Duration::from_secs(2);

/// How often the handle's statistics are brought up to date while the call runs.
const PUBLISH: Duration = Duration::from_millis(100);

/// What a call's media task owns: the sans-IO media and the ends it drives.
struct Task {
    media: WebRtcMedia,
    socket: UdpSocket,
    control: mpsc::Receiver<Control>,
    stats_tx: watch::Sender<MediaStats>,
    closed_tx: watch::Sender<bool>,
    /// Where received DTMF goes (the handle's events).
    events: broadcast::Sender<MediaEvent>,
    /// Ends the session when the peer leaves.
    ender: SessionEnder,
    /// Renegotiation steps from the handler.
    ops: mpsc::Receiver<RtcOp>,
}

/// The media task: moves datagrams and time between the socket, the clock and the call's
/// [`WebRtcMedia`], and what it reports to the session and the handle.
async fn run(task: Task) {
    let Task {
        mut media,
        socket,
        mut control,
        stats_tx,
        closed_tx,
        events,
        ender,
        mut ops,
    } = task;
    let mut ops_open = true;
    let mut buf = vec![0u8; 2048];
    let mut peer_closed = false;
    let mut published = Instant::now();
    loop {
        while let Some((to, bytes)) = media.poll_transmit() {
            let _ = socket.try_send_to(&bytes, to);
        }
        while let Some(e) = media.poll_event() {
            match e {
                WebRtcEvent::Dtmf { digit, duration_ms } => {
                    let _ = events.send(MediaEvent::Dtmf { digit, duration_ms });
                }
                // the peer is gone without a word
                WebRtcEvent::ConsentLost => {
                    ender.end(SdhError::new("the peer left: its ICE consent expired"))
                }
                // a peer hanging up closes DTLS beside its BYE, and the close may come
                // first: the BYE gets a moment (the session then closes us) before the
                // session is ended as a closed tab's
                WebRtcEvent::PeerClosed => peer_closed = true,
                WebRtcEvent::Connected => {}
            }
        }
        let now = Instant::now();
        if now.saturating_duration_since(published) >= PUBLISH {
            stats_tx.send_replace(media.stats().clone());
            published = now;
        }
        if media.is_ended() {
            break;
        }
        let deadline = media
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .max(now);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    media.handle_datagram(Instant::now(), source, &buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => media.handle_timeout(Instant::now()),
            op = ops.recv(), if ops_open => match op {
                Some(op) => media.with_rtc(Instant::now(), op),
                None => ops_open = false,
            },
            c = control.recv() => match c {
                Some(Control::Close) | None => break,
                Some(Control::Dtmf(digits)) => media.send_dtmf(&digits),
                Some(_) => {}
            },
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
    // the DTLS close alert and anything else still queued
    media.close(Instant::now());
    while let Some((to, bytes)) = media.poll_transmit() {
        let _ = socket.try_send_to(&bytes, to);
    }
    stats_tx.send_replace(media.stats().clone());
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
        matches!(
            invite.top_via_transport(),
            Some(sipua::message::Transport::Ws | sipua::message::Transport::Wss)
        )
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
