//! RFC 7339 overload control. The server's side ([`OcServer`]): what an overloaded agent
//! tells the clients that ask for it (their top Via carries `oc`, §4.1) in the Via of its
//! responses: how much of their traffic to cut (`oc`, a percentage for the "loss" algorithm,
//! §7.1), for how long (`oc-validity`, §4.3) and in which order the figures were made
//! (`oc-seq`, §4.4).
//!
//! The figure comes from the endpoint's own admission decisions
//! ([`crate::endpoint::Admission`]):
//! each second, the share of new INVITEs it refused raises the cut on top of what the
//! clients already cut (they refused that share of what still came), and a second without a
//! refusal lowers it by a quarter. While the cut is above zero, the answer carries it with a
//! validity of [`VALIDITY`]; once it is back to zero, `oc=0;oc-validity=0` ends the control
//! (§5.7). Clients that do not ask still get the plain 503s of the admission rules (§5.10.2).
//!
//! The figure is one for all clients and assumes that those that ask do cut: a client that
//! asks and goes on sending everything keeps the refused share up, so the cut climbs toward
//! 100 for every client that asks. The admission rules go on refusing what is too much
//! either way, so the server stays safe; a figure per client is not built.
//!
//! The client's side ([`OcClient`], §5.4–§5.5): the figures each next hop sent in the Via of
//! its responses, kept by address; the UA core holds a new INVITE back with the chance the
//! hop asked for (the loss algorithm with no priority classes, §7.2). Requests inside a
//! dialog are never held back: they finish calls the server already took.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a client applies a cut it was told (the `oc-validity` sent with a cut above 0):
/// a second, the period at which the cut is recomputed.
pub const VALIDITY: Duration = Duration::from_secs(1);

/// The period over which refusals are counted.
const WINDOW: Duration = Duration::from_secs(1);

/// The server's overload figure and the `oc-seq` it stamps on it.
#[derive(Debug, Default)]
pub(crate) struct OcServer {
    /// The start of the current counting window.
    window: Option<Instant>,
    /// The zero of `oc-seq`'s clock: the first decision or answer.
    epoch: Option<Instant>,
    /// New INVITEs taken and refused in the current window.
    taken: u32,
    refused: u32,
    /// The cut advertised now, percent.
    cut: u8,
    /// When `cut` last changed, as milliseconds since `epoch`: the `oc-seq` of its figures.
    seq_ms: u64,
}

/// The Via parameters of one answer: the values of `oc`, `oc-validity` and `oc-seq`
/// (`oc-algo` is always `"loss"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OcParams {
    pub oc: String,
    pub validity: String,
    pub seq: String,
}

impl OcServer {
    /// Counts one new INVITE, taken or refused.
    pub(crate) fn record(&mut self, now: Instant, refused: bool) {
        self.roll(now);
        if refused {
            self.refused = self.refused.saturating_add(1);
        } else {
            self.taken = self.taken.saturating_add(1);
        }
    }

    /// The cut advertised now, percent.
    pub(crate) fn cut(&mut self, now: Instant) -> u8 {
        self.roll(now);
        self.cut
    }

    /// The parameters to write into the Via of an answer sent now.
    pub(crate) fn params(&mut self, now: Instant) -> OcParams {
        self.roll(now);
        // only for the clients that ask: not on every call's path, so plain `format!`
        let validity = if self.cut == 0 {
            0
        } else {
            VALIDITY.as_millis()
        };
        OcParams {
            oc: self.cut.to_string(),
            validity: validity.to_string(),
            seq: format!("{}.{:03}", self.seq_ms / 1000, self.seq_ms % 1000),
        }
    }

    /// Closes the windows that ended by `now`, moving the cut.
    fn roll(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let start = *self.window.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return;
        }
        let before = self.cut;
        let total = self.taken.saturating_add(self.refused);
        if self.refused > 0 && total > 0 {
            // the clients already cut `cut` %; of what still came, `refused / total` was too
            // much: keep = (1 - cut) (1 - share)
            let keep = (100 - u64::from(self.cut)) * u64::from(self.taken) / u64::from(total);
            self.cut = (100 - keep).min(100) as u8;
        } else {
            self.cut -= self.cut.div_ceil(4);
        }
        // whole windows without a decision lower it further
        let idle = (elapsed.as_millis() / WINDOW.as_millis()).saturating_sub(1);
        for _ in 0..idle.min(16) {
            self.cut -= self.cut.div_ceil(4);
        }
        self.taken = 0;
        self.refused = 0;
        let windows = elapsed.as_millis() / WINDOW.as_millis();
        self.window = Some(start + WINDOW * windows.min(u128::from(u32::MAX)) as u32);
        if self.cut != before {
            let ms = now.saturating_duration_since(epoch).as_millis() as u64;
            // strictly later than the figures it replaces (§4.4)
            self.seq_ms = ms.max(self.seq_ms + 1);
        }
    }
}

