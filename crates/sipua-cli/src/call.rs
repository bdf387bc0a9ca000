//! `sipua call`: the session API (`UserAgent`, `Inviter`) on a real socket, printing state
//! changes as they happen and a line of media figures per call every second. Calls carry real
//! RTP audio (`sipua-media`'s `RtpAudio`): silence, a WAV file or an echo, optionally
//! recorded to WAV; `--no-media` keeps to signalling. What `serve` shares with it (printing,
//! the runtime) lives here too; `serve` itself is in `serve.rs`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sipua::message::{Response, Uri};
use sipua::{
    EndReason, Inviter, InviterOptions, Listen, Session, SessionDelegate,
    SessionDescriptionHandlerOptions, SessionInviteOptions, SessionState, TlsOptions, UserAgent,
    UserAgentOptions,
};

use crate::serve::read_pem;

/// What a peer wrote, for printing: at most [`SHOWN`] characters (a 60 KB URI is not printed
/// for every call), on one line.
pub fn shown(text: impl AsRef<str>) -> String {
    let text = text.as_ref();
    let mut out: String = text
        .chars()
        .take(SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(SHOWN).is_some() {
        out.push('…');
    }
    out
}

/// How much of a peer's text [`shown`] prints.
const SHOWN: usize = 200;

/// How `sipua serve` answers INVITEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Ring (180), then answer (200) at once.
    Auto,
    /// Refuse with 486 Busy Here.
    Busy,
    /// Ring (180) for this many seconds, then answer.
    Ring(u64),
}

impl std::str::FromStr for Answer {
    type Err = String;
    fn from_str(s: &str) -> Result<Answer, String> {
        match s {
            "auto" => Ok(Answer::Auto),
            "busy" => Ok(Answer::Busy),
            _ => s
                .strip_prefix("ring:")
                .and_then(|n| n.parse().ok())
                .map(Answer::Ring)
                .ok_or_else(|| format!("{s}: expected auto, busy or ring:SECONDS")),
        }
    }
}

