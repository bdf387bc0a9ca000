//! RIFF WAVE (Microsoft/IBM Multimedia Programming Interface and Data
//! Specifications 1.0, with the WAVE_FORMAT_EXTENSIBLE extension) reading and
//! 16-bit PCM writing, plus a windowed-sinc sample-rate converter.
//!
//! Reading accepts the common encodings (PCM 8/16/24/32-bit, IEEE float 32/64,
//! G.711 A-law and μ-law, optionally wrapped in WAVE_FORMAT_EXTENSIBLE) with any
//! channel count, mixes to mono and is defensive against malformed headers:
//! every length is checked against the bytes actually present.

use std::f64::consts::PI;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::g711;

/// Highest sample rate accepted by the reader (the top of common studio rates).
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// Longest audio accepted by the reader, in seconds at the file's own rate.
pub const MAX_DURATION_SECONDS: u64 = 600;
/// Largest file [`read_wav_file`] will load into memory (1 GiB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

const FORMAT_PCM: u16 = 1;
const FORMAT_IEEE_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Bytes 2..16 of the KSDATAFORMAT_SUBTYPE_* GUIDs; bytes 0..2 hold the format tag.
const SUBFORMAT_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// Decoded mono audio: what every reader in this module returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// Samples per second of `samples`.
    pub sample_rate: u32,
    /// Mono 16-bit samples (multi-channel files are averaged).
    pub samples: Vec<i16>,
}

/// Why a WAV file could not be read.
#[derive(Debug)]
pub enum WavError {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The bytes do not start with a `RIFF....WAVE` header.
    NotRiffWave,
    /// No `fmt ` chunk was found.
    MissingFmt,
    /// No `data` chunk was found.
    MissingData,
    /// The `fmt ` chunk is too short to hold the fields its format needs.
    BadFmtChunk,
    /// The encoding is not one this reader decodes.
    UnsupportedFormat {
        /// The format tag (for extensible files, the one from the sub-format GUID).
        format_tag: u16,
        /// The declared bits per sample.
        bits_per_sample: u16,
    },
    /// The header declares zero channels.
    NoChannels,
    /// The sample rate is 0 or above [`MAX_SAMPLE_RATE`].
    BadSampleRate(u32),
    /// The audio is longer than [`MAX_DURATION_SECONDS`].
    TooLong {
        /// Number of sample frames in the data chunk.
        frames: u64,
        /// The file's sample rate.
        sample_rate: u32,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    FileTooLarge {
        /// Size of the file in bytes.
        bytes: u64,
    },
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::Io(e) => write!(f, "cannot read WAV file: {e}"),
            WavError::NotRiffWave => f.write_str("not a RIFF/WAVE file"),
            WavError::MissingFmt => f.write_str("WAV file has no fmt chunk"),
            WavError::MissingData => f.write_str("WAV file has no data chunk"),
            WavError::BadFmtChunk => f.write_str("WAV fmt chunk is truncated"),
            WavError::UnsupportedFormat {
                format_tag,
                bits_per_sample,
            } => write!(
                f,
                "unsupported WAV encoding (format tag {format_tag:#06x}, {bits_per_sample} bits per sample)"
            ),
            WavError::NoChannels => f.write_str("WAV file declares zero channels"),
            WavError::BadSampleRate(rate) => write!(
                f,
                "unsupported WAV sample rate {rate} Hz (must be 1..={MAX_SAMPLE_RATE})"
            ),
            WavError::TooLong {
                frames,
                sample_rate,
            } => write!(
                f,
                "WAV audio too long: {frames} samples at {sample_rate} Hz exceeds {MAX_DURATION_SECONDS} s"
            ),
            WavError::FileTooLarge { bytes } => write!(
                f,
                "WAV file too large: {bytes} bytes exceeds {MAX_FILE_BYTES}"
            ),
        }
    }
}

impl std::error::Error for WavError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WavError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for WavError {
    fn from(e: io::Error) -> Self {
        WavError::Io(e)
    }
}

/// How one channel sample is stored in the data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleKind {
    U8,
    S16,
    S24,
    S32,
    F32,
    F64,
    Alaw,
    Ulaw,
}

