//! The INVITE server transaction (RFC 3261 §17.2.1, figure 7, as updated by RFC 6026 §8.5–8.7).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Delivery, Output, Reliability, State, Timer, TimerConfig};

/// Answers an INVITE.
///
/// In Proceeding it repeats the last provisional response to retransmitted INVITEs. After a
/// non-2xx final response it retransmits that response over UDP (Timer G: T1 doubling up to T2)
/// until the ACK arrives (then Confirmed, absorbing ACKs for Timer I = T4) or Timer H (64·T1)
/// gives up. After a 2xx it waits in Accepted (Timer L, 64·T1): retransmitting the 2xx is the
/// UA core's job (RFC 3261 §13.3.1.4), ACKs go up to it, retransmitted INVITEs are absorbed.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: State,
    last: Option<Bytes>,
    reliability: Reliability,
    cfg: TimerConfig,
    g: Timer,
    g_interval: Duration,
    h: Timer,
    i: Timer,
    l: Timer,
    /// A 100 Trying held back until this instant, dropped if the TU answers first.
    trying: Option<Instant>,
}

impl ServerInvite {
    /// The last response sent (what a retransmitted INVITE gets again).
    pub fn last_response(&self) -> Option<&Bytes> {
        self.last.as_ref()
    }

    /// A transaction for an INVITE that just arrived. `trying`, if given, is sent at once as
    /// the 100 Trying of RFC 3261 §17.2.1.
    pub fn new(
        reliability: Reliability,
        cfg: TimerConfig,
        trying: Option<Bytes>,
        out: &mut Vec<Output>,
    ) -> Self {
        if let Some(t) = &trying {
            out.push(Output::Transmit(t.clone()));
        }
        ServerInvite {
            state: State::Proceeding,
            last: trying,
            reliability,
            cfg,
            g: Timer::default(),
            g_interval: cfg.t1,
            h: Timer::default(),
            i: Timer::default(),
            l: Timer::default(),
            trying: None,
        }
    }

    /// Holds the 100 Trying back until `at`: [`Output::Trying`] asks for it then, only if no
    /// response has gone out, or at once if the INVITE is retransmitted before (RFC 3261
    /// §17.2.1).
    pub fn with_delayed_trying(mut self, at: Instant) -> Self {
        self.trying = Some(at);
        self
    }

    /// The 100 Trying built for [`Output::Trying`]: what a retransmitted INVITE gets again.
    pub fn set_trying(&mut self, bytes: Bytes) {
        if self.state == State::Proceeding && self.last.is_none() {
            self.last = Some(bytes);
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The INVITE arrived again.
    pub fn on_invite(&mut self, out: &mut Vec<Output>) -> Delivery {
        if self.trying.take().is_some() && self.last.is_none() {
            out.push(Output::Trying);
            return Delivery::Absorb;
        }
        if let (State::Proceeding | State::Completed, Some(last)) = (self.state, &self.last) {
            out.push(Output::Transmit(last.clone()));
        }
        Delivery::Absorb
    }

    /// An ACK matched this transaction: for a non-2xx it ends the retransmissions; for a 2xx
    /// (Accepted) it belongs to the TU.
    pub fn on_ack(&mut self, now: Instant) -> Delivery {
        match self.state {
            State::Completed => {
                self.g.stop();
                self.h.stop();
                match self.reliability {
                    Reliability::Unreliable => {
                        self.state = State::Confirmed;
                        self.i.arm(now + self.cfg.t4);
                    }
                    Reliability::Reliable => self.state = State::Terminated,
                }
                Delivery::Absorb
            }
            State::Accepted => Delivery::Pass,
            _ => Delivery::Absorb,
        }
    }

    /// The TU responds; returns false (and sends nothing) when the state does not allow it.
    /// In Accepted, further 2xx (retransmissions by the UA core) are sent.
    pub fn respond(
        &mut self,
        now: Instant,
        status: u16,
        bytes: Bytes,
        out: &mut Vec<Output>,
    ) -> bool {
        match self.state {
            State::Proceeding => {
                self.trying = None;
                out.push(Output::Transmit(bytes.clone()));
                if status < 200 {
                    self.last = Some(bytes);
                } else if status < 300 {
                    self.state = State::Accepted;
                    self.last = None;
                    self.l.arm(now + self.cfg.t1x64());
                } else {
                    self.state = State::Completed;
                    self.last = Some(bytes);
                    if self.reliability == Reliability::Unreliable {
                        self.g.arm(now + self.cfg.t1);
                    }
                    self.h.arm(now + self.cfg.t1x64());
                }
                true
            }
            State::Accepted if (200..300).contains(&status) => {
                out.push(Output::Transmit(bytes));
                true
            }
            _ => false,
        }
    }

    /// Fires the timers that are due.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.trying.is_some_and(|at| at <= now) {
            self.trying = None;
            out.push(Output::Trying);
        }
        if self.h.fire(now) {
            // the ACK never came (RFC 3261 §17.2.1)
            self.g.stop();
            self.state = State::Terminated;
            out.push(Output::Timeout);
            return;
        }
        if self.g.fire(now) {
            if let Some(last) = &self.last {
                out.push(Output::Transmit(last.clone()));
            }
            self.g_interval = (self.g_interval * 2).min(self.cfg.t2);
            self.g.arm(now + self.g_interval);
        }
        if self.i.fire(now) || self.l.fire(now) {
            self.state = State::Terminated;
        }
    }

