//! The SIP.js and JsSIP rows of the interop matrix (see `matrix.rs`): the libraries run in
//! Node 20 (`node/peer.mjs`, installed by `scripts/test-deps` with `npm ci`) over WebSocket
//! (and secure WebSocket for SIP.js), as browsers run them. Straight, they call `sipua serve
//! --listen ws:` (`wss:`); through Kamailio they reach it over Kamailio's WebSocket listener,
//! and they register there to be called by `sipua call`. A WebSocket client cannot be called
//! straight (it accepts no connection): those cells are marked so.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::kamailio::Kamailio;
use crate::matrix::*;

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/node");

/// `node peer.mjs <lib> <args>`, gathered as it runs.
pub(crate) fn peer(lib: &str, args: &[&str]) -> (Killed, Output) {
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "node is not installed (apt-get install nodejs npm; scripts/test-deps does it)"
    );
    assert!(
        Path::new(NODE_DIR).join("node_modules/sip.js").exists(),
        "the Node peers are not installed: (cd {NODE_DIR} && npm ci); scripts/test-deps does it"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(NODE_DIR)
        .arg("peer.mjs")
        .arg(lib)
        .args(args)
        .args(["--lifetime", "40", "--timeout", "15"]);
    spawn(&mut cmd)
}

fn has(out: &str, event: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with(&format!("EVENT {event}")))
}

/// Whether the peer saw the BYE of the side that hung up: ours arrived, or its own got 200.
fn bye_seen(out: &str, cell: &Cell) -> bool {
    if cell.sipua_hangs_up {
        has(out, "bye-received")
    } else {
        out.lines()
            .any(|l| l.starts_with("EVENT bye-sent") && l.contains("status=200"))
    }
}

/// What the peer's events prove when it called.
fn judge_peer_caller(ok: bool, out: &str, cell: &Cell) -> Outcome {
    Outcome {
        setup: has(out, "established"),
        hold: has(out, "hold-ok") && has(out, "unhold-ok"),
        message: out.contains("EVENT message-sent") && out.contains("status=200"),
        bye: ok && bye_seen(out, cell),
        log: out.to_owned(),
        note: "MESSAGE beside the call".into(),
    }
}

/// What the peer's events prove when it answered.
fn judge_peer_callee(ok: bool, out: &str, cell: &Cell) -> Outcome {
    Outcome {
        setup: has(out, "established"),
        hold: out.contains("direction=sendonly") && out.contains("direction=sendrecv"),
        message: has(out, "message-received"),
        bye: ok && bye_seen(out, cell),
        log: out.to_owned(),
        note: String::new(),
    }
}

fn cell(lib: &str, c: &Cell, k: &Kamailio) -> Result<Outcome, NotApplicable> {
    // long enough for the hold, the unhold and the MESSAGE before the BYE
    let hangup = ["--hangup-after", "3"];
    if c.sipua_calls {
        if !c.via_proxy {
            return Err(NotApplicable(
                "a WebSocket client accepts no connection: called through a registrar",
            ));
        }
        // the peer registers at Kamailio over WebSocket; sipua calls its AoR there
        let user = format!("{lib}{}", free_udp_port());
        let server = kamailio_server(c, k);
        let ca = ca();
        let mut args = vec![
            "answer",
            "--server",
            &server,
            "--register",
            "--user",
            &user,
            "--password",
            "x",
            "--ca",
            &ca,
        ];
        if !c.sipua_hangs_up {
            args.extend_from_slice(&hangup);
        }
        let (mut p, out) = peer(lib, &args);
        if !out.wait_for("EVENT ready", 15.0) {
            return Ok(Outcome {
                log: format!("the peer did not register:\n{}", out.text()),
                ..Outcome::default()
            });
        }
        let (ok, text) = call(&format!("sip:{user}@127.0.0.1"), c, Some(k), false);
        let status = wait_exit(&mut p, 15.0);
        let ours = judge_call(ok, &text, c);
        let theirs = judge_peer_callee(status.is_some_and(|s| s.success()), &out.text(), c);
        Ok(both(ours, theirs))
    } else {
        // sipua answers: on its WebSocket listener, or on UDP behind Kamailio's
        let port = free_udp_port();
        let listen = if c.via_proxy { "udp" } else { c.transport };
        let hangup_after = c.sipua_hangs_up.then_some(3.0);
        let (_serve, serve_out) = serve(listen, port, hangup_after);
        let (server, target) = if c.via_proxy {
            (kamailio_server(c, k), format!("sip:bob@127.0.0.1:{port}"))
        } else {
            (
                format!("{}://127.0.0.1:{port}", c.transport),
                format!("sip:bob@127.0.0.1:{port};transport={}", c.transport),
            )
        };
        let ca = ca();
        let mut args = vec![
            "call",
            &target,
            "--server",
            &server,
            "--ca",
            &ca,
            "--hold",
            "--message",
            "hello from the peer",
        ];
        if !c.sipua_hangs_up {
            args.extend_from_slice(&hangup);
        }
        let (mut p, out) = peer(lib, &args);
        let status = wait_exit(&mut p, 45.0);
        let ours = judge_serve_when_done(&serve_out, c);
        let theirs = judge_peer_caller(status.is_some_and(|s| s.success()), &out.text(), c);
        Ok(both(ours, theirs))
    }
}

/// Kamailio's WebSocket listener for the cell's transport (`ws` or `wss`).
fn kamailio_server(c: &Cell, k: &Kamailio) -> String {
    if c.transport == "wss" {
        format!("wss://127.0.0.1:{}", k.wss_port)
    } else {
        format!("ws://127.0.0.1:{}", k.ws_port)
    }
}

/// The certificate every secure listener of the tests presents, for `--ca`.
fn ca() -> String {
    test_certificate().0.to_string_lossy().into_owned()
}

pub(crate) fn package_version(name: &str) -> String {
    let p = Path::new(NODE_DIR)
        .join("node_modules")
        .join(name)
        .join("package.json");
    let text = std::fs::read_to_string(p).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn matrix(lib: &str, name: &str, package: &str, transports: &[&'static str]) {
    let k = proxy(&format!("matrix-{lib}"));
    let node = version_of("node", &["--version"], "v");
    let version = format!(
        "{name} {} in Node {node}; proxy {}",
        package_version(package),
        kamailio_version()
    );
    let cells: Vec<Cell> = transports.iter().flat_map(|t| Cell::all(t)).collect();
    run_cells(name, &version, &cells, |c| cell(lib, c, &k));
}

#[test]
fn matrix_sipjs() {
    matrix("sipjs", "SIP.js", "sip.js", &["ws", "wss"]);
}

#[test]
fn matrix_jssip() {
    matrix("jssip", "JsSIP", "jssip", &["ws"]);
}
