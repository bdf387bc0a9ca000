//! Event state publication (SIP.js `Publisher`; RFC 3903): puts our state of an event
//! package (presence, dialog...) at an event state compositor (ESC) and keeps it there.
//!
//! An initial PUBLISH carries the state and gets back an entity tag in `SIP-ETag` (§4.1,
//! §11.3.1); later PUBLISHes name it in `SIP-If-Match` (§11.3.2): a refresh has no body
//! (§4.2), a modification carries the new state (§4.4), a removal has `Expires: 0` and no
//! body (§4.5). Every PUBLISH carries `Event` and `Expires` (§4.1), the interval the ESC
//! grants in the 2xx's Expires is honoured and refreshed at 90 % of it (as SIP.js does), a
//! `412 Conditional Request Failed` to a refresh or modification starts over with an initial
//! PUBLISH of the last state (§4.3, §5), and a `423 Interval Too Brief` is answered by
//! asking again for the ESC's Min-Expires (§6). All the PUBLISHes of one publisher share a
//! Call-ID and count CSeq up; digest challenges are answered by the core.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipua_message::header::TypedHeader;
use sipua_message::header::{ContentType, Event, Expires, MediaType, MinExpires, SipETag};
use sipua_message::{Header, HeaderName, Method, Response, Uri};
use sipua_proto::ua::OutOfDialog;
use tokio::sync::watch;

use crate::error::Error;
use crate::tasks::TaskSlot;
use crate::user_agent::UserAgent;

/// Where a publication is (SIP.js `PublisherState`). The edges are SIP.js's: `Initial →
/// Published | Unpublished | Terminated`, `Published → Unpublished | Terminated`,
/// `Unpublished → Published | Terminated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherState {
    /// Nothing published yet.
    Initial,
    /// The ESC holds our state (we hold its entity tag).
    Published,
    /// Not published: removed, expired by a 2xx with `Expires: 0`, or refused.
    Unpublished,
    /// Disposed of; no more requests.
    Terminated,
}

/// Options of a [`Publisher`] (SIP.js `PublisherOptions`).
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// The publication interval asked for, in seconds (SIP.js's default, 3600).
    pub expires: u32,
    /// The media type of the published state, e.g. `application/pidf+xml` for presence
    /// (RFC 3863); SIP.js's default `text/plain`.
    pub content_type: String,
    /// Headers added to every PUBLISH.
    pub extra_headers: Vec<Header>,
    /// Remove the publication (a PUBLISH with `Expires: 0`) when disposed of, by
    /// [`Publisher::dispose`] or by dropping the last handle (SIP.js `unpublishOnClose`).
    pub unpublish_on_drop: bool,
    /// Where to send the PUBLISHes (an outbound proxy or the ESC) when it is not the
    /// target's host; the Request-URI stays the target.
    pub via: Option<Uri>,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            expires: 3600,
            content_type: "text/plain".into(),
            extra_headers: Vec::new(),
            unpublish_on_drop: true,
            via: None,
        }
    }
}

/// Most 423 answers followed for one PUBLISH before giving up.
const MAX_INTERVAL_RETRIES: u8 = 3;

struct Inner {
    ua: UserAgent,
    target: Uri,
    event: String,
    content_type: MediaType,
    options: PublisherOptions,
    call_id: String,
    /// Serialises PUBLISHes (their CSeq order) and holds what they carry.
    ops: tokio::sync::Mutex<Ops>,
    state: watch::Sender<PublisherState>,
    /// The entity tag of our publication (written with `ops` held).
    etag: Mutex<Option<String>>,
    refresh: TaskSlot,
}

struct Ops {
    cseq: u32,
    /// The interval to ask for: the option, raised by a 423's Min-Expires.
    expires: u32,
    /// The last state published, re-sent when the ESC lost our entity tag (412).
    body: Option<Bytes>,
    /// Counts exchanges, so a refresh scheduled before another one knows it is stale.
    epoch: u64,
}

/// What a PUBLISH is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Initial (no entity tag yet) or modification (§4.1, §4.4): carries `Ops::body`.
    Publish,
    /// Refresh (§4.2): `SIP-If-Match` and no body.
    Refresh,
    /// Removal (§4.5): `Expires: 0`, `SIP-If-Match`, no body.
    Unpublish,
}

