//! A user agent on a UDP socket: one tokio task owns a [`UaCore`] and the socket, feeds it
//! datagrams and timers, sends what it asks to send, and passes its events on. The handle talks
//! to the task over a channel and awaits the answer of each command.
//!
//! This is the thin driver of the architecture (the core does all the SIP); the SIP.js-style
//! `UserAgent` / `Inviter` / `Session` API is to be built on top of it.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sipua_message::{Method, Response, Transport, Uri};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::{Received, TransactionId};
use sipua_proto::ua::{UaConfig, UaCore, UaError, UaEvent};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Events waiting for the application beyond this many are a sign it stopped reading; the
/// driver then waits for it (backpressure) rather than buffering without bound.
const EVENT_QUEUE: usize = 1024;
const COMMAND_QUEUE: usize = 256;
/// Largest datagram read (RFC 3261 §18.1.1 messages over UDP are far smaller).
const MAX_DATAGRAM: usize = 65_535;

/// Why a command to the user agent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// The core refused the command.
    Ua(UaError),
    /// The driver task has stopped.
    Stopped,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Ua(e) => write!(f, "refused by the user agent core: {e:?}"),
            DriverError::Stopped => f.write_str("the user agent has stopped"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<UaError> for DriverError {
    fn from(e: UaError) -> DriverError {
        DriverError::Ua(e)
    }
}

type Reply<T> = oneshot::Sender<Result<T, DriverError>>;

enum Command {
    Invite {
        target: Uri,
        destination: SocketAddr,
        reply: Reply<TransactionId>,
    },
    Respond {
        id: TransactionId,
        status: u16,
        reply: Reply<Option<DialogId>>,
    },
    InDialog {
        dialog: DialogId,
        method: Method,
        destination: SocketAddr,
        reply: Reply<TransactionId>,
    },
    Cancel {
        id: TransactionId,
        reply: Reply<()>,
    },
}

/// A user agent bound to a UDP socket.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use sipua::udp::UdpUserAgent;
/// let mut ua = UdpUserAgent::bind("127.0.0.1:5062".parse()?, "alice").await?;
/// let id = ua.invite("sip:bob@127.0.0.1:5060".parse()?, "127.0.0.1:5060".parse()?).await?;
/// while let Some(event) = ua.next_event().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
pub struct UdpUserAgent {
    local: SocketAddr,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<UaEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpUserAgent {
    /// Binds `addr` (port 0 picks one) and starts the driver task on the current runtime.
    pub async fn bind(addr: SocketAddr, user: &str) -> io::Result<UdpUserAgent> {
        UdpUserAgent::bind_with(addr, user, |_| {}).await
    }

    /// Like [`UdpUserAgent::bind`], letting `configure` adjust the core's configuration
    /// (capabilities, credentials, limits) once the local address is known.
    pub async fn bind_with(
        addr: SocketAddr,
        user: &str,
        configure: impl FnOnce(&mut UaConfig),
    ) -> io::Result<UdpUserAgent> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let mut cfg = UaConfig {
            seed: seed_from(local),
            ..UaConfig::new(local, Transport::Udp, user)
        };
        configure(&mut cfg);
        let core = UaCore::new(cfg);
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(run(core, socket, command_rx, event_tx));
        Ok(UdpUserAgent {
            local,
            commands,
            events,
            task,
        })
    }

    /// The address the socket is bound to (and that Via and Contact carry).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Sends an INVITE to `target` through `destination`.
    pub async fn invite(
        &self,
        target: Uri,
        destination: SocketAddr,
    ) -> Result<TransactionId, DriverError> {
        self.ask(|reply| Command::Invite {
            target,
            destination,
            reply,
        })
        .await
    }

    /// Answers request `id` with `status` (a 2xx to an INVITE creates the dialog).
    pub async fn respond(
        &self,
        id: TransactionId,
        status: u16,
    ) -> Result<Option<DialogId>, DriverError> {
        self.ask(|reply| Command::Respond { id, status, reply })
            .await
    }

    /// Sends a request inside `dialog` (BYE, INFO, re-INVITE...) through `destination`.
    pub async fn request_in_dialog(
        &self,
        dialog: DialogId,
        method: Method,
        destination: SocketAddr,
    ) -> Result<TransactionId, DriverError> {
        self.ask(|reply| Command::InDialog {
            dialog,
            method,
            destination,
            reply,
        })
        .await
    }

    /// Cancels our INVITE `id`.
    pub async fn cancel(&self, id: TransactionId) -> Result<(), DriverError> {
        self.ask(|reply| Command::Cancel { id, reply }).await
    }

    /// The next event; `None` once the driver has stopped.
    pub async fn next_event(&mut self) -> Option<UaEvent> {
        self.events.recv().await
    }

    /// Stops the driver task (transactions in progress are abandoned).
    pub async fn shutdown(self) {
        drop(self.commands);
        let _ = self.task.await;
    }
}

/// A seed from the address and the clock, so two agents never share tags or branches.
fn seed_from(local: SocketAddr) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(local.port()) << 48) ^ 0x9e37_79b9_7f4a_7c15
}

/// The driver loop: the only place that touches the socket and the clock.
async fn run(
    mut core: UaCore,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<UaEvent>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // send what the core wants sent; a failure ends the transaction that sent it
        while let Some(t) = core.poll_transmit() {
            if socket.send_to(&t.bytes, t.destination).await.is_err() {
                if let Some(tx) = t.transaction {
                    core.handle_transport_error(Instant::now(), tx);
                }
            }
        }
        while let Some(ev) = core.poll_event() {
            if events.send(ev).await.is_err() {
                return; // nobody listens any more
            }
        }
        let sleep = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, remote)) = r {
                    let bytes = Bytes::copy_from_slice(&buf[..n]);
                    core.handle_datagram(Instant::now(), Received { transport: Transport::Udp, remote, bytes });
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                apply(&mut core, cmd);
            }
            _ = async { tokio::time::sleep_until(sleep.unwrap_or_else(tokio::time::Instant::now)).await }, if sleep.is_some() => {
                core.handle_timeout(Instant::now());
            }
        }
    }
}

fn apply(core: &mut UaCore, cmd: Command) {
    let now = Instant::now();
    match cmd {
        Command::Invite {
            target,
            destination,
            reply,
        } => {
            let _ = reply.send(
                core.invite(now, target, destination, None)
                    .map_err(Into::into),
            );
        }
        Command::Respond { id, status, reply } => {
            let r = core
                .response(id, status)
                .and_then(|resp: Response| core.respond(now, id, resp));
            let _ = reply.send(r.map_err(Into::into));
        }
        Command::InDialog {
            dialog,
            method,
            destination,
            reply,
        } => {
            let _ = reply.send(
                core.request_in_dialog(now, &dialog, method, destination)
                    .map_err(Into::into),
            );
        }
        Command::Cancel { id, reply } => {
            let _ = reply.send(core.cancel(now, id, Vec::new()).map_err(Into::into));
        }
    }
}
