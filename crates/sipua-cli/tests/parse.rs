//! `sipua parse`: exit codes, JSON fields, readable summary, errors on stderr, never a panic.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn corpus(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sipua-message/tests/corpus")
        .join(file)
}

fn sipua(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipua"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn request_as_json() {
    let out = sipua(
        &[
            "parse",
            "--json",
            corpus("rfc4475/wsinv.dat").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["kind"], "request");
    assert_eq!(v["method"], "INVITE");
    assert_eq!(v["uri"], "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(v["status"], serde_json::Value::Null);
    assert_eq!(v["call_id"], "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(v["cseq"]["seq"], 9);
    assert_eq!(v["cseq"]["method"], "INVITE");
    assert_eq!(v["from"]["display"], "J Rosenberg \\\"");
    assert_eq!(v["from"]["uri"], "sip:jdrosen@example.com");
    assert_eq!(v["from"]["tag"], "98asjd8");
    assert_eq!(v["to"]["tag"], "1918181833n");
    let via = v["via"].as_array().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!(via[0]["transport"], "UDP");
    assert_eq!(via[0]["host"], "192.0.2.2");
    assert_eq!(via[0]["branch"], "390skdjuw");
    assert_eq!(via[1]["transport"], "TCP");
    assert_eq!(v["body_len"], 150);
    let headers = v["headers"].as_array().unwrap();
    assert!(headers.iter().any(
        |h| h[0] == "NewFangledHeader" && h[1] == "newfangled value continued newfangled value"
    ));
    assert!(headers.iter().any(|h| h[0] == "Via"));
}

#[test]
fn response_from_stdin() {
    let data = std::fs::read(corpus("rfc4475/unreason.dat")).unwrap();
    let out = sipua(&["parse", "--json", "-"], Some(&data));
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["kind"], "response");
    assert_eq!(v["status"], 200);
    assert!(v["reason"].as_str().unwrap().ends_with("простое"));
    assert_eq!(v["method"], serde_json::Value::Null);
    let out = sipua(&["parse", "-"], Some(&data));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("response 200 "), "{text}");
    assert!(
        text.contains("call-id  unreason.1234ksdfak3j2erwedfsASdf"),
        "{text}"
    );
}

#[test]
fn invalid_messages_exit_1_with_a_reason() {
    for (file, reason) in [
        (
            "rfc4475/badinv01.dat",
            "error: invalid Via header: empty parameter\n",
        ),
        ("rfc4475/badvers.dat", "error: SIP version not supported\n"),
        ("rfc4475/insuf.dat", "error: missing "),
    ] {
        let out = sipua(&["parse", corpus(file).to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with(reason), "{file}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn garbage_never_panics() {
    // a deterministic spread of nasty inputs: empty, binary, truncated, huge numbers
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"\r\n\r\n".to_vec(),
        vec![0xff; 300],
        b"INVITE".to_vec(),
        b"SIP/2.0 99999999999999999999 x\r\n\r\n".to_vec(),
    ];
    let valid = std::fs::read(corpus("rfc4475/esc01.dat")).unwrap();
    for cut in (0..valid.len()).step_by(37) {
        inputs.push(valid[..cut].to_vec());
    }
    let mut x: u32 = 12345;
    for _ in 0..20 {
        let mut v = valid.clone();
        for _ in 0..8 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let i = x as usize % v.len();
            v[i] = (x >> 16) as u8;
        }
        inputs.push(v);
    }
    for input in inputs {
        let out = sipua(&["parse", "-"], Some(&input));
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "exit {:?} for {:?}",
            out.status,
            String::from_utf8_lossy(&input)
        );
        if out.status.code() == Some(1) {
            assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
        }
    }
}

#[test]
fn unreadable_file_is_reported() {
    let out = sipua(&["parse", "/nonexistent/file.sip"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: cannot read"));
}
