//! The manager's background work: following each call and the registration, retrying the
//! registration, and the OPTIONS pings with their recovery.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sipua_message::{Method, Uri};
use tokio::sync::watch;

use super::{hold_options, lock, success, Inner};
use crate::error::Error;
use crate::registerer::RegistererState;
use crate::session::{EndReason, Invitation, Session, SessionState};
use crate::user_agent::UserAgent;

/// The first wait between probes of a lost server, doubled after each failed probe...
const RECOVERY_FIRST: Duration = Duration::from_secs(1);
/// ...up to this.
const RECOVERY_MAX: Duration = Duration::from_secs(30);

impl Inner {
    /// With `registration_retry` and a registration wanted, registers again after 1–2
    /// intervals, and again after each failure; one retry task at a time.
    pub(super) fn schedule_retry(self: &Arc<Self>) {
        if !self.registration_retry || !self.want_registered.load(Ordering::Relaxed) {
            return;
        }
        let mut tasks = lock(&self.tasks);
        if tasks.retry.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(self);
        let base = self.retry_interval;
        tasks.retry = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(between_once_and_twice(base)).await;
                let registerer = match weak.upgrade() {
                    Some(inner) if inner.want_registered.load(Ordering::Relaxed) => {
                        lock(&inner.registerer).clone()
                    }
                    _ => None,
                };
                let Some(registerer) = registerer else { return };
                if registerer.register().await.is_ok() {
                    return;
                }
            }
        }));
    }

    /// A connection we opened broke (the user agent's `on_disconnect` with an error): with
    /// a server to keep (a registration or pings), it is lost until a probe gets through,
    /// tried with back-off (1 s doubling to 30 s); the recovery then binds again over the
    /// new flow and re-INVITEs every established call (RFC 5626 §4.4).
    pub(super) fn flow_lost(self: &Arc<Self>, error: Error) {
        let has_server =
            self.want_registered.load(Ordering::Relaxed) || self.ping_interval.is_some();
        if !has_server {
            self.tell(|d| d.on_server_disconnect(Some(&error)));
            return;
        }
        if self.server_lost.swap(true, Ordering::Relaxed) {
            return; // a recovery is already under way
        }
        self.tell(|d| d.on_server_disconnect(Some(&error)));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = RECOVERY_FIRST;
            loop {
                tokio::time::sleep(backoff).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.server_lost.load(Ordering::Relaxed) {
                    return; // the pings saw it come back first
                }
                match inner.probe().await {
                    Ok(registered) => {
                        inner.recovered_with(registered).await;
                        return;
                    }
                    Err(Error::Stopped) => return,
                    Err(_) => backoff = (backoff * 2).min(RECOVERY_MAX),
                }
            }
        });
    }

    /// Tries the server once over a new flow: a REGISTER when a registration is wanted
    /// (`Ok(true)`), else an OPTIONS ping.
    async fn probe(&self) -> Result<bool, Error> {
        if self.want_registered.load(Ordering::Relaxed) {
            let registerer = lock(&self.registerer).clone();
            if let Some(r) = registerer {
                return r.register().await.map(|_| true);
            }
        }
        let target = self.ping_target()?;
        ping(&self.ua, &target, Duration::from_secs(5))
            .await
            .map(|()| false)
    }

    /// The lost server answers again: bind again, tell every peer of the new flow, and
    /// say so.
    async fn recovered(self: Arc<Self>) {
        self.recovered_with(false).await;
    }

    /// [`Inner::recovered`], the REGISTER skipped when the probe just made it.
    async fn recovered_with(self: Arc<Self>, registered: bool) {
        self.server_lost.store(false, Ordering::Relaxed);
        if !registered && self.want_registered.load(Ordering::Relaxed) {
            let registerer = lock(&self.registerer).clone();
            if let Some(r) = registerer {
                if r.register().await.is_err() {
                    self.schedule_retry();
                }
            }
        }
        let established: Vec<(Session, bool)> = lock(&self.sessions)
            .iter()
            .filter(|m| m.session().state() == SessionState::Established)
            .map(|m| (m.session().clone(), m.held))
            .collect();
        for (session, held) in established {
            tokio::spawn(async move {
                let _ = session.invite(hold_options(held)).await;
            });
        }
        self.tell(|d| d.on_server_connect());
    }
}

