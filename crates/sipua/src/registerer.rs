//! Registration (SIP.js `Registerer`): binds our Contact to our address of record at a
//! registrar and keeps it bound (RFC 3261 §10.2): one Call-ID and rising CSeq numbers for
//! every REGISTER, a refresh before the granted expiry, `423 Interval Too Brief` answered
//! with the registrar's Min-Expires (§10.2.8), a 3xx followed to the registrar it names,
//! `500`/`503` with Retry-After retried after that delay (with back-off when there is
//! none), digest challenges answered by the core, `+sip.instance` and `reg-id` (RFC 5626
//! §4.2) and the GRUUs a registrar hands out (RFC 5627 §5), unregistering one binding or all
//! (`Contact: *`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua_message::header::{Contact, Expires, MinExpires, RetryAfter};
use sipua_message::{Header, HeaderName, Method, NameAddr, Response, Uri};
use sipua_proto::ua::OutOfDialog;
use tokio::sync::watch;

use crate::commands::Command;
use crate::error::Error;
use crate::tasks::TaskSlot;
use crate::user_agent::UserAgent;

/// Where a registration is (SIP.js `RegistererState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistererState {
    /// Nothing sent yet.
    Initial,
    /// The registrar holds our binding.
    Registered,
    /// Not bound: unregistered, refused, or a refresh failed (a retry may be scheduled).
    Unregistered,
    /// Disposed of; no more requests.
    Terminated,
}

/// How [`Registerer::unregister`] unregisters (SIP.js `RegistererUnregisterOptions`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegistererUnregisterOptions {
    /// Remove every binding of the address of record (`Contact: *`, RFC 3261 §10.2.2), not
    /// only ours.
    pub all: bool,
}

impl RegistererUnregisterOptions {
    /// Every binding of the address of record (`Contact: *`).
    pub fn all() -> RegistererUnregisterOptions {
        RegistererUnregisterOptions { all: true }
    }
}

/// Options of a [`Registerer`] (SIP.js `RegistererOptions`).
#[derive(Debug, Clone)]
pub struct RegistererOptions {
    /// The registration interval asked for, in seconds (SIP.js's default, 600).
    pub expires: u32,
    /// The registrar's URI; by default the host (and port) of our address of record.
    pub registrar: Option<Uri>,
    /// When to refresh, as a percentage of the granted interval (SIP.js's 99 by default;
    /// never later than 5 s before the expiry).
    pub refresh_frequency: u8,
    /// Headers added to every REGISTER.
    pub extra_headers: Vec<Header>,
    /// Parameters added to our Contact, e.g. `+sip.ice` or `audio` (RFC 3840).
    pub extra_contact_params: Vec<String>,
    /// Our instance id for `+sip.instance` (RFC 5626 §4.1), e.g. `urn:uuid:...`; also
    /// asks for GRUUs (RFC 5627).
    pub instance_id: Option<String>,
    /// `reg-id` for SIP outbound (RFC 5626 §4.2), with `instance_id`.
    pub reg_id: Option<u32>,
    /// Most 423 and 3xx answers followed for one registration before giving up.
    pub max_redirects: u8,
    /// More contacts bound with ours in every REGISTER, with the same interval (another
    /// transport's address, a forwarding number...); removed with ours on unregister.
    pub extra_contacts: Vec<Uri>,
}

impl Default for RegistererOptions {
    fn default() -> Self {
        RegistererOptions {
            expires: 600,
            registrar: None,
            refresh_frequency: 99,
            extra_headers: Vec::new(),
            extra_contact_params: Vec::new(),
            instance_id: None,
            reg_id: None,
            max_redirects: 3,
            extra_contacts: Vec::new(),
        }
    }
}

/// What a registration holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The interval the registrar granted our binding, in seconds.
    pub expires: Option<u32>,
    /// Every binding of the address of record, as the registrar listed them (ours and
    /// other devices').
    pub contacts: Vec<String>,
    /// Our public GRUU (RFC 5627 `pub-gruu`), when the registrar gave one.
    pub public_gruu: Option<String>,
    /// Our temporary GRUU (`temp-gruu`).
    pub temporary_gruu: Option<String>,
    /// The delay the registrar asked for before the next try (Retry-After of a 5xx).
    pub retry_after: Option<u32>,
}

struct Inner {
    ua: UserAgent,
    options: RegistererOptions,
    aor: NameAddr,
    call_id: String,
    /// Serialises REGISTERs (their CSeq order) and holds where they go and the next CSeq.
    ops: tokio::sync::Mutex<Ops>,
    state: watch::Sender<RegistererState>,
    info: Mutex<Registration>,
    refresh: TaskSlot,
}

