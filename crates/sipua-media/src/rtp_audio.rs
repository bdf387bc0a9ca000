//! [`RtpAudio`]: the `SessionDescriptionHandler` for plain `RTP/AVP` audio. It negotiates with
//! RFC 3264 offer/answer ([`OfferAnswer`]), binds an RTP/RTCP port pair (RFC 3550 §11: an
//! even port and the next one), and runs one small tokio task per call that drives an
//! [`AudioStream`] with the sockets and the clock. It offers and accepts RTCP multiplexed on
//! the RTP port (RFC 5761, [`MediaCapabilities::rtcp_mux`](crate::sdp::offer_answer::MediaCapabilities::rtcp_mux)); when both sides agree, all the call's
//! packets go through the RTP socket. The RTCP port stays reserved all the same: an offerer
//! must take RTCP on it if the answer declines (§5.1.1), and the pair goes back to the pool
//! as one. The application reaches the running media
//! through a [`MediaHandle`] (`session.audio()`, [`SessionAudio`]): statistics, DTMF events,
//! and the moment a recording is complete.
//!
//! One concern in one file (about 800 lines): the handler and the task that runs its stream.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sipua::{
    BodyAndContentType, BoxFuture, SdhError, SessionContext, SessionDescriptionHandler,
    SessionDescriptionHandlerFactory, SessionDescriptionHandlerModifier,
    SessionDescriptionHandlerOptions,
};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

use crate::audio::{echo_pair, AudioSink, AudioSource, NullSink, Silence};
use crate::jitter::JitterConfig;
use crate::sdp::offer_answer::{LocalMedia, MediaCapabilities, Negotiated, OfferAnswer};
use crate::sdp::{Direction, SessionDescription};
use crate::stream::{AudioStream, MediaEvent, MediaStats, StreamConfig};

/// A call's audio ends: what it plays and where what it hears goes.
pub struct AudioIo {
    /// What we send.
    pub source: Box<dyn AudioSource>,
    /// What we receive goes here.
    pub sink: Box<dyn AudioSink>,
}

impl AudioIo {
    /// Sends silence, discards what arrives.
    pub fn silence() -> AudioIo {
        AudioIo {
            source: Box::new(Silence),
            sink: Box::new(NullSink),
        }
    }

    /// Sends back what arrives (about 1 s of buffering at most).
    pub fn echo() -> AudioIo {
        let (sink, source) = echo_pair(8000);
        AudioIo {
            source: Box::new(source),
            sink: Box::new(sink),
        }
    }

    /// A source and a sink of the application's.
    pub fn new(source: Box<dyn AudioSource>, sink: Box<dyn AudioSink>) -> AudioIo {
        AudioIo { source, sink }
    }
}

impl From<crate::wav::WavError> for SdhError {
    fn from(e: crate::wav::WavError) -> SdhError {
        SdhError::new(e.to_string())
    }
}

/// Makes the audio ends of each call; called once per session, when its media handler is
/// created.
pub type AudioIoFactory = Arc<dyn Fn(&SessionContext) -> Result<AudioIo, SdhError> + Send + Sync>;

/// When a call's RTP is encrypted with SDES keys (RFC 4568, SRTP of RFC 3711). Keys travel
/// in the SDP, so they are only as secret as the signalling: by default they go only where
/// it is TLS or secure WebSocket hop by hop ([`SessionContext::secure_signalling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Never: plain RTP, and an `RTP/SAVP` offer is refused (488).
    Off,
    /// Answer a peer's `RTP/SAVP` offer with SRTP when it came over TLS/WSS; offer plain
    /// RTP (every peer takes it). The default.
    #[default]
    Accept,
    /// Over TLS/WSS, offer `RTP/SAVP` with keys too (a peer without SRTP refuses the call);
    /// over UDP/TCP, as `Accept`.
    Offer,
    /// Encrypted or nothing: offer `RTP/SAVP`, refuse plain RTP, and refuse calls whose
    /// signalling is not TLS/WSS.
    Require,
    /// Offer and accept SDES over any signalling, keys readable by anyone on the path: for
    /// tests and trusted networks only.
    Force,
}

