//! `sipua subscribe` (RFC 6665): subscribe to an event package, print every NOTIFY,
//! unsubscribe; and the notifier `sipua serve` runs for the packages a softphone asks a
//! server for: `presence` (a PIDF saying the user is open, RFC 3863) and `message-summary`
//! (no messages waiting, RFC 3842).

use std::process::ExitCode;
use std::time::Duration;

use sipua::message::Uri;
use sipua::{
    BodyAndContentType, IncomingSubscription, NotifierOptions, Subscriber, SubscriberOptions,
    SubscriptionState, UserAgent,
};

/// Arguments of `sipua subscribe`.
#[derive(clap::Args)]
pub struct SubscribeArgs {
    /// The resource, e.g. `sip:bob@example.com`.
    uri: Uri,
    /// The event package: `presence`, `message-summary`, `dialog`...
    #[arg(long, default_value = "presence")]
    event: String,
    /// The subscription's duration to ask for, in seconds (refreshed before it ends).
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Seconds to stay subscribed, printing NOTIFYs, before unsubscribing.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Body types to accept (Accept), e.g. `application/pidf+xml`; repeat for several.
    #[arg(long)]
    accept: Vec<String>,
    /// Local address: `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
    /// Who we are, for From, e.g. `sip:alice@example.com`.
    #[arg(long)]
    from: Option<Uri>,
    #[command(flatten)]
    auth: crate::account::AuthArgs,
}

/// Runs `sipua subscribe`: exit 0 when the subscription was accepted and got a NOTIFY.
pub fn subscribe_command(args: &SubscribeArgs) -> ExitCode {
    crate::account::with_agent(
        &args.from_addr,
        args.from.as_ref(),
        &args.auth,
        |ua| async move { crate::account::exit_code(run(&ua, args).await) },
    )
}

async fn run(ua: &UserAgent, args: &SubscribeArgs) -> Result<(), String> {
    let options = SubscriberOptions {
        expires: args.expires,
        accept: args.accept.clone(),
        ..Default::default()
    };
    let sub =
        Subscriber::new(ua, args.uri.clone(), &args.event, options).map_err(|e| e.to_string())?;
    sub.subscribe()
        .await
        .map_err(|e| format!("SUBSCRIBE: {e}"))?;
    println!("subscribed to {} of {}", args.event, args.uri);
    let mut notified = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
    while let Ok(Some(n)) = tokio::time::timeout_at(until, sub.next_notification()).await {
        notified += 1;
        let state = n.subscription_state().map_or("?".into(), |s| s.to_string());
        println!(
            "NOTIFY ({state}) {}:\n{}",
            n.content_type().unwrap_or_else(|| "no body".into()),
            String::from_utf8_lossy(n.body()).trim_end()
        );
        if sub.state() == SubscriptionState::Terminated {
            break;
        }
    }
    if sub.state() != SubscriptionState::Terminated {
        sub.unsubscribe()
            .await
            .map_err(|e| format!("unsubscribe: {e}"))?;
        println!("unsubscribed");
    } else if let Some(t) = sub.termination() {
        println!(
            "terminated by the notifier: {}",
            t.reason.unwrap_or_else(|| "no reason".into())
        );
    }
    if notified == 0 {
        return Err("no NOTIFY came".into());
    }
    Ok(())
}

/// `sipua serve`'s notifier: presence and message-summary subscriptions are accepted with
/// a fixed state; other packages get 489.
pub fn serve_subscription(s: IncomingSubscription, quiet: bool) {
    let body = match s.event().as_str() {
        "presence" => {
            let entity = s.request().uri().to_string();
            BodyAndContentType {
                body: format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
                     <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n\
                     <tuple id=\"sipua\"><status><basic>open</basic></status></tuple>\r\n\
                     </presence>\r\n"
                )
                .into(),
                content_type: "application/pidf+xml".into(),
            }
        }
        "message-summary" => BodyAndContentType {
            body: "Messages-Waiting: no\r\n".into(),
            content_type: "application/simple-message-summary".into(),
        },
        _ => {
            s.reject(489);
            return;
        }
    };
    if !quiet {
        let r = s.request();
        println!(
            "SUBSCRIBE {} from {}",
            crate::call::shown(s.event()),
            crate::call::shown(r.from().map_or("?".into(), |f| f.uri.to_string()))
        );
    }
    tokio::spawn(async move {
        let options = NotifierOptions {
            body: Some(body),
            ..Default::default()
        };
        if let Ok(n) = s.accept(options).await {
            // keep the handle until the subscription ends (dropping it terminates it)
            n.terminated().await;
        }
    });
}
