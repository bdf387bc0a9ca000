//! The audio codecs a stream can run: G.711 μ-law and A-law (RFC 3551 §4.5.14, always), and
//! Opus (RFC 6716, RTP payload format RFC 7587) with the `opus` feature. A call's audio is
//! mono 16-bit at 8 kHz unless its handler asks for 16, 24 or 48 kHz ([`crate::resample`]);
//! each codec turns one 20 ms frame of it into one RTP payload and back (Opus at the audio's
//! own rate, so wideband audio stays wideband; G.711 through an 8 kHz conversion), and says
//! how far the RTP clock moves per frame (8 000 Hz for G.711; always 48 000 Hz for Opus,
//! whatever the audio's own rate, RFC 7587 §4.1).

use crate::g711::{self, Law};
use crate::resample::{check_audio_rate, frame_samples, StreamResampler};
use crate::sdp::offer_answer::Codec;

/// Samples in one 20 ms frame of 8 kHz audio (the default audio rate).
pub const FRAME_SAMPLES: usize = 160;

/// Whether a negotiated codec can be run here (G.711 always, Opus with the `opus` feature).
pub fn is_supported(codec: &Codec) -> bool {
    MediaCodec::new(codec).is_ok()
}

/// The Opus codec as offered: dynamic payload type 111, `opus/48000/2` (RFC 7587 §7), with
/// in-band FEC.
pub fn opus() -> Codec {
    Codec {
        channels: 2,
        fmtp: Some("minptime=10;useinbandfec=1".into()),
        ..Codec::new(111, "opus", 48000)
    }
}

/// How a call's codecs run, beyond what offer/answer decided: the rate of the audio frames,
/// and how hard the Opus encoder works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSettings {
    /// The sample rate of the audio frames ([`crate::resample::AUDIO_RATES`]).
    pub audio_rate: u32,
    /// Opus encoder complexity, 0 (cheapest) to 10 (best); `None` keeps libopus's default
    /// (9 or 10). A server running hundreds of Opus calls per core may want 1 to 5: each step
    /// down saves encoder CPU at a small cost in quality.
    pub opus_complexity: Option<u8>,
}

impl Default for CodecSettings {
    fn default() -> Self {
        CodecSettings {
            audio_rate: 8000,
            opus_complexity: None,
        }
    }
}

/// The codec proper, without the rate conversion around it.
enum Kind {
    /// G.711 in either law.
    G711(Law),
    /// Opus: the encoder (VoIP mode, FEC on) and the decoder (which also conceals lost
    /// packets), both at the call's audio rate (libopus runs natively at 8–48 kHz).
    #[cfg(feature = "opus")]
    Opus {
        encoder: Box<opus::Encoder>,
        decoder: Box<opus::Decoder>,
    },
}

/// G.711 in a wideband call: its 8 kHz converted from and to the call's rate.
struct Narrow {
    /// The call's audio down to 8 kHz, before encoding.
    down: StreamResampler,
    /// Decoded 8 kHz up to the call's rate.
    up: StreamResampler,
    /// 8 kHz samples between the two steps.
    scratch: Vec<i16>,
}

/// An encoder and decoder pair for one stream, taking and giving 20 ms frames at the call's
/// audio rate ([`crate::resample::AUDIO_RATES`]: 8 kHz unless the handler asks for more).
pub struct MediaCodec {
    kind: Kind,
    /// The audio's sample rate on our side of the codec.
    rate: u32,
    /// For G.711 above 8 kHz.
    narrow: Option<Box<Narrow>>,
}

impl std::fmt::Debug for MediaCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} Hz audio)", self.name(), self.rate)
    }
}

impl MediaCodec {
    /// The codec for what offer/answer decided, on 8 kHz audio; an error names a codec we
    /// cannot run.
    pub fn new(codec: &Codec) -> Result<MediaCodec, String> {
        MediaCodec::with_rate(codec, 8000)
    }

    /// The codec for what offer/answer decided, on audio at `rate` Hz (one of
    /// [`crate::resample::AUDIO_RATES`]); an error names a codec or rate we cannot run.
    pub fn with_rate(codec: &Codec, rate: u32) -> Result<MediaCodec, String> {
        MediaCodec::with_settings(
            codec,
            CodecSettings {
                audio_rate: rate,
                ..Default::default()
            },
        )
    }