/// What the servers we send to told us in the Via of their responses (§5.4): per address,
/// the cut, until when it holds, and the `oc-seq` it came with. At most [`MAX_SERVERS`].
#[derive(Debug, Default)]
pub(crate) struct OcClient {
    servers: std::collections::HashMap<SocketAddr, Told>,
}

/// How many servers' figures are kept (the expired go first, then the one that ends first).
pub(crate) const MAX_SERVERS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Told {
    cut: u8,
    until: Instant,
    seq: (u64, u32),
}

impl OcClient {
    /// Takes the figures of a response from `server`: the values of its top Via's `oc`,
    /// `oc-validity` and `oc-seq` parameters. A bare `oc` (the server left it as we wrote
    /// it: it does not take part), an `oc-seq` not above the last one (a late or repeated
    /// figure) and a malformed value change nothing; `oc-validity=0` ends the control
    /// (§5.7); no `oc-validity` holds for 500 ms (§4.3).
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        server: SocketAddr,
        oc: Option<Option<&str>>,
        validity: Option<Option<&str>>,
        seq: Option<Option<&str>>,
    ) {
        let Some(Some(oc)) = oc else {
            return;
        };
        let Ok(cut) = oc.parse::<u64>() else {
            return;
        };
        let validity = match validity {
            None | Some(None) => 500,
            Some(Some(v)) => match v.parse::<u64>() {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        let seq = match seq.flatten().map(parse_seq) {
            Some(Some(s)) => s,
            Some(None) => return,
            None => (0, 0),
        };
        if let Some(told) = self.servers.get(&server) {
            if told.until > now && seq <= told.seq {
                return;
            }
        }
        if validity == 0 {
            self.servers.remove(&server);
            return;
        }
        if !self.servers.contains_key(&server) && self.servers.len() >= MAX_SERVERS {
            self.servers.retain(|_, t| t.until > now);
            if self.servers.len() >= MAX_SERVERS {
                let first = self
                    .servers
                    .iter()
                    .min_by_key(|(_, t)| t.until)
                    .map(|(a, _)| *a);
                if let Some(a) = first {
                    self.servers.remove(&a);
                }
            }
        }
        let told = Told {
            cut: cut.min(100) as u8,
            until: now + Duration::from_millis(validity.min(3_600_000)),
            seq,
        };
        self.servers.insert(server, told);
    }

    /// The cut `server` asks for now, percent (0 when it asks for none or its figure ran out).
    pub(crate) fn cut(&self, now: Instant, server: SocketAddr) -> u8 {
        self.servers
            .get(&server)
            .filter(|t| t.until > now)
            .map_or(0, |t| t.cut)
    }
}

/// An `oc-seq` (`1*12DIGIT "." 1*5DIGIT`, or digits alone): its whole and fraction parts,
/// the fraction counted in hundred-thousandths so that `.5` and `.50000` are equal.
fn parse_seq(s: &str) -> Option<(u64, u32)> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 12 || frac.len() > 5 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut f: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..5 {
        f *= 10;
    }
    Some((whole.parse().ok()?, f))
}

