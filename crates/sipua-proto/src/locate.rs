//! Where a request goes (RFC 3261 §8.1.2, §18.1.1) and how a SIP URI becomes an ordered list
//! of transports and addresses (RFC 3263 §4), with DNS answers fed in as input so that the
//! logic runs without a resolver and replays exactly.

use std::net::{IpAddr, SocketAddr};

use sipua_message::header::Route;
use sipua_message::{Host, Request, Scheme, SipUri, Transport, Uri};

use crate::rng::Rng;

/// RFC 3261 §18.1.1: a request over UDP larger than this (MTU 1500 minus 200) goes over TCP.
pub const UDP_LIMIT: usize = 1300;

/// Why no next hop can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocateError {
    /// The URI is not sip/sips (a tel: URI needs a proxy).
    NotSip,
    /// The transport parameter names a transport we do not speak.
    UnsupportedTransport,
}

impl std::fmt::Display for LocateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LocateError::NotSip => "not a sip: or sips: URI (a tel: URI needs a proxy)",
            LocateError::UnsupportedTransport => {
                "its transport parameter names no transport we speak"
            }
        })
    }
}

impl std::error::Error for LocateError {}

/// The URI the next hop is taken from (RFC 3261 §8.1.2): the outbound proxy if one is
/// configured, else the first Route, else the Request-URI.
pub fn next_hop_uri(request: &Request, outbound_proxy: Option<&Uri>) -> Uri {
    if let Some(p) = outbound_proxy {
        return p.clone();
    }
    match request.typed::<Route>() {
        Some(Ok(r)) => r.0.uri,
        _ => request.uri().clone(),
    }
}

/// Where `uri` sends a request when it names an address (RFC 3263 without DNS): an IP
/// address, with its port or the transport's default; `None` for a host name.
pub fn address_without_dns(uri: &Uri) -> Option<SocketAddr> {
    // the usual next hop, an IP address with a port and no maddr or transport parameter,
    // is where the locator would send (RFC 3263 §4.2), without making one
    if let Some(sip) = uri.as_sip() {
        if let (Some(ip), Some(port), None, None) =
            (sip.host.ip(), sip.port, sip.maddr(), sip.transport())
        {
            return Some(SocketAddr::new(ip, port));
        }
    }
    let mut l = Locator::new(uri, 0).ok()?;
    match l.step() {
        Step::Done(t) => t.first().map(|(_, a)| *a),
        _ => None,
    }
}

/// The transport of a request of `size` bytes for `chosen`: UDP becomes TCP above
/// [`UDP_LIMIT`] (RFC 3261 §18.1.1), unless the URI insisted on UDP.
pub fn transport_for_size(chosen: &Transport, size: usize, uri_forces_udp: bool) -> Transport {
    if *chosen == Transport::Udp && size > UDP_LIMIT && !uri_forces_udp {
        Transport::Tcp
    } else {
        chosen.clone()
    }
}

/// A NAPTR record (RFC 3403) as RFC 3263 uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Order.
    pub order: u16,
    /// Preference.
    pub preference: u16,
    /// Service, e.g. `SIP+D2U`, `SIPS+D2T`, `SIP+D2W`.
    pub service: String,
    /// The SRV name to look up next.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Priority: lower first.
    pub priority: u16,
    /// Weight among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Host to resolve.
    pub target: String,
}

/// What the resolver needs next, or the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Look up the NAPTR records of this domain.
    Naptr(String),
    /// Look up the SRV records of these names (in this order), each for a transport.
    Srv(Vec<(Transport, String)>),
    /// Look up A/AAAA of these hosts, each with the transport and port to use.
    Address(Vec<(Transport, String, u16)>),
    /// The targets, best first.
    Done(Vec<(Transport, SocketAddr)>),
}

/// RFC 3263 §4 for one URI, driven by DNS answers.
///
/// ```
/// use sipua_proto::locate::{Locator, Step};
/// let mut l = Locator::new(&"sip:alice@192.0.2.1:5070".parse().unwrap(), 1).unwrap();
/// assert!(matches!(l.step(), Step::Done(t) if t[0].1.port() == 5070));
/// ```
#[derive(Debug, Clone)]
pub struct Locator {
    secure: bool,
    host: Host,
    port: Option<u16>,
    transport: Option<Transport>,
    rng: Rng,
    srv_names: Option<Vec<(Transport, String)>>,
    hosts: Option<Vec<(Transport, String, u16)>>,
    done: Option<Vec<(Transport, SocketAddr)>>,
}

