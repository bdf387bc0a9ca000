//! Calls over TLS (RFC 3261 §26): the server's certificate is checked against the host of the
//! URI called (RFC 5922 §7.2), with the roots given (a PEM file) or the platform's.
//!
//! ```sh
//! sipua serve --listen tls:127.0.0.1:5061     # prints the path of its self-signed certificate
//! cargo run -p sipua --example tls -- 'sip:bob@127.0.0.1:5061;transport=tls' /tmp/sipua-…/certificate.pem
//! ```

use std::time::Duration;

use sipua::{Inviter, InviterOptions, Listen, TlsOptions, UserAgent, UserAgentOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .unwrap_or_else(|| "sip:bob@127.0.0.1:5061;transport=tls".into());
    // the certificates to trust; without, the platform's roots (or SSL_CERT_FILE)
    let tls = match args.next() {
        Some(pem) => TlsOptions::from_pem("", "", &std::fs::read_to_string(pem)?)?,
        None => TlsOptions::default(),
    };
    let ua = UserAgent::new(UserAgentOptions {
        // no certificate of our own: we only open connections, and our Contact asks the
        // peer to reuse them (`;ob`, RFC 5626)
        listen: Listen::Tls("127.0.0.1:0".parse()?),
        tls,
        ..Default::default()
    });
    ua.start().await?;
    let call = Inviter::new(&ua, target.parse()?, InviterOptions::default())?;
    call.invite(Default::default()).await?;
    if let Err(e) = call.established().await {
        // a certificate that does not check says why here
        println!("failed: {e} ({:?})", call.send_failure());
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("BYE: {}", call.bye().await?.status());
    }
    ua.stop().await;
    Ok(())
}
