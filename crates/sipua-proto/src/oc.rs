//! RFC 7339 overload control, the server's side: what an overloaded agent tells the clients
//! that ask for it (their top Via carries `oc`, §4.1) in the Via of its responses: how much of
//! their traffic to cut (`oc`, a percentage for the "loss" algorithm, §7.1), for how long
//! (`oc-validity`, §4.3) and in which order the figures were made (`oc-seq`, §4.4).
//!
//! The figure comes from the endpoint's own admission decisions ([`crate::endpoint::Admission`]):
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

use std::time::{Duration, Instant};

use sipua_message::text::push_decimal;

/// How long a client applies a cut it was told (the `oc-validity` sent with a cut above 0):
/// a second, the period at which the cut is recomputed.
pub const VALIDITY: Duration = Duration::from_secs(1);

/// The period over which refusals are counted.
const WINDOW: Duration = Duration::from_secs(1);

/// The server's overload figure and the `oc-seq` it stamps on it.
#[derive(Debug, Default)]
pub(crate) struct OcServer {
    /// The start of the current counting window and of `oc-seq`'s clock (the first decision
    /// or answer).
    window: Option<Instant>,
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
    #[cfg(test)]
    pub(crate) fn cut(&mut self, now: Instant) -> u8 {
        self.roll(now);
        self.cut
    }

    /// The parameters to write into the Via of an answer sent now.
    pub(crate) fn params(&mut self, now: Instant) -> OcParams {
        self.roll(now);
        let mut seq = String::with_capacity(16);
        push_decimal(&mut seq, self.seq_ms / 1000);
        seq.push('.');
        let ms = self.seq_ms % 1000;
        if ms < 100 {
            seq.push('0');
        }
        if ms < 10 {
            seq.push('0');
        }
        push_decimal(&mut seq, ms);
        let mut oc = String::with_capacity(3);
        push_decimal(&mut oc, u64::from(self.cut));
        let validity = if self.cut == 0 {
            "0".to_owned()
        } else {
            let mut v = String::with_capacity(5);
            push_decimal(&mut v, VALIDITY.as_millis() as u64);
            v
        };
        OcParams { oc, validity, seq }
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
    fn only_a_via_with_oc_and_loss_among_its_algorithms_asks() {
        assert!(asks(Some(None), None));
        assert!(asks(Some(None), Some(Some("\"loss\""))));
        assert!(asks(Some(None), Some(Some("\"A,LOSS\""))));
        assert!(!asks(Some(None), Some(Some("\"rate\""))));
        assert!(!asks(None, Some(Some("\"loss\""))));
    }
}
