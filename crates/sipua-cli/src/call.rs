//! `sipua serve` and `sipua call`: the session API (`UserAgent`, `Inviter`, `Invitation`) on a
//! real socket, printing state changes as they happen and a line of media figures per call
//! every second. Calls carry real RTP audio (`sipua-media`'s `RtpAudio`): silence, a WAV
//! file or an echo, optionally recorded to WAV; `--no-media` keeps to signalling.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sipua::message::{Response, Uri};
use sipua::{
    EndReason, Invitation, InvitationRejectOptions, Inviter, InviterOptions, Listen, Session,
    SessionDelegate, SessionDescriptionHandlerOptions, SessionInviteOptions, SessionState,
    TlsOptions, UserAgent, UserAgentDelegate, UserAgentOptions,
};

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

/// Arguments of `sipua serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen: `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`; repeat to listen on
    /// several.
    #[arg(long, default_value = "udp:127.0.0.1:5062")]
    listen: Vec<String>,
    /// PEM certificate chain for `tls:` and `wss:` (without one, a self-signed certificate
    /// for the listening address is made and its path printed).
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// PEM certificates to trust for the TLS and WSS connections we open ourselves (a BYE
    /// to a caller's Contact, say): the peers' certificates or their CA.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Mutual TLS: every `tls:` and `wss:` client must present a certificate signed by one
    /// of these PEM certificates (or be one of them), else its handshake fails.
    #[arg(long)]
    client_ca: Option<std::path::PathBuf>,
    /// How to answer calls: `auto`, `busy` or `ring:SECONDS`.
    #[arg(long, default_value = "auto")]
    answer: Answer,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    lifetime: u64,
    /// On SIGTERM or SIGINT (or at the end of --lifetime), drain for up to SECONDS before
    /// stopping: OPTIONS and new calls are answered 503 at once (a dispatcher takes this
    /// instance out), the calls in progress go on to their end; a second signal stops at
    /// once. Without it, every call is hung up at once.
    #[arg(long, value_name = "SECONDS")]
    drain: Option<f64>,
    /// Overload control: past this many requests received and not yet answered, new ones
    /// get 503 with Retry-After (calls in progress keep their priority). 0: no limit.
    #[arg(long, default_value_t = 0)]
    max_pending: usize,
    /// Overload control: past this many new calls a second, 503 with Retry-After. 0: no
    /// limit.
    #[arg(long, default_value_t = 0)]
    max_cps: u32,
    /// Print nothing per call (for load runs).
    #[arg(long)]
    quiet: bool,
    /// Cores to answer calls on: each UDP listener's socket is shared by one agent per
    /// thread, each owning the calls whose Call-ID hashes to it (other transports are
    /// served by the first). Default: the machine's cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Send every call's audio back to it.
    #[arg(long, conflicts_with = "play")]
    echo: bool,
    /// Play this WAV file into every call (any common format and rate).
    #[arg(long)]
    play: Option<std::path::PathBuf>,
    /// Record what every call sends us into DIR/<call>.wav.
    #[arg(long)]
    record_dir: Option<std::path::PathBuf>,
    /// Serve a softphone page on this address (`http://ADDR/`): SIP.js in the browser calls
    /// this process over its `ws:`/`wss:` listener (one is needed), to talk to its echo or
    /// hear what it plays. Loopback is a secure context for the microphone.
    #[arg(long, value_name = "ADDR")]
    web: Option<std::net::SocketAddr>,
    /// The SIP.js 0.21 npm package the page loads (default `./node_modules/sip.js`; `npm
    /// install sip.js@0.21` puts it there).
    #[arg(long, value_name = "DIR", requires = "web")]
    sipjs: Option<std::path::PathBuf>,
    #[command(flatten)]
    media: crate::media::MediaArgs,
    /// Register this address of record (e.g. `sip:bob@example.com`) from the first
    /// `--listen` address, so that calls to it through the registrar's proxy reach us.
    #[arg(long)]
    register: Option<Uri>,
    #[command(flatten)]
    registration: crate::account::RegisterArgs,
    #[command(flatten)]
    auth: crate::account::AuthArgs,
    /// Signalling only: announce a fixed SDP and send no RTP (for load runs against
    /// signalling-only peers such as SIPp's built-in scenarios).
    #[arg(long, conflicts_with_all = ["echo", "play", "record_dir"])]
    no_media: bool,
    /// Hang up each answered call after this many seconds (0: wait for the caller's BYE).
    #[arg(long, default_value_t = 0.0)]
    hangup_after: f64,
    /// Ask callers for digest credentials, `USER:PASSWORD` (repeat for several users): a
    /// request outside a call gets 401 until it carries them (OPTIONS excepted); an address
    /// that fails 10 times in a minute gets 403 for the rest of it.
    #[arg(long, value_name = "USER:PASSWORD")]
    require_auth: Vec<String>,
    /// The realm of `--require-auth` challenges.
    #[arg(long, default_value = "sipua")]
    realm: String,
    /// The digest algorithms of `--require-auth` challenges, preferred first: `sha-256`,
    /// `md5` (default both, SHA-256 first; clients that take the first challenge and know
    /// only MD5, such as SIPp, need `md5` first).
    #[arg(long, value_delimiter = ',', default_value = "sha-256,md5", value_parser = algorithm)]
    auth_algorithms: Vec<sipua::proto::auth::digest::Algorithm>,
}

