//! WebRTC against a real browser: Debian's `chromium`, headless, runs SIP.js 0.21 (from its
//! npm package, with its stock `Web.SessionDescriptionHandler`) in a page (`browser/call.html`)
//! that this test serves over HTTP on loopback, with a fake microphone that plays a WAV. The
//! page calls `sipua serve --listen ws:` and reports what it hears by POST; sipua records what
//! it hears. Both are judged by their content: the tone each side played must be what the
//! other heard.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::common::*;
use crate::kamailio::Kamailio;
use crate::media::{
    assert_tone, assert_tone_at, read_wav, read_wav_at, sipua_dtmf, tone, tone_at, write_wav,
    write_wav_at, TempDir,
};

const PAGE: &str = include_str!("browser/call.html");
const JSSIP_PAGE: &str = include_str!("browser/jssip.html");
const COMMON_JS: &str = include_str!("browser/common.js");
const NODE_MODULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/node/node_modules"
);
const SIPJS_LIB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/node/node_modules/sip.js/lib"
);

/// A tiny HTTP server for the pages: `GET /call.html`, `/jssip.html` and `/common.js`, `GET /sip.js/lib/…`
/// (SIP.js's ES modules from its npm package), `GET /node_modules/…` (JsSIP's CommonJS files
/// and its dependencies') and `POST /event` (the page's reports, gathered here).
struct Web {
    port: u16,
    events: Arc<Mutex<String>>,
}

impl Web {
    fn start() -> Web {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(String::new()));
        let gathered = events.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let gathered = gathered.clone();
                std::thread::spawn(move || serve_one(conn, &gathered));
            }
        });
        Web { port, events }
    }

    fn events(&self) -> String {
        self.events.lock().unwrap().clone()
    }

    fn wait_for(&self, event: &str, secs: f64) -> bool {
        wait_until(secs, || {
            self.events()
                .lines()
                .any(|l| l.starts_with(&format!("EVENT {event}")))
        })
    }
}

fn serve_one(conn: TcpStream, events: &Mutex<String>) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (method, path) = (
        method.to_owned(),
        path.split('?').next().unwrap_or("/").to_owned(),
    );
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let (status, kind, body): (&str, &str, Vec<u8>) = if method == "POST" && path == "/event" {
        let mut body = vec![0u8; length.min(1 << 16)];
        let _ = reader.read_exact(&mut body);
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut e = events.lock().unwrap();
        e.push_str(&text);
        e.push('\n');
        ("200 OK", "text/plain", Vec::new())
    } else if path == "/call.html" {
        ("200 OK", "text/html", PAGE.as_bytes().to_vec())
    } else if path == "/jssip.html" {
        ("200 OK", "text/html", JSSIP_PAGE.as_bytes().to_vec())
    } else if path == "/common.js" {
        ("200 OK", "text/javascript", COMMON_JS.as_bytes().to_vec())
    } else if let Some(rest) = path.strip_prefix("/node_modules/") {
        // JsSIP and its dependencies, for the page's own `require`
        let file = Path::new(NODE_MODULES).join(rest);
        let kind = if rest.ends_with(".json") {
            "application/json"
        } else {
            "text/javascript"
        };
        match (rest.contains(".."), std::fs::read(&file)) {
            (false, Ok(b)) => ("200 OK", kind, b),
            _ => ("404 Not Found", "text/plain", Vec::new()),
        }
    } else if let Some(rest) = path.strip_prefix("/sip.js/lib/") {
        let file = Path::new(SIPJS_LIB).join(rest);
        match (rest.contains(".."), std::fs::read(&file)) {
            (false, Ok(b)) => ("200 OK", "text/javascript", b),
            _ => ("404 Not Found", "text/plain", Vec::new()),
        }
    } else {
        ("404 Not Found", "text/plain", Vec::new())
    };
    let mut conn = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}

/// Headless Chromium on `url`, its microphone playing `mic` (a WAV).
fn chromium(url: &str, mic: &Path, profile: &Path) -> (Killed, Output) {
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is not installed (apt-get install chromium; scripts/test-deps does it)"
    );
    spawn(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // host candidates on loopback, and their real addresses rather than mDNS names
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                // the tests' self-signed certificate on sipua's WSS listener
                "--ignore-certificate-errors",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                mic.display()
            ))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url),
    )
}

