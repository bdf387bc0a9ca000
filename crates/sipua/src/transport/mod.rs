//! The sockets a user agent speaks through (RFC 3261 §18). The driver only needs "a message
//! arrived from an address over a transport" and "send these bytes to an address over a
//! transport"; this module gives it that over UDP, over TCP (connections opened on demand,
//! reused in both directions, framed by Content-Length, CRLF keep-alives answered, closed when
//! idle) and over an in-process [`MemoryNetwork`] with loss, duplication, delay and reordering
//! on tokio's clock, so whole user agents can be tested deterministically with virtual time.

mod memory;
mod tcp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sipua_message::Transport;
use sipua_proto::endpoint::{TransactionId, Transmit};
use tokio::net::UdpSocket;

use memory::MemoryPort;
pub use memory::{LinkConfig, MemoryNetwork};

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// Where a user agent listens: the transport and the local address (port 0 picks one).
#[derive(Debug, Clone)]
pub enum Listen {
    /// A UDP socket (and a TCP listener on the same port when it is free, for requests too
    /// large for UDP, RFC 3261 §18.1.1).
    Udp(SocketAddr),
    /// A TCP listener; requests go over TCP connections.
    Tcp(SocketAddr),
    /// A port on an in-process [`MemoryNetwork`] (datagram semantics, like UDP).
    Memory(MemoryNetwork, SocketAddr),
}

impl Listen {
    /// Parses `udp:IP:PORT` or `tcp:IP:PORT`.
    pub fn parse(s: &str) -> Result<Listen, String> {
        let (scheme, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("{s}: expected udp:IP:PORT or tcp:IP:PORT"))?;
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Listen::Udp(addr)),
            "tcp" => Ok(Listen::Tcp(addr)),
            other => Err(format!("{s}: transport {other} is not supported yet")),
        }
    }
}

/// Limits of stream transports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// A connection with no traffic in either direction for this long is closed.
    pub(crate) idle: Duration,
    /// Largest message accepted on a stream.
    pub(crate) max_message: usize,
    /// Most open connections; beyond it new ones are refused.
    pub(crate) max_connections: usize,
    /// How long a connection attempt may take.
    pub(crate) connect_timeout: Duration,
}

/// What the transports report to the driver.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A message arrived.
    Message(Transport, Bytes, SocketAddr),
    /// Bytes of transaction `id` could not be sent (connection refused, reset...).
    SendFailed(TransactionId),
}

/// The bound transports, owned by the driver task.
pub(crate) struct Net {
    udp: Option<(UdpSocket, Vec<u8>)>,
    memory: Option<MemoryPort>,
    tcp: Option<tcp::Tcp>,
    primary: Transport,
    local: SocketAddr,
}

impl Net {
    pub(crate) async fn bind(listen: &Listen, limits: StreamLimits) -> io::Result<Net> {
        Ok(match listen {
            Listen::Udp(a) => {
                let s = UdpSocket::bind(a).await?;
                let local = s.local_addr()?;
                // a TCP listener on the same port if free; else TCP works as a client only
                let tcp = match tcp::Tcp::bind(local, limits).await {
                    Ok(t) => t,
                    Err(_) => tcp::Tcp::client_only(local, limits),
                };
                Net {
                    udp: Some((s, vec![0; MAX_DATAGRAM])),
                    memory: None,
                    tcp: Some(tcp),
                    primary: Transport::Udp,
                    local,
                }
            }
            Listen::Tcp(a) => {
                let tcp = tcp::Tcp::bind(*a, limits).await?;
                let local = tcp.local_addr();
                Net {
                    udp: None,
                    memory: None,
                    tcp: Some(tcp),
                    primary: Transport::Tcp,
                    local,
                }
            }
            Listen::Memory(n, a) => Net {
                udp: None,
                memory: Some(n.bind(*a)?),
                tcp: None,
                primary: Transport::Udp,
                local: *a,
            },
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SIP transport Via and Contact name.
    pub(crate) fn transport(&self) -> Transport {
        self.primary.clone()
    }

    /// The next event; `None` once every transport is gone.
    pub(crate) async fn recv(&mut self) -> Option<NetEvent> {
        let Net {
            udp, memory, tcp, ..
        } = self;
        tokio::select! {
            r = async {
                let (s, buf) = udp.as_mut()?;
                loop {
                    match s.recv_from(buf).await {
                        Ok((n, from)) => {
                            return Some(NetEvent::Message(
                                Transport::Udp,
                                Bytes::copy_from_slice(&buf[..n]),
                                from,
                            ))
                        }
                        // ICMP errors surface here on some systems: not fatal for a server
                        Err(_) => continue,
                    }
                }
            }, if udp.is_some() => r,
            r = async {
                let p = memory.as_mut()?;
                p.rx.recv().await.map(|(b, from)| NetEvent::Message(Transport::Udp, b, from))
            }, if memory.is_some() => r,
            r = async { tcp.as_mut()?.recv().await }, if tcp.is_some() => r,
        }
    }

    /// Sends `t` over its transport. An error means it failed at once (the driver reports it
    /// to the core); failures found later come back as [`NetEvent::SendFailed`].
    pub(crate) async fn send(&mut self, t: &Transmit) -> io::Result<()> {
        match t.transport {
            Transport::Udp => {
                if let Some((s, _)) = &self.udp {
                    return s.send_to(&t.bytes, t.destination).await.map(|_| ());
                }
                if let Some(p) = &self.memory {
                    return p.net.send(p.addr, t.destination, t.bytes.clone());
                }
                Err(io::Error::new(io::ErrorKind::Unsupported, "no UDP socket"))
            }
            Transport::Tcp => match &mut self.tcp {
                Some(tcp) => tcp.send(t.destination, t.bytes.clone(), t.transaction),
                None => Err(io::Error::new(io::ErrorKind::Unsupported, "no TCP")),
            },
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "transport not available",
            )),
        }
    }

    /// Open stream connections.
    pub(crate) fn connections(&self) -> usize {
        self.tcp.as_ref().map_or(0, tcp::Tcp::connections)
    }
}