/// A digest algorithm by name (`md5`, `sha-256`, and their `-sess` forms).
fn algorithm(s: &str) -> Result<sipua::proto::auth::digest::Algorithm, String> {
    sipua::proto::auth::digest::Algorithm::parse(s).ok_or_else(|| format!("unknown algorithm {s}"))
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

async fn answer(inv: Invitation, mode: Answer, quiet: bool, hangup_after: f64) {
    let label = format!("call {}", shown(inv.request().call_id()));
    let mut printing = None;
    // a REFER in the call is followed (the peer transfers us)
    inv.set_delegate(Arc::new(crate::transfer::FollowTransfers {
        label: label.clone(),
    }));
    if !quiet {
        let r = inv.request();
        println!(
            "{label}: INVITE from {} to {}",
            shown(r.from().map_or("?".into(), |f| f.uri.to_string())),
            shown(r.uri().to_string())
        );
        printing = Some(print_states(label.clone(), &inv));
        crate::media::print_live(label.clone(), &inv);
    }
    // the answering steps run boxed: a call held for hours keeps only what waiting for its
    // end needs, not room for the largest step (about a kilobyte per call)
    let result = Box::pin(async {
        match mode {
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
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(secs)) => {
                            inv.accept(Default::default()).await
                        }
                        // cancelled while ringing: nothing left to answer
                        _ = inv.terminated() => Ok(()),
                    }
                }
                Err(e) => Err(e),
            },
        }
    })
    .await;
    if let Err(e) = result {
        if !quiet {
            println!("{label}: {e}");
        }
    }
    if hangup_after > 0.0 && inv.state() == SessionState::Established {
        Box::pin(async {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(hangup_after)) => {
                    match inv.bye().await {
                        Ok(r) if !quiet => println!("{label}: BYE: {} {}", r.status(), r.reason()),
                        Err(e) if !quiet => println!("{label}: BYE: {e}"),
                        _ => {}
                    }
                }
                _ = inv.terminated() => {}
            }
        })
        .await;
    }
    // keep the handle until the call ends (dropping it would hang up), and its end printed
    inv.terminated().await;
    if let Some(p) = printing {
        let _ = p.await;
    }
}