    /// The transport could not send a response (RFC 3261 §17.2.4).
    pub fn on_transport_error(&mut self, out: &mut Vec<Output>) {
        if self.state != State::Terminated {
            out.push(Output::TransportError);
        }
        self.state = State::Terminated;
        for t in [&mut self.g, &mut self.h, &mut self.i, &mut self.l] {
            t.stop();
        }
    }

    /// When `on_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timers = earliest(&[self.g, self.h, self.i, self.l]);
        match (self.trying, timers) {
            (Some(at), Some(t)) => Some(t.min(at)),
            (Some(at), None) => Some(at),
            (None, t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> (Instant, ServerInvite, Vec<Output>) {
        let mut out = Vec::new();
        let t = ServerInvite::new(
            Reliability::Unreliable,
            TimerConfig::default(),
            Some(Bytes::from_static(b"100")),
            &mut out,
        );
        (Instant::now(), t, out)
    }

    #[test]
    fn sends_100_and_repeats_the_last_provisional() {
        let (now, mut t, mut out) = start();
        assert_eq!(out, vec![Output::Transmit(Bytes::from_static(b"100"))]);
        t.respond(now, 180, Bytes::from_static(b"180"), &mut out);
        t.on_invite(&mut out);
        assert_eq!(
            out.last(),
            Some(&Output::Transmit(Bytes::from_static(b"180")))
        );
    }

    #[test]
    fn a_delayed_100_is_dropped_when_the_tu_answers_first_and_asked_for_when_it_does_not() {
        let now = Instant::now();
        let delay = std::time::Duration::from_millis(200);
        let fresh = |out: &mut Vec<Output>| {
            ServerInvite::new(Reliability::Unreliable, TimerConfig::default(), None, out)
                .with_delayed_trying(now + delay)
        };
        let mut out = Vec::new();
        let mut t = fresh(&mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_deadline(), Some(now + delay));
        t.respond(now, 180, Bytes::from_static(b"180"), &mut out);
        t.on_timeout(now + delay, &mut out);
        assert_eq!(out, vec![Output::Transmit(Bytes::from_static(b"180"))]);

        let mut out = Vec::new();
        let mut t = fresh(&mut out);
        t.on_timeout(now + delay, &mut out);
        assert_eq!(out, vec![Output::Trying]);
        t.set_trying(Bytes::from_static(b"100"));
        // a retransmitted INVITE gets the 100 again
        t.on_invite(&mut out);
        assert_eq!(out[1], Output::Transmit(Bytes::from_static(b"100")));

        // retransmitted before the delay: the 100 is asked for at once, and only once
        let mut out = Vec::new();
        let mut t = fresh(&mut out);
        t.on_invite(&mut out);
        assert_eq!(out, vec![Output::Trying]);
        t.on_timeout(now + delay, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn non_2xx_is_retransmitted_until_the_ack() {
        let (now, mut t, mut out) = start();
        t.respond(now, 486, Bytes::from_static(b"486"), &mut out);
        assert_eq!(t.state(), State::Completed);
        let mut at = Vec::new();
        for _ in 0..4 {
            let d = t.next_deadline().unwrap();
            t.on_timeout(d, &mut out);
            at.push((d - now).as_millis());
        }
        assert_eq!(at, vec![500, 1500, 3500, 7500]);
        assert_eq!(t.on_ack(now + Duration::from_secs(8)), Delivery::Absorb);
        assert_eq!(t.state(), State::Confirmed);
        let n = out.len();
        t.on_timeout(now + Duration::from_secs(13), &mut out);
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn missing_ack_times_out_with_timer_h() {
        let (now, mut t, mut out) = start();
        t.respond(now, 603, Bytes::from_static(b"603"), &mut out);
        let mut retransmits = 0;
        while let Some(d) = t.next_deadline() {
            let n = out.len();
            t.on_timeout(d, &mut out);
            retransmits += out[n..]
                .iter()
                .filter(|o| matches!(o, Output::Transmit(_)))
                .count();
        }
        assert_eq!(out.last(), Some(&Output::Timeout));
        // G at 0.5, 1.5, 3.5, 7.5 s, then every 4 s until H at 32 s
        assert_eq!(retransmits, 10);
    }

    #[test]
    fn after_2xx_acks_go_to_the_tu_and_invites_are_absorbed() {
        let (now, mut t, mut out) = start();
        t.respond(now, 200, Bytes::from_static(b"200"), &mut out);
        assert_eq!(t.state(), State::Accepted);
        let n = out.len();
        assert_eq!(t.on_invite(&mut out), Delivery::Absorb);
        assert_eq!(out.len(), n, "2xx retransmission is the UA core's job");
        assert_eq!(t.on_ack(now), Delivery::Pass);
        assert!(
            t.respond(now, 200, Bytes::from_static(b"200"), &mut out),
            "the core's retransmission"
        );
        assert!(!t.respond(now, 486, Bytes::from_static(b"486"), &mut out));
        t.on_timeout(now + Duration::from_secs(32), &mut out);
        assert_eq!(t.state(), State::Terminated);
    }
}
