//! A tiny IVR: answers every call on UDP, plays a prompt (a WAV file given as the first
//! argument, or a 440 Hz tone), records each caller into `<call>.wav`, and prints the DTMF
//! digits callers press.
//!
//! ```sh
//! cargo run -p sipua-media --example ivr -- prompt.wav
//! sipua call sip:ivr@127.0.0.1:5080 --dtmf 42 --duration 3     # in another terminal
//! ```

use std::sync::Arc;

use sipua::{Listen, SdhError, UserAgent, UserAgentOptions};
use sipua_media::audio::{AudioSource, Tone, WavRecorder, WavSource};
use sipua_media::{AudioIo, MediaEvent, RtpAudioFactory, RtpAudioOptions, SessionAudio};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompt = match std::env::args().nth(1) {
        Some(path) => Some(Arc::new(sipua_media::wav::read_wav_8k(path.as_ref())?)),
        None => None,
    };
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:5080".parse()?),
        accept_any_user: true,
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            audio: Arc::new(move |ctx| {
                let source: Box<dyn AudioSource> = match &prompt {
                    Some(p) => Box::new(WavSource::new(p.as_ref().clone())),
                    None => Box::new(Tone::new(440.0, 8000, 8000)),
                };
                let name: String = ctx
                    .id
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let rec = WavRecorder::create(format!("{name}.wav").as_ref())
                    .map_err(|e| SdhError::new(e.to_string()))?;
                Ok(AudioIo::new(source, Box::new(rec)))
            }),
            ..Default::default()
        })),
        ..Default::default()
    });
    ua.start().await?;
    println!("answering on udp:{}", ua.local_addr().ok_or("no address")?);
    while let Some(call) = ua.next_invitation().await {
        tokio::spawn(async move {
            if call.accept(Default::default()).await.is_err() {
                return;
            }
            let Some(media) = call.audio() else {
                return;
            };
            let mut events = media.events();
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(MediaEvent::Dtmf { digit, .. }) => println!("pressed {digit}"),
                        Ok(_) => {}
                        Err(_) => break,
                    },
                    _ = call.terminated() => break,
                }
            }
            println!(
                "call ended: {}",
                sipua::message::Uri::to_string(call.request().uri())
            );
        });
    }
    Ok(())
}