struct Ops {
    target: Uri,
    cseq: u32,
}

/// Registers the user agent's address of record (SIP.js `Registerer`). Clones share one
/// registration; dropping the last one unregisters (as [`Registerer::dispose`]).
///
/// ```no_run
/// # async fn demo(ua: sipua::UserAgent) -> Result<(), sipua::Error> {
/// use sipua::{Registerer, RegistererOptions};
/// let registerer = Registerer::new(&ua, RegistererOptions::default())?;
/// registerer.register().await?;          // refreshed in the background from now on
/// // ...
/// registerer.unregister(Default::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Registerer {
    inner: Arc<Inner>,
    _last: Arc<DisposeOnDrop>,
}

/// Unregisters when the last handle goes.
struct DisposeOnDrop(Arc<Inner>);

impl Drop for DisposeOnDrop {
    fn drop(&mut self) {
        let inner = self.0.clone();
        inner.refresh.cancel();
        if *inner.state.borrow() == RegistererState::Registered {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = unregister(&inner, false).await;
                    inner.state.send_replace(RegistererState::Terminated);
                });
                return;
            }
        }
        inner.state.send_replace(RegistererState::Terminated);
    }
}

impl std::fmt::Debug for Registerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registerer")
            .field("aor", &self.inner.aor.uri.to_string())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Registerer {
    /// A registration of `ua`'s address of record (which must be started).
    pub fn new(ua: &UserAgent, options: RegistererOptions) -> Result<Registerer, Error> {
        let shared = ua.shared().ok_or(Error::Stopped)?;
        let aor_uri = shared.aor();
        let registrar = match &options.registrar {
            Some(r) => r.clone(),
            None => registrar_of(&aor_uri)?,
        };
        let call_id = shared.new_call_id("@sipua");
        let inner = Arc::new(Inner {
            ua: ua.clone(),
            aor: NameAddr::new(aor_uri),
            call_id,
            ops: tokio::sync::Mutex::new(Ops {
                target: registrar,
                cseq: 1,
            }),
            state: watch::channel(RegistererState::Initial).0,
            info: Mutex::new(Registration::default()),
            refresh: TaskSlot::default(),
            options,
        });
        shared.on_stop(&inner, |inner| {
            Box::pin(async move {
                if *inner.state.borrow() == RegistererState::Registered {
                    let _ = unregister(&inner, false).await;
                }
            })
        });
        Ok(Registerer {
            _last: Arc::new(DisposeOnDrop(inner.clone())),
            inner,
        })
    }

    /// Registers (or refreshes now) and returns the registrar's final response. `Ok` for
    /// 2xx; the binding is then refreshed in the background. A refusal is
    /// [`Error::Rejected`]; after a 5xx with Retry-After (or a timeout) a retry is scheduled.
    pub async fn register(&self) -> Result<Response, Error> {
        register(&self.inner).await
    }

    /// Removes our binding (`Contact: <ours>;expires=0`), or every binding of the address
    /// of record with [`RegistererUnregisterOptions::all`] (`Contact: *`, RFC 3261 §10.2.2).
    /// Stops the refreshes.
    pub async fn unregister(
        &self,
        options: RegistererUnregisterOptions,
    ) -> Result<Response, Error> {
        unregister(&self.inner, options.all).await
    }

    /// Unregisters if registered and ends the registration (SIP.js `dispose`).
    pub async fn dispose(&self) -> Result<(), Error> {
        let r = if self.state() == RegistererState::Registered {
            unregister(&self.inner, false).await.map(|_| ())
        } else {
            Ok(())
        };
        self.inner.refresh.cancel();
        self.inner.state.send_replace(RegistererState::Terminated);
        r
    }

    /// The current state.
    pub fn state(&self) -> RegistererState {
        *self.inner.state.borrow()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<RegistererState> {
        self.inner.state.subscribe()
    }

    /// What the registrar said last: granted interval, bindings, GRUUs, Retry-After.
    pub fn registration(&self) -> Registration {
        self.inner
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `sip:host[:port]` of an address of record (RFC 3261 §10.2: the registrar of a domain).
pub(crate) fn registrar_of(aor: &Uri) -> Result<Uri, Error> {
    let sip = aor
        .as_sip()
        .ok_or_else(|| Error::InvalidArgument(format!("{aor}: not a SIP URI to register")))?;
    let port = sip.port.map(|p| format!(":{p}")).unwrap_or_default();
    let transport = sip
        .transport()
        .map(|t| format!(";transport={t}"))
        .unwrap_or_default();
    let scheme = if sip.scheme == sipua_message::Scheme::Sips {
        "sips"
    } else {
        "sip"
    };
    format!("{scheme}:{}{port}{transport}", sip.host)
        .parse()
        .map_err(|e| Error::InvalidArgument(format!("registrar of {aor}: {e}")))
}

/// The Contact parameters of a REGISTER asking for `expires`.
fn contact_params(o: &RegistererOptions, expires: u32) -> String {
    let mut p = format!(";expires={expires}");
    for extra in &o.extra_contact_params {
        p.push(';');
        p.push_str(extra.trim_start_matches(';'));
    }
    if let Some(id) = &o.instance_id {
        p.push_str(&format!(";+sip.instance=\"<{id}>\""));
        if let Some(r) = o.reg_id {
            p.push_str(&format!(";reg-id={r}"));
        }
    }
    p
}

async fn send(
    inner: &Inner,
    ops: &mut Ops,
    contact: Option<Header>,
    expires: u32,
) -> Result<Response, Error> {
    let o = &inner.options;
    let mut headers = o.extra_headers.clone();
    if o.instance_id.is_some() {
        let mut supported = String::from("gruu");
        if o.reg_id.is_some() {
            supported.push_str(", outbound, path");
        }
        headers.push(Header::new(HeaderName::Supported, supported));
    }
    if contact.is_some() {
        headers.push(Header::new(HeaderName::Expires, expires.to_string()));
    } else {
        // several contacts in one REGISTER (RFC 3261 §10.2.1), each with the interval
        for c in &o.extra_contacts {
            headers.push(Header::new(
                HeaderName::Contact,
                format!("<{c}>;expires={expires}"),
            ));
        }
    }
    let opts = OutOfDialog {
        headers,
        call_id: Some(inner.call_id.clone()),
        cseq: Some(ops.cseq),
        to: Some(inner.aor.clone()),
        contact_params: contact.is_none().then(|| contact_params(o, expires)),
        contact,
        ..OutOfDialog::default()
    };
    let r = inner
        .ua
        .request_with(Method::Register, ops.target.clone(), None, opts)
        .await;
    // the next REGISTER counts on from what went out (a digest retry took one more)
    ops.cseq = match &r {
        Ok(resp) => resp.cseq().seq.max(ops.cseq) + 1,
        Err(_) => ops.cseq + 1,
    };
    r
}

async fn register(inner: &Arc<Inner>) -> Result<Response, Error> {
    if *inner.state.borrow() == RegistererState::Terminated {
        return Err(Error::InvalidArgument(
            "register: the registerer was disposed of".into(),
        ));
    }
    let mut ops = inner.ops.lock().await;
    let mut expires = inner.options.expires;
    let mut redirects = 0;
    loop {
        let r = send(inner, &mut ops, None, expires).await;
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => {
                // no answer or no route: not bound; try again later
                inner.state.send_replace(RegistererState::Unregistered);
                schedule(inner, backoff(inner));
                return Err(e);
            }
        };
        let status = resp.status();
        match status {
            200..=299 => {
                let granted = granted(inner, &resp, expires);
                if inner.options.reg_id.is_some() && inner.options.instance_id.is_some() {
                    // registered over an outbound flow: our dialogs ask to be reached over it
                    if let Some(shared) = inner.ua.shared() {
                        let _ = shared.commands.try_send(Command::Outbound(true));
                    }
                }
                inner.state.send_replace(RegistererState::Registered);
                let pct = inner.options.refresh_frequency.clamp(10, 99);
                schedule(inner, crate::tasks::refresh_after(granted, pct));
                return Ok(resp);
            }
            423 if redirects < inner.options.max_redirects => {
                // RFC 3261 §10.2.8: ask again for at least the registrar's minimum
                let min = resp.typed::<MinExpires>().and_then(Result::ok).map(|m| m.0);
                match min {
                    Some(m) if m > expires => {
                        expires = m;
                        redirects += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            300..=399 if redirects < inner.options.max_redirects => {
                let next = resp
                    .typed_all::<Contact>()
                    .ok()
                    .and_then(|c| c.into_iter().find_map(|c| c.addr().map(|a| a.uri.clone())));
                if let Some(uri) = next {
                    ops.target = uri;
                    redirects += 1;
                    continue;
                }
            }
            _ => {}
        }
        let retry = resp
            .typed::<RetryAfter>()
            .and_then(Result::ok)
            .map(|r| r.delta);
        inner
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retry_after = retry;
        inner.state.send_replace(RegistererState::Unregistered);
        if matches!(status, 500 | 503 | 480 | 408) || retry.is_some() {
            let wait = retry.map_or_else(|| backoff(inner), |s| Duration::from_secs(u64::from(s)));
            schedule(inner, wait);
        }
        return Err(Error::rejected(&resp));
    }
}

/// Reads a 2xx to REGISTER: the bindings, ours (its granted `expires`), our GRUUs.
fn granted(inner: &Inner, resp: &Response, asked: u32) -> u32 {
    let contacts = resp.typed_all::<Contact>().unwrap_or_default();
    let ours = inner.ua.local_addr();
    let user = &inner.ua.options().user;
    let instance = inner
        .options
        .instance_id
        .as_ref()
        .map(|id| format!("\"<{id}>\""));
    let mine = contacts.iter().find(|c| {
        let Some(a) = c.addr() else { return false };
        if let (Some(want), Some(got)) = (&instance, a.params.value("+sip.instance")) {
            return *want == got || want.trim_matches('"') == got.trim_matches('"');
        }
        a.uri.as_sip().is_some_and(|s| {
            s.user.as_deref() == Some(user.as_str())
                && ours.is_some_and(|o| s.port.unwrap_or(5060) == o.port())
        })
    });
    let header_expires = resp.typed::<Expires>().and_then(Result::ok).map(|e| e.0);
    let expires = mine
        .and_then(Contact::expires)
        .or(header_expires)
        .unwrap_or(asked);
    let gruu = |name: &str| {
        mine.and_then(|c| c.addr())
            .and_then(|a| a.params.value(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    let mut info = inner.info.lock().unwrap_or_else(|e| e.into_inner());
    *info = Registration {
        expires: Some(expires),
        contacts: contacts
            .iter()
            .filter_map(|c| c.addr().map(|a| a.uri.to_string()))
            .collect(),
        public_gruu: gruu("pub-gruu"),
        temporary_gruu: gruu("temp-gruu"),
        retry_after: None,
    };
    expires
}

async fn unregister(inner: &Arc<Inner>, all: bool) -> Result<Response, Error> {
    inner.refresh.cancel();
    let mut ops = inner.ops.lock().await;
    let contact = all.then(|| Header::new(HeaderName::Contact, "*"));
    let resp = send(inner, &mut ops, contact, 0).await?;
    if resp.is_success() {
        let mut info = inner.info.lock().unwrap_or_else(|e| e.into_inner());
        info.expires = None;
        info.contacts = resp
            .typed_all::<Contact>()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.addr().map(|a| a.uri.to_string()))
            .collect();
        if *inner.state.borrow() != RegistererState::Terminated {
            inner.state.send_replace(RegistererState::Unregistered);
        }
        Ok(resp)
    } else {
        Err(Error::rejected(&resp))
    }
}

/// The back-off after a failure without Retry-After: 30 s, doubling to 30 min (RFC 5626
/// §4.5's base and ceiling).
fn backoff(inner: &Inner) -> Duration {
    let failures = {
        let mut info = inner.info.lock().unwrap_or_else(|e| e.into_inner());
        let n = info.retry_after.map_or(0, |_| 1);
        info.retry_after = None;
        n
    };
    Duration::from_secs(30 << failures.min(6)).min(Duration::from_secs(1800))
}

/// Runs `register` again after `after` (a refresh or a retry), replacing any pending one.
fn schedule(inner: &Arc<Inner>, after: Duration) {
    TaskSlot::schedule(
        inner,
        |i| &i.refresh,
        after,
        |inner| async move {
            if *inner.state.borrow() != RegistererState::Terminated {
                // register() schedules the next one itself
                let _ = Box::pin(register(&inner)).await;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registrar_of_an_address_of_record_is_its_domain() {
        let r = registrar_of(&"sip:alice@example.com:5070;transport=tcp".parse().unwrap()).unwrap();
        assert_eq!(r.to_string(), "sip:example.com:5070;transport=tcp");
        let r = registrar_of(&"sips:bob@example.org".parse().unwrap()).unwrap();
        assert_eq!(r.to_string(), "sips:example.org");
        assert!(registrar_of(&"tel:+15551234".parse().unwrap()).is_err());
    }

    #[test]
    fn contact_parameters_carry_expires_instance_and_reg_id() {
        let o = RegistererOptions {
            instance_id: Some("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into()),
            reg_id: Some(1),
            extra_contact_params: vec!["audio".into()],
            ..Default::default()
        };
        assert_eq!(
            contact_params(&o, 300),
            ";expires=300;audio;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1"
        );
    }
}
