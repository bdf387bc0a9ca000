//! Watches someone's presence (RFC 6665, RFC 3856) and prints each NOTIFY for thirty
//! seconds, then unsubscribes.
//!
//! ```sh
//! cargo run -p sipua --example presence -- sip:bob@127.0.0.1:5062
//! sipua serve --listen udp:127.0.0.1:5062     # a notifier, in another terminal
//! ```

use std::time::Duration;

use sipua::{Subscriber, SubscriberOptions, UserAgent, UserAgentOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sip:bob@127.0.0.1:5062".into());
    let ua = UserAgent::new(UserAgentOptions::default());
    ua.start().await?;

    // refreshed before expiry; NOTIFY before the 2xx, Timer N and terminated reasons handled
    let sub = Subscriber::new(
        &ua,
        target.parse()?,
        "presence",
        SubscriberOptions::default(),
    )?;
    sub.subscribe().await?;
    let watch = async {
        while let Some(n) = sub.next_notification().await {
            println!(
                "{:?}: {}",
                n.subscription_state(),
                String::from_utf8_lossy(n.body())
            );
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), watch).await;
    sub.unsubscribe().await?;
    ua.stop().await;
    Ok(())
}