impl SampleKind {
    fn bytes(self) -> usize {
        match self {
            SampleKind::U8 | SampleKind::Alaw | SampleKind::Ulaw => 1,
            SampleKind::S16 => 2,
            SampleKind::S24 => 3,
            SampleKind::S32 | SampleKind::F32 => 4,
            SampleKind::F64 => 8,
        }
    }

    /// Value of one stored sample on the 16-bit scale (-32768.0..32768.0);
    /// `b` has exactly `self.bytes()` bytes (anything else reads as 0).
    fn to_f64(self, b: &[u8]) -> f64 {
        let v = match (self, b) {
            (SampleKind::U8, &[x]) => (f64::from(x) - 128.0) * 256.0,
            (SampleKind::Alaw, &[x]) => f64::from(g711::alaw_decode(x)),
            (SampleKind::Ulaw, &[x]) => f64::from(g711::ulaw_decode(x)),
            (SampleKind::S16, &[x0, x1]) => f64::from(i16::from_le_bytes([x0, x1])),
            (SampleKind::S24, &[x0, x1, x2]) => {
                f64::from(i32::from_le_bytes([0, x0, x1, x2]) >> 8) / 256.0
            }
            (SampleKind::S32, &[x0, x1, x2, x3]) => {
                f64::from(i32::from_le_bytes([x0, x1, x2, x3])) / 65536.0
            }
            (SampleKind::F32, &[x0, x1, x2, x3]) => {
                f64::from(f32::from_le_bytes([x0, x1, x2, x3])) * 32768.0
            }
            (SampleKind::F64, &[x0, x1, x2, x3, x4, x5, x6, x7]) => {
                f64::from_le_bytes([x0, x1, x2, x3, x4, x5, x6, x7]) * 32768.0
            }
            _ => 0.0,
        };
        if v.is_finite() {
            v
        } else {
            0.0
        }
    }
}

/// The parts of the `fmt ` chunk the decoder needs.
#[derive(Debug, Clone, Copy)]
struct Format {
    kind: SampleKind,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
}

fn u16_at(b: &[u8], offset: usize) -> Option<u16> {
    let bytes = b.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn u32_at(b: &[u8], offset: usize) -> Option<u32> {
    let bytes = b.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn parse_fmt(body: &[u8]) -> Result<Format, WavError> {
    let field16 = |off| u16_at(body, off).ok_or(WavError::BadFmtChunk);
    let tag = field16(0)?;
    let channels = field16(2)?;
    let sample_rate = u32_at(body, 4).ok_or(WavError::BadFmtChunk)?;
    let block_align = field16(12)?;
    let bits = field16(14)?;

    let tag = if tag == FORMAT_EXTENSIBLE {
        let guid = body.get(24..40).ok_or(WavError::BadFmtChunk)?;
        if guid.get(2..) != Some(&SUBFORMAT_GUID_TAIL[..]) {
            return Err(WavError::UnsupportedFormat {
                format_tag: tag,
                bits_per_sample: bits,
            });
        }
        u16_at(guid, 0).ok_or(WavError::BadFmtChunk)?
    } else {
        tag
    };

    let kind = match (tag, bits) {
        (FORMAT_PCM, 1..=8) => SampleKind::U8,
        (FORMAT_PCM, 9..=16) => SampleKind::S16,
        (FORMAT_PCM, 17..=24) => SampleKind::S24,
        (FORMAT_PCM, 25..=32) => SampleKind::S32,
        (FORMAT_IEEE_FLOAT, 32) => SampleKind::F32,
        (FORMAT_IEEE_FLOAT, 64) => SampleKind::F64,
        (FORMAT_ALAW, 8) => SampleKind::Alaw,
        (FORMAT_ULAW, 8) => SampleKind::Ulaw,
        _ => {
            return Err(WavError::UnsupportedFormat {
                format_tag: tag,
                bits_per_sample: bits,
            })
        }
    };
    if channels == 0 {
        return Err(WavError::NoChannels);
    }
    if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
        return Err(WavError::BadSampleRate(sample_rate));
    }
    Ok(Format {
        kind,
        channels,
        sample_rate,
        block_align,
    })
}

/// Decodes a WAV file held in memory to mono 16-bit samples at the file's rate.
///
/// Unknown chunks are skipped; a data chunk whose size is 0, 0xFFFFFFFF or
/// beyond the end of the input (a streamed or truncated file) is taken to run
/// to the end of the input, and a trailing partial sample frame is ignored.
pub fn read_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotRiffWave);
    }
    let mut format: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut pos = 12usize;
    while let Some(header) = pos.checked_add(8).and_then(|end| bytes.get(pos..end)) {
        let id = header.get(0..4).unwrap_or_default();
        let size = u32_at(header, 4).unwrap_or(0) as usize;
        let body_start = pos + 8;
        let rest = bytes.get(body_start..).unwrap_or_default();
        let truncated = size > rest.len();
        let body = rest.get(..size).unwrap_or(rest);
        match id {
            b"fmt " if format.is_none() => format = Some(parse_fmt(body)?),
            b"data" if data.is_none() => {
                if size == 0 || truncated {
                    // Streamed or cut-off file: the audio runs to the end.
                    data = Some(rest);
                    break;
                }
                data = Some(body);
            }
            _ => {}
        }
        if truncated || (format.is_some() && data.is_some()) {
            break;
        }
        // Chunks are padded to an even length.
        pos = match body_start.checked_add(size + (size & 1)) {
            Some(next) => next,
            None => break,
        };
    }
    let format = format.ok_or(WavError::MissingFmt)?;
    let data = data.ok_or(WavError::MissingData)?;
    decode_data(&format, data)
}

