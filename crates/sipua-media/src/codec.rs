//! The audio codecs a stream can run: G.711 μ-law and A-law (RFC 3551 §4.5.14, always), and
//! Opus (RFC 6716, RTP payload format RFC 7587) with the `opus` feature. Audio inside sipua
//! is 8 kHz mono 16-bit; each codec turns one 20 ms frame of it into one RTP payload and back,
//! and says how far the RTP clock moves per frame (8 000 Hz for G.711; always 48 000 Hz for
//! Opus, whatever the audio's own rate, RFC 7587 §4.1).

use crate::g711::{self, Law};
use crate::sdp::offer_answer::Codec;

/// Samples in one 20 ms frame of the internal 8 kHz audio.
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

/// An encoder and decoder pair for one stream.
pub enum MediaCodec {
    /// G.711 in either law.
    G711(Law),
    /// Opus, encoding and decoding 8 kHz mono (libopus resamples internally).
    #[cfg(feature = "opus")]
    Opus {
        /// The encoder (VoIP mode, FEC on).
        encoder: Box<opus::Encoder>,
        /// The decoder, which also conceals lost packets.
        decoder: Box<opus::Decoder>,
    },
}

impl std::fmt::Debug for MediaCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl MediaCodec {
    /// The codec for what offer/answer decided; an error names a codec we cannot run.
    pub fn new(codec: &Codec) -> Result<MediaCodec, String> {
        let name = codec.encoding.as_str();
        if name.eq_ignore_ascii_case("PCMU") {
            return Ok(MediaCodec::G711(Law::Ulaw));
        }
        if name.eq_ignore_ascii_case("PCMA") {
            return Ok(MediaCodec::G711(Law::Alaw));
        }
        #[cfg(feature = "opus")]
        if name.eq_ignore_ascii_case("opus") {
            let mut encoder =
                opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|e| format!("opus encoder: {e}"))?;
            encoder
                .set_inband_fec(true)
                .map_err(|e| format!("opus encoder: {e}"))?;
            let decoder = opus::Decoder::new(8000, opus::Channels::Mono)
                .map_err(|e| format!("opus decoder: {e}"))?;
            return Ok(MediaCodec::Opus {
                encoder: Box::new(encoder),
                decoder: Box::new(decoder),
            });
        }
        Err(format!("codec {name} is not supported"))
    }

    /// The name as in SDP, upper case for G.711.
    pub fn name(&self) -> &'static str {
        match self {
            MediaCodec::G711(Law::Ulaw) => "PCMU",
            MediaCodec::G711(Law::Alaw) => "PCMA",
            #[cfg(feature = "opus")]
            MediaCodec::Opus { .. } => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        match self {
            MediaCodec::G711(_) => 8000,
            #[cfg(feature = "opus")]
            MediaCodec::Opus { .. } => 48000,
        }
    }

    /// How far the RTP timestamp moves per 20 ms frame.
    pub fn timestamp_step(&self) -> u32 {
        self.clock_rate() / 50
    }

    /// Encodes one frame of 8 kHz audio, appending the payload to `out`.
    pub fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        match self {
            MediaCodec::G711(law) => g711::encode(*law, frame, out),
            #[cfg(feature = "opus")]
            MediaCodec::Opus { encoder, .. } => {
                let start = out.len();
                out.resize(start + 400, 0);
                match encoder.encode(frame, &mut out[start..]) {
                    Ok(n) => out.truncate(start + n),
                    Err(_) => out.truncate(start),
                }
            }
        }
    }

    /// Decodes one payload into 8 kHz audio appended to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            MediaCodec::G711(law) => g711::decode(*law, payload, out),
            #[cfg(feature = "opus")]
            MediaCodec::Opus { decoder, .. } => {
                // at most 120 ms per packet (RFC 6716 §3.2.5)
                let start = out.len();
                out.resize(start + 960, 0);
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
        match self {
            MediaCodec::G711(_) => {
                let _ = out;
                false
            }
            #[cfg(feature = "opus")]
            MediaCodec::Opus { decoder, .. } => {
                let start = out.len();
                out.resize(start + FRAME_SAMPLES, 0);
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
}
