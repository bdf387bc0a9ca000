//! Calls a SIP URI, stays in the call for five seconds, hangs up.
//!
//! ```sh
//! cargo run -p sipua --example call -- sip:bob@127.0.0.1:5062
//! ```

use std::time::Duration;

use sipua::{Inviter, InviterOptions, Listen, UserAgent, UserAgentOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sip:bob@127.0.0.1:5062".into());
    let ua = UserAgent::new(UserAgentOptions {
        // all addresses: each peer is told the address it can reach us at
        listen: Listen::Udp("0.0.0.0:0".parse()?), // or Tcp, Tls, Ws, Wss
        ..Default::default()
    });
    ua.start().await?;

    let call = Inviter::new(&ua, target.parse()?, InviterOptions::default())?;
    call.invite(Default::default()).await?; // NAPTR/SRV/A (RFC 3263) for host names
    call.established().await?; // Err(Rejected { status, .. }) if refused
    println!("in the call");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = call.bye().await?;
    println!("BYE: {} {}", reply.status(), reply.reason());
    ua.stop().await;
    Ok(())
}