fn decode_data(format: &Format, data: &[u8]) -> Result<Wav, WavError> {
    let sample_bytes = format.kind.bytes();
    let channels = usize::from(format.channels);
    let frame_bytes = sample_bytes * channels;
    let stride = frame_bytes.max(usize::from(format.block_align));
    let frames = data.len() / stride;
    let max_frames = MAX_DURATION_SECONDS * u64::from(format.sample_rate);
    if frames as u64 > max_frames {
        return Err(WavError::TooLong {
            frames: frames as u64,
            sample_rate: format.sample_rate,
        });
    }
    let mut samples = Vec::with_capacity(frames);
    for frame in data.chunks_exact(stride) {
        let used = frame.get(..frame_bytes).unwrap_or(frame);
        let sum: f64 = used
            .chunks_exact(sample_bytes)
            .map(|b| format.kind.to_f64(b))
            .sum();
        let mean = sum / channels as f64;
        samples.push(mean.round().clamp(-32768.0, 32767.0) as i16);
    }
    Ok(Wav {
        sample_rate: format.sample_rate,
        samples,
    })
}

/// Reads and decodes a WAV file (see [`read_wav`]); refuses files over [`MAX_FILE_BYTES`].
pub fn read_wav_file(path: &Path) -> Result<Wav, WavError> {
    let file = File::open(path)?;
    let declared = file.metadata()?.len();
    if declared > MAX_FILE_BYTES {
        return Err(WavError::FileTooLarge { bytes: declared });
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(WavError::FileTooLarge {
            bytes: bytes.len() as u64,
        });
    }
    read_wav(&bytes)
}

/// Reads a WAV file and converts it to 8000 Hz mono, the format RTP G.711 carries.
pub fn read_wav_8k(path: &Path) -> Result<Vec<i16>, WavError> {
    read_wav_at(path, 8000)
}

/// Reads a WAV file and converts it to mono at `sample_rate` (a call's audio rate).
pub fn read_wav_at(path: &Path, sample_rate: u32) -> Result<Vec<i16>, WavError> {
    let wav = read_wav_file(path)?;
    Ok(resample(&wav.samples, wav.sample_rate, sample_rate))
}

