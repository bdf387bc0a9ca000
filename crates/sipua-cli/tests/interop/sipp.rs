//! Interop with SIPp (Debian `sip-tester`), on loopback: its built-in `uac` against `sipua serve`,
//! and `sipua call` against its built-in `uas`. SIPp missing is a failure, not a skip:
//! `scripts/test` installs it.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sipp() -> Command {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "SIPp is not installed (apt-get install sip-tester; scripts/test does it)"
    );
    Command::new("sipp")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sipua serve` on `port`, stopped when the returned guard drops.
fn serve(port: u16) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "serve",
            "--listen",
            &format!("udp:127.0.0.1:{port}"),
            "--lifetime",
            "60",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Killed(child)
}

fn counters(out: &str) -> (u32, u32) {
    let count = |label: &str| {
        out.lines()
            .rev()
            .find(|l| l.contains(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("Successful call"), count("Failed call"))
}

#[test]
fn sipp_uac_calls_sipua_serve_200_times_at_50_per_second() {
    let port = free_udp_port();
    let _serve = serve(port);
    let out = sipp()
        .args([
            "-sn",
            "uac",
            &format!("127.0.0.1:{port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
        ])
        .args(["-m", "200", "-r", "50", "-timeout", "40", "-nostdin"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&text), (200, 0), "{text}");
    assert!(out.status.success(), "sipp exit {:?}", out.status);
}

#[test]
fn sipua_call_reaches_sipp_uas() {
    let port = free_udp_port();
    let _uas = Killed(
        sipp()
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "call",
            &format!("sip:service@127.0.0.1:{port}"),
            "--duration",
            "0.2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("200 OK"), "{text}");
    assert!(text.contains("BYE: 200 OK"), "{text}");
}

#[test]
fn a_lost_ack_makes_sipua_retransmit_its_200_then_send_bye() {
    // SIPp never ACKs; sipua must repeat its 200 for 64*T1 (32 s) and then hang up with BYE
    let port = free_udp_port();
    let _serve = serve(port);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sipp/uac_no_ack.xml");
    let out = sipp()
        .args([
            "-sf",
            scenario,
            &format!("127.0.0.1:{port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
        ])
        .args(["-m", "1", "-timeout", "60", "-nostdin"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&text), (1, 0), "{text}");
}