/// Arguments of `sipua call`.
#[derive(clap::Args, Clone)]
pub struct CallArgs {
    /// Who to call, e.g. `sip:bob@127.0.0.1:5062`.
    uri: String,
    /// Seconds to stay in the call before hanging up.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Local address to call from.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
    /// The transport to call over: `udp`, `tcp`, `tls`, `ws` or `wss` (default: the URI's
    /// `transport` parameter, else the scheme of `--from-addr`, TLS for a `sips:` URI, else
    /// UDP).
    #[arg(long)]
    transport: Option<String>,
    /// Who we are, for From: a SIP URI or a name-addr such as `"Alice" <sip:alice@example.com>`.
    #[arg(long)]
    from: Option<String>,
    /// PEM certificates to trust for `tls` and `wss` (the server's, or its CA).
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<std::path::PathBuf>,
    /// Accept any TLS certificate from the server, whatever it names and whoever signed it:
    /// for testing only (anyone on the path could read and change the call's signalling).
    #[arg(long)]
    insecure: bool,
    /// PEM certificate chain to listen with on a `tls:` or `wss:` `--from-addr`, so that the
    /// peer can open connections to our Contact (without one we only open connections, and
    /// our Contact asks for them to be reused with `;ob`, RFC 5626); also presented to a
    /// server that asks for a client certificate (mutual TLS).
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Cancel the call if it is not answered within this many seconds (0: wait for the
    /// callee's final response).
    #[arg(long, default_value_t = 60.0)]
    answer_timeout: f64,
    /// Send the INVITE without an SDP offer (the callee offers in its 200).
    #[arg(long)]
    no_offer: bool,
    /// Make this many calls (a load run); prints the successful and failed counts.
    #[arg(long, default_value_t = 1)]
    calls: u64,
    /// Calls started per second when `--calls` is above 1.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Most calls in progress at once when `--calls` is above 1.
    #[arg(long, default_value_t = 1000)]
    concurrent: usize,
    /// Seconds to keep the user agent (and its TCP connections) open after the last call,
    /// for peers that treat a closed connection as a failed call.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    /// Play this WAV file into the call (any common format and rate; silence after it).
    #[arg(long)]
    play: Option<std::path::PathBuf>,
    /// Record what the call sends us into this WAV file (8 kHz, 16-bit mono).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Send these DTMF digits (RFC 4733) once the call is established.
    #[arg(long)]
    dtmf: Option<String>,
    #[command(flatten)]
    media: crate::media::MediaArgs,
    #[command(flatten)]
    auth: crate::account::AuthArgs,
    /// Signalling only: announce a fixed SDP and send no RTP.
    #[arg(long, conflicts_with_all = ["play", "record", "dtmf"])]
    no_media: bool,
    /// Offer WebRTC media (ICE, DTLS-SRTP, `UDP/TLS/RTP/SAVPF`), as a browser does: to call a
    /// SIP.js or JsSIP page, or a `sipua serve`.
    #[arg(long, conflicts_with = "no_media")]
    webrtc: bool,
    /// Once established, put the call on hold with a re-INVITE (`sendonly`), then take it
    /// off hold with another (0.3 s apart), and print each outcome.
    #[arg(long)]
    hold: bool,
    /// Once established (and after `--hold`), send this text in a MESSAGE (RFC 3428) inside
    /// the call (SIP.js `session.message()`), and print its answer.
    #[arg(long)]
    message: Option<String>,
    /// The same, outside the call: a MESSAGE of its own to the URI called.
    #[arg(long)]
    message_out: Option<String>,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Prints each state change of `session`, prefixed with `label`, until it terminates.
pub(crate) fn print_states(label: String, session: &Session) -> tokio::task::JoinHandle<()> {
    let mut rx = session.state_change();
    let session = session.clone();
    tokio::spawn(async move {
        let mut last = *rx.borrow();
        while rx.changed().await.is_ok() {
            let s = *rx.borrow();
            if s == last {
                continue;
            }
            last = s;
            match s {
                SessionState::Terminated => {
                    let why = session.end_reason().map_or("-".into(), describe);
                    println!("{label}: terminated ({why})");
                    break;
                }
                s => println!("{label}: {s:?}"),
            }
        }
    })
}

fn describe(r: EndReason) -> String {
    match r {
        EndReason::LocalBye => "we hung up".into(),
        EndReason::RemoteBye => "the peer hung up".into(),
        EndReason::Rejected { status, reason } => format!("{status} {reason}"),
        EndReason::LocalReject { status } => format!("we answered {status}"),
        EndReason::Cancelled => "cancelled by the caller".into(),
        EndReason::Timeout => "no response".into(),
        EndReason::TransportError => "could not send".into(),
        EndReason::AckTimeout => "no ACK: ended with BYE".into(),
        EndReason::MediaFailure(e) => format!("media failed: {e}"),
        EndReason::Replaced => "replaced by a transferred call".into(),
        other => format!("{other:?}"),
    }
}

struct Progress;

impl SessionDelegate for Progress {
    fn on_progress(&self, r: &Response) {
        println!("{} {}", r.status(), shown(r.reason()));
    }
}

/// Runs `sipua call`: exit 0 when the call was answered and hung up cleanly.
pub fn call(args: &CallArgs) -> ExitCode {
    let (listen, uri) = match (Listen::parse(&args.from_addr), args.uri.parse::<Uri>()) {
        (Ok(l), Ok(u)) => match with_transport(l, u, args.transport.as_deref()) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (Err(e), _) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!("error: {}: {e}", args.uri);
            return ExitCode::from(2);
        }
    };
    let from = match args.from.as_deref().map(parse_from).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return ExitCode::from(2);
        }
    };
    // the PEM files named (each empty when not named)
    let pems = (|| -> Result<(String, String, String), String> {
        Ok((
            read_pem(args.cert.as_deref())?,
            read_pem(args.key.as_deref())?,
            read_pem(args.ca.as_deref())?,
        ))
    })();
    let tls = pems.and_then(|(chain, key, roots)| {
        let mut tls = TlsOptions::from_pem(&chain, &key, &roots).map_err(|e| e.to_string())?;
        if !chain.is_empty() {
            // the same identity for the connections we open, for servers that ask for one
            tls = tls
                .present_client_certificate(&chain, &key, &roots)
                .map_err(|e| e.to_string())?;
        }
        if args.insecure {
            eprintln!("warning: --insecure: the server's certificate is not checked");
            tls = tls.insecure();
        }
        Ok(tls)
    });
    let tls = match tls {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --ca/--cert/--key: {e}");
            return ExitCode::from(2);
        }
    };
    let play = match &args.play {
        Some(p) => match crate::media::load_wav(p, args.media.audio_rate) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: --play {e}");
                return ExitCode::from(2);
            }
        },
        None => crate::media::Play::Silence,
    };
    let record = match &args.record {
        Some(p) if args.calls > 1 => {
            eprintln!("error: --record {} takes one call", p.display());
            return ExitCode::from(2);
        }
        Some(p) => crate::media::Record::File(p.clone()),
        None => crate::media::Record::Nothing,
    };
    runtime().block_on(async {
        let mut options = UserAgentOptions {
            listen,
            uri: from.as_ref().map(|f| f.uri.clone()),
            display_name: from.and_then(|f| f.display),
            tls,
            ..Default::default()
        };
        if !args.no_media {
            options.session_description_handler_factory =
                crate::media::factory(play, record, &args.media, args.webrtc);
        }
        args.auth.apply(&mut options);
        let ua = UserAgent::new(options);
        if let Err(e) = ua.start().await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        if let Some(a) = ua.local_addr() {
            println!("calling {uri} from {a}");
        }
        let calls = async {
            if args.calls <= 1 {
                match one_call(&ua, &uri, args, true).await {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            } else {
                many_calls(&ua, &uri, args).await
            }
        };
        // on SIGINT or SIGTERM the calls are dropped (which hangs them up: BYE, or CANCEL
        // while ringing) and the agent's graceful stop waits for the answers
        let (code, linger) = tokio::select! {
            code = calls => (code, args.linger.max(0.0)),
            _ = crate::signals::stop_requested() => (ExitCode::SUCCESS, 0.0),
        };
        // let the state printer finish its line
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_secs_f64(linger)).await;
        ua.stop().await;
        code
    })
}

