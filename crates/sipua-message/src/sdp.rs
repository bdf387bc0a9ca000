//! The SDP media direction (RFC 8866 §6.7, RFC 3264 §5.1, §6.1, §8.4): the one model of
//! `sendrecv`/`sendonly`/`recvonly`/`inactive` that every media handler shares, from the
//! fixed description of the `sipua` crate to the full offer/answer of `sipua-media`. SDP
//! itself (parsing, offer/answer) is `sipua-media`'s; only this small vocabulary lives down
//! here, so that the crates above agree on it without depending on each other.

use std::fmt;

/// Media direction attribute, seen from the author of the description; used for hold and to
/// decide who sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    /// `a=sendrecv`, the default when no direction attribute is present.
    #[default]
    SendRecv,
    /// `a=sendonly`: the author sends but does not receive (typical hold).
    SendOnly,
    /// `a=recvonly`: the author receives but does not send.
    RecvOnly,
    /// `a=inactive`: no media either way.
    Inactive,
}

impl Direction {
    /// All four, `sendrecv` first.
    pub const ALL: [Direction; 4] = [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ];

    /// Builds the direction from whether the author sends and receives.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the author of the description sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the author of the description receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the peer: what an answer mirrors (sendonly becomes recvonly
    /// and vice versa, RFC 3264 §6.1).
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// Keeps only what both directions allow; combines an offer's reversed direction with
    /// what the local side wants (hold, say).
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// What an answerer that wants `local` (sendrecv, or sendonly to hold) answers to an offer
    /// of `offered` (RFC 3264 §6.1).
    pub fn answer(offered: Direction, local: Direction) -> Direction {
        offered.reverse().intersect(local)
    }

    /// The attribute name, e.g. `"sendonly"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Recognises a direction attribute name (ASCII case-insensitive, spaces around ignored).
    pub fn from_attribute_name(name: &str) -> Option<Direction> {
        let name = name.trim();
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    /// The direction a whole description says for its (first) stream, read without parsing
    /// it: the last direction attribute wins (a media-level one comes after the session's),
    /// `sendrecv` when there is none. For a handler that needs no more of the SDP than this.
    pub fn last_in(body: &[u8]) -> Direction {
        body.split(|&b| b == b'\n')
            .rev()
            .filter_map(|l| l.trim_ascii().strip_prefix(b"a="))
            .filter_map(|a| std::str::from_utf8(a).ok())
            .find_map(Direction::from_attribute_name)
            .unwrap_or_default()
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_names_and_answers_agree() {
        for d in Direction::ALL {
            assert_eq!(Direction::from_flags(d.sends(), d.receives()), d);
            assert_eq!(Direction::from_attribute_name(d.as_str()), Some(d));
            assert_eq!(d.reverse().reverse(), d);
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!(
            Direction::from_attribute_name(" SendOnly "),
            Some(Direction::SendOnly)
        );
        assert_eq!(Direction::from_attribute_name("rtpmap"), None);
        use Direction::*;
        // RFC 3264 §6.1 and §8.4: an answer mirrors, and a holding answerer sends only
        for (offered, local, answer) in [
            (SendRecv, SendRecv, SendRecv),
            (SendOnly, SendRecv, RecvOnly),
            (RecvOnly, SendRecv, SendOnly),
            (Inactive, SendRecv, Inactive),
            (SendRecv, SendOnly, SendOnly),
            (SendOnly, SendOnly, Inactive),
        ] {
            assert_eq!(
                Direction::answer(offered, local),
                answer,
                "{offered} {local}"
            );
        }
    }

    #[test]
    fn the_last_direction_attribute_of_a_body_wins() {
        for (body, d) in [
            (
                "v=0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n",
                Direction::SendRecv,
            ),
            (
                "v=0\r\na=sendrecv\r\nm=audio 5000 RTP/AVP 0\r\na=inactive\r\n",
                Direction::Inactive,
            ),
            (
                "v=0\r\na=recvonly\r\nm=audio 5000 RTP/AVP 0\r\n",
                Direction::RecvOnly,
            ),
            ("m=audio 5000 RTP/AVP 0\na=sendonly \n", Direction::SendOnly),
            (
                "v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
                Direction::SendRecv,
            ),
            ("", Direction::SendRecv),
        ] {
            assert_eq!(Direction::last_in(body.as_bytes()), d, "{body:?}");
        }
    }
}
