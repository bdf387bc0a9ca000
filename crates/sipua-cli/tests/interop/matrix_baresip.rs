//! The baresip rows of the interop matrix (see `matrix.rs`), over UDP and TCP. baresip is
//! driven through its ctrl_tcp socket: `dial`, `hold`, `resume`, `message` (to the first
//! entry of its contacts file) and `hangup`; what it did is read from its events
//! (`CALL_ESTABLISHED`, `CALL_REMOTE_SDP` per answered offer, `CALL_CLOSED`) and from its SIP
//! trace (`-s`). Through Kamailio, baresip's account names the proxy as its outbound proxy.
//! baresip 1.0 sends a MESSAGE to a URI over UDP only, so over TCP its MESSAGE goes to a UDP
//! listener of the same `sipua serve`.

use std::process::Command;

use crate::baresip::Baresip;
use crate::common::*;
use crate::kamailio::Kamailio;
use crate::matrix::*;

/// How many traced requests of baresip's log are re-INVITEs received with `direction`.
fn traced_reinvites(log: &str, direction: &str) -> usize {
    log.split("\u{1b}[;m")
        .filter(|m| {
            m.contains("INVITE sip:")
                && m.lines().any(|l| {
                    l.starts_with("CSeq:")
                        && l.trim_end().ends_with(" INVITE")
                        && !l.contains(" 1 ")
                })
                && m.lines().any(|l| l.trim() == format!("a={direction}"))
                && !m.contains("SIP/2.0 200")
        })
        .count()
}

/// Whether the trace holds a 200 to a BYE (sent or received).
fn traced_bye_200(log: &str) -> bool {
    log.split("\u{1b}[;m").any(|m| {
        m.contains("SIP/2.0 200 ")
            && m.lines()
                .any(|l| l.starts_with("CSeq:") && l.trim_end().ends_with(" BYE"))
    })
}

fn outbound(c: &Cell, k: &Kamailio) -> String {
    match c.transport {
        "tcp" => format!(";outbound=\"sip:127.0.0.1:{};transport=tcp\"", k.sip_port),
        "tls" => format!(";outbound=\"sip:127.0.0.1:{};transport=tls\"", k.tls_port),
        _ => format!(";outbound=\"sip:127.0.0.1:{}\"", k.sip_port),
    }
}

