//! One `sipua serve` listening on UDP, TLS and WSS at once (one user agent with
//! `also_listen`): SIPp calls it over UDP, SIP.js (in Node) over WSS and PJSIP over TLS, all
//! in the same run, each call answered on the listener it came in on and hung up by the
//! caller with a BYE to the Contact sipua gave it.

use std::process::Command;

use crate::common::{free_udp_port, pjsua_peer, spawn, test_certificate, wait_exit};
use crate::matrix_node::peer;
use crate::sipp::{counters, sipp};

#[test]
fn sipp_over_udp_sipjs_over_wss_and_pjsip_over_tls_call_one_serve() {
    let (udp, tls, wss) = (free_udp_port(), free_udp_port(), free_udp_port());
    let (cert, key) = test_certificate();
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let (_serve, served) = spawn(Command::new(env!("CARGO_BIN_EXE_sipua")).args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{udp}"),
        "--listen",
        &format!("tls:127.0.0.1:{tls}"),
        "--listen",
        &format!("wss:127.0.0.1:{wss}"),
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &cert,
        "--no-media",
        "--lifetime",
        "60",
    ]));
    assert!(
        served.wait_for(&format!("listening on wss:127.0.0.1:{wss}"), 10.0),
        "sipua serve did not start:\n{}",
        served.text()
    );
    let text = served.text();
    for l in [
        format!("udp:127.0.0.1:{udp}"),
        format!("tls:127.0.0.1:{tls}"),
    ] {
        assert!(text.contains(&format!("listening on {l}")), "{text}");
    }

    // SIP.js over WSS and PJSIP over TLS call while SIPp calls over UDP
    let target = format!("sip:bob@127.0.0.1:{wss};transport=wss");
    let server = format!("wss://127.0.0.1:{wss}");
    let (mut sipjs, sipjs_out) = peer(
        "sipjs",
        &[
            "call",
            &target,
            "--server",
            &server,
            "--ca",
            &cert,
            "--hangup-after",
            "2",
        ],
    );
    let pj_port = free_udp_port().to_string();
    let pj_target = format!("sip:bob@127.0.0.1:{tls};transport=tls");
    let (mut pjsua, pjsua_out, _) = pjsua_peer(&[
        "--transport",
        "tls",
        "--port",
        &pj_port,
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &cert,
        "--timeout",
        "40",
        "--duration",
        "2",
        &pj_target,
    ]);
    let out = sipp()
        .args(["-sn", "uac", &format!("127.0.0.1:{udp}"), "-t", "u1"])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-m", "20", "-r", "10", "-timeout", "30", "-timeout_error"])
        .arg("-nostdin")
        .output()
        .unwrap();
    let sipp_text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&sipp_text), (20, 0), "{sipp_text}");

    let sipjs_ok = wait_exit(&mut sipjs, 30.0).is_some_and(|s| s.success());
    let sipjs_text = sipjs_out.text();
    assert!(
        sipjs_ok && sipjs_text.contains("EVENT established"),
        "SIP.js over WSS:\n{sipjs_text}\nserve:\n{}",
        served.text()
    );
    let pjsua_ok = wait_exit(&mut pjsua, 30.0).is_some_and(|s| s.success());
    let pjsua_text = pjsua_out.text();
    assert!(
        pjsua_ok
            && pjsua_text.contains("CONFIRMED call=0")
            && pjsua_text.contains("DISCONNECTED call=0 200"),
        "PJSIP over TLS:\n{pjsua_text}\nserve:\n{}",
        served.text()
    );
}
