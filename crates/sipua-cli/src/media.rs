//! Media for the commands: the RTP audio handler built from `--play`, `--record`, `--echo`
//! and `--record-dir`, and the live line printed once a second per call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sipua::{SdhError, Session, SessionContext, SessionDescriptionHandlerFactory};
use sipua_media::audio::{AudioSink, AudioSource, NullSink, Silence, WavRecorder, WavSource};
use sipua_media::codec::CodecSettings;
use sipua_media::sdp::offer_answer::{Codec, MediaCapabilities};
use sipua_media::{
    AudioIo, AutoAudioFactory, MediaEvent, MediaHandle, MediaStats, RtpAudioFactory,
    RtpAudioOptions, SrtpPolicy, WebRtcAudioFactory, WebRtcAudioOptions,
};

/// What a command plays into its calls.
#[derive(Clone, Debug)]
pub enum Play {
    /// Silence.
    Silence,
    /// A WAV file (any common format and rate, resampled to the calls' audio rate), once.
    Wav(Arc<Vec<i16>>),
    /// Whatever arrives, sent back.
    Echo,
}

/// Where a command records what its calls hear.
#[derive(Clone, Debug)]
pub enum Record {
    /// Nowhere.
    Nothing,
    /// This WAV file (one call).
    File(PathBuf),
    /// One WAV file per call in this directory, named after the call.
    Dir(PathBuf),
}

/// The media flags `serve` and `call` share.
#[derive(clap::Args, Debug, Clone)]
pub struct MediaArgs {
    /// Codecs to offer and accept, in order of preference: `pcmu`, `pcma`, `opus` (Opus
    /// needs the `opus` build feature). Default: PCMU, PCMA (and Opus when built in).
    #[arg(long, value_parser = capabilities)]
    pub codecs: Option<MediaCapabilities>,
    /// Sample rate of the audio calls play and record, in Hz: 8000 (narrowband), 16000,
    /// 24000 or 48000. With Opus (a browser's codec) the audio stays wideband end to end;
    /// G.711 is converted to and from its 8 kHz.
    #[arg(long, default_value_t = 8000, value_parser = audio_rate)]
    pub audio_rate: u32,
    /// Opus encoder complexity, 0 (cheapest) to 10 (best); default libopus's. Lower it to run
    /// many Opus calls on few cores.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub opus_complexity: Option<u8>,
    /// SDES-SRTP (encrypted RTP, keys in the SDP): `accept` answers encrypted offers that
    /// come over TLS/WSS (the default); `offer` also offers it over TLS/WSS; `require` takes
    /// nothing else; `off` never; `force` offers and accepts keys over any transport
    /// (readable on the wire: tests and trusted networks only).
    #[arg(long, default_value = "accept", value_parser = srtp_policy)]
    pub srtp: SrtpPolicy,
}

impl MediaArgs {
    /// How the calls' codecs run.
    pub fn codec_settings(&self) -> CodecSettings {
        CodecSettings {
            audio_rate: self.audio_rate,
            opus_complexity: self.opus_complexity,
        }
    }
}

/// Reads `--play FILE` into samples at the calls' audio rate.
pub fn load_wav(path: &Path, audio_rate: u32) -> Result<Play, String> {
    let samples = sipua_media::wav::read_wav_at(path, audio_rate)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Play::Wav(Arc::new(samples)))
}

/// `--audio-rate HZ`: the sample rate of what calls play and record.
pub fn audio_rate(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(rate) if sipua_media::resample::is_audio_rate(rate) => Ok(rate),
        _ => Err(format!(
            "{text}: the audio rate is 8000, 16000, 24000 or 48000 (Hz)"
        )),
    }
}

/// `--srtp off|accept|offer|require|force`: when calls use SDES-SRTP.
pub fn srtp_policy(text: &str) -> Result<SrtpPolicy, String> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "off" => SrtpPolicy::Off,
        "accept" => SrtpPolicy::Accept,
        "offer" => SrtpPolicy::Offer,
        "require" => SrtpPolicy::Require,
        "force" => SrtpPolicy::Force,
        _ => {
            return Err(format!(
                "{text}: SRTP is off, accept, offer, require or force"
            ))
        }
    })
}

/// `--codecs pcmu,pcma,opus`: the codecs offered and accepted, in order of preference.
pub fn capabilities(list: &str) -> Result<MediaCapabilities, String> {
    let mut codecs = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let codec = match name.to_ascii_lowercase().as_str() {
            "pcmu" => Codec::pcmu(),
            "pcma" => Codec::pcma(),
            "opus" => sipua_media::codec::opus(),
            other => return Err(format!("unknown codec {other} (pcmu, pcma, opus)")),
        };
        if !sipua_media::codec::is_supported(&codec) {
            return Err(format!(
                "{name} is not built in (build with --features opus and libopus-dev)"
            ));
        }
        codecs.push(codec);
    }
    if codecs.is_empty() {
        return Err("no codec given".into());
    }
    Ok(MediaCapabilities {
        codecs,
        ..Default::default()
    })
}

