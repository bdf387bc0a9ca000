//! Interop with baresip (Debian `baresip`), on loopback: `sipua call` against baresip answering
//! by itself, and baresip calling `sipua serve` (dialled through baresip's ctrl_tcp socket),
//! hung up once by baresip and once by sipua. baresip runs headless (no stdio UI, no sound card:
//! a sine source and a null sink) from a config directory made per test from the templates in
//! `tests/interop/baresip/`, with its SIP trace (`-s`) on for the assertions and for failure
//! messages. baresip missing is a failure, not a skip: `scripts/test` installs it.

use crate::common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = include_str!("baresip/config");
const ACCOUNTS: &str = include_str!("baresip/accounts");

/// `sipua serve` on 127.0.0.1:`port`, running until its lifetime ends (or the guard drops).
fn serve(port: u16, lifetime: u32) -> (Killed, Output) {
    let (child, out) = spawn(Command::new(env!("CARGO_BIN_EXE_sipua")).args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--lifetime",
        &lifetime.to_string(),
    ]));
    assert!(
        out.wait_for("listening on", 10.0),
        "sipua serve did not start:\n{}",
        out.text()
    );
    (child, out)
}

/// One headless baresip on loopback, from a private config directory that is removed again
/// when it drops (after the process is killed).
pub(crate) struct Baresip {
    child: Killed,
    pub(crate) out: Output,
    dir: PathBuf,
    pub(crate) sip_port: u16,
    ctrl_port: u16,
}

impl Baresip {
    fn start() -> Baresip {
        Baresip::start_with("", None, false)
    }

