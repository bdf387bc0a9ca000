//! `sipua serve` and `sipua call` against each other, over every transport, as a user runs
//! them: serve makes its own certificate for TLS and WSS and prints where it is; call trusts
//! it with `--ca`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "support/ports.rs"]
mod ports;
use ports::free_udp_port as free_port;

/// Starts `sipua serve` on `transport` and returns it with the lines it printed up to
/// "listening on".
fn serve(transport: &str, port: u16) -> (Killed, Vec<String>) {
    serve_with(transport, port, &[])
}

/// [`serve`] with more arguments.
fn serve_with(transport: &str, port: u16, extra: &[&str]) -> (Killed, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "serve",
            "--listen",
            &format!("{transport}:127.0.0.1:{port}"),
            "--lifetime",
            "20",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    // keep draining so serve never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), seen)
}

fn call_over(transport: &str) {
    // a port picked free can be taken by a parallel test before serve binds it: try again
    let (port, _serve, lines) = (0..5)
        .map(|_| {
            let port = free_port();
            let (child, lines) = serve(transport, port);
            (port, child, lines)
        })
        .find(|(_, _, lines)| lines.last().is_some_and(|l| l.starts_with("listening on")))
        .expect("sipua serve starts");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipua"));
    cmd.args([
        "call",
        &format!("sip:bob@127.0.0.1:{port}"),
        "--transport",
        transport,
        "--duration",
        "0.2",
        "--from",
        "\"Alice\" <sip:alice@example.com>",
    ]);
    if let Some(pem) = lines
        .iter()
        .find_map(|l| l.strip_prefix("self-signed certificate: "))
    {
        cmd.args(["--ca", pem.split(' ').next().unwrap()]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transport}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("call: Established"), "{text}");
    assert!(text.contains("BYE: 200 OK"), "{text}");
}

#[test]
fn call_over_udp() {
    call_over("udp");
}

#[test]
fn call_over_tcp() {
    call_over("tcp");
}

#[test]
fn call_over_tls() {
    call_over("tls");
}

#[test]
fn call_over_ws() {
    call_over("ws");
}

#[test]
fn call_over_wss() {
    call_over("wss");
}

#[test]
fn an_unanswered_call_is_cancelled_after_answer_timeout() {
    let port = free_port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sipua"));
    serve.args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--answer",
        "ring:30",
        "--lifetime",
        "20",
    ]);
    let _serve = Killed(serve.stdout(Stdio::null()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "call",
            &format!("sip:bob@127.0.0.1:{port}"),
            "--answer-timeout",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("180 Ringing"), "{text}");
    assert!(err.contains("no answer within 1 s: cancelled"), "{err}");
    assert!(
        text.contains("terminated (487 Request Terminated)"),
        "{text}"
    );
}

/// Without `--ca`, a TLS call trusts the platform's roots: refused for serve's self-signed
/// certificate, accepted once the platform's store (here `SSL_CERT_FILE`) holds it.
#[test]
fn without_ca_tls_verifies_against_the_platform_roots() {
    let (port, _serve, lines) = (0..5)
        .map(|_| {
            let port = free_port();
            let (child, lines) = serve("tls", port);
            (port, child, lines)
        })
        .find(|(_, _, lines)| lines.last().is_some_and(|l| l.starts_with("listening on")))
        .expect("sipua serve starts");
    let pem = lines
        .iter()
        .find_map(|l| l.strip_prefix("self-signed certificate: "))
        .and_then(|l| l.split(' ').next())
        .expect("the certificate's path")
        .to_owned();
    // without SSL_CERT_FILE: the system's store, which cannot hold a certificate made a
    // moment ago
    let (ok, text) = tls_call_in(port, &[], None);
    assert!(!ok, "{text}");
    assert!(text.contains("could not be sent"), "{text}");
    // refused for the certificate (or, on a machine without any roots, for having none)
    assert!(
        text.contains("certificate") || text.contains("no trusted roots"),
        "{text}"
    );
    let (ok, text) = tls_call_in(port, &[], Some(("SSL_CERT_FILE", &pem)));
    assert!(ok, "{text}");
    assert!(text.contains("BYE: 200 OK"), "{text}");
}