/// How long `call --hold` waits after the call is up and between its two re-INVITEs.
const HOLD_PAUSE: Duration = Duration::from_millis(300);

/// One call: INVITE, wait for the answer, hold `--duration`, BYE. `Ok` when it was answered
/// and ended cleanly (by our BYE answered 2xx, or by the peer's BYE).
async fn one_call(
    ua: &UserAgent,
    uri: &Uri,
    args: &CallArgs,
    verbose: bool,
) -> Result<Option<sipua_media::MediaStats>, String> {
    let options = InviterOptions {
        invite_without_sdp: args.no_offer,
        delegate: verbose.then(|| Arc::new(Progress) as Arc<dyn SessionDelegate>),
        ..Default::default()
    };
    let call = Inviter::new(ua, uri.clone(), options).map_err(|e| e.to_string())?;
    if verbose {
        print_states("call".into(), &call);
    }
    call.invite(Default::default())
        .await
        .map_err(|e| e.to_string())?;
    if args.answer_timeout > 0.0 {
        let limit = Duration::from_secs_f64(args.answer_timeout);
        if tokio::time::timeout(limit, call.established())
            .await
            .is_err()
        {
            let _ = call.cancel(Default::default()).await;
            call.terminated().await;
            return Err(format!(
                "no answer within {} s: cancelled",
                args.answer_timeout
            ));
        }
    }
    call.established().await.map_err(|e| e.to_string())?;
    if verbose {
        println!("call established; hanging up in {} s", args.duration);
        crate::media::print_live("call".into(), &call);
    }
    if let Some(digits) = args.dtmf.as_deref() {
        call.send_dtmf(digits)
            .await
            .map_err(|e| format!("DTMF: {e}"))?;
        if verbose {
            println!("sending DTMF {digits}");
        }
    }
    let stay = tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0)));
    tokio::pin!(stay);
    if args.hold {
        for (what, options) in [
            ("hold", SessionDescriptionHandlerOptions::hold()),
            ("unhold", SessionDescriptionHandlerOptions::default()),
        ] {
            // a moment first, as a person pressing the button would: a re-INVITE right
            // behind an ACK can overtake it and be refused (RFC 5407 §3.1.2)
            tokio::time::sleep(HOLD_PAUSE).await;
            let o = SessionInviteOptions {
                session_description_handler_options: Some(options),
                ..Default::default()
            };
            tokio::select! {
                r = call.session().invite(o) => {
                    r.map_err(|e| format!("{what}: {e}"))?;
                    if verbose {
                        println!("{what}: ok");
                    }
                }
                why = call.terminated() => {
                    return Err(format!("call ended before {what}: {}", describe(why)));
                }
            }
        }
    }
    if let Some(text) = &args.message {
        let body = sipua::BodyAndContentType {
            content_type: "text/plain".into(),
            body: text.clone().into(),
        };
        let r = call
            .message(sipua::RequestOptions {
                body: Some(body),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("MESSAGE: {e}"))?;
        if verbose {
            println!("MESSAGE in the call: {} {}", r.status(), r.reason());
        }
        if !r.is_success() {
            return Err(format!("MESSAGE answered {} {}", r.status(), r.reason()));
        }
    }
    if let Some(text) = &args.message_out {
        let m = sipua::Messager::new(
            ua,
            uri.clone(),
            text.clone(),
            "text/plain",
            Default::default(),
        )
        .map_err(|e| format!("MESSAGE: {e}"))?;
        let r = m.message().await.map_err(|e| format!("MESSAGE: {e}"))?;
        if verbose {
            println!("MESSAGE: {} {}", r.status(), r.reason());
        }
        if !r.is_success() {
            return Err(format!("MESSAGE answered {} {}", r.status(), r.reason()));
        }
    }
    tokio::select! {
        _ = &mut stay => {
            let r = call.bye().await.map_err(|e| format!("BYE: {e}"))?;
            if verbose {
                println!("BYE: {} {}", r.status(), r.reason());
            }
            let mut stats = None;
            if let Some(m) = call.media::<sipua_media::MediaHandle>() {
                // the recording is complete once the media has stopped
                m.closed().await;
                if verbose {
                    println!("media: {}", crate::media::line(&m.stats()));
                }
                stats = Some(m.stats());
            }
            if r.is_success() {
                Ok(stats)
            } else {
                Err(format!("BYE answered {} {}", r.status(), r.reason()))
            }
        }
        why = call.terminated() => {
            if verbose {
                println!("call ended early: {}", describe(why));
            }
            Ok(None)
        }
    }
}