/// A random duration between `base` and twice `base` (SIP.js's registration retry delay).
pub(super) fn between_once_and_twice(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let permille = (h.finish() % 1001) as u32;
    base + base.checked_mul(permille).map_or(base, |d| d / 1000)
}

/// Follows one call: hands an incoming one over (after ringing), then reports its answer
/// and its end, and forgets it.
pub(super) async fn watch_session(
    manager: Weak<Inner>,
    id: u64,
    session: Session,
    incoming: Option<Invitation>,
) {
    if let Some(invitation) = incoming {
        // ring first, as SIP.js's UserAgent does before it hands an invitation over
        let _ = invitation
            .progress(crate::InvitationProgressOptions::default())
            .await;
        if let Some(inner) = manager.upgrade() {
            inner.tell(|d| {
                d.on_call_created(&session);
                d.on_call_received(&session);
            });
        }
    }
    let mut states = session.state_change();
    let mut answered = false;
    loop {
        let state = *states.borrow_and_update();
        if state == SessionState::Established && !answered {
            answered = true;
            if let Some(inner) = manager.upgrade() {
                inner.tell(|d| d.on_call_answered(&session));
            }
        }
        if state == SessionState::Terminated || states.changed().await.is_err() {
            break;
        }
    }
    let Some(inner) = manager.upgrade() else {
        return;
    };
    // an established call that ended before this task looked is still an answered call
    let was_established = matches!(
        session.end_reason(),
        Some(
            EndReason::LocalBye
                | EndReason::RemoteBye
                | EndReason::AckTimeout
                | EndReason::SessionExpired
        )
    );
    if was_established && !answered {
        inner.tell(|d| d.on_call_answered(&session));
    }
    lock(&inner.sessions).retain(|m| m.id != id);
    inner.tell(|d| d.on_call_hangup(&session));
}

/// Reports the registration's state changes, and retries when it falls off.
pub(super) async fn watch_registration(
    manager: Weak<Inner>,
    mut states: watch::Receiver<RegistererState>,
) {
    let mut last = *states.borrow_and_update();
    while states.changed().await.is_ok() {
        let now = *states.borrow_and_update();
        let Some(inner) = manager.upgrade() else {
            return;
        };
        match now {
            RegistererState::Registered if last != now => inner.tell(|d| d.on_registered()),
            RegistererState::Unregistered => {
                if last != now {
                    inner.tell(|d| d.on_unregistered());
                }
                inner.schedule_retry();
            }
            RegistererState::Terminated => {
                if last == RegistererState::Registered {
                    inner.tell(|d| d.on_unregistered());
                }
                return;
            }
            _ => {}
        }
        last = now;
    }
}

/// An OPTIONS to `target`: `Ok` for any answer but 408 and 503 within `wait`.
async fn ping(ua: &UserAgent, target: &Uri, wait: Duration) -> Result<(), Error> {
    let answer = tokio::time::timeout(
        wait,
        ua.request(Method::Options, target.clone(), Vec::new(), None),
    )
    .await
    .map_err(|_| Error::Timeout)??;
    match answer.status() {
        408 | 503 => success(answer),
        _ => Ok(()),
    }
}

/// Pings every `every`; when the server is lost, probes with back-off until it answers.
pub(super) async fn ping_loop(manager: Weak<Inner>, target: Uri, every: Duration) {
    let Some(ua) = manager.upgrade().map(|inner| inner.ua.clone()) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let error = match ping(&ua, &target, every).await {
            Ok(()) => continue,
            Err(Error::Stopped) => return,
            Err(e) => e,
        };
        match manager.upgrade() {
            // a lost connection found it first: that recovery is under way
            Some(inner) if inner.server_lost.swap(true, Ordering::Relaxed) => continue,
            Some(inner) => inner.tell(|d| d.on_server_disconnect(Some(&error))),
            None => return,
        }
        let mut backoff = RECOVERY_FIRST;
        loop {
            tokio::time::sleep(backoff).await;
            match ping(&ua, &target, every).await {
                Ok(()) => break,
                Err(Error::Stopped) => return,
                Err(_) => backoff = (backoff * 2).min(RECOVERY_MAX),
            }
        }
        match manager.upgrade() {
            Some(inner) => inner.recovered().await,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_fall_between_once_and_twice_the_interval() {
        let base = Duration::from_millis(3000);
        for _ in 0..100 {
            let d = between_once_and_twice(base);
            assert!(d >= base && d <= base * 2, "{d:?}");
        }
    }
}
