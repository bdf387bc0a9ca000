//! The rate of a call's audio frames, and the streaming converter between the 8 kHz of
//! G.711 (RFC 3551 §4.5.14) and a wideband call rate.
//!
//! A call's audio ends ([`crate::audio::AudioSource`], [`crate::audio::AudioSink`]) work at
//! one rate chosen per handler (`RtpAudioOptions::audio_rate`, `WebRtcAudioOptions::
//! audio_rate`): 8 kHz (narrowband, the default), 16, 24 or 48 kHz. Opus encodes and decodes
//! at that rate itself (RFC 6716 §2: it runs natively at 8–48 kHz); G.711 is 8 kHz on the
//! wire, so a wideband call converts each frame with a [`StreamResampler`], which keeps its
//! filter's history across frames so that frame edges leave no click.

use std::f32::consts::PI;

/// The rates a call's audio may run at: multiples of 8 kHz that Opus runs natively.
pub const AUDIO_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Whether `rate` is one of [`AUDIO_RATES`].
pub fn is_audio_rate(rate: u32) -> bool {
    AUDIO_RATES.contains(&rate)
}

/// An error that names `rate` unless it is one of [`AUDIO_RATES`].
pub fn check_audio_rate(rate: u32) -> Result<(), String> {
    if is_audio_rate(rate) {
        Ok(())
    } else {
        Err(format!(
            "audio rate {rate} Hz is not supported (8000, 16000, 24000 or 48000)"
        ))
    }
}

/// Samples in one 20 ms frame at `rate`.
pub fn frame_samples(rate: u32) -> usize {
    (rate / 50) as usize
}

/// Filter taps per polyphase branch (at the low rate): a transition band of about 0.1 of
/// 8 kHz Nyquist, stop band past 60 dB with the Blackman window.
const TAPS_PER_PHASE: usize = 32;
/// Pass band edge as a fraction of the low rate's Nyquist frequency (3.6 kHz of 4 kHz).
const CUTOFF_FRACTION: f32 = 0.9;

/// Converts a stream of samples between 8 kHz and an integer multiple of it (16, 24 or
/// 48 kHz), up or down, frame after frame (a polyphase windowed-sinc FIR; the history of the
/// last input samples carries over, so consecutive frames join without a seam).
#[derive(Debug, Clone)]
pub struct StreamResampler {
    /// The ratio between the two rates.
    factor: usize,
    /// Up (8 kHz to the higher rate) or down.
    up: bool,
    /// The low-pass filter at the high rate, `factor * TAPS_PER_PHASE` taps.
    taps: Vec<f32>,
    /// The last input samples, newest last (`taps.len()` for down, `TAPS_PER_PHASE` for up).
    history: Vec<f32>,
    /// Down: input samples taken since the last output (an output every `factor`).
    phase: usize,
}

impl StreamResampler {
    /// A converter from `from` Hz to `to` Hz, or `None` unless one of them is 8 kHz and the
    /// other an integer multiple of it (2 to 6 times).
    pub fn new(from: u32, to: u32) -> Option<StreamResampler> {
        let (low, high, up) = if from < to {
            (from, to, true)
        } else {
            (to, from, false)
        };
        if low != 8000 || high % low != 0 || !(2..=6).contains(&(high / low)) {
            return None;
        }
        let factor = (high / low) as usize;
        let len = factor * TAPS_PER_PHASE;
        // cycles per high-rate sample at the pass band's edge
        let cutoff = 0.5 * CUTOFF_FRACTION / factor as f32;
        let centre = (len as f32 - 1.0) / 2.0;
        let mut taps: Vec<f32> = (0..len)
            .map(|k| {
                let x = k as f32 - centre;
                let arg = 2.0 * cutoff * x;
                let sinc = if arg.abs() < 1e-6 {
                    1.0
                } else {
                    (PI * arg).sin() / (PI * arg)
                };
                let u = 2.0 * PI * k as f32 / (len as f32 - 1.0);
                let window = 0.42 - 0.5 * u.cos() + 0.08 * (2.0 * u).cos();
                sinc * window
            })
            .collect();
        // unit gain at DC; upsampling inserts factor - 1 zeros per sample, so each output
        // phase sums 1/factor of the taps: scale them back up
        let sum: f32 = taps.iter().sum();
        let gain = if up { factor as f32 } else { 1.0 };
        taps.iter_mut().for_each(|t| *t *= gain / sum);
        let history = vec![0.0; if up { TAPS_PER_PHASE } else { len }];
        Some(StreamResampler {
            factor,
            up,
            taps,
            history,
            phase: 0,
        })
    }

