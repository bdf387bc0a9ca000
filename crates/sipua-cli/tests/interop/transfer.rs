//! Call transfer (REFER, RFC 3515; Replaces, RFC 3891) and subscriptions (RFC 6665) against
//! PJSIP (PyPI `pjsua2-python`, driven by `pjsua/peer.py`) and SIPp (Debian `sip-tester`), on
//! loopback. sipua takes every role: transferor (`sipua transfer`, blind and attended),
//! transferee (`sipua serve` follows the REFERs it gets), target of an attended transfer
//! (`sipua serve` lets an INVITE with Replaces take over a call) and notifier (`sipua serve`
//! answers presence subscriptions). Each test checks what both sides printed and how they
//! exited; PJSIP logs every SIP message (log level 4) and SIPp writes a message trace, both
//! shown when a test fails. A missing peer is a failure, not a skip: `scripts/test` installs
//! them all.

use crate::common::*;
use crate::sipp::{counters, sipp};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

/// The arguments every PJSIP peer gets: SIP messages in its output, a bounded lifetime.
const PEER: [&str; 4] = ["--log-level", "4", "--timeout", "20"];

fn sipua() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
}

/// `sipua serve --no-media` on a free loopback port, stopped when dropped.
struct Serve {
    _child: Killed,
    out: Output,
    port: u16,
}

impl Serve {
    fn start() -> Serve {
        for _ in 0..5 {
            let port = free_udp_port();
            let (child, out) = spawn(sipua().args([
                "serve",
                "--listen",
                &format!("udp:127.0.0.1:{port}"),
                "--no-media",
                "--lifetime",
                "40",
            ]));
            wait_until(10.0, || {
                let t = out.text();
                t.contains("listening on") || t.contains("error:")
            });
            if out.text().contains("listening on") {
                return Serve {
                    _child: child,
                    out,
                    port,
                };
            }
            // the port was taken in the meantime: another one
        }
        panic!("sipua serve did not start");
    }

    fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    /// Waits up to 10 s for `pattern` in its output.
    fn wait_for(&self, pattern: &str) -> bool {
        self.out.wait_for(pattern, 10.0)
    }

    fn text(&self) -> String {
        self.out.text()
    }
}

/// Runs `sipua transfer` with `args` (and `--timeout 10`) to its end, for at most 20 s: its
/// exit status (`None` if it had to be killed) and what it printed.
fn transfer(args: &[&str]) -> (Option<ExitStatus>, String) {
    let (mut child, out) = spawn(sipua().arg("transfer").args(args).args(["--timeout", "10"]));
    let status = wait_exit(&mut child, 20.0);
    (status, out.text())
}

fn exited_0(status: Option<ExitStatus>) -> bool {
    status.is_some_and(|s| s.success())
}

/// Whether a line of `text` starts with `start` and contains each of `parts`.
fn has_line(text: &str, start: &str, parts: &[&str]) -> bool {
    text.lines()
        .any(|l| l.starts_with(start) && parts.iter().all(|p| l.contains(p)))
}

/// The Call-ID of the first call `sipua serve` printed an INVITE from `from` for
/// (`call <Call-ID>: INVITE from <from> to ...`).
fn call_id_of_invite_from(printed: &str, from: &str) -> Option<String> {
    printed.lines().find_map(|l| {
        let (label, rest) = l.split_once(": INVITE from ")?;
        if !rest.starts_with(from) {
            return None;
        }
        label.strip_prefix("call ").map(str::to_owned)
    })
}

/// A SIPp message trace (`-trace_msg`) and error log (`-trace_err`) for one test, in a
/// directory that is removed when the test passes and kept when it fails.
struct Trace(PathBuf);

