//! RFC 3263 server location with real DNS: the sans-IO [`Locator`] of `sipua-proto` says what
//! to ask (NAPTR, then SRV, then A/AAAA, RFC 3263 §4); this module asks it with hickory and
//! feeds the answers back, until the locator has its ordered list of targets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use sipua_message::{Transport, Uri};
use sipua_proto::locate::{Locator, Naptr, Srv, Step};

use crate::error::{DnsError, DnsErrorKind, Error};

/// Where a request goes: the targets of RFC 3263 §4, best first, and whether DNS (or the URI)
/// chose the transport rather than leaving it to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Transport and address, best first.
    pub targets: Vec<(Transport, SocketAddr)>,
    /// The transport came from the URI's `transport` parameter, NAPTR or SRV.
    pub transport_chosen: bool,
}

/// A DNS resolver for SIP URIs (RFC 3263).
#[derive(Clone)]
pub struct DnsResolver {
    resolver: Option<TokioResolver>,
    seed: u64,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("configured", &self.resolver.is_some())
            .finish()
    }
}

fn options() -> ResolverOpts {
    let mut o = ResolverOpts::default();
    o.timeout = Duration::from_secs(2);
    o.attempts = 2;
    o.use_hosts_file = ResolveHosts::Never;
    o
}

impl DnsResolver {
    /// The system's resolver configuration (`/etc/resolv.conf`). Without one, names are
    /// resolved by the operating system (A/AAAA only, no NAPTR or SRV).
    pub fn system(seed: u64) -> DnsResolver {
        let resolver = TokioResolver::builder_tokio().ok().map(|b| {
            let mut b = b;
            b.options_mut().use_hosts_file = ResolveHosts::Always;
            b.build()
        });
        DnsResolver { resolver, seed }
    }

    /// Asks these name servers (UDP, then TCP for truncated answers).
    pub fn with_servers(servers: &[SocketAddr], seed: u64) -> DnsResolver {
        let mut cfg = ResolverConfig::new();
        for s in servers {
            cfg.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
            cfg.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
        }
        let resolver = TokioResolver::builder_with_config(cfg, TokioConnectionProvider::default())
            .with_options(options())
            .build();
        DnsResolver {
            resolver: Some(resolver),
            seed,
        }
    }

    /// The targets for `uri` (RFC 3263 §4).
    pub async fn locate(&self, uri: &Uri) -> Result<Located, Error> {
        let mut locator = Locator::new(uri, self.seed).map_err(|e| {
            Error::Dns(DnsError::new(
                DnsErrorKind::NoTarget,
                format!("{uri}: {e:?}"),
            ))
        })?;
        let mut transport_chosen = uri.as_sip().is_some_and(|s| s.transport().is_some());
        // why the last address lookup found nothing, for the error if none finds anything
        let mut failure: Option<DnsError> = None;
        let not_found = || {
            let host = uri
                .as_sip()
                .map_or_else(|| uri.to_string(), |s| s.host.to_string());
            Error::Dns(DnsError::new(DnsErrorKind::NotFound, host))
        };
        // each step narrows; a bounded loop in case answers keep coming back empty
        for _ in 0..4 {
            match locator.step() {
                Step::Done(targets) => {
                    if targets.is_empty() {
                        return Err(failure.map_or_else(not_found, Error::Dns));
                    }
                    return Ok(Located {
                        targets,
                        transport_chosen,
                    });
                }
                Step::Naptr(domain) => {
                    let records = self.naptr(&domain).await;
                    transport_chosen |= !records.is_empty();
                    locator.naptr_answer(&records);
                }
                Step::Srv(names) => {
                    let mut answers = Vec::with_capacity(names.len());
                    for (_, name) in &names {
                        answers.push(self.srv(name).await);
                    }
                    transport_chosen |= answers.iter().any(|a| !a.is_empty());
                    locator.srv_answer(&answers);
                }
                Step::Address(hosts) => {
                    let mut answers = Vec::with_capacity(hosts.len());
                    for (_, host, _) in &hosts {
                        answers.push(self.addresses(host).await.unwrap_or_else(|e| {
                            failure = Some(e);
                            Vec::new()
                        }));
                    }
                    locator.address_answer(&answers);
                }
            }
        }
        Err(failure.map_or_else(not_found, Error::Dns))
    }

    async fn naptr(&self, domain: &str) -> Vec<Naptr> {
        let Some(r) = &self.resolver else {
            return Vec::new();
        };
        let Ok(answer) = r.lookup(fqdn(domain), RecordType::NAPTR).await else {
            return Vec::new();
        };
        answer
            .iter()
            .filter_map(|d| match d {
                // only terminal "S" records lead to SRV (RFC 3263 §4.1)
                RData::NAPTR(n) if n.flags().eq_ignore_ascii_case(b"s") => Some(Naptr {
                    order: n.order(),
                    preference: n.preference(),
                    service: String::from_utf8_lossy(n.services()).into_owned(),
                    replacement: trim_dot(&n.replacement().to_string()),
                }),
                _ => None,
            })
            .collect()
    }

    async fn srv(&self, name: &str) -> Vec<Srv> {
        let Some(r) = &self.resolver else {
            return Vec::new();
        };
        let Ok(answer) = r.srv_lookup(fqdn(name)).await else {
            return Vec::new();
        };
        answer
            .iter()
            .map(|s| Srv {
                priority: s.priority(),
                weight: s.weight(),
                port: s.port(),
                target: trim_dot(&s.target().to_string()),
            })
            .collect()
    }

    /// The addresses of `host`, or why there are none.
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        match &self.resolver {
            Some(r) => match r.lookup_ip(fqdn(host)).await {
                Ok(ips) => Ok(ips.iter().collect()),
                Err(e) => {
                    let kind = if e.is_no_records_found() || e.is_nx_domain() {
                        DnsErrorKind::NotFound
                    } else {
                        DnsErrorKind::Failed
                    };
                    Err(DnsError::new(kind, host).with_source(e))
                }
            },
            // the operating system's resolver (getaddrinfo) does not say which it was
            None => match tokio::net::lookup_host((host, 0)).await {
                Ok(a) => Ok(a.map(|s| s.ip()).collect()),
                Err(e) => Err(DnsError::new(DnsErrorKind::NotFound, host).with_source(e)),
            },
        }
    }
}

/// A name as absolute, so no search domain is appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn trim_dot(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_owned()
}