/// The one file in `dir`.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Asserts that the page's report (`EVENT heard ...`) shows sipua's tone at `freq` Hz: at
/// least 100 packets, and `freq` the loudest of what it played. Returns the codec the page
/// names.
fn assert_page_heard(events: &str, freq: i64, context: &dyn Fn() -> String) -> String {
    let heard = events
        .lines()
        .find(|l| l.starts_with("EVENT heard"))
        .unwrap_or_else(|| panic!("no report of what the page heard\n{}", context()));
    println!("the page: {heard}");
    let field = |k: &str| -> String {
        heard
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_owned()
    };
    let received: u64 = field("received").parse().unwrap_or(0);
    let peak: i64 = field("peak_hz").parse().unwrap_or(0);
    assert!(received >= 100, "{heard}\n{}", context());
    assert!(
        (peak - freq).abs() <= 15,
        "peak {peak} Hz: {heard}\n{}",
        context()
    );
    field("codec")
}

/// Asserts that `sipua serve`'s last media figures for the call count no lost packet.
fn assert_no_loss(printed: &str, context: &dyn Fn() -> String) {
    let last = printed
        .lines()
        .rev()
        .find(|l| l.starts_with("call ") && l.contains(" lost "))
        .unwrap_or_else(|| panic!("no media line\n{}", context()));
    assert!(last.contains(" lost 0 (0.0 %)"), "{last}\n{}", context());
}

/// Who ends a browser call.
#[derive(PartialEq)]
enum HangsUp {
    Page,
    Sipua,
}

/// SIP.js in Chromium calls `sipua serve --listen ws:` with `codecs` (or, `via_kamailio`,
/// `serve --listen udp:` through Kamailio's WebSocket listener, which record-routes); audio
/// is checked both ways, and the call ends from `who`'s side.
fn browser_calls_serve(
    page: &str,
    codecs: &str,
    expect: &str,
    who: HangsUp,
    via_kamailio: bool,
    ws: &str,
) {
    browser_calls_serve_at(page, codecs, expect, who, via_kamailio, ws, 8000)
}

