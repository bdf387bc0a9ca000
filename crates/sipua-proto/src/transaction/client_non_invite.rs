//! The non-INVITE client transaction (RFC 3261 §17.1.2, figure 6).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Delivery, Output, Reliability, State, Timer, TimerConfig};

/// Sends a non-INVITE request and collects its responses.
///
/// Timer E retransmits the request over UDP (T1, doubling up to T2; T2 once a provisional
/// response arrived), Timer F (64·T1) gives up, Timer K (T4 over UDP) absorbs late
/// retransmitted responses.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: State,
    request: Bytes,
    reliability: Reliability,
    cfg: TimerConfig,
    e: Timer,
    e_interval: Duration,
    f: Timer,
    k: Timer,
}

impl ClientNonInvite {
    /// Starts the transaction: sends `request` and arms Timers E and F.
    pub fn new(
        now: Instant,
        request: Bytes,
        reliability: Reliability,
        cfg: TimerConfig,
        out: &mut Vec<Output>,
    ) -> Self {
        out.push(Output::Transmit(request.clone()));
        let mut t = ClientNonInvite {
            state: State::Trying,
            request,
            reliability,
            cfg,
            e: Timer::default(),
            e_interval: cfg.t1,
            f: Timer::default(),
            k: Timer::default(),
        };
        if reliability == Reliability::Unreliable {
            t.e.arm(now + cfg.t1);
        }
        t.f.arm(now + cfg.t1x64());
        t
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A response matched this transaction (RFC 3261 §17.1.3).
    pub fn on_response(&mut self, now: Instant, status: u16) -> Delivery {
        match self.state {
            State::Trying | State::Proceeding if status < 200 => {
                self.state = State::Proceeding;
                Delivery::Pass
            }
            State::Trying | State::Proceeding => {
                self.e.stop();
                self.f.stop();
                match self.reliability {
                    Reliability::Unreliable => {
                        self.state = State::Completed;
                        self.k.arm(now + self.cfg.t4);
                    }
                    Reliability::Reliable => self.state = State::Terminated,
                }
                Delivery::Pass
            }
            _ => Delivery::Absorb,
        }
    }

    /// Fires the timers that are due.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.f.fire(now) {
            self.e.stop();
            self.state = State::Terminated;
            out.push(Output::Timeout);
            return;
        }
        if self.e.fire(now) {
            out.push(Output::Transmit(self.request.clone()));
            self.e_interval = match self.state {
                State::Proceeding => self.cfg.t2,
                _ => (self.e_interval * 2).min(self.cfg.t2),
            };
            self.e.arm(now + self.e_interval);
        }
        if self.k.fire(now) {
            self.state = State::Terminated;
        }
    }

    /// The transport could not send the request (RFC 3261 §17.1.4).
    pub fn on_transport_error(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Trying | State::Proceeding) {
            out.push(Output::TransportError);
        }
        self.state = State::Terminated;
        self.e.stop();
        self.f.stop();
        self.k.stop();
    }

    /// When `on_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.e, self.f, self.k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(rel: Reliability) -> (Instant, ClientNonInvite, Vec<Output>) {
        let now = Instant::now();
        let mut out = Vec::new();
        let t = ClientNonInvite::new(
            now,
            Bytes::from_static(b"OPTIONS"),
            rel,
            TimerConfig::default(),
            &mut out,
        );
        (now, t, out)
    }

    /// Runs the timers until `until`, returning the offsets (ms) at which the request was sent.
    fn run(
        t: &mut ClientNonInvite,
        start: Instant,
        until: Duration,
        out: &mut Vec<Output>,
    ) -> Vec<u128> {
        let mut sent = Vec::new();
        while let Some(at) = t.next_deadline().filter(|&at| at <= start + until) {
            let before = out.len();
            t.on_timeout(at, out);
            if out[before..]
                .iter()
                .any(|o| matches!(o, Output::Transmit(_)))
            {
                sent.push((at - start).as_millis());
            }
        }
        sent
    }

    #[test]
    fn retransmits_with_backoff_capped_at_t2_then_times_out_at_64_t1() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let sent = run(&mut t, now, Duration::from_secs(40), &mut out);
        // E: 500, 1500 (+1 s), 3500 (+2 s), 7500 (+4 s), then every 4 s until F at 32 s
        assert_eq!(
            sent,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(out.last(), Some(&Output::Timeout));
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn provisional_response_slows_retransmissions_to_t2() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        run(&mut t, now, Duration::from_millis(600), &mut out);
        assert_eq!(
            t.on_response(now + Duration::from_millis(700), 100),
            Delivery::Pass
        );
        assert_eq!(t.state(), State::Proceeding);
        // the next E was armed at 1500 ms (after the 500 ms firing); after that, every T2
        let sent = run(&mut t, now, Duration::from_millis(10_000), &mut out);
        assert_eq!(sent, vec![1500, 5500, 9500]);
    }

    #[test]
    fn final_response_completes_and_timer_k_absorbs_retransmissions() {
        let (now, mut t, mut out) = start(Reliability::Unreliable);
        let at = now + Duration::from_millis(200);
        assert_eq!(t.on_response(at, 200), Delivery::Pass);
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.on_response(at, 200), Delivery::Absorb);
        assert_eq!(t.next_deadline(), Some(at + Duration::from_secs(5)));
        t.on_timeout(at + Duration::from_secs(5), &mut out);
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(out.len(), 1, "no retransmission after the final response");
    }

    #[test]
    fn reliable_transport_never_retransmits_and_terminates_at_once() {
        let (now, mut t, mut out) = start(Reliability::Reliable);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(32)));
        assert_eq!(t.on_response(now, 404), Delivery::Pass);
        assert_eq!(t.state(), State::Terminated);
        let (now, mut t, _) = start(Reliability::Reliable);
        let sent = run(&mut t, now, Duration::from_secs(40), &mut out);
        assert!(sent.is_empty());
        assert_eq!(out.last(), Some(&Output::Timeout));
    }

    #[test]
    fn transport_error_terminates_and_reports() {
        let (_, mut t, mut out) = start(Reliability::Unreliable);
        t.on_transport_error(&mut out);
        assert_eq!(out.last(), Some(&Output::TransportError));
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.next_deadline(), None);
    }
}
