//! The registration recipe of `deploy/kamailio/` tested as users run it: two Kamailio proxies
//! sharing their registrations in one PostgreSQL database (`registrar.cfg`, usrloc in DB-only
//! mode, started by `registrar.sh`), two `sipua serve` instances, each on an address of its
//! own (127.0.0.2, .3, as on two hosts), registering sip:agent1@example.com and
//! sip:agent2@example.com through proxy A, SIPp calling them through proxy B.
//!
//! - Calls through B to each address of record reach the instance that registered it through
//!   A: B reads the binding A wrote.
//! - A call to an address of record no one registered gets 404.
//! - An instance stopped with SIGTERM unregisters (through A): calls through B to its address
//!   of record then get 404, and the other's still go through.
//!
//! Needs kamailio, kamailio-postgres-modules and postgresql (`scripts/test` installs them).

use std::process::Command;

use crate::common::{free_tcp_port, free_udp_port, spawn, wait_exit, wait_until, Killed, Output};
use crate::matrix::sipua;
use crate::sipp::{counters, sipp};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/kamailio/registrar.sh"
);
/// A call through a record-routing proxy: INVITE, 200, ACK, a pause, BYE, 200.
const UAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kamailio/uac.xml");
/// An INVITE answered 404, and its ACK.
const NOT_FOUND: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/sipp/not_found.xml"
);

/// PostgreSQL and the two proxies, as `registrar.sh 0` starts them. Stopped with SIGTERM,
/// on which the script stops Kamailio and PostgreSQL and removes the database (SIGKILL
/// would leave them running).
struct Proxies {
    child: Killed,
    out: Output,
    /// Proxy A's port (udp and tcp, 127.0.0.1): the instances register through it.
    a: u16,
    /// Proxy B's: SIPp calls through it.
    b: u16,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status();
        // longer than common::terminate's 3 s: the script also waits for `pg_ctl stop`
        wait_exit(&mut self.child, 20.0);
    }
}

fn proxies() -> Proxies {
    assert!(
        Command::new("kamailio").arg("-v").output().is_ok(),
        "kamailio is not installed (scripts/test installs it)"
    );
    let (a, b) = (free_udp_port(), free_udp_port());
    let (child, out) = spawn(
        Command::new("bash")
            .arg(SCRIPT)
            .args(["0", &a.to_string()])
            .env("PORT_B", b.to_string())
            .env("PG_PORT", free_tcp_port().to_string())
            // one worker each: a 180 and the 200 after it are never relayed out of order
            .env("CHILDREN", "1"),
    );
    let mut p = Proxies { child, out, a, b };
    // initdb takes a few seconds; the script exits at once on a failure
    let mut exited = None;
    let ready = wait_until(60.0, || {
        exited = p.child.0.try_wait().unwrap();
        p.out.text().contains("ready: ") || exited.is_some()
    });
    assert!(
        ready && exited.is_none() && p.out.text().contains("ready: "),
        "registrar.sh did not start ({exited:?}):\n{}",
        p.out.text()
    );
    p
}

/// `sipua serve` at 127.0.0.`k+1`:`port`, registered as sip:agent`k`@example.com through
/// proxy A.
fn agent(k: u8, port: u16, p: &Proxies) -> (Killed, Output) {
    let (child, out) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.{}:{port}", k + 1),
        "--no-media",
        "--lifetime",
        "120",
        "--register",
        &format!("sip:agent{k}@example.com"),
        "--registrar",
        &format!("sip:127.0.0.1:{}", p.a),
        "--expires",
        "60",
    ]));
    assert!(
        out.wait_for("registered (200", 10.0),
        "agent{k} did not register through proxy A:\n{}\nproxies:\n{}",
        out.text(),
        p.out.text()
    );
    (child, out)
}

/// SIPp places `n` calls through proxy B to `user` (sip:USER@127.0.0.1:B) with `scenario`,
/// 10 a second, each held 200 ms; its (successful, failed) counts and its last screen.
fn calls(p: &Proxies, scenario: &str, user: &str, n: u32) -> ((u32, u32), String) {
    let out = sipp()
        .args(["-sf", scenario, "-s", user, "-d", "200"])
        .args(["-r", "10", "-m", &n.to_string()])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-timeout", "30", "-timeout_error", "-nostdin"])
        .arg(format!("127.0.0.1:{}", p.b))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (counters(&text), text)
}

fn established(out: &Output) -> usize {
    out.text().matches(": Established").count()
}

#[test]
fn registrations_made_through_one_kamailio_are_found_by_another_in_postgresql() {
    let p = proxies();
    let port = free_udp_port();
    let mut agents: Vec<(Killed, Output)> = (1..=2).map(|k| agent(k, port, &p)).collect();
    let context = |what: &str| format!("{what}\nproxies:\n{}", p.out.text());

    // 1. through B, each call reaches the instance that registered through A
    for (k, (_, out)) in (1..=2).zip(&agents) {
        let (counts, text) = calls(&p, UAC, &format!("agent{k}"), 10);
        assert_eq!(counts, (10, 0), "{}", context(&text));
        // the instance's last lines may still be on their way through its pipe
        wait_until(2.0, || established(out) >= 10);
        assert_eq!(
            established(out),
            10,
            "{}",
            context(&format!("agent{k}:\n{}", out.text()))
        );
    }

    // 2. no one registered agent9: 404
    let (counts, text) = calls(&p, NOT_FOUND, "agent9", 5);
    assert_eq!(counts, (5, 0), "{}", context(&text));

    // 3. agent2 stops: it unregisters through A, and B then finds no binding
    let _ = Command::new("kill")
        .args(["-TERM", &agents[1].0 .0.id().to_string()])
        .status();
    let stopped = wait_exit(&mut agents[1].0, 10.0);
    assert!(
        stopped.is_some_and(|s| s.success()) && agents[1].1.text().contains("unregistered (200"),
        "{}",
        context(&format!("agent2:\n{}", agents[1].1.text()))
    );
    let (counts, text) = calls(&p, NOT_FOUND, "agent2", 5);
    assert_eq!(counts, (5, 0), "{}", context(&text));

    // 4. agent1's binding is untouched
    let (counts, text) = calls(&p, UAC, "agent1", 5);
    assert_eq!(counts, (5, 0), "{}", context(&text));
    wait_until(2.0, || established(&agents[0].1) >= 15);
    assert_eq!(
        established(&agents[0].1),
        15,
        "{}",
        context(&agents[0].1.text())
    );
}
