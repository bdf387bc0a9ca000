//! Calls someone, then hands the call to a third party (a blind transfer: REFER, RFC 3515) and
//! prints how the transferee's call to the target goes, from the NOTIFYs it sends back.
//!
//! ```sh
//! sipua serve --listen udp:127.0.0.1:5062     # the transferee (follows REFERs), elsewhere
//! sipua serve --listen udp:127.0.0.1:5064     # the target, elsewhere
//! cargo run -p sipua --example transfer -- sip:bob@127.0.0.1:5062 sip:carol@127.0.0.1:5064
//! ```

use sipua::{Inviter, InviterOptions, SessionReferOptions, UserAgent, UserAgentOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let who = args
        .next()
        .unwrap_or_else(|| "sip:bob@127.0.0.1:5062".into());
    let to = args
        .next()
        .unwrap_or_else(|| "sip:carol@127.0.0.1:5064".into());
    let ua = UserAgent::new(UserAgentOptions::default());
    ua.start().await?;

    let call = Inviter::new(&ua, who.parse()?, InviterOptions::default())?;
    call.invite(Default::default()).await?;
    call.established().await?;
    // the transferee calls the target and reports its progress in NOTIFYs (sipfrag)
    let referral = call
        .refer(to.parse::<sipua::Uri>()?, SessionReferOptions::default())
        .await?;
    println!("REFER: {}", referral.response().status());
    while let Some(n) = referral.next_notification().await {
        println!("transfer: {} {}", n.status, n.reason);
        if n.terminated {
            break;
        }
    }
    // a transferor usually leaves once the transfer went through
    call.bye().await?;
    ua.stop().await;
    Ok(())
}
