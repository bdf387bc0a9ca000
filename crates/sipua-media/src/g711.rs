//! ITU-T G.711 companding (μ-law and A-law) between 16-bit linear PCM and
//! 8-bit codes, as carried by RTP payload types 0 (PCMU) and 8 (PCMA).
//!
//! Encoding is done with a few bit operations per sample; decoding uses two
//! 256-entry tables built at compile time by `const fn`s.

/// Which G.711 companding law to use; PCMU is μ-law, PCMA is A-law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// μ-law (North America, Japan; RTP payload type 0, "PCMU").
    Ulaw,
    /// A-law (Europe and most of the world; RTP payload type 8, "PCMA").
    Alaw,
}

impl Law {
    /// The code that decodes to (near) zero, used to fill gaps with silence.
    pub const fn silence_byte(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }

    /// Encodes one linear sample with this law.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(sample),
            Law::Alaw => alaw_encode(sample),
        }
    }

    /// Decodes one code with this law.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(code),
            Law::Alaw => alaw_decode(code),
        }
    }
}

/// Bias added before μ-law segment search (33 in 14-bit units, scaled to 16 bits).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law can represent before the biased value overflows 15 bits.
const ULAW_CLIP: i32 = 32635;

/// Encodes a 16-bit linear sample as a G.711 μ-law code.
pub fn ulaw_encode(sample: i16) -> u8 {
    let value = i32::from(sample);
    let (sign, magnitude) = if value < 0 {
        (0x80u8, -value)
    } else {
        (0x00u8, value)
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // `biased` lies in 132..=32767, so its highest set bit is in 7..=14.
    let top_bit = 31 - (biased as u32).leading_zeros() as i32;
    let exponent = top_bit - 7;
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

const fn ulaw_decode_const(code: u8) -> i16 {
    let code = !code;
    let exponent = ((code >> 4) & 0x07) as i32;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if code & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes a 16-bit linear sample as a G.711 A-law code.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit values; negative inputs are mapped to one's complement.
    let value = i32::from(sample) >> 3;
    let (mask, magnitude) = if value >= 0 {
        (0xD5u8, value)
    } else {
        (0x55u8, -value - 1)
    };
    // `magnitude` is in 0..=4095.
    let segment = if magnitude < 32 {
        0
    } else {
        (31 - (magnitude as u32).leading_zeros() as i32) - 4
    };
    let shift = if segment < 2 { 1 } else { segment };
    let mantissa = (magnitude >> shift) & 0x0F;
    (((segment as u8) << 4) | mantissa as u8) ^ mask
}

const fn alaw_decode_const(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mantissa = ((code & 0x0F) as i32) << 4;
    let segment = ((code & 0x70) >> 4) as i32;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    if code & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_decode_const(i as u8)
        } else {
            ulaw_decode_const(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Decodes a G.711 μ-law code to a 16-bit linear sample (table lookup).
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Decodes a G.711 A-law code to a 16-bit linear sample (table lookup).
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// Encodes `samples` with `law`, appending one code per sample to `out`.
pub fn encode(law: Law, samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len());
    match law {
        Law::Ulaw => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
        Law::Alaw => out.extend(samples.iter().map(|&s| alaw_encode(s))),
    }
}

/// Decodes `codes` with `law`, appending one linear sample per code to `out`.
pub fn decode(law: Law, codes: &[u8], out: &mut Vec<i16>) {
    let table = match law {
        Law::Ulaw => &ULAW_TABLE,
        Law::Alaw => &ALAW_TABLE,
    };
    out.reserve(codes.len());
    out.extend(codes.iter().map(|&c| table[usize::from(c)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_decodes_reference_codes() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_decode(0xEF), 132);
    }

    #[test]
    fn alaw_decodes_reference_codes() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0xD4), 24);
        assert_eq!(alaw_decode(0x54), -24);
    }

    #[test]
    fn zero_encodes_to_silence_byte() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(Law::Ulaw.silence_byte(), 0xFF);
        assert_eq!(Law::Alaw.silence_byte(), 0xD5);
        assert_eq!(ulaw_decode(Law::Ulaw.silence_byte()), 0);
        assert_eq!(alaw_decode(Law::Alaw.silence_byte()), 8);
    }

    #[test]
    fn extremes_encode_to_outermost_codes() {
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn ulaw_round_trip_stays_within_quantisation_error() {
        for s in i16::MIN..=i16::MAX {
            let decoded = i32::from(ulaw_decode(ulaw_encode(s)));
            let magnitude = i32::from(s).abs();
            if magnitude <= ULAW_CLIP {
                let bound = (magnitude + ULAW_BIAS) / 32 + 1;
                let err = (decoded - i32::from(s)).abs();
                assert!(
                    err <= bound,
                    "sample {s}: decoded {decoded}, err {err} > {bound}"
                );
            } else {
                assert_eq!(decoded, 32124 * i32::from(s).signum(), "sample {s}");
            }
        }
    }

    #[test]
    fn alaw_round_trip_stays_within_quantisation_error() {
        for s in i16::MIN..=i16::MAX {
            let decoded = i32::from(alaw_decode(alaw_encode(s)));
            let magnitude = i32::from(s).abs();
            let bound = (magnitude / 32 + 2).max(16);
            let err = (decoded - i32::from(s)).abs();
            assert!(
                err <= bound,
                "sample {s}: decoded {decoded}, err {err} > {bound}"
            );
        }
    }

    #[test]
    fn every_code_is_a_fixed_point_of_decode_then_encode() {
        for code in 0..=255u8 {
            let u = ulaw_decode(code);
            // 0x7F is "negative zero", which re-encodes as positive zero.
            if code != 0x7F {
                assert_eq!(ulaw_encode(u), code, "ulaw code {code:#04x}");
            }
            assert_eq!(
                alaw_encode(alaw_decode(code)),
                code,
                "alaw code {code:#04x}"
            );
        }
    }

    #[test]
    fn decode_is_monotonic_in_linear_value() {
        for law in [Law::Ulaw, Law::Alaw] {
            let mut previous = i16::MIN;
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let d = law.decode_sample(law.encode_sample(s));
                assert!(d >= previous, "{law:?}: {s} decoded to {d} < {previous}");
                previous = d;
            }
        }
    }

    #[test]
    fn decode_table_is_sorted_by_magnitude_within_each_sign() {
        // μ-law codes 0x00..=0x7F go from most negative towards zero.
        for c in 0x00..0x7Fu8 {
            assert!(ulaw_decode(c) < ulaw_decode(c + 1));
            assert!(ulaw_decode(c | 0x80) > ulaw_decode((c + 1) | 0x80));
        }
    }

    #[test]
    fn slice_encode_and_decode_append() {
        let samples = [0i16, 1000, -1000, 32767, -32768];
        for law in [Law::Ulaw, Law::Alaw] {
            let mut codes = vec![0x11];
            encode(law, &samples, &mut codes);
            assert_eq!(codes.len(), 6);
            assert_eq!(codes[0], 0x11);
            for (s, c) in samples.iter().zip(&codes[1..]) {
                assert_eq!(law.encode_sample(*s), *c);
            }
            let mut decoded = vec![42i16];
            decode(law, &codes[1..], &mut decoded);
            assert_eq!(decoded.len(), 6);
            assert_eq!(decoded[0], 42);
            assert!((i32::from(decoded[2]) - 1000).abs() < 40);
            assert!((i32::from(decoded[3]) + 1000).abs() < 40);
        }
    }
}