/// Half the filter length, counted in samples of the lower of the two rates.
const HALF_TAPS: f64 = 16.0;
/// Pass band edge as a fraction of the lower Nyquist frequency.
const CUTOFF_FRACTION: f64 = 0.9;
/// Upper bound on the number of precomputed filter coefficients.
const MAX_TABLE: usize = 1 << 19;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Converts `samples` from `from_rate` to `to_rate` with a Blackman-windowed
/// sinc low-pass interpolator (32 taps at the lower rate, cutoff at 90 % of the
/// lower Nyquist frequency, so aliasing is suppressed when downsampling).
///
/// Polyphase coefficients are precomputed (exactly for rational ratios with few
/// phases, otherwise on a fine grid). Returns a copy if the rates are equal and
/// an empty vector if either rate is 0.
pub fn resample(samples: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate {
        return samples.to_vec();
    }
    if from_rate == 0 || to_rate == 0 || samples.is_empty() {
        return Vec::new();
    }
    let (from, to) = (u64::from(from_rate), u64::from(to_rate));
    let scale = (to as f64 / from as f64).min(1.0);
    let cutoff = 0.5 * scale * CUTOFF_FRACTION; // cycles per input sample
    let half = (HALF_TAPS / scale).ceil() as usize;
    let taps = 2 * half;

    let exact_phases = (to / gcd(from, to)) as usize;
    let phases = if exact_phases.saturating_mul(taps) <= MAX_TABLE {
        exact_phases
    } else {
        (MAX_TABLE / taps).max(64)
    };
    let table = build_kernels(phases, taps, cutoff);

    let out_len = (samples.len() as u128 * u128::from(to) / u128::from(from)) as usize;
    let mut out = Vec::with_capacity(out_len);
    let len = samples.len() as isize;
    for n in 0..out_len {
        let position = n as u128 * u128::from(from);
        let mut base = (position / u128::from(to)) as isize;
        let rem = position % u128::from(to);
        let mut phase = ((rem * phases as u128 + u128::from(to) / 2) / u128::from(to)) as usize;
        if phase >= phases {
            phase = 0;
            base += 1;
        }
        let kernel = table
            .get(phase * taps..(phase + 1) * taps)
            .unwrap_or_default();
        let start = base - (half as isize - 1);
        let acc: f64 = if start >= 0 && start + taps as isize <= len {
            let window = samples
                .get(start as usize..start as usize + taps)
                .unwrap_or_default();
            window
                .iter()
                .zip(kernel)
                .map(|(&s, &k)| f64::from(s) * k)
                .sum()
        } else {
            kernel
                .iter()
                .enumerate()
                .filter_map(|(k, &w)| {
                    let idx = usize::try_from(start + k as isize).ok()?;
                    samples.get(idx).map(|&s| f64::from(s) * w)
                })
                .sum()
        };
        out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// Coefficients for each fractional phase `p / phases`, each row normalised to unit DC gain.
fn build_kernels(phases: usize, taps: usize, cutoff: f64) -> Vec<f64> {
    let half = (taps / 2) as f64;
    let mut table = Vec::with_capacity(phases * taps);
    for p in 0..phases {
        let frac = p as f64 / phases as f64;
        let row_start = table.len();
        for k in 0..taps {
            let x = (k as f64 - (half - 1.0)) - frac;
            let arg = 2.0 * cutoff * x;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (PI * arg).sin() / (PI * arg)
            };
            let u = x / half;
            let window = if u.abs() >= 1.0 {
                0.0
            } else {
                0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos()
            };
            table.push(2.0 * cutoff * sinc * window);
        }
        let row = &mut table[row_start..];
        let sum: f64 = row.iter().sum();
        if sum.abs() > 1e-12 {
            row.iter_mut().for_each(|w| *w /= sum);
        }
    }
    table
}

const HEADER_LEN: usize = 44;

/// The 44-byte header of a 16-bit mono PCM WAV file with `data_bytes` of audio.
fn pcm16_header(sample_rate: u32, data_bytes: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut put = |offset: usize, bytes: &[u8]| {
        if let Some(dst) = h.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, b"RIFF");
    put(4, &data_bytes.saturating_add(36).to_le_bytes());
    put(8, b"WAVE");
    put(12, b"fmt ");
    put(16, &16u32.to_le_bytes());
    put(20, &FORMAT_PCM.to_le_bytes());
    put(22, &1u16.to_le_bytes());
    put(24, &sample_rate.to_le_bytes());
    put(28, &sample_rate.saturating_mul(2).to_le_bytes());
    put(32, &2u16.to_le_bytes());
    put(34, &16u16.to_le_bytes());
    put(36, b"data");
    put(40, &data_bytes.to_le_bytes());
    h
}

/// Largest data chunk a RIFF file can describe alongside a 44-byte header.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 36;

/// Builds a complete 16-bit mono PCM WAV file in memory.
pub fn write_wav(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_bytes = u32::try_from(samples.len().saturating_mul(2)).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + samples.len() * 2);
    out.extend_from_slice(&pcm16_header(sample_rate, data_bytes));
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Streaming writer of a 16-bit mono PCM WAV file, for recording calls of
/// unknown length; sizes in the header are patched on `finish` (or on drop).
#[derive(Debug)]
pub struct WavWriter {
    out: Option<BufWriter<File>>,
    samples: u64,
}

impl WavWriter {
    /// Creates (or truncates) `path` and writes a header for `sample_rate` Hz.
    pub fn create(path: &Path, sample_rate: u32) -> io::Result<WavWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&pcm16_header(sample_rate, 0))?;
        Ok(WavWriter {
            out: Some(out),
            samples: 0,
        })
    }

    /// Appends samples; fails rather than exceed the 4 GiB RIFF size limit.
    pub fn write(&mut self, samples: &[i16]) -> io::Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("WAV writer already finished"))?;
        let total = self.samples.saturating_add(samples.len() as u64);
        if total.saturating_mul(2) > MAX_DATA_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "WAV data would exceed the 4 GiB RIFF limit",
            ));
        }
        let mut buf = [0u8; 512];
        for chunk in samples.chunks(buf.len() / 2) {
            for (dst, s) in buf.chunks_exact_mut(2).zip(chunk) {
                dst.copy_from_slice(&s.to_le_bytes());
            }
            out.write_all(buf.get(..chunk.len() * 2).unwrap_or_default())?;
        }
        self.samples = total;
        Ok(())
    }

    /// Number of samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }

    /// Flushes, patches the RIFF and data sizes and closes the file; returns the sample count.
    pub fn finish(mut self) -> io::Result<u64> {
        self.patch_header()?;
        Ok(self.samples)
    }

    fn patch_header(&mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        // `write` keeps this within u32 range.
        let data_bytes = u32::try_from(self.samples * 2).unwrap_or(u32::MAX);
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&data_bytes.saturating_add(36).to_le_bytes())?;
        file.seek(SeekFrom::Start(40))?;
        file.write_all(&data_bytes.to_le_bytes())?;
        file.flush()
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        let _ = self.patch_header();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, goertzel_power, rms};

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = id.to_vec();
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let block_align = channels * bits.div_ceil(8);
        let mut b = Vec::new();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        b.extend_from_slice(&block_align.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b
    }

    fn extensible_body(sub_tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut b = fmt_body(FORMAT_EXTENSIBLE, channels, rate, bits);
        b.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        b.extend_from_slice(&bits.to_le_bytes()); // valid bits
        b.extend_from_slice(&3u32.to_le_bytes()); // channel mask
        b.extend_from_slice(&sub_tag.to_le_bytes());
        b.extend_from_slice(&SUBFORMAT_GUID_TAIL);
        b
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&(body.len() as u32 + 4).to_le_bytes());
        f.extend_from_slice(b"WAVE");
        f.extend_from_slice(&body);
        f
    }

    fn simple(fmt: Vec<u8>, data: &[u8]) -> Vec<u8> {
        riff(&[chunk(b"fmt ", &fmt), chunk(b"data", data)])
    }

    fn sine(freq: f64, amplitude: f64, rate: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16
            })
            .collect()
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("media-audio-{}-{name}.wav", std::process::id()))
    }

    #[test]
    fn write_wav_then_read_wav_round_trips() {
        let samples: Vec<i16> = vec![0, 1, -1, 32767, -32768, 1234, -4321];
        let bytes = write_wav(&samples, 16000);
        assert_eq!(bytes.len(), 44 + 14);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(&bytes, 4), Some(36 + 14));
        assert_eq!(u32_at(&bytes, 40), Some(14));
        let wav = read_wav(&bytes).expect("valid file");
        assert_eq!(wav.sample_rate, 16000);
        assert_eq!(wav.samples, samples);
    }

    #[test]
    fn reads_8_bit_unsigned_pcm() {
        let f = simple(fmt_body(1, 1, 8000, 8), &[0x80, 0xFF, 0x00, 0xC0]);
        let wav = read_wav(&f).unwrap();
        assert_eq!(wav.samples, vec![0, 32512, -32768, 16384]);
    }

    #[test]
    fn reads_24_bit_pcm() {
        let data = [
            0x00, 0x01, 0x00, // 256 -> 1
            0x00, 0xFF, 0xFF, // -256 -> -1
            0xFF, 0xFF, 0x7F, // max -> 32767
            0x00, 0x00, 0x80, // min -> -32768
            0x00, 0x00, 0x40, // 0x400000 -> 16384
        ];
        let f = simple(fmt_body(1, 1, 48000, 24), &data);
        let wav = read_wav(&f).unwrap();
        assert_eq!(wav.sample_rate, 48000);
        assert_eq!(wav.samples, vec![1, -1, 32767, -32768, 16384]);
    }

    #[test]
    fn reads_32_bit_pcm() {
        let mut data = Vec::new();
        for v in [
            0x0001_0000i32,
            -0x0001_0000,
            i32::MAX,
            i32::MIN,
            0x4000_0000,
        ] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let wav = read_wav(&simple(fmt_body(1, 1, 8000, 32), &data)).unwrap();
        assert_eq!(wav.samples, vec![1, -1, 32767, -32768, 16384]);
    }

    #[test]
    fn reads_float_32_and_64_clamping_and_zeroing_nan() {
        let values = [0.5f64, -0.5, 1.0, -1.0, 2.0, f64::NAN];
        let expected = vec![16384, -16384, 32767, -32768, 32767, 0];
        let mut d32 = Vec::new();
        let mut d64 = Vec::new();
        for v in values {
            d32.extend_from_slice(&(v as f32).to_le_bytes());
            d64.extend_from_slice(&v.to_le_bytes());
        }
        let w32 = read_wav(&simple(fmt_body(3, 1, 44100, 32), &d32)).unwrap();
        assert_eq!(w32.samples, expected);
        let w64 = read_wav(&simple(fmt_body(3, 1, 44100, 64), &d64)).unwrap();
        assert_eq!(w64.samples, expected);
    }

    #[test]
    fn stereo_is_mixed_down_by_averaging() {
        let mut data = Vec::new();
        for (l, r) in [
            (1000i16, 3000i16),
            (-32768, -32768),
            (32767, -32767),
            (5, 6),
        ] {
            data.extend_from_slice(&l.to_le_bytes());
            data.extend_from_slice(&r.to_le_bytes());
        }
        let wav = read_wav(&simple(fmt_body(1, 2, 22050, 16), &data)).unwrap();
        assert_eq!(wav.sample_rate, 22050);
        assert_eq!(wav.samples, vec![2000, -32768, 0, 6]);
    }

    #[test]
    fn extensible_wrapping_pcm_and_float_is_decoded() {
        let mut data = Vec::new();
        for (l, r) in [(100i16, 300i16), (-400, -600)] {
            data.extend_from_slice(&l.to_le_bytes());
            data.extend_from_slice(&r.to_le_bytes());
        }
        let wav = read_wav(&simple(extensible_body(1, 2, 48000, 16), &data)).unwrap();
        assert_eq!(wav.samples, vec![200, -500]);

        let mut fdata = Vec::new();
        for v in [0.25f32, -0.25] {
            fdata.extend_from_slice(&v.to_le_bytes());
        }
        let wav = read_wav(&simple(extensible_body(3, 1, 96000, 32), &fdata)).unwrap();
        assert_eq!(wav.sample_rate, 96000);
        assert_eq!(wav.samples, vec![8192, -8192]);
    }

    #[test]
    fn extensible_with_foreign_guid_is_unsupported() {
        let mut body = extensible_body(1, 1, 8000, 16);
        let last = body.len() - 1;
        body[last] ^= 0xFF;
        let err = read_wav(&simple(body, &[0, 0])).unwrap_err();
        assert!(matches!(
            err,
            WavError::UnsupportedFormat {
                format_tag: 0xFFFE,
                ..
            }
        ));
        let short = fmt_body(FORMAT_EXTENSIBLE, 1, 8000, 16);
        assert!(matches!(
            read_wav(&simple(short, &[0, 0])),
            Err(WavError::BadFmtChunk)
        ));
    }

    #[test]
    fn reads_g711_alaw_and_ulaw_files() {
        let a = read_wav(&simple(fmt_body(6, 1, 8000, 8), &[0xD5, 0x2A, 0xAA])).unwrap();
        assert_eq!(a.samples, vec![8, -32256, 32256]);
        let u = read_wav(&simple(fmt_body(7, 1, 8000, 8), &[0xFF, 0x00, 0x80])).unwrap();
        assert_eq!(u.samples, vec![0, -32124, 32124]);
    }

    #[test]
    fn list_chunk_with_odd_size_before_data_is_skipped() {
        let data: Vec<u8> = [7i16, -7].iter().flat_map(|s| s.to_le_bytes()).collect();
        let f = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00abcde"),
            chunk(b"fact", &[1, 2, 3]),
            chunk(b"data", &data),
        ]);
        assert_eq!(read_wav(&f).unwrap().samples, vec![7, -7]);
    }

    #[test]
    fn fmt_after_data_is_still_found() {
        let f = riff(&[
            chunk(b"data", &[1, 0, 2, 0]),
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
        ]);
        assert_eq!(read_wav(&f).unwrap().samples, vec![1, 2]);
    }

    #[test]
    fn streamed_data_sizes_take_what_is_there() {
        for declared in [0u32, 0xFFFF_FFFF, 1000] {
            let mut f = simple(fmt_body(1, 1, 8000, 16), &[1, 0, 2, 0, 3, 0, 9]);
            // data size field sits right after "data" at offset 12 + 24 + 4.
            f[40..44].copy_from_slice(&declared.to_le_bytes());
            f.truncate(44 + 7); // drop the pad byte, keep a partial sample
            let wav = read_wav(&f).unwrap();
            assert_eq!(wav.samples, vec![1, 2, 3], "declared size {declared}");
        }
    }

    #[test]
    fn malformed_files_are_refused_with_reasons() {
        let data = [0u8, 0];
        assert!(matches!(
            read_wav(b"RIFX\0\0\0\0WAVE"),
            Err(WavError::NotRiffWave)
        ));
        assert!(matches!(read_wav(b""), Err(WavError::NotRiffWave)));
        assert!(matches!(
            read_wav(&riff(&[chunk(b"data", &data)])),
            Err(WavError::MissingFmt)
        ));
        assert!(matches!(
            read_wav(&riff(&[chunk(b"fmt ", &fmt_body(1, 1, 8000, 16))])),
            Err(WavError::MissingData)
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(2, 1, 8000, 4), &data)),
            Err(WavError::UnsupportedFormat {
                format_tag: 2,
                bits_per_sample: 4
            })
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(3, 1, 8000, 16), &data)),
            Err(WavError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(1, 0, 8000, 16), &data)),
            Err(WavError::NoChannels)
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(1, 1, 0, 16), &data)),
            Err(WavError::BadSampleRate(0))
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(1, 1, 384_001, 16), &data)),
            Err(WavError::BadSampleRate(384_001))
        ));
        assert!(matches!(
            read_wav(&simple(fmt_body(1, 1, 8000, 16)[..14].to_vec(), &data)),
            Err(WavError::BadFmtChunk)
        ));
    }

    #[test]
    fn audio_longer_than_ten_minutes_is_refused() {
        let ok = simple(fmt_body(1, 1, 1, 8), &[0x80; 600]);
        assert_eq!(read_wav(&ok).unwrap().samples.len(), 600);
        let long = simple(fmt_body(1, 1, 1, 8), &[0x80; 601]);
        assert!(matches!(
            read_wav(&long),
            Err(WavError::TooLong {
                frames: 601,
                sample_rate: 1
            })
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_handled() {
        let samples: Vec<i16> = (0..50).map(|i| i * 100 - 2500).collect();
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let f = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            chunk(b"LIST", b"INFOabc"),
            chunk(b"data", &data),
        ]);
        let mut oks = 0;
        for len in 0..=f.len() {
            if let Ok(wav) = read_wav(&f[..len]) {
                assert!(samples.starts_with(&wav.samples), "length {len}");
                oks += 1;
            }
        }
        assert!(oks > 50, "only {oks} truncations decoded");
        assert_eq!(read_wav(&f).unwrap().samples, samples);
    }

    #[test]
    fn corrupted_headers_never_panic() {
        let base = simple(extensible_body(1, 2, 8000, 16), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut state = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut f = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let idx = (state as usize) % f.len();
                f[idx] = (state >> 24) as u8;
            }
            let _ = read_wav(&f);
        }
    }

    #[test]
    fn errors_display_what_is_wrong() {
        let e = WavError::UnsupportedFormat {
            format_tag: 2,
            bits_per_sample: 4,
        };
        assert!(e.to_string().contains("0x0002"));
        assert!(WavError::BadSampleRate(0).to_string().contains("0 Hz"));
        let io = WavError::from(io::Error::new(io::ErrorKind::NotFound, "gone"));
        assert!(std::error::Error::source(&io).is_some());
        assert!(io.to_string().contains("gone"));
    }

    #[test]
    fn resample_with_equal_rates_is_identity() {
        let s: Vec<i16> = (0..100).map(|i| (i * 37 % 200) as i16).collect();
        assert_eq!(resample(&s, 8000, 8000), s);
        assert!(resample(&s, 0, 8000).is_empty());
        assert!(resample(&s, 8000, 0).is_empty());
        assert!(resample(&[], 44100, 8000).is_empty());
    }

    #[test]
    fn resampled_1khz_tone_keeps_frequency_and_level() {
        let amplitude = 10_000.0;
        let expected = (amplitude / 32768.0f64).powi(2);
        for rate in [44_100u32, 48_000, 16_000, 11_025, 8_000 * 3 + 1] {
            let input = sine(1000.0, amplitude, rate, rate as usize);
            let out = resample(&input, rate, 8000);
            let expected_len = (rate as usize * 8000) / rate as usize;
            assert_eq!(out.len(), expected_len, "rate {rate}");
            let middle = &out[200..out.len() - 200];
            let power = goertzel_power(middle, 1000.0, 8000);
            let db = 10.0 * (power / expected).log10();
            assert!(db.abs() < 1.0, "rate {rate}: level off by {db:.2} dB");
            let candidates = [700.0, 900.0, 1000.0, 1100.0, 1500.0];
            assert_eq!(dominant_frequency(middle, 8000, &candidates), Some(1000.0));
        }
    }

    #[test]
    fn upsampled_tone_keeps_frequency_and_level() {
        let input = sine(1000.0, 10_000.0, 8000, 8000);
        let out = resample(&input, 8000, 48000);
        assert_eq!(out.len(), 48000);
        let middle = &out[1000..out.len() - 1000];
        let db = 10.0
            * (goertzel_power(middle, 1000.0, 48000) / (10_000.0f64 / 32768.0).powi(2)).log10();
        assert!(db.abs() < 1.0, "level off by {db:.2} dB");
    }

    #[test]
    fn resampling_6khz_from_48k_to_8k_suppresses_aliasing() {
        let input = sine(6000.0, 20_000.0, 48000, 48000);
        let out = resample(&input, 48000, 8000);
        let middle = &out[200..out.len() - 200];
        let attenuation = 20.0 * (rms(middle) / rms(&input)).log10();
        assert!(attenuation < -30.0, "only {attenuation:.1} dB");
        // Would alias to 2 kHz.
        assert!(goertzel_power(middle, 2000.0, 8000) < 1e-5);
    }

    #[test]
    fn wav_writer_streams_and_patches_sizes_on_finish() {
        let path = temp_path("writer-finish");
        let mut w = WavWriter::create(&path, 8000).unwrap();
        let a: Vec<i16> = (0..1000).map(|i| (i * 7) as i16).collect();
        w.write(&a[..300]).unwrap();
        w.write(&a[300..]).unwrap();
        assert_eq!(w.samples_written(), 1000);
        assert_eq!(w.finish().unwrap(), 1000);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u32_at(&bytes, 4), Some(36 + 2000));
        assert_eq!(u32_at(&bytes, 40), Some(2000));
        let wav = read_wav_file(&path).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert_eq!(wav.samples, a);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn wav_writer_patches_sizes_on_drop() {
        let path = temp_path("writer-drop");
        {
            let mut w = WavWriter::create(&path, 16000).unwrap();
            w.write(&[5; 321]).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u32_at(&bytes, 40), Some(642));
        assert_eq!(u32_at(&bytes, 4), Some(36 + 642));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn read_wav_8k_resamples_file_to_8000_hz() {
        let path = temp_path("read-8k");
        std::fs::write(&path, write_wav(&sine(1000.0, 8000.0, 16000, 16000), 16000)).unwrap();
        let out = read_wav_8k(&path).unwrap();
        assert_eq!(out.len(), 8000);
        assert_eq!(
            dominant_frequency(&out[100..7900], 8000, &[500.0, 1000.0, 2000.0]),
            Some(1000.0)
        );
        let _ = std::fs::remove_file(&path);
        assert!(matches!(read_wav_8k(&path), Err(WavError::Io(_))));
    }
}
