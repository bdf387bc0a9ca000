//! `sipua serve` and `sipua call`: the session API (`UserAgent`, `Inviter`, `Invitation`) on a
//! real socket, printing state changes as they happen. Media is the built-in fixed SDP for
//! now (no audio flows yet).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sipua::message::{Response, Uri};
use sipua::{
    EndReason, Invitation, InvitationRejectOptions, Inviter, InviterOptions, Listen, Session,
    SessionDelegate, SessionState, UserAgent, UserAgentOptions,
};

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

/// Arguments of `sipua serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen, as `udp:IP:PORT`.
    #[arg(long, default_value = "udp:127.0.0.1:5062")]
    listen: String,
    /// How to answer calls: `auto`, `busy` or `ring:SECONDS`.
    #[arg(long, default_value = "auto")]
    answer: Answer,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    lifetime: u64,
    /// Print nothing per call (for load runs).
    #[arg(long)]
    quiet: bool,
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
    /// Send the INVITE without an SDP offer (the callee offers in its 200).
    #[arg(long)]
    no_offer: bool,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Prints each state change of `session`, prefixed with `label`, until it terminates.
fn print_states(label: String, session: &Session) {
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
    });
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
        EndReason::MediaFailure(e) => format!("media negotiation failed: {e}"),
        other => format!("{other:?}"),
    }
}

async fn answer(inv: Invitation, mode: Answer, quiet: bool) {
    let label = format!("call {}", inv.request().call_id());
    if !quiet {
        let r = inv.request();
        println!(
            "{label}: INVITE from {} to {}",
            r.from().map_or("?".into(), |f| f.uri.to_string()),
            r.uri()
        );
        print_states(label.clone(), &inv);
    }
    let result = match mode {
        Answer::Busy => {
            inv.reject(InvitationRejectOptions {
                status_code: Some(486),
                ..Default::default()
            })
            .await
        }
        Answer::Auto => match inv.progress(Default::default()).await {
            Ok(()) => inv.accept(Default::default()).await,
            Err(e) => Err(e),
        },
        Answer::Ring(secs) => match inv.progress(Default::default()).await {
            Ok(()) => {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                inv.accept(Default::default()).await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        if !quiet {
            println!("{label}: {e}");
        }
    }
    // keep the handle until the call ends (dropping it would hang up)
    inv.terminated().await;
}

/// Runs `sipua serve`.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let listen = match Listen::parse(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    runtime().block_on(async {
        // a server answers whatever user the Request-URI names
        let ua = UserAgent::new(UserAgentOptions {
            listen,
            accept_any_user: true,
            ..Default::default()
        });
        if let Err(e) = ua.start().await {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
        if let Some(a) = ua.local_addr() {
            println!("listening on udp:{a}");
        }
        let lifetime = async {
            if args.lifetime > 0 {
                tokio::time::sleep(Duration::from_secs(args.lifetime)).await
            } else {
                std::future::pending::<()>().await
            }
        };
        tokio::pin!(lifetime);
        loop {
            tokio::select! {
                inv = ua.next_invitation() => {
                    let Some(inv) = inv else { break };
                    tokio::spawn(answer(inv, args.answer, args.quiet));
                }
                _ = &mut lifetime => break,
            }
        }
        ua.stop().await;
        ExitCode::SUCCESS
    })
}

struct Progress;

impl SessionDelegate for Progress {
    fn on_progress(&self, r: &Response) {
        println!("{} {}", r.status(), r.reason());
    }
}

/// Runs `sipua call`: exit 0 when the call was answered and hung up cleanly.
pub fn call(args: &CallArgs) -> ExitCode {
    let (listen, uri) = match (Listen::parse(&args.from_addr), args.uri.parse::<Uri>()) {
        (Ok(l), Ok(u)) => (l, u),
        (Err(e), _) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!("error: {}: {e}", args.uri);
            return ExitCode::from(2);
        }
    };
    runtime().block_on(async {
        let ua = UserAgent::new(UserAgentOptions {
            listen,
            ..Default::default()
        });
        if let Err(e) = ua.start().await {
            eprintln!("error: cannot bind {}: {e}", args.from_addr);
            return ExitCode::FAILURE;
        }
        let options = InviterOptions {
            invite_without_sdp: args.no_offer,
            delegate: Some(Arc::new(Progress)),
            ..Default::default()
        };
        let call = match Inviter::new(&ua, uri.clone(), options) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(a) = ua.local_addr() {
            println!("calling {uri} from udp:{a}");
        }
        print_states("call".into(), &call);
        if let Err(e) = call.invite(Default::default()).await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        if let Err(e) = call.established().await {
            eprintln!("error: {e}");
            ua.stop().await;
            return ExitCode::FAILURE;
        }
        println!("call established; hanging up in {} s", args.duration);
        let hold = tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0)));
        let code = tokio::select! {
            _ = hold => match call.bye().await {
                Ok(r) => {
                    println!("BYE: {} {}", r.status(), r.reason());
                    if r.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("error: BYE: {e}");
                    ExitCode::FAILURE
                }
            },
            why = call.terminated() => {
                println!("call ended early: {}", describe(why));
                ExitCode::SUCCESS
            }
        };
        // let the state printer finish its line
        tokio::task::yield_now().await;
        ua.stop().await;
        code
    })
}
