//! When a refused re-offer goes again (RFC 3261 §14.1, §14.2; RFC 5407 §3.1.2).
//!
//! A re-INVITE refused with 491 met the peer's own offer (glare): the side that owns the
//! Call-ID (the one that sent the initial INVITE) waits 2.1–4 s in steps of 10 ms, the other
//! 0–2 s, so the two retries do not cross again. A 500 with a `Retry-After` of at most 10 s
//! comes from a peer still busy with an earlier INVITE of ours (its ACK crossing our next
//! re-INVITE): try again after that many seconds, at least 100 ms. Anything else is final.

use std::time::Duration;

use crate::rng::Rng;

/// Attempts of one re-offer, the first included, before a 491 or 500 is given to the user.
pub const ATTEMPTS: u8 = 3;

/// How long to wait before sending again a re-offer that was refused with `status` on its
/// `attempt`-th try (1 for the first), or `None` when it is not to be retried.
/// `call_id_owner`: we sent the dialog's initial INVITE. `retry_after`: the response's
/// Retry-After in seconds, if any.
pub fn retry_after(
    status: u16,
    attempt: u8,
    call_id_owner: bool,
    retry_after: Option<u64>,
    rng: &mut Rng,
) -> Option<Duration> {
    if attempt >= ATTEMPTS {
        return None;
    }
    match status {
        491 => {
            let steps = rng.next_u64();
            Some(if call_id_owner {
                Duration::from_millis(2100 + (steps % 191) * 10)
            } else {
                Duration::from_millis((steps % 201) * 10)
            })
        }
        500 => retry_after
            .filter(|s| *s <= 10)
            .map(|s| Duration::from_secs(s).max(Duration::from_millis(100))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_waits_longer_than_the_other_side() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let owner = retry_after(491, 1, true, None, &mut rng).unwrap();
            assert!((Duration::from_millis(2100)..=Duration::from_secs(4)).contains(&owner));
            let other = retry_after(491, 1, false, None, &mut rng).unwrap();
            assert!(other <= Duration::from_secs(2));
            assert_eq!(owner.as_millis() % 10, 0);
        }
    }

    #[test]
    fn a_500_waits_its_retry_after_and_gives_up_in_the_end() {
        let mut rng = Rng::new(1);
        assert_eq!(
            retry_after(500, 1, true, Some(3), &mut rng),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(500, 1, true, Some(0), &mut rng),
            Some(Duration::from_millis(100))
        );
        assert_eq!(retry_after(500, 1, true, Some(11), &mut rng), None);
        assert_eq!(retry_after(500, 1, true, None, &mut rng), None);
        assert_eq!(retry_after(488, 1, true, None, &mut rng), None);
        assert_eq!(retry_after(491, ATTEMPTS, true, None, &mut rng), None);
        assert!(retry_after(491, ATTEMPTS - 1, false, None, &mut rng).is_some());
    }
}