/// Settings of [`RtpAudio`] handlers.
#[derive(Clone)]
pub struct RtpAudioOptions {
    /// Codecs offered and accepted, in order of preference, and telephone-event. By default
    /// PCMU, PCMA (and Opus with the `opus` feature), telephone-event on 101.
    pub capabilities: MediaCapabilities,
    /// Ports to take RTP/RTCP pairs from (inclusive).
    pub port_range: (u16, u16),
    /// The address announced in SDP instead of the one signalling names towards the peer
    /// (a NAT's public address); `UserAgentOptions::public_address` sets both at once.
    pub public_address: Option<IpAddr>,
    /// The jitter buffer of each call.
    pub jitter: JitterConfig,
    /// The audio ends of each call (default: silence out, nothing kept).
    pub audio: AudioIoFactory,
    /// How long a call sends at full rate to a peer it hears nothing from (default 12 s,
    /// [`crate::stream::SILENT_PEER_LIMIT`]); then one packet a second until it is heard.
    /// `None` for a peer that only ever listens and sends not even RTCP.
    pub silent_peer_limit: Option<std::time::Duration>,
    /// The sample rate of the frames the audio ends play and hear: 8 000 (narrowband, the
    /// default), 16 000, 24 000 or 48 000 Hz ([`crate::resample::AUDIO_RATES`]). Opus then
    /// carries wideband audio end to end; G.711 is converted to and from its 8 kHz. A bot
    /// that feeds speech recognition at 16 kHz asks for 16 000. Another rate fails the
    /// handler's creation.
    pub audio_rate: u32,
    /// When calls are encrypted with SDES-SRTP (default [`SrtpPolicy::Accept`]; needs the
    /// `srtp` feature, else every call is plain and `Require`/`Force` fail).
    pub srtp: SrtpPolicy,
    /// Opus encoder complexity, 0 to 10 (`None`: libopus's default); see
    /// [`crate::codec::CodecSettings`].
    pub opus_complexity: Option<u8>,
}

impl Default for RtpAudioOptions {
    fn default() -> Self {
        #[allow(unused_mut)]
        let mut capabilities = MediaCapabilities::default();
        #[cfg(feature = "opus")]
        capabilities.codecs.push(crate::codec::opus());
        RtpAudioOptions {
            capabilities,
            port_range: (16384, 32767),
            public_address: None,
            jitter: JitterConfig::default(),
            audio: Arc::new(|_| Ok(AudioIo::silence())),
            silent_peer_limit: Some(crate::stream::SILENT_PEER_LIMIT),
            audio_rate: 8000,
            srtp: SrtpPolicy::default(),
            opus_complexity: None,
        }
    }
}

impl std::fmt::Debug for RtpAudioOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpAudioOptions")
            .field("capabilities", &self.capabilities)
            .field("port_range", &self.port_range)
            .field("public_address", &self.public_address)
            .field("audio_rate", &self.audio_rate)
            .field("srtp", &self.srtp)
            .finish_non_exhaustive()
    }
}

/// Makes an [`RtpAudio`] handler per session: put it in `UserAgentOptions`.
#[derive(Clone, Debug, Default)]
pub struct RtpAudioFactory {
    options: Arc<RtpAudioOptions>,
}

impl RtpAudioFactory {
    /// A factory with these settings.
    pub fn new(options: RtpAudioOptions) -> RtpAudioFactory {
        RtpAudioFactory {
            options: Arc::new(options),
        }
    }
}

