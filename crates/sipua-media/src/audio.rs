//! Sources and sinks of mono 16-bit audio frames (20 ms each: 160 samples at the default
//! 8 kHz, the RTP G.711 packetisation of RFC 3551; more at a wideband call's rate, see
//! [`crate::resample`]), plus the demo's built-in melody. Tones are generated as phase-continuous sines; recordings use the
//! RIFF WAVE writer in `crate::wav`.

use std::collections::VecDeque;
use std::f64::consts::PI;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::wav::WavWriter;

/// The default sample rate of the frames exchanged by sources and sinks (G.711 over RTP).
pub const SAMPLE_RATE: u32 = 8000;

/// Something that produces audio one frame at a time (a file, a tone, the far end).
pub trait AudioSource: Send {
    /// Fills `frame`; returns false once the source has ended (the frame is then silence).
    /// A frame in which the source ends part-way is padded with silence and returns true.
    fn read(&mut self, frame: &mut [i16]) -> bool;

    /// Like [`read`](Self::read) but returns how many leading samples came from the
    /// source (the rest are silence), so [`Sequence`] can join sources without gaps.
    fn fill(&mut self, frame: &mut [i16]) -> usize {
        if self.read(frame) {
            frame.len()
        } else {
            0
        }
    }

    /// Ends this source after `samples` samples.
    fn limit(self, samples: usize) -> Limit<Self>
    where
        Self: Sized,
    {
        Limit::new(self, samples)
    }
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        (**self).read(frame)
    }

    fn fill(&mut self, frame: &mut [i16]) -> usize {
        (**self).fill(frame)
    }
}

/// Something that consumes audio one frame at a time (a recorder, the network).
pub trait AudioSink: Send {
    /// Consumes one frame of samples.
    fn write(&mut self, frame: &[i16]);

    /// Called once when no more frames will come, e.g. to close a file.
    fn finish(&mut self) {}
}

impl<S: AudioSink + ?Sized> AudioSink for Box<S> {
    fn write(&mut self, frame: &[i16]) {
        (**self).write(frame)
    }

    fn finish(&mut self) {
        (**self).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain sample data; keep using it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A source of digital silence that never ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Silence;

impl AudioSource for Silence {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        frame.fill(0);
        true
    }
}

/// Adapter that ends its inner source after a fixed number of samples.
#[derive(Debug, Clone)]
pub struct Limit<S> {
    inner: S,
    remaining: usize,
}

impl<S: AudioSource> Limit<S> {
    /// Wraps `inner` so that it ends after `samples` samples (or earlier if it does).
    pub fn new(inner: S, samples: usize) -> Self {
        Limit {
            inner,
            remaining: samples,
        }
    }
}

impl<S: AudioSource> AudioSource for Limit<S> {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        if frame.is_empty() {
            return self.remaining > 0;
        }
        self.fill(frame) > 0
    }

    fn fill(&mut self, frame: &mut [i16]) -> usize {
        let want = self.remaining.min(frame.len());
        let (head, tail) = frame.split_at_mut(want);
        tail.fill(0);
        if want == 0 {
            return 0;
        }
        let got = self.inner.fill(head).min(want);
        if let Some(rest) = head.get_mut(got..) {
            rest.fill(0);
        }
        self.remaining = if got < want { 0 } else { self.remaining - want };
        got
    }
}

/// A phase-continuous sine tone that never ends (use [`Tone::with_duration`] or
/// [`AudioSource::limit`] to bound it).
#[derive(Debug, Clone)]
pub struct Tone {
    amplitude: f64,
    /// Phase advance per sample, in cycles.
    step: f64,
    /// Current phase in cycles, kept in 0..1.
    phase: f64,
}

