//! Answers every call, whatever user it is for, each on a task of its own, and prints how
//! each call ends.
//!
//! ```sh
//! cargo run -p sipua --example answer -- 0.0.0.0:5062
//! sipua call sip:anyone@127.0.0.1:5062        # in another terminal
//! ```

use sipua::{Listen, UserAgent, UserAgentOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:5062".into());
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp(addr.parse()?),
        // calls to any user are answered; `accept_any_user: false` answers 404 to calls for
        // users other than `user`
        ..Default::default()
    });
    ua.start().await?;
    println!("listening on {}", ua.local_addr().unwrap());
    while let Some(invitation) = ua.next_invitation().await {
        // the Invitation is the call: it lives on its own task, since dropping every
        // handle of a call hangs it up
        tokio::spawn(async move {
            let from = invitation.request().from().map(|f| f.uri.to_string());
            invitation.progress(Default::default()).await?; // 180 Ringing
            invitation.accept(Default::default()).await?; // 200 with our SDP answer
            let why = invitation.terminated().await; // the caller's BYE, say
            println!("call from {} over: {why:?}", from.unwrap_or_default());
            Ok::<_, sipua::Error>(())
        });
    }
    Ok(())
}