/// [`browser_calls_serve`] with `serve --audio-rate audio_rate`: above 8 kHz, the tones both
/// ways (6 kHz from the browser, 5 kHz from sipua) are ones narrowband audio cannot carry.
fn browser_calls_serve_at(
    page: &str,
    codecs: &str,
    expect: &str,
    who: HangsUp,
    via_kamailio: bool,
    ws: &str,
    audio_rate: u32,
) {
    // SIP.js's page also holds and resumes the calls it ends itself (JsSIP's does not)
    let hold = page == "call.html" && who == HangsUp::Page && !via_kamailio;
    // a directory of each test's own (they run at once)
    let dir = TempDir::new(&format!(
        "browser-{page}-{codecs}-{}-{ws}-{audio_rate}-{}",
        if via_kamailio { "kamailio" } else { "straight" },
        if who == HangsUp::Page {
            "page"
        } else {
            "sipua"
        }
    ));
    // the browser's microphone plays 1000 Hz; sipua plays 440 Hz back (wideband: 6 and 5 kHz,
    // written at 48 kHz)
    let (mic_hz, ours_hz, wav_rate) = if audio_rate > 8000 {
        (6000.0, 5000.0, 48000)
    } else {
        (1000.0, 440.0, 8000)
    };
    let mic = dir.join("mic.wav");
    write_wav_at(&mic, &tone_at(mic_hz, 10.0, wav_rate), wav_rate);
    let ours = dir.join("ours.wav");
    write_wav_at(&ours, &tone_at(ours_hz, 10.0, wav_rate), wav_rate);
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    // a Kamailio of each test's own (they run at once, and its files are named after it)
    let kamailio = via_kamailio.then(|| {
        let name = format!(
            "browser-{}-{}-{audio_rate}",
            page.trim_end_matches(".html"),
            codecs.replace(',', "-")
        );
        Kamailio::start_with(&name, &["OPEN_RELAY"])
    });
    let (port, listen) = match &kamailio {
        Some(_) => (free_udp_port(), "udp"),
        None => (free_tcp_port(), ws),
    };
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sipua"));
    serve
        .args(["serve", "--listen", &format!("{listen}:127.0.0.1:{port}")])
        .args(["--lifetime", "60", "--codecs", codecs, "--play"])
        .arg(&ours)
        .arg("--record-dir")
        .arg(&records)
        .args(["--audio-rate", &audio_rate.to_string()]);
    if who == HangsUp::Sipua {
        serve.args(["--hangup-after", "3"]);
    }
    if listen == "wss" {
        // the tests' self-signed certificate (Chromium is told to accept it)
        let (cert, key) = test_certificate();
        serve.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let (mut served, out) = spawn(&mut serve);
    assert!(out.wait_for("listening on", 10.0), "{}", out.text());
    let web = Web::start();
    // straight to sipua's WebSocket listener, or to Kamailio's and on to sipua over UDP
    let (server, target) = match &kamailio {
        Some(k) => (
            format!("ws://127.0.0.1:{}", k.ws_port),
            format!("sip:bob@127.0.0.1:{port}"),
        ),
        None => (
            format!("{ws}://127.0.0.1:{port}"),
            format!("sip:bob@127.0.0.1:{port};transport={ws}"),
        ),
    };
    let url = format!(
        "http://127.0.0.1:{}/{page}?ws={server}&target={target}&listen=3&hangup={}&dtmf=159%23\
         &hold={}",
        web.port,
        if who == HangsUp::Page { "page" } else { "peer" },
        if hold { "1" } else { "" }
    );
    let (_browser, browser_out) = chromium(&url, &mic, &dir.join("profile"));
    let context = || {
        format!(
            "page events:\n{}\nsipua serve:\n{}\nkamailio:\n{}\nchromium:\n{}",
            web.events(),
            out.text(),
            kamailio.as_ref().map(|k| k.out.text()).unwrap_or_default(),
            browser_out.text()
        )
    };
    assert!(web.wait_for("established", 20.0), "{}", context());
    assert!(web.wait_for("terminated", 20.0), "{}", context());
    let events = web.events();
    let codec = assert_page_heard(&events, ours_hz as i64, &context);
    assert_eq!(codec, expect, "{}", context());
    // the page's DTMF (its RTCDTMFSender) reached sipua as telephone-events, in order
    assert!(events.contains("EVENT dtmf-sent ok=true"), "{}", context());
    if hold {
        // hold and resume by re-INVITE, both answered by sipua's WebRTC handler
        for step in ["hold", "unhold"] {
            assert!(
                events.contains(&format!("EVENT {step} result=ok")),
                "{step}\n{}",
                context()
            );
        }
    }
    assert_eq!(sipua_dtmf(&out.text()), "159#", "{}", context());
    match who {
        HangsUp::Page => {
            assert!(events.contains("EVENT bye-sent result=ok"), "{}", context());
            assert!(
                wait_until(5.0, || out.text().contains("terminated (the peer hung up)")),
                "{}",
                context()
            );
        }
        HangsUp::Sipua => {
            assert!(events.contains("EVENT bye-received"), "{}", context());
            assert!(
                wait_until(5.0, || out.text().contains(": BYE: 200 OK")),
                "{}",
                context()
            );
        }
    }
    terminate(&mut served);
    // nothing lost on loopback (DTMF shares the audio's sequence numbers: not a gap)
    assert_no_loss(&out.text(), &context);
    // and sipua heard the browser's microphone
    let recorded = read_wav_at(&only_file(&records), audio_rate);
    assert_tone_at(
        "sipua's recording of the browser",
        &recorded,
        audio_rate,
        mic_hz,
        1.5,
        &context,
    );
}

#[cfg(feature = "opus")]
#[test]
fn sipjs_in_chromium_calls_sipua_with_opus_and_hangs_up() {
    browser_calls_serve(
        "call.html",
        "opus,pcmu",
        "audio/opus",
        HangsUp::Page,
        false,
        "ws",
    );
}

/// Opus at 48 kHz end to end: sipua hears the browser's 6 kHz and the page hears sipua's
/// 5 kHz, neither of which narrowband audio carries.
#[cfg(feature = "opus")]
#[test]
fn sipjs_in_chromium_calls_sipua_with_wideband_opus_at_48_khz() {
    browser_calls_serve_at(
        "call.html",
        "opus",
        "audio/opus",
        HangsUp::Sipua,
        false,
        "ws",
        48000,
    );
}

#[test]
fn sipjs_in_chromium_calls_sipua_with_pcmu_and_sipua_hangs_up() {
    browser_calls_serve(
        "call.html",
        "pcmu",
        "audio/PCMU",
        HangsUp::Sipua,
        false,
        "ws",
    );
}

#[test]
fn sipjs_in_chromium_calls_sipua_over_secure_websocket() {
    browser_calls_serve(
        "call.html",
        "pcmu",
        "audio/PCMU",
        HangsUp::Page,
        false,
        "wss",
    );
}

#[cfg(feature = "opus")]
#[test]
fn sipjs_in_chromium_calls_sipua_through_a_record_routing_kamailio_with_opus() {
    // Opus through the proxy, and sipua hangs up (its BYE follows the recorded route)
    browser_calls_serve(
        "call.html",
        "opus,pcmu",
        "audio/opus",
        HangsUp::Sipua,
        true,
        "ws",
    );
}

#[test]
fn sipjs_in_chromium_calls_sipua_through_a_record_routing_kamailio() {
    // the signalling goes browser -(WS)- Kamailio -(UDP)- sipua, the media straight
    browser_calls_serve("call.html", "pcmu", "audio/PCMU", HangsUp::Page, true, "ws");
}

#[test]
fn sipua_calls_a_sipjs_page_registered_at_kamailio_and_hangs_up() {
    sipua_calls_a_page_registered_at_kamailio("call.html", true, false, false);
}

#[test]
fn sipua_calls_a_jssip_page_registered_at_kamailio_and_hangs_up() {
    // JsSIP answers with its own media handling (no hold: JsSIP's page answers re-INVITEs
    // too, but one renegotiation test is SIP.js's)
    sipua_calls_a_page_registered_at_kamailio("jssip.html", false, false, false);
}

#[test]
fn sipua_calls_a_sipjs_page_registered_over_wss_and_the_page_hangs_up() {
    // the page registers over secure WebSocket at Kamailio, and this time it sends the BYE
    sipua_calls_a_page_registered_at_kamailio("call.html", false, true, true);
}

/// The page (`call.html`, SIP.js, or `jssip.html`) registers at Kamailio over WebSocket (or
/// secure WebSocket, `wss`) and answers; `sipua call --webrtc` reaches it through Kamailio,
/// plays 440 Hz (holding and resuming the call when `hold`) and records the page's 1000 Hz;
/// sipua hangs up after 3 s, or the page does (`page_hangs_up`).
fn sipua_calls_a_page_registered_at_kamailio(
    page: &str,
    hold: bool,
    wss: bool,
    page_hangs_up: bool,
) {
    let dir = TempDir::new(&format!("browser-callee-{page}-{wss}-{page_hangs_up}"));
    let mic = dir.join("mic.wav");
    write_wav(&mic, &tone(1000.0, 10.0));
    let ours = dir.join("ours.wav");
    write_wav(&ours, &tone(440.0, 10.0));
    let recorded = dir.join("recorded.wav");
    // a Kamailio of each test's own (they run at once)
    let name = format!("browser-callee-{}-{wss}", page.trim_end_matches(".html"));
    let k = if wss {
        Kamailio::start_with(&name, &["OPEN_RELAY", "WITH_TLS"])
    } else {
        Kamailio::start_with(&name, &["OPEN_RELAY"])
    };
    let server = if wss {
        format!("wss://127.0.0.1:{}", k.wss_port)
    } else {
        format!("ws://127.0.0.1:{}", k.ws_port)
    };
    let web = Web::start();
    // the page registers over Kamailio's WebSocket listener and answers the first call
    let user = format!("page{}", free_udp_port());
    let url = format!(
        "http://127.0.0.1:{}/{page}?mode=answer&ws={server}&user={user}&listen=3&hangup={}",
        web.port,
        if page_hangs_up { "page" } else { "peer" }
    );
    let (_browser, browser_out) = chromium(&url, &mic, &dir.join("profile"));
    let context = |call: &str| {
        format!(
            "page events:\n{}\nsipua call:\n{call}\nkamailio:\n{}\nchromium:\n{}",
            web.events(),
            k.out.text(),
            browser_out.text()
        )
    };
    assert!(web.wait_for("registered", 20.0), "{}", context(""));
    // sipua offers WebRTC through Kamailio (its INVITE, 1.7 KB, goes over TCP), plays 440 Hz,
    // records, and hangs up after 3 s
    let (mut call, call_out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["call", &format!("sip:{user}@127.0.0.1")])
            .args(["--proxy", &format!("127.0.0.1:{}", k.sip_port)])
            .args([
                "--from-addr",
                "udp:127.0.0.1:0",
                "--webrtc",
                "--duration",
                if page_hangs_up { "30" } else { "3" },
            ])
            // it holds and resumes the page by re-INVITE (a WebRTC renegotiation)
            .args(hold.then_some("--hold"))
            .arg("--play")
            .arg(&ours)
            .arg("--record")
            .arg(&recorded),
    );
    let status = wait_exit(&mut call, 30.0);
    let text = call_out.text();
    assert!(status.is_some_and(|s| s.success()), "{}", context(&text));
    if page_hangs_up {
        assert!(text.contains("the peer hung up"), "{}", context(&text));
    } else {
        assert!(text.contains("BYE: 200 OK"), "{}", context(&text));
    }
    assert!(
        !hold || text.contains("hold: ok") && text.contains("unhold: ok"),
        "{}",
        context(&text)
    );
    assert!(web.wait_for("terminated", 10.0), "{}", context(&text));
    let events = web.events();
    let bye = if page_hangs_up {
        "EVENT bye-sent result=ok"
    } else {
        "EVENT bye-received"
    };
    assert!(events.contains(bye), "{}", context(&text));
    assert_page_heard(&events, 440, &|| context(&text));
    let samples = read_wav(&recorded);
    assert_tone(
        "sipua's recording of the page",
        &samples,
        1000.0,
        1.5,
        &|| context(&text),
    );
}

