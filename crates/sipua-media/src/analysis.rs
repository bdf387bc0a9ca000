//! Signal measurements on 16-bit PCM: Goertzel tone detection (G. Goertzel,
//! "An Algorithm for the Evaluation of Finite Trigonometric Series", 1958),
//! RMS level in dBFS (AES17 convention: a full-scale sine reads 0 dBFS),
//! FFT cross-correlation alignment and least-squares SNR.
//!
//! Used by tests and by the demo's report to decide whether recorded audio
//! matches what was sent.

use std::f64::consts::PI;

/// Full-scale reference: the magnitude of `i16::MIN`.
const FULL_SCALE: f64 = 32768.0;

/// Longest stretch of the reference (in samples) used for alignment; 32 s at 8 kHz.
/// Bounds the FFT size (and memory) however long the inputs are.
pub const MAX_ALIGNMENT_WINDOW: usize = 1 << 18;

/// Power of `samples` at `frequency_hz`, normalised so that a sine of amplitude
/// `A` at exactly that frequency reads `(A / 32768)²` (a full-scale sine ≈ 1.0).
///
/// Uses the Goertzel recurrence with a non-integer bin, so any frequency may be
/// probed. Returns 0.0 for empty input, a zero sample rate or a non-finite frequency.
pub fn goertzel_power(samples: &[i16], frequency_hz: f32, sample_rate: u32) -> f64 {
    if samples.is_empty() || sample_rate == 0 || !frequency_hz.is_finite() {
        return 0.0;
    }
    let omega = 2.0 * PI * f64::from(frequency_hz) / f64::from(sample_rate);
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    let n = samples.len() as f64;
    power * 4.0 / (n * n * FULL_SCALE * FULL_SCALE)
}

/// Root-mean-square value of `samples` in raw sample units (0.0 for empty input).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Level of `samples` in dBFS where a full-scale sine reads 0 dBFS (AES17);
/// returns `f64::NEG_INFINITY` for silence or empty input.
pub fn dbfs(samples: &[i16]) -> f64 {
    let r = rms(samples);
    if r <= 0.0 {
        return f64::NEG_INFINITY;
    }
    20.0 * (r * std::f64::consts::SQRT_2 / FULL_SCALE).log10()
}

/// Finds where `reference` appears in `received`, which is assumed to lag it by
/// `0..=max_lag` samples. Returns the lag and the normalised cross-correlation there.
///
/// Approach: the full cross-correlation over all lags is computed at once with a
/// zero-padded radix-2 FFT (O(n log n), a few tens of ms for 5 s of audio even
/// in a debug build), then each lag is normalised by the energies of the
/// overlapping parts (prefix sums). Only lags whose overlap covers at least half
/// of the shorter input are considered, so a few stray samples cannot win; the
/// most positive correlation wins. At most [`MAX_ALIGNMENT_WINDOW`] samples of
/// the reference are used. Returns `(0, 0.0)` if either input is empty or silent.
pub fn best_alignment(reference: &[i16], received: &[i16], max_lag: usize) -> (usize, f64) {
    let reference = reference
        .get(..reference.len().min(MAX_ALIGNMENT_WINDOW))
        .unwrap_or(reference);
    if reference.is_empty() || received.is_empty() {
        return (0, 0.0);
    }
    let max_lag = max_lag.min(received.len() - 1);
    let rec_len = received.len().min(reference.len().saturating_add(max_lag));
    let received = received.get(..rec_len).unwrap_or(received);

    let correlation = cross_correlation(reference, received, max_lag);

    let ref_prefix = prefix_energy(reference);
    let rec_prefix = prefix_energy(received);
    let min_overlap = (reference.len().min(rec_len) / 2).max(1);

    let mut best = (0usize, 0.0f64);
    let mut found = false;
    for (lag, &c) in correlation.iter().enumerate() {
        let overlap = reference.len().min(rec_len - lag);
        if overlap < min_overlap {
            break; // overlap only shrinks as the lag grows
        }
        let e_ref = ref_prefix[overlap];
        let e_rec = rec_prefix[lag + overlap] - rec_prefix[lag];
        if e_ref <= 0.0 || e_rec <= 0.0 {
            continue;
        }
        let ncc = (c / (e_ref * e_rec).sqrt()).clamp(-1.0, 1.0);
        if !found || ncc > best.1 {
            best = (lag, ncc);
            found = true;
        }
    }
    best
}