fn transport_of(param: &str) -> Option<Transport> {
    let t = Transport::parse(param.as_bytes());
    match t {
        Transport::Udp | Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
            Some(t)
        }
        _ => None,
    }
}

impl Locator {
    /// Starts locating `uri`; `seed` orders SRV records of equal priority by weight.
    pub fn new(uri: &Uri, seed: u64) -> Result<Locator, LocateError> {
        let sip: &SipUri = uri.as_sip().ok_or(LocateError::NotSip)?;
        let secure = sip.scheme == Scheme::Sips;
        let transport = match sip.transport() {
            Some(t) => Some(transport_of(t).ok_or(LocateError::UnsupportedTransport)?),
            None => None,
        };
        // maddr overrides the host (RFC 3261 §19.1.1)
        let host = sip
            .maddr()
            .and_then(|m| Host::parse_lenient(m.as_bytes()).ok())
            .unwrap_or_else(|| sip.host.clone());
        let mut l = Locator {
            secure,
            host,
            port: sip.port,
            transport,
            rng: Rng::new(seed),
            srv_names: None,
            hosts: None,
            done: None,
        };
        l.plan();
        Ok(l)
    }

    fn default_transport(&self) -> Transport {
        if self.secure {
            Transport::Tls
        } else {
            Transport::Udp
        }
    }

    /// Decides what can be decided without DNS (RFC 3263 §4.1, §4.2).
    fn plan(&mut self) {
        let transport = self
            .transport
            .clone()
            .unwrap_or_else(|| self.default_transport());
        if let Some(ip) = self.host.ip() {
            let port = self.port.unwrap_or_else(|| transport.default_port());
            self.done = Some(vec![(transport, SocketAddr::new(ip, port))]);
            return;
        }
        let Host::Domain(name) = &self.host else {
            return;
        };
        if let Some(port) = self.port {
            self.hosts = Some(vec![(transport, name.clone(), port)]);
        } else if self.transport.is_some() {
            self.srv_names = Some(vec![(
                transport.clone(),
                srv_name(&transport, self.secure, name),
            )]);
        }
        // else: NAPTR first
    }

    /// What is needed next.
    pub fn step(&mut self) -> Step {
        if let Some(d) = &self.done {
            return Step::Done(d.clone());
        }
        if let Some(h) = &self.hosts {
            return Step::Address(h.clone());
        }
        if let Some(s) = &self.srv_names {
            return Step::Srv(s.clone());
        }
        match &self.host {
            Host::Domain(d) => Step::Naptr(d.clone()),
            _ => Step::Done(Vec::new()),
        }
    }

