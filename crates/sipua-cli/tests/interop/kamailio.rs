//! Interop with Kamailio (Debian `kamailio`, `kamailio-websocket-modules`) as registrar and
//! stateful proxy with digest authentication from a text database (`kamailio/kamailio.cfg`,
//! `kamailio/db/`), started by each test on loopback. Over UDP, TCP and WebSocket: Bob
//! (`sipua serve --register`) registers through a 401 challenge, Alice (`sipua call`) calls
//! `sip:bob@127.0.0.1` through the proxy answering its 407, the call carries audio both ways
//! and is hung up; Alice's MESSAGE reaches Bob through the proxy; Bob unregisters every
//! binding and a MESSAGE to him then gets 404. Kamailio missing is a failure, not a skip:
//! `scripts/test` installs it.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

const CFG: &str = include_str!("kamailio/kamailio.cfg");
const VERSION: &str = include_str!("kamailio/db/version");
const SUBSCRIBER: &str = include_str!("kamailio/db/subscriber");

/// The path of the WebSocket URL the tests give `--proxy` (Kamailio logs each handshake's).
const WS_PATH: &str = "/sipua-edge?client=test";

/// One Kamailio on loopback from a private directory; stopped with SIGTERM (its worker
/// processes follow the main one; SIGKILL would leave them holding the ports).
pub(crate) struct Kamailio {
    child: Killed,
    pub(crate) out: Output,
    dir: PathBuf,
    pub(crate) sip_port: u16,
    pub(crate) ws_port: u16,
    /// SIP over TLS, with `WITH_TLS`.
    pub(crate) tls_port: u16,
    /// Secure WebSocket, with `WITH_TLS`.
    pub(crate) wss_port: u16,
}

impl Kamailio {
    fn start(name: &str) -> Kamailio {
        Kamailio::start_with(name, &[])
    }

    /// [`Kamailio::start`] with `-A` defines of the config (`OPEN_RELAY`, `WITH_TCP_FLOWS`).
    pub(crate) fn start_with(name: &str, defines: &[&str]) -> Kamailio {
        Kamailio::start_at(name, defines, None)
    }

    /// A Kamailio in network namespace `ns` at `ip` (ports 5060, 8080, 5061, 8443): the
    /// config's and the user table's 127.0.0.1 become `ip`.
    pub(crate) fn start_in(name: &str, ns: &str, ip: &str) -> Kamailio {
        Kamailio::start_at(name, &[], Some((ns, ip)))
    }

