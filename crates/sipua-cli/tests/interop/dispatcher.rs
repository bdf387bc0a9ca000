//! The deployment recipe of `deploy/kamailio/` tested as users run it: Kamailio's dispatcher
//! in front of three `sipua serve` instances, each on an address of its own (127.0.0.2, .3,
//! .4, as on three hosts), SIPp placing calls through Kamailio.
//!
//! - One instance is killed mid-run: only the calls it held fail (their BYE finds no one);
//!   new calls fail over (408 → the next instance) until the OPTIONS probe takes it out, and
//!   after that every call succeeds on the two others.
//! - One instance is drained (SIGTERM with `--drain`): its OPTIONS and new INVITEs get 503,
//!   the dispatcher sends new calls elsewhere, its calls in progress end normally, it exits
//!   0 having hung up none.
//! - The killed instance comes back: the probe puts it back and it takes calls again.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::{free_udp_port, spawn, terminate, wait_exit, wait_until, Killed, Output};
use crate::matrix::sipua;
use crate::sipp::{counters, sipp};

const CFG: &str = include_str!("../../../../deploy/kamailio/dispatcher.cfg");
const UAC: &str = include_str!("../../../../deploy/kamailio/uac.xml");

/// One `sipua serve` instance at `127.0.0.N:port`.
fn instance(n: u8, port: u16) -> (Killed, Output) {
    let (child, out) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.{n}:{port}"),
        "--no-media",
        "--drain",
        "20",
        "--lifetime",
        "120",
    ]));
    assert!(
        out.wait_for("listening on", 10.0),
        "instance {n} did not start:\n{}",
        out.text()
    );
    (child, out)
}

/// Kamailio, stopped with SIGTERM (its workers follow; SIGKILL would leave them).
struct Dispatcher {
    child: Killed,
    out: Output,
    dir: PathBuf,
    port: u16,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dispatcher(instances: &[String]) -> Dispatcher {
    assert!(
        Command::new("kamailio").arg("-v").output().is_ok(),
        "kamailio is not installed (scripts/test installs it)"
    );
    let dir = std::env::temp_dir().join(format!("sipua-dispatcher-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("dispatcher.list");
    let lines: Vec<String> = instances.iter().map(|i| format!("1 {i}")).collect();
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let port = free_udp_port();
    let cfg = CFG
        .replace("@ADDR@", "127.0.0.1")
        .replace("@PORT@", &port.to_string())
        .replace("@LIST@", list.to_str().unwrap())
        .replace("@PING@", "1")
        .replace("@FR_TIMER@", "2000")
        .replace("@CHILDREN@", "1")
        .replace("@MPATH@", "/usr/lib/x86_64-linux-gnu/kamailio/modules/")
        .replace("@DIR@", dir.to_str().unwrap());
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let (child, out) = spawn(
        Command::new("kamailio")
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-Y"])
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid")),
    );
    let d = Dispatcher {
        child,
        out,
        dir,
        port,
    };
    assert!(
        d.out.wait_for("tcp: 127.0.0.1", 10.0),
        "kamailio did not start:\n{}",
        d.out.text()
    );
    d
}

/// SIPp makes `calls` calls through the dispatcher at `rate` a second, each `hold_ms` long;
/// started in the background.
fn calls(
    d: &Dispatcher,
    scenario: &std::path::Path,
    calls: u32,
    rate: u32,
    hold_ms: u32,
) -> (Killed, Output) {
    spawn(
        sipp()
            .arg("-sf")
            .arg(scenario)
            .args(["-d", &hold_ms.to_string()])
            .args([
                "-r",
                &rate.to_string(),
                "-m",
                &calls.to_string(),
                "-l",
                "200",
            ])
            .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
            .args(["-timeout", "60", "-nostdin"])
            .arg(format!("127.0.0.1:{}", d.port)),
    )
}

/// Waits for SIPp to end; its (successful, failed) counts.
fn outcome(sipp: &mut Killed, out: &Output) -> (u32, u32) {
    wait_exit(sipp, 60.0);
    // its final screen, written as it exits, reaches `out` a moment later
    out.wait_closed(10.0);
    counters(&out.text())
}

/// `n` short calls through the dispatcher, every one of which must succeed.
fn all_succeed(d: &Dispatcher, scenario: &std::path::Path, n: u32) {
    let (mut run, run_out) = calls(d, scenario, n, 20, 500);
    assert_eq!(
        outcome(&mut run, &run_out),
        (n, 0),
        "{}\nkamailio:\n{}",
        run_out.text(),
        d.out.text()
    );
}

fn established(out: &Output) -> usize {
    out.text().matches(": Established").count()
}

#[test]
fn dispatcher_fails_over_a_killed_instance_drains_one_and_takes_one_back() {
    let port = free_udp_port();
    let mut serves: Vec<(Killed, Output)> = (2..=4).map(|n| instance(n, port)).collect();
    let uris: Vec<String> = (2..=4).map(|n| format!("sip:127.0.0.{n}:{port}")).collect();
    let d = dispatcher(&uris);
    let scenario = d.dir.join("uac.xml");
    std::fs::write(&scenario, UAC).unwrap();
    let context = |what: &str| format!("{what}\nkamailio:\n{}", d.out.text());

    // 1. 200 calls at 20/s, a second each; instance .2 is killed 3 s in
    let (mut run, run_out) = calls(&d, &scenario, 200, 20, 1000);
    std::thread::sleep(Duration::from_secs(3));
    let before = established(&serves[0].1);
    assert!(before > 0, "{}", context("instance .2 took no call"));
    let _ = serves[0].0 .0.kill();
    let (ok, failed) = outcome(&mut run, &run_out);
    // at 20 calls/s of a second each, about 7 calls live on .2 when it died: their BYEs
    // fail; a new call hashed to it fails over after the 2 s transaction timer
    assert!(
        ok + failed == 200 && failed <= 20,
        "{}",
        context(&format!(
            "killed: {ok} ok, {failed} failed\n{}",
            run_out.text()
        ))
    );

    // 2. after the probe took .2 out, every call succeeds
    all_succeed(&d, &scenario, 60);

    // 3. .3 drains in the middle of 100 calls of 2 s: none fails, .3 hangs up none
    let (mut run, run_out) = calls(&d, &scenario, 100, 20, 2000);
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &serves[1].0 .0.id().to_string()])
        .status();
    assert_eq!(
        outcome(&mut run, &run_out),
        (100, 0),
        "{}",
        context(&format!("{}\n.3:\n{}", run_out.text(), serves[1].1.text()))
    );
    let drained = wait_exit(&mut serves[1].0, 20.0);
    assert!(
        drained.is_some_and(|s| s.success())
            && serves[1]
                .1
                .text()
                .contains("drained (0 calls hung up at the deadline)"),
        "{}",
        context(&serves[1].1.text())
    );

    // 4. .2 comes back: the probe puts it back within a few seconds and it takes calls
    serves[0] = instance(2, port);
    let back = wait_until(10.0, || {
        d.out
            .text()
            .lines()
            .any(|l| l.contains("instance OPTIONS sip:127.0.0.2") && l.ends_with(" up"))
    });
    assert!(back, "{}", context(".2 was not put back"));
    all_succeed(&d, &scenario, 60);
    assert!(
        established(&serves[0].1) > 0,
        "{}",
        context("the returned instance took no call")
    );
}
