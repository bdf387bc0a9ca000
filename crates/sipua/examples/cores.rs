//! Answers calls on every core of the machine: one UDP port, one user agent per core, each on
//! a thread and runtime of its own and owning the calls whose Call-ID hashes to it
//! (`sipua::transport::udp_shards`; `sipua serve --threads N` does the same).
//!
//! ```sh
//! cargo run --release -p sipua --example cores -- 127.0.0.1:5062
//! sipp -sn uac -r 2000 127.0.0.1:5062      # in another terminal
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sipua::{UserAgent, UserAgentOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5062".into());
    let cores = std::thread::available_parallelism()?.get();
    // one socket; a listener on it for each agent (the first reads it for all)
    let listens = sipua::transport::udp_shards(addr.parse()?, cores)?;
    let answered = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = listens
        .into_iter()
        .enumerate()
        .map(|(core, listen)| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let ua = UserAgent::new(UserAgentOptions {
                        listen,
                        ..Default::default()
                    });
                    ua.start().await?;
                    println!("core {core}: answering on {}", ua.local_addr().unwrap());
                    while let Some(invitation) = ua.next_invitation().await {
                        // each call on a task of this agent's runtime: it never leaves this core
                        let answered = answered.clone();
                        tokio::spawn(async move {
                            invitation.accept(Default::default()).await?;
                            answered.fetch_add(1, Ordering::Relaxed);
                            invitation.terminated().await;
                            Ok::<_, sipua::Error>(())
                        });
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            })
        })
        .collect();
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("error: {e}");
        }
    }
    println!("{} calls answered", answered.load(Ordering::Relaxed));
    Ok(())
}
