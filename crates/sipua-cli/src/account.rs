//! What the commands share to talk to a registrar or proxy: digest credentials
//! (`--user`/`--password`), an outbound proxy (`--proxy`); and the commands `sipua register`
//! and `sipua message`.

use std::process::ExitCode;
use std::time::Duration;

use sipua::message::Uri;
use sipua::proto::ua::Credentials;
use sipua::{
    Listen, Messager, MessagerOptions, Registerer, RegistererOptions, UserAgent, UserAgentOptions,
};

/// `--user`, `--password`, `--proxy`: flattened into every command that sends requests.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// The user name for digest challenges (401/407) from a registrar or proxy.
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// The password for digest challenges.
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// Send every out-of-dialog request (INVITE, MESSAGE, REGISTER) through this proxy,
    /// whatever the Request-URI says: `IP:PORT`, a SIP URI (`sips:proxy.example.com`,
    /// `sip:10.0.0.1;transport=tcp`, located by DNS) or a WebSocket URL
    /// (`wss://edge.example.com/ws`).
    #[arg(long)]
    pub proxy: Option<sipua::OutboundProxy>,
    /// The address to put in Via, Contact and SDP instead of the one we listen on (a
    /// NAT's or a container host's). On `0.0.0.0` without it, each peer is given the
    /// address the kernel routes to it from.
    #[arg(long)]
    pub public_address: Option<std::net::IpAddr>,
}

impl AuthArgs {
    /// Puts the credentials and the proxy into `o`.
    pub fn apply(&self, o: &mut UserAgentOptions) {
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o.credentials = Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            });
        }
        if self.proxy.is_some() {
            o.outbound_proxy = self.proxy.clone();
        }
        if self.public_address.is_some() {
            o.public_address = self.public_address;
        }
    }
}

/// Runs `body` with a user agent started on `from_addr` (`udp:IP:PORT`, `tcp:`...) as
/// `from` (its user becomes our Contact's), with `auth`, and stops it afterwards: exit 2
/// for a bad address, 1 when it cannot bind, else what `body` returns.
pub fn with_agent<F, Fut>(from_addr: &str, from: Option<&Uri>, auth: &AuthArgs, body: F) -> ExitCode
where
    F: FnOnce(UserAgent) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let listen = match Listen::parse(from_addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::call::runtime().block_on(async {
        let mut o = UserAgentOptions {
            listen,
            uri: from.cloned(),
            ..Default::default()
        };
        if let Some(user) = from.and_then(|u| u.as_sip()?.user.clone()) {
            o.user = user;
        }
        auth.apply(&mut o);
        let ua = UserAgent::new(o);
        if let Err(e) = ua.start().await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        // on SIGINT or SIGTERM what the command holds is dropped (a registration unregisters,
        // a subscription unsubscribes, a call hangs up) and the graceful stop waits for it
        let code = tokio::select! {
            code = body(ua.clone()) => code,
            _ = crate::signals::stop_requested() => ExitCode::SUCCESS,
        };
        // let printers finish their lines
        tokio::task::yield_now().await;
        ua.stop().await;
        code
    })
}

/// Exit 0 for `Ok`; the error printed and exit 1 otherwise.
pub fn exit_code(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How to register an agent: flattened into `serve` and `register`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegisterArgs {
    /// The registrar (default: the domain of the address of record).
    #[arg(long)]
    pub registrar: Option<Uri>,
    /// The registration interval to ask for, in seconds.
    #[arg(long, default_value_t = 600)]
    pub expires: u32,
}

impl RegisterArgs {
    fn options(&self) -> RegistererOptions {
        RegistererOptions {
            expires: self.expires,
            registrar: self.registrar.clone(),
            ..Default::default()
        }
    }
}

/// Registers `ua` and prints the outcome; the registration refreshes itself until dropped.
pub async fn register(ua: &UserAgent, args: &RegisterArgs) -> Result<Registerer, String> {
    let r = Registerer::new(ua, args.options()).map_err(|e| e.to_string())?;
    let resp = r.register().await.map_err(|e| format!("register: {e}"))?;
    let g = r.registration();
    println!(
        "registered ({} {}), expires in {} s; bindings: {}",
        resp.status(),
        resp.reason(),
        g.expires.unwrap_or(0),
        g.contacts.join(", ")
    );
    Ok(r)
}

/// Arguments of `sipua register`.
#[derive(clap::Args)]
pub struct RegisterCommand {
    /// The address of record to register, e.g. `sip:alice@example.com`.
    aor: Uri,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    register: RegisterArgs,
    /// Our local address: `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
    /// Seconds to stay registered (refreshing) before unregistering; 0 unregisters at once.
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Remove every binding of the address of record (`Contact: *`) instead of registering.
    #[arg(long)]
    unregister_all: bool,
}

/// Runs `sipua register`: exit 0 when the registrar accepted and the unregistration too.
pub fn register_command(args: &RegisterCommand) -> ExitCode {
    let listen = match Listen::parse(&args.from_addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let user = args
        .aor
        .as_sip()
        .and_then(|s| s.user.clone())
        .unwrap_or_else(|| "sipua".into());
    crate::call::runtime().block_on(async {
        let mut o = UserAgentOptions {
            listen,
            user,
            uri: Some(args.aor.clone()),
            ..Default::default()
        };
        args.auth.apply(&mut o);
        let ua = UserAgent::new(o);
        if let Err(e) = ua.start().await {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let code = run_register(&ua, args).await;
        ua.stop().await;
        code
    })
}

async fn run_register(ua: &UserAgent, args: &RegisterCommand) -> ExitCode {
    if args.unregister_all {
        let r = match Registerer::new(ua, args.register.options()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match r
            .unregister(sipua::RegistererUnregisterOptions::all())
            .await
        {
            Ok(resp) => {
                println!("unregistered all ({} {})", resp.status(), resp.reason());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: unregister: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let r = match register(ua, &args.register).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // the duration, or until SIGINT/SIGTERM: either way the binding is removed
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0))) => {}
        _ = crate::signals::stop_requested() => {}
    }
    match r.unregister(Default::default()).await {
        Ok(resp) => {
            println!("unregistered ({} {})", resp.status(), resp.reason());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: unregister: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Arguments of `sipua message`.
#[derive(clap::Args)]
pub struct MessageCommand {
    /// Who to send it to, e.g. `sip:bob@example.com`.
    to: Uri,
    /// The text.
    text: String,
    /// Its media type.
    #[arg(long, default_value = "text/plain")]
    content_type: String,
    /// Who we are (From), e.g. `sip:alice@example.com`.
    #[arg(long)]
    from: Option<Uri>,
    #[command(flatten)]
    auth: AuthArgs,
    /// Our local address: `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
}

/// Runs `sipua message`: exit 0 when the MESSAGE was accepted (2xx).
pub fn message_command(args: &MessageCommand) -> ExitCode {
    with_agent(
        &args.from_addr,
        args.from.as_ref(),
        &args.auth,
        |ua| async move {
            let m = Messager::new(
                &ua,
                args.to.clone(),
                args.text.clone(),
                &args.content_type,
                MessagerOptions::default(),
            );
            match m {
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Ok(m) => match m.message().await {
                    Ok(r) => {
                        println!("{} {}", r.status(), r.reason());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                },
            }
        },
    )
}
