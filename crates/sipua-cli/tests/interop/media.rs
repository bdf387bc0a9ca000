//! Audio interop on loopback: sipua's RTP audio and RFC 4733 DTMF against baresip (Debian
//! `baresip`), SIPp (Debian `sip-tester`) and PJSIP (PyPI `pjsua2-python`, driven by
//! `pjsua/peer.py`). Every test checks the audio itself, in WAV files recorded at both ends:
//! a played tone must be the dominant frequency of the other side's recording, or a played
//! melody must correlate with it. A missing peer is a failure, not a skip: `scripts/test`
//! installs them all.
//!
//! baresip plays a WAV through its `aufile` source and records what it receives through the
//! `sndfile` filter (`baresip/config-media`); SIPp's built-in `uas` echoes our RTP
//! (`-rtp_echo`); PJSIP plays and records WAVs on its null sound device.

use crate::common::*;
use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sipua_media::audio::{self, AudioSource};
use sipua_media::{analysis, wav};

const CONFIG: &str = include_str!("baresip/config-media");
const ACCOUNTS: &str = include_str!("baresip/accounts");

pub(crate) const RATE: u32 = 8000;
/// The frequencies a recording is checked against: the two test tones and a few others.
const CANDIDATES: [f32; 7] = [300.0, 440.0, 1000.0, 1500.0, 2000.0, 5000.0, 6000.0];

// ---------------------------------------------------------------------------------------------
// Processes, ports, directories

/// A UDP port whose port + 2 is free too: SIPp binds both (audio and video echo).
fn free_sipp_media_port() -> u16 {
    for _ in 0..100 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        if port < u16::MAX - 2 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port pair for SIPp's media on 127.0.0.1");
}

/// A fresh directory for one test, removed when the test passes and kept (its path is in the
/// failure messages) when it fails.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sipua-interop-media-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn sipua() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
}

/// `sipua serve` on 127.0.0.1:`port` with `extra` arguments, for at most 60 s.
fn serve(port: u16, extra: &[&str]) -> (Killed, Output) {
    let (child, out) = spawn(
        sipua()
            .args([
                "serve",
                "--listen",
                &format!("udp:127.0.0.1:{port}"),
                "--lifetime",
                "60",
            ])
            .args(extra),
    );
    assert!(
        out.wait_for("listening on", 10.0),
        "sipua serve did not start:\n{}",
        out.text()
    );
    (child, out)
}

/// Runs `sipua call` with `args` to its end (at most 30 s); returns whether it exited 0, and
/// what it printed.
fn call(args: &[&str]) -> (bool, String) {
    let (mut child, out) = spawn(sipua().arg("call").args(args));
    let status = wait_exit(&mut child, 30.0);
    (status.is_some_and(|s| s.success()), out.text())
}

