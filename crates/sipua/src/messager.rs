//! Out-of-dialog MESSAGE (SIP.js `Messager`; RFC 3428): a page of text or any other body to
//! a target, answered by a final response. Incoming MESSAGEs go to
//! [`UserAgentDelegate::on_message`](crate::UserAgentDelegate::on_message).

use bytes::Bytes;
use sipua_message::{Header, Method, Response, Uri};

use crate::error::Error;
use crate::user_agent::UserAgent;

/// Options of a [`Messager`] (SIP.js `MessagerOptions`).
#[derive(Debug, Clone, Default)]
pub struct MessagerOptions {
    /// Headers added to the MESSAGE.
    pub extra_headers: Vec<Header>,
}

/// A MESSAGE to send (SIP.js `Messager`): made once, sent with [`Messager::message`] (again
/// for every call, each a new request).
///
/// ```no_run
/// # async fn demo(ua: sipua::UserAgent) -> Result<(), sipua::Error> {
/// use sipua::{Messager, MessagerOptions};
/// let m = Messager::new(&ua, "sip:bob@example.com".parse()?, "Hello", "text/plain",
///                       MessagerOptions::default())?;
/// let response = m.message().await?;             // Ok for 2xx, Error::Rejected otherwise
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Messager {
    ua: UserAgent,
    target: Uri,
    body: Bytes,
    content_type: String,
    options: MessagerOptions,
}

impl std::fmt::Debug for Messager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messager")
            .field("target", &self.target.to_string())
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl Messager {
    /// A MESSAGE of `content` (of media type `content_type`, e.g. `text/plain`) to `target`.
    pub fn new(
        ua: &UserAgent,
        target: Uri,
        content: impl Into<Bytes>,
        content_type: &str,
        options: MessagerOptions,
    ) -> Result<Messager, Error> {
        if content_type.split('/').count() != 2 {
            return Err(Error::InvalidArgument(format!(
                "content type {content_type:?} is not type/subtype"
            )));
        }
        Ok(Messager {
            ua: ua.clone(),
            target,
            body: content.into(),
            content_type: content_type.to_owned(),
            options,
        })
    }

    /// Sends the MESSAGE and returns its final response: `Ok` for 2xx (200 or 202),
    /// [`Error::Rejected`] for a refusal.
    pub async fn message(&self) -> Result<Response, Error> {
        let r = self
            .ua
            .request(
                Method::Message,
                self.target.clone(),
                self.options.extra_headers.clone(),
                Some((self.content_type.clone(), self.body.clone())),
            )
            .await?;
        if r.is_success() {
            Ok(r)
        } else {
            Err(Error::rejected(&r))
        }
    }
}
