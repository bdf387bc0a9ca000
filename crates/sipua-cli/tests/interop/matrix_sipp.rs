//! The SIPp rows of the interop matrix (see `matrix.rs`), over UDP and TCP. SIPp plays the
//! whole call from a scenario made per cell: as caller, INVITE, ACK, a hold and an unhold
//! re-INVITE, a MESSAGE in the call, then its BYE or the wait for ours; as callee, the same
//! from the other side, keeping the route set of the INVITE (`rrs`) for its BYE. SIPp counts
//! the call successful only if every message came as the scenario says.

use std::path::PathBuf;

use crate::common::*;
use crate::matrix::*;
use crate::sipp::{counters, sipp, ANSWER_200};

const SDP_HOLD: &str = "a=sendonly";
const SDP_ACTIVE: &str = "a=sendrecv";

fn sdp(direction: &str) -> String {
    format!(
        "v=0\no=sipp 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio 6000 RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n{direction}\n"
    )
}

/// The caller's scenario: `bye` says whether SIPp hangs up (else it waits for sipua's BYE).
fn uac_scenario(bye: bool) -> String {
    let invite = |seq: u32, dir: &str, first: bool| {
        let (uri, to, routes) = if first {
            ("[target]", "<[target]>", "")
        } else {
            ("[next_url]", "<[target]>[peer_tag_param]", "[routes]\n")
        };
        format!(
            r#"  <send retrans="500"><![CDATA[
INVITE {uri} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{routes}From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: {to}
Call-ID: [call_id]
CSeq: {seq} INVITE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{body}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <[target]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {seq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"#,
            body = sdp(dir)
        )
    };
    let in_dialog = |method: &str, seq: u32, body: &str| {
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: text/plain\n".to_owned()
        };
        format!(
            r#"  <send retrans="500"><![CDATA[
{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <[target]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {seq} {method}
Max-Forwards: 70
{ct}Content-Length: [len]

{body}]]></send>
  <recv response="200"/>
"#
        )
    };
    let end = if bye {
        format!(
            "  <pause milliseconds=\"300\"/>\n{}",
            in_dialog("BYE", 5, "")
        )
    } else {
        format!("  <recv request=\"BYE\"/>\n{ANSWER_200}")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"matrix caller\">\n{}{}{}{}{end}</scenario>\n",
        invite(1, SDP_ACTIVE, true),
        invite(2, SDP_HOLD, false),
        invite(3, SDP_ACTIVE, false),
        in_dialog("MESSAGE", 4, "hello from sipp"),
    )
}

/// The callee's scenario: `bye` says whether SIPp hangs up.
fn uas_scenario(bye: bool) -> String {
    let answer = |first: bool, dir: &str| {
        let tag = if first {
            "[last_To:];tag=[pid]SIPpTag01[call_number]"
        } else {
            "[last_To:]"
        };
        let ringing = if first {
            format!(
                r#"  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_Record-Route:]
[last_From:]
{tag}
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
"#
            )
        } else {
            String::new()
        };
        let rrs = if first { " rrs=\"true\"" } else { "" };
        // SIPp refuses a variable set and never used: only when it sends the BYE
        let check = if first && bye {
            // the caller's addresses, for our BYE
            r#"    <action>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" check_it="true" assign_to="callee"/>
    </action>
"#
        } else {
            ""
        };
        format!(
            r#"  <recv request="INVITE"{rrs}>
{check}  </recv>
{ringing}  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
{tag}
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{body}]]></send>
  <recv request="ACK"/>
"#,
            body = sdp(dir)
        )
    };
    let ok = ANSWER_200;
    let end = if bye {
        r#"  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: [$callee];tag=[pid]SIPpTag01[call_number]
To: [$caller]
Call-ID: [call_id]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"#
        .to_owned()
    } else {
        format!("  <recv request=\"BYE\"/>\n{ok}")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"matrix callee\">\n{}{}{}  <recv request=\"MESSAGE\"/>\n{ok}{end}</scenario>\n",
        answer(true, SDP_ACTIVE),
        answer(false, "a=recvonly"),
        answer(false, SDP_ACTIVE),
    )
}

