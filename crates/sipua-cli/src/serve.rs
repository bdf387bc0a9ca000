//! `sipua serve`: answers calls (echo, a WAV file, silence, or refuses them) on every
//! listener asked for, over one agent per core, with optional digest authentication,
//! registration, a web softphone page, and a graceful drain on SIGTERM. One concern (about
//! 800 lines): setting up, running and draining the agents of one `serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sipua::message::Uri;
use sipua::{
    Invitation, InvitationRejectOptions, Listen, SessionState, TlsOptions, UserAgent,
    UserAgentDelegate, UserAgentOptions,
};

use crate::call::{print_states, runtime, shown, Answer};

thread_local! {
    /// The calls `serve` is answering on this thread (each agent's runtime is one thread, and
    /// its calls' tasks run there): its runtime ends once each has ended and said so.
    static ANSWERING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The calls offered to this thread's agents since it started (`serve` prints them per
    /// thread at its end).
    static ANSWERED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// One thread's agents: each one's listener and its other listeners.
type AgentPlan = Vec<(Listen, Vec<Listen>)>;

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
    /// get 503 with Retry-After (calls in progress keep their priority); shared evenly among
    /// the threads. 0: no limit.
    #[arg(long, default_value_t = 0)]
    max_pending: usize,
    /// Overload control: past this many new calls a second, 503 with Retry-After; shared
    /// evenly among the threads (each takes the calls whose Call-ID hashes to it). 0: no
    /// limit.
    #[arg(long, default_value_t = 0)]
    max_cps: u32,
    /// Overload control by queueing delay: while UDP datagrams have waited longer than this
    /// many milliseconds to be read, new calls get 503 with Retry-After, refused from the
    /// raw datagram at a tenth of a call's cost. Needs no figure of the machine's capacity.
    /// 200 suits most: at least twice a CPU quota's period, well under T1 (500). 0: off.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    max_delay: u64,
    /// RFC 7339 overload control: tell the proxies that ask for it (`oc` in their Via) how
    /// much of their traffic to cut, from the share of new calls --max-cps, --max-delay or
    /// draining refuse.
    #[arg(long)]
    oc: bool,
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
    // the call runs on to its end without this task: dropping a detached handle does not
    // hang up, and a held call keeps no task of ours (about 600 bytes a call)
    inv.detach();
    drop(inv);
    if let Some(p) = printing {
        let _ = p.await;
    }
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
        max_queue_delay: Duration::from_millis(args.max_delay),
        overload_via: args.oc,
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
    // the limits are the whole server's: each thread takes its share of the calls (Call-IDs
    // hash evenly), so it takes its share of the limits
    let share = |limit: usize| limit.div_ceil(threads.max(1));
    template.max_invites_per_second = share(args.max_cps as usize) as u32;
    template.max_pending_requests = share(args.max_pending);
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
    let report = args.oc && !args.quiet;
    for (n, groups) in plan.enumerate() {
        let template = template.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Option<Duration>>();
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel();
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
                if report {
                    tokio::spawn(report_cut(agents.clone(), format!(" (thread {})", n + 2)));
                }
                let drain = end_rx.await.unwrap_or(None);
                if drain.is_some() {
                    start_draining(&agents).await;
                }
                let _ = draining_tx.send(());
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
            draining: Some(draining_rx),
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
        if report {
            let label = if others.is_empty() { "" } else { " (thread 1)" };
            tokio::spawn(report_cut(agents.clone(), label.to_owned()));
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
        // every thread drains at once; all stop once all are drained (an agent that stopped
        // early would leave the datagrams hashed to it unanswered); the first thread's agents,
        // which read for all, stop last. Awaited in this runtime, so that a second signal
        // still ends the process at once (its watcher is a task here).
        for o in &mut others {
            if let Some(end) = o.end.take() {
                let _ = end.send(drain);
            }
        }
        if let Some(d) = drain {
            start_draining(&agents).await;
            // said once every thread refuses: a probe sent after this line gets its 503
            for o in &mut others {
                if let Some(ready) = o.draining.take() {
                    let _ = ready.await;
                }
            }
            println!("draining (up to {} s)", d.as_secs_f64());
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
    /// Its agents refuse new requests now (sent whether or not it drains).
    draining: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Its calls hung up at the drain's deadline, once drained.
    drained: Option<tokio::sync::oneshot::Receiver<usize>>,
    /// Tells it to stop its agents.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The thread; it returns what its agents did.
    thread: Option<std::thread::JoinHandle<Ended>>,
}

/// `agents` refuse new requests with 503 from now on, while their calls go on.
async fn start_draining(agents: &[UserAgent]) {
    for ua in agents {
        let _ = ua.set_draining(true).await;
    }
}

/// With `drain`, waits while `agents` (draining: [`start_draining`]) carry their calls to
/// their end, until none is left or the deadline: the calls still up then. Without, nothing
/// (0).
async fn drain_agents(agents: &[UserAgent], drain: Option<Duration>) -> usize {
    let Some(within) = drain else {
        return 0;
    };
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

/// With `--oc` (and without `--quiet`): says when the RFC 7339 cut that `agents` ask of
/// their clients changes, checked once a second (the figure moves at most that often).
async fn report_cut(agents: Vec<UserAgent>, label: String) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut cut = 0;
        for ua in &agents {
            match ua.stats().await {
                Ok(s) => cut = cut.max(s.overload_cut),
                Err(_) => return, // stopped
            }
        }
        if cut != last {
            println!("overload{label}: RFC 7339 clients are asked to send {cut} % fewer new calls");
            last = cut;
        }
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
pub(crate) fn read_pem(path: Option<&std::path::Path>) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::plan_agents;
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
}