    /// The codec for what offer/answer decided, run with `settings`; an error names a codec,
    /// rate or setting we cannot run.
    pub fn with_settings(codec: &Codec, settings: CodecSettings) -> Result<MediaCodec, String> {
        let rate = settings.audio_rate;
        check_audio_rate(rate)?;
        let name = codec.encoding.as_str();
        let law = if name.eq_ignore_ascii_case("PCMU") {
            Some(Law::Ulaw)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Law::Alaw)
        } else {
            None
        };
        if let Some(law) = law {
            let narrow = match (
                StreamResampler::new(rate, 8000),
                StreamResampler::new(8000, rate),
            ) {
                (Some(down), Some(up)) => Some(Box::new(Narrow {
                    down,
                    up,
                    scratch: Vec::with_capacity(FRAME_SAMPLES),
                })),
                _ => None,
            };
            return Ok(MediaCodec {
                kind: Kind::G711(law),
                rate,
                narrow,
            });
        }
        #[cfg(feature = "opus")]
        if name.eq_ignore_ascii_case("opus") {
            let mut encoder =
                opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|e| format!("opus encoder: {e}"))?;
            encoder
                .set_inband_fec(true)
                .map_err(|e| format!("opus encoder: {e}"))?;
            if let Some(c) = settings.opus_complexity {
                encoder
                    .set_complexity(i32::from(c.min(10)))
                    .map_err(|e| format!("opus encoder: {e}"))?;
            }
            let decoder = opus::Decoder::new(rate, opus::Channels::Mono)
                .map_err(|e| format!("opus decoder: {e}"))?;
            return Ok(MediaCodec {
                kind: Kind::Opus {
                    encoder: Box::new(encoder),
                    decoder: Box::new(decoder),
                },
                rate,
                narrow: None,
            });
        }
        Err(format!("codec {name} is not supported"))
    }

    /// The name as in SDP, upper case for G.711.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::G711(Law::Ulaw) => "PCMU",
            Kind::G711(Law::Alaw) => "PCMA",
            #[cfg(feature = "opus")]
            Kind::Opus { .. } => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        match self.kind {
            Kind::G711(_) => 8000,
            #[cfg(feature = "opus")]
            Kind::Opus { .. } => 48000,
        }
    }

    /// The sample rate of the audio frames encoded and decoded.
    pub fn audio_rate(&self) -> u32 {
        self.rate
    }

    /// Samples in one 20 ms frame of the audio.
    pub fn frame_samples(&self) -> usize {
        frame_samples(self.rate)
    }

    /// How far the RTP timestamp moves per 20 ms frame.
    pub fn timestamp_step(&self) -> u32 {
        self.clock_rate() / 50
    }

    /// Encodes one frame of audio, appending the payload to `out`.
    pub fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        match &mut self.kind {
            Kind::G711(law) => match self.narrow.as_deref_mut() {
                Some(n) => {
                    n.scratch.clear();
                    n.down.process(frame, &mut n.scratch);
                    g711::encode(*law, &n.scratch, out)
                }
                None => g711::encode(*law, frame, out),
            },
            #[cfg(feature = "opus")]
            Kind::Opus { encoder, .. } => {
                let start = out.len();
                out.resize(start + 1275, 0); // the largest Opus frame (RFC 6716 §3.4)
                match encoder.encode(frame, &mut out[start..]) {
                    Ok(n) => out.truncate(start + n),
                    Err(_) => out.truncate(start),
                }
            }
        }
    }

    /// Decodes one payload into audio appended to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match &mut self.kind {
            Kind::G711(law) => match self.narrow.as_deref_mut() {
                Some(n) => {
                    n.scratch.clear();
                    g711::decode(*law, payload, &mut n.scratch);
                    n.up.process(&n.scratch, out)
                }
                None => g711::decode(*law, payload, out),
            },
            #[cfg(feature = "opus")]
            Kind::Opus { decoder, .. } => {
                // at most 120 ms per packet (RFC 6716 §3.2.5)
                let start = out.len();
                out.resize(start + 6 * frame_samples(self.rate), 0);
                match decoder.decode(payload, &mut out[start..], false) {
                    Ok(n) => out.truncate(start + n),
                    Err(_) => out.truncate(start),
                }
            }
        }
    }

    /// Fills in a lost frame with the codec's own concealment, appending to `out`; false
    /// when the codec has none (the stream then fades the last frame).
    pub fn conceal(&mut self, out: &mut Vec<i16>) -> bool {
        match &mut self.kind {
            Kind::G711(_) => {
                let _ = out;
                false
            }
            #[cfg(feature = "opus")]
            Kind::Opus { decoder, .. } => {
                let start = out.len();
                out.resize(start + frame_samples(self.rate), 0);
                match decoder.decode(&[], &mut out[start..], false) {
                    Ok(n) => {
                        out.truncate(start + n);
                        true
                    }
                    Err(_) => {
                        out.truncate(start);
                        false
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis;

    fn tone(freq: f32) -> Vec<i16> {
        use crate::audio::AudioSource;
        let mut t = crate::audio::Tone::new(freq, 8000, 8000);
        let mut v = vec![0i16; 8000];
        t.read(&mut v);
        v
    }

    #[test]
    fn g711_is_always_there_and_others_are_named_in_the_error() {
        assert_eq!(MediaCodec::new(&Codec::pcmu()).unwrap().name(), "PCMU");
        assert_eq!(MediaCodec::new(&Codec::pcma()).unwrap().clock_rate(), 8000);
        let e = MediaCodec::new(&Codec::new(9, "G722", 8000)).unwrap_err();
        assert!(e.contains("G722"), "{e}");
        assert_eq!(is_supported(&opus()), cfg!(feature = "opus"));
    }

    #[test]
    fn a_tone_survives_a_round_trip_frame_by_frame() {
        #[allow(unused_mut)]
        let mut codecs = vec![Codec::pcmu(), Codec::pcma()];
        #[cfg(feature = "opus")]
        codecs.push(opus());
        for c in codecs {
            let mut codec = MediaCodec::new(&c).unwrap();
            let sent = tone(440.0);
            let mut heard = Vec::new();
            let mut payload = Vec::new();
            for frame in sent.chunks(FRAME_SAMPLES) {
                payload.clear();
                codec.encode(frame, &mut payload);
                assert!(!payload.is_empty());
                codec.decode(&payload, &mut heard);
            }
            assert_eq!(heard.len(), sent.len(), "{}", codec.name());
            let tail = &heard[2000..];
            assert_eq!(
                analysis::dominant_frequency(tail, 8000, &[300.0, 440.0, 1000.0]),
                Some(440.0),
                "{}",
                codec.name()
            );
            let (_, corr) = analysis::best_alignment(&sent[2000..6000], &heard, 800);
            assert!(corr > 0.9, "{}: correlation {corr}", codec.name());
        }
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_conceals_a_lost_frame_and_steps_48_khz() {
        let mut codec = MediaCodec::new(&opus()).unwrap();
        assert_eq!(codec.timestamp_step(), 960);
        let mut out = Vec::new();
        let mut payload = Vec::new();
        codec.encode(&tone(440.0)[..FRAME_SAMPLES], &mut payload);
        codec.decode(&payload, &mut out);
        assert!(codec.conceal(&mut out));
        assert_eq!(out.len(), 2 * FRAME_SAMPLES);
    }

    fn tone_at(freq: f32, rate: u32) -> Vec<i16> {
        use crate::audio::AudioSource;
        let mut t = crate::audio::Tone::new(freq, 8000, rate);
        let mut v = vec![0i16; rate as usize];
        t.read(&mut v);
        v
    }

    /// One second of `sent` through `codec` frame by frame.
    fn round_trip(codec: &mut MediaCodec, sent: &[i16]) -> Vec<i16> {
        let mut heard = Vec::new();
        let mut payload = Vec::new();
        for frame in sent.chunks(codec.frame_samples()) {
            payload.clear();
            codec.encode(frame, &mut payload);
            codec.decode(&payload, &mut heard);
        }
        heard
    }

    #[test]
    fn g711_in_a_wideband_call_carries_speech_band_and_drops_the_rest() {
        for rate in [16000, 24000, 48000] {
            let mut codec = MediaCodec::with_rate(&Codec::pcmu(), rate).unwrap();
            assert_eq!(
                (codec.frame_samples(), codec.timestamp_step()),
                (rate as usize / 50, 160)
            );
            let mut payload = Vec::new();
            codec.encode(
                &tone_at(1000.0, rate)[..codec.frame_samples()],
                &mut payload,
            );
            assert_eq!(payload.len(), 160, "G.711 stays 8 kHz on the wire");
            let heard = round_trip(&mut codec, &tone_at(1000.0, rate));
            assert_eq!(heard.len(), rate as usize);
            let tail = &heard[heard.len() / 2..];
            let level = analysis::rms(tail) / analysis::rms(&tone_at(1000.0, rate));
            assert!((0.9..1.1).contains(&level), "{rate}: level {level}");
            // 6 kHz is past what 8 kHz carries: nothing of it arrives, not even an alias
            let heard = round_trip(&mut codec, &tone_at(6000.0, rate));
            assert!(analysis::rms(&heard[heard.len() / 2..]) < 50.0, "{rate}");
        }
        let e = MediaCodec::with_rate(&Codec::pcmu(), 44100).unwrap_err();
        assert!(e.contains("44100"), "{e}");
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_at_its_lowest_complexity_still_carries_the_tone() {
        let settings = CodecSettings {
            audio_rate: 16000,
            opus_complexity: Some(0),
        };
        let mut codec = MediaCodec::with_settings(&opus(), settings).unwrap();
        let heard = round_trip(&mut codec, &tone_at(1000.0, 16000));
        let tail = &heard[heard.len() / 2..];
        assert_eq!(
            analysis::dominant_frequency(tail, 16000, &[500.0, 1000.0, 3000.0]),
            Some(1000.0)
        );
        // out of range is the most there is, not an error
        let most = CodecSettings {
            opus_complexity: Some(99),
            ..settings
        };
        assert!(MediaCodec::with_settings(&opus(), most).is_ok());
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_in_a_wideband_call_carries_what_narrowband_cannot() {
        for rate in [16000, 48000] {
            let mut codec = MediaCodec::with_rate(&opus(), rate).unwrap();
            assert_eq!(codec.timestamp_step(), 960);
            let heard = round_trip(&mut codec, &tone_at(5000.0, rate));
            assert_eq!(heard.len(), rate as usize);
            let tail = &heard[heard.len() / 2..];
            assert_eq!(
                analysis::dominant_frequency(tail, rate, &[1000.0, 3000.0, 5000.0]),
                Some(5000.0),
                "{rate}"
            );
            let level = analysis::rms(tail) / analysis::rms(&tone_at(5000.0, rate));
            assert!(level > 0.5, "{rate}: level {level}");
        }
    }
}
