//! SIGINT and SIGTERM for the long-running commands: the first one asks for a graceful stop
//! (the command hangs up or cancels its calls, unregisters, unsubscribes, removes the files it
//! made, within a bounded time, then exits 0); a second one exits at once.

/// Resolves on the first SIGINT or SIGTERM, printing which; from then on, another one ends
/// the process at once (exit 130 or 143, as a shell reports a signal). Never resolves where
/// signals cannot be watched. Call it once per command.
pub async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    eprintln!("{name}: stopping gracefully (again to stop at once)");
    // the second signal: no more waiting
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        eprintln!("stopped at once");
        std::process::exit(code);
    });
}
