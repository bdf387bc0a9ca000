//! A client behind a proxy, as SIP.js users deploy one: every request outside a call goes
//! through the proxy given as a URL (`wss://edge.example.com/ws`, `sips:proxy.example.com`,
//! `sip:10.0.0.1:5060;transport=tcp`), digest challenges are answered, the call's requests
//! follow the proxy's Record-Route, and each failure is told by its kind.
//!
//! ```sh
//! cargo run -p sipua --example proxy -- wss://edge.example.com/ws sip:alice@example.com alice secret sip:bob@example.com
//! ```

use sipua::message::header::RetryAfter;
use sipua::{
    Credentials, Error, Inviter, Listen, OutboundProxy, Registerer, RegistererOptions,
    TransportErrorKind, UserAgent, UserAgentOptions,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [proxy, aor, user, password, to] = args.as_slice() else {
        return Err("usage: proxy PROXY-URL AOR USER PASSWORD TARGET".into());
    };
    let proxy: OutboundProxy = proxy.parse()?;
    // listen on the proxy's transport; a TLS or WSS client without a certificate listens on
    // nothing and is reached over the connection it opens
    let listen = match proxy.uri().as_sip().and_then(|u| u.transport()) {
        Some("wss") => Listen::Wss("0.0.0.0:0".parse()?),
        Some("ws") => Listen::Ws("0.0.0.0:0".parse()?),
        Some("tls") => Listen::Tls("0.0.0.0:0".parse()?),
        Some("tcp") => Listen::Tcp("0.0.0.0:0".parse()?),
        _ => Listen::Udp("0.0.0.0:0".parse()?),
    };
    let ua = UserAgent::new(UserAgentOptions {
        listen,
        uri: Some(aor.parse()?),
        outbound_proxy: Some(proxy),
        credentials: Some(Credentials {
            username: user.clone(),
            password: password.clone(),
        }),
        ..Default::default()
    });
    ua.start().await?;

    let registerer = Registerer::new(&ua, RegistererOptions::default())?;
    match registerer.register().await {
        Ok(r) => println!("registered: {} {}", r.status(), r.reason()),
        Err(e) => return Err(explain(e).into()),
    }
    let call = Inviter::new(&ua, to.parse()?, Default::default())?;
    call.invite(Default::default()).await?;
    match call.established().await {
        Ok(()) => {
            println!("established; hanging up");
            call.bye().await?;
        }
        Err(e) => println!("{}", explain(e)),
    }
    registerer.unregister(Default::default()).await?;
    ua.stop().await;
    Ok(())
}

/// What went wrong, by kind.
fn explain(e: Error) -> String {
    match e {
        Error::Rejected {
            status: 503,
            response: Some(r),
            ..
        } => match r.typed::<RetryAfter>().and_then(Result::ok) {
            Some(after) => format!("the proxy is overloaded: retry after {} s", after.delta),
            None => "the proxy is overloaded".into(),
        },
        Error::Rejected { status, reason, .. } => format!("refused: {status} {reason}"),
        Error::Dns(e) => format!("the proxy's name does not resolve: {e}"),
        Error::Transport(e) if e.kind() == TransportErrorKind::Tls => {
            format!("the proxy's certificate was refused: {e}")
        }
        Error::Transport(e) => format!("the proxy cannot be reached: {e}"),
        Error::Timeout => "no answer from the proxy".into(),
        e => format!("failed: {e}"),
    }
}
