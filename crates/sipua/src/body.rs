//! Bodies between the API and the core: the `(content type, body)` pairs the API takes,
//! parsed into the core's [`Body`], and the content type of a received body as text. A leaf:
//! it names only the command vocabulary and the error type, so the user agent, the sessions,
//! the subscriptions and the notifier all use it without naming one another for it.

use bytes::Bytes;
use sipua_message::header::MediaType;

use crate::commands::Body;
use crate::error::Error;

/// Parses a `(content type, body)` pair for the core.
pub(crate) fn body_of(body: Option<(String, Bytes)>) -> Result<Body, Error> {
    match body {
        None => Ok(None),
        Some((ct, b)) => {
            let mt =
                <sipua_message::header::ContentType as sipua_message::header::TypedHeader>::parse(
                    ct.as_bytes(),
                )
                .map_err(|e| Error::InvalidArgument(format!("content type {ct}: {e}")))?;
            Ok(Some((mt.0, b)))
        }
    }
}

/// The media type of a body, as given by its message.
pub(crate) fn content_type_of(m: &MediaType) -> String {
    format!("{}/{}", m.kind, m.subtype)
}