impl Tone {
    /// A sine of `frequency_hz` with peak `amplitude`, sampled at `sample_rate`
    /// (a zero rate or non-finite frequency gives silence).
    pub fn new(frequency_hz: f32, amplitude: i16, sample_rate: u32) -> Self {
        let step = if sample_rate == 0 || !frequency_hz.is_finite() {
            0.0
        } else {
            (f64::from(frequency_hz) / f64::from(sample_rate)).rem_euclid(1.0)
        };
        Tone {
            amplitude: f64::from(amplitude),
            step,
            phase: 0.0,
        }
    }

    /// The same tone, ending after `samples` samples.
    pub fn with_duration(
        frequency_hz: f32,
        amplitude: i16,
        sample_rate: u32,
        samples: usize,
    ) -> Limit<Tone> {
        Limit::new(Tone::new(frequency_hz, amplitude, sample_rate), samples)
    }
}

impl AudioSource for Tone {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        for s in frame.iter_mut() {
            let v = self.amplitude * (2.0 * PI * self.phase).sin();
            *s = v.round().clamp(-32768.0, 32767.0) as i16;
            self.phase = (self.phase + self.step).fract();
        }
        true
    }
}

/// Plays a buffer of samples once (then ends), or forever with `.looping(true)`.
#[derive(Debug, Clone, Default)]
pub struct WavSource {
    samples: Vec<i16>,
    position: usize,
    looping: bool,
}

impl WavSource {
    /// A source that plays `samples` once from the start.
    pub fn new(samples: Vec<i16>) -> Self {
        WavSource {
            samples,
            position: 0,
            looping: false,
        }
    }

    /// Whether to restart from the beginning instead of ending (an empty buffer still ends).
    pub fn looping(mut self, looping: bool) -> Self {
        self.looping = looping;
        self
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        if frame.is_empty() {
            return !self.samples.is_empty()
                && (self.looping || self.position < self.samples.len());
        }
        self.fill(frame) > 0
    }

    fn fill(&mut self, frame: &mut [i16]) -> usize {
        let mut filled = 0;
        while filled < frame.len() {
            let available = self.samples.get(self.position..).unwrap_or_default();
            if available.is_empty() {
                if self.looping && !self.samples.is_empty() {
                    self.position = 0;
                    continue;
                }
                break;
            }
            let n = available.len().min(frame.len() - filled);
            if let (Some(dst), Some(src)) = (frame.get_mut(filled..filled + n), available.get(..n))
            {
                dst.copy_from_slice(src);
            }
            filled += n;
            self.position += n;
        }
        if let Some(rest) = frame.get_mut(filled..) {
            rest.fill(0);
        }
        filled
    }
}

/// Plays sources one after another without gaps; ends after the last one ends.
#[derive(Default)]
pub struct Sequence {
    sources: Vec<Box<dyn AudioSource>>,
    current: usize,
}

impl Sequence {
    /// A sequence playing `sources` in order.
    pub fn new(sources: Vec<Box<dyn AudioSource>>) -> Self {
        Sequence {
            sources,
            current: 0,
        }
    }

    /// Appends `source` to the end of the sequence (builder style).
    pub fn then(mut self, source: impl AudioSource + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("sources", &self.sources.len())
            .field("current", &self.current)
            .finish()
    }
}

impl AudioSource for Sequence {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        if frame.is_empty() {
            return self.current < self.sources.len();
        }
        self.fill(frame) > 0
    }

    fn fill(&mut self, frame: &mut [i16]) -> usize {
        let mut filled = 0;
        while filled < frame.len() {
            let Some(source) = self.sources.get_mut(self.current) else {
                break;
            };
            let Some(slice) = frame.get_mut(filled..) else {
                break;
            };
            let want = slice.len();
            let got = source.fill(slice).min(want);
            filled += got;
            if got < want {
                // This source has ended; free it and move on.
                if let Some(done) = self.sources.get_mut(self.current) {
                    *done = Box::new(Silence.limit(0));
                }
                self.current += 1;
            }
        }
        if let Some(rest) = frame.get_mut(filled..) {
            rest.fill(0);
        }
        filled
    }
}