fn scenario_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipua-matrix-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// SIPp's own verdict on its one call: successful, and its screen for the log.
fn sipp_outcome(ok: bool, out: &str) -> Outcome {
    let (good, bad) = counters(out);
    let passed = ok && good == 1 && bad == 0;
    Outcome {
        setup: passed,
        hold: passed,
        message: passed,
        bye: passed,
        log: out.to_owned(),
        note: String::new(),
    }
}

fn cell(c: &Cell, k: Option<&crate::kamailio::Kamailio>) -> Result<Outcome, NotApplicable> {
    let mode = if c.transport == "tcp" { "t1" } else { "u1" };
    let uri_param = if c.transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    if c.sipua_calls {
        // SIPp answers; sipua calls it (through the proxy when asked)
        let port = free_udp_port();
        let sf = scenario_file(
            &format!("uas-{}-{}.xml", c.transport, !c.sipua_hangs_up),
            &uas_scenario(!c.sipua_hangs_up),
        );
        let (mut sipp, sipp_out) = spawn(
            sipp()
                .arg("-sf")
                .arg(&sf)
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", mode])
                .args(["-m", "1", "-timeout", "40", "-timeout_error", "-nostdin"]),
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let uri = format!("sip:sipp@127.0.0.1:{port}{uri_param}");
        let (ok, out) = call(&uri, c, k, false);
        let status = wait_exit(&mut sipp, 15.0);
        let ours = judge_call(ok, &out, c);
        let peer = sipp_outcome(status.is_some_and(|s| s.success()), &sipp_out.text());
        Ok(both(ours, peer))
    } else {
        let port = free_udp_port();
        let hangup = c.sipua_hangs_up.then_some(1.0);
        let (_serve, serve_out) = serve(c.transport, port, hangup);
        let sf = scenario_file(
            &format!("uac-{}-{}.xml", c.transport, !c.sipua_hangs_up),
            &uac_scenario(!c.sipua_hangs_up),
        );
        let target = format!("sip:bob@127.0.0.1:{port}{uri_param}");
        let next_hop = match k {
            Some(k) => format!("127.0.0.1:{}", k.sip_port),
            None => format!("127.0.0.1:{port}"),
        };
        let (mut sipp, sipp_out) = spawn(
            sipp()
                .arg("-sf")
                .arg(&sf)
                .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
                .args(["-t", mode, "-key", "target", &target])
                .args(["-m", "1", "-timeout", "40", "-timeout_error", "-nostdin"])
                .arg(&next_hop),
        );
        let status = wait_exit(&mut sipp, 45.0);
        let ours = judge_serve_when_done(&serve_out, c);
        let peer = sipp_outcome(status.is_some_and(|s| s.success()), &sipp_out.text());
        Ok(both(ours, peer))
    }
}

pub(crate) fn sipp_version() -> String {
    let v = version_of("sipp", &["-v"], "SIPp v");
    v.split_whitespace()
        .find(|w| w.starts_with('v'))
        .map(|w| format!("SIPp {}", w.split('-').next().unwrap_or(w)))
        .unwrap_or(v)
}

fn matrix(transport: &'static str) {
    let k = proxy(&format!("matrix-sipp-{transport}"));
    let version = format!("{}; proxy {}", sipp_version(), kamailio_version());
    let name = "SIPp";
    let cells = Cell::all(transport);
    // both transports write one section: run them as one list when both are asked
    run_cells(
        &format!("{name} {}", transport.to_uppercase()),
        &version,
        &cells,
        |c| cell(c, c.via_proxy.then_some(&k)),
    );
}

#[test]
fn matrix_sipp_udp() {
    matrix("udp");
}

#[test]
fn matrix_sipp_tcp() {
    matrix("tcp");
}

/// SIPp's `-trace_msg` file of a run: every message it sent and received.
fn traced(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("messages.log")).unwrap_or_default()
}

