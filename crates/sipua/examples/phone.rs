//! SIP.js's `SimpleUser`: a phone with one line, registered at its registrar, that calls,
//! sends a DTMF digit, holds, unholds and hangs up.
//!
//! ```sh
//! cargo run -p sipua --example phone -- sip:alice@example.com sip:bob@example.com
//! ```

use std::sync::Arc;
use std::time::Duration;

use sipua::{SimpleUser, SimpleUserDelegate, SimpleUserOptions};

struct Ui;

impl SimpleUserDelegate for Ui {
    fn on_call_received(&self) {
        println!("ringing"); // then phone.answer()
    }
    fn on_call_hangup(&self) {
        println!("call over");
    }
    fn on_call_dtmf_received(&self, tone: char, _duration: Duration) {
        println!("pressed {tone}");
    }
    fn on_server_disconnect(&self, error: Option<&sipua::Error>) {
        println!("server lost: {error:?}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (aor, target) = match (args.next(), args.next()) {
        (Some(a), Some(t)) => (a, t),
        _ => return Err("usage: phone AOR TARGET".into()),
    };
    let phone = SimpleUser::new(SimpleUserOptions {
        aor: Some(aor.parse()?), // registrar and OPTIONS ping target
        delegate: Some(Arc::new(Ui)),
        options_ping_interval: Some(Duration::from_secs(30)),
        registration_retry: true,
        ..Default::default() // user_agent_options: UDP, ...
    });
    phone.connect().await?;
    phone.register().await?;
    let call = phone.call(target.parse()?).await?;
    call.established().await?; // Err(Rejected { status: 486 | 603, .. }) if refused
    phone.send_dtmf('1').await?; // RFC 4733, or INFO when configured so
    phone.hold().await?; // re-INVITE with a=sendonly
    phone.unhold().await?;
    phone.hangup().await?; // CANCEL, BYE or reject, as the state needs
    phone.disconnect().await?; // unregisters, hangs up, stops
    Ok(())
}