/// `sipua call` over TLS to `port` with `extra` arguments: whether it exited 0, and what it
/// printed.
fn tls_call(port: u16, extra: &[&str]) -> (bool, String) {
    tls_call_in(port, extra, None)
}

/// [`tls_call`] with one more environment variable.
fn tls_call_in(port: u16, extra: &[&str], env: Option<(&str, &str)>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipua"));
    cmd.args([
        "call",
        &format!("sip:bob@127.0.0.1:{port};transport=tls"),
        "--from-addr",
        "tls:127.0.0.1:0",
        "--duration",
        "0.2",
        "--no-media",
    ])
    .args(extra);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn insecure_calls_a_server_whose_certificate_cannot_be_checked_and_says_so() {
    let port = free_port();
    let (_serve, lines) = serve("tls", port);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    let (ok, text) = tls_call(port, &["--insecure"]);
    assert!(ok && text.contains("BYE: 200 OK"), "{text}");
    assert!(text.contains("warning: --insecure"), "{text}");
    // and --insecure with --ca is a usage error, not a silent choice
    let (ok, text) = tls_call(port, &["--insecure", "--ca", "/dev/null"]);
    assert!(!ok && text.contains("cannot be used with"), "{text}");
}

#[test]
fn serve_with_a_client_ca_takes_only_callers_that_present_a_certificate_it_trusts() {
    let dir = std::env::temp_dir().join(format!("sipua-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, host: &str| {
        let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    };
    let (server_cert, server_key) = write("server", "127.0.0.1");
    let (client_cert, client_key) = write("alice", "alice.example");
    let (other_cert, other_key) = write("mallory", "mallory.example");
    let port = free_port();
    let (_serve, lines) = serve_with(
        "tls",
        port,
        &[
            "--cert",
            &server_cert,
            "--key",
            &server_key,
            "--client-ca",
            &client_cert,
        ],
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    let (ok, text) = tls_call(
        port,
        &[
            "--ca",
            &server_cert,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ],
    );
    assert!(ok && text.contains("BYE: 200 OK"), "{text}");
    for extra in [
        vec!["--ca", &server_cert],
        vec![
            "--ca",
            &server_cert,
            "--cert",
            &other_cert,
            "--key",
            &other_key,
        ],
    ] {
        let start = std::time::Instant::now();
        let (ok, text) = tls_call(port, &extra);
        assert!(
            !ok && text.contains("could not be sent"),
            "{extra:?}: {text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sipua OPTIONS call` of 0.3 s, without media, to serve on UDP `port`.
fn short_call(port: u16, options: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(options)
        .args(["call", &format!("sip:bob@127.0.0.1:{port}")])
        .args(["--duration", "0.3", "--no-media"])
        .output()
        .unwrap()
}

#[test]
fn trace_prints_every_message_and_pcap_is_read_back_by_tshark() {
    assert!(
        Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is not installed (apt-get install tshark; scripts/test does it)"
    );
    let port = free_port();
    let (_serve, lines) = serve("udp", port);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    let pcap = std::env::temp_dir().join(format!("sipua-trace-{}.pcap", std::process::id()));
    let out = short_call(port, &["-v", "--trace", "--pcap", pcap.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    // --trace: each message with its direction, transport and peer
    for m in ["INVITE sip:bob@", "SIP/2.0 200 OK", "ACK sip:", "BYE sip:"] {
        assert!(text.contains(m), "{m}: {text}");
    }
    assert!(
        text.contains("sent UDP") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
    // -v: state changes on stderr
    assert!(
        err.contains("session state") && err.contains("Established"),
        "{err}"
    );
    // --pcap: tshark finds the INVITE, the 200s, the ACK and the BYE
    let read = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{fields}{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let rows: Vec<&str> = fields.lines().map(str::trim).collect();
    for want in ["INVITE", "ACK", "BYE"] {
        assert!(rows.contains(&want), "{want} in {rows:?}");
    }
    assert!(
        rows.iter().filter(|r| **r == "200").count() >= 2,
        "{rows:?}"
    );
    let _ = std::fs::remove_file(&pcap);
}

/// The chunks of a HEP v3 packet, by type (vendor 0).
fn hep_chunks(packet: &[u8]) -> std::collections::HashMap<u16, Vec<u8>> {
    assert_eq!(&packet[..4], b"HEP3");
    let total = u16::from_be_bytes([packet[4], packet[5]]) as usize;
    assert_eq!(total, packet.len());
    let mut chunks = std::collections::HashMap::new();
    let mut at = 6;
    while at + 6 <= packet.len() {
        let kind = u16::from_be_bytes([packet[at + 2], packet[at + 3]]);
        let len = u16::from_be_bytes([packet[at + 4], packet[at + 5]]) as usize;
        chunks.insert(kind, packet[at + 6..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, packet.len(), "chunks fill the packet");
    chunks
}

#[test]
fn hep_sends_every_message_to_a_homer_collector() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let hep = format!("udp:{}", collector.local_addr().unwrap());
    let port = free_port();
    let (_serve, lines) = serve("udp", port);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    let out = short_call(port, &["--hep", &hep]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while let Ok(n) = collector.recv(&mut buf) {
        let c = hep_chunks(&buf[..n]);
        assert_eq!(c[&1], [2], "IPv4");
        assert_eq!(c[&2], [17], "UDP");
        assert_eq!(c[&11], [1], "SIP");
        let payload = String::from_utf8(c[&15].clone()).unwrap();
        let call_id = payload
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap()
            .to_owned();
        assert_eq!(c[&17], call_id.as_bytes(), "the Call-ID correlates");
        let ports = (
            u16::from_be_bytes([c[&7][0], c[&7][1]]),
            u16::from_be_bytes([c[&8][0], c[&8][1]]),
        );
        seen.push((payload.lines().next().unwrap().to_owned(), ports));
    }
    let first = |m: &str| seen.iter().find(|(l, _)| l.starts_with(m)).map(|s| s.1);
    // the INVITE goes to serve's port, the 200 comes from it; ACK and BYE are there too
    assert_eq!(first("INVITE ").map(|p| p.1), Some(port), "{seen:?}");
    assert_eq!(first("SIP/2.0 200").map(|p| p.0), Some(port), "{seen:?}");
    assert!(
        first("ACK ").is_some() && first("BYE ").is_some(),
        "{seen:?}"
    );
}

#[test]
fn pcap_holds_the_calls_rtp_and_rtcp_beside_its_sip() {
    assert!(
        Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is not installed (apt-get install tshark; scripts/test does it)"
    );
    let port = free_port();
    let (_serve, lines) = serve_with("udp", port, &["--echo"]);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    let pcap = std::env::temp_dir().join(format!("sipua-rtp-{}.pcap", std::process::id()));
    // a call with audio (a tone, echoed back) for a second
    let out = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(["--pcap", pcap.to_str().unwrap()])
        .args(["call", &format!("sip:bob@127.0.0.1:{port}")])
        .args(["--duration", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // tshark reads the media as RTP (it follows the SDP of the SIP in the same capture)
    let read = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "rtp || rtcp || sip",
            "-T",
            "fields",
            "-e",
            "frame.protocols",
        ])
        .output()
        .unwrap();
    let protocols = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let count = |p: &str| {
        protocols
            .lines()
            .filter(|l| l.split(':').any(|x| x == p))
            .count()
    };
    // 50 packets a second each way, and the SIP of the call
    assert!(count("rtp") >= 60, "rtp {}: {protocols}", count("rtp"));
    assert!(count("sip") >= 5, "{protocols}");
    let _ = std::fs::remove_file(&pcap);
}
