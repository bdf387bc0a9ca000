//! The commands with real audio, as a user runs them: `sipua demo` on its own, and
//! `sipua call --play --record` against `sipua serve --echo` (the recording must be the WAV
//! that was played, after its trip through G.711 both ways) and `serve --play --record-dir`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sipua_media::{analysis, audio, wav};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sipua() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
}

/// `sipua serve` with `args` on a free UDP port; returns it and its port.
fn serve(args: &[&str]) -> (Killed, u16) {
    for _ in 0..5 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Killed(
            sipua()
                .args([
                    "serve",
                    "--listen",
                    &format!("udp:127.0.0.1:{port}"),
                    "--lifetime",
                    "30",
                ])
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let up = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("listening on"));
        std::thread::spawn(move || for _ in lines {});
        if up {
            return (child, port);
        }
    }
    panic!("sipua serve did not start");
}

/// Writes `samples` (8 kHz) as a 44.1 kHz stereo WAV, so that the reader and the resampler
/// are part of the trip.
fn write_cd_wav(path: &Path, samples: &[i16]) {
    let up = wav::resample(samples, 8000, 44100);
    let mut stereo = Vec::with_capacity(up.len() * 2);
    for s in up {
        stereo.extend_from_slice(&[s, s]);
    }
    let mut bytes = wav::write_wav(&stereo, 44100);
    // patch the header to two channels: block align 4, byte rate 4 × rate
    bytes[22] = 2;
    bytes[28..32].copy_from_slice(&(44100u32 * 4).to_le_bytes());
    bytes[32] = 4;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn demo_makes_a_call_with_audio_and_dtmf_and_says_so() {
    let dir = tempdir("demo");
    let out = dir.join("demo.wav");
    let o = sipua()
        .args(["demo", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("alice: Established"), "{text}");
    assert!(text.contains("Bob received \"1234#\""), "{text}");
    assert!(text.contains("the call worked"), "{text}");
    // the recording on disk holds the melody
    let rec = wav::read_wav_file(&out).unwrap();
    assert_eq!(rec.sample_rate, 8000);
    let (_, corr) = analysis::best_alignment(&audio::demo_melody(), &rec.samples, 8000);
    assert!(corr > 0.98, "correlation {corr}");
}

#[test]
fn call_plays_a_wav_to_an_echo_and_records_it_back() {
    let dir = tempdir("echo");
    let (play, rec) = (dir.join("play.wav"), dir.join("rec.wav"));
    let melody = audio::demo_melody();
    write_cd_wav(&play, &melody);
    let (_serve, port) = serve(&["--echo"]);
    let o = sipua()
        .args([
            "call",
            &format!("sip:echo@127.0.0.1:{port}"),
            "--play",
            play.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
            "--duration",
            "3",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // the live line, once a second
    assert!(text.contains("call: Established PCMU sent"), "{text}");
    let heard = wav::read_wav_file(&rec).unwrap();
    let (lag, corr) = analysis::best_alignment(&melody, &heard.samples, 8000);
    let snr = analysis::snr_db(&melody, &heard.samples);
    assert!(corr > 0.98, "correlation {corr}");
    assert!(snr > 25.0, "SNR {snr} dB");
    assert!(lag < 4000, "the echo came back after {lag} samples");
}

#[test]
fn serve_plays_its_wav_and_records_each_call() {
    let dir = tempdir("serve");
    let (play, recs) = (dir.join("prompt.wav"), dir.join("calls"));
    let tone = {
        use audio::AudioSource;
        let mut t = audio::Tone::new(1000.0, 8000, 8000);
        let mut v = vec![0i16; 16000];
        t.read(&mut v);
        v
    };
    std::fs::write(&play, wav::write_wav(&tone, 8000)).unwrap();
    let (_serve, port) = serve(&[
        "--play",
        play.to_str().unwrap(),
        "--record-dir",
        recs.to_str().unwrap(),
    ]);
    let rec = dir.join("heard.wav");
    let o = sipua()
        .args([
            "call",
            &format!("sip:ivr@127.0.0.1:{port}"),
            "--record",
            rec.to_str().unwrap(),
            "--dtmf",
            "42",
            "--duration",
            "2.5",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // the caller heard the server's prompt
    let heard = wav::read_wav_file(&rec).unwrap().samples;
    assert_eq!(
        analysis::dominant_frequency(&heard, 8000, &[440.0, 1000.0, 2000.0]),
        Some(1000.0)
    );
    // the server wrote one recording for the call
    std::thread::sleep(std::time::Duration::from_millis(300));
    let files: Vec<_> = std::fs::read_dir(&recs).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sipua-cli-media-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