/// Creates a loopback: samples written to the sink come out of the source, in order.
/// At most `max_samples` are buffered; the oldest are dropped beyond that.
pub fn echo_pair(max_samples: usize) -> (EchoSink, EchoSource) {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    (
        EchoSink {
            queue: Arc::clone(&queue),
            max_samples,
        },
        EchoSource { queue },
    )
}

/// Writing half of [`echo_pair`].
#[derive(Debug)]
pub struct EchoSink {
    queue: Arc<Mutex<VecDeque<i16>>>,
    max_samples: usize,
}

impl AudioSink for EchoSink {
    fn write(&mut self, frame: &[i16]) {
        let mut q = lock(&self.queue);
        let keep_new = frame.len().min(self.max_samples);
        let new = frame.get(frame.len() - keep_new..).unwrap_or_default();
        q.extend(new.iter().copied());
        let excess = q.len().saturating_sub(self.max_samples);
        q.drain(..excess);
    }
}

/// Reading half of [`echo_pair`]: never ends, and plays silence until a whole
/// frame's worth of samples is queued.
#[derive(Debug)]
pub struct EchoSource {
    queue: Arc<Mutex<VecDeque<i16>>>,
}

impl AudioSource for EchoSource {
    fn read(&mut self, frame: &mut [i16]) -> bool {
        let mut q = lock(&self.queue);
        let n = frame.len();
        if q.len() >= n {
            for (dst, src) in frame.iter_mut().zip(q.drain(..n)) {
                *dst = src;
            }
        } else {
            frame.fill(0);
        }
        true
    }
}

/// A sink that discards everything.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NullSink;

impl AudioSink for NullSink {
    fn write(&mut self, _frame: &[i16]) {}
}

/// Records frames to a 16-bit mono WAV file (8 kHz unless made with
/// [`WavRecorder::create_at`]). Write errors are kept (see
/// [`WavRecorder::error`]) instead of interrupting the call; later frames are dropped.
#[derive(Debug)]
pub struct WavRecorder {
    writer: Option<WavWriter>,
    samples: u64,
    error: Option<io::Error>,
}

impl WavRecorder {
    /// Creates (or truncates) the 8 kHz WAV file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        WavRecorder::create_at(path, SAMPLE_RATE)
    }

    /// Creates (or truncates) the WAV file at `path`, its header saying `sample_rate` (the
    /// call's audio rate, so that a wideband call's recording plays at the right speed).
    pub fn create_at(path: &Path, sample_rate: u32) -> io::Result<Self> {
        Ok(WavRecorder {
            writer: Some(WavWriter::create(path, sample_rate)?),
            samples: 0,
            error: None,
        })
    }

    /// The first error met while writing or closing, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Samples successfully handed to the file so far.
    pub fn samples_written(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.samples, WavWriter::samples_written)
    }
}