    /// [`Baresip::start`] with `params` added to its account (`;outbound="sip:…"`) and, when
    /// given, a contacts file whose first entry is where its `message` command sends (the
    /// `contact` module is loaded for it).
    /// With `tls`, its TLS listener (at SIP port + 1) presents the tests' certificate.
    pub(crate) fn start_with(params: &str, contact: Option<&str>, tls: bool) -> Baresip {
        assert!(
            Command::new("baresip")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "baresip is not installed (apt-get install baresip; scripts/test does it)"
        );
        let sip_port = free_baresip_sip_port();
        let ctrl_port = free_tcp_port();
        let dir = std::env::temp_dir().join(format!(
            "sipua-interop-baresip-{}-{sip_port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fill = |template: &str| {
            template
                .replace("@SIP_PORT@", &sip_port.to_string())
                .replace("@CTRL_PORT@", &ctrl_port.to_string())
        };
        let mut config = fill(CONFIG);
        let mut accounts = fill(ACCOUNTS);
        if !params.is_empty() {
            accounts = accounts
                .lines()
                .map(|l| {
                    if l.starts_with('<') {
                        format!("{l}{params}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
        }
        if tls {
            // certificate and key in one file, as baresip 1.0 reads them
            let (cert, key) = test_certificate();
            let both = dir.join("tls.pem");
            let pem =
                std::fs::read_to_string(cert).unwrap() + &std::fs::read_to_string(key).unwrap();
            std::fs::write(&both, pem).unwrap();
            config.push_str(&format!("sip_certificate\t\t{}\n", both.display()));
        }
        if let Some(c) = contact {
            config.push_str("module\t\t\tcontact.so\n");
            std::fs::write(dir.join("contacts"), format!("\"peer\" <{c}>\n")).unwrap();
        }
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(dir.join("accounts"), accounts).unwrap();
        // -n: the address to use (an interface name such as `lo` is not found), -s: SIP trace
        // on stdout, -t: quit after 120 s even if this test dies without killing it
        let mut cmd = Command::new("baresip");
        cmd.arg("-f")
            .arg(&dir)
            .args(["-n", "127.0.0.1", "-s", "-t", "120"]);
        let (child, out) = spawn(&mut cmd);
        let mut bs = Baresip {
            child,
            out,
            dir,
            sip_port,
            ctrl_port,
        };
        let ready = bs.out.wait_for("baresip is ready.", 10.0);
        let exited = bs.child.0.try_wait().unwrap();
        assert!(
            ready && exited.is_none(),
            "baresip did not start (exit {exited:?}):\n{}",
            bs.out.text()
        );
        bs
    }

    pub(crate) fn log(&self) -> String {
        self.out.text()
    }

    /// Whether baresip's trace shows a 200 response to a BYE, sent from `from` to `to` (ports on
    /// 127.0.0.1). A traced message starts with `UDP 127.0.0.1:A -> 127.0.0.1:B` and ends with
    /// the colour reset `ESC[;m`.
    fn traced_bye_200(&self, from: u16, to: u16) -> bool {
        let head = format!("UDP 127.0.0.1:{from} -> 127.0.0.1:{to}\n");
        self.log().split(head.as_str()).skip(1).any(|m| {
            let m = m.split("\u{1b}[;m").next().unwrap_or(m);
            m.starts_with("SIP/2.0 200 ")
                && m.lines()
                    .any(|l| l.starts_with("CSeq:") && l.trim_end().ends_with(" BYE"))
        })
    }

    pub(crate) fn ctrl(&self) -> Ctrl {
        Ctrl::connect(self.ctrl_port)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sipua_call_reaches_baresip_auto_answer() {
    let bs = Baresip::start();
    let (mut call, out) = spawn(Command::new(env!("CARGO_BIN_EXE_sipua")).args([
        "call",
        &format!("sip:baresip@127.0.0.1:{}", bs.sip_port),
        "--duration",
        "1",
    ]));
    // 1 s call + up to 5 s of transaction lingering in `ua.stop()` after the BYE
    let status = wait_exit(&mut call, 30.0);
    let text = out.text();
    let context = || format!("sipua call:\n{text}\nbaresip:\n{}", bs.log());
    assert!(
        status.is_some_and(|s| s.success()),
        "sipua call exit {status:?}\n{}",
        context()
    );
    assert!(text.contains("call: Established"), "{}", context());
    assert!(text.contains("BYE: 200 OK"), "{}", context());
    // baresip's own view: it answered, the call was up, and it ended on our BYE
    assert!(
        bs.out.wait_for("Call established: sip:sipua@", 5.0),
        "{}",
        context()
    );
    assert!(
        bs.out
            .wait_for("session closed: Connection reset by peer", 5.0),
        "{}",
        context()
    );
}

#[test]
fn baresip_calls_sipua_serve_and_hangs_up() {
    let port = free_udp_port();
    let (_serve, served) = serve(port, 60);
    let bs = Baresip::start();
    let mut ctrl = bs.ctrl();
    let context = |ctrl: &Ctrl| {
        format!(
            "ctrl_tcp:\n{}\nsipua serve:\n{}\nbaresip:\n{}",
            ctrl.transcript(),
            served.text(),
            bs.log()
        )
    };

    ctrl.send("dial", &format!("sip:sipua@127.0.0.1:{port}"));
    assert!(ctrl.wait_for(r#""ok":true"#, 5.0), "{}", context(&ctrl));
    assert!(
        ctrl.wait_for(r#""type":"CALL_ESTABLISHED""#, 10.0),
        "{}",
        context(&ctrl)
    );
    assert!(served.wait_for(": Established", 5.0), "{}", context(&ctrl));

    std::thread::sleep(Duration::from_secs(1));
    ctrl.send("hangup", "");
    assert!(
        ctrl.wait_for(r#""type":"CALL_CLOSED""#, 10.0),
        "{}",
        context(&ctrl)
    );
    assert!(
        served.wait_for(": terminated (the peer hung up)", 10.0),
        "{}",
        context(&ctrl)
    );
    // sipua answered baresip's BYE with 200
    assert!(
        wait_until(5.0, || bs.traced_bye_200(port, bs.sip_port)),
        "no 200 to the BYE from sipua in baresip's trace\n{}",
        context(&ctrl)
    );
}

#[test]
fn baresip_calls_sipua_serve_which_hangs_up_when_its_lifetime_ends() {
    let bs = Baresip::start();
    let port = free_udp_port();
    // stopping at the end of its lifetime, sipua serve hangs up the calls still up (BYE)
    let (mut server, served) = serve(port, 4);
    let mut ctrl = bs.ctrl();
    let context = |ctrl: &Ctrl| {
        format!(
            "ctrl_tcp:\n{}\nsipua serve:\n{}\nbaresip:\n{}",
            ctrl.transcript(),
            served.text(),
            bs.log()
        )
    };

    ctrl.send("dial", &format!("sip:sipua@127.0.0.1:{port}"));
    assert!(ctrl.wait_for(r#""ok":true"#, 5.0), "{}", context(&ctrl));
    assert!(
        ctrl.wait_for(r#""type":"CALL_ESTABLISHED""#, 10.0),
        "{}",
        context(&ctrl)
    );
    assert!(served.wait_for(": Established", 5.0), "{}", context(&ctrl));

    assert!(
        ctrl.wait_for(r#""type":"CALL_CLOSED""#, 15.0),
        "{}",
        context(&ctrl)
    );
    assert!(
        ctrl.wait_for("Connection reset by peer", 1.0),
        "baresip's call did not end by a BYE from sipua\n{}",
        context(&ctrl)
    );
    assert!(
        served.wait_for(": terminated (we hung up)", 5.0),
        "{}",
        context(&ctrl)
    );
    assert!(
        wait_until(5.0, || bs.traced_bye_200(bs.sip_port, port)),
        "no 200 from baresip to sipua's BYE in baresip's trace\n{}",
        context(&ctrl)
    );
    // and sipua serve then exits on its own, successfully (after its BYE transaction is done)
    let status = wait_exit(&mut server, 20.0);
    assert!(
        status.is_some_and(|s| s.success()),
        "sipua serve exit {status:?}\n{}",
        context(&ctrl)
    );
}