impl Trace {
    fn new(name: &str) -> Trace {
        let dir = std::env::temp_dir().join(format!(
            "sipua-interop-transfer-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Trace(dir)
    }

    /// The SIPp arguments that write the trace here.
    fn args(&self) -> Vec<String> {
        let file = |n: &str| self.0.join(n).to_string_lossy().into_owned();
        vec![
            "-trace_msg".into(),
            "-message_file".into(),
            file("messages.log"),
            "-trace_err".into(),
            "-error_file".into(),
            file("errors.log"),
        ]
    }

    fn text(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.0.join(n)).unwrap_or_default();
        format!(
            "SIPp errors ({}):\n{}\nSIPp messages:\n{}",
            self.0.display(),
            read("errors.log"),
            read("messages.log")
        )
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// SIPp with our scenario `file` (in `tests/interop/sipp/`) for one call on loopback, bounded
/// to 20 s, tracing into `trace`, with `args` (the remote address or `-p PORT`, `-key`s...).
fn start_sipp(file: &str, trace: &Trace, args: &[&str]) -> (Killed, Output) {
    let scenario = format!("{}/tests/interop/sipp/{file}", env!("CARGO_MANIFEST_DIR"));
    spawn(
        sipp()
            .args(["-sf", &scenario, "-i", "127.0.0.1"])
            .args(args)
            .args(["-m", "1", "-timeout", "20", "-timeout_error", "-nostdin"])
            .args(trace.args()),
    )
}

// ---------------------------------------------------------------------------------------------
// PJSIP

#[test]
fn pjsua_follows_a_blind_transfer_from_sipua_transfer() {
    // sipua calls pjsua and refers it to Carol (a sipua serve); pjsua calls Carol and reports
    // the progress in NOTIFYs; sipua hangs up once Carol answered, pjsua 2 s into the new call
    let carol = Serve::start();
    let (mut peer, peer_out, pjsua) =
        pjsua_peer(&[&PEER[..], &["--answer", "--duration", "2"]].concat());
    let target = carol.uri("carol");
    let (status, printed) = transfer(&[&pjsua, &target, "--duration", "0.3"]);
    let peer_status = wait_exit(&mut peer, 10.0);
    let context = || {
        format!(
            "sipua transfer ({status:?}):\n{printed}\nsipua serve (Carol):\n{}\npeer.py \
             ({peer_status:?}):\n{}",
            carol.text(),
            peer_out.text()
        )
    };
    assert!(exited_0(status), "{}", context());
    assert!(printed.contains("REFER: 202 Accepted"), "{}", context());
    assert!(printed.contains("transfer: 100 Trying"), "{}", context());
    assert!(printed.contains("transfer: 200 OK"), "{}", context());
    assert!(
        printed.contains("call: terminated (we hung up)"),
        "{}",
        context()
    );
    // PJSIP followed the REFER: a second call, to Carol, established
    let pj = peer_out.text();
    assert!(
        has_line(&pj, "XFER-REQUEST call=0 to", &[&format!("<{target}>")]),
        "{}",
        context()
    );
    assert!(
        has_line(&pj, "CONFIRMED call=1 remote", &[&target]),
        "{}",
        context()
    );
    assert!(has_line(&pj, "DISCONNECTED call=0", &[]), "{}", context());
    assert!(exited_0(peer_status), "{}", context());
    assert!(
        carol.wait_for("INVITE from sip:pjsua@127.0.0.1"),
        "{}",
        context()
    );
    assert!(carol.wait_for(": Established"), "{}", context());
    assert!(
        carol.wait_for("terminated (the peer hung up)"),
        "{}",
        context()
    );
}

#[test]
fn sipua_serve_follows_a_blind_transfer_from_pjsua() {
    // pjsua calls Bob (a sipua serve) and transfers him to Carol (another) with
    // Call::xfer(); Bob calls Carol and NOTIFYs pjsua, which hangs up on the final 200
    let (bob, carol) = (Serve::start(), Serve::start());
    let target = carol.uri("carol");
    let (mut peer, peer_out, _) =
        pjsua_peer(&[&PEER[..], &[&bob.uri("bob"), "--xfer", &target]].concat());
    let peer_status = wait_exit(&mut peer, 20.0);
    let context = || {
        format!(
            "peer.py ({peer_status:?}):\n{}\nsipua serve (Bob):\n{}\nsipua serve (Carol):\n{}",
            peer_out.text(),
            bob.text(),
            carol.text()
        )
    };
    assert!(exited_0(peer_status), "{}", context());
    let pj = peer_out.text();
    assert!(has_line(&pj, "XFER call=0 to", &[&target]), "{}", context());
    // onCallTransferStatus: the progress and the final report, 200
    assert!(
        has_line(&pj, "XFER-STATUS call=0 100", &["progress"]),
        "{}",
        context()
    );
    assert!(
        has_line(&pj, "XFER-STATUS call=0 200", &["final"]),
        "{}",
        context()
    );
    assert!(has_line(&pj, "HANGUP call=0", &[]), "{}", context());
    assert!(
        bob.wait_for(&format!(": REFER to {target}")),
        "{}",
        context()
    );
    assert!(
        bob.wait_for(&format!("transfer to {target}: Established")),
        "{}",
        context()
    );
    assert!(
        bob.wait_for("terminated (the peer hung up)"),
        "{}",
        context()
    );
    assert!(
        carol.wait_for("INVITE from sip:sipua@127.0.0.1"),
        "{}",
        context()
    );
    assert!(carol.wait_for(": Established"), "{}", context());
}

#[test]
fn sipua_serve_takes_an_attended_transfer_from_pjsua_with_replaces() {
    // pjsua calls A and B (both sipua serve), then Call::xferReplaces(): A is referred to B
    // with Replaces naming pjsua's call with B; A's INVITE with Replaces takes that call over
    // at B, which ends its call with pjsua; A NOTIFYs pjsua the 200
    let (a, b) = (Serve::start(), Serve::start());
    let (mut peer, peer_out, _) = pjsua_peer(
        &[
            &PEER[..],
            &[&a.uri("alice"), &b.uri("bob"), "--xfer-replaces"],
        ]
        .concat(),
    );
    let peer_status = wait_exit(&mut peer, 20.0);
    let context = || {
        format!(
            "peer.py ({peer_status:?}):\n{}\nsipua serve (A, transferee):\n{}\nsipua serve (B, \
             target):\n{}",
            peer_out.text(),
            a.text(),
            b.text()
        )
    };
    assert!(exited_0(peer_status), "{}", context());
    let pj = peer_out.text();
    assert!(
        has_line(&pj, "XFER call=0 to the peer of call=1", &[]),
        "{}",
        context()
    );
    assert!(
        has_line(&pj, "XFER-STATUS call=0 200", &["final"]),
        "{}",
        context()
    );
    // B hung up the call it had with pjsua: replaced
    assert!(has_line(&pj, "DISCONNECTED call=1", &[]), "{}", context());
    assert!(!has_line(&pj, "HANGUP call=1", &[]), "{}", context());
    let replaced = call_id_of_invite_from(&b.text(), "sip:pjsua@")
        .unwrap_or_else(|| panic!("no call from pjsua at B\n{}", context()));
    assert!(
        a.wait_for(&format!("the transfer replaces call {replaced};")),
        "{}",
        context()
    );
    assert!(
        a.wait_for(&format!("transfer to {}: Established", b.uri("bob"))),
        "{}",
        context()
    );
    assert!(
        b.wait_for(&format!(
            "call {replaced}: terminated (replaced by a transferred call)"
        )),
        "{}",
        context()
    );
    assert!(
        b.wait_for("INVITE from sip:sipua@127.0.0.1"),
        "{}",
        context()
    );
}

#[test]
fn pjsua_takes_an_attended_transfer_from_sipua_transfer_with_replaces() {
    // sipua calls pjsua 1, then pjsua 2 (the consultation), then refers pjsua 1 to pjsua 2
    // with Replaces naming the consultation: pjsua 2 gets an INVITE with Replaces from
    // pjsua 1 and ends the consultation; both hang up 2 s into their calls
    let (mut p1, p1_out, uri1) =
        pjsua_peer(&[&PEER[..], &["--answer", "--duration", "2"]].concat());
    let (mut p2, p2_out, uri2) =
        pjsua_peer(&[&PEER[..], &["--answer", "--duration", "2"]].concat());
    let (status, printed) = transfer(&[&uri1, &uri2, "--attended", "--duration", "0.3"]);
    let p1_status = wait_exit(&mut p1, 10.0);
    let p2_status = wait_exit(&mut p2, 10.0);
    let context = || {
        format!(
            "sipua transfer ({status:?}):\n{printed}\npeer.py 1 ({p1_status:?}):\n{}\npeer.py 2 \
             ({p2_status:?}):\n{}",
            p1_out.text(),
            p2_out.text()
        )
    };
    assert!(exited_0(status), "{}", context());
    assert!(
        printed.contains("consultation: Established"),
        "{}",
        context()
    );
    assert!(printed.contains("REFER: 202 Accepted"), "{}", context());
    assert!(printed.contains("transfer: 200 OK"), "{}", context());
    // pjsua 2 ended the consultation when the transferred call replaced it
    assert!(
        printed.contains("consultation: terminated (the peer hung up)"),
        "{}",
        context()
    );
    let (pj1, pj2) = (p1_out.text(), p2_out.text());
    assert!(
        has_line(
            &pj1,
            "XFER-REQUEST call=0 to",
            &[&format!("<{uri2}?Replaces=")]
        ),
        "{}",
        context()
    );
    assert!(has_line(&pj1, "CONFIRMED call=1", &[]), "{}", context());
    assert!(
        has_line(&pj2, "REPLACED call=0 by call=1", &[]),
        "{}",
        context()
    );
    assert!(has_line(&pj2, "CONFIRMED call=1", &[]), "{}", context());
    assert!(has_line(&pj2, "DISCONNECTED call=0", &[]), "{}", context());
    assert!(exited_0(p1_status), "{}", context());
    assert!(exited_0(p2_status), "{}", context());
}

// ---------------------------------------------------------------------------------------------
// SIPp

#[test]
fn sipp_transfers_sipua_serve_and_gets_refer_notifys() {
    // refer_uac.xml: SIPp calls Bob, REFERs him to Carol and checks the two sipfrag NOTIFYs
    // (100 Trying active, 200 OK terminated) before its BYE
    let (bob, carol) = (Serve::start(), Serve::start());
    let trace = Trace::new("refer-uac");
    let target = carol.uri("carol");
    let (mut uac, uac_out) = start_sipp(
        "refer_uac.xml",
        &trace,
        &[
            &format!("127.0.0.1:{}", bob.port),
            "-p",
            &free_udp_port().to_string(),
            "-key",
            "refer_to",
            &target,
        ],
    );
    let status = wait_exit(&mut uac, 25.0);
    let context = || {
        format!(
            "SIPp ({status:?}):\n{}\n{}\nsipua serve (Bob):\n{}\nsipua serve (Carol):\n{}",
            uac_out.text(),
            trace.text(),
            bob.text(),
            carol.text()
        )
    };
    assert_eq!(counters(&uac_out.text()), (1, 0), "{}", context());
    assert!(exited_0(status), "{}", context());
    assert!(
        bob.wait_for(&format!(": REFER to {target}")),
        "{}",
        context()
    );
    assert!(
        bob.wait_for(&format!("transfer to {target}: Established")),
        "{}",
        context()
    );
    assert!(
        bob.wait_for("terminated (the peer hung up)"),
        "{}",
        context()
    );
    assert!(carol.wait_for(": Established"), "{}", context());
}

#[test]
fn sipua_transfer_refers_a_sipp_transferee_and_follows_its_notifys() {
    // refer_uas.xml: SIPp answers, takes the REFER (202), reports 100 Trying and 200 OK in
    // NOTIFYs of its own and expects sipua's BYE
    let trace = Trace::new("refer-uas");
    let port = free_udp_port();
    let (mut uas, uas_out) = start_sipp("refer_uas.xml", &trace, &["-p", &port.to_string()]);
    // SIPp is up once it holds its port
    wait_until(5.0, || UdpSocket::bind(("127.0.0.1", port)).is_err());
    let (status, printed) = transfer(&[
        &format!("sip:bob@127.0.0.1:{port}"),
        "sip:carol@127.0.0.1:9",
        "--duration",
        "0.2",
    ]);
    let uas_status = wait_exit(&mut uas, 10.0);
    let context = || {
        format!(
            "sipua transfer ({status:?}):\n{printed}\nSIPp ({uas_status:?}):\n{}\n{}",
            uas_out.text(),
            trace.text()
        )
    };
    assert!(exited_0(status), "{}", context());
    assert!(printed.contains("REFER: 202 Accepted"), "{}", context());
    assert!(printed.contains("transfer: 100 Trying"), "{}", context());
    assert!(printed.contains("transfer: 200 OK"), "{}", context());
    assert!(
        printed.contains("call: terminated (we hung up)"),
        "{}",
        context()
    );
    assert_eq!(counters(&uas_out.text()), (1, 0), "{}", context());
    assert!(exited_0(uas_status), "{}", context());
}

#[test]
fn sipp_subscribes_to_presence_of_sipua_serve_refreshes_and_unsubscribes() {
    // subscribe_presence.xml: SUBSCRIBE -> 200 -> NOTIFY active with a PIDF -> a refresh in
    // the dialog (Expires: 300) -> 200 -> NOTIFY active -> SUBSCRIBE Expires: 0 -> 200 ->
    // NOTIFY terminated
    let bob = Serve::start();
    let trace = Trace::new("subscribe");
    let (mut uac, uac_out) = start_sipp(
        "subscribe_presence.xml",
        &trace,
        &[
            &format!("127.0.0.1:{}", bob.port),
            "-s",
            "bob",
            "-p",
            &free_udp_port().to_string(),
        ],
    );
    let status = wait_exit(&mut uac, 25.0);
    let context = || {
        format!(
            "SIPp ({status:?}):\n{}\n{}\nsipua serve:\n{}",
            uac_out.text(),
            trace.text(),
            bob.text()
        )
    };
    assert_eq!(counters(&uac_out.text()), (1, 0), "{}", context());
    assert!(exited_0(status), "{}", context());
    assert!(
        bob.wait_for("SUBSCRIBE presence from sip:sipp@127.0.0.1"),
        "{}",
        context()
    );
}