    /// Converts `input`, appending to `out`: `factor` times as many samples up, a
    /// `factor`-th down (a remainder is carried to the next call).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.up {
            self.upsample(input, out)
        } else {
            self.downsample(input, out)
        }
    }

    fn upsample(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() * self.factor);
        for &s in input {
            self.history.rotate_left(1);
            if let Some(last) = self.history.last_mut() {
                *last = f32::from(s);
            }
            // output phase p of this input: taps p, p + factor, … against the history, the
            // newest sample meeting tap p
            for p in 0..self.factor {
                let acc: f32 = self
                    .history
                    .iter()
                    .rev()
                    .zip(self.taps.iter().skip(p).step_by(self.factor))
                    .map(|(x, t)| x * t)
                    .sum();
                out.push(to_i16(acc));
            }
        }
    }

    fn downsample(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve(input.len() / self.factor + 1);
        for &s in input {
            self.history.rotate_left(1);
            if let Some(last) = self.history.last_mut() {
                *last = f32::from(s);
            }
            self.phase += 1;
            if self.phase == self.factor {
                self.phase = 0;
                let acc: f32 = self
                    .history
                    .iter()
                    .rev()
                    .zip(&self.taps)
                    .map(|(x, t)| x * t)
                    .sum();
                out.push(to_i16(acc));
            }
        }
    }
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, goertzel_power};

    fn sine(freq: f32, amplitude: f32, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    /// Runs `input` through `r` 20 ms at a time, as a call does.
    fn framed(r: &mut StreamResampler, input: &[i16], frame: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for chunk in input.chunks(frame) {
            r.process(chunk, &mut out);
        }
        out
    }

    fn rms(s: &[i16]) -> f32 {
        (s.iter().map(|&x| f32::from(x).powi(2)).sum::<f32>() / s.len() as f32).sqrt()
    }

    #[test]
    fn only_8k_against_its_multiples() {
        for rate in [16000, 24000, 48000] {
            assert!(StreamResampler::new(8000, rate).is_some(), "{rate}");
            assert!(StreamResampler::new(rate, 8000).is_some(), "{rate}");
        }
        assert!(StreamResampler::new(8000, 8000).is_none());
        assert!(StreamResampler::new(8000, 44100).is_none());
        assert!(StreamResampler::new(16000, 48000).is_none());
        assert!(StreamResampler::new(8000, 64000).is_none());
        assert!(StreamResampler::new(0, 8000).is_none());
        assert!(AUDIO_RATES.iter().all(|&r| is_audio_rate(r)));
        assert!(!is_audio_rate(44100));
        assert_eq!(frame_samples(48000), 960);
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level_both_ways_frame_by_frame() {
        for rate in [16000u32, 24000, 48000] {
            let factor = (rate / 8000) as usize;
            // up: 1 kHz at 8 kHz becomes 1 kHz at the high rate, as many samples times factor
            let low = sine(1000.0, 10000.0, 8000, 8000);
            let mut up = StreamResampler::new(8000, rate).unwrap();
            let high = framed(&mut up, &low, 160);
            assert_eq!(high.len(), low.len() * factor);
            let tail = &high[high.len() / 2..];
            let level = rms(tail) / rms(&low[4000..]);
            assert!((0.95..1.05).contains(&level), "{rate} up: level {level}");
            assert_eq!(
                dominant_frequency(tail, rate, &[500.0, 1000.0, 2000.0]),
                Some(1000.0)
            );
            // no seam at frame edges: what is left after removing the tone is tiny
            let purity = goertzel_power(tail, 1000.0, rate) * 32768f64.powi(2)
                / (2.0 * f64::from(rms(tail)).powi(2));
            assert!(purity > 0.99, "{rate} up: {purity}");
            // down: and back
            let mut down = StreamResampler::new(rate, 8000).unwrap();
            let back = framed(&mut down, &high, frame_samples(rate));
            assert_eq!(back.len(), low.len());
            let level = rms(&back[4000..]) / rms(&low[4000..]);
            assert!((0.95..1.05).contains(&level), "{rate} down: level {level}");
        }
    }

    #[test]
    fn down_removes_what_8k_cannot_carry() {
        // 6 kHz at 48 kHz would alias to 2 kHz at 8 kHz: the filter must take it out
        let high = sine(6000.0, 16000.0, 48000, 48000);
        let mut down = StreamResampler::new(48000, 8000).unwrap();
        let low = framed(&mut down, &high, 960);
        let residue = rms(&low[2000..]);
        assert!(residue < 16.0, "6 kHz left {residue} rms at 8 kHz");
    }

    #[test]
    fn odd_sized_input_is_carried_over() {
        let high = sine(440.0, 8000.0, 16000, 3200);
        let mut whole = StreamResampler::new(16000, 8000).unwrap();
        let mut a = Vec::new();
        whole.process(&high, &mut a);
        let mut pieces = StreamResampler::new(16000, 8000).unwrap();
        let b = framed(&mut pieces, &high, 7);
        assert_eq!(a, b);
    }
}