impl SessionDescriptionHandlerFactory for RtpAudioFactory {
    fn create(
        &self,
        session: &SessionContext,
        _options: &SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn SessionDescriptionHandler>, SdhError> {
        Ok(Box::new(RtpAudio::new(session, self.options.clone())?))
    }
}

/// The typed way to a session's [`MediaHandle`]: `call.audio()` instead of
/// `call.media::<MediaHandle>()`.
pub trait SessionAudio {
    /// The session's `RtpAudio` handle (statistics, DTMF and media events), once the media
    /// handler exists; `None` for a session with another media handler.
    fn audio(&self) -> Option<Arc<MediaHandle>>;
}

impl SessionAudio for sipua::Session {
    fn audio(&self) -> Option<Arc<MediaHandle>> {
        self.media::<MediaHandle>()
    }
}

/// The running media of a call, as the application sees it.
pub struct MediaHandle {
    pub(crate) stats: watch::Receiver<MediaStats>,
    pub(crate) events: broadcast::Sender<MediaEvent>,
    pub(crate) commands: Mutex<Option<mpsc::Sender<Control>>>,
    pub(crate) closed: watch::Receiver<bool>,
    pub(crate) local: SocketAddr,
    pub(crate) negotiated: Mutex<Option<Negotiated>>,
}

impl std::fmt::Debug for MediaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHandle")
            .field("local", &self.local)
            .field("stats", &*self.stats.borrow())
            .finish_non_exhaustive()
    }
}

impl MediaHandle {
    /// The counters now (updated every frame).
    pub fn stats(&self) -> MediaStats {
        self.stats.borrow().clone()
    }

    /// Follows the counters as they change.
    pub fn stats_change(&self) -> watch::Receiver<MediaStats> {
        self.stats.clone()
    }

    /// Events from now on (DTMF received, the source ended...). A receiver that falls more
    /// than 64 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }

    /// Our RTP address.
    pub fn local_address(&self) -> SocketAddr {
        self.local
    }

    /// What offer/answer decided last, once it has.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues DTMF digits as RFC 4733 telephone-events (`Session::send_dtmf` does the same).
    pub fn send_dtmf(&self, digits: &str) -> bool {
        send_control(&self.commands, Control::Dtmf(digits.to_owned()))
    }

    /// Waits until the media has stopped and its sink is finished (a recording is complete
    /// on disk). Returns at once if media never started.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// A media handle before its task starts, and what the task will report through.
pub(crate) type Reporters = (
    Arc<MediaHandle>,
    watch::Sender<MediaStats>,
    watch::Sender<bool>,
);

impl MediaHandle {
    /// The handle of media on `local` that has not started, and the senders its task will
    /// report through (statistics, and that it has closed).
    pub(crate) fn unstarted(local: SocketAddr) -> Reporters {
        let (stats_tx, stats_rx) = watch::channel(MediaStats::default());
        let (closed_tx, closed_rx) = watch::channel(false);
        let (events, _) = broadcast::channel(64);
        let handle = Arc::new(MediaHandle {
            stats: stats_rx,
            events,
            commands: Mutex::new(None),
            closed: closed_rx,
            local,
            negotiated: Mutex::new(None),
        });
        (handle, stats_tx, closed_tx)
    }

