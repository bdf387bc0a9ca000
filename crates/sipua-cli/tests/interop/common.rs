//! What the interop tests share: free loopback ports, child processes whose output is
//! gathered as it comes and which are killed when their guard drops, polling with a
//! deadline, and the PJSIP peer (`pjsua/peer.py`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use ports::{free_baresip_sip_port, free_tcp_port, free_udp_port};

#[path = "../support/ports.rs"]
mod ports;

/// Polls `done` every 50 ms for up to `secs` seconds; true as soon as it holds.
pub(crate) fn wait_until(secs: f64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a child writes to its pipes, gathered line by line by reader threads as it arrives;
/// and how many of those pipes are still open.
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<Mutex<String>>, Arc<AtomicUsize>);

impl Output {
    pub(crate) fn collect(&self, pipe: impl Read + Send + 'static) {
        let (text, open) = (self.0.clone(), self.1.clone());
        open.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            let mut pipe = BufReader::new(pipe);
            let mut line = Vec::new();
            while matches!(pipe.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Waits up to `secs` until every pipe is read to its end: what a child wrote as it
    /// exited (SIPp's final counts) is in [`text`](Self::text) only then, a little after
    /// the exit itself.
    pub(crate) fn wait_closed(&self, secs: f64) -> bool {
        wait_until(secs, || self.1.load(Ordering::SeqCst) == 0)
    }

    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn wait_for(&self, pattern: &str, secs: f64) -> bool {
        wait_until(secs, || self.text().contains(pattern))
    }
}

/// A child that is killed (by its own PID) and reaped when the guard drops.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with stdout and stderr gathered into one `Output`, stdin closed.
pub(crate) fn spawn(cmd: &mut Command) -> (Killed, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let out = Output::default();
    out.collect(child.stdout.take().unwrap());
    out.collect(child.stderr.take().unwrap());
    (Killed(child), out)
}

/// Waits up to `secs` for the child to exit; `None` if it is still running.
/// Stops `child` with SIGTERM and waits up to 3 s for it (Kamailio: its worker processes
/// follow the main one on SIGTERM; SIGKILL would leave them holding the ports).
pub(crate) fn terminate(child: &mut Killed) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    wait_exit(child, 3.0);
}

pub(crate) fn wait_exit(child: &mut Killed, secs: f64) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(secs, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    status
}

const PEER_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pjsua/peer.py");
const VENV_PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/interop-venv/bin/python"
);

/// The Python that runs `pjsua/peer.py`: `$SIPUA_PYTHON`, else the venv `scripts/test` makes,
/// else `python3`; it must import pjsua2.
pub(crate) fn python() -> String {
    let python = std::env::var("SIPUA_PYTHON").unwrap_or_else(|_| {
        if Path::new(VENV_PYTHON).exists() {
            VENV_PYTHON.to_owned()
        } else {
            "python3".to_owned()
        }
    });
    let check = Command::new(&python).args(["-c", "import pjsua2"]).output();
    assert!(
        check.as_ref().is_ok_and(|o| o.status.success()),
        "{python} cannot import pjsua2 (PJSIP's Python binding, PyPI pjsua2-python): scripts/test \
         installs it into target/interop-venv; or set SIPUA_PYTHON to a python that has it\n{}",
        check.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).into_owned()
        )
    );
    python
}

/// `pjsua/peer.py` with `args`, once it has said READY; returns it, its output and its URI.
pub(crate) fn pjsua_peer(args: &[&str]) -> (Killed, Output, String) {
    let (child, out) = spawn(Command::new(python()).arg("-u").arg(PEER_PY).args(args));
    assert!(
        out.wait_for("READY sip:", 10.0),
        "peer.py did not start:\n{}",
        out.text()
    );
    let text = out.text();
    let uri = text
        .lines()
        .find_map(|l| l.strip_prefix("READY "))
        .unwrap()
        .trim()
        .to_owned();
    (child, out, uri)
}

/// A connection to baresip's ctrl_tcp: commands go out as JSON in netstrings
/// (`LEN:{"command":…,"params":…,"token":…},`); responses and events come back the same way.
pub(crate) struct Ctrl {
    stream: TcpStream,
    buf: Vec<u8>,
    seen: Vec<String>,
}

impl Ctrl {
    /// Connects to baresip's ctrl_tcp on 127.0.0.1:`port`.
    pub(crate) fn connect(port: u16) -> Ctrl {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("ctrl_tcp 127.0.0.1:{port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Ctrl {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, command: &str, params: &str) {
        let json =
            serde_json::json!({"command": command, "params": params, "token": "sipua"}).to_string();
        self.stream
            .write_all(format!("{}:{json},", json.len()).as_bytes())
            .unwrap();
    }

    /// Reads what has arrived, for up to `secs`, until a message contains `pattern`.
    pub(crate) fn wait_for(&mut self, pattern: &str, secs: f64) -> bool {
        self.wait_count(pattern, 1, secs)
    }

    /// Moves every complete netstring from `buf` to `seen`.
    pub(crate) fn decode(&mut self) {
        while let Some(colon) = self.buf.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&self.buf[..colon])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "ctrl_tcp: bad netstring {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
            let end = colon + 1 + len;
            if self.buf.len() <= end {
                break; // the payload or its trailing comma is still to come
            }
            let msg = String::from_utf8_lossy(&self.buf[colon + 1..end]).into_owned();
            self.seen.push(msg);
            self.buf = self.buf.split_off(end + 1);
        }
    }

    /// Reads for up to `secs` until `n` messages contain `pattern` (events repeat, such as
    /// `CALL_REMOTE_SDP` after each re-INVITE); whether they did.
    pub(crate) fn wait_count(&mut self, pattern: &str, n: usize, secs: f64) -> bool {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if self.seen.iter().filter(|m| m.contains(pattern)).count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("ctrl_tcp read: {e}"),
            }
            self.decode();
        }
    }

    /// The digits of the `CALL_DTMF_START` events so far, in order.
    pub(crate) fn dtmf(&self) -> String {
        self.seen
            .iter()
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .filter(|v| v["type"] == "CALL_DTMF_START")
            .filter_map(|v| v["param"].as_str().map(str::to_owned))
            .collect()
    }

    pub(crate) fn transcript(&self) -> String {
        self.seen.join("\n")
    }
}

/// A certificate for 127.0.0.1 and localhost and its key, as PEM files made once per run
/// (rcgen): what every TLS and WSS listener of the tests presents, and what every client of
/// theirs trusts.
pub(crate) fn test_certificate() -> (std::path::PathBuf, std::path::PathBuf) {
    static MADE: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sipua-interop-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        (cert, key)
    })
    .clone()
}