/// The digits of the `DTMF d (n ms)` lines `sipua serve` printed, in order.
pub(crate) fn sipua_dtmf(printed: &str) -> String {
    printed
        .lines()
        .filter_map(|l| l.split_once(": DTMF ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.chars().next())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Audio

/// `secs` seconds of a sine at `freq` Hz, at about -12 dBFS, 8 kHz.
pub(crate) fn tone(freq: f32, secs: f64) -> Vec<i16> {
    tone_at(freq, secs, RATE)
}

/// [`tone`] sampled at `rate` Hz.
pub(crate) fn tone_at(freq: f32, secs: f64, rate: u32) -> Vec<i16> {
    let mut samples = vec![0i16; (secs * f64::from(rate)) as usize];
    audio::Tone::new(freq, 8000, rate).read(&mut samples);
    samples
}

pub(crate) fn write_wav(path: &Path, samples: &[i16]) {
    write_wav_at(path, samples, RATE)
}

/// An 8 kHz recording's samples.
pub(crate) fn read_wav(path: &Path) -> Vec<i16> {
    read_wav_at(path, RATE)
}

/// A WAV file of `samples` at `rate` Hz.
pub(crate) fn write_wav_at(path: &Path, samples: &[i16], rate: u32) {
    std::fs::write(path, wav::write_wav(samples, rate)).unwrap();
}

/// A recording's samples, checking that its header says `rate` Hz.
pub(crate) fn read_wav_at(path: &Path, rate: u32) -> Vec<i16> {
    let w = wav::read_wav_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(w.sample_rate, rate, "{}", path.display());
    w.samples
}

/// How much of a recording is the tone `freq`: over its 20 ms blocks (a packet's worth; short
/// enough that a gap or a concealed packet spoils few of them) that are not silent (RMS above
/// about -40 dBFS), the count of such blocks, the share of them in which `freq` holds at least
/// 70 % of the power, and over all of them the tone's share of the power (the square of the
/// recording's correlation with the tone).
fn tone_blocks(samples: &[i16], freq: f32, rate: u32) -> (usize, f64, f64) {
    let blocks: Vec<&[i16]> = samples
        .chunks_exact(rate as usize / 50)
        .filter(|b| analysis::rms(b) > 300.0)
        .collect();
    let (mut toned, mut tone_power, mut total_power) = (0, 0.0, 0.0);
    for b in &blocks {
        // a sine of amplitude A reads (A / 32768)² in Goertzel power and has RMS² A² / 2
        let power = analysis::goertzel_power(b, freq, rate) * 32768.0 * 32768.0 / 2.0;
        let r = analysis::rms(b);
        if power / (r * r) >= 0.7 {
            toned += 1;
        }
        tone_power += power.min(r * r);
        total_power += r * r;
    }
    let share = if blocks.is_empty() {
        0.0
    } else {
        toned as f64 / blocks.len() as f64
    };
    let fraction = if total_power > 0.0 {
        tone_power / total_power
    } else {
        0.0
    };
    (blocks.len(), share, fraction)
}

/// Asserts that the recording `samples` is `freq`: the dominant one of [`CANDIDATES`] over the
/// whole file, and the tone of nearly every 20 ms block that is not silent, for at least
/// `min_secs` seconds of such blocks.
pub(crate) fn assert_tone(
    what: &str,
    samples: &[i16],
    freq: f32,
    min_secs: f64,
    context: &dyn Fn() -> String,
) {
    assert_tone_at(what, samples, RATE, freq, min_secs, context)
}

/// [`assert_tone`] for a recording at `rate` Hz.
pub(crate) fn assert_tone_at(
    what: &str,
    samples: &[i16],
    rate: u32,
    freq: f32,
    min_secs: f64,
    context: &dyn Fn() -> String,
) {
    let dominant = analysis::dominant_frequency(samples, rate, &CANDIDATES);
    let (blocks, share, fraction) = tone_blocks(samples, freq, rate);
    // the tone against everything else in the sound: correlation with it and SNR
    let correlation = fraction.sqrt();
    let snr = 10.0 * (fraction / (1.0 - fraction).max(1e-9)).log10();
    println!(
        "{what}: dominant {dominant:?}, {blocks} blocks with sound, {:.1} % of them {freq} Hz; \
         correlation with the tone {correlation:.3}, SNR {snr:.1} dB",
        share * 100.0
    );
    assert!(
        dominant == Some(freq)
            && blocks as f64 / 50.0 >= min_secs
            && share >= 0.95
            && correlation >= 0.95
            && snr >= 10.0,
        "{what}: expected {freq} Hz; dominant {dominant:?}, {blocks} blocks of 20 ms with \
         sound ({} samples in all), {:.1} % of them {freq} Hz, correlation {correlation:.3}, \
         SNR {snr:.1} dB (0.95 and 10 dB wanted)\n{}",
        samples.len(),
        share * 100.0,
        context()
    );
}

/// Asserts that the recording `samples` holds the melody `reference`, which sipua played: each
/// quarter second of it correlates above 0.9 at a lag within 100 ms of the best lag of the
/// whole (a receiver's adaptive jitter buffer may drop or add a few ms while it plays: PJSIP's
/// does, so the whole may correlate less). A quarter second in which the jitter buffer
/// stepped holds two alignments, so no one lag fits it: the quarter seconds either side of
/// it sit at lags a frame or more apart, or (the first or last, or a step of less than a
/// frame) its own best lag is 5 ms or more from a neighbour's. It must still correlate
/// above 0.6, and there may be two such steps at most. With `whole_snr` (for sipua's own recordings, whose playout keeps
/// time), the whole must correlate above 0.9 too, with an SNR above that. Returns the lag.
fn assert_melody(
    what: &str,
    reference: &[i16],
    samples: &[i16],
    whole_snr: Option<f64>,
    context: &dyn Fn() -> String,
) -> usize {
    const SEGMENT: usize = RATE as usize / 4;
    const SLACK: usize = RATE as usize / 10;
    let (lag, corr) = analysis::best_alignment(reference, samples, samples.len());
    let snr = analysis::snr_db(reference, samples);
    let segments: Vec<(usize, f64)> = reference
        .chunks(SEGMENT)
        .enumerate()
        .map(|(i, segment)| {
            let start = (i * SEGMENT + lag).saturating_sub(SLACK);
            let end = (start + segment.len() + 2 * SLACK).min(samples.len());
            let window = samples.get(start..end).unwrap_or_default();
            let (l, c) = analysis::best_alignment(segment, window, 2 * SLACK);
            ((start + l).saturating_sub(i * SEGMENT), c)
        })
        .collect();
    println!(
        "{what}: correlation {corr:.3} at lag {lag}, SNR {snr:.1} dB, quarter seconds \
         {segments:.3?}"
    );
    let whole_ok = whole_snr.is_none_or(|min| corr > 0.9 && snr > min);
    // a frame at the recording's rate (20 ms)
    let frame = RATE as usize / 50;
    // 5 ms at the recording's rate: PJSIP's buffer also catches up by less than a frame
    let shift = RATE as usize / 200;
    let stepped = |i: usize| {
        let across = i > 0
            && i + 1 < segments.len()
            && segments[i - 1].0.abs_diff(segments[i + 1].0) >= frame;
        let beside = [i.checked_sub(1), Some(i + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| segments.get(j))
            .any(|n| n.0.abs_diff(segments[i].0) >= shift);
        across || beside
    };
    let steps = (0..segments.len())
        .filter(|&i| segments[i].1 <= 0.9 && stepped(i))
        .count();
    let segments_ok = segments
        .iter()
        .enumerate()
        .all(|(i, &(_, c))| c > 0.9 || (stepped(i) && c > 0.6));
    assert!(
        whole_ok && segments_ok && steps <= 2,
        "{what}: correlation {corr:.3} at lag {lag}, SNR {snr:.1} dB (whole: {whole_snr:?} \
         expected); (lag, correlation) of each quarter second: {segments:.3?}; {} samples \
         recorded\n{}",
        samples.len(),
        context()
    );
    lag
}

// ---------------------------------------------------------------------------------------------
// baresip

/// One headless baresip on loopback that plays `wav` (8 kHz mono) into each call and records
/// what it receives to `dumps/`, from a config directory made in the test's directory.
struct Baresip {
    child: Killed,
    out: Output,
    dumps: PathBuf,
    sip_port: u16,
    ctrl_port: u16,
}

impl Baresip {
    /// baresip with G.711 and RTCP multiplexed on the RTP port (RFC 5761 `rtcp_mux yes`: it
    /// offers `a=rtcp-mux` and takes it when offered).
    fn start(dir: &TempDir, wav: &Path) -> Baresip {
        Baresip::start_full(dir, wav, "pcmu,pcma", false, true)
    }

    /// [`Baresip::start`] with the account's codecs (`opus`: baresip's Opus module, which
    /// runs at 48 kHz stereo, so `wav` must be 48 kHz stereo and its recording is too).
    #[cfg(feature = "opus")] // the Opus test is the only one with other codecs
    fn start_with(dir: &TempDir, wav: &Path, codecs: &str) -> Baresip {
        Baresip::start_full(dir, wav, codecs, false, false)
    }

    /// [`Baresip::start_with`], and with `srtp` a TLS listener (at SIP port + 1, the tests'
    /// certificate) and SDES-SRTP required on its account (`mediaenc=srtp-mand`: it offers
    /// `RTP/SAVP` with `a=crypto` and takes nothing else); RTCP on its own port unless `mux`.
    fn start_full(dir: &TempDir, wav: &Path, codecs: &str, srtp: bool, mux: bool) -> Baresip {
        assert!(
            Command::new("baresip")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "baresip is not installed (apt-get install baresip; scripts/test does it)"
        );
        let sip_port = free_baresip_sip_port();
        let ctrl_port = free_tcp_port();
        let conf = dir.join("baresip");
        let dumps = dir.join("baresip-dumps");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&dumps).unwrap();
        let fill = |template: &str| {
            template
                .replace("@SIP_PORT@", &sip_port.to_string())
                .replace("@CTRL_PORT@", &ctrl_port.to_string())
                .replace("@WAV@", wav.to_str().unwrap())
                .replace("@SND_PATH@", dumps.to_str().unwrap())
                .replace("@RTCP_MUX@", if mux { "yes" } else { "no" })
                .replace("audio_codecs=pcmu,pcma", &format!("audio_codecs={codecs}"))
        };
        let mut config = fill(CONFIG);
        let mut accounts = fill(ACCOUNTS);
        if srtp {
            // certificate and key in one file, as baresip 1.0 reads them
            let (cert, key) = test_certificate();
            let both = conf.join("tls.pem");
            let pem =
                std::fs::read_to_string(cert).unwrap() + &std::fs::read_to_string(key).unwrap();
            std::fs::write(&both, pem).unwrap();
            config.push_str(&format!(
                "sip_certificate\t\t{}\nmodule\t\t\tsrtp.so\n",
                both.display()
            ));
            accounts = accounts
                .lines()
                .map(|l| {
                    if l.starts_with('<') {
                        format!("{l};mediaenc=srtp-mand\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
        }
        std::fs::write(conf.join("config"), config).unwrap();
        std::fs::write(conf.join("accounts"), accounts).unwrap();
        // -n: the address to use, -s: SIP trace on stdout, -t: quit after 60 s even if this
        // test dies without killing it
        let (child, out) = spawn(Command::new("baresip").arg("-f").arg(&conf).args([
            "-n",
            "127.0.0.1",
            "-s",
            "-t",
            "60",
        ]));
        let mut bs = Baresip {
            child,
            out,
            dumps,
            sip_port,
            ctrl_port,
        };
        let ready = bs.out.wait_for("baresip is ready.", 10.0);
        let exited = bs.child.0.try_wait().unwrap();
        assert!(
            ready && exited.is_none(),
            "baresip did not start (exit {exited:?}):\n{}",
            bs.out.text()
        );
        bs
    }

    fn ctrl(&self) -> Ctrl {
        Ctrl::connect(self.ctrl_port)
    }

    /// Quits baresip through `ctrl` and waits for it to exit, which completes the WAV files of
    /// its calls (libsndfile writes their sizes on close: a killed baresip leaves them empty).
    fn quit(&mut self, ctrl: &mut Ctrl) {
        ctrl.send("quit", "");
        let status = wait_exit(&mut self.child, 10.0);
        assert!(
            status.is_some(),
            "baresip did not quit\nctrl_tcp:\n{}\nbaresip:\n{}",
            ctrl.transcript(),
            self.out.text()
        );
    }

    /// What baresip received in its one call: the `dump-…-dec.wav` sndfile wrote.
    fn received(&self) -> Vec<i16> {
        read_wav(&self.received_file())
    }

    fn received_file(&self) -> PathBuf {
        let decoded: Vec<PathBuf> = std::fs::read_dir(&self.dumps)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert_eq!(
            decoded.len(),
            1,
            "expected one -dec.wav in {}: {decoded:?}\nbaresip:\n{}",
            self.dumps.display(),
            self.out.text()
        );
        decoded[0].clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn sipua_call_and_baresip_hear_each_other_and_baresip_gets_sipuas_dtmf() {
    let dir = TempDir::new("call-baresip");
    let melody = audio::demo_melody();
    let (play, rec, bs_wav) = (
        dir.join("melody.wav"),
        dir.join("rec.wav"),
        dir.join("tone440.wav"),
    );
    write_wav(&play, &melody);
    // longer than the call: baresip hangs up when its file ends
    write_wav(&bs_wav, &tone(440.0, 10.0));
    let mut bs = Baresip::start(&dir, &bs_wav);
    let mut ctrl = bs.ctrl(); // before the call, to get its events

    let (ok, printed) = call(&[
        &format!("sip:baresip@127.0.0.1:{}", bs.sip_port),
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--dtmf",
        "19#",
        "--duration",
        "3.5",
    ]);
    ctrl.wait_for(r#""type":"CALL_CLOSED""#, 5.0);
    bs.quit(&mut ctrl);
    let context = || {
        format!(
            "files in {}\nsipua call:\n{printed}\nctrl_tcp:\n{}\nbaresip:\n{}",
            dir.0.display(),
            ctrl.transcript(),
            bs.out.text()
        )
    };
    assert!(ok, "sipua call failed\n{}", context());
    assert!(printed.contains("call: Established PCMU"), "{}", context());
    assert_rtcp_muxed(&printed, false, &context);

    // sipua heard baresip's tone, for most of the call
    assert_tone("sipua's recording", &read_wav(&rec), 440.0, 2.5, &context);
    // baresip heard sipua's melody
    assert_melody(
        "baresip's -dec.wav",
        &melody,
        &bs.received(),
        None,
        &context,
    );
    // and got the digits, in order, as RFC 4733 events
    assert_eq!(ctrl.dtmf(), "19#", "{}", context());
}

#[test]
fn baresip_calls_sipua_serve_both_hear_each_other_and_sipua_gets_baresips_dtmf() {
    let dir = TempDir::new("baresip-serve");
    let (prompt, recs, bs_wav) = (
        dir.join("tone1000.wav"),
        dir.join("calls"),
        dir.join("tone440.wav"),
    );
    write_wav(&prompt, &tone(1000.0, 5.0));
    write_wav(&bs_wav, &tone(440.0, 10.0));
    let port = free_udp_port();
    let (_serve, served) = serve(
        port,
        &[
            "--play",
            prompt.to_str().unwrap(),
            "--record-dir",
            recs.to_str().unwrap(),
        ],
    );
    let mut bs = Baresip::start(&dir, &bs_wav);
    let mut ctrl = bs.ctrl();
    let context = |ctrl: &Ctrl, bs: &Baresip| {
        format!(
            "files in {}\nsipua serve:\n{}\nctrl_tcp:\n{}\nbaresip:\n{}",
            dir.0.display(),
            served.text(),
            ctrl.transcript(),
            bs.out.text()
        )
    };

    ctrl.send("dial", &format!("sip:sipua@127.0.0.1:{port}"));
    assert!(
        ctrl.wait_for(r#""type":"CALL_ESTABLISHED""#, 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    ctrl.send("sndcode", "2580*");
    // five digits 240 ms apart, then the rest of 3 s of audio
    std::thread::sleep(Duration::from_secs(3));
    ctrl.send("hangup", "");
    assert!(
        ctrl.wait_for(r#""type":"CALL_CLOSED""#, 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    // sipua has finished the call's recording when it prints the call's last media line
    assert!(
        served.wait_for(": media at the end:", 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    bs.quit(&mut ctrl);
    let context = || context(&ctrl, &bs);

    assert_eq!(sipua_dtmf(&served.text()), "2580*", "{}", context());
    assert_rtcp_muxed(&served.text(), false, &context);
    assert_tone(
        "sipua serve's recording",
        &only_recording(&recs, &context),
        440.0,
        2.5,
        &context,
    );
    assert_tone("baresip's -dec.wav", &bs.received(), 1000.0, 2.5, &context);
}

/// Checks that sipua's last media line says RTCP shared the RTP port (RFC 5761) and that RTCP
/// went both ways on it: reports sent, and the peer's received there (a peer that multiplexes
/// sends none to the RTCP port, so they can only have come through the RTP socket). With
/// `rtt`, the peer's report must also give a round-trip time: it had our sender report, so
/// what we sent from the RTP socket reached it.
fn assert_rtcp_muxed(printed: &str, rtt: bool, context: &dyn Fn() -> String) {
    let line = last_media_line(printed, context);
    let counts = line
        .split(" rtcp-mux ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|c| c.split_once('/'))
        .and_then(|(s, r)| Some((s.parse::<u64>().ok()?, r.parse::<u64>().ok()?)));
    let Some((sent, received)) = counts else {
        panic!("RTCP not multiplexed: {line}\n{}", context());
    };
    assert!(sent > 0 && received > 0, "{line}\n{}", context());
    assert!(
        !rtt || line.contains(" rtt "),
        "no round trip: {line}\n{}",
        context()
    );
}

/// The UDP datagrams in a capture sipua wrote (`--pcap`: LINKTYPE_RAW, IPv4): source port,
/// destination port, payload.
fn udp_in_pcap(path: &Path) -> Vec<(u16, u16, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 24, "{}: no pcap header", path.display());
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let packet = &bytes[at + 16..(at + 16 + len).min(bytes.len())];
        at += 16 + len;
        // IPv4, UDP (protocol 17)
        if packet.len() < 28 || packet[0] >> 4 != 4 || packet[9] != 17 {
            continue;
        }
        let udp = &packet[usize::from(packet[0] & 0x0f) * 4..];
        let port = |i: usize| u16::from_be_bytes([udp[i], udp[i + 1]]);
        out.push((port(0), port(2), udp[8..].to_vec()));
    }
    out
}

/// The media line `sipua` printed last, or a failure.
fn last_media_line(printed: &str, context: &dyn Fn() -> String) -> String {
    printed
        .lines()
        .rev()
        .find(|l| l.contains(" sent ") && l.contains(" recv "))
        .unwrap_or_else(|| panic!("no media line\n{}", context()))
        .to_owned()
}

/// Asserts that the last media line sipua printed names an SDES suite and no refused packet.
fn assert_encrypted(printed: &str, context: &dyn Fn() -> String) {
    let line = last_media_line(printed, context);
    assert!(
        line.contains(" srtp AES_CM_128_HMAC_SHA1_") && !line.contains("srtp-rejected"),
        "{line}\n{}",
        context()
    );
}

/// The one recording `sipua serve --record-dir` made in `dir`.
fn only_recording(dir: &Path, context: &dyn Fn() -> String) -> Vec<i16> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\n{}", context());
    read_wav(&files[0])
}

/// SDES-SRTP with baresip over TLS (its `srtp` module, `mediaenc=srtp-mand`): sipua offers
/// `RTP/SAVP` with keys, baresip answers with its own; each hears the other (by content, so
/// both decrypt what the other encrypts), and sipua's media line names the suite.
#[test]
fn sipua_call_and_baresip_talk_sdes_srtp_over_tls() {
    let dir = TempDir::new("call-baresip-srtp");
    let melody = audio::demo_melody();
    let (play, rec, bs_wav) = (
        dir.join("melody.wav"),
        dir.join("rec.wav"),
        dir.join("tone440.wav"),
    );
    write_wav(&play, &melody);
    write_wav(&bs_wav, &tone(440.0, 10.0));
    let mut bs = Baresip::start_full(&dir, &bs_wav, "pcmu,pcma", true, false);
    let mut ctrl = bs.ctrl();
    let (cert, key) = test_certificate();
    let (ok, printed) = call(&[
        &format!("sip:baresip@127.0.0.1:{};transport=tls", bs.sip_port + 1),
        "--from-addr",
        "tls:127.0.0.1:0",
        "--ca",
        cert.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--srtp",
        "offer",
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "3.5",
    ]);
    ctrl.wait_for(r#""type":"CALL_CLOSED""#, 5.0);
    bs.quit(&mut ctrl);
    let context = || {
        format!(
            "files in {}\nsipua call:\n{printed}\nctrl_tcp:\n{}\nbaresip:\n{}",
            dir.0.display(),
            ctrl.transcript(),
            bs.out.text()
        )
    };
    assert!(ok, "sipua call failed\n{}", context());
    assert_encrypted(&printed, &context);
    // baresip's answer is encrypted too
    let log = bs.out.text();
    assert!(
        log.contains("RTP/SAVP") && log.contains("a=crypto:"),
        "{}",
        context()
    );
    assert_tone("sipua's recording", &read_wav(&rec), 440.0, 2.5, &context);
    assert_melody(
        "baresip's -dec.wav",
        &melody,
        &bs.received(),
        None,
        &context,
    );
}

/// baresip (SDES required) calls `sipua serve` over TLS: sipua's default answers its
/// `RTP/SAVP` offer with a key of its own, and the audio goes both ways.
#[test]
fn baresip_calls_sipua_serve_over_tls_with_sdes_srtp() {
    let dir = TempDir::new("baresip-serve-srtp");
    let (prompt, recs, bs_wav) = (
        dir.join("tone1000.wav"),
        dir.join("calls"),
        dir.join("tone440.wav"),
    );
    write_wav(&prompt, &tone(1000.0, 5.0));
    write_wav(&bs_wav, &tone(440.0, 10.0));
    let port = free_tcp_port();
    let (cert, key) = test_certificate();
    let (_serve, served) = spawn(
        sipua()
            .args(["serve", "--listen", &format!("tls:127.0.0.1:{port}")])
            .args(["--lifetime", "60", "--play"])
            .arg(&prompt)
            .arg("--record-dir")
            .arg(&recs)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key),
    );
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    let mut bs = Baresip::start_full(&dir, &bs_wav, "pcmu,pcma", true, false);
    let mut ctrl = bs.ctrl();
    let context = |ctrl: &Ctrl, bs: &Baresip| {
        format!(
            "files in {}\nsipua serve:\n{}\nctrl_tcp:\n{}\nbaresip:\n{}",
            dir.0.display(),
            served.text(),
            ctrl.transcript(),
            bs.out.text()
        )
    };
    ctrl.send("dial", &format!("sip:sipua@127.0.0.1:{port};transport=tls"));
    assert!(
        ctrl.wait_for(r#""type":"CALL_ESTABLISHED""#, 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    std::thread::sleep(Duration::from_secs(3));
    ctrl.send("hangup", "");
    assert!(
        ctrl.wait_for(r#""type":"CALL_CLOSED""#, 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    assert!(
        served.wait_for(": media at the end:", 10.0),
        "{}",
        context(&ctrl, &bs)
    );
    bs.quit(&mut ctrl);
    let context = || context(&ctrl, &bs);
    assert_encrypted(&served.text(), &context);
    assert_tone(
        "sipua serve's recording",
        &only_recording(&recs, &context),
        440.0,
        2.5,
        &context,
    );
    assert_tone("baresip's -dec.wav", &bs.received(), 1000.0, 2.5, &context);
}

#[test]
fn sipua_call_hears_its_melody_back_from_sipp_rtp_echo() {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "SIPp is not installed (apt-get install sip-tester; scripts/test does it)"
    );
    let dir = TempDir::new("sipp-echo");
    let melody = audio::demo_melody();
    let (play, rec) = (dir.join("melody.wav"), dir.join("rec.wav"));
    write_wav(&play, &melody);
    let (sip_port, media_port) = (free_udp_port(), free_sipp_media_port());
    let (_sipp, sipp_out) = spawn(Command::new("sipp").args([
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &sip_port.to_string(),
        "-mi",
        "127.0.0.1",
        "-mp",
        &media_port.to_string(),
        "-rtp_echo",
        "-m",
        "1",
        "-nostdin",
    ]));
    // SIPp prints nothing when it is ready; a late start only costs an INVITE retransmission
    std::thread::sleep(Duration::from_millis(300));

    let (ok, printed) = call(&[
        &format!("sip:echo@127.0.0.1:{sip_port}"),
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "3",
    ]);
    let context = || {
        format!(
            "files in {}\nsipua call:\n{printed}\nSIPp:\n{}",
            dir.0.display(),
            sipp_out.text()
        )
    };
    assert!(ok, "sipua call failed\n{}", context());
    assert!(printed.contains("call: Established PCMU"), "{}", context());
    // the melody went to SIPp and came back, through G.711 twice
    let lag = assert_melody(
        "sipua's recording",
        &melody,
        &read_wav(&rec),
        Some(20.0),
        &context,
    );
    assert!(
        lag < 4000,
        "the echo came after {lag} samples\n{}",
        context()
    );
}

#[test]
fn pjsua_calls_sipua_serve_with_audio_and_rfc4733_dtmf() {
    let dir = TempDir::new("pjsua-serve");
    let (prompt, recs, pj_play, pj_rec) = (
        dir.join("tone1000.wav"),
        dir.join("calls"),
        dir.join("tone440.wav"),
        dir.join("pjsua-rec.wav"),
    );
    write_wav(&prompt, &tone(1000.0, 5.0));
    write_wav(&pj_play, &tone(440.0, 5.0));
    let port = free_udp_port();
    let (_serve, served) = serve(
        port,
        &[
            "--play",
            prompt.to_str().unwrap(),
            "--record-dir",
            recs.to_str().unwrap(),
        ],
    );
    let (mut peer, peer_out, _) = pjsua_peer(&[
        &format!("sip:sipua@127.0.0.1:{port}"),
        "--play",
        pj_play.to_str().unwrap(),
        "--record",
        pj_rec.to_str().unwrap(),
        "--dtmf",
        "147#",
        "--dtmf-delay",
        "0.5",
        "--duration",
        "4.5",
        "--timeout",
        "20",
        // PJSIP offers a=rtcp-mux and sipua takes it (RFC 5761)
        "--rtcp-mux",
    ]);
    let status = wait_exit(&mut peer, 25.0);
    let finished = served.wait_for(": media at the end:", 5.0);
    let context = || {
        format!(
            "files in {}\npeer.py:\n{}\nsipua serve:\n{}",
            dir.0.display(),
            peer_out.text(),
            served.text()
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "peer.py exit {status:?}\n{}",
        context()
    );
    assert!(finished, "{}", context());
    assert!(peer_out.text().contains("DTMF-TX 147#"), "{}", context());

    assert_eq!(sipua_dtmf(&served.text()), "147#", "{}", context());
    // our first sender report leaves within 3.75 s, and PJSIP reports on it as it hangs up
    assert_rtcp_muxed(&served.text(), true, &context);
    let files: Vec<PathBuf> = std::fs::read_dir(&recs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\n{}", context());
    // PJSIP sends no audio while it sends a digit: about 0.3 s per digit is missing
    assert_tone(
        "sipua serve's recording",
        &read_wav(&files[0]),
        440.0,
        1.5,
        &context,
    );
    assert_tone(
        "pjsua's recording",
        &read_wav(&pj_rec),
        1000.0,
        2.5,
        &context,
    );
}

#[test]
fn sipua_call_and_pjsua_answering_hear_each_other() {
    let dir = TempDir::new("call-pjsua");
    // PJSIP multiplexes RTCP when asked (RFC 5761): sipua offers it, PJSIP takes it
    let pcap = dir.join("call.pcap");
    let printed =
        sipua_calls_answering_pjsua(&dir, &["--rtcp-mux"], &["--pcap", pcap.to_str().unwrap()]);
    assert!(printed.contains("call: Established PCMU"), "{printed}");
    assert_rtcp_muxed(&printed, false, &|| printed.clone());
    // on the wire (sipua's capture of its own sockets): every RTCP packet, ours and PJSIP's,
    // went between the two RTP ports, and both sides sent some
    let packets = udp_in_pcap(&pcap);
    let is_rtcp = |p: &[u8]| p.len() >= 8 && p[0] >> 6 == 2 && (200..=204).contains(&p[1]);
    let rtp: HashSet<(u16, u16)> = packets
        .iter()
        .filter(|(_, _, p)| p.len() >= 12 && p[0] >> 6 == 2 && p[1] & 0x7f == 0)
        .map(|&(s, d, _)| (s, d))
        .collect();
    let rtcp: Vec<(u16, u16)> = packets
        .iter()
        .filter(|(_, _, p)| is_rtcp(p))
        .map(|&(s, d, _)| (s, d))
        .collect();
    assert_eq!(rtp.len(), 2, "RTP port pairs {rtp:?}\n{printed}");
    assert!(
        rtcp.iter().all(|pair| rtp.contains(pair)),
        "RTCP {rtcp:?} off the RTP ports {rtp:?}\n{printed}"
    );
    let directions: HashSet<_> = rtcp.iter().collect();
    assert_eq!(
        directions.len(),
        2,
        "RTCP one way only: {rtcp:?}\n{printed}"
    );
}

/// `sipua call` (with `call_args`) plays the melody to PJSIP answering (with `pj_args`), which
/// plays 1000 Hz back; both recordings are checked, and what sipua printed is returned.
fn sipua_calls_answering_pjsua(dir: &TempDir, pj_args: &[&str], call_args: &[&str]) -> String {
    let melody = audio::demo_melody();
    let (play, rec, pj_play, pj_rec) = (
        dir.join("melody.wav"),
        dir.join("rec.wav"),
        dir.join("tone1000.wav"),
        dir.join("pjsua-rec.wav"),
    );
    write_wav(&play, &melody);
    write_wav(&pj_play, &tone(1000.0, 5.0));
    let mut args = pj_args.to_vec();
    args.extend([
        "--answer",
        "--play",
        pj_play.to_str().unwrap(),
        "--record",
        pj_rec.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let (mut peer, peer_out, uri) = pjsua_peer(&args);
    let mut args = vec![uri.as_str()];
    args.extend(call_args);
    args.extend([
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "3",
    ]);
    let (ok, printed) = call(&args);
    // peer.py exits on our BYE, after closing its recording
    let status = wait_exit(&mut peer, 10.0);
    let context = || {
        format!(
            "files in {}\nsipua call:\n{printed}\npeer.py:\n{}",
            dir.0.display(),
            peer_out.text()
        )
    };
    assert!(ok, "sipua call failed\n{}", context());
    assert!(
        status.is_some_and(|s| s.success()),
        "peer.py exit {status:?}\n{}",
        context()
    );
    assert_melody(
        "pjsua's recording",
        &melody,
        &read_wav(&pj_rec),
        None,
        &context,
    );
    assert_tone("sipua's recording", &read_wav(&rec), 1000.0, 2.5, &context);
    printed
}

/// SDES-SRTP with PJSIP over TLS, both directions: PJSIP (srtpUse mandatory, keys only over
/// TLS) answers `sipua call --srtp require`, then calls `sipua serve --srtp require`; each
/// side hears the other's audio (by content), and sipua's media line names the suite.
#[test]
fn sipua_and_pjsua_talk_sdes_srtp_over_tls_both_ways() {
    let dir = TempDir::new("pjsua-srtp");
    let (cert, key) = test_certificate();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let pj_tls = [
        "--transport",
        "tls",
        "--cert",
        cert,
        "--key",
        key,
        "--ca",
        cert,
        "--srtp",
        "mandatory",
    ];

    // sipua calls PJSIP
    let printed = sipua_calls_answering_pjsua(
        &dir,
        &pj_tls,
        &[
            "--from-addr",
            "tls:127.0.0.1:0",
            "--ca",
            cert,
            "--cert",
            cert,
            "--key",
            key,
            "--srtp",
            "require",
        ],
    );
    assert_encrypted(&printed, &|| printed.clone());

    // PJSIP calls sipua serve (the same WAVs: the melody from sipua, 1000 Hz from PJSIP)
    let (melody, play, pj_play) = (
        audio::demo_melody(),
        dir.join("melody.wav"),
        dir.join("tone1000.wav"),
    );
    let recs = dir.join("calls");
    let port = free_tcp_port();
    let (_serve, served) = spawn(
        sipua()
            .args(["serve", "--listen", &format!("tls:127.0.0.1:{port}")])
            .args(["--lifetime", "60", "--srtp", "require", "--play"])
            .arg(&play)
            .arg("--record-dir")
            .arg(&recs)
            .args(["--cert", cert, "--key", key, "--hangup-after", "3"]),
    );
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    let pj_rec2 = dir.join("pjsua-rec2.wav");
    let target = format!("sip:sipua@127.0.0.1:{port}");
    let mut args = pj_tls.to_vec();
    args.extend([
        "--play",
        pj_play.to_str().unwrap(),
        "--record",
        pj_rec2.to_str().unwrap(),
        "--timeout",
        "20",
        &target,
    ]);
    let (mut peer, peer_out, _) = pjsua_peer(&args);
    let status = wait_exit(&mut peer, 20.0);
    assert!(
        served.wait_for(": media at the end:", 10.0),
        "{}\n{}",
        served.text(),
        peer_out.text()
    );
    let context = || {
        format!(
            "files in {}\nsipua serve:\n{}\npeer.py:\n{}",
            dir.0.display(),
            served.text(),
            peer_out.text()
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        context()
    );
    assert_encrypted(&served.text(), &context);
    assert_tone(
        "sipua serve's recording",
        &only_recording(&recs, &context),
        1000.0,
        2.5,
        &context,
    );
    assert_melody(
        "pjsua's recording",
        &melody,
        &read_wav(&pj_rec2),
        None,
        &context,
    );
}

/// Opus both ways with baresip (needs the `opus` feature, which `scripts/test` turns on): what
/// sipua plays, coded by our libopus encoder at a 48 kHz RTP clock, is what baresip hears, and
/// baresip's Opus tone is what sipua records.
#[cfg(feature = "opus")]
#[test]
fn sipua_call_and_baresip_talk_opus() {
    let dir = TempDir::new("opus-baresip");
    let melody = audio::demo_melody();
    let (play, rec, bs_wav) = (
        dir.join("melody.wav"),
        dir.join("rec.wav"),
        dir.join("tone440-48k.wav"),
    );
    write_wav(&play, &melody);
    // baresip's Opus source runs at 48 kHz stereo: its file must too (longer than the call)
    let up = wav::resample(&tone(440.0, 10.0), RATE, 48000);
    let stereo: Vec<i16> = up.iter().flat_map(|&s| [s, s]).collect();
    let mut bytes = wav::write_wav(&stereo, 48000);
    bytes[22] = 2; // channels
    bytes[28..32].copy_from_slice(&(48000u32 * 4).to_le_bytes()); // byte rate
    bytes[32] = 4; // block align
    std::fs::write(&bs_wav, bytes).unwrap();
    let mut bs = Baresip::start_with(&dir, &bs_wav, "opus");
    let mut ctrl = bs.ctrl();
    let (ok, printed) = call(&[
        &format!("sip:baresip@127.0.0.1:{}", bs.sip_port),
        "--codecs",
        "opus,pcmu",
        "--play",
        play.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
        "--duration",
        "3.5",
    ]);
    ctrl.wait_for(r#""type":"CALL_CLOSED""#, 5.0);
    bs.quit(&mut ctrl);
    let context = || {
        format!(
            "files in {}\nsipua call:\n{printed}\nbaresip:\n{}",
            dir.0.display(),
            bs.out.text()
        )
    };
    assert!(ok, "sipua call failed\n{}", context());
    assert!(printed.contains("call: Established opus"), "{}", context());
    assert_tone("sipua's recording", &read_wav(&rec), 440.0, 2.5, &context);
    let heard = wav::read_wav_8k(&bs.received_file()).expect("baresip's recording");
    assert_melody("baresip's -dec.wav", &melody, &heard, None, &context);
}

/// PJSIP requiring 100rel calls `sipua serve`: serve's 180 goes reliably, PJSIP PRACKs it,
/// and the call completes with audio; PJSIP's recording holds serve's prompt.
#[test]
fn pjsua_requiring_100rel_calls_sipua_serve_and_pracks_its_reliable_180() {
    let dir = TempDir::new("pjsua-prack-serve");
    let (prompt, pj_rec) = (dir.join("tone1000.wav"), dir.join("pjsua-rec.wav"));
    write_wav(&prompt, &tone(1000.0, 5.0));
    let port = free_udp_port();
    let (_serve, served) = serve(port, &["--play", prompt.to_str().unwrap()]);
    let (mut peer, peer_out, _) = pjsua_peer(&[
        &format!("sip:sipua@127.0.0.1:{port}"),
        "--100rel",
        "--record",
        pj_rec.to_str().unwrap(),
        "--duration",
        "2",
        "--timeout",
        "20",
    ]);
    let status = wait_exit(&mut peer, 25.0);
    let context = || {
        format!(
            "peer.py:\n{}\nsipua serve:\n{}",
            peer_out.text(),
            served.text()
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        context()
    );
    assert!(peer_out.text().contains("CONFIRMED"), "{}", context());
    assert!(
        served.wait_for("terminated (the peer hung up)", 5.0),
        "{}",
        context()
    );
    assert_tone(
        "PJSIP's recording",
        &read_wav(&pj_rec),
        1000.0,
        1.0,
        &context,
    );
}

/// `sipua call` to PJSIP answering with reliable provisional responses: sipua PRACKs them and
/// the call completes with audio both ways.
#[test]
fn sipua_call_pracks_pjsuas_reliable_provisional_responses() {
    let dir = TempDir::new("pjsua-prack-call");
    let (pj_play, rec) = (dir.join("tone440.wav"), dir.join("rec.wav"));
    write_wav(&pj_play, &tone(440.0, 5.0));
    let (_peer, peer_out, uri) = pjsua_peer(&[
        "--answer",
        "--100rel",
        // 180 (reliable, for sipua to PRACK), then 200
        "--ring",
        "0.5",
        "--play",
        pj_play.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let (ok, printed) = call(&[&uri, "--record", rec.to_str().unwrap(), "--duration", "2"]);
    let context = || format!("sipua call:\n{printed}\npeer.py:\n{}", peer_out.text());
    assert!(ok, "{}", context());
    assert!(printed.contains("180 Ringing"), "{}", context());
    assert!(printed.contains("call: Established"), "{}", context());
    assert_tone("sipua's recording", &read_wav(&rec), 440.0, 1.0, &context);
}