    /// Stops the media task, or, when it never started, finishes the sink (a recording is
    /// complete even with no media) and says the media is closed.
    pub(crate) fn close(
        &self,
        audio: &mut Option<AudioIo>,
        closed_tx: &mut Option<watch::Sender<bool>>,
    ) {
        if !send_control(&self.commands, Control::Close) {
            if let Some(mut audio) = audio.take() {
                audio.sink.finish();
            }
            if let Some(tx) = closed_tx.take() {
                let _ = tx.send(true);
            }
        }
    }
}

fn send_control(slot: &Mutex<Option<mpsc::Sender<Control>>>, c: Control) -> bool {
    let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().is_some_and(|tx| tx.try_send(c).is_ok())
}

/// Orders from the handler to the media task.
pub(crate) enum Control {
    Update(Negotiated),
    /// The dialog is confirmed: media may go to the peer's address.
    Confirm,
    Dtmf(String),
    Close,
}

/// The RTP audio handler of one session (see the module documentation).
pub struct RtpAudio {
    options: Arc<RtpAudioOptions>,
    oa: OfferAnswer,
    ip: IpAddr,
    sockets: Option<(StdUdpSocket, StdUdpSocket)>,
    /// The pool the sockets go back to when the call is done with them.
    pool: crate::ports::Key,
    local: SocketAddr,
    audio: Option<AudioIo>,
    /// The peer's last description (to tell a repeated answer from a new offer).
    remote: Option<SessionDescription>,
    /// Whether our last description was an offer still unanswered.
    offering: bool,
    /// We have received an offer and owe an answer.
    answering: bool,
    handle: Arc<MediaHandle>,
    stats_tx: Option<watch::Sender<MediaStats>>,
    closed_tx: Option<watch::Sender<bool>>,
    running: bool,
    /// The dialog is confirmed ([`SessionDescriptionHandler::confirmed`]).
    confirmed: bool,
    seed: u64,
}

/// What SDES this call may do under `policy` (see [`SrtpPolicy`]), with a fresh key.
fn sdes_setup(
    policy: SrtpPolicy,
    secure: bool,
) -> Result<Option<crate::sdp::offer_answer::SdesSetup>, SdhError> {
    let (offer, required) = match policy {
        SrtpPolicy::Off => return Ok(None),
        SrtpPolicy::Accept if !secure => return Ok(None),
        SrtpPolicy::Offer if !secure => return Ok(None),
        SrtpPolicy::Require if !secure => {
            return Err(SdhError::new(
                "SRTP is required, and this call's signalling is not TLS: no keys in the clear",
            ))
        }
        SrtpPolicy::Accept => (false, false),
        SrtpPolicy::Offer | SrtpPolicy::Force => (true, false),
        SrtpPolicy::Require => (true, true),
    };
    #[cfg(feature = "srtp")]
    {
        let key = crate::srtp::MasterKey::random()
            .map_err(|e| SdhError::new(format!("SRTP key: {e}")))?;
        Ok(Some(crate::sdp::offer_answer::SdesSetup {
            key: key.0,
            offer,
            required,
        }))
    }
    #[cfg(not(feature = "srtp"))]
    {
        let _ = offer;
        if required || policy == SrtpPolicy::Force {
            return Err(SdhError::new("SRTP is not built in (the srtp feature)"));
        }
        Ok(None)
    }
}

/// An error for an audio rate no codec here runs (a misconfigured handler, so the call fails
/// at once instead of later in its media task).
pub(crate) fn check_audio_rate(rate: u32) -> Result<(), SdhError> {
    crate::resample::check_audio_rate(rate).map_err(SdhError::new)
}

impl RtpAudio {
    /// A handler for `session`: binds its RTP and RTCP ports now (so the offer can name
    /// them) and makes its audio ends.
    pub fn new(
        session: &SessionContext,
        options: Arc<RtpAudioOptions>,
    ) -> Result<RtpAudio, SdhError> {
        check_audio_rate(options.audio_rate)?;
        let seed = random_seed(&session.id);
        // named in the SDP: a public address of the user's, else the one signalling names
        // towards this peer; never a wildcard (which would mean "hold" to old peers)
        let ip = match (options.public_address, session.local_ip) {
            (Some(p), _) => p,
            (None, ip) if !ip.is_unspecified() => ip,
            (None, ip) if ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, _) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        // bound where signalling listens (all addresses when it listens on all)
        let bind_ip = session.bind_ip;
        // a pair from an earlier call when one has rested long enough, else a new one
        let pool = (bind_ip, options.port_range);
        let now = Instant::now();
        let (rtp, rtcp) = match crate::ports::take(pool, now, true) {
            Some(pair) => pair,
            None => match bind_pair(bind_ip, options.port_range, seed) {
                Ok(pair) => pair,
                Err(e) => crate::ports::take(pool, now, false).ok_or(e)?,
            },
        };
        let local = SocketAddr::new(ip, rtp.local_addr().map_err(io_err)?.port());
        let sdes = sdes_setup(options.srtp, session.secure_signalling)?;
        let audio = (options.audio)(session)?;
        let (handle, stats_tx, closed_tx) = MediaHandle::unstarted(local);
        let mut oa = OfferAnswer::new(options.capabilities.clone(), seed % 1_000_000_000);
        oa.set_sdes(sdes);
        Ok(RtpAudio {
            oa,
            options,
            ip,
            sockets: Some((rtp, rtcp)),
            pool,
            local,
            audio: Some(audio),
            remote: None,
            offering: false,
            answering: false,
            handle,
            stats_tx: Some(stats_tx),
            closed_tx: Some(closed_tx),
            running: false,
            confirmed: false,
            seed,
        })
    }

