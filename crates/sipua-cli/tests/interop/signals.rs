//! SIGTERM and SIGINT stop the long-running commands gracefully: `sipua serve` with 50 live
//! calls from SIPp hangs every one up (50 BYEs, each answered) and exits 0; `sipua call` hangs
//! its call up and exits 0; a second signal ends the process at once.

use std::process::Command;

use crate::common::*;
use crate::matrix::{serve, sipua};
use crate::sipp::{counters, sipp, ANSWER_200};

/// SIPp calls and then only waits for the callee's BYE (which [`wait_for_bye`] answers).
const CALL_THEN_BYE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller waiting for the callee's BYE">
  <send retrans="500"><![CDATA[
INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv request="BYE"/>
"#;

/// SIPp calls and then only waits for the callee's BYE, which it answers.
fn wait_for_bye() -> String {
    format!("{CALL_THEN_BYE}{ANSWER_200}</scenario>\n")
}

fn kill(child: &Killed, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status();
}

#[test]
fn sigterm_hangs_up_every_live_call_of_serve_and_exits_0() {
    let port = free_udp_port();
    let (mut serve, served) = serve("udp", port, None);
    let dir = std::env::temp_dir().join(format!("sipua-signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sf = dir.join("wait_for_bye.xml");
    std::fs::write(&sf, wait_for_bye()).unwrap();
    let (mut uac, uac_out) = spawn(
        sipp()
            .arg("-sf")
            .arg(&sf)
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args([
                "-m", "50", "-r", "100", "-l", "50", "-timeout", "40", "-nostdin",
            ])
            .arg(format!("127.0.0.1:{port}")),
    );
    let up = wait_until(15.0, || {
        served.text().matches(": Established").count() >= 50
    });
    assert!(up, "not all 50 calls came up:\n{}", served.text());
    let start = std::time::Instant::now();
    kill(&serve, "-TERM");
    let status = wait_exit(&mut serve, 15.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "serve exit {status:?} after SIGTERM:\n{}",
        served.text()
    );
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    assert_eq!(
        served.text().matches("terminated (we hung up)").count(),
        50,
        "{}",
        served.text()
    );
    let sipp_status = wait_exit(&mut uac, 15.0);
    uac_out.wait_closed(10.0);
    let (ok, failed) = counters(&uac_out.text());
    assert!(
        sipp_status.is_some_and(|s| s.success()) && ok == 50 && failed == 0,
        "SIPp: {ok} ok, {failed} failed:\n{}",
        uac_out.text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_hangs_up_the_call_of_sipua_call_and_exits_0() {
    let port = free_udp_port();
    let (_serve, served) = serve("udp", port, None);
    let (mut call, out) = spawn(sipua().args([
        "call",
        &format!("sip:bob@127.0.0.1:{port}"),
        "--no-media",
        "--duration",
        "60",
    ]));
    assert!(out.wait_for("call: Established", 10.0), "{}", out.text());
    kill(&call, "-INT");
    let status = wait_exit(&mut call, 10.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{}",
        out.text()
    );
    assert!(
        served.wait_for("terminated (the peer hung up)", 5.0),
        "{}",
        served.text()
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    // SIPp takes our BYE and never answers it: the graceful stop would wait for it (up to
    // the agent's 5 s grace); a second SIGTERM ends serve at once, with the signal's code
    let port = free_udp_port();
    let (mut serve, served) = serve("udp", port, None);
    let dir = std::env::temp_dir().join(format!("sipua-signals2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sf = dir.join("silent_bye.xml");
    let silent = wait_for_bye().replace(
        "  <recv request=\"BYE\"/>\n  <send><![CDATA[\nSIP/2.0 200 OK",
        "  <recv request=\"BYE\"/>\n  <pause milliseconds=\"20000\"/>\n  <send><![CDATA[\nSIP/2.0 200 OK",
    );
    assert_ne!(silent, wait_for_bye());
    std::fs::write(&sf, silent).unwrap();
    let (_uac, _) = spawn(
        sipp()
            .arg("-sf")
            .arg(&sf)
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args(["-m", "1", "-timeout", "30", "-nostdin"])
            .arg(format!("127.0.0.1:{port}")),
    );
    assert!(served.wait_for(": Established", 10.0), "{}", served.text());
    kill(&serve, "-TERM");
    assert!(
        served.wait_for("stopping gracefully", 5.0),
        "{}",
        served.text()
    );
    // the BYE is out and unanswered: serve is waiting
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(serve.0.try_wait().unwrap().is_none(), "{}", served.text());
    let start = std::time::Instant::now();
    kill(&serve, "-TERM");
    let status = wait_exit(&mut serve, 5.0);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(143),
        "{}",
        served.text()
    );
    assert!(
        start.elapsed().as_secs_f64() < 2.0,
        "took {:?}",
        start.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_certificate_serve_makes_is_private_and_removed_when_it_stops() {
    use std::os::unix::fs::PermissionsExt;
    let port = free_tcp_port();
    let (mut serve, served) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("tls:127.0.0.1:{port}"),
        "--lifetime",
        "30",
    ]));
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    let text = served.text();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("self-signed certificate: "))
        .and_then(|l| l.split(" (").next())
        .map(std::path::PathBuf::from)
        .expect("the certificate's path");
    assert!(path.exists(), "{}", path.display());
    let dir = path.parent().unwrap().to_owned();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    kill(&serve, "-TERM");
    let status = wait_exit(&mut serve, 10.0);
    assert!(status.is_some_and(|s| s.success()), "{}", served.text());
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Sends `request` (a SIP request's text with `{port}` for our port) from a fresh UDP
/// socket to `to`; the status of the first final response.
pub(crate) fn status_of(request: &str, to: u16) -> Option<u16> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    sock.send_to(
        request.replace("{port}", &port.to_string()).as_bytes(),
        ("127.0.0.1", to),
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        if status >= 200 {
            return Some(status);
        }
    }
}

#[test]
fn sigterm_with_drain_refuses_new_calls_and_probes_but_lets_live_calls_end() {
    let port = free_udp_port();
    let (mut serve, served) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--no-media",
        "--drain",
        "20",
        "--lifetime",
        "60",
    ]));
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    // SIPp's built-in uac: 5 calls, each hung up by SIPp after 3 s
    let (mut uac, uac_out) = spawn(
        sipp()
            .args(["-sn", "uac", "-d", "3000"])
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args([
                "-m", "5", "-r", "100", "-l", "5", "-timeout", "30", "-nostdin",
            ])
            .arg(format!("127.0.0.1:{port}")),
    );
    let up = wait_until(10.0, || served.text().matches(": Established").count() >= 5);
    assert!(up, "not all 5 calls came up:\n{}", served.text());
    let start = std::time::Instant::now();
    kill(&serve, "-TERM");
    assert!(served.wait_for("draining", 5.0), "{}", served.text());
    // a dispatcher's probe and a new call: 503 at once
    let options = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-drain-probe\r\n\
        Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:bob@127.0.0.1>\r\n\
        Call-ID: drain-probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status_of(options, port), Some(503));
    let invite = options
        .replace("OPTIONS", "INVITE")
        .replace("drain-probe", "drain-call")
        .replace(
            "Content-Length",
            "Contact: <sip:probe@127.0.0.1:{port}>\r\nContent-Length",
        );
    assert_eq!(status_of(&invite, port), Some(503));
    // the 5 calls end as SIPp hangs them up; then serve stops, long before the 20 s
    let status = wait_exit(&mut serve, 15.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "serve exit {status:?}:\n{}",
        served.text()
    );
    let took = start.elapsed();
    assert!(took.as_secs() < 10, "took {took:?}");
    assert!(
        served
            .text()
            .contains("drained (0 calls hung up at the deadline)"),
        "{}",
        served.text()
    );
    assert_eq!(
        served
            .text()
            .matches("terminated (the peer hung up)")
            .count(),
        5,
        "{}",
        served.text()
    );
    let sipp_status = wait_exit(&mut uac, 15.0);
    uac_out.wait_closed(10.0);
    let (ok, failed) = counters(&uac_out.text());
    assert!(
        sipp_status.is_some_and(|s| s.success()) && ok == 5 && failed == 0,
        "SIPp: {ok} ok, {failed} failed:\n{}",
        uac_out.text()
    );
}
