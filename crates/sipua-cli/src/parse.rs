//! `sipua parse FILE`: parse one SIP message and print a summary or JSON.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use sipua_message::{Message, NameAddr, ParseError, Via};

/// Arguments of `sipua parse`.
#[derive(clap::Args)]
pub struct Args {
    /// The message file; `-` reads standard input.
    file: PathBuf,
    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    json: bool,
}

/// Reads, parses and prints; exit 0 on a valid message, 1 with `error: <reason>` otherwise.
pub fn run(args: &Args) -> ExitCode {
    let data = if args.file.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).map(|_| v)
    } else {
        std::fs::read(&args.file)
    };
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    // parse, then check the full grammar of Via, From, To and Contact as a UAS would
    let result = Message::parse(&data).and_then(|msg| {
        if args.json {
            to_json(&msg).map(|v| v.to_string() + "\n")
        } else {
            summary(&msg)
        }
    });
    match result {
        Ok(out) => {
            // a closed pipe is not worth a panic
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn addr_json(a: &NameAddr) -> Value {
    json!({ "display": a.display, "uri": a.uri.to_string(), "tag": a.tag() })
}

fn via_json(v: &Via) -> Value {
    json!({
        "transport": v.transport.as_str(),
        "host": v.host.to_string(),
        "port": v.port,
        "branch": v.branch(),
        "received": v.params.value("received"),
        "rport": v.params.get("rport").map(|r| r.map_or(Value::Bool(true), |p| Value::String(p.into()))),
    })
}

/// The JSON form documented in the README.
pub fn to_json(msg: &Message) -> Result<Value, ParseError> {
    msg.validate()?;
    let (kind, method, uri, status, reason) = match msg {
        Message::Request(r) => (
            "request",
            Some(r.method().to_string()),
            Some(r.uri().to_string()),
            None,
            None,
        ),
        Message::Response(r) => (
            "response",
            None,
            None,
            Some(r.status()),
            Some(r.reason().to_string()),
        ),
    };
    let headers: Vec<Value> = msg
        .headers()
        .iter()
        .map(|h| json!([h.name().as_str(), h.unfolded()]))
        .collect();
    Ok(json!({
        "kind": kind,
        "method": method,
        "uri": uri,
        "status": status,
        "reason": reason,
        "call_id": msg.call_id(),
        "cseq": { "seq": msg.cseq().seq, "method": msg.cseq().method.to_string() },
        "from": addr_json(msg.from()?),
        "to": addr_json(msg.to()?),
        "via": msg.via()?.iter().map(via_json).collect::<Vec<_>>(),
        "max_forwards": msg.max_forwards(),
        "content_type": msg.content_type().map(|c| c.to_string()),
        "headers": headers,
        "body_len": msg.body().len(),
    }))
}

fn summary(msg: &Message) -> Result<String, ParseError> {
    msg.validate()?;
    let mut s = String::new();
    match msg {
        Message::Request(r) => s.push_str(&format!("request  {} {}\n", r.method(), r.uri())),
        Message::Response(r) => s.push_str(&format!("response {} {}\n", r.status(), r.reason())),
    }
    s.push_str(&format!("call-id  {}\n", msg.call_id()));
    s.push_str(&format!("cseq     {}\n", msg.cseq()));
    s.push_str(&format!("from     {}\n", msg.from()?));
    s.push_str(&format!("to       {}\n", msg.to()?));
    for (i, v) in msg.via()?.iter().enumerate() {
        s.push_str(&format!("via[{i}]   {v}\n"));
    }
    s.push_str(&format!("headers  {}\n", msg.headers().len()));
    let ct = msg
        .content_type()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    s.push_str(&format!("body     {} bytes{ct}\n", msg.body().len()));
    Ok(s)
}
