//! `sipua transfer`: call someone, then transfer them (REFER, RFC 3515) to a target, blind
//! or attended (a consultation call to the target first, replaced by the transferred one,
//! RFC 3891), printing the NOTIFYed progress; and the transferee's side for `sipua serve`,
//! which follows the REFERs it gets.

use std::process::ExitCode;
use std::time::Duration;

use sipua::message::Uri;
use sipua::{
    Inviter, InviterOptions, Referral, Session, SessionDelegate, SessionReferOptions, UserAgent,
};

/// Arguments of `sipua transfer`.
#[derive(clap::Args)]
pub struct TransferArgs {
    /// Who to call and then transfer, e.g. `sip:bob@127.0.0.1:5062`.
    uri: Uri,
    /// Where to transfer them, e.g. `sip:carol@127.0.0.1:5064`.
    target: Uri,
    /// Attended transfer: call the target first, then hand the first call over to it
    /// (the target's call to us is replaced by the transferred one).
    #[arg(long)]
    attended: bool,
    /// Seconds to stay in the call before transferring it.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Ask for no progress reports (`Refer-Sub: false`, RFC 4488).
    #[arg(long)]
    no_subscription: bool,
    /// Local address: `udp:IP:PORT`, `tcp:`, `tls:`, `ws:` or `wss:`.
    #[arg(long, default_value = "udp:127.0.0.1:0")]
    from_addr: String,
    /// Who we are, for From and Referred-By, e.g. `sip:alice@example.com`.
    #[arg(long)]
    from: Option<Uri>,
    #[command(flatten)]
    auth: crate::account::AuthArgs,
    /// Seconds to wait for the transfer's outcome.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// Calls `uri` and waits until the call is up.
async fn call_up(ua: &UserAgent, uri: &Uri, label: &str) -> Result<Inviter, String> {
    let call = Inviter::new(ua, uri.clone(), InviterOptions::default())
        .map_err(|e| format!("{label}: {e}"))?;
    crate::call::print_states(label.into(), &call);
    call.invite(Default::default())
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    call.established()
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    Ok(call)
}

/// Runs `sipua transfer`: exit 0 when the target answered the transferred call.
pub fn transfer_command(args: &TransferArgs) -> ExitCode {
    crate::account::with_agent(
        &args.from_addr,
        args.from.as_ref(),
        &args.auth,
        |ua| async move { crate::account::exit_code(run(&ua, args).await) },
    )
}

async fn run(ua: &UserAgent, args: &TransferArgs) -> Result<(), String> {
    let call = call_up(ua, &args.uri, "call").await?;
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0))).await;
    let consultation = if args.attended {
        Some(call_up(ua, &args.target, "consultation").await?)
    } else {
        None
    };
    let options = SessionReferOptions {
        no_subscription: args.no_subscription,
        ..Default::default()
    };
    let referred = match &consultation {
        Some(c) => call.refer(c.session(), options).await,
        None => call.refer(args.target.clone(), options).await,
    };
    let referrer = referred.map_err(|e| format!("REFER: {e}"))?;
    println!(
        "REFER: {} {}",
        referrer.response().status(),
        referrer.response().reason()
    );
    let outcome = if referrer.subscribed() {
        let limit = Duration::from_secs_f64(args.timeout.max(0.0));
        tokio::time::timeout(limit, async {
            while let Some(n) = referrer.next_notification().await {
                println!("transfer: {} {}", n.status, n.reason);
                if n.status >= 200 {
                    return if n.status < 300 {
                        Ok(())
                    } else {
                        Err(format!("the target answered {} {}", n.status, n.reason))
                    };
                }
            }
            Err("the progress reports stopped without an outcome".to_string())
        })
        .await
        .unwrap_or_else(|_| Err("no outcome in time".into()))
    } else {
        println!("transfer: no progress reports (Refer-Sub: false)");
        Ok(())
    };
    // our part is done either way: the transferred party and the target carry on
    if outcome.is_ok() {
        let _ = call.bye().await;
        if let Some(c) = &consultation {
            // the target ended the consultation call when it took the transferred one;
            // hang up ourselves if it did not
            if tokio::time::timeout(Duration::from_secs(2), c.terminated())
                .await
                .is_err()
            {
                let _ = c.bye().await;
            }
        }
    }
    outcome
}

/// The transferee's side for `sipua serve`: follows every REFER, printing how it goes, and
/// prints the peer's re-INVITEs (with the direction they offer) and in-call MESSAGEs.
pub struct FollowTransfers {
    /// The answered call's name in the output.
    pub label: String,
}

/// The direction attribute of an SDP body (RFC 3264 §5.1; `sendrecv` when none is given).
fn sdp_direction(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body);
    for d in ["sendonly", "recvonly", "inactive", "sendrecv"] {
        if text.lines().any(|l| l.trim() == format!("a={d}")) {
            return d;
        }
    }
    if body.is_empty() {
        "no offer"
    } else {
        "sendrecv"
    }
}

impl SessionDelegate for FollowTransfers {
    fn on_invite(&self, request: &sipua::message::Request, status: u16) {
        println!(
            "{}: re-INVITE ({}) answered {status}",
            self.label,
            sdp_direction(request.body())
        );
    }

    fn on_message(&self, message: sipua::Message) {
        println!(
            "{}: MESSAGE in the call: {}",
            self.label,
            crate::call::shown(String::from_utf8_lossy(message.body()))
        );
        message.accept();
    }

    fn on_refer(&self, referral: Referral) {
        let label = self.label.clone();
        tokio::spawn(async move {
            let mut target = referral.refer_to().uri.clone();
            if let Some(sip) = target.as_sip_mut() {
                sip.headers.clear(); // the Replaces is printed on its own
            }
            if let Some(r) = referral.replaces() {
                println!("{label}: the transfer replaces call {r}");
            }
            println!(
                "{label}: REFER to {}",
                crate::call::shown(target.to_string())
            );
            if let Err(e) = referral.accept().await {
                println!("{label}: cannot accept the REFER: {e}");
                return;
            }
            let call = match referral.make_inviter(InviterOptions::default()) {
                Ok(c) => c,
                Err(e) => {
                    println!("{label}: transfer: {e}");
                    return;
                }
            };
            crate::call::print_states(format!("{label} transfer to {target}"), &call);
            if call.invite(Default::default()).await.is_ok() {
                // keep the handle until the call ends (dropping it would hang up)
                let session: Session = call.session().clone();
                session.terminated().await;
            }
        });
    }
}
