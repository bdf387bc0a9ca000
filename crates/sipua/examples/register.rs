//! Registers at a registrar (answering its digest challenge), sends a MESSAGE, unregisters.
//!
//! ```sh
//! cargo run -p sipua --example register -- sip:alice@example.com alice secret sip:bob@example.com
//! ```

use sipua::{
    Credentials, Messager, MessagerOptions, Registerer, RegistererOptions, UserAgent,
    UserAgentOptions,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (aor, user, password, to) = match (args.next(), args.next(), args.next(), args.next()) {
        (Some(a), Some(u), Some(p), Some(t)) => (a, u, p, t),
        _ => return Err("usage: register AOR USER PASSWORD TO".into()),
    };
    let ua = UserAgent::new(UserAgentOptions {
        uri: Some(aor.parse()?), // our address of record; its domain is the registrar
        credentials: Some(Credentials {
            username: user,
            password,
        }),
        ..Default::default()
    });
    ua.start().await?;

    let registerer = Registerer::new(&ua, RegistererOptions::default())?;
    let r = registerer.register().await?; // 401/407 answered; refreshed before expiry
    println!("REGISTER: {} {}", r.status(), r.reason());
    let m = Messager::new(
        &ua,
        to.parse()?,
        "hi",
        "text/plain",
        MessagerOptions::default(),
    )?;
    let r = m.message().await?;
    println!("MESSAGE: {} {}", r.status(), r.reason());
    registerer.unregister(Default::default()).await?; // `RegistererUnregisterOptions::all()`: every binding (Contact: *)
    ua.stop().await;
    Ok(())
}