/// `sipua serve` on `0.0.0.0` (all addresses) answers SIPp calling from 127.0.0.2 to
/// 127.0.0.3; then `sipua call` from `0.0.0.0` calls SIPp on 127.0.0.2. No message and no SDP
/// names `0.0.0.0`: every Via, Contact, From and `c=` line names an address SIPp reached.
fn wildcard(transport: &str) {
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let dir =
        std::env::temp_dir().join(format!("sipua-wildcard-{transport}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let mut cmd = sipua();
    cmd.args([
        "serve",
        "--listen",
        &format!("{transport}:0.0.0.0:{port}"),
        "--lifetime",
        "30",
    ]);
    let (_serve, serve_out) = spawn(&mut cmd);
    assert!(serve_out.wait_for("listening on", 10.0));
    let (mut uac, uac_out) = spawn(
        sipp()
            .current_dir(&dir)
            .args(["-sn", "uac", "-i", "127.0.0.2", "-t", mode, "-s", "bob"])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-m", "1", "-timeout", "20", "-timeout_error", "-nostdin"])
            .args(["-trace_msg", "-message_file", "messages.log"])
            .arg(format!("127.0.0.3:{port}")),
    );
    let status = wait_exit(&mut uac, 25.0);
    let trace = traced(&dir);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIPp from 127.0.0.2 could not call sipua on 0.0.0.0:\n{}\n{}\n{trace}",
        uac_out.text(),
        serve_out.text()
    );
    assert!(!trace.contains("0.0.0.0"), "a wildcard went out:\n{trace}");
    for line in ["Contact: <sip:sipua@127.0.0.1:", "c=IN IP4 127.0.0.1"] {
        assert!(trace.contains(line), "no `{line}`:\n{trace}");
    }

    // the other way: sipua on 0.0.0.0 calls SIPp on 127.0.0.2
    let _ = std::fs::remove_file(dir.join("messages.log"));
    let sipp_port = free_udp_port();
    let (mut uas, uas_out) = spawn(
        sipp()
            .current_dir(&dir)
            .args(["-sn", "uas", "-i", "127.0.0.2", "-t", mode])
            .args(["-p", &sipp_port.to_string()])
            .args(["-m", "1", "-timeout", "20", "-timeout_error", "-nostdin"])
            .args(["-trace_msg", "-message_file", "messages.log"]),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let param = if transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    let (mut c, call_out) = spawn(sipua().args([
        "call",
        &format!("sip:sipp@127.0.0.2:{sipp_port}{param}"),
        "--from-addr",
        &format!("{transport}:0.0.0.0:0"),
        "--duration",
        "1",
        // SIPp's uas ends its call with a 4 s pause and counts the call failed when its TCP
        // connection closes during it (which our exit right after the BYE's 200 does, about one
        // run in eight): keep the connection until the pause is over
        "--linger",
        "5",
    ]));
    let called = wait_exit(&mut c, 25.0);
    let status = wait_exit(&mut uas, 10.0);
    let trace = traced(&dir);
    assert!(
        called.is_some_and(|s| s.success()) && status.is_some_and(|s| s.success()),
        "sipua on 0.0.0.0 could not call SIPp on 127.0.0.2:\n{}\n{}\n{trace}",
        call_out.text(),
        uas_out.text()
    );
    assert!(!trace.contains("0.0.0.0"), "a wildcard went out:\n{trace}");
    for line in [
        "Via: SIP/2.0/",
        "Contact: <sip:sipua@127.0.0.1:",
        "c=IN IP4 127.0.0.1",
    ] {
        assert!(trace.contains(line), "no `{line}`:\n{trace}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipua_on_0_0_0_0_names_an_address_the_peer_can_reach_udp() {
    wildcard("udp");
}

#[test]
fn sipua_on_0_0_0_0_names_an_address_the_peer_can_reach_tcp() {
    wildcard("tcp");
}