    fn start_at(name: &str, defines: &[&str], at: Option<(&str, &str)>) -> Kamailio {
        assert!(
            Command::new("kamailio").arg("-v").output().is_ok(),
            "kamailio is not installed (apt-get install kamailio kamailio-websocket-modules; \
             scripts/test does it)"
        );
        let dir = std::env::temp_dir().join(format!(
            "sipua-interop-kamailio-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (db, run) = (dir.join("db"), dir.join("run"));
        std::fs::create_dir_all(&db).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(db.join("version"), VERSION).unwrap();
        let ip = at.map_or("127.0.0.1", |(_, ip)| ip);
        std::fs::write(db.join("subscriber"), SUBSCRIBER.replace("127.0.0.1", ip)).unwrap();
        let (sip_port, ws_port, tls_port, wss_port) = if at.is_some() {
            (5060, 8080, 5061, 8443) // a namespace of its own: every port is free
        } else {
            let sip_port = free_baresip_sip_port();
            let ws_port = free_tcp_port();
            let tls_port = free_tcp_port();
            let wss_port = free_tcp_port();
            (sip_port, ws_port, tls_port, wss_port)
        };
        if defines.contains(&"WITH_TLS") {
            let (cert, key) = test_certificate();
            std::fs::write(
                dir.join("tls.cfg"),
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                     require_certificate = no\nprivate_key = {}\ncertificate = {}\n\n\
                     [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                     require_certificate = no\n",
                    key.display(),
                    cert.display()
                ),
            )
            .unwrap();
        }
        let cfg = CFG
            .replace("@UDP_PORT@", &sip_port.to_string())
            .replace("@WS_PORT@", &ws_port.to_string())
            .replace("@TLS_PORT@", &tls_port.to_string())
            .replace("@WSS_PORT@", &wss_port.to_string())
            .replace("@DIR@", dir.to_str().unwrap())
            .replace("@DB_DIR@", db.to_str().unwrap())
            .replace("127.0.0.1", ip);
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut command = match at {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kamailio"]);
                c
            }
            None => Command::new("kamailio"),
        };
        let (child, out) = spawn(
            command
                .arg("-f")
                .arg(&cfg_path)
                .args(["-DD", "-E", "-Y"])
                .arg(&run)
                .arg("-P")
                .arg(run.join("kamailio.pid"))
                .args(defines.iter().flat_map(|d| ["-A", d])),
        );
        let k = Kamailio {
            child,
            out,
            dir,
            sip_port,
            ws_port,
            tls_port,
            wss_port,
        };
        assert!(
            k.out.wait_for("sipua-kamailio ready", 10.0),
            "kamailio did not start:\n{}",
            k.out.text()
        );
        k
    }

    /// The proxy for `transport` as a user writes `--proxy`: `IP:PORT` for UDP, a SIP URI
    /// with its transport for TCP, a URL with a host name and a path for WebSocket.
    fn proxy(&self, transport: &str) -> String {
        match transport {
            "ws" => format!("ws://localhost:{}{WS_PATH}", self.ws_port),
            "udp" => format!("127.0.0.1:{}", self.sip_port),
            t => format!("sip:127.0.0.1:{};transport={t}", self.sip_port),
        }
    }

    /// The registrar's URI over `transport`.
    fn registrar(&self, transport: &str) -> String {
        let port = if transport == "ws" {
            self.ws_port
        } else {
            self.sip_port
        };
        match transport {
            "udp" => format!("sip:127.0.0.1:{port}"),
            t => format!("sip:127.0.0.1:{port};transport={t}"),
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sipua() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipua"))
}

/// Runs a `sipua` command to its end (at most 30 s): whether it exited 0 and what it printed.
fn run(args: &[&str]) -> (bool, String) {
    let (mut child, out) = spawn(sipua().args(args));
    let status = wait_exit(&mut child, 30.0);
    (status.is_some_and(|s| s.success()), out.text())
}

/// Runs `sipua <command> <args>` as Alice (From, credentials) through `proxy` from
/// `from_addr`.
fn as_alice(command: &str, args: &[&str], from_addr: &str, proxy: &str) -> (bool, String) {
    let mut all = vec![command];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--from",
        "sip:alice@127.0.0.1",
        "--from-addr",
        from_addr,
        "--user",
        "alice",
        "--password",
        "alicepw",
        "--proxy",
        proxy,
    ]);
    run(&all)
}

fn register_call_message_unregister(transport: &str) {
    let k = Kamailio::start(transport);
    let proxy = k.proxy(transport);
    let registrar = k.registrar(transport);
    let context = |what: &str| format!("{what}\nkamailio:\n{}", k.out.text());

    // Bob registers (401 → credentials → 200) and answers calls
    let bob_listen = format!("{transport}:127.0.0.1:{}", free_tcp_port());
    let (_bob, bob_out) = spawn(sipua().args([
        "serve",
        "--listen",
        &bob_listen,
        "--register",
        "sip:bob@127.0.0.1",
        "--registrar",
        &registrar,
        "--user",
        "bob",
        "--password",
        "bobpw",
        "--proxy",
        &proxy,
        "--lifetime",
        "40",
    ]));
    assert!(
        bob_out.wait_for("registered (200", 10.0),
        "{}",
        context(&format!("bob did not register:\n{}", bob_out.text()))
    );

    // Alice calls sip:bob@127.0.0.1 through the proxy (407 → credentials)
    let from_addr = format!("{transport}:127.0.0.1:0");
    let (ok, printed) = as_alice(
        "call",
        &["sip:bob@127.0.0.1", "--duration", "1.5"],
        &from_addr,
        &proxy,
    );
    let both = || format!("alice:\n{printed}\nbob:\n{}", bob_out.text());
    assert!(ok, "{}", context(&format!("the call failed\n{}", both())));
    if transport == "ws" {
        // the proxy URL's path and host name reached Kamailio's handshake
        let handshake = format!(
            "WebSocket handshake for {WS_PATH} host localhost:{}",
            k.ws_port
        );
        assert!(k.out.text().contains(&handshake), "{}", context(&handshake));
    }
    assert!(printed.contains("BYE: 200"), "{}", context(&both()));
    assert!(
        bob_out.wait_for("INVITE from sip:alice@127.0.0.1", 2.0),
        "{}",
        context(&both())
    );
    // audio flowed (RTP goes straight between the two, the proxy only carries signalling)
    let media = printed
        .lines()
        .find(|l| l.starts_with("media: "))
        .unwrap_or_default();
    let received: u64 = media
        .split_whitespace()
        .skip_while(|w| *w != "recv")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        received >= 40,
        "{}",
        context(&format!("media: {media}\n{}", both()))
    );

    // Alice's MESSAGE reaches Bob through the proxy
    let (ok, printed) = as_alice(
        "message",
        &["sip:bob@127.0.0.1", "hello through kamailio"],
        &from_addr,
        &proxy,
    );
    assert!(ok && printed.contains("200"), "{}", context(&printed));
    assert!(
        bob_out.wait_for(
            "MESSAGE from sip:alice@127.0.0.1: hello through kamailio",
            3.0
        ),
        "{}",
        context(&bob_out.text())
    );

