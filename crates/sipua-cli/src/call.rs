//! `sipua serve` and `sipua call` over UDP: the UA core on a real socket, printing state changes
//! as they happen. Signalling only for now (no media yet).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sipua::udp::UdpUserAgent;
use sipua_message::{Method, Uri};
use sipua_proto::ua::UaEvent;

/// How `sipua serve` answers INVITEs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Answer {
    /// Ring (180), then answer (200).
    Auto,
    /// Refuse with 486 Busy Here.
    Busy,
}

/// Arguments of `sipua serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen, as `udp:IP:PORT`.
    #[arg(long, default_value = "udp:127.0.0.1:5062")]
    listen: String,
    /// How to answer calls.
    #[arg(long, value_enum, default_value = "auto")]
    answer: Answer,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    lifetime: u64,
}

/// Arguments of `sipua call`.
#[derive(clap::Args)]
pub struct CallArgs {
    /// Who to call, e.g. `sip:bob@127.0.0.1:5062`.
    uri: String,
    /// Seconds to stay in the call before hanging up.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Local address to call from.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
}

fn udp_addr(s: &str) -> Result<SocketAddr, String> {
    let a = s
        .strip_prefix("udp:")
        .ok_or_else(|| format!("{s}: only udp:IP:PORT is supported so far"))?;
    a.parse().map_err(|e| format!("{s}: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `sipua serve`.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let addr = match udp_addr(&args.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    runtime().block_on(async {
        // a server answers whatever user the Request-URI names
        let mut ua = match UdpUserAgent::bind_with(addr, "sipua", |c| {
            c.capabilities.check_request_uri = false
        })
        .await
        {
            Ok(ua) => ua,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on udp:{}", ua.local_addr());
        let lifetime = async {
            if args.lifetime > 0 {
                tokio::time::sleep(Duration::from_secs(args.lifetime)).await
            } else {
                std::future::pending::<()>().await
            }
        };
        tokio::pin!(lifetime);
        loop {
            let ev = tokio::select! {
                ev = ua.next_event() => ev,
                _ = &mut lifetime => break,
            };
            let Some(ev) = ev else { break };
            match ev {
                UaEvent::Request { id, request, .. } => {
                    let method = request.method().clone();
                    println!(
                        "{} {} from {}",
                        method,
                        request.call_id(),
                        request.via_key().host
                    );
                    let answers: &[u16] = match (&method, args.answer) {
                        (Method::Invite, Answer::Auto) => &[180, 200],
                        (Method::Invite, Answer::Busy) => &[486],
                        _ => &[200],
                    };
                    for &status in answers {
                        if let Err(e) = ua.respond(id, status).await {
                            eprintln!("cannot answer {status}: {e}");
                        }
                    }
                }
                UaEvent::Ack { .. } => println!("call established"),
                UaEvent::AckTimeout { .. } => println!("no ACK: call ended with BYE"),
                UaEvent::Cancelled { .. } => println!("call cancelled"),
                UaEvent::Response { response, .. } => {
                    println!(
                        "{} answered: {} {}",
                        response.cseq().method,
                        response.status(),
                        response.reason()
                    )
                }
                UaEvent::Timeout { .. } => println!("a request of ours got no answer"),
                UaEvent::TransportError { .. } => println!("a request of ours could not be sent"),
            }
        }
        ua.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Runs `sipua call`: exit 0 when the call was answered and hung up cleanly.
pub fn call(args: &CallArgs) -> ExitCode {
    let (from, uri): (SocketAddr, Uri) = match (udp_addr(&args.from_addr), args.uri.parse::<Uri>())
    {
        (Ok(f), Ok(u)) => (f, u),
        (Err(e), _) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!("error: {}: {e}", args.uri);
            return ExitCode::from(2);
        }
    };
    // the next hop: the URI's host and port (RFC 3263 resolution comes with the transports)
    let destination = match uri.as_sip().and_then(|s| {
        s.host
            .ip()
            .map(|ip| SocketAddr::new(ip, s.port.unwrap_or(5060)))
    }) {
        Some(d) => d,
        None => {
            eprintln!(
                "error: {}: only sip:user@IP[:port] is supported so far",
                args.uri
            );
            return ExitCode::from(2);
        }
    };
    runtime().block_on(async {
        let mut ua = match UdpUserAgent::bind(from, "sipua").await {
            Ok(ua) => ua,
            Err(e) => {
                eprintln!("error: cannot bind {from}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("calling {uri} from udp:{}", ua.local_addr());
        if let Err(e) = ua.invite(uri, destination).await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let dialog = loop {
            match tokio::time::timeout(Duration::from_secs(40), ua.next_event()).await {
                Ok(Some(UaEvent::Response {
                    response, dialog, ..
                })) => {
                    println!("{} {}", response.status(), response.reason());
                    if response.is_success() {
                        break dialog;
                    }
                    if response.status() >= 300 {
                        return ExitCode::FAILURE;
                    }
                }
                Ok(Some(UaEvent::Timeout { .. })) | Ok(None) | Err(_) => {
                    eprintln!("error: no answer");
                    return ExitCode::FAILURE;
                }
                Ok(Some(_)) => {}
            }
        };
        let Some(dialog) = dialog else {
            eprintln!("error: the 200 made no dialog");
            return ExitCode::FAILURE;
        };
        println!("call established; hanging up in {} s", args.duration);
        tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0))).await;
        if let Err(e) = ua.request_in_dialog(dialog, Method::Bye, destination).await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(40), ua.next_event()).await {
                Ok(Some(UaEvent::Response { response, .. }))
                    if response.cseq().method == Method::Bye =>
                {
                    println!("BYE: {} {}", response.status(), response.reason());
                    ua.shutdown().await;
                    return if response.is_success() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    };
                }
                Ok(Some(_)) => {}
                _ => {
                    eprintln!("error: no answer to BYE");
                    return ExitCode::FAILURE;
                }
            }
        }
    })
}