#[test]
fn a_page_that_closes_its_connection_without_bye_ends_the_call_in_sipua() {
    // a closed tab sends no BYE: its peer connection closes (DTLS close_notify), and sipua
    // ends the session itself, with BYE and the reason
    let dir = TempDir::new("browser-leaves");
    let mic = dir.join("mic.wav");
    write_wav(&mic, &tone(1000.0, 10.0));
    let port = free_tcp_port();
    let (_served, out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &format!("ws:127.0.0.1:{port}")])
            .args(["--lifetime", "60", "--echo"]),
    );
    assert!(out.wait_for("listening on", 10.0), "{}", out.text());
    let web = Web::start();
    let url = format!(
        "http://127.0.0.1:{}/call.html?ws=ws://127.0.0.1:{port}\
         &target=sip:bob@127.0.0.1:{port};transport=ws&listen=2&hangup=peer&leave=1",
        web.port
    );
    let (_browser, browser_out) = chromium(&url, &mic, &dir.join("profile"));
    let context = || {
        format!(
            "page events:\n{}\nsipua serve:\n{}\nchromium:\n{}",
            web.events(),
            out.text(),
            browser_out.text()
        )
    };
    assert!(web.wait_for("left", 20.0), "{}", context());
    assert!(
        out.wait_for("the peer closed its WebRTC connection)", 10.0)
            && out.text().contains(": terminated (media failed: "),
        "{}",
        context()
    );
    // and the page heard sipua's BYE
    assert!(web.wait_for("bye-received", 10.0), "{}", context());
}