    /// The handle the session exposes (also returned by `Session::media`).
    pub fn media_handle(&self) -> Arc<MediaHandle> {
        self.handle.clone()
    }

    fn local_media(&self, options: &SessionDescriptionHandlerOptions) -> LocalMedia {
        LocalMedia {
            address: self.ip,
            rtp_port: self.local.port(),
            direction: if options.hold {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            },
        }
    }

    /// Starts the media task with the first negotiation, or updates it.
    /// Starts (or updates) the media with `negotiated`; `verified` says whether the peer's
    /// address may be sent to at once (it came in the answer to our offer) or only once the
    /// dialog is confirmed or the peer's RTP arrives (it came in an offer).
    fn apply(&mut self, negotiated: Negotiated, verified: bool) -> Result<(), SdhError> {
        *self
            .handle
            .negotiated
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(negotiated.clone());
        if self.running {
            send_control(&self.handle.commands, Control::Update(negotiated));
            return Ok(());
        }
        let (Some((rtp, rtcp)), Some(audio), Some(stats_tx), Some(closed_tx)) = (
            self.sockets.take(),
            self.audio.take(),
            self.stats_tx.take(),
            self.closed_tx.take(),
        ) else {
            return Err(SdhError::new("media already closed"));
        };
        let wallclock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let config = StreamConfig {
            ssrc: (self.seed >> 32) as u32,
            cname: format!("sipua-{:08x}@{}", self.seed as u32, self.ip),
            initial_sequence: (self.seed >> 16) as u16,
            initial_timestamp: self.seed as u32,
            jitter: self.options.jitter,
            wallclock,
            seed: self.seed,
            verified: verified || self.confirmed,
            silent_peer_limit: self.options.silent_peer_limit,
            audio_rate: self.options.audio_rate,
            opus_complexity: self.options.opus_complexity,
        };
        let stream = AudioStream::new(config, negotiated, audio.source, audio.sink, Instant::now())
            .map_err(SdhError::new)?;
        let rtp = UdpSocket::from_std(rtp).map_err(io_err)?;
        let rtcp = UdpSocket::from_std(rtcp).map_err(io_err)?;
        let (tx, rx) = mpsc::channel(16);
        *self
            .handle
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tx);
        // the addresses the packets went from, for traces: the advertised one for a wildcard
        let named = |s: &UdpSocket| {
            let a = s
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            if a.ip().is_unspecified() {
                SocketAddr::new(self.ip, a.port())
            } else {
                a
            }
        };
        let locals = (named(&rtp), named(&rtcp));
        tokio::spawn(run(
            stream,
            (rtp, rtcp, self.pool),
            locals,
            rx,
            stats_tx,
            self.handle.events.clone(),
            closed_tx,
        ));
        self.running = true;
        Ok(())
    }
}