/// The audio handler factory for these choices: each call's offer picks WebRTC (a
/// browser's) or plain RTP; calls we make offer WebRTC when `offer_webrtc`.
pub fn factory(
    play: Play,
    record: Record,
    media: &MediaArgs,
    offer_webrtc: bool,
) -> Arc<dyn SessionDescriptionHandlerFactory> {
    let (capabilities, settings, srtp) = (media.codecs.clone(), media.codec_settings(), media.srtp);
    let audio_rate = settings.audio_rate;
    let audio = move |ctx: &SessionContext| -> Result<AudioIo, SdhError> {
        if let Play::Echo = play {
            let io = AudioIo::echo();
            return match record_sink(&record, ctx, audio_rate)? {
                None => Ok(io),
                // record what arrives and send it back
                Some(rec) => Ok(AudioIo::new(
                    io.source,
                    Box::new(sipua_media::audio::Tee::new(vec![io.sink, rec])),
                )),
            };
        }
        let source: Box<dyn AudioSource> = match &play {
            Play::Wav(s) => Box::new(WavSource::new(s.as_ref().clone())),
            _ => Box::new(Silence),
        };
        let sink = record_sink(&record, ctx, audio_rate)?.unwrap_or_else(|| Box::new(NullSink));
        Ok(AudioIo::new(source, sink))
    };
    let audio: sipua_media::AudioIoFactory = Arc::new(audio);
    let defaults = RtpAudioOptions::default();
    let rtp = RtpAudioFactory::new(RtpAudioOptions {
        audio: audio.clone(),
        capabilities: capabilities
            .clone()
            .unwrap_or(defaults.capabilities.clone()),
        audio_rate,
        opus_complexity: settings.opus_complexity,
        srtp,
        ..defaults
    });
    let web_defaults = WebRtcAudioOptions::default();
    let webrtc = WebRtcAudioFactory::new(WebRtcAudioOptions {
        audio,
        capabilities: capabilities.unwrap_or(web_defaults.capabilities.clone()),
        audio_rate,
        opus_complexity: settings.opus_complexity,
        ..web_defaults
    });
    Arc::new(AutoAudioFactory::new(rtp, webrtc).offering_webrtc(offer_webrtc))
}

fn record_sink(
    record: &Record,
    ctx: &SessionContext,
    audio_rate: u32,
) -> Result<Option<Box<dyn AudioSink>>, SdhError> {
    let path = match record {
        Record::Nothing => return Ok(None),
        Record::File(p) => p.clone(),
        Record::Dir(d) => {
            let name: String = ctx
                .id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            d.join(format!("{name}.wav"))
        }
    };
    let rec = WavRecorder::create_at(&path, audio_rate)
        .map_err(|e| SdhError::new(format!("{}: {e}", path.display())))?;
    Ok(Some(Box::new(rec)))
}

/// One line of media figures.
pub fn line(s: &MediaStats) -> String {
    let mut out = format!(
        "{} sent {} recv {} lost {} ({:.1} %) jitter {:.1} ms",
        if s.codec.is_empty() { "-" } else { &s.codec },
        s.packets_sent,
        s.packets_received,
        s.packets_lost.max(0),
        f64::from(s.loss_fraction) * 100.0,
        s.jitter_ms,
    );
    if let Some(rtt) = s.remote_report.and_then(|r| r.rtt_ms) {
        out.push_str(&format!(" rtt {rtt:.1} ms"));
    }
    if s.dtmf_received > 0 {
        out.push_str(&format!(" dtmf {}", s.dtmf_received));
    }
    if let Some(suite) = s.srtp {
        out.push_str(&format!(" srtp {suite}"));
    }
    if s.srtp_rejected > 0 {
        out.push_str(&format!(" srtp-rejected {}", s.srtp_rejected));
    }
    if s.rtcp_mux {
        out.push_str(&format!(" rtcp-mux {}/{}", s.rtcp_sent, s.rtcp_received));
    }
    out
}

/// Prints `label: <state> <media line>` every second while `session` lasts, and each DTMF
/// digit as it arrives.
pub fn print_live(label: String, session: &Session) {
    let session = session.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut events: Option<tokio::sync::broadcast::Receiver<MediaEvent>> = None;
        loop {
            if events.is_none() {
                events = session.media::<MediaHandle>().map(|m| m.events());
            }
            let event = async {
                match events.as_mut() {
                    Some(rx) => match rx.recv().await {
                        Ok(e) => Some(e),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                        // the media stopped: only the ticks are left
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {
                    let state = session.state();
                    if state == sipua::SessionState::Terminated {
                        if let Some(m) = session.media::<MediaHandle>() {
                            m.closed().await;
                            println!("{label}: media at the end: {}", line(&m.stats()));
                        }
                        break;
                    }
                    if let Some(m) = session.media::<MediaHandle>() {
                        println!("{label}: {state:?} {}", line(&m.stats()));
                    }
                }
                e = event => {
                    if let Some(MediaEvent::Dtmf { digit, duration_ms }) = e {
                        println!("{label}: DTMF {digit} ({duration_ms} ms)");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_rate_takes_the_rates_a_codec_runs_and_names_them_otherwise() {
        assert_eq!(audio_rate("8000"), Ok(8000));
        assert_eq!(audio_rate("48000"), Ok(48000));
        for bad in ["44100", "0", "", "16k"] {
            let e = audio_rate(bad).unwrap_err();
            assert!(e.contains("8000, 16000, 24000 or 48000"), "{bad}: {e}");
        }
    }
}