#[test]
fn jssip_in_chromium_calls_sipua_over_websocket_with_audio_both_ways() {
    // JsSIP's page: loaded through its own `require`, DTMF by RFC 2833, it hangs up
    browser_calls_serve(
        "jssip.html",
        "pcmu",
        "audio/PCMU",
        HangsUp::Page,
        false,
        "ws",
    );
}

/// `sipua serve --web`: the softphone page it serves (SIP.js from the npm package) calls the
/// process's echo over WebSocket from a real browser, sends DTMF and hangs up; sipua hears
/// the browser's microphone and the digits.
#[test]
fn the_softphone_page_of_serve_web_calls_its_echo() {
    let dir = TempDir::new("browser-softphone");
    let mic = dir.join("mic.wav");
    write_wav(&mic, &tone(1000.0, 10.0));
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    let (port, web_port) = (free_tcp_port(), free_tcp_port());
    let sipjs = Path::new(SIPJS_LIB).parent().unwrap();
    let (mut served, out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &format!("ws:127.0.0.1:{port}")])
            .args(["--lifetime", "60", "--echo", "--codecs", "pcmu"])
            .args(["--web", &format!("127.0.0.1:{web_port}"), "--sipjs"])
            .arg(sipjs)
            .arg("--record-dir")
            .arg(&records),
    );
    assert!(
        out.wait_for("softphone page: http://", 10.0),
        "{}",
        out.text()
    );
    let text = out.text();
    let page = text
        .lines()
        .find_map(|l| l.strip_prefix("softphone page: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(page, format!("http://127.0.0.1:{web_port}/"));
    let (_browser, browser_out) = chromium(
        &format!("{page}?call=1&hangup=4&dtmf=42&raw=1"),
        &mic,
        &dir.join("profile"),
    );
    let context = || {
        format!(
            "sipua serve:\n{}\nchromium:\n{}",
            out.text(),
            browser_out.text()
        )
    };
    assert!(
        out.wait_for("terminated (the peer hung up)", 30.0),
        "{}",
        context()
    );
    assert!(out.wait_for(": media at the end:", 5.0), "{}", context());
    terminate(&mut served);
    assert!(
        out.text().contains("INVITE from sip:web@127.0.0.1"),
        "{}",
        context()
    );
    assert_eq!(sipua_dtmf(&out.text()), "42", "{}", context());
    assert_no_loss(&out.text(), &context);
    let recorded = read_wav(&only_file(&records));
    assert_tone(
        "sipua's recording of the page",
        &recorded,
        1000.0,
        2.0,
        &context,
    );
}