impl SessionDescriptionHandler for RtpAudio {
    fn get_description<'a>(
        &'a mut self,
        options: &'a SessionDescriptionHandlerOptions,
        modifiers: &'a [SessionDescriptionHandlerModifier],
    ) -> BoxFuture<'a, Result<BodyAndContentType, SdhError>> {
        Box::pin(async move {
            let local = self.local_media(options);
            let sdp = if std::mem::take(&mut self.answering) {
                let (answer, negotiated) = self
                    .oa
                    .create_answer(&local)
                    .map_err(|e| SdhError::new(e.to_string()))?;
                self.apply(negotiated, false)?;
                answer
            } else {
                self.offering = true;
                self.oa.create_offer(&local)
            };
            BodyAndContentType::sdp(sdp.to_string()).modified(modifiers)
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
            let sdp = SessionDescription::parse(text).map_err(|e| SdhError::new(e.to_string()))?;
            // RFC 3264 §8: the peer's o= session id stays, its version moves on a change
            let same_session = self.remote.as_ref().is_some_and(|r| {
                r.origin.username == sdp.origin.username
                    && r.origin.session_id == sdp.origin.session_id
                    && r.origin.address == sdp.origin.address
            });
            let same_origin = same_session
                && self
                    .remote
                    .as_ref()
                    .is_some_and(|r| r.origin.session_version == sdp.origin.session_version);
            if std::mem::take(&mut self.offering) {
                let negotiated = self
                    .oa
                    .receive_answer(&sdp)
                    .map_err(|e| SdhError::new(e.to_string()))?;
                self.apply(negotiated, true)?;
            } else if same_origin {
                // the same description again (e.g. in the 2xx after a 183): RFC 3264 §8 says
                // an unchanged version is no new offer
            } else if self.remote.is_some() && !same_session && self.oa.can_take_forked_answer() {
                // another fork answered our offer: its answer replaces the first one
                let negotiated = self
                    .oa
                    .receive_forked_answer(&sdp)
                    .map_err(|e| SdhError::new(e.to_string()))?;
                self.apply(negotiated, true)?;
            } else {
                self.oa
                    .receive_offer(&sdp)
                    .map_err(|e| SdhError::new(e.to_string()))?;
                self.answering = true;
            }
            self.remote = Some(sdp);
            Ok(())
        })
    }

    fn has_description(&self, content_type: &str) -> bool {
        BodyAndContentType::is_sdp_type(content_type)
    }

    fn rollback_description(&mut self) -> BoxFuture<'_, Result<(), SdhError>> {
        self.offering = false;
        self.answering = false;
        self.oa.rollback();
        Box::pin(async { Ok(()) })
    }

    fn send_dtmf(&mut self, tones: &str) -> bool {
        let valid = !tones.is_empty()
            && tones
                .chars()
                .all(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d' | ','));
        let te = self
            .handle
            .negotiated()
            .is_some_and(|n| n.telephone_event.is_some());
        valid && te && self.handle.send_dtmf(&tones.to_ascii_uppercase())
    }

    fn handle(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.handle.clone())
    }

    fn confirmed(&mut self) {
        self.confirmed = true;
        if self.running {
            send_control(&self.handle.commands, Control::Confirm);
        }
    }

    fn close(&mut self) {
        self.handle.close(&mut self.audio, &mut self.closed_tx);
        if let Some((rtp, rtcp)) = self.sockets.take() {
            crate::ports::give(self.pool, rtp, rtcp, Instant::now());
        }
    }
}

impl Drop for RtpAudio {
    fn drop(&mut self) {
        self.close();
    }
}

/// The media task: moves datagrams and time between the sockets and the stream.
async fn run(
    mut stream: AudioStream,
    // the sockets and the pool they go back to
    (rtp, rtcp, pool): (UdpSocket, UdpSocket, crate::ports::Key),
    locals: (SocketAddr, SocketAddr),
    mut control: mpsc::Receiver<Control>,
    stats: watch::Sender<MediaStats>,
    events: broadcast::Sender<MediaEvent>,
    closed: watch::Sender<bool>,
) {
    let mut rtp_buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 2048];
    let mut last_stats = Instant::now();
    loop {
        let deadline = stream
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = rtp.recv_from(&mut rtp_buf) => {
                if let Ok((n, from)) = r {
                    trace_packet(false, locals.0, from, &rtp_buf[..n]);
                    stream.handle_rtp(Instant::now(), from, &rtp_buf[..n]);
                }
            }
            r = rtcp.recv_from(&mut rtcp_buf) => {
                if let Ok((n, from)) = r {
                    trace_packet(false, locals.1, from, &rtcp_buf[..n]);
                    stream.handle_rtcp(Instant::now(), from, &rtcp_buf[..n]);
                }
            }
            c = control.recv() => match c {
                Some(Control::Update(n)) => {
                    let _ = stream.update(n);
                }
                Some(Control::Confirm) => stream.confirm(),
                Some(Control::Dtmf(d)) => {
                    stream.send_dtmf(&d);
                }
                Some(Control::Close) | None => {
                    stream.close(Instant::now());
                    flush(&mut stream, (&rtp, &rtcp), locals, &events).await;
                    stats.send_replace(stream.stats().clone());
                    // the sockets serve a later call
                    if let (Ok(rtp), Ok(rtcp)) = (rtp.into_std(), rtcp.into_std()) {
                        crate::ports::give(pool, rtp, rtcp, Instant::now());
                    }
                    let _ = closed.send(true);
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                stream.handle_timeout(Instant::now());
            }
        }
        flush(&mut stream, (&rtp, &rtcp), locals, &events).await;
        let now = Instant::now();
        if now.duration_since(last_stats) >= Duration::from_millis(100) {
            last_stats = now;
            stats.send_replace(stream.stats().clone());
        }
    }
}