    /// The NAPTR answer (empty when there is none): keeps the SIP services we speak, in order
    /// and preference; without any, falls back to SRV for every transport (RFC 3263 §4.1).
    pub fn naptr_answer(&mut self, records: &[Naptr]) {
        let mut recs: Vec<&Naptr> = records
            .iter()
            .filter(|r| service_transport(&r.service, self.secure).is_some())
            .collect();
        recs.sort_by_key(|r| (r.order, r.preference));
        let names: Vec<(Transport, String)> = recs
            .iter()
            .filter_map(|r| {
                service_transport(&r.service, self.secure).map(|t| (t, r.replacement.clone()))
            })
            .collect();
        let Host::Domain(domain) = self.host.clone() else {
            return;
        };
        self.srv_names = Some(if names.is_empty() {
            let mut all = Vec::new();
            if self.secure {
                all.push((Transport::Tls, srv_name(&Transport::Tls, true, &domain)));
            } else {
                for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
                    all.push((
                        t.clone(),
                        srv_name(&t, matches!(t, Transport::Tls), &domain),
                    ));
                }
            }
            all
        } else {
            names
        });
    }

    /// The SRV answers, one list per name asked for (in the same order). Without any record,
    /// the domain itself is used with the default port (RFC 3263 §4.2).
    pub fn srv_answer(&mut self, answers: &[Vec<Srv>]) {
        let names = self.srv_names.clone().unwrap_or_default();
        let mut hosts = Vec::new();
        for (i, (transport, _)) in names.iter().enumerate() {
            let mut recs = answers.get(i).cloned().unwrap_or_default();
            order_srv(&mut recs, &mut self.rng);
            hosts.extend(
                recs.into_iter()
                    .map(|r| (transport.clone(), r.target, r.port)),
            );
        }
        if hosts.is_empty() {
            if let Host::Domain(d) = &self.host {
                let t = self
                    .transport
                    .clone()
                    .unwrap_or_else(|| self.default_transport());
                hosts.push((t.clone(), d.clone(), t.default_port()));
            }
        }
        self.hosts = Some(hosts);
    }

    /// The addresses of each host asked for (in the same order).
    pub fn address_answer(&mut self, answers: &[Vec<IpAddr>]) {
        let hosts = self.hosts.clone().unwrap_or_default();
        let mut out = Vec::new();
        for (i, (t, _, port)) in hosts.iter().enumerate() {
            for ip in answers.get(i).map(Vec::as_slice).unwrap_or_default() {
                out.push((t.clone(), SocketAddr::new(*ip, *port)));
            }
        }
        self.done = Some(out);
    }
}

fn srv_name(t: &Transport, secure: bool, domain: &str) -> String {
    let proto = match t {
        Transport::Udp => "_udp",
        _ => "_tcp",
    };
    let service = if secure || matches!(t, Transport::Tls) {
        "_sips"
    } else {
        "_sip"
    };
    format!("{service}.{proto}.{domain}")
}

fn service_transport(service: &str, secure: bool) -> Option<Transport> {
    let s = service.to_ascii_uppercase();
    let t = match s.as_str() {
        "SIP+D2U" if !secure => Transport::Udp,
        "SIP+D2T" if !secure => Transport::Tcp,
        "SIPS+D2T" => Transport::Tls,
        "SIP+D2W" if !secure => Transport::Ws,
        "SIPS+D2W" => Transport::Wss,
        _ => return None,
    };
    Some(t)
}