impl AudioSink for WavRecorder {
    fn write(&mut self, frame: &[i16]) {
        if self.error.is_some() {
            return;
        }
        if let Some(writer) = self.writer.as_mut() {
            if let Err(e) = writer.write(frame) {
                self.error = Some(e);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.samples = writer.samples_written();
            if let Err(e) = writer.finish() {
                self.error.get_or_insert(e);
            }
        }
    }
}

/// Keeps the first `max` samples written in memory, shared with a handle so a
/// test (or a report) can inspect them while the sink is owned elsewhere.
#[derive(Debug)]
pub struct MemorySink {
    buffer: Arc<Mutex<Vec<i16>>>,
    max: usize,
}

impl MemorySink {
    /// Returns the sink and the shared buffer it appends to (capped at `max` samples).
    pub fn new(max: usize) -> (MemorySink, Arc<Mutex<Vec<i16>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (
            MemorySink {
                buffer: Arc::clone(&buffer),
                max,
            },
            buffer,
        )
    }
}

impl AudioSink for MemorySink {
    fn write(&mut self, frame: &[i16]) {
        let mut buf = lock(&self.buffer);
        let room = self.max.saturating_sub(buf.len());
        buf.extend_from_slice(frame.get(..room.min(frame.len())).unwrap_or_default());
    }
}

/// Pitches of the demo melody's notes, in order (C5 E5 G5 C6 A5).
pub const DEMO_MELODY_FREQUENCIES_HZ: [f32; 5] = [523.25, 659.25, 783.99, 1046.5, 880.0];
/// Length of each demo note in samples at 8 kHz (360 ms).
pub const DEMO_NOTE_SAMPLES: usize = 2880;
/// Silence after each demo note in samples at 8 kHz (40 ms).
pub const DEMO_GAP_SAMPLES: usize = 320;
/// Peak amplitude of the demo notes: -12 dBFS.
const DEMO_AMPLITUDE: f64 = 8231.0;
/// Raised-cosine fade in and out of each note (10 ms), to avoid clicks.
const DEMO_FADE_SAMPLES: usize = 80;

/// Writes every frame to several sinks, e.g. a recorder and an echo.
pub struct Tee {
    sinks: Vec<Box<dyn AudioSink>>,
}

impl Tee {
    /// A sink that feeds all of `sinks`.
    pub fn new(sinks: Vec<Box<dyn AudioSink>>) -> Tee {
        Tee { sinks }
    }
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl AudioSink for Tee {
    fn write(&mut self, frame: &[i16]) {
        for s in &mut self.sinks {
            s.write(frame);
        }
    }

    fn finish(&mut self) {
        for s in &mut self.sinks {
            s.finish();
        }
    }
}

/// Two seconds of 8 kHz audio generated in code: five notes at -12 dBFS with
/// short fades, each followed by a short gap. The built-in sound of `sipua demo`.
pub fn demo_melody() -> Vec<i16> {
    let mut out = Vec::with_capacity(
        DEMO_MELODY_FREQUENCIES_HZ.len() * (DEMO_NOTE_SAMPLES + DEMO_GAP_SAMPLES),
    );
    for &f in &DEMO_MELODY_FREQUENCIES_HZ {
        let step = f64::from(f) / f64::from(SAMPLE_RATE);
        for i in 0..DEMO_NOTE_SAMPLES {
            let edge = i.min(DEMO_NOTE_SAMPLES - 1 - i);
            let envelope = if edge < DEMO_FADE_SAMPLES {
                0.5 - 0.5 * (PI * edge as f64 / DEMO_FADE_SAMPLES as f64).cos()
            } else {
                1.0
            };
            let v = DEMO_AMPLITUDE * envelope * (2.0 * PI * step * i as f64).sin();
            out.push(v.round() as i16);
        }
        out.resize(out.len() + DEMO_GAP_SAMPLES, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dbfs, dominant_frequency, goertzel_power};

    fn read_all(
        source: &mut dyn AudioSource,
        frame_len: usize,
        frames: usize,
    ) -> (Vec<i16>, Vec<bool>) {
        let mut samples = Vec::new();
        let mut results = Vec::new();
        let mut frame = vec![1234i16; frame_len];
        for _ in 0..frames {
            results.push(source.read(&mut frame));
            samples.extend_from_slice(&frame);
        }
        (samples, results)
    }

    #[test]
    fn silence_never_ends_and_is_zero() {
        let (samples, results) = read_all(&mut Silence, 160, 5);
        assert!(results.iter().all(|&r| r));
        assert!(samples.iter().all(|&s| s == 0));
    }

    #[test]
    fn tone_is_phase_continuous_across_frames() {
        let mut framed = Tone::new(1000.0, 10_000, 8000);
        let (a, _) = read_all(&mut framed, 160, 3);
        let mut whole = Tone::new(1000.0, 10_000, 8000);
        let mut b = vec![0i16; 480];
        assert!(whole.read(&mut b));
        assert_eq!(a, b);
        assert_eq!(&a[..4], &[0, 7071, 10_000, 7071]);
        let p = goertzel_power(&a, 1000.0, 8000);
        assert!(
            (p - (10_000.0f64 / 32768.0).powi(2)).abs() < 1e-3,
            "power {p}"
        );
    }

    #[test]
    fn tone_with_duration_ends_mid_frame_then_reports_end() {
        let mut tone = Tone::with_duration(500.0, 5000, 8000, 400);
        let (samples, results) = read_all(&mut tone, 160, 4);
        assert_eq!(results, vec![true, true, true, false]);
        assert!(samples[..400].iter().any(|&s| s != 0));
        assert!(samples[400..].iter().all(|&s| s == 0));
        assert_eq!(samples[2], 3536); // 5000 · sin(π/4)
    }

    #[test]
    fn wav_source_plays_once_then_ends() {
        let mut src = WavSource::new(vec![1, 2, 3, 4, 5]);
        let (samples, results) = read_all(&mut src, 3, 3);
        assert_eq!(results, vec![true, true, false]);
        assert_eq!(samples, vec![1, 2, 3, 4, 5, 0, 0, 0, 0]);
    }

    #[test]
    fn looping_wav_source_wraps_around() {
        let mut src = WavSource::new(vec![1, 2, 3]).looping(true);
        let (samples, results) = read_all(&mut src, 4, 3);
        assert!(results.iter().all(|&r| r));
        assert_eq!(samples, vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
        let mut empty = WavSource::new(Vec::new()).looping(true);
        assert!(!empty.read(&mut [0; 4]));
    }

    #[test]
    fn sequence_joins_sources_without_gaps_and_then_ends() {
        let mut seq = Sequence::new(vec![Box::new(WavSource::new(vec![1, 2, 3]))])
            .then(WavSource::new(vec![]))
            .then(WavSource::new(vec![4, 5]))
            .then(WavSource::new(vec![6]));
        let (samples, results) = read_all(&mut seq, 4, 3);
        assert_eq!(results, vec![true, true, false]);
        assert_eq!(samples, vec![1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn sequence_of_tones_and_silences_has_exact_lengths() {
        let mut seq = Sequence::default()
            .then(Tone::with_duration(440.0, 8000, 8000, 300))
            .then(Silence.limit(100))
            .then(Tone::with_duration(880.0, 8000, 8000, 300));
        let (samples, results) = read_all(&mut seq, 160, 6);
        // 700 samples: the fifth frame still carries 60 of them.
        assert_eq!(results, vec![true, true, true, true, true, false]);
        assert!(samples[300..400].iter().all(|&s| s == 0));
        assert!(samples[400..700].iter().any(|&s| s != 0));
        assert!(samples[700..].iter().all(|&s| s == 0));
        assert_eq!(
            dominant_frequency(&samples[..300], 8000, &[440.0, 880.0]),
            Some(440.0)
        );
        assert_eq!(
            dominant_frequency(&samples[400..700], 8000, &[440.0, 880.0]),
            Some(880.0)
        );
    }

    /// A source using only the required method, to exercise the default `fill`.
    struct Counter(i16);

    impl AudioSource for Counter {
        fn read(&mut self, frame: &mut [i16]) -> bool {
            for s in frame.iter_mut() {
                self.0 += 1;
                *s = self.0;
            }
            true
        }
    }

    #[test]
    fn limit_cuts_a_foreign_source_exactly() {
        let mut src = Counter(0).limit(5);
        let (samples, results) = read_all(&mut src, 2, 4);
        assert_eq!(results, vec![true, true, true, false]);
        assert_eq!(samples, vec![1, 2, 3, 4, 5, 0, 0, 0]);
    }

    #[test]
    fn echo_source_plays_back_what_the_sink_received() {
        let (mut sink, mut source) = echo_pair(1000);
        let mut frame = [7i16; 160];
        sink.write(&(0..100).collect::<Vec<i16>>());
        assert!(source.read(&mut frame));
        assert!(frame.iter().all(|&s| s == 0), "short queue gives silence");
        sink.write(&(100..200).collect::<Vec<i16>>());
        assert!(source.read(&mut frame));
        assert_eq!(frame.to_vec(), (0..160).collect::<Vec<i16>>());
        assert!(source.read(&mut frame));
        assert!(frame.iter().all(|&s| s == 0));
    }

    #[test]
    fn echo_queue_drops_oldest_samples_beyond_bound() {
        let (mut sink, mut source) = echo_pair(300);
        sink.write(&(0..200).collect::<Vec<i16>>());
        sink.write(&(200..400).collect::<Vec<i16>>());
        let mut frame = [0i16; 300];
        assert!(source.read(&mut frame));
        assert_eq!(frame.to_vec(), (100..400).collect::<Vec<i16>>());
        sink.write(&(0..1000).collect::<Vec<i16>>());
        assert!(source.read(&mut frame));
        assert_eq!(frame.to_vec(), (700..1000).collect::<Vec<i16>>());
    }

    #[test]
    fn memory_sink_keeps_samples_up_to_its_bound() {
        let (mut sink, handle) = MemorySink::new(250);
        sink.write(&[1; 160]);
        sink.write(&[2; 160]);
        sink.write(&[3; 160]);
        sink.finish();
        let buf = handle.lock().unwrap();
        assert_eq!(buf.len(), 250);
        assert!(buf[..160].iter().all(|&s| s == 1));
        assert!(buf[160..].iter().all(|&s| s == 2));
    }

    #[test]
    fn null_sink_accepts_anything() {
        let mut sink: Box<dyn AudioSink> = Box::new(NullSink);
        sink.write(&[1, 2, 3]);
        sink.finish();
    }

    #[test]
    fn wav_recorder_writes_a_readable_8khz_file() {
        let path =
            std::env::temp_dir().join(format!("media-audio-{}-recorder.wav", std::process::id()));
        let mut rec = WavRecorder::create(&path).unwrap();
        let mut tone = Tone::new(1000.0, 8000, 8000);
        let mut frame = [0i16; 160];
        let mut sent = Vec::new();
        for _ in 0..10 {
            tone.read(&mut frame);
            rec.write(&frame);
            sent.extend_from_slice(&frame);
        }
        rec.finish();
        assert!(rec.error().is_none());
        assert_eq!(rec.samples_written(), 1600);
        rec.write(&frame); // after finish: ignored, no panic
        let wav = crate::wav::read_wav_file(&path).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert_eq!(wav.samples, sent);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn wav_recorder_reports_create_failure() {
        let path = std::env::temp_dir()
            .join(format!("media-audio-{}-no-such-dir", std::process::id()))
            .join("x.wav");
        assert!(WavRecorder::create(&path).is_err());
    }

    #[test]
    fn demo_melody_is_two_seconds_of_distinct_notes_at_minus_12_dbfs() {
        let m = demo_melody();
        assert_eq!(m.len(), 16_000);
        let note_len = DEMO_NOTE_SAMPLES + DEMO_GAP_SAMPLES;
        for (i, &f) in DEMO_MELODY_FREQUENCIES_HZ.iter().enumerate() {
            let note = &m[i * note_len..i * note_len + DEMO_NOTE_SAMPLES];
            assert_eq!(
                dominant_frequency(note, 8000, &DEMO_MELODY_FREQUENCIES_HZ),
                Some(f),
                "note {i}"
            );
            let body = &note[DEMO_FADE_SAMPLES..DEMO_NOTE_SAMPLES - DEMO_FADE_SAMPLES];
            assert!(
                (dbfs(body) + 12.0).abs() < 0.1,
                "note {i}: {} dBFS",
                dbfs(body)
            );
            assert!(
                note[0].abs() < 50 && note[DEMO_NOTE_SAMPLES - 1].abs() < 50,
                "fades"
            );
            let gap = &m[i * note_len + DEMO_NOTE_SAMPLES..(i + 1) * note_len];
            assert!(gap.iter().all(|&s| s == 0));
        }
    }
}
