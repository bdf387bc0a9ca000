//! Loss on real sockets (issue 20): two hosts in network namespaces joined by a router that
//! loses 20 % of the packets each way, duplicates 5 %, reorders 10 % and delays the rest by
//! 200 ms (`lossy/lab.sh`, a userspace netem over TUN devices: this machine's kernel has no
//! `sch_netem`). Kamailio, registrar and proxy, runs on one host; `sipua serve` users register
//! with it from the other, `sipua call` calls one of them through it and `sipua transfer`
//! hands a call to a third: every message crosses the impaired link, most of them twice.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::kamailio::Kamailio;

/// A lab of `lossy/lab.sh`, taken down when dropped.
struct Lab {
    name: String,
}

fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lossy/lab.sh")
}

impl Lab {
    fn up(name: &str, impairment: &[&str]) -> Lab {
        let out = Command::new(lab_script())
            .args(["up", name])
            .args(impairment)
            .output()
            .expect("lab.sh runs");
        assert!(
            out.status.success(),
            "the lab did not come up (it needs root, ip and /dev/net/tun):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Lab { name: name.into() }
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// `sipua ARGS` on `host` (a or b).
    fn sipua(&self, host: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), env!("CARGO_BIN_EXE_sipua")]);
        c.args(args);
        c
    }

    /// Takes the lab down and returns the impairer's counters (JSON).
    fn down(&mut self) -> String {
        let out = Command::new(lab_script())
            .args(["down", &self.name])
            .output()
            .expect("lab.sh runs");
        self.name.clear();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            self.down();
        }
    }
}

/// The number after `"key":` in the impairer's JSON, summed over both directions.
fn counter(stats: &str, key: &str) -> u64 {
    let pattern = format!("\"{key}\":");
    stats
        .match_indices(&pattern)
        .filter_map(|(i, _)| {
            let rest = stats[i + pattern.len()..].trim_start();
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse::<u64>().ok()
        })
        .sum()
}

const PROXY: &str = "10.77.2.2:5060";

/// `sipua serve` for `user` on host a at `port`, registered with Kamailio on host b.
fn registered(lab: &Lab, user: &str, port: u16) -> (Killed, Output) {
    let (child, out) = spawn(&mut lab.sipua(
        "a",
        &[
            "serve",
            "--listen",
            &format!("udp:10.77.1.2:{port}"),
            "--no-media",
            "--register",
            &format!("sip:{user}@10.77.2.2"),
            "--registrar",
            &format!("sip:{PROXY}"),
            "--user",
            user,
            "--password",
            &format!("{user}pw"),
            "--proxy",
            PROXY,
            "--lifetime",
            "150",
        ],
    ));
    (child, out)
}

/// `sipua COMMAND ARGS` as Alice on host a through the proxy; whether it exited 0, and what
/// it printed.
fn as_alice(lab: &Lab, command: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec![command];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--from",
        "sip:alice@10.77.2.2",
        "--from-addr",
        "udp:10.77.1.2:0",
        "--user",
        "alice",
        "--password",
        "alicepw",
        "--proxy",
        PROXY,
    ]);
    let out = lab.sipua("a", &all).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn registration_a_call_and_a_transfer_complete_over_a_lossy_link() {
    let name = format!("sl{}", std::process::id());
    let mut lab = Lab::up(
        &name,
        &[
            "--loss",
            "20",
            "--duplicate",
            "5",
            "--reorder",
            "10",
            "--delay",
            "200",
            "--seed",
            "7",
        ],
    );
    let k = Kamailio::start_in("lossy", &lab.ns("b"), "10.77.2.2");
    let (_bob, bob_out) = registered(&lab, "bob", 5062);
    let (_carol, carol_out) = registered(&lab, "carol", 5064);
    let context = |what: &str| {
        format!(
            "{what}\nbob:\n{}\ncarol:\n{}\nkamailio:\n{}",
            bob_out.text(),
            carol_out.text(),
            k.out.text()
        )
    };
    // registration: REGISTER, 401, REGISTER with credentials, 200, each across the link
    for (who, out) in [("bob", &bob_out), ("carol", &carol_out)] {
        assert!(
            out.wait_for("registered (200", 40.0),
            "{}",
            context(&format!("{who} did not register"))
        );
    }
    // a call from Alice to Bob through the proxy (407, credentials), hung up by Alice
    let (ok, printed) = as_alice(&lab, "call", &["sip:bob@10.77.2.2", "--duration", "2"]);
    assert!(ok && printed.contains("BYE: 200"), "{}", context(&printed));
    assert!(bob_out.wait_for("terminated (the peer hung up)", 10.0));
    // Alice calls Bob and transfers him to Carol: REFER, NOTIFYs, Bob's INVITE to Carol
    let (ok, printed) = as_alice(
        &lab,
        "transfer",
        &[
            "sip:bob@10.77.2.2",
            "sip:carol@10.77.2.2",
            "--duration",
            "1",
            "--timeout",
            "60",
        ],
    );
    assert!(ok, "{}", context(&printed));
    assert!(
        printed.contains("transfer: 200 OK"),
        "{}",
        context(&printed)
    );
    assert!(
        bob_out.wait_for("transfer to sip:carol@10.77.2.2: Established", 20.0),
        "{}",
        context(&printed)
    );
    assert!(
        carol_out.wait_for("INVITE from sip:bob@10.77.2.2", 5.0),
        "{}",
        context(&printed)
    );
    // the link really was hostile while all this happened
    drop(k);
    let stats = lab.down();
    let (received, dropped) = (counter(&stats, "received"), counter(&stats, "dropped"));
    eprintln!("impairer: {stats}");
    assert!(received > 50, "{stats}");
    assert!(
        dropped * 100 >= received * 10,
        "{dropped} of {received} dropped: {stats}"
    );
    assert!(
        counter(&stats, "duplicated") > 0 && counter(&stats, "reordered") > 0,
        "{stats}"
    );
}
