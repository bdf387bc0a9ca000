//! Interop with SIPp (Debian `sip-tester`), on loopback: its built-in `uac` against `sipua serve`,
//! `sipua call` against its built-in `uas`, and our own caller scenarios (`sipp/*.xml`: no ACK,
//! CANCEL, 486, re-INVITE, INFO, retransmitted INVITE) against `sipua serve`. SIPp missing is a
//! failure, not a skip: `scripts/test` installs it.

use crate::common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A SIPp scenario step: a 200 OK to the request just received, its Via, From, To, Call-ID
/// and CSeq copied.
pub(crate) const ANSWER_200: &str = r#"  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"#;

pub(crate) fn sipp() -> Command {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "SIPp is not installed (apt-get install sip-tester; scripts/test does it)"
    );
    Command::new("sipp")
}

impl Killed {
    /// Stops the process and returns what it wrote to its stdout (which must be piped).
    fn stop(mut self) -> String {
        let _ = self.0.kill();
        let mut out = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        out
    }
}

/// `sipua serve` on `port`, stopped when the returned guard drops.
fn serve(port: u16) -> Killed {
    serve_with(port, &[], Stdio::null())
}

/// `sipua serve` on `port` with `extra` arguments (`--answer busy`...), its stdout going to
/// `stdout`; stopped when the returned guard drops or by [`Killed::stop`].
fn serve_with(port: u16, extra: &[&str], stdout: Stdio) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args([
            "serve",
            "--listen",
            &format!("udp:127.0.0.1:{port}"),
            "--lifetime",
            "60",
        ])
        .args(extra)
        .stdout(stdout)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Killed(child)
}

/// SIPp running `scenario` (a file) against `127.0.0.1:port`, from a free local port.
pub(crate) fn sipp_scenario(scenario: &str, port: u16) -> Command {
    let mut c = sipp();
    c.args(["-sf", scenario, &format!("127.0.0.1:{port}")])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()]);
    c
}

