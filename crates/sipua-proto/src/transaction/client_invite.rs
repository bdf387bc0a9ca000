//! The INVITE client transaction (RFC 3261 §17.1.1, figure 5, as updated by RFC 6026 §8.4).

use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::{Request, Response};

use super::{earliest, Delivery, Output, Reliability, State, Timer, TimerConfig};

/// RFC 3261 §17.1.1.2: Timer D waits at least 32 s over unreliable transports.
const TIMER_D: Duration = Duration::from_secs(32);

/// Sends an INVITE, acknowledges non-2xx final responses itself and hands every response to
/// the transaction user.
///
/// Timer A retransmits over UDP (T1, doubling, no cap), Timer B (64·T1) gives up while no
/// response arrived, Timer D absorbs retransmitted non-2xx responses (re-sending the ACK), and
/// Timer M (64·T1, RFC 6026) keeps the transaction in Accepted so that retransmitted or forked
/// 2xx responses still reach the TU, which acknowledges them end to end.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: State,
    invite: Request,
    reliability: Reliability,
    cfg: TimerConfig,
    a: Timer,
    a_interval: Duration,
    b: Timer,
    d: Timer,
    m: Timer,
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Starts the transaction: sends `invite` and arms Timers A and B.
    pub fn new(
        now: Instant,
        invite: Request,
        reliability: Reliability,
        cfg: TimerConfig,
        out: &mut Vec<Output>,
    ) -> Self {
        out.push(Output::Transmit(invite.to_bytes()));
        let mut t = ClientInvite {
            state: State::Calling,
            invite,
            reliability,
            cfg,
            a: Timer::default(),
            a_interval: cfg.t1,
            b: Timer::default(),
            d: Timer::default(),
            m: Timer::default(),
            ack: None,
        };
        if reliability == Reliability::Unreliable {
            t.a.arm(now + cfg.t1);
        }
        t.b.arm(now + cfg.t1x64());
        t
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The INVITE this transaction sends.
    pub fn request(&self) -> &Request {
        &self.invite
    }

    /// A response matched this transaction.
    pub fn on_response(
        &mut self,
        now: Instant,
        resp: &Response,
        out: &mut Vec<Output>,
    ) -> Delivery {
        let status = resp.status();
        match self.state {
            State::Calling | State::Proceeding => {
                self.a.stop();
                self.b.stop();
                if status < 200 {
                    self.state = State::Proceeding;
                } else if status < 300 {
                    self.state = State::Accepted;
                    self.m.arm(now + self.cfg.t1x64());
                } else {
                    // §17.1.1.3: the transaction acknowledges non-2xx finals itself
                    self.ack = self.invite.ack_for(resp).ok().map(|a| a.to_bytes());
                    if let Some(ack) = &self.ack {
                        out.push(Output::Transmit(ack.clone()));
                    }
                    match self.reliability {
                        Reliability::Unreliable => {
                            self.state = State::Completed;
                            self.d.arm(now + TIMER_D);
                        }
                        Reliability::Reliable => self.state = State::Terminated,
                    }
                }
                Delivery::Pass
            }
            // RFC 6026: every 2xx goes up, so the TU can ACK each (forked) dialog
            State::Accepted if (200..300).contains(&status) => Delivery::Pass,
            State::Completed if status >= 300 => {
                if let Some(ack) = &self.ack {
                    out.push(Output::Transmit(ack.clone()));
                }
                Delivery::Absorb
            }
            _ => Delivery::Absorb,
        }
    }

    /// Fires the timers that are due.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.b.fire(now) {
            self.a.stop();
            self.state = State::Terminated;
            out.push(Output::Timeout);
            return;
        }
        if self.a.fire(now) {
            out.push(Output::Transmit(self.invite.to_bytes()));
            self.a_interval *= 2;
            self.a.arm(now + self.a_interval);
        }
        if self.d.fire(now) || self.m.fire(now) {
            self.state = State::Terminated;
        }
    }

    /// The transport could not send the INVITE or the ACK (RFC 3261 §17.1.4).
    pub fn on_transport_error(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            out.push(Output::TransportError);
        }
        self.state = State::Terminated;
        for t in [&mut self.a, &mut self.b, &mut self.d, &mut self.m] {
            t.stop();
        }
    }

    /// When `on_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.a, self.b, self.d, self.m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::test_util::{invite, response};
    use sipua_message::{Message, Method};

    fn start(rel: Reliability) -> (Instant, ClientInvite, Vec<Output>) {
        let now = Instant::now();
        let mut out = Vec::new();
        let t = ClientInvite::new(now, invite(), rel, TimerConfig::default(), &mut out);
        (now, t, out)
    }

    fn sent_requests(out: &[Output]) -> Vec<Method> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit(b) => match Message::parse(b).unwrap() {
                    Message::Request(r) => Some(r.method().clone()),
                    Message::Response(_) => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn timer_a_doubles_without_cap_until_timer_b() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let mut at = Vec::new();
        while let Some(d) = t.next_deadline() {
            let n = out.len();
            t.on_timeout(d, &mut out);
            if matches!(out[n..].first(), Some(Output::Transmit(_))) {
                at.push((d - now).as_millis());
            }
        }
        assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(out.last(), Some(&Output::Timeout));
        assert_eq!(sent_requests(&out).len(), 7);
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let inv = t.request().clone();
        assert_eq!(
            t.on_response(now, &response(&inv, 180), &mut out),
            Delivery::Pass
        );
        assert_eq!(t.state(), State::Proceeding);
        assert_eq!(t.next_deadline(), None, "the TU decides how long to ring");
    }

    #[test]
    fn non_2xx_is_acked_by_the_transaction_and_retransmissions_reack() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let inv = t.request().clone();
        let busy = response(&inv, 486);
        assert_eq!(t.on_response(now, &busy, &mut out), Delivery::Pass);
        assert_eq!(t.state(), State::Completed);
        assert_eq!(sent_requests(&out), vec![Method::Invite, Method::Ack]);
        assert_eq!(t.on_response(now, &busy, &mut out), Delivery::Absorb);
        assert_eq!(
            sent_requests(&out),
            vec![Method::Invite, Method::Ack, Method::Ack]
        );
        let Some(Output::Transmit(ack)) = out.last() else {
            panic!()
        };
        let Message::Request(ack) = Message::parse(ack).unwrap() else {
            panic!()
        };
        assert_eq!(ack.to_tag(), Some("314159"));
        assert_eq!(ack.via_key().branch, inv.via_key().branch);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(32)));
        t.on_timeout(now + Duration::from_secs(32), &mut out);
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn every_2xx_reaches_the_tu_until_timer_m() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let inv = t.request().clone();
        let ok = response(&inv, 200);
        assert_eq!(
            t.on_response(now, &response(&inv, 100), &mut out),
            Delivery::Pass
        );
        assert_eq!(t.on_response(now, &ok, &mut out), Delivery::Pass);
        assert_eq!(t.state(), State::Accepted);
        assert_eq!(
            t.on_response(now, &ok, &mut out),
            Delivery::Pass,
            "retransmitted or forked 2xx"
        );
        assert_eq!(
            t.on_response(now, &response(&inv, 180), &mut out),
            Delivery::Absorb
        );
        assert_eq!(
            sent_requests(&out),
            vec![Method::Invite],
            "the TU sends the ACK for a 2xx"
        );
        t.on_timeout(now + Duration::from_secs(32), &mut out);
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn reliable_transport_terminates_after_a_non_2xx() {
        let (now, mut t, mut out) = start(Reliability::Reliable);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(32)));
        let inv = t.request().clone();
        t.on_response(now, &response(&inv, 603), &mut out);
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(sent_requests(&out), vec![Method::Invite, Method::Ack]);
    }
}
