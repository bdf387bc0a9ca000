//! `sipua serve --threads N`: one UDP socket shared by N agents, each on a core of its own and
//! owning the calls whose Call-ID hashes to it. A single peer address (one SIPp, one proxy)
//! is the case that matters: the kernel would put all of it on one socket.

use crate::common::*;
use crate::sipp::{counters, sipp, sipp_scenario};
use std::process::{Command, Stdio};

/// `serve --threads 3` on a fresh port, printing per call.
fn serve_threads(extra: &[&str]) -> (Killed, Output, u16) {
    let port = free_udp_port();
    let (serve, out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &format!("udp:127.0.0.1:{port}")])
            .args(["--threads", "3", "--lifetime", "60", "--no-media"])
            .args(extra),
    );
    assert!(out.wait_for("listening on", 10.0), "{}", out.text());
    assert!(out.wait_for("3 threads", 1.0), "{}", out.text());
    (serve, out, port)
}

#[test]
fn three_threads_answer_every_call_of_one_sipp() {
    let (_serve, out, port) = serve_threads(&[]);
    let run = sipp()
        .args(["-sn", "uac", &format!("127.0.0.1:{port}")])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args([
            "-m",
            "300",
            "-r",
            "100",
            "-timeout",
            "40",
            "-timeout_error",
            "-nostdin",
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(counters(&text), (300, 0), "{text}\n{}", out.text());
    // every call was answered once, whichever thread owned it
    assert_eq!(
        out.text().matches(": INVITE from").count(),
        300,
        "{}",
        out.text()
    );
}

#[test]
fn each_thread_hangs_up_its_calls_and_hears_the_answer_to_its_bye() {
    // the BYE goes out from the thread that owns the call; its 200 must come back to it
    let (_serve, out, port) = serve_threads(&["--hangup-after", "0.2"]);
    let call = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(["call", &format!("sip:service@127.0.0.1:{port}")])
        .args(["--from-addr", &format!("udp:127.0.0.1:{}", free_udp_port())])
        .args([
            "--calls",
            "30",
            "--rate",
            "30",
            "--duration",
            "5",
            "--no-media",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&call.stdout);
    assert!(
        text.contains("calls: 30 successful, 0 failed"),
        "{text}\n{}",
        out.text()
    );
    assert!(
        wait_until(5.0, || out.text().matches(": BYE: 200 OK").count() == 30),
        "{}",
        out.text()
    );
}

#[test]
fn a_drained_three_thread_serve_carries_every_call_to_its_end() {
    // the first thread reads the socket for all: it must run until the others' calls end
    let (mut serve, out, port) = serve_threads(&["--drain", "20"]);
    let (mut uac, uac_out) = spawn(
        sipp()
            .args(["-sn", "uac", "-d", "2000"])
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args(["-m", "30", "-r", "100", "-timeout", "30", "-nostdin"])
            .arg(format!("127.0.0.1:{port}")),
    );
    assert!(
        wait_until(10.0, || out.text().matches(": Established").count() >= 30),
        "{}",
        out.text()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    let status = wait_exit(&mut serve, 15.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        out.text()
    );
    assert!(
        out.text()
            .contains("drained (0 calls hung up at the deadline)"),
        "{}",
        out.text()
    );
    wait_exit(&mut uac, 20.0);
    assert_eq!(counters(&uac_out.text()), (30, 0), "{}", uac_out.text());
    assert_eq!(
        out.text().matches("terminated (the peer hung up)").count(),
        30,
        "{}",
        out.text()
    );
}

#[test]
fn while_draining_every_thread_answers_503_even_one_with_no_call() {
    // one call, so at most one of three threads has one: the others must still answer the
    // probes that hash to them until every thread is drained
    let (mut serve, out, port) = serve_threads(&["--drain", "20"]);
    let (mut uac, _) = spawn(
        sipp()
            .args(["-sn", "uac", "-d", "3000"])
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args(["-m", "1", "-timeout", "30", "-nostdin"])
            .arg(format!("127.0.0.1:{port}")),
    );
    assert!(out.wait_for(": Established", 10.0), "{}", out.text());
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    assert!(out.wait_for("draining", 5.0), "{}", out.text());
    // probes with twelve Call-IDs: every thread gets some
    for i in 0..12 {
        let probe = format!(
            "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bK-probe-{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{i}\r\n\
             To: <sip:bob@127.0.0.1>\r\nCall-ID: probe-{i}\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(
            crate::signals::status_of(&probe, port),
            Some(503),
            "probe {i}\n{}",
            out.text()
        );
    }
    let status = wait_exit(&mut serve, 15.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        out.text()
    );
    wait_exit(&mut uac, 10.0);
}

#[test]
fn sipjs_clients_over_websocket_are_spread_over_every_thread() {
    // each thread's agent listens on the WebSocket port (SO_REUSEPORT): the kernel hands each
    // new connection to one of them, and that connection's calls stay there
    let port = free_tcp_port();
    let (mut serve, out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &format!("ws:127.0.0.1:{port}")])
            .args(["--threads", "3", "--lifetime", "60", "--no-media"]),
    );
    assert!(out.wait_for("3 threads", 10.0), "{}", out.text());
    assert!(
        out.text()
            .contains(&format!("listening on ws:127.0.0.1:{port}")),
        "{}",
        out.text()
    );
    // twelve SIP.js clients, each on a connection of its own, one call each
    let target = format!("sip:bob@127.0.0.1:{port};transport=ws");
    let server = format!("ws://127.0.0.1:{port}");
    let clients: Vec<_> = (0..12)
        .map(|_| {
            crate::matrix_node::peer(
                "sipjs",
                &["call", &target, "--server", &server, "--hangup-after", "1"],
            )
        })
        .collect();
    for (mut child, text) in clients {
        wait_exit(&mut child, 30.0);
        let t = text.text();
        assert!(
            t.contains("EVENT established") && t.contains("EVENT bye-sent"),
            "{t}\n{}",
            out.text()
        );
    }
    terminate(&mut serve);
    let text = out.text();
    let per: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("calls per thread: "))
        .unwrap_or_else(|| panic!("no per-thread count:\n{text}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(per.len(), 3, "{text}");
    assert_eq!(per.iter().sum::<u64>(), 12, "{text}");
    // all twelve on one of three threads: about one run in 30 000 by chance
    assert!(
        per.iter().filter(|&&n| n > 0).count() >= 2,
        "the connections were not spread: {per:?}\n{text}"
    );
    assert_eq!(text.matches(": Established").count(), 12, "{text}");
}

#[test]
fn webrtc_calls_too_large_for_udp_stay_with_the_thread_that_took_their_connection() {
    // a WebRTC offer makes an INVITE of about 1.7 KB: it goes over TCP (RFC 3261 §18.1.1),
    // to whichever thread accepted the connection, while the small BYE comes over UDP and
    // must reach the same thread, whatever its Call-ID's hash says
    let port = free_udp_port();
    let (_serve, out) = spawn(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &format!("udp:127.0.0.1:{port}")])
            .args(["--threads", "3", "--lifetime", "60", "--echo"]),
    );
    assert!(out.wait_for("3 threads", 10.0), "{}", out.text());
    let call = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(["call", &format!("sip:service@127.0.0.1:{port}")])
        .args(["--from-addr", &format!("udp:127.0.0.1:{}", free_udp_port())])
        .args([
            "--webrtc",
            "--calls",
            "12",
            "--rate",
            "12",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&call.stdout);
    assert!(
        text.contains("calls: 12 successful, 0 failed"),
        "{text}\n{}",
        String::from_utf8_lossy(&call.stderr)
    );
    // and the media went through ICE and DTLS-SRTP both ways on every call
    assert!(text.contains("0 calls heard nothing"), "{text}");
    assert!(
        wait_until(5.0, || out
            .text()
            .matches("terminated (the peer hung up)")
            .count()
            == 12),
        "{}",
        out.text()
    );
}

/// How many `status` responses SIPp's last screen in `out` says it received.
fn received(out: &str, status: &str) -> u32 {
    let label = format!("{status} <----------");
    out.lines()
        .rev()
        .find(|l| l.contains(&label))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_call_rate_limit_is_the_whole_servers_not_each_threads() {
    // --max-cps 6 over three threads: each takes 2 a second of the calls hashed to it, so
    // the server takes about 6 a second (a second's worth at once, then the rate), not 18
    let (_serve, out, port) = serve_threads(&["--answer", "busy", "--max-cps", "6", "--oc"]);
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/sipp/overload_control.xml"
    );
    let run = sipp_scenario(scenario, port)
        .args(["-m", "90", "-r", "30"])
        .args(["-timeout", "30", "-timeout_error", "-nostdin"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(counters(&text), (90, 0), "{text}\n{}", out.text());
    let (taken, refused) = (received(&text, "486"), received(&text, "503"));
    assert_eq!(taken + refused, 90, "{text}");
    // 3 s of offer: 6 at once and 6 a second at most, whatever the hash's spread
    assert!(
        (6..=26).contains(&taken),
        "{taken} taken, {refused} refused\n{text}"
    );
}