async fn flush(
    stream: &mut AudioStream,
    (rtp, rtcp): (&UdpSocket, &UdpSocket),
    locals: (SocketAddr, SocketAddr),
    events: &broadcast::Sender<MediaEvent>,
) {
    while let Some(t) = stream.poll_transmit() {
        let (socket, local) = if t.rtcp {
            (rtcp, locals.1)
        } else {
            (rtp, locals.0)
        };
        trace_packet(true, local, t.destination, &t.payload);
        // a send error (no route, peer port closed) loses this packet only
        let _ = socket.send_to(&t.payload, t.destination).await;
    }
    while let Some(e) = stream.poll_event() {
        let _ = events.send(e);
    }
}

/// The target of the TRACE events that carry each RTP and RTCP packet sent and received:
/// fields `direction` (`"sent"` or `"received"`), `local` and `peer` (addresses), `size`, and
/// `packet` (the bytes, as `record_bytes`). The `sipua` command's `--pcap` writes them into the
/// capture beside the SIP messages. Off, the check costs an atomic load per packet.
pub const PACKET_TARGET: &str = "sipua::rtp";

/// Reports a packet to `tracing` (see [`PACKET_TARGET`]).
fn trace_packet(sent: bool, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) {
    if tracing::enabled!(target: "sipua::rtp", tracing::Level::TRACE) {
        tracing::trace!(
            target: "sipua::rtp",
            direction = if sent { "sent" } else { "received" },
            local = %local,
            peer = %peer,
            size = bytes.len(),
            packet = bytes,
        );
    }
}

/// Seconds a caller is told to wait when no RTP port pair is free (503 Retry-After).
const PORTS_RETRY_AFTER: u32 = 5;

/// Binds an even RTP port and the next one for RTCP, starting at a random place in `range`.
fn bind_pair(
    ip: IpAddr,
    range: (u16, u16),
    seed: u64,
) -> Result<(StdUdpSocket, StdUdpSocket), SdhError> {
    let (lo, hi) = (range.0.max(1024) & !1, range.1);
    if hi <= lo {
        return Err(SdhError::new(format!(
            "empty RTP port range {}-{}",
            range.0, range.1
        )));
    }
    let pairs = u32::from((hi - lo) / 2).max(1);
    let first = (seed % u64::from(pairs)) as u32;
    for i in 0..pairs.min(512) {
        let port = lo as u32 + 2 * ((first + i) % pairs);
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        let Ok(rtp) = StdUdpSocket::bind(SocketAddr::new(ip, port)) else {
            continue;
        };
        let Ok(rtcp) = StdUdpSocket::bind(SocketAddr::new(ip, port + 1)) else {
            continue;
        };
        rtp.set_nonblocking(true).map_err(io_err)?;
        rtcp.set_nonblocking(true).map_err(io_err)?;
        return Ok((rtp, rtcp));
    }
    // every port taken (a flood of calls, or a range too small): a caller may retry soon
    Err(SdhError::unavailable(
        format!("no free RTP port pair in {}-{}", range.0, range.1),
        PORTS_RETRY_AFTER,
    ))
}

fn io_err(e: std::io::Error) -> SdhError {
    SdhError::new(format!("media socket: {e}"))
}

/// A seed for SSRC, sequence, timestamp and ports: the session id hashed with the process's
/// random hash keys and the time (RFC 3550 §8 wants SSRCs unpredictable and distinct).
fn random_seed(id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(id.as_bytes());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