/// Publishes our state of an event package at an ESC (SIP.js `Publisher`, RFC 3903). Clones
/// share one publication; dropping the last one unpublishes (see
/// [`PublisherOptions::unpublish_on_drop`]) and ends it.
///
/// ```no_run
/// # async fn demo(ua: sipua::UserAgent) -> Result<(), sipua::Error> {
/// use sipua::{Publisher, PublisherOptions};
/// let options = PublisherOptions {
///     content_type: "application/pidf+xml".into(),
///     ..Default::default()
/// };
/// let publisher = Publisher::new(&ua, "sip:alice@example.com".parse()?, "presence", options)?;
/// publisher.publish("<presence .../>").await?;  // refreshed in the background from now on
/// publisher.publish("<presence ...busy/>").await?; // a modification (SIP-If-Match)
/// publisher.unpublish().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
    _last: Arc<DisposeOnDrop>,
}

/// Disposes of the publication when the last handle goes.
struct DisposeOnDrop(Arc<Inner>);

impl Drop for DisposeOnDrop {
    fn drop(&mut self) {
        let inner = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = dispose(&inner).await;
            });
        } else {
            inner.state.send_replace(PublisherState::Terminated);
            inner.refresh.cancel();
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("target", &self.inner.target.to_string())
            .field("event", &self.inner.event)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publication of `event` state (a package such as `presence`, RFC 3903 §4.1) for
    /// `target` (the presentity, usually our address of record), sent by `ua` (which must be
    /// started). Nothing is sent until [`Publisher::publish`].
    pub fn new(
        ua: &UserAgent,
        target: Uri,
        event: &str,
        options: PublisherOptions,
    ) -> Result<Publisher, Error> {
        let shared = ua.shared().ok_or(Error::Stopped)?;
        <Event as TypedHeader>::parse(event.as_bytes())
            .map_err(|e| Error::InvalidArgument(format!("event {event:?}: {e}")))?;
        let content_type = <ContentType as TypedHeader>::parse(options.content_type.as_bytes())
            .map_err(|e| {
                Error::InvalidArgument(format!("content type {:?}: {e}", options.content_type))
            })?
            .0;
        if options.expires == 0 {
            return Err(Error::InvalidArgument(
                "expires: a publication needs an interval above 0".into(),
            ));
        }
        let inner = Arc::new(Inner {
            ua: ua.clone(),
            target,
            event: event.trim().to_owned(),
            content_type,
            call_id: shared.new_call_id("@sipua"),
            ops: tokio::sync::Mutex::new(Ops {
                cseq: 1,
                expires: options.expires,
                body: None,
                epoch: 0,
            }),
            state: watch::channel(PublisherState::Initial).0,
            etag: Mutex::new(None),
            refresh: TaskSlot::default(),
            options,
        });
        shared.on_stop(&inner, |inner| {
            Box::pin(async move {
                let _ = dispose(&inner).await;
            })
        });
        Ok(Publisher {
            _last: Arc::new(DisposeOnDrop(inner.clone())),
            inner,
        })
    }

    /// Publishes `content` and returns the ESC's final response: an initial PUBLISH, or a
    /// modification (`SIP-If-Match`, RFC 3903 §4.4) once we hold an entity tag. `Ok` for
    /// 2xx; the publication is then refreshed in the background. A 412 is answered by an
    /// initial PUBLISH of `content`, a 423 by asking for the ESC's Min-Expires; any other
    /// refusal is [`Error::Rejected`] and leaves the publication
    /// [`Unpublished`](PublisherState::Unpublished) (SIP.js would terminate it; here
    /// `publish` may be called again).
    pub async fn publish(&self, content: impl Into<Bytes>) -> Result<Response, Error> {
        let content = content.into();
        let mut ops = self.inner.ops.lock().await;
        ensure_alive(&self.inner, "publish")?;
        self.inner.refresh.cancel();
        ops.body = Some(content);
        exchange(&self.inner, &mut ops, Kind::Publish).await
    }

    /// Removes the publication (`Expires: 0` with `SIP-If-Match`, no body; RFC 3903 §4.5)
    /// and stops the refreshes. Without an entity tag there is nothing to remove:
    /// [`Error::InvalidArgument`].
    pub async fn unpublish(&self) -> Result<Response, Error> {
        let mut ops = self.inner.ops.lock().await;
        ensure_alive(&self.inner, "unpublish")?;
        self.inner.refresh.cancel();
        unpublish(&self.inner, &mut ops).await
    }

    /// Unpublishes if [`PublisherOptions::unpublish_on_drop`] and published, and ends the
    /// publication (SIP.js `dispose`). Disposing of a disposed publisher does nothing.
    pub async fn dispose(&self) -> Result<(), Error> {
        dispose(&self.inner).await
    }

    /// The current state.
    pub fn state(&self) -> PublisherState {
        *self.inner.state.borrow()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<PublisherState> {
        self.inner.state.subscribe()
    }

    /// The entity tag the ESC gave our publication (`SIP-ETag`, RFC 3903 §11.3.1), while
    /// we hold one.
    pub fn etag(&self) -> Option<String> {
        self.inner
            .etag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn ensure_alive(inner: &Inner, action: &str) -> Result<(), Error> {
    if *inner.state.borrow() == PublisherState::Terminated {
        return Err(Error::InvalidArgument(format!(
            "{action}: the publisher was disposed of"
        )));
    }
    Ok(())
}

fn etag_of(inner: &Inner) -> Option<String> {
    inner.etag.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_etag(inner: &Inner, etag: Option<String>) {
    *inner.etag.lock().unwrap_or_else(|e| e.into_inner()) = etag;
}

/// Moves to `to` along SIP.js's edges: staying put is no change, and nothing leaves
/// `Terminated`.
fn transition(inner: &Inner, to: PublisherState) {
    step(&inner.state, to);
}

fn step(state: &watch::Sender<PublisherState>, to: PublisherState) {
    state.send_if_modified(|s| {
        if *s == to || *s == PublisherState::Terminated {
            return false;
        }
        *s = to;
        true
    });
}

async fn unpublish(inner: &Arc<Inner>, ops: &mut Ops) -> Result<Response, Error> {
    if etag_of(inner).is_none() {
        return Err(Error::InvalidArgument(
            "unpublish: nothing is published (no entity tag)".into(),
        ));
    }
    exchange(inner, ops, Kind::Unpublish).await
}

async fn dispose(inner: &Arc<Inner>) -> Result<(), Error> {
    let mut ops = inner.ops.lock().await;
    if *inner.state.borrow() == PublisherState::Terminated {
        return Ok(());
    }
    inner.refresh.cancel();
    let r = if inner.options.unpublish_on_drop
        && *inner.state.borrow() == PublisherState::Published
        && etag_of(inner).is_some()
    {
        unpublish(inner, &mut ops).await.map(|_| ())
    } else {
        Ok(())
    };
    inner.state.send_replace(PublisherState::Terminated);
    inner.refresh.cancel();
    r
}

/// Sends one PUBLISH of `kind` (and what 412 and 423 call for) and reads the answer.
async fn exchange(inner: &Arc<Inner>, ops: &mut Ops, kind: Kind) -> Result<Response, Error> {
    ops.epoch += 1;
    let mut retries = 0;
    let mut started_over = false;
    loop {
        let etag = etag_of(inner);
        let (expires, body) = match kind {
            Kind::Unpublish => (0, None),
            Kind::Refresh if etag.is_some() => (ops.expires, None),
            // a refresh without an entity tag (a 2xx lacked SIP-ETag) publishes again
            Kind::Publish | Kind::Refresh => match &ops.body {
                Some(b) => (ops.expires, Some(b.clone())),
                None => {
                    return Err(Error::InvalidArgument(
                        "publish: no state to publish".into(),
                    ))
                }
            },
        };
        let resp = match send(inner, ops, expires, etag.as_deref(), body).await {
            Ok(resp) => resp,
            Err(e) => {
                set_etag(inner, None);
                transition(inner, PublisherState::Unpublished);
                return Err(e);
            }
        };
        let status = resp.status();
        match status {
            200..=299 => {
                if let Some(Ok(tag)) = resp.typed::<SipETag>() {
                    set_etag(inner, Some(tag.0));
                }
                // the ESC may shorten the interval, never lengthen it (RFC 3903 §6 step 5)
                let granted = resp
                    .typed::<Expires>()
                    .and_then(Result::ok)
                    .map_or(expires, |e| e.0.min(expires));
                if granted == 0 {
                    set_etag(inner, None);
                    transition(inner, PublisherState::Unpublished);
                } else {
                    transition(inner, PublisherState::Published);
                    schedule(inner, crate::tasks::refresh_after(granted, 90), ops.epoch);
                }
                return Ok(resp);
            }
            // RFC 3903 §4.3: the ESC no longer knows our entity tag (it expired): start over
            412 if etag.is_some() && expires != 0 && !started_over => {
                set_etag(inner, None);
                started_over = true;
                continue;
            }
            // RFC 3903 §6 step 5 (RFC 3261 §10.2.8): ask again for at least the minimum
            423 if expires != 0 && retries < MAX_INTERVAL_RETRIES => {
                let min = resp.typed::<MinExpires>().and_then(Result::ok).map(|m| m.0);
                if let Some(m) = min.filter(|m| *m > expires) {
                    ops.expires = m;
                    retries += 1;
                    continue;
                }
            }
            _ => {}
        }
        set_etag(inner, None);
        transition(inner, PublisherState::Unpublished);
        return Err(Error::rejected(&resp));
    }
}

async fn send(
    inner: &Inner,
    ops: &mut Ops,
    expires: u32,
    etag: Option<&str>,
    body: Option<Bytes>,
) -> Result<Response, Error> {
    let mut headers = inner.options.extra_headers.clone();
    headers.push(Header::new(HeaderName::Event, inner.event.clone()));
    headers.push(Header::new(HeaderName::Expires, expires.to_string()));
    if let Some(tag) = etag {
        headers.push(Header::new(HeaderName::SipIfMatch, tag.to_owned()));
    }
    let opts = OutOfDialog {
        headers,
        body: body.map(|b| (inner.content_type.clone(), b)),
        call_id: Some(inner.call_id.clone()),
        cseq: Some(ops.cseq),
        ..OutOfDialog::default()
    };
    let r = inner
        .ua
        .request_with(
            Method::Publish,
            inner.target.clone(),
            inner.options.via.as_ref(),
            opts,
        )
        .await;
    // the next PUBLISH counts on from what went out (a digest retry took one more)
    ops.cseq = match &r {
        Ok(resp) => resp.cseq().seq.max(ops.cseq) + 1,
        Err(_) => ops.cseq + 1,
    };
    r
}

/// Refreshes the publication after `after`, unless another PUBLISH went out since the
/// exchange numbered `epoch` (that one scheduled its own).
fn schedule(inner: &Arc<Inner>, after: Duration, epoch: u64) {
    if *inner.state.borrow() == PublisherState::Terminated {
        return;
    }
    TaskSlot::schedule(
        inner,
        |i| &i.refresh,
        after,
        move |inner| async move {
            let mut ops = inner.ops.lock().await;
            if ops.epoch != epoch || *inner.state.borrow() == PublisherState::Terminated {
                return;
            }
            // the slot holds this task: forget it rather than abort ourselves mid-request
            inner.refresh.forget();
            // exchange() schedules the next one itself
            let _ = Box::pin(exchange(&inner, &mut ops, Kind::Refresh)).await;
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_sip_js_edges_and_terminated_is_final() {
        let (tx, mut rx) = watch::channel(PublisherState::Initial);
        step(&tx, PublisherState::Published);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        step(&tx, PublisherState::Published); // a refresh's 2xx changes nothing
        assert!(!rx.has_changed().unwrap());
        step(&tx, PublisherState::Unpublished);
        step(&tx, PublisherState::Published);
        step(&tx, PublisherState::Terminated);
        step(&tx, PublisherState::Published); // a late answer cannot revive it
        assert_eq!(*rx.borrow_and_update(), PublisherState::Terminated);
    }
}
