//! What the whole-call media tests share: audio ends that play a recording once and keep
//! what they hear, and the two steps of every call set-up.

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