fn cell(c: &Cell, k: &Kamailio) -> Result<Outcome, NotApplicable> {
    let tls = c.transport == "tls";
    let param = match c.transport {
        "udp" => String::new(),
        t => format!(";transport={t}"),
    };
    if c.sipua_calls {
        let bs = Baresip::start_with("", None, tls);
        let mut ctrl = bs.ctrl();
        // baresip's TLS listener is at its SIP port + 1
        let port = bs.sip_port + u16::from(tls);
        let uri = format!("sip:baresip@127.0.0.1:{port}{param}");
        let mut cmd = sipua();
        let duration = if c.sipua_hangs_up { "2" } else { "30" };
        let from = c.transport;
        cmd.args([
            "call",
            &uri,
            "--from-addr",
            &format!("{from}:127.0.0.1:0"),
            "--no-media",
            "--hold",
            "--message-out",
            "hello from sipua",
            "--duration",
            duration,
            "--answer-timeout",
            "15",
        ]);
        if c.via_proxy {
            let port = if tls { k.tls_port } else { k.sip_port };
            cmd.args(["--proxy", &format!("127.0.0.1:{port}")]);
        }
        if tls {
            // trust baresip's certificate, and listen so that it can send us its BYE
            let (cert, key) = test_certificate();
            cmd.arg("--ca").arg(&cert);
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let (mut child, out) = spawn(&mut cmd);
        if !c.sipua_hangs_up && out.wait_for("MESSAGE: ", 20.0) {
            ctrl.send("hangup", "");
        }
        let status = wait_exit(&mut child, 40.0);
        let ok = status.is_some_and(|s| s.success());
        let text = out.text();
        let ours = judge_call(ok, &text, c);
        if c.sipua_hangs_up {
            bs.out
                .wait_for("session closed: Connection reset by peer", 3.0);
        }
        wait_until(3.0, || traced_bye_200(&bs.log()));
        let log = bs.log();
        let theirs = Outcome {
            setup: log.contains("Call established"),
            hold: traced_reinvites(&log, "sendonly") >= 1
                && traced_reinvites(&log, "sendrecv") >= 1,
            message: log.contains("hello from sipua"),
            bye: traced_bye_200(&log)
                && (!c.sipua_hangs_up || log.contains("Connection reset by peer")),
            log: format!("ctrl_tcp:\n{}\nbaresip:\n{log}", ctrl.transcript()),
            note: "MESSAGE beside the call (to baresip's user)".into(),
        };
        Ok(both(ours, theirs))
    } else {
        let port = free_udp_port();
        let (_serve, served) = {
            let mut cmd = sipua();
            cmd.args([
                "serve",
                "--listen",
                &format!("{}:127.0.0.1:{port}", c.transport),
                "--lifetime",
                "60",
                "--no-media",
            ]);
            if c.transport != "udp" {
                // baresip 1.0 sends its MESSAGE to a URI over UDP only
                cmd.args(["--listen", &format!("udp:127.0.0.1:{}", free_udp_port())]);
            }
            if tls {
                let (cert, key) = test_certificate();
                cmd.arg("--ca").arg(&cert);
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            if c.sipua_hangs_up {
                cmd.args(["--hangup-after", "3"]);
            }
            let (child, out) = spawn(&mut cmd);
            assert!(out.wait_for("listening on", 10.0), "{}", out.text());
            (child, out)
        };
        let message_to = served
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("listening on udp:"))
            .map(|a| format!("sip:bob@{a}"))
            .next_back()
            .unwrap_or_else(|| format!("sip:bob@127.0.0.1:{port}"));
        let params = if c.via_proxy {
            outbound(c, k)
        } else {
            String::new()
        };
        let bs = Baresip::start_with(&params, Some(&message_to), tls);
        let mut ctrl = bs.ctrl();
        ctrl.send("dial", &format!("sip:bob@127.0.0.1:{port}{param}"));
        let established = ctrl.wait_for("CALL_ESTABLISHED", 15.0);
        let mut held = false;
        if established {
            // the 200 of the INVITE was the first answer; each re-INVITE's 200 another
            ctrl.wait_count("CALL_REMOTE_SDP", 1, 5.0);
            ctrl.send("hold", "");
            held = ctrl.wait_count("CALL_REMOTE_SDP", 2, 5.0);
            ctrl.send("resume", "");
            held &= ctrl.wait_count("CALL_REMOTE_SDP", 3, 5.0);
            ctrl.send("message", "hello from baresip");
            served.wait_for("MESSAGE from", 5.0);
            if !c.sipua_hangs_up {
                ctrl.send("hangup", "");
            }
        }
        let closed = ctrl.wait_for("CALL_CLOSED", 10.0);
        let ours = judge_serve_when_done(&served, c);
        // baresip reports the call closed as it sends its BYE; the 200 is traced after
        wait_until(3.0, || traced_bye_200(&bs.log()));
        let log = bs.log();
        let theirs = Outcome {
            setup: established,
            hold: held,
            message: log.contains("hello from baresip"),
            bye: closed && traced_bye_200(&log),
            log: format!("ctrl_tcp:\n{}\nbaresip:\n{log}", ctrl.transcript()),
            note: if c.transport != "udp" {
                format!(
                    "MESSAGE beside the call, over UDP (baresip 1.0 sends none to a URI over {})",
                    c.transport.to_uppercase()
                )
            } else {
                "MESSAGE beside the call".into()
            },
        };
        Ok(both(ours, theirs))
    }
}

fn baresip_version() -> String {
    // `baresip -h` prints no version; the package does
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "baresip-core"])
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            format!("baresip {}", String::from_utf8_lossy(&o.stdout))
        }
        _ => "baresip".into(),
    }
}

fn matrix(transport: &'static str) {
    let k = proxy(&format!("matrix-baresip-{transport}"));
    let version = format!("{}; proxy {}", baresip_version(), kamailio_version());
    run_cells(
        &format!("baresip {}", transport.to_uppercase()),
        &version,
        &Cell::all(transport),
        |c| cell(c, &k),
    );
}

#[test]
fn matrix_baresip_udp() {
    matrix("udp");
}

#[test]
fn matrix_baresip_tcp() {
    matrix("tcp");
}

#[test]
fn matrix_baresip_tls() {
    matrix("tls");
}
