//! The PJSIP rows of the interop matrix (see `matrix.rs`), over UDP and TCP: PJSIP's own
//! stack through its Python binding (`pjsua/peer.py`), calling `sipua serve` or answering
//! `sipua call`, holding and unholding, sending its MESSAGE inside the call, and hanging up
//! or waiting for our BYE; through Kamailio it names the proxy as its outbound proxy.

use crate::common::*;
use crate::kamailio::Kamailio;
use crate::matrix::*;

fn judge_peer(out: &str, exited_ok: bool, caller: bool, cell: &Cell) -> Outcome {
    Outcome {
        setup: out.contains("CONFIRMED call=0"),
        hold: if caller {
            out.contains("HOLD-OK call=0") && out.contains("UNHOLD-OK call=0")
        } else {
            out.contains("REINVITE-RX call=0 sendonly")
                && out.contains("REINVITE-RX call=0 sendrecv")
        },
        message: if caller {
            out.contains("MESSAGE-TX 200")
        } else {
            out.contains("MESSAGE-RX")
        },
        bye: exited_ok
            && if cell.sipua_hangs_up {
                out.contains("DISCONNECTED call=0")
            } else {
                out.contains("HANGUP call=0") && out.contains("DISCONNECTED call=0 200")
            },
        log: out.to_owned(),
        note: String::new(),
    }
}

fn cell(c: &Cell, k: &Kamailio) -> Result<Outcome, NotApplicable> {
    let param = match c.transport {
        "udp" => String::new(),
        t => format!(";transport={t}"),
    };
    let proxy_port = if c.transport == "tls" {
        k.tls_port
    } else {
        k.sip_port
    };
    let proxy_uri = format!("sip:127.0.0.1:{proxy_port}{param}");
    let port = free_udp_port().to_string();
    let (cert, key) = test_certificate();
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut args: Vec<&str> = vec![
        "--transport",
        c.transport,
        "--port",
        &port,
        "--timeout",
        "40",
    ];
    if c.transport == "tls" {
        args.extend_from_slice(&["--cert", &cert, "--key", &key, "--ca", &cert]);
    }
    if c.via_proxy {
        args.extend_from_slice(&["--proxy", &proxy_uri]);
    }
    if !c.sipua_hangs_up {
        args.extend_from_slice(&["--duration", "1"]);
    }
    if c.sipua_calls {
        args.push("--answer");
        let (mut peer, peer_out, uri) = pjsua_peer(&args);
        let (ok, out) = call(&uri, c, c.via_proxy.then_some(k), false);
        let exited = wait_exit(&mut peer, 15.0).is_some_and(|s| s.success());
        Ok(both(
            judge_call(ok, &out, c),
            judge_peer(&peer_out.text(), exited, false, c),
        ))
    } else {
        let sipua_port = free_udp_port();
        let (_serve, served) = serve(c.transport, sipua_port, c.sipua_hangs_up.then_some(1.5));
        let target = format!("sip:bob@127.0.0.1:{sipua_port}{param}");
        args.extend_from_slice(&[
            "--hold",
            "--message",
            "hello from pjsip",
            "--message-in-call",
            &target,
        ]);
        let (mut peer, peer_out, _) = pjsua_peer(&args);
        let exited = wait_exit(&mut peer, 45.0).is_some_and(|s| s.success());
        let ours = judge_serve_when_done(&served, c);
        Ok(both(ours, judge_peer(&peer_out.text(), exited, true, c)))
    }
}

fn matrix(transport: &'static str) {
    let k = proxy(&format!("matrix-pjsip-{transport}"));
    let version = format!("PJSIP {}; proxy {}", pjsua_version(), kamailio_version());
    run_cells(
        &format!("PJSIP {}", transport.to_uppercase()),
        &version,
        &Cell::all(transport),
        |c| cell(c, &k),
    );
}

#[test]
fn matrix_pjsip_udp() {
    matrix("udp");
}

#[test]
fn matrix_pjsip_tcp() {
    matrix("tcp");
}

#[test]
fn matrix_pjsip_tls() {
    matrix("tls");
}

/// The installed pjsua2-python package's version (PJSIP's own, with a packaging suffix).
fn pjsua_version() -> String {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('pjsua2-python'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .split(".post")
            .next()
            .unwrap_or("?")
            .to_owned(),
        _ => "?".into(),
    }
}