/// `--calls N`: N calls started at `--rate` per second, at most `--concurrent` at once; prints
/// the successful and failed counts, exit 0 only when none failed.
async fn many_calls(ua: &UserAgent, uri: &Uri, args: &CallArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrent.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(gap);
    for _ in 0..args.calls {
        tick.tick().await;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (ua, uri, args) = (ua.clone(), uri.clone(), args.clone());
        tasks.spawn(async move {
            let r = one_call(&ua, &uri, &args, false).await;
            drop(permit);
            r
        });
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut media = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(stats)) => {
                ok += 1;
                media.extend(stats);
            }
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("call failed: {e}");
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "calls: {ok} successful, {failed} failed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !media.is_empty() {
        // what each call measured on the audio it received
        let n = media.len() as f64;
        let loss: Vec<f64> = media
            .iter()
            .map(|m| f64::from(m.loss_fraction) * 100.0)
            .collect();
        let jitter: Vec<f64> = media.iter().map(|m| f64::from(m.jitter_ms)).collect();
        let received: u64 = media.iter().map(|m| m.packets_received).sum();
        let silent = media.iter().filter(|m| m.packets_received == 0).count();
        println!(
            "media: {} calls, {received} packets received, {silent} calls heard nothing; \
             loss mean {:.2} % max {:.2} %; jitter mean {:.2} ms max {:.2} ms",
            media.len(),
            loss.iter().sum::<f64>() / n,
            loss.iter().cloned().fold(0.0, f64::max),
            jitter.iter().sum::<f64>() / n,
            jitter.iter().cloned().fold(0.0, f64::max),
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Chooses the transport of a call: `--transport`, else the URI's `transport` parameter, else
/// TLS for `sips:`, else UDP; the local listener and the URI are made to agree.
fn with_transport(
    listen: Listen,
    uri: Uri,
    transport: Option<&str>,
) -> Result<(Listen, Uri), String> {
    let sip = uri.as_sip();
    let from_uri = sip.and_then(|s| s.transport()).map(str::to_ascii_lowercase);
    let sips = sip.is_some_and(|s| s.scheme == sipua::message::Scheme::Sips);
    // the local address's own scheme counts when it is not the default UDP
    let from_listen = match &listen {
        Listen::Tcp(_) => Some("tcp"),
        Listen::Tls(_) => Some("tls"),
        Listen::Ws(_) => Some("ws"),
        Listen::Wss(_) => Some("wss"),
        _ => None,
    };
    let chosen = transport
        .map(str::to_ascii_lowercase)
        .or(from_uri.clone())
        .or(from_listen.map(str::to_owned))
        .unwrap_or_else(|| if sips { "tls".into() } else { "udp".into() });
    let addr = match listen {
        Listen::Udp(a) | Listen::Tcp(a) | Listen::Tls(a) | Listen::Ws(a) | Listen::Wss(a) => a,
        other => return Ok((other, uri)),
    };
    let listen = Listen::parse(&format!("{chosen}:{addr}")).map_err(|e| e.to_string())?;
    // the URI says how to reach the callee: add the transport unless it already says so
    let implied = chosen == "udp" || (chosen == "tls" && sips);
    let uri =
        if from_uri.is_none() && !implied && uri.as_sip().is_some_and(|s| s.headers.is_empty()) {
            format!("{uri};transport={chosen}")
                .parse()
                .map_err(|e| format!("{uri}: {e}"))?
        } else {
            uri
        };
    Ok((listen, uri))
}

/// `--from`: a name-addr (`"Alice" <sip:alice@example.com>`) or a bare URI.
fn parse_from(s: &str) -> Result<sipua::message::NameAddr, String> {
    sipua::message::NameAddr::parse(s.as_bytes())
        .or_else(|_| s.parse::<Uri>().map(sipua::message::NameAddr::new))
        .map_err(|e| format!("{s}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_peers_text_is_printed_short_and_on_one_line() {
        let long = format!("sip:{}@example.com", "a".repeat(60_000));
        let s = shown(&long);
        assert_eq!(s.chars().count(), 201);
        assert!(s.ends_with('…'));
        assert_eq!(shown("two\r\nlines"), "two  lines");
        assert_eq!(shown("sip:bob@example.com"), "sip:bob@example.com");
    }
}