/// Signal-to-noise ratio in dB of `received` against `reference`, after finding
/// the best alignment (any lag within `received`) and matching gain by least
/// squares; the noise is whatever the scaled reference does not explain.
///
/// Only the overlapping part is compared. Returns `f64::INFINITY` for an exact
/// (scaled) copy and `f64::NEG_INFINITY` if there is nothing to compare.
pub fn snr_db(reference: &[i16], received: &[i16]) -> f64 {
    if reference.is_empty() || received.is_empty() {
        return f64::NEG_INFINITY;
    }
    let (lag, _) = best_alignment(reference, received, received.len() - 1);
    let aligned = received.get(lag..).unwrap_or(&[]);
    let overlap = reference.len().min(aligned.len());
    let (r, x) = (&reference[..overlap], &aligned[..overlap]);

    let (mut rr, mut rx) = (0.0f64, 0.0f64);
    for (&a, &b) in r.iter().zip(x) {
        rr += f64::from(a) * f64::from(a);
        rx += f64::from(a) * f64::from(b);
    }
    if rr <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let gain = rx / rr;
    let noise: f64 = r
        .iter()
        .zip(x)
        .map(|(&a, &b)| {
            let e = f64::from(b) - gain * f64::from(a);
            e * e
        })
        .sum();
    let signal = gain * gain * rr;
    if signal <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if noise <= 0.0 {
        return f64::INFINITY;
    }
    10.0 * (signal / noise).log10()
}

/// The candidate frequency with the most Goertzel power in `samples`, or `None`
/// if there are no candidates or the strongest is below about -80 dBFS (silence).
pub fn dominant_frequency(samples: &[i16], sample_rate: u32, candidates: &[f32]) -> Option<f32> {
    const THRESHOLD: f64 = 1e-8;
    let mut best: Option<(f32, f64)> = None;
    for &f in candidates {
        let p = goertzel_power(samples, f, sample_rate);
        match best {
            Some((_, bp)) if p <= bp => {}
            _ => best = Some((f, p)),
        }
    }
    best.filter(|&(_, p)| p >= THRESHOLD).map(|(f, _)| f)
}

/// `prefix[k]` is the energy of `samples[..k]`; exact since the sums are integers below 2^53.
fn prefix_energy(samples: &[i16]) -> Vec<f64> {
    let mut prefix = Vec::with_capacity(samples.len() + 1);
    let mut acc = 0.0f64;
    prefix.push(acc);
    for &s in samples {
        acc += f64::from(s) * f64::from(s);
        prefix.push(acc);
    }
    prefix
}

/// `out[lag] = Σ reference[i] · received[i + lag]` for `lag` in `0..=max_lag`
/// (terms beyond `received` count as zero), via FFT.
fn cross_correlation(reference: &[i16], received: &[i16], max_lag: usize) -> Vec<f64> {
    let n = (reference.len() + received.len()).next_power_of_two();
    let twiddles = Twiddles::new(n);

    let mut a_re: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    a_re.resize(n, 0.0);
    let mut a_im = vec![0.0; n];
    let mut b_re: Vec<f64> = received.iter().map(|&s| f64::from(s)).collect();
    b_re.resize(n, 0.0);
    let mut b_im = vec![0.0; n];

    fft(&mut a_re, &mut a_im, &twiddles, false);
    fft(&mut b_re, &mut b_im, &twiddles, false);
    // conj(A) · B
    for k in 0..n {
        let (ar, ai, br, bi) = (a_re[k], a_im[k], b_re[k], b_im[k]);
        a_re[k] = ar * br + ai * bi;
        a_im[k] = ar * bi - ai * br;
    }
    fft(&mut a_re, &mut a_im, &twiddles, true);

    let scale = 1.0 / n as f64;
    a_re.truncate((max_lag + 1).min(n));
    a_re.iter_mut().for_each(|v| *v *= scale);
    a_re
}

/// Precomputed `exp(-2πik/n)` for `k < n/2`.
struct Twiddles {
    re: Vec<f64>,
    im: Vec<f64>,
}