/// The (successful, failed) call counts of SIPp's last screen in `out`.
pub(crate) fn counters(out: &str) -> (u32, u32) {
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

/// SIPp's built-in `uac` makes 200 calls at 50 calls/s to `sipua serve` over `transport`.
fn sipp_uac_against_serve(transport: &str) {
    let port = free_udp_port();
    let listen = format!("{transport}:127.0.0.1:{port}");
    let _serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_sipua"))
            .args(["serve", "--listen", &listen, "--lifetime", "60", "--quiet"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let out = sipp()
        .args(["-sn", "uac", &format!("127.0.0.1:{port}"), "-t", mode])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args([
            "-m",
            "200",
            "-r",
            "50",
            "-timeout",
            "40",
            "-timeout_error",
            "-nostdin",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&text), (200, 0), "{text}");
    assert!(out.status.success(), "sipp exit {:?}", out.status);
}

#[test]
fn sipp_uac_calls_sipua_serve_200_times_at_50_per_second_over_udp() {
    sipp_uac_against_serve("udp");
}

#[test]
fn sipp_uac_calls_sipua_serve_200_times_at_50_per_second_over_tcp() {
    sipp_uac_against_serve("tcp");
}

/// `sipua call` makes 200 calls at 50 calls/s to SIPp's built-in `uas` over `transport`;
/// both sides count 200 successful calls.
/// `sipua call sip:service@127.0.0.1:PORT CALL_ARGS` against SIPp started with
/// `sipp_args` for `calls` calls: whether the call exited 0, what it printed (standard
/// output, then standard error), and what SIPp printed once it exited by itself.
fn sipua_call_against_sipp(
    port: u16,
    sipp_args: &[&str],
    calls: u32,
    timeout_secs: u32,
    call_args: &[&str],
) -> (bool, String, String, String) {
    let mut uas = sipp()
        .args(sipp_args)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &calls.to_string(), "-nostdin"])
        .args(["-timeout", &timeout_secs.to_string(), "-timeout_error"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut uas_out = uas.stdout.take().unwrap();
    let _uas = Killed(uas);
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(["call", &format!("sip:service@127.0.0.1:{port}")])
        .args(call_args)
        .output()
        .unwrap();
    // SIPp exits by itself after its last call
    let mut uas_text = String::new();
    uas_out.read_to_string(&mut uas_text).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        uas_text,
    )
}

fn sipua_calls_sipp_uas(transport: &str) {
    let port = free_udp_port();
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let (ok, text, err, uas_text) = sipua_call_against_sipp(
        port,
        &["-sn", "uas", "-t", mode],
        200,
        60,
        &[
            "--transport",
            transport,
            "--duration",
            "0.1",
            "--calls",
            "200",
            "--rate",
            "50",
            // SIPp's uas ends each call with a 4 s pause and counts a call whose TCP
            // connection closes during it as failed: keep the connection until the last
            // pause is over
            "--linger",
            "5",
        ],
    );
    assert!(ok, "{text}{err}");
    assert!(text.contains("calls: 200 successful, 0 failed"), "{text}");
    assert_eq!(counters(&uas_text), (200, 0), "{uas_text}");
}

#[test]
fn sipua_call_makes_200_calls_at_50_per_second_to_sipp_uas_over_udp() {
    sipua_calls_sipp_uas("udp");
}

#[test]
fn sipua_call_makes_200_calls_at_50_per_second_to_sipp_uas_over_tcp() {
    sipua_calls_sipp_uas("tcp");
}

#[test]
fn a_lost_ack_makes_sipua_retransmit_its_200_then_send_bye() {
    // SIPp never ACKs; sipua must repeat its 200 for 64*T1 (32 s) and then hang up with BYE
    let port = free_udp_port();
    let _serve = serve(port);
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/sipp/uac_no_ack.xml"
    );
    let out = sipp_scenario(scenario, port)
        .args(["-m", "1", "-timeout", "60", "-nostdin"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&text), (1, 0), "{text}");
}

/// Runs our scenario `file` (in `tests/interop/sipp/`) for `calls` calls at 5 per second, plus
/// `sipp_extra` arguments, against `sipua serve --answer <answer>`. Returns SIPp's final screen,
/// whether SIPp exited with 0 (every call succeeded) and what `sipua serve` printed.
fn scenario_against_serve(
    file: &str,
    answer: &str,
    calls: u32,
    sipp_extra: &[&str],
) -> (String, bool, String) {
    let port = free_udp_port();
    let callee = serve_with(port, &["--answer", answer], Stdio::piped());
    let scenario = format!("{}/tests/interop/sipp/{file}", env!("CARGO_MANIFEST_DIR"));
    let out = sipp()
        .args([
            "-sf",
            &scenario,
            &format!("127.0.0.1:{port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "5",
            "-timeout",
            "30",
            // without it SIPp 3.6.1 prints its final screen at the timeout but does not exit
            // while calls are pending
            "-timeout_error",
            "-nostdin",
        ])
        .args(sipp_extra)
        .output()
        .unwrap();
    // let sipua print the end of the last call
    std::thread::sleep(Duration::from_millis(300));
    let printed = callee.stop();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
        printed,
    )
}

/// How many lines of `sipua serve`'s output contain `what`.
fn lines_with(printed: &str, what: &str) -> usize {
    printed.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn sipp_cancel_after_180_gets_200_and_487() {
    // sipua rings for 5 s; SIPp cancels at the 180 and checks the CSeq of the 200 (CANCEL) and
    // of the 487 (INVITE), then ACKs the 487
    let (text, ok, printed) = scenario_against_serve("cancel.xml", "ring:5", 5, &[]);
    assert_eq!(counters(&text), (5, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(lines_with(&printed, "INVITE from"), 5, "{printed}");
    assert_eq!(
        lines_with(&printed, "terminated (cancelled by the caller)"),
        5,
        "{printed}"
    );
}

#[test]
fn sipp_invite_to_a_busy_sipua_gets_486_and_acks_it() {
    let (text, ok, printed) = scenario_against_serve("busy.xml", "busy", 10, &[]);
    assert_eq!(counters(&text), (10, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(
        lines_with(&printed, "terminated (we answered 486)"),
        10,
        "{printed}"
    );
}

#[test]
fn sipp_reinvite_in_the_dialog_gets_200_with_sdp_then_bye_ends_the_call() {
    let (text, ok, printed) = scenario_against_serve("reinvite.xml", "auto", 10, &[]);
    assert_eq!(counters(&text), (10, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(lines_with(&printed, "INVITE from"), 10, "{printed}");
    assert_eq!(
        lines_with(&printed, "terminated (the peer hung up)"),
        10,
        "{printed}"
    );
}

#[test]
fn sipp_info_with_a_dtmf_digit_in_the_dialog_gets_200() {
    let (text, ok, printed) = scenario_against_serve("info.xml", "auto", 10, &[]);
    assert_eq!(counters(&text), (10, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(
        lines_with(&printed, "terminated (the peer hung up)"),
        10,
        "{printed}"
    );
}

#[test]
fn a_retransmitted_invite_brings_back_the_180_and_makes_no_second_call() {
    // three byte-identical copies of each INVITE: while ringing (1 s), after the 200, after the
    // ACK. -nr: SIPp's hash-based retransmission detection would take the repeated 180 for a
    // retransmission and resend the copy (see the scenario)
    let (text, ok, printed) =
        scenario_against_serve("retransmitted_invite.xml", "ring:1", 5, &["-nr"]);
    assert_eq!(counters(&text), (5, 0), "{text}");
    assert!(ok, "{text}");
    // one call per INVITE, however many copies arrived
    assert_eq!(lines_with(&printed, "INVITE from"), 5, "{printed}");
    assert_eq!(
        lines_with(&printed, "terminated (the peer hung up)"),
        5,
        "{printed}"
    );
}

#[test]
fn sipp_requiring_100rel_gets_a_reliable_180_and_its_prack_answered() {
    let (text, ok, printed) = scenario_against_serve("prack_uac.xml", "auto", 10, &[]);
    assert_eq!(counters(&text), (10, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(
        lines_with(&printed, "terminated (the peer hung up)"),
        10,
        "{printed}"
    );
}

#[test]
fn sipua_call_pracks_the_reliable_183_of_sipp() {
    let port = free_udp_port();
    let scenario = format!(
        "{}/tests/interop/sipp/prack_uas.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, text, err, uas_text) =
        sipua_call_against_sipp(port, &["-sf", &scenario], 1, 20, &["--duration", "0.5"]);
    assert!(ok, "{text}{err}");
    assert!(text.contains("183 Session Progress"), "{text}");
    assert_eq!(counters(&uas_text), (1, 0), "{uas_text}");
}

#[test]
fn sipua_call_without_an_offer_answers_the_offer_of_sipps_reliable_183_in_its_prack() {
    // a late offer (RFC 3262 §5): the INVITE has no body, the reliable 183 offers, the
    // PRACK must answer and the ACK owe nothing (the scenario checks all three)
    let port = free_udp_port();
    let scenario = format!(
        "{}/tests/interop/sipp/prack_late_offer_uas.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, text, err, uas_text) = sipua_call_against_sipp(
        port,
        &["-sf", &scenario],
        1,
        20,
        &["--duration", "0.5", "--no-offer"],
    );
    assert!(ok, "{text}{err}");
    assert!(text.contains("183 Session Progress"), "{text}");
    assert_eq!(counters(&uas_text), (1, 0), "{uas_text}");
}

#[test]
fn sipp_gets_a_session_timer_granted_and_refreshes_and_holds_with_update() {
    let (text, ok, printed) = scenario_against_serve("update_timer.xml", "auto", 5, &[]);
    assert_eq!(counters(&text), (5, 0), "{text}");
    assert!(ok, "{text}");
    assert_eq!(
        lines_with(&printed, "terminated (the peer hung up)"),
        5,
        "{printed}"
    );
}

#[test]
fn a_proxy_asking_for_overload_control_reads_the_cut_in_every_answers_via() {
    // RFC 7339 on the wire, SIPp as the proxy that asks (`oc` in its Via): serve takes five
    // calls a second (--max-cps 5) and turns them down (486), refuses the rest (503); every
    // answer's Via must carry the figures (the scenario fails a call otherwise), and once a
    // second of refusals is counted, the cut is the share refused
    let port = free_udp_port();
    let callee = serve_with(
        port,
        &[
            "--answer",
            "busy",
            "--no-media",
            "--threads",
            "1",
            "--oc",
            "--max-cps",
            "5",
        ],
        // its own report of the cut, checked below (about 80 lines: the pipe holds them)
        Stdio::piped(),
    );
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/sipp/overload_control.xml"
    );
    let log = std::env::temp_dir().join(format!("sipua-oc-{port}.log"));
    let _ = std::fs::remove_file(&log);
    let out = sipp_scenario(scenario, port)
        .args(["-m", "80", "-r", "20", "-timeout", "30", "-timeout_error"])
        .args(["-nostdin", "-trace_logs", "-log_file"])
        .arg(&log)
        .output()
        .unwrap();
    let served = callee.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counters(&text), (80, 0), "{text}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    // "<status> cut=<n> validity=<ms> seq=<s.ms>", in the order SIPp got them
    let answers: Vec<(u16, u8, u32, String)> = logged
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let status = w.next()?.parse().ok()?;
            let field = |w: Option<&str>, name: &str| w?.strip_prefix(name).map(str::to_owned);
            let cut = field(w.next(), "cut=")?.parse().ok()?;
            let validity = field(w.next(), "validity=")?.parse().ok()?;
            let seq = field(w.next(), "seq=")?;
            Some((status, cut, validity, seq))
        })
        .collect();
    assert_eq!(answers.len(), 80, "{logged}");
    let taken = answers.iter().filter(|a| a.0 == 486).count();
    assert!((10..=30).contains(&taken), "{taken} taken of 80 at 5/s");
    // a cut is sent with a validity, no cut with validity 0 (§5.1, §5.7)
    assert!(answers
        .iter()
        .all(|&(_, cut, validity, _)| (cut == 0) == (validity == 0)));
    // past the first second most of the offer was refused: the cut says so
    let top = answers.iter().map(|a| a.1).max().unwrap();
    assert!((50..=100).contains(&top), "{answers:?}");
    // new figures come with a new oc-seq (§4.4): one seq never names two cuts
    let mut by_seq = std::collections::HashMap::new();
    for (_, cut, _, seq) in &answers {
        assert_eq!(
            *by_seq.entry(seq.clone()).or_insert(*cut),
            *cut,
            "{answers:?}"
        );
    }
    assert!(by_seq.len() >= 2, "{answers:?}");
    // serve says what it asks for, as it changes, once a second: a cut SIPp read in a Via
    let reported: Vec<u8> = served
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("overload: RFC 7339 clients are asked to send ")?;
            rest.strip_suffix(" % fewer new calls")?.parse().ok()
        })
        .collect();
    // the first while SIPp still called (later ones may be the decay once it stopped)
    let first = reported.first().expect(&served);
    assert!(by_seq.values().any(|c| c == first), "{first} in {served}");
}
