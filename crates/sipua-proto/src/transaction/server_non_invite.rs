//! The non-INVITE server transaction (RFC 3261 §17.2.2, figure 8).

use std::time::Instant;

use bytes::Bytes;

use super::{earliest, Delivery, Output, Reliability, State, Timer, TimerConfig};

/// Answers a non-INVITE request: absorbs retransmissions of it, repeats the last response to
/// them, and stays in Completed for Timer J (64·T1 over UDP) to do so after the final one.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: State,
    last: Option<Bytes>,
    reliability: Reliability,
    cfg: TimerConfig,
    j: Timer,
}

impl ServerNonInvite {
    /// A transaction for a request that just arrived (the owner passes it to the TU).
    pub fn new(reliability: Reliability, cfg: TimerConfig) -> Self {
        ServerNonInvite {
            state: State::Trying,
            last: None,
            reliability,
            cfg,
            j: Timer::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The request arrived again: repeat the last response, if any.
    pub fn on_request(&mut self, out: &mut Vec<Output>) -> Delivery {
        if let (State::Proceeding | State::Completed, Some(last)) = (self.state, &self.last) {
            out.push(Output::Transmit(last.clone()));
        }
        Delivery::Absorb
    }

    /// The TU responds; returns false (and sends nothing) once a final response was sent.
    pub fn respond(
        &mut self,
        now: Instant,
        status: u16,
        bytes: Bytes,
        out: &mut Vec<Output>,
    ) -> bool {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return false;
        }
        out.push(Output::Transmit(bytes.clone()));
        self.last = Some(bytes);
        if status < 200 {
            self.state = State::Proceeding;
        } else {
            match self.reliability {
                Reliability::Unreliable => {
                    self.state = State::Completed;
                    self.j.arm(now + self.cfg.t1x64());
                }
                Reliability::Reliable => self.state = State::Terminated,
            }
        }
        true
    }

    /// Fires Timer J when due.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.j.fire(now) {
            self.state = State::Terminated;
        }
    }

    /// The transport could not send a response (RFC 3261 §17.2.4).
    pub fn on_transport_error(&mut self, out: &mut Vec<Output>) {
        if self.state != State::Terminated {
            out.push(Output::TransportError);
        }
        self.state = State::Terminated;
        self.j.stop();
    }

    /// When `on_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retransmissions_get_the_last_response() {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut t = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
        assert_eq!(t.on_request(&mut out), Delivery::Absorb);
        assert!(out.is_empty(), "nothing to repeat before the TU answers");
        assert!(t.respond(now, 100, Bytes::from_static(b"100"), &mut out));
        t.on_request(&mut out);
        assert_eq!(
            out.last(),
            Some(&Output::Transmit(Bytes::from_static(b"100")))
        );
        assert!(t.respond(now, 200, Bytes::from_static(b"200"), &mut out));
        assert_eq!(t.state(), State::Completed);
        assert!(
            !t.respond(now, 500, Bytes::from_static(b"500"), &mut out),
            "one final response"
        );
        t.on_request(&mut out);
        assert_eq!(
            out.last(),
            Some(&Output::Transmit(Bytes::from_static(b"200")))
        );
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(32)));
        t.on_timeout(now + Duration::from_secs(32));
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn reliable_transport_terminates_on_the_final_response() {
        let mut out = Vec::new();
        let mut t = ServerNonInvite::new(Reliability::Reliable, TimerConfig::default());
        t.respond(Instant::now(), 404, Bytes::from_static(b"404"), &mut out);
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.next_deadline(), None);
    }
}
