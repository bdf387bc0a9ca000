//! The subscription rows of the interop matrix (see `matrix.rs`): peers that subscribe
//! (RFC 6665) to `sipua serve`'s presence and message-summary notifier, straight and through
//! Kamailio. Each row checks the SUBSCRIBE's 200, the first NOTIFY (`active`, with a body)
//! arriving within a second of the 200, and the unsubscribe ending with a `terminated` NOTIFY
//! or the 200 to the SUBSCRIBE with Expires: 0.

use crate::common::*;
use crate::matrix::*;
use crate::sipp::{counters, sipp};

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/node");
const PRESENCE: &str = include_str!("sipp/subscribe_presence.xml");

/// The value of `key=` on the first line starting with `EVENT event`.
fn field(out: &str, event: &str, key: &str) -> Option<String> {
    out.lines()
        .find(|l| l.starts_with(&format!("EVENT {event} ")))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
        })
}

/// One subscription of a Node peer to `sipua serve`.
fn node_row(
    lib: &str,
    transport: &'static str,
    event: &'static str,
    k: Option<&crate::kamailio::Kamailio>,
) -> SubRow {
    let port = free_udp_port();
    let listen = if k.is_some() { "udp" } else { transport };
    // every message, to tell from a failed row where the NOTIFY went
    let (_serve, served) = serve_with(listen, port, None, &["--trace"]);
    let (server, target) = match k {
        Some(k) => (
            format!("ws://127.0.0.1:{}", k.ws_port),
            format!("sip:bob@127.0.0.1:{port}"),
        ),
        None => (
            format!("{transport}://127.0.0.1:{port}"),
            format!("sip:bob@127.0.0.1:{port};transport={transport}"),
        ),
    };
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(NODE_DIR).args([
        "peer.mjs",
        lib,
        "subscribe",
        &target,
        "--server",
        &server,
        "--event",
        event,
        "--notifies",
        "1",
        "--lifetime",
        "30",
        "--timeout",
        "10",
    ]);
    let (mut p, out) = spawn(&mut cmd);
    let ok = wait_exit(&mut p, 35.0).is_some_and(|s| s.success());
    let text = out.text();
    let t = |e: &str| field(&text, e, "t").and_then(|v| v.parse::<i64>().ok());
    let first = match (t("subscribe-ok"), t("notify-received")) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    SubRow {
        transport,
        via_proxy: k.is_some(),
        event,
        accepted: field(&text, "subscribe-ok", "status").as_deref() == Some("200"),
        first_notify_ms: first,
        active: field(&text, "notify-received", "state").as_deref() == Some("active"),
        ended: ok && (text.contains("EVENT unsubscribed") || text.contains("state=terminated")),
        log: format!(
            "{text}\nsipua serve:\n{}{}",
            served.text(),
            k.map_or(String::new(), |k| format!(
                "\nKamailio (the end of its log):\n{}",
                tail(&k.out.text(), 40)
            ))
        ),
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// SIPp's presence subscription (`sipp/subscribe_presence.xml`, made to address `[target]`
/// and to want the first NOTIFY within a second) to `sipua serve`.
fn sipp_row(transport: &'static str, k: Option<&crate::kamailio::Kamailio>) -> SubRow {
    let port = free_udp_port();
    let (_serve, served) = serve(transport, port, None);
    let param = if transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    let scenario = PRESENCE
        .replace(
            "SUBSCRIBE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
            "SUBSCRIBE [target] SIP/2.0",
        )
        .replace(
            "To: <sip:[service]@[remote_ip]:[remote_port]>",
            "To: <[target]>",
        )
        // a proxy takes a Contact without a transport for UDP
        .replace(
            "Contact: <sip:sipp@[local_ip]:[local_port]>",
            "Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>",
        )
        .replacen(
            "<recv request=\"NOTIFY\">",
            "<recv request=\"NOTIFY\" timeout=\"1000\">",
            1,
        );
    let dir = std::env::temp_dir().join(format!("sipua-matrix-sub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sf = dir.join(format!("subscribe-{transport}-{}.xml", k.is_some()));
    std::fs::write(&sf, scenario).unwrap();
    let next_hop = match k {
        Some(k) => format!("127.0.0.1:{}", k.sip_port),
        None => format!("127.0.0.1:{port}"),
    };
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let (mut s, out) = spawn(
        sipp()
            .arg("-sf")
            .arg(&sf)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &free_udp_port().to_string(),
                "-t",
                mode,
            ])
            .args([
                "-key",
                "target",
                &format!("sip:bob@127.0.0.1:{port}{param}"),
            ])
            .args(["-m", "1", "-timeout", "30", "-timeout_error", "-nostdin"])
            .arg(&next_hop),
    );
    let ok = wait_exit(&mut s, 35.0).is_some_and(|st| st.success());
    out.wait_closed(10.0);
    let (good, bad) = counters(&out.text());
    let passed = ok && good == 1 && bad == 0;
    SubRow {
        transport,
        via_proxy: k.is_some(),
        event: "presence",
        accepted: passed,
        first_notify_ms: None,
        active: passed,
        ended: passed,
        log: format!("{}\nsipua serve:\n{}", out.text(), served.text()),
    }
}

/// One subscription's outcome.
pub(crate) struct SubRow {
    transport: &'static str,
    via_proxy: bool,
    event: &'static str,
    accepted: bool,
    /// From the 200 to the first NOTIFY, as the peer saw it (`None`: checked by the peer).
    first_notify_ms: Option<i64>,
    active: bool,
    ended: bool,
    log: String,
}

impl SubRow {
    fn passed(&self) -> bool {
        self.accepted
            && self.active
            && self.ended
            && self.first_notify_ms.is_none_or(|ms| ms <= 1000)
    }

    fn line(&self) -> String {
        let first = match self.first_notify_ms {
            Some(ms) => format!("{} ms", ms.max(0)),
            None if self.active => "≤ 1 s (SIPp's recv timeout)".into(),
            None => "✘".into(),
        };
        let mark = |b: bool| if b { "✔" } else { "✘" };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            self.transport.to_uppercase(),
            if self.via_proxy {
                "Kamailio (Record-Route)"
            } else {
                "direct"
            },
            self.event,
            mark(self.accepted),
            first,
            mark(self.active),
            mark(self.ended)
        )
    }
}

fn run(peer: &str, version: &str, rows: Vec<SubRow>) {
    let mut text = String::from(
        "| transport | path | event | SUBSCRIBE 200 | first NOTIFY after the 200 | NOTIFY active, with a body | unsubscribed |\n|---|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for r in &rows {
        text.push_str(&r.line());
        if !r.passed() {
            failures.push(format!("{peer} {}: {}{}", r.transport, r.line(), r.log));
        }
    }
    record_section(&format!("Subscriptions: {peer}"), version, &text);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn node(lib: &str, name: &str, package: &str) {
    // the subscriber must see the 200 before the NOTIFY (see ONE_UDP_WORKER in the config)
    let k = crate::kamailio::Kamailio::start_with(
        &format!("matrix-sub-{lib}"),
        &["OPEN_RELAY", "WITH_TLS", "ONE_UDP_WORKER"],
    );
    let mut rows = Vec::new();
    for event in ["presence", "message-summary"] {
        for k in [None, Some(&k)] {
            let mut r = node_row(lib, "ws", event, k);
            if !r.passed() {
                r = node_row(lib, "ws", event, k);
            }
            rows.push(r);
        }
    }
    let version = format!(
        "{name} {} in Node; proxy {}",
        crate::matrix_node::package_version(package),
        kamailio_version()
    );
    run(name, &version, rows);
}

#[test]
fn matrix_subscriptions_sipjs() {
    node("sipjs", "SIP.js", "sip.js");
}

#[test]
fn matrix_subscriptions_jssip() {
    node("jssip", "JsSIP", "jssip");
}

#[test]
fn matrix_subscriptions_sipp() {
    let k = proxy("matrix-sub-sipp");
    let mut rows = Vec::new();
    for transport in ["udp", "tcp"] {
        for k in [None, Some(&k)] {
            let mut r = sipp_row(transport, k);
            if !r.passed() {
                r = sipp_row(transport, k);
            }
            rows.push(r);
        }
    }
    let version = format!(
        "{}; proxy {}",
        crate::matrix_sipp::sipp_version(),
        kamailio_version()
    );
    run("SIPp", &version, rows);
}
