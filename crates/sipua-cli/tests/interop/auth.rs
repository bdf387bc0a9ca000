//! `sipua serve --require-auth` asks callers for digest credentials (RFC 3261 §22.4), tried
//! with SIPp as the caller: the right password gets the call through after a 401; a replayed
//! Authorization (same nonce and count) gets a fresh challenge, not a call; a caller that
//! keeps guessing gets 403 once it has failed 10 times; PJSIP answers the SHA-256 challenge.
//! Plus `sipua call --user/--password`.

use crate::common::*;
use crate::matrix::sipua;
use crate::sipp::{counters, sipp};

/// An INVITE with CSeq `cseq`, branch `branch`, `auth` (an `[authentication ...]` line or
/// nothing) and an SDP offer.
fn invite(auth: &str, branch: &str, cseq: u32) -> String {
    format!(
        r#"  <send retrans="500"><![CDATA[
INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
{auth}Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
]]></send>
"#
    )
}

/// The ACK of a final response to the INVITE of CSeq `cseq`: for a 2xx a new transaction
/// with the To tag, for a non-2xx the INVITE's own Via (RFC 3261 §17.1.1.3).
fn ack(cseq: u32, success: bool) -> String {
    let (via, to) = if success {
        (
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            "To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]",
        )
    } else {
        ("[last_Via:]", "[last_To:]")
    };
    format!(
        r#"  <send><![CDATA[
ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
{via}
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
{to}
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"#
    )
}

fn recv(status: u16, auth: bool) -> String {
    let auth = if auth { " auth=\"true\"" } else { "" };
    format!(
        "  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"180\" optional=\"true\"/>\n  <recv response=\"{status}\"{auth}/>\n"
    )
}

const BYE: &str = r#"  <send retrans="500"><![CDATA[
BYE sip:bob@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 9 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"#;

/// A call that authenticates with `password` after the first 401.
fn authenticated_call(password: &str) -> String {
    let auth = format!("[authentication username=alice password={password}]\n");
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"digest\">\n",
    );
    s += &invite("", "[branch]", 1);
    s += &recv(401, true);
    s += &ack(1, false);
    s += &invite(&auth, "[branch]", 2);
    s += &recv(200, false);
    s += &ack(2, true);
    s += BYE;
    s + "</scenario>\n"
}

/// A caller with the wrong password: 401, then 401 again for its credentials.
fn wrong_password() -> String {
    let auth = "[authentication username=alice password=guess]\n";
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"guess\">\n",
    );
    s += &invite("", "[branch]", 1);
    s += &recv(401, true);
    s += &ack(1, false);
    s += &invite(auth, "[branch]", 2);
    s += &recv(401, false);
    s += &ack(2, false);
    s + "</scenario>\n"
}

/// A caller refused outright: 403 to its first INVITE.
fn refused() -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"refused\">\n",
    );
    s += &invite("", "[branch]", 1);
    s += &recv(403, false);
    s += &ack(1, false);
    s + "</scenario>\n"
}

/// Runs `scenario` with SIPp from `ip` for `calls` calls against `port`; returns (ok, failed)
/// and SIPp's output.
fn run_sipp(name: &str, scenario: &str, ip: &str, calls: u32, port: u16) -> (u32, u32, String) {
    let dir = std::env::temp_dir().join(format!("sipua-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sf = dir.join(format!("{name}.xml"));
    std::fs::write(&sf, scenario).unwrap();
    let (mut uac, out) = spawn(
        sipp()
            .arg("-sf")
            .arg(&sf)
            .args(["-i", ip, "-p", &free_udp_port().to_string()])
            .args([
                "-m",
                &calls.to_string(),
                "-r",
                "10",
                "-timeout",
                "30",
                "-nostdin",
            ])
            .arg(format!("127.0.0.1:{port}")),
    );
    let _ = wait_exit(&mut uac, 40.0);
    out.wait_closed(10.0);
    let (ok, failed) = counters(&out.text());
    (ok, failed, out.text())
}

/// SIPp from `ip` makes `calls` calls to serve at `port` with the right password: every one
/// succeeds, and serve (whose output is `served`) has seen exactly that many INVITEs.
fn authenticated_calls_succeed(ip: &str, calls: u32, port: u16, served: &Output) {
    let (ok, failed, text) = run_sipp("call", &authenticated_call("secret"), ip, calls, port);
    let seen = served.text().matches("INVITE from").count();
    assert!(
        ok == calls && failed == 0 && seen == calls as usize,
        "{ok} ok, {failed} failed, {seen} seen\n{text}\n{}",
        served.text()
    );
}

fn serve_with_auth(port: u16) -> (Killed, Output) {
    let (child, out) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--lifetime",
        "60",
        "--no-media",
        "--require-auth",
        "alice:secret",
        "--realm",
        "example.com",
        // SIPp answers the first challenge whatever its algorithm, and knows only MD5
        "--auth-algorithms",
        "md5,sha-256",
    ]));
    assert!(out.wait_for("listening on", 10.0), "{}", out.text());
    (child, out)
}