/// Whether a Via's parameters ask for overload control: an `oc` parameter, and `loss` among
/// the algorithms of `oc-algo` when it is there (every client must offer it, §4.2).
pub(crate) fn asks(oc: Option<Option<&str>>, algo: Option<Option<&str>>) -> bool {
    if oc.is_none() {
        return false;
    }
    match algo {
        None | Some(None) => true,
        Some(Some(list)) => list
            .trim_matches('"')
            .split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("loss")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn no_refusal_means_no_cut_and_the_control_is_ended() {
        let t0 = Instant::now();
        let mut oc = OcServer::default();
        for i in 0..50 {
            oc.record(at(t0, i * 40), false);
        }
        let p = oc.params(at(t0, 2500));
        assert_eq!(
            p,
            OcParams {
                oc: "0".into(),
                validity: "0".into(),
                seq: "0.000".into()
            }
        );
    }

    #[test]
    fn the_refused_share_becomes_the_cut_and_compounds_on_what_clients_cut() {
        let t0 = Instant::now();
        let mut oc = OcServer::default();
        // first second: 30 of 100 refused
        for i in 0..100 {
            oc.record(at(t0, i * 9), i % 10 < 3);
        }
        assert_eq!(oc.cut(at(t0, 999)), 0, "nothing before the window ends");
        let p = oc.params(at(t0, 1_000));
        assert_eq!((p.oc.as_str(), p.validity.as_str()), ("30", "1000"));
        assert_eq!(p.seq, "1.000");
        // the clients cut 30 %; of what still came, half was refused: keep 70 % × 50 %
        for i in 0..70 {
            oc.record(at(t0, 1_000 + i * 10), i % 2 == 0);
        }
        let p = oc.params(at(t0, 2_004));
        assert_eq!(p.oc, "65");
        assert_eq!(p.seq, "2.004", "later figures, a larger oc-seq");
        // a whole second refused: cut everything
        oc.record(at(t0, 2_100), true);
        assert_eq!(oc.cut(at(t0, 3_050)), 100);
    }

    #[test]
    fn the_cut_falls_by_a_quarter_a_second_and_reaches_zero() {
        let t0 = Instant::now();
        let mut oc = OcServer::default();
        oc.record(t0, true);
        assert_eq!(oc.cut(at(t0, 1_000)), 100);
        let mut last = 100;
        let mut seq = oc.params(at(t0, 1_000)).seq;
        for s in 2..30 {
            oc.record(at(t0, s * 1_000), false);
            let cut = oc.cut(at(t0, s * 1_000 + 1));
            assert!(cut < last || cut == 0, "{cut} after {last}");
            let p = oc.params(at(t0, s * 1_000 + 1));
            if cut != last {
                assert!(
                    p.seq > seq || p.seq.len() > seq.len(),
                    "{} after {seq}",
                    p.seq
                );
            }
            seq = p.seq;
            last = cut;
        }
        assert_eq!(last, 0);
        assert_eq!(oc.params(at(t0, 40_000)).validity, "0");
        // with no traffic at all, it falls as well
        oc.record(at(t0, 41_000), true);
        assert_eq!(oc.cut(at(t0, 42_000)), 100);
        assert_eq!(oc.cut(at(t0, 62_000)), 0);
    }

    #[test]
    fn a_client_holds_a_cut_for_its_validity_and_takes_only_later_figures() {
        let t0 = Instant::now();
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5060".parse().unwrap();
        let mut told = OcClient::default();
        let hear = |told: &mut OcClient, ms: u64, oc: &str, validity: &str, seq: &str| {
            told.heard(
                at(t0, ms),
                a,
                Some(Some(oc)),
                Some(Some(validity)),
                Some(Some(seq)),
            );
        };
        hear(&mut told, 0, "20", "500", "1282321615.782");
        assert_eq!(told.cut(at(t0, 499), a), 20);
        assert_eq!(told.cut(at(t0, 499), b), 0, "per server");
        assert_eq!(told.cut(at(t0, 500), a), 0, "ran out");
        hear(&mut told, 600, "30", "1000", "1282321616.1");
        // the same oc-seq again, or an earlier one: no change, no new validity
        hear(&mut told, 700, "90", "1000", "1282321616.10000");
        hear(&mut told, 700, "90", "1000", "1282321615.999");
        assert_eq!(told.cut(at(t0, 800), a), 30);
        assert_eq!(told.cut(at(t0, 1_600), a), 0);
        // a later one with validity 0 ends it at once, whatever its oc (§5.7)
        hear(&mut told, 1_700, "40", "1000", "1282321617");
        hear(&mut told, 1_800, "50", "0", "1282321617.5");
        assert_eq!(told.cut(at(t0, 1_900), a), 0);
        // a bare oc (the server does not take part), garbage and a cut past 100
        told.heard(at(t0, 2_000), a, Some(None), None, None);
        hear(&mut told, 2_000, "x", "1000", "1");
        hear(&mut told, 2_000, "10", "1000", "1.234567");
        assert_eq!(told.cut(at(t0, 2_001), a), 0);
        told.heard(at(t0, 2_000), a, Some(Some("250")), None, None);
        assert_eq!(
            told.cut(at(t0, 2_499), a),
            100,
            "500 ms without oc-validity"
        );
        assert_eq!(told.cut(at(t0, 2_500), a), 0);
    }

    #[test]
    fn a_client_keeps_the_figures_of_a_bounded_number_of_servers() {
        let t0 = Instant::now();
        let mut told = OcClient::default();
        for i in 0..(MAX_SERVERS as u16 + 10) {
            let server = SocketAddr::from(([192, 0, 2, 1], 1000 + i));
            let validity = (1_000 + u64::from(i)).to_string();
            told.heard(t0, server, Some(Some("50")), Some(Some(&validity)), None);
        }
        assert_eq!(told.servers.len(), MAX_SERVERS);
        // the ones that ended first made room
        assert_eq!(told.cut(t0, SocketAddr::from(([192, 0, 2, 1], 1000))), 0);
        let last = SocketAddr::from(([192, 0, 2, 1], 1000 + MAX_SERVERS as u16 + 9));
        assert_eq!(told.cut(t0, last), 50);
    }

    #[test]
    fn only_a_via_with_oc_and_loss_among_its_algorithms_asks() {
        assert!(asks(Some(None), None));
        assert!(asks(Some(None), Some(Some("\"loss\""))));
        assert!(asks(Some(None), Some(Some("\"A,LOSS\""))));
        assert!(!asks(Some(None), Some(Some("\"rate\""))));
        assert!(!asks(None, Some(Some("\"loss\""))));
    }
}
