//! The interop matrix: `sipua` against each real peer, over each transport the peer speaks,
//! straight and through Kamailio as a record-routing proxy, with each side calling in turn and
//! each side hanging up in turn. Every cell checks the call's set-up, a hold and an unhold
//! re-INVITE, a MESSAGE inside the call (or beside it, for peers that take none inside), and
//! the BYE answered 200. Each peer's test writes its rows into `docs/INTEROP.md`, so that the
//! page always says what the last run proved. The peers' own modules start and drive them;
//! this module holds the cell, the sipua side and the page.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;

use crate::common::*;
use crate::kamailio::Kamailio;

/// Who calls, who hangs up, and whether Kamailio is in the middle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell {
    pub(crate) transport: &'static str,
    pub(crate) via_proxy: bool,
    pub(crate) sipua_calls: bool,
    pub(crate) sipua_hangs_up: bool,
}

impl Cell {
    /// The eight cells of a transport: direct and proxied, each side calling and hanging up.
    pub(crate) fn all(transport: &'static str) -> Vec<Cell> {
        let mut v = Vec::new();
        for via_proxy in [false, true] {
            for sipua_calls in [true, false] {
                for sipua_hangs_up in [true, false] {
                    v.push(Cell {
                        transport,
                        via_proxy,
                        sipua_calls,
                        sipua_hangs_up,
                    });
                }
            }
        }
        v
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {} calls, {} hangs up",
            self.transport,
            if self.via_proxy {
                "via Kamailio"
            } else {
                "direct"
            },
            if self.sipua_calls { "sipua" } else { "peer" },
            if self.sipua_hangs_up { "sipua" } else { "peer" }
        )
    }
}

/// What one cell proved.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) setup: bool,
    pub(crate) hold: bool,
    pub(crate) message: bool,
    pub(crate) bye: bool,
    /// What to show when something failed: both sides' output.
    pub(crate) log: String,
    /// A remark for the page (e.g. where the MESSAGE went).
    pub(crate) note: String,
}

impl Outcome {
    pub(crate) fn passed(&self) -> bool {
        self.setup && self.hold && self.message && self.bye
    }
}

/// A cell no peer can play, with the reason (e.g. a WebSocket client cannot be called
/// without a registrar).
pub(crate) struct NotApplicable(pub(crate) &'static str);

/// One row of the page.
struct Row {
    cell: Cell,
    result: Result<Outcome, &'static str>,
}

/// Every section of this run, by name, for the page.
static SECTIONS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/INTEROP.md");

/// `sipua` (the binary under test).
pub(crate) fn sipua() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
}

/// `sipua serve` on `transport:127.0.0.1:port`, hanging each call up after
/// `hangup_after` seconds when given; once it prints "listening on".
pub(crate) fn serve(transport: &str, port: u16, hangup_after: Option<f64>) -> (Killed, Output) {
    serve_with(transport, port, hangup_after, &[])
}