/// RFC 2782 order: by priority; within a priority, a weighted random draw.
fn order_srv(recs: &mut Vec<Srv>, rng: &mut Rng) {
    recs.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(recs.len());
    let mut i = 0;
    while i < recs.len() {
        let p = recs[i].priority;
        let mut group: Vec<Srv> = recs[i..]
            .iter()
            .take_while(|r| r.priority == p)
            .cloned()
            .collect();
        i += group.len();
        // zero weights first, as RFC 2782 suggests, so they get a small chance
        group.sort_by_key(|r| r.weight);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                rng.next_u64() % (total + 1)
            };
            let mut acc = 0;
            let idx = group
                .iter()
                .position(|r| {
                    acc += u64::from(r.weight);
                    acc >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    *recs = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn numeric_hosts_need_no_dns() {
        let mut l = Locator::new(&uri("sip:alice@192.0.2.1"), 1).unwrap();
        assert_eq!(
            l.step(),
            Step::Done(vec![(Transport::Udp, "192.0.2.1:5060".parse().unwrap())])
        );
        let mut l = Locator::new(&uri("sips:[2001:db8::1]"), 1).unwrap();
        assert_eq!(
            l.step(),
            Step::Done(vec![(
                Transport::Tls,
                "[2001:db8::1]:5061".parse().unwrap()
            )])
        );
        let mut l = Locator::new(&uri("sip:a@192.0.2.1:5080;transport=tcp"), 1).unwrap();
        assert_eq!(
            l.step(),
            Step::Done(vec![(Transport::Tcp, "192.0.2.1:5080".parse().unwrap())])
        );
        assert_eq!(
            Locator::new(&uri("tel:+1234"), 1).unwrap_err(),
            LocateError::NotSip
        );
    }

    #[test]
    fn port_given_means_address_lookup_only() {
        let mut l = Locator::new(&uri("sip:example.com:5070"), 1).unwrap();
        assert_eq!(
            l.step(),
            Step::Address(vec![(Transport::Udp, "example.com".into(), 5070)])
        );
        l.address_answer(&[vec!["192.0.2.9".parse().unwrap()]]);
        assert_eq!(
            l.step(),
            Step::Done(vec![(Transport::Udp, "192.0.2.9:5070".parse().unwrap())])
        );
    }

    #[test]
    fn naptr_then_srv_then_addresses() {
        let mut l = Locator::new(&uri("sip:example.com"), 1).unwrap();
        assert_eq!(l.step(), Step::Naptr("example.com".into()));
        l.naptr_answer(&[
            Naptr {
                order: 50,
                preference: 50,
                service: "SIP+D2U".into(),
                replacement: "_sip._udp.example.com".into(),
            },
            Naptr {
                order: 10,
                preference: 50,
                service: "SIPS+D2T".into(),
                replacement: "_sips._tcp.example.com".into(),
            },
            Naptr {
                order: 90,
                preference: 50,
                service: "SIP+D2X".into(),
                replacement: "_x".into(),
            },
        ]);
        assert_eq!(
            l.step(),
            Step::Srv(vec![
                (Transport::Tls, "_sips._tcp.example.com".into()),
                (Transport::Udp, "_sip._udp.example.com".into())
            ])
        );
        l.srv_answer(&[
            vec![Srv {
                priority: 0,
                weight: 0,
                port: 5061,
                target: "tls.example.com".into(),
            }],
            vec![
                Srv {
                    priority: 20,
                    weight: 0,
                    port: 5060,
                    target: "backup.example.com".into(),
                },
                Srv {
                    priority: 10,
                    weight: 5,
                    port: 5060,
                    target: "main.example.com".into(),
                },
            ],
        ]);
        let Step::Address(hosts) = l.step() else {
            panic!()
        };
        let names: Vec<&str> = hosts.iter().map(|h| h.1.as_str()).collect();
        assert_eq!(
            names,
            vec!["tls.example.com", "main.example.com", "backup.example.com"]
        );
    }

    #[test]
    fn no_naptr_falls_back_to_srv_then_to_the_domain() {
        let mut l = Locator::new(&uri("sip:example.org"), 1).unwrap();
        l.naptr_answer(&[]);
        let Step::Srv(names) = l.step() else { panic!() };
        assert_eq!(names[0], (Transport::Udp, "_sip._udp.example.org".into()));
        l.srv_answer(&[]);
        assert_eq!(
            l.step(),
            Step::Address(vec![(Transport::Udp, "example.org".into(), 5060)])
        );
    }

    #[test]
    fn srv_weights_shape_the_order() {
        let recs = vec![
            Srv {
                priority: 1,
                weight: 90,
                port: 1,
                target: "heavy".into(),
            },
            Srv {
                priority: 1,
                weight: 10,
                port: 1,
                target: "light".into(),
            },
        ];
        let mut rng = Rng::new(7);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let mut r = recs.clone();
            order_srv(&mut r, &mut rng);
            heavy_first += usize::from(r[0].target == "heavy");
        }
        assert!((800..980).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn next_hop_is_proxy_then_route_then_request_uri() {
        let mut req = crate::transaction::test_util::request("OPTIONS");
        assert_eq!(
            next_hop_uri(&req, None).to_string(),
            "sip:bob@biloxi.example.com"
        );
        req.push_header(sipua_message::Header::new(
            sipua_message::HeaderName::Route,
            "<sip:p1.example.com;lr>",
        ))
        .unwrap();
        assert_eq!(
            next_hop_uri(&req, None).to_string(),
            "sip:p1.example.com;lr"
        );
        let proxy = uri("sip:outbound.example.com;lr");
        assert_eq!(next_hop_uri(&req, Some(&proxy)), proxy);
    }

    #[test]
    fn large_requests_move_to_tcp() {
        assert_eq!(
            transport_for_size(&Transport::Udp, 1400, false),
            Transport::Tcp
        );
        assert_eq!(
            transport_for_size(&Transport::Udp, 1400, true),
            Transport::Udp
        );
        assert_eq!(
            transport_for_size(&Transport::Udp, 800, false),
            Transport::Udp
        );
        assert_eq!(
            transport_for_size(&Transport::Tls, 9000, false),
            Transport::Tls
        );
    }
}