    // every binding of Bob removed (Contact: *): now he is unknown to the proxy
    let (ok, printed) = run(&[
        "register",
        "sip:bob@127.0.0.1",
        "--unregister-all",
        "--registrar",
        &registrar,
        "--from-addr",
        &from_addr,
        "--user",
        "bob",
        "--password",
        "bobpw",
        "--proxy",
        &proxy,
    ]);
    assert!(
        ok && printed.contains("unregistered all (200"),
        "{}",
        context(&printed)
    );
    let (ok, printed) = as_alice(
        "message",
        &["sip:bob@127.0.0.1", "anyone there?"],
        &from_addr,
        &proxy,
    );
    assert!(!ok, "{}", context(&printed));
    assert!(printed.contains("404"), "{}", context(&printed));
}

#[test]
fn kamailio_over_udp_registers_routes_a_call_and_a_message_and_unregisters() {
    register_call_message_unregister("udp");
}

#[test]
fn kamailio_over_tcp_registers_routes_a_call_and_a_message_and_unregisters() {
    register_call_message_unregister("tcp");
}

#[test]
fn kamailio_over_websocket_registers_routes_a_call_and_a_message_and_unregisters() {
    register_call_message_unregister("ws");
}

#[test]
fn kamailio_refuses_a_wrong_password_and_a_too_short_interval_is_raised() {
    let k = Kamailio::start("auth");
    let registrar = k.registrar("udp");
    let proxy = k.proxy("udp");
    let (ok, printed) = run(&[
        "register",
        "sip:alice@127.0.0.1",
        "--registrar",
        &registrar,
        "--user",
        "alice",
        "--password",
        "wrong",
        "--proxy",
        &proxy,
    ]);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("401"),
        "{printed}\nkamailio:\n{}",
        k.out.text()
    );
    // 423 Interval Too Brief: the registrar's Min-Expires (60) is asked for instead
    let (ok, printed) = run(&[
        "register",
        "sip:alice@127.0.0.1",
        "--registrar",
        &registrar,
        "--expires",
        "10",
        "--user",
        "alice",
        "--password",
        "alicepw",
        "--proxy",
        &proxy,
    ]);
    assert!(ok, "{printed}\nkamailio:\n{}", k.out.text());
    assert!(printed.contains("expires in 60 s"), "{printed}");
}

/// `sipua serve --register USER` through Kamailio over UDP, printing what it does.
fn registered_serve(k: &Kamailio, user: &str) -> (Killed, Output) {
    let listen = format!("udp:127.0.0.1:{}", free_tcp_port());
    let (child, out) = spawn(sipua().args([
        "serve",
        "--listen",
        &listen,
        "--no-media",
        "--register",
        &format!("sip:{user}@127.0.0.1"),
        "--registrar",
        &k.registrar("udp"),
        "--user",
        user,
        "--password",
        &format!("{user}pw"),
        "--proxy",
        &k.proxy("udp"),
        "--lifetime",
        "40",
    ]));
    assert!(
        out.wait_for("registered (200", 10.0),
        "{user} did not register:\n{}\nkamailio:\n{}",
        out.text(),
        k.out.text()
    );
    (child, out)
}

#[test]
fn kamailio_routes_a_subscription_and_a_transfer_between_registered_users() {
    let k = Kamailio::start("events");
    let proxy = k.proxy("udp");
    let (_bob, bob_out) = registered_serve(&k, "bob");
    let (_carol, carol_out) = registered_serve(&k, "carol");
    let context = |what: &str| {
        format!(
            "{what}\nbob:\n{}\ncarol:\n{}\nkamailio:\n{}",
            bob_out.text(),
            carol_out.text(),
            k.out.text()
        )
    };

    // Alice watches Bob's presence: SUBSCRIBE through the proxy's 407, NOTIFY back through
    // its Record-Route
    let (ok, printed) = as_alice(
        "subscribe",
        &["sip:bob@127.0.0.1", "--duration", "1"],
        "udp:127.0.0.1:0",
        &proxy,
    );
    assert!(ok, "{}", context(&printed));
    assert!(printed.contains("NOTIFY (active"), "{}", context(&printed));
    assert!(
        printed.contains("<basic>open</basic>"),
        "{}",
        context(&printed)
    );
    assert!(printed.contains("unsubscribed"), "{}", context(&printed));
    assert!(bob_out.wait_for("SUBSCRIBE presence from sip:alice@127.0.0.1", 2.0));

    // Alice calls Bob and transfers him to Carol: the REFER and its NOTIFYs follow the
    // dialog's route; Bob's call to Carol goes through the proxy with his own credentials
    let (ok, printed) = as_alice(
        "transfer",
        &[
            "sip:bob@127.0.0.1",
            "sip:carol@127.0.0.1",
            "--duration",
            "0.5",
        ],
        "udp:127.0.0.1:0",
        &proxy,
    );
    assert!(ok, "{}", context(&printed));
    assert!(printed.contains("REFER: 202"), "{}", context(&printed));
    assert!(
        printed.contains("transfer: 200 OK"),
        "{}",
        context(&printed)
    );
    assert!(
        bob_out.wait_for("transfer to sip:carol@127.0.0.1: Established", 5.0),
        "{}",
        context(&printed)
    );
    assert!(
        carol_out.wait_for("INVITE from sip:bob@127.0.0.1", 5.0),
        "{}",
        context(&printed)
    );
}
