//! `sipua transfer` and `sipua subscribe` against `sipua serve`, as a user runs them: a blind
//! and an attended transfer between three programs (the transferee is a `serve`, which
//! follows REFERs; the target another `serve`, which sees the replaced call end), and a
//! presence subscription to a `serve`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Serve {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Waits up to 10 s for a line containing `text`.
    fn wait_for(&self, text: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.lines.lock().unwrap().iter().any(|l| l.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// `sipua serve --no-media` on a free UDP port, its output collected.
fn serve() -> Serve {
    for _ in 0..5 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args([
                "serve",
                "--listen",
                &format!("udp:127.0.0.1:{port}"),
                "--no-media",
                "--lifetime",
                "30",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = BufReader::new(child.stdout.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let s = Serve { child, port, lines };
        if s.wait_for("listening on") {
            return s;
        }
    }
    panic!("sipua serve did not start");
}

fn sipua(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn blind_transfer_between_three_programs() {
    let (bob, carol) = (serve(), serve());
    let (ok, text) = sipua(&[
        "transfer",
        &format!("sip:bob@127.0.0.1:{}", bob.port),
        &format!("sip:carol@127.0.0.1:{}", carol.port),
        "--duration",
        "0.2",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("REFER: 202 Accepted"), "{text}");
    assert!(text.contains("transfer: 100 Trying"), "{text}");
    assert!(text.contains("transfer: 200 OK"), "{text}");
    // Bob followed the REFER and his call to Carol is up
    assert!(bob.wait_for("REFER to sip:carol@"), "{}", bob.output());
    assert!(
        bob.wait_for(&format!(
            "transfer to sip:carol@127.0.0.1:{}: Established",
            carol.port
        )),
        "{}",
        bob.output()
    );
    assert!(carol.wait_for("Established"), "{}", carol.output());
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    let (bob, carol) = (serve(), serve());
    let (ok, text) = sipua(&[
        "transfer",
        &format!("sip:bob@127.0.0.1:{}", bob.port),
        &format!("sip:carol@127.0.0.1:{}", carol.port),
        "--attended",
        "--duration",
        "0.2",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("consultation: Established"), "{text}");
    assert!(text.contains("transfer: 200 OK"), "{text}");
    // Carol's consultation call was replaced by Bob's
    assert!(
        bob.wait_for("the transfer replaces call"),
        "{}",
        bob.output()
    );
    assert!(
        carol.wait_for("terminated (replaced by a transferred call)"),
        "{}",
        carol.output()
    );
}

#[test]
fn a_transfer_to_nobody_reports_the_failure() {
    let bob = serve();
    // a target that refuses every call
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut busy = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "serve",
            "--listen",
            &format!("udp:127.0.0.1:{port}"),
            "--no-media",
            "--answer",
            "busy",
            "--lifetime",
            "30",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, text) = sipua(&[
        "transfer",
        &format!("sip:bob@127.0.0.1:{}", bob.port),
        &format!("sip:carol@127.0.0.1:{port}"),
        "--duration",
        "0.2",
    ]);
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(!ok, "{text}");
    assert!(text.contains("transfer: 486 Busy Here"), "{text}");
}

#[test]
fn subscribe_to_presence_prints_the_notify() {
    let bob = serve();
    let (ok, text) = sipua(&[
        "subscribe",
        &format!("sip:bob@127.0.0.1:{}", bob.port),
        "--duration",
        "0.5",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("NOTIFY (active;expires="), "{text}");
    assert!(text.contains("<basic>open</basic>"), "{text}");
    assert!(text.contains("unsubscribed"), "{text}");
    // a package serve does not serve is refused
    let (ok, text) = sipua(&[
        "subscribe",
        &format!("sip:bob@127.0.0.1:{}", bob.port),
        "--event",
        "dialog",
        "--duration",
        "0.5",
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("489"), "{text}");
}