thread_local! {
    /// The calls `serve` is answering on this thread (each agent's runtime is one thread, and
    /// its calls' tasks run there): its runtime ends once each has ended and said so.
    static ANSWERING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The calls offered to this thread's agents since it started (`serve` prints them per
    /// thread at its end).
    static ANSWERED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `serve`'s delegate: answers each invitation on a task of its own.
struct Answerer {
    mode: Answer,
    quiet: bool,
    hangup_after: f64,
}

impl UserAgentDelegate for Answerer {
    fn on_invite(&self, invitation: Invitation) {
        ANSWERING.with(|n| n.set(n.get() + 1));
        ANSWERED.with(|n| n.set(n.get() + 1));
        let (mode, quiet, hangup_after) = (self.mode, self.quiet, self.hangup_after);
        tokio::spawn(async move {
            answer(invitation, mode, quiet, hangup_after).await;
            ANSWERING.with(|n| n.set(n.get().saturating_sub(1)));
        });
    }

    fn on_message(&self, message: sipua::IncomingRequest) {
        if !self.quiet {
            let r = message.request();
            println!(
                "MESSAGE from {}: {}",
                shown(r.from().map_or("?".into(), |f| f.uri.to_string())),
                shown(String::from_utf8_lossy(r.body()))
            );
        }
        message.accept();
    }

    fn on_subscribe(&self, subscription: sipua::IncomingSubscription) {
        crate::events::serve_subscription(subscription, self.quiet);
    }
}

/// Runs `sipua serve`.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let mut listens = Vec::new();
    for l in &args.listen {
        match Listen::parse(l) {
            Ok(l) => listens.push(l),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let secure: Vec<std::net::IpAddr> = listens
        .iter()
        .filter_map(|l| match l {
            Listen::Tls(a) | Listen::Wss(a) => Some(a.ip()),
            _ => None,
        })
        .collect();
    let (tls, made_certificate) = if secure.is_empty() {
        (TlsOptions::default(), None)
    } else {
        match server_tls(
            args.cert.as_deref(),
            args.key.as_deref(),
            args.ca.as_deref(),
            args.client_ca.as_deref(),
            &secure,
        ) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let mut users = std::collections::HashMap::new();
    for pair in &args.require_auth {
        let Some((user, password)) = pair.split_once(':') else {
            eprintln!("error: --require-auth wants USER:PASSWORD");
            return ExitCode::from(2);
        };
        users.insert(user.to_owned(), password.to_owned());
    }
    let authenticate = (!users.is_empty()).then(|| sipua::DigestServerConfig {
        realm: args.realm.clone(),
        users,
        algorithms: args.auth_algorithms.clone(),
        // one server for every thread's agent: a nonce is good at any of them, and an
        // address's failures are counted once
        shared: Some(Default::default()),
        ..Default::default()
    });
    let media = if args.no_media {
        None
    } else {
        let play = match (&args.play, args.echo) {
            (Some(p), _) => match crate::media::load_wav(p, args.media.audio_rate) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: --play {e}");
                    return ExitCode::from(2);
                }
            },
            (None, true) => crate::media::Play::Echo,
            (None, false) => crate::media::Play::Silence,
        };
        let record = match &args.record_dir {
            Some(d) => {
                if let Err(e) = std::fs::create_dir_all(d) {
                    eprintln!("error: --record-dir {}: {e}", d.display());
                    return ExitCode::from(2);
                }
                crate::media::Record::Dir(d.clone())
            }
            None => crate::media::Record::Nothing,
        };
        Some(crate::media::factory(play, record, &args.media, false))
    };
    let mut template = UserAgentOptions {
        max_pending_requests: args.max_pending,
        max_invites_per_second: args.max_cps,
        // a server answers whatever user the Request-URI names
        accept_any_user: true,
        tls,
        // each call is answered on a task of its own, started as the INVITE arrives
        delegate: Some(Arc::new(Answerer {
            mode: args.answer,
            quiet: args.quiet,
            hangup_after: args.hangup_after,
        })),
        authenticate,
        ..Default::default()
    };
    if let Some(f) = &media {
        template.session_description_handler_factory = f.clone();
    }
    args.auth.apply(&mut template);
    // every agent speaks as the address of record (the first registers it)
    if let Some(aor) = &args.register {
        template.uri = Some(aor.clone());
        if let Some(u) = aor.as_sip().and_then(|s| s.user.clone()) {
            template.user = u;
        }
    }
    let threads = args.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // each thread's agent binds the same stream listeners (the kernel spreads connections)
    template.reuse_port = threads > 1;
    let plan = match plan_agents(listens, threads) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut plan = plan.into_iter();
    let own = plan.next().unwrap_or_default();
    // the other cores' agents, each thread with a runtime of its own
    let mut others = Vec::new();
    for groups in plan {
        let template = template.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Option<Duration>>();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut agents = Vec::new();
                for (listen, also) in groups {
                    match start_agent(&template, listen, also).await {
                        Ok(ua) => agents.push(ua),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ended::default();
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let drain = end_rx.await.unwrap_or(None);
                let _ = drained_tx.send(drain_agents(&agents, drain).await);
                // every agent answers (503 while draining) until all are drained: the
                // datagrams hashed to this one reach no other
                let _ = stop_rx.await;
                stop_agents(agents).await
            })
        });
        others.push(Other {
            ready: ready_rx,
            end: Some(end_tx),
            drained: Some(drained_rx),
            stop: Some(stop_tx),
            thread: Some(thread),
        });
    }
    let code = runtime().block_on(async {
        let mut agents = Vec::new();
        for (listen, also) in own {
            match start_agent(&template, listen, also).await {
                Ok(ua) => agents.push(ua),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Err(ExitCode::FAILURE);
                }
            }
        }
        for o in &mut others {
            if let Ok(Err(e)) = (&mut o.ready).await {
                eprintln!("error: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
        for ua in &agents {
            for (transport, a) in ua.listeners().unwrap_or_default() {
                println!(
                    "listening on {}:{a}",
                    transport.as_str().to_ascii_lowercase()
                );
            }
        }
        if !others.is_empty() {
            println!(
                "{} threads: each answers the UDP calls whose Call-ID hashes to it, and the \
                 calls of the connections it accepted",
                others.len() + 1
            );
        }
        if let Some(addr) = args.web {
            if let Err(e) = start_web(addr, args.sipjs.as_deref(), &agents).await {
                eprintln!("error: --web: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
        let registration = match (&args.register, agents.first()) {
            (Some(_), Some(ua)) => match crate::account::register(ua, &args.registration).await {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Err(ExitCode::FAILURE);
                }
            },
            _ => None,
        };
        let lifetime = async {
            if args.lifetime > 0 {
                tokio::time::sleep(Duration::from_secs(args.lifetime)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = lifetime => {}
            _ = crate::signals::stop_requested() => {}
        }
        if let Some(r) = registration {
            match r.unregister(Default::default()).await {
                Ok(resp) => println!("unregistered ({} {})", resp.status(), resp.reason()),
                Err(e) => eprintln!("unregister: {e}"),
            }
        }
        let drain = args
            .drain
            .map(|secs| Duration::from_secs_f64(secs.max(0.0)));
        if let Some(d) = drain {
            println!("draining (up to {} s)", d.as_secs_f64());
        }
        // every thread drains at once; all stop once all are drained (an agent that stopped
        // early would leave the datagrams hashed to it unanswered); the first thread's agents,
        // which read for all, stop last. Awaited in this runtime, so that a second signal
        // still ends the process at once (its watcher is a task here).
        for o in &mut others {
            if let Some(end) = o.end.take() {
                let _ = end.send(drain);
            }
        }
        let mut left = drain_agents(&agents, drain).await;
        for o in &mut others {
            if let Some(d) = o.drained.take() {
                left += d.await.unwrap_or(0);
            }
        }
        let mut ends = Vec::new();
        for o in &mut others {
            if let Some(stop) = o.stop.take() {
                let _ = stop.send(());
            }
        }
        for o in &mut others {
            if let Some(t) = o.thread.take() {
                ends.push(
                    tokio::task::spawn_blocking(move || t.join().unwrap_or_default())
                        .await
                        .unwrap_or_default(),
                );
            }
        }
        ends.insert(0, stop_agents(agents).await);
        Ok((left, ends))
    });
    let (left, ends) = match code {
        Ok(ended) => ended,
        Err(code) => return code,
    };
    if ends.len() > 1 {
        let per: Vec<String> = ends.iter().map(|e| e.answered.to_string()).collect();
        println!("calls per thread: {}", per.join(" "));
    }
    let shed: u64 = ends.iter().map(|e| e.shed).sum();
    if shed > 0 {
        println!("refused {shed} new requests with 503 (overload control or draining)");
    }
    if args.drain.is_some() {
        println!("drained ({left} calls hung up at the deadline)");
    }
    drop(made_certificate); // its directory goes with it
    ExitCode::SUCCESS
}

/// Which agents `serve` runs on which thread: the first list is the main thread's. Listeners
/// of distinct transports share one agent (UDP and TLS and WSS at once: a call names the
/// listener it came in on), else each has its own. With several threads, each UDP listener's
/// socket is shared by one agent per thread ([`sipua::transport::udp_shards`]), and each
/// stream listener (TCP, TLS, WS, WSS) on a fixed port is bound by every thread's agent with
/// `SO_REUSEPORT` ([`UserAgentOptions::reuse_port`]): the kernel spreads the connections, and
/// a connection's calls stay with the agent that accepted it.
fn plan_agents(listens: Vec<Listen>, threads: usize) -> Result<Vec<AgentPlan>, String> {
    let distinct = {
        let mut seen: Vec<_> = listens.iter().map(Listen::transport).collect();
        seen.sort_by_key(|t| t.as_str().to_owned());
        seen.dedup();
        seen.len() == listens.len()
    };
    let groups: Vec<Vec<Listen>> = if distinct {
        vec![listens]
    } else {
        listens.into_iter().map(|l| vec![l]).collect()
    };
    // a stream listener every thread can bind: port 0 would give each thread another port
    let shareable = |l: &&Listen| match l {
        Listen::Tcp(a) | Listen::Tls(a) | Listen::Ws(a) | Listen::Wss(a) => a.port() != 0,
        _ => false,
    };
    let mut plan: Vec<AgentPlan> = vec![Vec::new(); threads.max(1)];
    for mut group in groups {
        let udp = group.iter().position(|l| matches!(l, Listen::Udp(_)));
        match udp {
            Some(i) if threads > 1 => {
                let Listen::Udp(addr) = group.remove(i) else {
                    unreachable!()
                };
                let shards = sipua::transport::udp_shards(addr, threads)
                    .map_err(|e| format!("udp:{addr}: {e}"))?;
                let streams: Vec<Listen> = group.iter().filter(shareable).cloned().collect();
                for (t, shard) in shards.into_iter().enumerate() {
                    let also = if t == 0 {
                        std::mem::take(&mut group)
                    } else {
                        streams.clone()
                    };
                    plan[t].push((shard, also));
                }
            }
            _ => {
                let listen = group.remove(0);
                if threads > 1 && shareable(&&listen) {
                    let streams: Vec<Listen> = group.iter().filter(shareable).cloned().collect();
                    for agents in plan.iter_mut().skip(1) {
                        agents.push((listen.clone(), streams.clone()));
                    }
                }
                plan[0].push((listen, group));
            }
        }
    }
    Ok(plan)
}

/// One thread's agents: each one's listener and its other listeners.
type AgentPlan = Vec<(Listen, Vec<Listen>)>;

/// Starts one of `serve`'s agents.
async fn start_agent(
    template: &UserAgentOptions,
    listen: Listen,
    also_listen: Vec<Listen>,
) -> Result<UserAgent, sipua::Error> {
    let ua = UserAgent::new(UserAgentOptions {
        listen,
        also_listen,
        ..template.clone()
    });
    ua.start().await?;
    Ok(ua)
}

/// One of `serve`'s other threads, as the main thread sees it.
struct Other {
    /// Whether its agents started.
    ready: tokio::sync::oneshot::Receiver<Result<(), sipua::Error>>,
    /// Tells it to drain (for up to this long) or to get ready to stop.
    end: Option<tokio::sync::oneshot::Sender<Option<Duration>>>,
    /// Its calls hung up at the drain's deadline, once drained.
    drained: Option<tokio::sync::oneshot::Receiver<usize>>,
    /// Tells it to stop its agents.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The thread; it returns what its agents did.
    thread: Option<std::thread::JoinHandle<Ended>>,
}

/// With `drain`, `agents` refuse new requests with 503 while their calls go on, until none is
/// left or the deadline: the calls still up then. Without, nothing (0).
async fn drain_agents(agents: &[UserAgent], drain: Option<Duration>) -> usize {
    let Some(within) = drain else {
        return 0;
    };
    for ua in agents {
        let _ = ua.set_draining(true).await;
    }
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut live = 0;
        for ua in agents {
            live += ua.stats().await.map_or(0, |s| s.sessions);
        }
        if live == 0 || tokio::time::Instant::now() >= deadline {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one of `serve`'s threads did, told when it ends.
#[derive(Default)]
struct Ended {
    /// New requests its agents refused with 503.
    shed: u64,
    /// Calls offered to it.
    answered: u64,
}

/// Stops `agents`: every call left ends with BYE (CANCEL, or 480 while ringing) and its
/// answer, each agent within a bounded time; then this thread's answering tasks print their
/// ends before its runtime goes.
async fn stop_agents(agents: Vec<UserAgent>) -> Ended {
    let mut shed = 0;
    for ua in agents {
        if let Ok(s) = ua.stats().await {
            shed += s.shed;
        }
        ua.stop().await;
    }
    // bounded: a task stuck on a peer that never answers does not hold the exit
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while ANSWERING.with(std::cell::Cell::get) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ended {
        shed,
        answered: ANSWERED.with(std::cell::Cell::get),
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

/// Starts `--web`'s page for the first WebSocket listener of `agents`.
async fn start_web(
    addr: std::net::SocketAddr,
    sipjs: Option<&std::path::Path>,
    agents: &[UserAgent],
) -> Result<(), String> {
    let ws = agents
        .iter()
        .flat_map(|ua| ua.listeners().unwrap_or_default())
        .find(|(t, _)| {
            matches!(
                t,
                sipua::message::Transport::Ws | sipua::message::Transport::Wss
            )
        })
        .ok_or("it needs a WebSocket listener (--listen ws:IP:PORT or wss:)")?;
    let (transport, at) = ws;
    let scheme = transport.as_str().to_ascii_lowercase();
    // a wildcard listener is reached at the page's own address
    let host = if at.ip().is_unspecified() {
        addr.ip()
    } else {
        at.ip()
    };
    let host_port = std::net::SocketAddr::new(host, at.port());
    let page = crate::web::WebPage {
        sipjs: crate::web::find_sipjs(sipjs)?,
        ws: format!("{scheme}://{host_port}"),
        target: format!("sip:echo@{host_port};transport={scheme}"),
    };
    let sipjs = page.sipjs.display().to_string();
    let bound = crate::web::serve(addr, page)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    println!("softphone page: http://{bound}/ (SIP.js from {sipjs})");
    Ok(())
}

/// TLS options for `serve`: the given certificate, or a self-signed one for `ips` written
/// next to the system's temporary files so that callers can trust it; with `client_ca`,
/// clients must present a certificate it vouches for (mutual TLS).
pub fn server_tls(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
    ca: Option<&std::path::Path>,
    client_ca: Option<&std::path::Path>,
    ips: &[std::net::IpAddr],
) -> Result<(TlsOptions, Option<MadeCertificate>), String> {
    let mut made_file = None;
    let (chain, key) = match (cert, key) {
        (Some(c), Some(k)) => (read_pem(Some(c))?, read_pem(Some(k))?),
        _ => {
            let names: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            let made = rcgen::generate_simple_self_signed(names)
                .map_err(|e| format!("self-signed certificate: {e}"))?;
            let (chain, key) = (made.cert.pem(), made.key_pair.serialize_pem());
            let file = MadeCertificate::write(&chain)?;
            println!(
                "self-signed certificate: {} (trust it with --ca)",
                file.path().display()
            );
            made_file = Some(file);
            (chain, key)
        }
    };
    let roots = read_pem(ca)?;
    let mut tls = TlsOptions::from_pem(&chain, &key, &roots).map_err(|e| e.to_string())?;
    if client_ca.is_some() {
        tls = tls
            .require_client_certificates(&chain, &key, &read_pem(client_ca)?)
            .map_err(|e| e.to_string())?;
    }
    Ok((tls, made_file))
}

/// The text of a PEM file, or nothing when none is named; an error names the file.
fn read_pem(path: Option<&std::path::Path>) -> Result<String, String> {
    match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
        None => Ok(String::new()),
    }
}

/// A certificate the command made, in a directory of its own that only this user can read
/// (a name nobody can guess or take first); the directory goes when this value is dropped.
pub struct MadeCertificate {
    dir: std::path::PathBuf,
}

impl MadeCertificate {
    fn write(chain: &str) -> Result<MadeCertificate, String> {
        use std::os::unix::fs::DirBuilderExt;
        // the clock's nanoseconds and our pid: unique enough, and `create` fails rather than
        // reuse a directory someone made first
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sipua-{}-{:x}",
            std::process::id(),
            nanos ^ 0x5eed_cafe
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let made = MadeCertificate { dir };
        let path = made.path();
        std::fs::write(&path, chain).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(made)
    }

    /// Where the certificate is (PEM).
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.join("certificate.pem")
    }
}

impl Drop for MadeCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--from`: a name-addr (`"Alice" <sip:alice@example.com>`) or a bare URI.
fn parse_from(s: &str) -> Result<sipua::message::NameAddr, String> {
    sipua::message::NameAddr::parse(s.as_bytes())
        .or_else(|_| s.parse::<Uri>().map(sipua::message::NameAddr::new))
        .map_err(|e| format!("{s}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{plan_agents, shown};
    use sipua::transport::Listen;

    fn names(agents: &[(Listen, Vec<Listen>)]) -> Vec<String> {
        agents
            .iter()
            .map(|(l, also)| {
                let mut n = vec![l.transport().as_str().to_ascii_lowercase()];
                n.extend(also.iter().map(|a| a.to_string()));
                n.join(" + ")
            })
            .collect()
    }

    #[test]
    fn every_thread_gets_a_share_of_udp_and_each_stream_listener_on_a_fixed_port() {
        let listens = ["udp:127.0.0.1:0", "ws:127.0.0.1:15080", "tls:127.0.0.1:0"]
            .iter()
            .map(|l| Listen::parse(l).unwrap())
            .collect();
        let plan = plan_agents(listens, 3).unwrap();
        assert_eq!(plan.len(), 3);
        // the first thread has them all; the others the UDP share and the shareable WS (a
        // TLS listener on port 0 would be another port on each thread: the first keeps it)
        assert_eq!(
            names(&plan[0]),
            ["udp + ws:127.0.0.1:15080 + tls:127.0.0.1:0"]
        );
        for t in &plan[1..] {
            assert_eq!(names(t), ["udp + ws:127.0.0.1:15080"]);
        }
        // a stream listener alone goes to every thread too
        let plan = plan_agents(vec![Listen::parse("wss:127.0.0.1:15081").unwrap()], 2).unwrap();
        assert_eq!(names(&plan[0]), ["wss"]);
        assert_eq!(names(&plan[1]), ["wss"]);
        // one thread: as before
        let plan = plan_agents(vec![Listen::parse("tcp:127.0.0.1:15082").unwrap()], 1).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(names(&plan[0]), ["tcp"]);
    }

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