#[test]
fn sipp_authenticates_to_serve() {
    let port = free_udp_port();
    let (_serve, served) = serve_with_auth(port);
    authenticated_calls_succeed("127.0.0.1", 3, port, &served);
    // what serve prints carries no credential
    assert!(!served.text().contains("secret") && !served.text().contains("response="));
}

/// Sends `text` from `socket` to serve and returns the first final response.
fn exchange(socket: &std::net::UdpSocket, port: u16, text: &str) -> sipua_message::Response {
    socket
        .send_to(text.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).expect("a response within 5 s");
        if let Ok(sipua_message::Message::Response(r)) = sipua_message::Message::parse(&buf[..n]) {
            if r.status() >= 200 {
                return r;
            }
        }
    }
}

#[test]
fn a_replayed_authorization_is_challenged_again_not_let_through() {
    use sipua_proto::auth::digest::{Challenge, RequestParts};
    let port = free_udp_port();
    let (_serve, served) = serve_with_auth(port);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let message = |branch: &str, cseq: u32, auth: &str| {
        format!(
            "MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=r1\r\nTo: <{uri}>\r\n\
             Call-ID: replay-{branch}\r\nCSeq: {cseq} MESSAGE\r\n{auth}\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
    };
    let challenge = exchange(&socket, port, &message("a", 1, ""));
    assert_eq!(challenge.status(), 401);
    let c = challenge
        .typed_all::<sipua_message::header::WwwAuthenticate>()
        .unwrap()
        .into_iter()
        .find_map(|w| Challenge::from_auth(&w.0).ok())
        .unwrap();
    let parts = RequestParts {
        method: "MESSAGE",
        uri: &uri,
        body: b"hi",
    };
    let auth = format!(
        "Authorization: {}\r\n",
        c.answer(&parts, "alice", "secret", "c0ffee", 1)
    );
    assert_eq!(
        exchange(&socket, port, &message("b", 2, &auth)).status(),
        200
    );
    // the same credentials on another request: a replay, challenged afresh (stale)
    let replay = exchange(&socket, port, &message("c", 3, &auth));
    assert_eq!(replay.status(), 401, "{replay:?}");
    let text = replay.to_string();
    assert!(text.contains("stale=true"), "{text}");
    assert!(served.wait_for("MESSAGE from", 5.0));
    assert_eq!(
        served.text().matches("MESSAGE from").count(),
        1,
        "{}",
        served.text()
    );
}

#[test]
fn guessing_passwords_gets_403_after_ten_failures_and_others_still_get_in() {
    let port = free_udp_port();
    let (_serve, served) = serve_with_auth(port);
    let (ok, failed, text) = run_sipp("guess", &wrong_password(), "127.0.0.1", 10, port);
    assert!(ok == 10 && failed == 0, "{ok} ok, {failed} failed\n{text}");
    // the 11th attempt from that address is refused before any check
    let (ok, _, text) = run_sipp("refused", &refused(), "127.0.0.1", 1, port);
    assert_eq!(ok, 1, "{text}");
    // a caller from another address is not locked out
    authenticated_calls_succeed("127.0.0.2", 1, port, &served);
}

#[test]
fn sipua_call_with_a_password_reaches_serve_and_without_one_does_not() {
    let port = free_udp_port();
    let (_serve, _served) = serve_with_auth(port);
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let out = sipua()
        .args(["call", &uri, "--no-media", "--duration", "0.5"])
        .args(["--user", "alice", "--password", "secret"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Established"),
        "{text}"
    );
    let out = sipua()
        .args(["call", &uri, "--no-media", "--duration", "0.5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("401"), "{text}");
}

#[test]
fn pjsua_authenticates_to_serve_with_sha_256() {
    // serve offers SHA-256 first (RFC 8760); PJSIP takes it, and its trace hides the response
    let port = free_udp_port();
    let (_serve, served) = spawn(sipua().args([
        "--trace",
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--lifetime",
        "60",
        "--no-media",
        "--require-auth",
        "alice:secret",
    ]));
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    let target = format!("sip:bob@127.0.0.1:{port}");
    let (mut peer, out, _) = pjsua_peer(&[
        &target,
        "--user",
        "alice",
        "--password",
        "secret",
        "--duration",
        "0.5",
        "--timeout",
        "15",
    ]);
    let status = wait_exit(&mut peer, 20.0);
    assert!(
        status.is_some_and(|s| s.success()) && out.text().contains("CONFIRMED"),
        "{}\n{}",
        out.text(),
        served.text()
    );
    let text = served.text();
    assert!(
        text.contains("algorithm=SHA-256") && text.contains("response=\"…\""),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    // a wrong password never gets the call up
    let (mut peer, out, _) = pjsua_peer(&[
        &target,
        "--user",
        "alice",
        "--password",
        "guess",
        "--duration",
        "0.5",
        "--timeout",
        "8",
    ]);
    let _ = wait_exit(&mut peer, 15.0);
    assert!(!out.text().contains("CONFIRMED"), "{}", out.text());
    assert_eq!(
        served.text().matches("INVITE from").count(),
        1,
        "{}",
        served.text()
    );
}
