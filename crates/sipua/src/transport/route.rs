//! Which of our addresses a peer can reach us at, for an agent listening on a wildcard
//! address (`0.0.0.0`, `::`): the source address the kernel's routing table picks towards
//! that peer. Found with a connected UDP socket (no packet is sent), cached per peer address.
//! RFC 3261 §18.2.1 and §20.42 want a Via sent-by and a Contact the peer can use; the
//! wildcard itself names no host.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;

/// Peers remembered; beyond it the cache starts afresh (a lookup costs three system calls).
const MAX_CACHED: usize = 4096;

/// The source address towards each peer, looked up once.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    cache: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Routes {
    /// The local address the kernel sends from towards `peer`; the loopback address of the
    /// peer's family when there is no route (an unplugged machine still calls itself).
    pub(crate) fn source_for(&self, peer: IpAddr) -> IpAddr {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = cache.get(&peer) {
            return *ip;
        }
        let ip = lookup(peer).unwrap_or(match peer {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(peer, ip);
        ip
    }
}

fn lookup(peer: IpAddr) -> std::io::Result<IpAddr> {
    let any: IpAddr = match peer {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
    // the discard port: connect only asks the routing table
    s.connect(SocketAddr::new(peer, 9))?;
    let ip = s.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(std::io::Error::other("no source address"));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers_are_reached_from_loopback() {
        let r = Routes::default();
        let ip = r.source_for("127.0.0.2".parse().unwrap());
        assert!(ip.is_loopback(), "{ip}");
        assert!(!ip.is_unspecified());
        // cached: the same answer again
        assert_eq!(r.source_for("127.0.0.2".parse().unwrap()), ip);
    }
}
