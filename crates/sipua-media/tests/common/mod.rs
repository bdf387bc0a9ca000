//! What the whole-call media tests share: audio ends that play a recording once and keep
//! what they hear, and the two steps of every call set-up.
// each test file uses a part of these
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::Uri;
use sipua::{Invitation, UserAgent};
use sipua_media::audio::{AudioSink, AudioSource, MemorySink, NullSink, Silence, WavSource};
use sipua_media::{AudioIo, AudioIoFactory};

/// What an agent's first call heard.
pub type Heard = Arc<Mutex<Vec<i16>>>;

/// Audio ends for an agent: its first call plays `play` (once; silence without it, and for
/// later calls) and records into memory what comes back.
pub fn play_and_record(play: Option<Vec<i16>>) -> (AudioIoFactory, Heard) {
    let (sink, heard) = MemorySink::new(8000 * 60);
    let sink: Arc<Mutex<Option<Box<dyn AudioSink>>>> = Arc::new(Mutex::new(Some(Box::new(sink))));
    let play = Arc::new(Mutex::new(play));
    let factory: AudioIoFactory = Arc::new(move |_| {
        let sink = sink
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| Box::new(NullSink));
        let source: Box<dyn AudioSource> = match play.lock().unwrap().take() {
            Some(s) => Box::new(WavSource::new(s)),
            None => Box::new(Silence),
        };
        Ok(AudioIo::new(source, sink))
    });
    (factory, heard)
}

/// `user` at the agent's address.
pub fn uri(ua: &UserAgent, user: &str) -> Uri {
    format!("sip:{user}@{}", ua.local_addr().unwrap())
        .parse()
        .unwrap()
}

/// The agent's next incoming call, within 5 s.
pub async fn next(ua: &UserAgent) -> Invitation {
    tokio::time::timeout(Duration::from_secs(5), ua.next_invitation())
        .await
        .expect("the INVITE arrives")
        .unwrap()
}

/// `seconds` of a sine at `freq` Hz sampled at `rate` Hz.
pub fn tone_at(freq: f32, rate: u32, seconds: f32) -> Vec<i16> {
    use sipua_media::audio::Tone;
    let mut t = Tone::new(freq, 8000, rate);
    let mut v = vec![0i16; (rate as f32 * seconds) as usize];
    t.read(&mut v);
    v
}

/// Which of `candidates` is strongest in the middle second of what `heard` holds at `rate`,
/// and that second's level against a sine of amplitude 8000.
pub fn heard_tone(heard: &Heard, rate: u32, candidates: &[f32]) -> (Option<f32>, f64) {
    use sipua_media::analysis;
    let heard = heard.lock().unwrap().clone();
    let second = rate as usize;
    assert!(heard.len() >= 2 * second, "{} samples heard", heard.len());
    let middle = &heard[second / 2..second / 2 + second];
    (
        analysis::dominant_frequency(middle, rate, candidates),
        analysis::rms(middle) / (8000.0 / 2f64.sqrt()),
    )
}