/// [`serve`] with `extra` arguments (`--trace`, to see the messages when a row fails).
pub(crate) fn serve_with(
    transport: &str,
    port: u16,
    hangup_after: Option<f64>,
    extra: &[&str],
) -> (Killed, Output) {
    let mut cmd = sipua();
    cmd.args(extra);
    cmd.args([
        "serve",
        "--listen",
        &format!("{transport}:127.0.0.1:{port}"),
        "--lifetime",
        "60",
        "--no-media",
    ]);
    if let Some(s) = hangup_after {
        cmd.args(["--hangup-after", &s.to_string()]);
    }
    if matches!(transport, "tls" | "wss") {
        // present the test certificate, and trust it for connections we open (a BYE to a
        // caller's Contact)
        let (cert, key) = test_certificate();
        cmd.arg("--ca").arg(&cert);
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let (child, out) = spawn(&mut cmd);
    assert!(
        out.wait_for("listening on", 10.0),
        "sipua serve did not start:\n{}",
        out.text()
    );
    (child, out)
}

/// `sipua call` of `uri` for `cell`: hold, unhold, a MESSAGE in the call (`message_out`:
/// beside it), then a BYE after `duration` seconds unless the peer hangs up first; runs it
/// to its end and returns whether it exited 0, and what it printed.
pub(crate) fn call(
    uri: &str,
    cell: &Cell,
    proxy: Option<&Kamailio>,
    message_out: bool,
) -> (bool, String) {
    let mut cmd = sipua();
    let from_transport = match cell.transport {
        t @ ("tcp" | "tls") => t,
        _ => "udp",
    };
    let duration = if cell.sipua_hangs_up { "2" } else { "30" };
    cmd.args([
        "call",
        uri,
        "--from-addr",
        &format!("{from_transport}:127.0.0.1:0"),
        "--no-media",
        "--hold",
        "--duration",
        duration,
        "--answer-timeout",
        "15",
    ]);
    cmd.args([
        if message_out {
            "--message-out"
        } else {
            "--message"
        },
        "hello from sipua",
    ]);
    if let Some(k) = proxy {
        let port = if from_transport == "tls" {
            k.tls_port
        } else {
            k.sip_port
        };
        cmd.args(["--proxy", &format!("127.0.0.1:{port}")]);
    }
    if from_transport == "tls" {
        // trust the peers' certificate, and listen with it so that they can call back
        let (cert, key) = test_certificate();
        cmd.arg("--ca").arg(&cert);
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let (mut child, out) = spawn(&mut cmd);
    let status = wait_exit(&mut child, 45.0);
    (status.is_some_and(|s| s.success()), out.text())
}

/// What `sipua call`'s output proves for `cell`; the peer's side is checked by its module.
pub(crate) fn judge_call(ok: bool, out: &str, cell: &Cell) -> Outcome {
    Outcome {
        setup: out.contains("call: Established"),
        hold: out.contains("hold: ok") && out.contains("unhold: ok"),
        message: out.contains("MESSAGE in the call: 200")
            || out.contains("MESSAGE in the call: 202")
            || out.contains("MESSAGE: 200")
            || out.contains("MESSAGE: 202"),
        bye: ok
            && if cell.sipua_hangs_up {
                out.contains("BYE: 200")
            } else {
                out.contains("the peer hung up")
            },
        log: format!("sipua call:\n{out}"),
        note: String::new(),
    }
}

/// [`judge_serve`] once `served` has printed the end of the call (a moment after the
/// peer's last message), or after 3 s.
pub(crate) fn judge_serve_when_done(served: &Output, cell: &Cell) -> Outcome {
    let done = if cell.sipua_hangs_up {
        ": BYE: 200"
    } else {
        "the peer hung up"
    };
    served.wait_for(done, 3.0);
    judge_serve(&served.text(), cell)
}

/// What `sipua serve`'s output proves for `cell` (the peer called).
pub(crate) fn judge_serve(out: &str, cell: &Cell) -> Outcome {
    Outcome {
        setup: out.contains(": Established"),
        hold: out.contains("re-INVITE (sendonly) answered 200")
            && out.contains("re-INVITE (sendrecv) answered 200"),
        message: out.contains("MESSAGE in the call: ") || out.contains("MESSAGE from "),
        bye: if cell.sipua_hangs_up {
            out.contains(": BYE: 200")
        } else {
            out.contains("terminated (the peer hung up)")
        },
        log: format!("sipua serve:\n{out}"),
        note: String::new(),
    }
}

/// Both sides' verdicts: a check passes when both saw it.
pub(crate) fn both(ours: Outcome, peer: Outcome) -> Outcome {
    Outcome {
        setup: ours.setup && peer.setup,
        hold: ours.hold && peer.hold,
        message: ours.message && peer.message,
        bye: ours.bye && peer.bye,
        log: format!("{}\n--- the peer:\n{}", ours.log, peer.log),
        note: if peer.note.is_empty() {
            ours.note
        } else {
            peer.note
        },
    }
}

/// Runs every cell of `cells` with `run` (retrying a failed cell once: loopback ports picked
/// free can be taken in between), records the rows under `peer` (with its `version`) in the
/// page, and fails listing every failed cell.
pub(crate) fn run_cells(
    peer: &str,
    version: &str,
    cells: &[Cell],
    mut run: impl FnMut(&Cell) -> Result<Outcome, NotApplicable>,
) {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for cell in cells {
        let mut result = run(cell);
        if matches!(&result, Ok(o) if !o.passed()) {
            result = run(cell);
        }
        match result {
            Ok(o) => {
                if !o.passed() {
                    failures.push(format!(
                        "{peer} {}: setup {} hold {} message {} bye {}\n{}",
                        cell.describe(),
                        o.setup,
                        o.hold,
                        o.message,
                        o.bye,
                        o.log
                    ));
                }
                rows.push(Row {
                    cell: *cell,
                    result: Ok(o),
                });
            }
            Err(NotApplicable(why)) => rows.push(Row {
                cell: *cell,
                result: Err(why),
            }),
        }
    }
    record(peer, version, rows);
    assert!(
        failures.is_empty(),
        "{} cell(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Puts `peer`'s rows into the page, keeping the other peers' rows of earlier runs.
fn record(peer: &str, version: &str, rows: Vec<Row>) {
    record_section(peer, version, &table(peer, &rows));
}

/// Puts a section (`### name (version)` and `text`) into the page, keeping the sections
/// of earlier runs that this run did not write.
pub(crate) fn record_section(name: &str, version: &str, text: &str) {
    let mut all = SECTIONS.lock().unwrap_or_else(|e| e.into_inner());
    all.insert(name.to_owned(), format!("### {name} ({version})\n\n{text}"));
    let old = std::fs::read_to_string(PAGE).unwrap_or_default();
    // sections of peers this run did not test are kept as they were
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in old.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            if let Some((n, t)) = current.take() {
                sections.insert(n, t);
            }
            current = Some((
                name.split(" (").next().unwrap_or(name).to_owned(),
                String::new(),
            ));
        } else if line.starts_with("## ") {
            if let Some((n, t)) = current.take() {
                sections.insert(n, t);
            }
        }
        if let Some((_, t)) = current.as_mut() {
            t.push_str(line);
            t.push('\n');
        }
    }
    if let Some((n, t)) = current.take() {
        sections.insert(n, t);
    }
    for (name, text) in all.iter() {
        sections.insert(name.clone(), text.clone());
    }
    // calls first, then subscriptions; peers by name whatever their case
    let mut order: Vec<(&String, &String)> = sections.iter().collect();
    order.sort_by_key(|(n, _)| (n.starts_with("Subscriptions"), n.to_lowercase()));
    let mut page = String::from(HEADER);
    page.push_str(&summary(&order));
    page.push_str("## Results\n\n");
    for (_, text) in order {
        page.push_str(text);
        page.push('\n');
    }
    page.push_str(FOOTER);
    let _ = std::fs::write(PAGE, page);
}

/// The page at a glance: per section, how many rows passed every check, failed one, or
/// could not be played.
fn summary(sections: &[(&String, &String)]) -> String {
    let mut s = String::from(
        "## At a glance\n\n| peer and transport | proven | failed | not applicable |\n|---|---|---|---|\n",
    );
    for (name, text) in sections {
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| transport"))
            .collect();
        let failed = rows.iter().filter(|l| l.contains('✘')).count();
        let na = rows.iter().filter(|l| l.contains("| n/a |")).count();
        let proven = rows.len() - failed - na;
        s.push_str(&format!("| {name} | {proven} | {failed} | {na} |\n"));
    }
    s.push('\n');
    s
}

const HEADER: &str = "# Interoperability\n\n\
What the interop matrix (`crates/sipua-cli/tests/interop/matrix.rs`, run by `scripts/test` and\n\
CI) proved in its last run on this machine: `sipua` against real, independent SIP programs on\n\
loopback, straight and through Kamailio as a record-routing proxy (`record_route()` on every\n\
dialog-creating request, so every in-dialog request must carry the route set), with each side\n\
calling in turn and each side hanging up in turn. Each cell checks:\n\n\
- **set-up**: INVITE, 200, ACK, both sides see the call established;\n\
- **hold**: a re-INVITE offering `sendonly` and one offering `sendrecv` again, each answered 200,\n  \
sent by the caller and seen by the callee;\n\
- **MESSAGE**: one MESSAGE (RFC 3428) from the caller inside the call, answered 200 and seen by\n  \
the callee (beside the call, for a peer that takes none inside it: see the note);\n\
- **BYE**: the side that hangs up gets 200 for its BYE and the other side sees the call end.\n\n\
This page is written by the tests themselves; a peer's section changes only when its test runs.\n\n";

const FOOTER: &str = "## Not covered here\n\n\
- A WebSocket client (SIP.js, JsSIP) cannot be called straight: it accepts no connection and\n  \
its Contact names no reachable host (RFC 7118 §5). It is called through a registrar that\n  \
holds its connection (Kamailio here), which the proxied cells do. Requests *inside* a call\n  \
that a WebSocket client placed to `sipua` go back over its connection: the straight cells\n  \
where sipua hangs up prove it.\n\
- SIPp over TLS: Debian's SIPp is built without OpenSSL (`-t l1` is refused), so its rows are\n  \
UDP and TCP; TLS is proven with PJSIP and baresip, and WSS with SIP.js.\n\
- JsSIP subscribing through a proxy that may reorder: JsSIP makes a subscription's dialog only\n  \
from the SUBSCRIBE's 2xx and answers a NOTIFY that arrives before it with 481, which ends the\n  \
subscription at any notifier (RFC 6665 §4.2.2). A\n  \
Kamailio with several UDP workers can swap the 2xx and the NOTIFY sent right behind it, so\n  \
the JsSIP subscription rows run Kamailio with one UDP worker.\n";

fn mark(b: bool) -> &'static str {
    if b {
        "✔"
    } else {
        "✘"
    }
}

fn table(peer: &str, rows: &[Row]) -> String {
    let mut s = String::from(
        "| transport | path | caller | hangs up | set-up | hold | MESSAGE | BYE | note |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.cell;
        let path = if c.via_proxy {
            "Kamailio (Record-Route)"
        } else {
            "direct"
        };
        let name = peer.split(' ').next().unwrap_or(peer);
        let who = |sipua: bool| if sipua { "sipua" } else { name };
        let caller = who(c.sipua_calls);
        let hangs = who(c.sipua_hangs_up);
        match &r.result {
            Ok(o) => s.push_str(&format!(
                "| {} | {path} | {caller} | {hangs} | {} | {} | {} | {} | {} |\n",
                c.transport.to_uppercase(),
                mark(o.setup),
                mark(o.hold),
                mark(o.message),
                mark(o.bye),
                o.note
            )),
            Err(why) => s.push_str(&format!(
                "| {} | {path} | {caller} | {hangs} | n/a | n/a | n/a | n/a | {why} |\n",
                c.transport.to_uppercase()
            )),
        }
    }
    s
}

/// The first line of `program --version`-like output that contains `needle`, trimmed.
pub(crate) fn version_of(program: &str, args: &[&str], needle: &str) -> String {
    let out = Command::new(program).args(args).output();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or(program)
        .trim()
        .to_owned()
}

/// Kamailio's version line, for the page.
pub(crate) fn kamailio_version() -> String {
    let v = version_of("kamailio", &["-v"], "version:");
    let v = v.trim_start_matches("version:").trim();
    match v.split(' ').nth(1) {
        Some(n) => format!("Kamailio {n}"),
        None => v.to_owned(),
    }
}

/// A record-routing Kamailio for the proxied cells of one test.
pub(crate) fn proxy(name: &str) -> Kamailio {
    Kamailio::start_with(name, &["OPEN_RELAY", "WITH_TLS"])
}
