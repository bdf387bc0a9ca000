//! The server side of digest authentication (RFC 3261 §22.4, RFC 7616 §3.3, §3.4, §5, RFC
//! 8760): challenges with nonces that carry their age and a keyed hash (no table of issued
//! nonces), credentials checked against them, nonces that expire (`stale=true`, RFC 7616
//! §3.3), each nonce count accepted once (replays refused, RFC 7616 §5.5), and failed
//! attempts limited per source address so that a password cannot be guessed at line rate.
//!
//! Sans-IO like the rest of the core: the time and the source address come with each call;
//! the secret comes from the caller's seed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sipua_message::header::Auth;

use super::digest::{verify, Algorithm, RequestParts};

/// How a [`DigestServer`] behaves; `Default` gives the values a public server needs. Its
/// `Debug` names the users but not their passwords.
#[derive(Clone)]
pub struct DigestServerConfig {
    /// The protection space named in challenges.
    pub realm: String,
    /// Users and their passwords.
    pub users: HashMap<String, String>,
    /// The algorithms challenged with, one WWW-Authenticate each, the preferred first
    /// (default SHA-256 then MD5, as RFC 8760 §2.4 asks). A client that takes the first
    /// challenge whatever its algorithm and knows only MD5 (SIPp, older phones) needs MD5
    /// first, or alone.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce is good for; an older one gets a new challenge with `stale=true`
    /// (the client answers it at once, without asking its user again).
    pub nonce_lifetime: Duration,
    /// Failed attempts (wrong password, unknown user, replay) from one IP address within
    /// `failure_window` before requests from it are refused outright (403) for the rest of
    /// the window.
    pub max_failures: u32,
    /// See `max_failures`.
    pub failure_window: Duration,
    /// Most nonces whose counts are remembered, and most addresses whose failures are
    /// counted: both tables are bounded (the oldest entries go first).
    pub max_tracked: usize,
    /// For several cores that serve one address (one agent per core on a shared socket):
    /// one server for all of them, so that a nonce issued by one is good at another and an
    /// address's failures are counted once whichever core its requests reach. `None`: this
    /// core's own.
    pub shared: Option<SharedDigestServer>,
}

/// One [`DigestServer`] for several cores: give each core's [`DigestServerConfig`] a clone.
/// The first core to need it makes it, with its secret and clock; the others use it (behind a
/// lock, taken once per request that is checked).
#[derive(Clone, Default)]
pub struct SharedDigestServer(Arc<Mutex<Option<DigestServer>>>);

impl std::fmt::Debug for SharedDigestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedDigestServer")
    }
}

impl SharedDigestServer {
    /// Runs `f` on the shared server, made from `cfg` (its `shared` dropped: the server does
    /// not hold itself) with `secret()` at `now` if no core has made it yet.
    pub fn with<R>(
        &self,
        cfg: &DigestServerConfig,
        secret: impl FnOnce() -> [u8; 32],
        now: Instant,
        f: impl FnOnce(&mut DigestServer) -> R,
    ) -> R {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let server = g.get_or_insert_with(|| {
            let cfg = DigestServerConfig {
                shared: None,
                ..cfg.clone()
            };
            DigestServer::new(cfg, secret(), now)
        });
        f(server)
    }
}

impl std::fmt::Debug for DigestServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestServerConfig")
            .field("realm", &self.realm)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("algorithms", &self.algorithms)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("max_failures", &self.max_failures)
            .field("failure_window", &self.failure_window)
            .field("max_tracked", &self.max_tracked)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Default for DigestServerConfig {
    fn default() -> Self {
        DigestServerConfig {
            realm: "sipua".into(),
            users: HashMap::new(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            max_failures: 10,
            failure_window: Duration::from_secs(60),
            max_tracked: 65_536,
            shared: None,
        }
    }
}

/// What to do with a request, by its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right: the request comes from this user.
    Authenticated(String),
    /// Answer 401 with these WWW-Authenticate values (one per configured algorithm, the
    /// preferred first, RFC 8760 §2.4), `stale=true` when only the nonce was out of date or
    /// already used.
    Challenge {
        /// The header values, one per algorithm.
        challenges: Vec<String>,
    },
    /// Answer 403: too many failures from this address lately.
    Forbidden,
}

/// Issues challenges and checks credentials (see the module documentation). Its `Debug`
/// shows neither the secret nor the passwords.
pub struct DigestServer {
    cfg: DigestServerConfig,
    key: [u8; 32],
    epoch: Instant,
    counter: u64,
    /// The highest nonce count seen per nonce (by its random part), with the nonces in the
    /// order they were first used, for dropping the oldest.
    counts: HashMap<u64, u32>,
    order: VecDeque<(u64, Instant)>,
    /// Failed attempts per address: (count, start of the window).
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl std::fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestServer")
            .field("cfg", &self.cfg)
            .field("nonces", &self.counts.len())
            .field("failing", &self.failures.len())
            .finish_non_exhaustive()
    }
}