impl Twiddles {
    fn new(n: usize) -> Self {
        let half = n / 2;
        let (mut re, mut im) = (Vec::with_capacity(half), Vec::with_capacity(half));
        for k in 0..half {
            let angle = -2.0 * PI * k as f64 / n as f64;
            re.push(angle.cos());
            im.push(angle.sin());
        }
        Twiddles { re, im }
    }
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two matching
/// the twiddle table (both guaranteed by the caller). Unnormalised in both directions.
fn fft(re: &mut [f64], im: &mut [f64], tw: &Twiddles, inverse: bool) {
    let n = re.len();
    if n < 2 || im.len() != n || tw.re.len() != n / 2 {
        return;
    }
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let wr = tw.re[k * step];
                let wi = if inverse {
                    -tw.im[k * step]
                } else {
                    tw.im[k * step]
                };
                let a = start + k;
                let b = a + half;
                let xr = re[b] * wr - im[b] * wi;
                let xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::{self, Law};
    use std::time::Instant;

    fn sine(freq: f64, amplitude: f64, rate: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let v = amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin();
                v.round() as i16
            })
            .collect()
    }

    /// Deterministic white-ish noise (xorshift32).
    fn noise(len: usize, seed: u32, amplitude: i32) -> Vec<i16> {
        let mut state = seed.max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((state % (2 * amplitude as u32 + 1)) as i32 - amplitude) as i16
            })
            .collect()
    }

    fn g711_round_trip(law: Law, samples: &[i16]) -> Vec<i16> {
        let mut codes = Vec::new();
        g711::encode(law, samples, &mut codes);
        let mut out = Vec::new();
        g711::decode(law, &codes, &mut out);
        out
    }

    #[test]
    fn goertzel_reads_full_scale_sine_as_unit_power() {
        let s = sine(1000.0, 32767.0, 8000, 8000);
        let p = goertzel_power(&s, 1000.0, 8000);
        assert!((p - 1.0).abs() < 0.01, "power {p}");
    }

    #[test]
    fn goertzel_power_scales_with_amplitude_squared() {
        let s = sine(440.0, 8192.0, 8000, 8000);
        let p = goertzel_power(&s, 440.0, 8000);
        assert!((p - 0.0625).abs() < 0.002, "power {p}");
    }

    #[test]
    fn goertzel_ignores_a_tone_at_another_frequency() {
        let s = sine(1000.0, 32767.0, 8000, 8000);
        let p = goertzel_power(&s, 1500.0, 8000);
        assert!(p < 1e-4, "power {p}");
    }

    #[test]
    fn goertzel_of_degenerate_input_is_zero() {
        assert_eq!(goertzel_power(&[], 1000.0, 8000), 0.0);
        assert_eq!(goertzel_power(&[100, 200], 1000.0, 0), 0.0);
        assert_eq!(goertzel_power(&[100, 200], f32::NAN, 8000), 0.0);
    }

    #[test]
    fn rms_of_sine_is_amplitude_over_root_two() {
        let s = sine(1000.0, 10000.0, 8000, 8000);
        assert!((rms(&s) - 10000.0 / 2f64.sqrt()).abs() < 1.0);
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[-300, 300]), 300.0);
    }

    #[test]
    fn dbfs_reads_zero_for_full_scale_sine_and_minus_six_for_half() {
        let full = sine(1000.0, 32767.0, 8000, 8000);
        assert!(dbfs(&full).abs() < 0.01, "{}", dbfs(&full));
        let half = sine(1000.0, 16384.0, 8000, 8000);
        assert!((dbfs(&half) + 6.02).abs() < 0.02, "{}", dbfs(&half));
        assert_eq!(dbfs(&[0; 100]), f64::NEG_INFINITY);
    }

    #[test]
    fn best_alignment_finds_delay_in_five_seconds_quickly() {
        let reference = noise(40_000, 7, 8000);
        let delay = 3217;
        let mut received = noise(delay, 99, 300);
        received.extend(g711_round_trip(Law::Ulaw, &reference));
        received.extend(noise(8000 - delay, 5, 300));
        let start = Instant::now();
        let (lag, ncc) = best_alignment(&reference, &received, 8000);
        let elapsed = start.elapsed();
        assert_eq!(lag, delay);
        assert!(ncc > 0.99, "ncc {ncc}");
        assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
    }

    #[test]
    fn best_alignment_respects_max_lag() {
        let reference = noise(4000, 3, 8000);
        let mut received = vec![0i16; 500];
        received.extend_from_slice(&reference);
        let (lag, _) = best_alignment(&reference, &received, 400);
        assert!(lag <= 400);
        let (lag, ncc) = best_alignment(&reference, &received, 500);
        assert_eq!(lag, 500);
        assert!(ncc > 0.999_999, "ncc {ncc}");
    }

    #[test]
    fn best_alignment_of_degenerate_input_is_zero() {
        assert_eq!(best_alignment(&[], &[1, 2, 3], 10), (0, 0.0));
        assert_eq!(best_alignment(&[1, 2, 3], &[], 10), (0, 0.0));
        assert_eq!(best_alignment(&[0; 50], &[0; 80], 10), (0, 0.0));
    }

    #[test]
    fn best_alignment_finds_melody_after_g711() {
        let melody = crate::audio::demo_melody();
        let mut received = vec![0i16; 1234];
        received.extend(g711_round_trip(Law::Alaw, &melody));
        let (lag, ncc) = best_alignment(&melody, &received, 8000);
        assert_eq!(lag, 1234);
        assert!(ncc > 0.999, "ncc {ncc}");
    }

    #[test]
    fn snr_of_g711_coded_melody_is_above_thirty_db() {
        let melody = crate::audio::demo_melody();
        for law in [Law::Ulaw, Law::Alaw] {
            let mut received = noise(800, 11, 20);
            received.extend(
                g711_round_trip(law, &melody)
                    .iter()
                    .map(|&s| (f64::from(s) * 0.7) as i16),
            );
            received.extend(noise(400, 12, 20));
            let snr = snr_db(&melody, &received);
            assert!(snr > 30.0, "{law:?}: snr {snr}");
        }
    }

    #[test]
    fn snr_of_g711_coded_noise_is_above_thirty_db() {
        let reference = noise(16_000, 21, 10_000);
        let received = g711_round_trip(Law::Ulaw, &reference);
        let snr = snr_db(&reference, &received);
        assert!(snr > 30.0, "snr {snr}");
    }

    #[test]
    fn snr_of_a_different_signal_is_below_five_db() {
        let melody = crate::audio::demo_melody();
        let other = noise(melody.len(), 42, 8000);
        let snr = snr_db(&melody, &other);
        assert!(snr < 5.0, "snr {snr}");
        let tone = sine(1700.0, 8000.0, 8000, melody.len());
        let snr = snr_db(&melody, &tone);
        assert!(snr < 5.0, "snr {snr}");
    }

    #[test]
    fn snr_of_identical_signal_is_infinite_and_of_nothing_is_minus_infinite() {
        let s = noise(1000, 1, 1000);
        assert_eq!(snr_db(&s, &s), f64::INFINITY);
        assert_eq!(snr_db(&s, &[]), f64::NEG_INFINITY);
        assert_eq!(snr_db(&[0; 100], &s), f64::NEG_INFINITY);
    }

    #[test]
    fn dominant_frequency_picks_the_tone_present() {
        let s = sine(697.0, 6000.0, 8000, 800);
        let candidates = [697.0, 770.0, 852.0, 941.0];
        assert_eq!(dominant_frequency(&s, 8000, &candidates), Some(697.0));
        let s = sine(941.0, 6000.0, 8000, 800);
        assert_eq!(dominant_frequency(&s, 8000, &candidates), Some(941.0));
    }

    #[test]
    fn dominant_frequency_is_none_for_silence_or_no_candidates() {
        assert_eq!(dominant_frequency(&[0; 800], 8000, &[440.0, 880.0]), None);
        let s = sine(440.0, 6000.0, 8000, 800);
        assert_eq!(dominant_frequency(&s, 8000, &[]), None);
    }

    #[test]
    fn fft_correlation_matches_direct_sum() {
        let a = noise(37, 2, 1000);
        let b = noise(90, 4, 1000);
        let c = cross_correlation(&a, &b, 60);
        assert_eq!(c.len(), 61);
        for (lag, &v) in c.iter().enumerate() {
            let direct: f64 = a
                .iter()
                .enumerate()
                .map(|(i, &x)| f64::from(x) * f64::from(b.get(i + lag).copied().unwrap_or(0)))
                .sum();
            assert!((v - direct).abs() < 1e-3, "lag {lag}: {v} vs {direct}");
        }
    }
}
