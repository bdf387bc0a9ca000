//! `sipua demo`: a real call on this machine with nothing to set up. Two user agents start on
//! loopback; Alice calls Bob, who answers and echoes the audio back; Alice plays a built-in
//! melody across the call and records what comes back, sends DTMF digits, hangs up, and the
//! demo prints what happened and how close the recording is to what was sent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::Uri;
use sipua::{Inviter, InviterOptions, Listen, SessionState, UserAgent, UserAgentOptions};
use sipua_media::analysis;
use sipua_media::audio::{demo_melody, AudioSink, MemorySink, Tee, WavRecorder, WavSource};
use sipua_media::{AudioIo, MediaEvent, MediaHandle, RtpAudioFactory, RtpAudioOptions};

/// Arguments of `sipua demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where to write the recording of what came back.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The transport of the call: `udp`, `tcp`, `tls`, `ws` or `wss`.
    #[arg(long, default_value = "udp")]
    transport: String,
    /// The codec Alice offers: `pcmu`, `pcma` or `opus` (Opus needs the `opus` build
    /// feature).
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// The DTMF digits Alice sends after the melody.
    #[arg(long, default_value = "1234#")]
    dtmf: String,
}

/// Runs the demo: exit 0 when the call worked and the audio came back.
pub fn demo(args: &DemoArgs) -> ExitCode {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("sipua-demo.wav"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(run(args, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &DemoArgs, out: &std::path::Path) -> Result<(), String> {
    let transport = args.transport.to_ascii_lowercase();
    let caps = crate::media::capabilities(&args.codec)?;
    println!("sipua demo: Alice calls Bob on 127.0.0.1; Bob echoes the audio back.\n");
    // the certificate's file goes when `_made` is dropped, at the end of the demo
    let (tls, _made) = if matches!(transport.as_str(), "tls" | "wss") {
        crate::serve::server_tls(
            None,
            None,
            None,
            None,
            &["127.0.0.1".parse().expect("an IP")],
        )?
    } else {
        (sipua::TlsOptions::default(), None)
    };

    // Bob: answers every call, echoes the audio back
    let bob = UserAgent::new(UserAgentOptions {
        listen: Listen::parse(&format!("{transport}:127.0.0.1:0")).map_err(|e| e.to_string())?,
        user: "bob".into(),
        accept_any_user: true,
        tls: tls.clone(),
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            audio: Arc::new(|_| Ok(AudioIo::echo())),
            ..Default::default()
        })),
        ..Default::default()
    });
    bob.start()
        .await
        .map_err(|e| format!("Bob cannot start: {e}"))?;
    let bob_addr = bob.local_addr().ok_or("Bob has no address")?;
    println!("bob:   listening on {transport}:{bob_addr}, answering with an echo");

    // Alice: plays the melody, records what comes back
    let melody = demo_melody();
    let (memory, heard) = MemorySink::new(8000 * 30);
    let recorder =
        WavRecorder::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let sink: Arc<Mutex<Option<Box<dyn AudioSink>>>> =
        Arc::new(Mutex::new(Some(Box::new(Tee::new(vec![
            Box::new(recorder),
            Box::new(memory),
        ])))));
    let source = Arc::new(Mutex::new(Some(melody.clone())));
    let alice = UserAgent::new(UserAgentOptions {
        listen: Listen::parse(&format!("{transport}:127.0.0.1:0")).map_err(|e| e.to_string())?,
        user: "alice".into(),
        tls,
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            capabilities: caps,
            audio: Arc::new(move |_| {
                let sink = sink.lock().unwrap_or_else(|e| e.into_inner()).take();
                let samples = source.lock().unwrap_or_else(|e| e.into_inner()).take();
                match (samples, sink) {
                    (Some(s), Some(k)) => Ok(AudioIo::new(Box::new(WavSource::new(s)), k)),
                    // a second session (a fork): silence
                    _ => Ok(AudioIo::silence()),
                }
            }),
            ..Default::default()
        })),
        ..Default::default()
    });
    alice
        .start()
        .await
        .map_err(|e| format!("Alice cannot start: {e}"))?;

    // Bob answers on his own task and listens for DTMF
    let bob_digits = Arc::new(Mutex::new(String::new()));
    let bob_media: Arc<Mutex<Option<Arc<MediaHandle>>>> = Arc::default();
    {
        let (bob, digits, media) = (bob.clone(), bob_digits.clone(), bob_media.clone());
        tokio::spawn(async move {
            while let Some(inv) = bob.next_invitation().await {
                println!(
                    "bob:   INVITE from {}",
                    inv.request()
                        .from()
                        .map_or("?".into(), |f| f.uri.to_string())
                );
                crate::call::print_states("bob  ".into(), &inv);
                if inv.progress(Default::default()).await.is_err() {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if inv.accept(Default::default()).await.is_err() {
                    continue;
                }
                if let Some(m) = inv.media::<MediaHandle>() {
                    *media.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
                    let mut events = m.events();
                    let digits = digits.clone();
                    tokio::spawn(async move {
                        while let Ok(e) = events.recv().await {
                            if let MediaEvent::Dtmf { digit, duration_ms } = e {
                                println!("bob:   DTMF {digit} received ({duration_ms} ms)");
                                digits.lock().unwrap_or_else(|e| e.into_inner()).push(digit);
                            }
                        }
                    });
                }
                inv.terminated().await;
            }
        });
    }

    let target: Uri = match transport.as_str() {
        "udp" => format!("sip:bob@{bob_addr}"),
        "tls" => format!("sips:bob@{bob_addr}"),
        t => format!("sip:bob@{bob_addr};transport={t}"),
    }
    .parse()
    .map_err(|e| format!("{e}"))?;
    println!(
        "alice: calling {target} from {transport}:{}",
        alice.local_addr().ok_or("Alice has no address")?
    );
    let call =
        Inviter::new(&alice, target, InviterOptions::default()).map_err(|e| e.to_string())?;
    crate::call::print_states("alice".into(), &call);
    call.invite(Default::default())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), call.established())
        .await
        .map_err(|_| "the call was not answered within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let media = call
        .media::<MediaHandle>()
        .ok_or("the call has no media handler")?;
    let n = media.negotiated().ok_or("no media was negotiated")?;
    println!(
        "alice: media {} (payload type {}), RTP {} -> {}",
        n.codec.encoding,
        n.codec.payload_type,
        media.local_address(),
        n.remote_address
    );
    println!(
        "alice: playing the built-in melody ({:.1} s) and recording what comes back",
        melody.len() as f64 / 8000.0
    );
    // the melody, then the echo's tail
    let mut events = media.events();
    let played = async {
        while let Ok(e) = events.recv().await {
            if e == MediaEvent::SourceEnded {
                break;
            }
        }
    };
    let limit = Duration::from_secs_f64(melody.len() as f64 / 8000.0 + 5.0);
    let _ = tokio::time::timeout(limit, played).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    if !args.dtmf.is_empty() {
        println!("alice: sending DTMF {}", args.dtmf);
        call.send_dtmf(&args.dtmf)
            .await
            .map_err(|e| format!("DTMF: {e}"))?;
        // each digit takes about 200 ms; wait for Bob to hear them all
        let expect = args.dtmf.chars().filter(|c| *c != ',').count();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3 + expect as u64 / 2);
        while bob_digits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .chars()
            .count()
            < expect
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // the figures settle (they are published every 100 ms)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alice_stats = media.stats();
    let bob_stats = bob_media
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|m| m.stats());
    println!("alice: hanging up");
    let r = call.bye().await.map_err(|e| format!("BYE: {e}"))?;
    println!("alice: BYE answered {} {}", r.status(), r.reason());
    media.closed().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice.stop().await;
    bob.stop().await;

    // the report
    println!(
        "\nmedia        {:<48}",
        "codec, packets, loss, jitter, round trip"
    );
    println!("  alice      {}", crate::media::line(&alice_stats));
    if let Some(b) = &bob_stats {
        println!("  bob        {}", crate::media::line(b));
    }
    let digits = bob_digits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let want: String = args.dtmf.chars().filter(|c| *c != ',').collect();
    println!("dtmf         sent {want:?}, Bob received {digits:?}");
    let heard = heard.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (lag, corr) = analysis::best_alignment(&melody, &heard, 8000);
    let snr = analysis::snr_db(&melody, &heard);
    println!(
        "recording    {} ({:.1} s, 8 kHz mono, 16-bit)",
        out.display(),
        heard.len() as f64 / 8000.0
    );
    println!(
        "             the melody came back after {} ms: correlation {corr:.3}, SNR {snr:.1} dB",
        lag / 8
    );
    let ok_audio = corr > 0.9;
    let ok_dtmf = digits == want;
    if ok_audio && ok_dtmf && call.state() == SessionState::Terminated {
        println!("\nthe call worked: signalling, RTP both ways, DTMF and the recording.");
        Ok(())
    } else {
        Err(format!(
            "the call did not work as it should (audio match {ok_audio}, DTMF {ok_dtmf})"
        ))
    }
}