/// A nonce: 16 hex digits of its issue time (seconds since the server's epoch), 16 of a
/// unique number, 32 of a keyed hash of both.
const NONCE_LEN: usize = 64;

impl DigestServer {
    /// A server whose nonces are keyed by `secret` (random in production), starting at `now`.
    pub fn new(cfg: DigestServerConfig, secret: [u8; 32], now: Instant) -> DigestServer {
        DigestServer {
            cfg,
            key: secret,
            epoch: now,
            counter: 0,
            counts: HashMap::new(),
            order: VecDeque::new(),
            failures: HashMap::new(),
        }
    }

    /// The realm challenges name.
    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    fn mac(&self, issued: u64, unique: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(issued.to_be_bytes());
        h.update(unique.to_be_bytes());
        h.update(self.cfg.realm.as_bytes());
        h.update(self.key);
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn nonce(&mut self, now: Instant) -> String {
        let issued = now.saturating_duration_since(self.epoch).as_secs();
        self.counter += 1;
        // unique per nonce, unpredictable without the key
        let unique = u64::from_be_bytes(
            Sha256::digest([&self.key[..], &self.counter.to_be_bytes()].concat())[..8]
                .try_into()
                .unwrap_or_default(),
        );
        format!("{issued:016x}{unique:016x}{}", self.mac(issued, unique))
    }

    /// A fresh challenge, as the values of WWW-Authenticate (or Proxy-Authenticate).
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        self.cfg
            .algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.cfg.realm,
                    a.as_str()
                )
            })
            .collect()
    }

    /// The nonce's issue time and unique part, if it is one of ours (its hash checks).
    fn parse_nonce(&self, nonce: &str) -> Option<(u64, u64)> {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let unique = u64::from_str_radix(&nonce[16..32], 16).ok()?;
        let mac = self.mac(issued, unique);
        // constant time
        let same = mac
            .bytes()
            .zip(nonce[32..].bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (same == 0).then_some((issued, unique))
    }

    /// Judges a request from `source` by its `credentials` (its Authorization values;
    /// empty when it has none) for `request`.
    pub fn check(
        &mut self,
        now: Instant,
        source: IpAddr,
        credentials: &[Auth],
        request: &RequestParts<'_>,
    ) -> Verdict {
        if self.blocked(now, source) {
            return Verdict::Forbidden;
        }
        // the credentials for our realm, if any
        let Some(c) = credentials
            .iter()
            .find(|a| a.is_digest() && a.param("realm") == Some(self.cfg.realm.as_str()))
        else {
            return Verdict::Challenge {
                challenges: self.challenge(now, false),
            };
        };
        let Some((issued, unique)) = c.param("nonce").and_then(|n| self.parse_nonce(n)) else {
            // not a nonce of ours (forged, or from before a restart): a new challenge
            return self.failed(now, source, false);
        };
        let age = now
            .saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_secs(issued));
        let user = c.param("username").unwrap_or_default();
        let Some(password) = self.cfg.users.get(user) else {
            return self.failed(now, source, false);
        };
        if !verify(c, request, password) {
            return self.failed(now, source, false);
        }
        if age > self.cfg.nonce_lifetime {
            // right credentials on an old nonce: the client retries at once
            return Verdict::Challenge {
                challenges: self.challenge(now, true),
            };
        }
        // each nonce count once, in increasing order; a nonce first seen must start at 1
        // (a count above 1 for a nonce we do not remember may be a replay of one we forgot)
        let nc = c
            .param("nc")
            .and_then(|n| u32::from_str_radix(n, 16).ok())
            .unwrap_or(1);
        let fresh = match self.counts.get_mut(&unique) {
            Some(last) if nc > *last => {
                *last = nc;
                true
            }
            Some(_) => false,
            None if nc == 1 => {
                self.remember(now, unique);
                true
            }
            None => false,
        };
        if !fresh {
            return self.failed(now, source, true);
        }
        Verdict::Authenticated(user.to_owned())
    }

    fn remember(&mut self, now: Instant, unique: u64) {
        // forget nonces past their lifetime, and the oldest when the table is full
        while let Some(&(u, first)) = self.order.front() {
            let expired = now.saturating_duration_since(first) > self.cfg.nonce_lifetime;
            if !expired && self.order.len() < self.cfg.max_tracked {
                break;
            }
            self.order.pop_front();
            self.counts.remove(&u);
        }
        self.counts.insert(unique, 1);
        self.order.push_back((unique, now));
    }

    /// Whether `source` is over its failures for the current window.
    fn blocked(&mut self, now: Instant, source: IpAddr) -> bool {
        match self.failures.get(&source) {
            Some(&(n, since)) if now.saturating_duration_since(since) < self.cfg.failure_window => {
                n >= self.cfg.max_failures
            }
            Some(_) => {
                self.failures.remove(&source);
                false
            }
            None => false,
        }
    }

    /// Counts a failure from `source` and answers it: a new challenge (stale for a replayed
    /// nonce count), or 403 once the address has failed too often.
    fn failed(&mut self, now: Instant, source: IpAddr, stale: bool) -> Verdict {
        if self.failures.len() >= self.cfg.max_tracked && !self.failures.contains_key(&source) {
            let window = self.cfg.failure_window;
            self.failures
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < window);
            if self.failures.len() >= self.cfg.max_tracked {
                // still full: the addresses with the fewest failures make room
                let min = self.failures.values().map(|v| v.0).min().unwrap_or(0);
                self.failures.retain(|_, (n, _)| *n > min);
            }
        }
        let entry = self.failures.entry(source).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= self.cfg.failure_window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 > self.cfg.max_failures {
            return Verdict::Forbidden;
        }
        Verdict::Challenge {
            challenges: self.challenge(now, stale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::Challenge;
    use sipua_message::header::{TypedHeader, WwwAuthenticate};

    const REQ: RequestParts<'static> = RequestParts {
        method: "INVITE",
        uri: "sip:bob@example.com",
        body: b"",
    };

    fn server(now: Instant) -> DigestServer {
        let cfg = DigestServerConfig {
            realm: "example.com".into(),
            users: [("alice".to_owned(), "secret".to_owned())].into(),
            ..Default::default()
        };
        DigestServer::new(cfg, [7; 32], now)
    }

    fn challenges(v: Verdict) -> Vec<Challenge> {
        let Verdict::Challenge { challenges } = v else {
            panic!("{v:?}")
        };
        challenges
            .iter()
            .map(|c| {
                Challenge::from_auth(&WwwAuthenticate::parse(c.as_bytes()).unwrap().0).unwrap()
            })
            .collect()
    }

    /// The Authorization a client writes for `c` with nonce count `nc`.
    fn answer(c: &Challenge, password: &str, nc: u32) -> Auth {
        c.answer(&REQ, "alice", password, "0a4f113b", nc)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn both_algorithms_are_offered_and_answered() {
        let t0 = Instant::now();
        let mut s = server(t0);
        let cs = challenges(s.check(t0, A, &[], &REQ));
        assert_eq!(cs[0].algorithm, Algorithm::Sha256);
        assert_eq!(cs[1].algorithm, Algorithm::Md5);
        assert_eq!(cs[0].nonce, cs[1].nonce, "one nonce, two algorithms");
        for i in 0..2 {
            let c = &challenges(s.check(t0, A, &[], &REQ))[i];
            assert!(!c.stale);
            let v = s.check(t0, A, &[answer(c, "secret", 1)], &REQ);
            assert_eq!(v, Verdict::Authenticated("alice".into()));
        }
    }

    #[test]
    fn each_nonce_count_is_accepted_once_and_in_order() {
        let t0 = Instant::now();
        let mut s = server(t0);
        let c = &challenges(s.check(t0, A, &[], &REQ))[0];
        let one = answer(c, "secret", 1);
        assert!(matches!(
            s.check(t0, A, std::slice::from_ref(&one), &REQ),
            Verdict::Authenticated(_)
        ));
        // the same request again (a replay): a new challenge, stale so a client retries
        let again = challenges(s.check(t0, A, &[one], &REQ));
        assert!(again[0].stale);
        // the next count is fine, an older one is not
        let three = answer(c, "secret", 3);
        assert!(matches!(
            s.check(t0, A, &[three], &REQ),
            Verdict::Authenticated(_)
        ));
        let two = answer(c, "secret", 2);
        assert!(matches!(
            s.check(t0, A, &[two], &REQ),
            Verdict::Challenge { .. }
        ));
        // a nonce never used before must start at 1 (a forgotten one cannot be replayed)
        let fresh = &challenges(s.check(t0, A, &[], &REQ))[0];
        let five = answer(fresh, "secret", 5);
        assert!(matches!(
            s.check(t0, A, &[five], &REQ),
            Verdict::Challenge { .. }
        ));
    }

    #[test]
    fn an_old_nonce_is_stale_and_a_forged_one_is_refused() {
        let t0 = Instant::now();
        let mut s = server(t0);
        let c = &challenges(s.check(t0, A, &[], &REQ))[0];
        let late = t0 + Duration::from_secs(301);
        let again = challenges(s.check(late, A, &[answer(c, "secret", 1)], &REQ));
        assert!(again[0].stale, "right password, old nonce: stale");
        // a nonce whose hash does not check (edited issue time) is not ours
        let mut forged = c.clone();
        forged.nonce = format!("{:016x}{}", 999_999u64, &c.nonce[16..]);
        let v = challenges(s.check(t0, A, &[answer(&forged, "secret", 1)], &REQ));
        assert!(!v[0].stale);
        // another server (another secret) does not take our nonces
        let mut other = DigestServer::new(s.cfg.clone(), [8; 32], t0);
        let v = other.check(t0, A, &[answer(c, "secret", 1)], &REQ);
        assert!(matches!(v, Verdict::Challenge { .. }));
    }

    #[test]
    fn failures_from_one_address_are_limited_and_others_are_not() {
        let t0 = Instant::now();
        let mut s = server(t0);
        let c = &challenges(s.check(t0, A, &[], &REQ))[0];
        for i in 0..10 {
            let v = s.check(t0, A, &[answer(c, &format!("guess{i}"), 1)], &REQ);
            assert!(matches!(v, Verdict::Challenge { .. }), "attempt {i}");
        }
        // the 11th guess is not even checked, nor is a right password now
        let v = s.check(t0, A, &[answer(c, "guess10", 1)], &REQ);
        assert_eq!(v, Verdict::Forbidden);
        let v = s.check(t0, A, &[answer(c, "secret", 1)], &REQ);
        assert_eq!(v, Verdict::Forbidden);
        // another address is not affected
        let v = s.check(t0, B, &[answer(c, "secret", 1)], &REQ);
        assert!(matches!(v, Verdict::Authenticated(_)));
        // after the window, A may try again
        let later = t0 + Duration::from_secs(61);
        let c = &challenges(s.check(later, A, &[], &REQ))[0];
        let v = s.check(later, A, &[answer(c, "secret", 1)], &REQ);
        assert!(matches!(v, Verdict::Authenticated(_)));
    }

    #[test]
    fn cores_sharing_one_server_share_its_nonces_and_failure_counts() {
        let t0 = Instant::now();
        let cfg = DigestServerConfig {
            realm: "example.com".into(),
            users: [("alice".to_owned(), "secret".to_owned())].into(),
            ..Default::default()
        };
        let shared = SharedDigestServer::default();
        // two cores, each with its own secret: the first to ask makes the server
        let (one, two) = (shared.clone(), shared);
        let c = &challenges(one.with(&cfg, || [1; 32], t0, |s| s.check(t0, A, &[], &REQ)))[0];
        // the nonce core one issued is good at core two
        let v = two.with(
            &cfg,
            || [2; 32],
            t0,
            |s| s.check(t0, A, &[answer(c, "secret", 1)], &REQ),
        );
        assert_eq!(v, Verdict::Authenticated("alice".into()));
        // failures are counted once, whichever core sees them: five at each, then refused
        for i in 0..10 {
            let core = if i % 2 == 0 { &one } else { &two };
            let v = core.with(
                &cfg,
                || [3; 32],
                t0,
                |s| s.check(t0, A, &[answer(c, &format!("guess{i}"), 2 + i)], &REQ),
            );
            assert!(matches!(v, Verdict::Challenge { .. }), "attempt {i}");
        }
        let v = one.with(
            &cfg,
            || [4; 32],
            t0,
            |s| s.check(t0, A, &[answer(c, "guess10", 20)], &REQ),
        );
        assert_eq!(v, Verdict::Forbidden);
        // separate servers (no sharing) would each have allowed ten
        let mut own = server(t0);
        let c = &challenges(own.check(t0, A, &[], &REQ))[0];
        for i in 0..5 {
            let v = own.check(t0, A, &[answer(c, &format!("g{i}"), 1)], &REQ);
            assert!(matches!(v, Verdict::Challenge { .. }));
        }
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t0 = Instant::now();
        let mut s = DigestServer::new(
            DigestServerConfig {
                max_tracked: 16,
                users: [("alice".to_owned(), "secret".to_owned())].into(),
                realm: "example.com".into(),
                ..Default::default()
            },
            [1; 32],
            t0,
        );
        for i in 0..100u32 {
            let c = &challenges(s.check(t0, A, &[], &REQ))[0];
            assert!(matches!(
                s.check(t0, A, &[answer(c, "secret", 1)], &REQ),
                Verdict::Authenticated(_)
            ));
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = s.check(t0, ip, &[answer(c, "wrong", 2)], &REQ);
        }
        assert!(s.counts.len() <= 16 && s.order.len() <= 16);
        assert!(s.failures.len() <= 16, "{}", s.failures.len());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let s = server(Instant::now());
        let text = format!("{s:?}");
        assert!(text.contains("alice") && !text.contains("secret"), "{text}");
        let c = crate::ua::Credentials {
            username: "alice".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
