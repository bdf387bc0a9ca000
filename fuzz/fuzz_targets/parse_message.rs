//! Fuzzes `Message::parse`: never a panic, and every accepted message round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipua_message::header::{self, TypedHeader};
use sipua_message::{Message, NameAddr, Uri};

fn typed<T: TypedHeader + std::fmt::Debug>(m: &Message) {
    if let Some(Ok(v)) = m.typed::<T>() {
        // the canonical form of a parsed value parses again
        let again = T::parse(v.to_string().as_bytes());
        assert!(again.is_ok(), "{v:?} -> {} does not parse", v);
    }
    let _ = m.typed_all::<T>();
}

fuzz_target!(|data: &[u8]| {
    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            // a malformed request still gets a best-effort error response, never a panic
            if let Some(resp) = sipua_message::error_response(data, &e, "fuzz") {
                assert!(resp.starts_with(b"SIP/2.0 "));
            }
            return;
        }
    };
    // unmodified: byte-exact
    let bytes = msg.to_bytes();
    let again = Message::parse(&bytes).expect("pristine serialisation must parse");
    assert_eq!(again.to_bytes(), bytes);
    // the lazily checked headers either parse or give an error, never a panic
    let valid = msg.validate().is_ok();
    if valid {
        // core values survive their canonical form
        for na in [msg.from().unwrap(), msg.to().unwrap()] {
            let s = na.to_string();
            let back = NameAddr::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{na:?} -> {s}: {e}"));
            assert!(back.uri.equivalent(&na.uri), "{na:?} -> {s} -> {back:?}");
            assert_eq!(back.display, na.display);
        }
        for v in msg.via().unwrap() {
            let s = v.to_string();
            let back = sipua_message::Via::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{v:?} -> {s}: {e}"));
            assert_eq!(&back, v);
        }
        // the fast key and the typed values agree
        let key = msg.via_key();
        let top = msg.top_via().unwrap();
        assert_eq!(key.branch, top.branch());
        assert_eq!(key.port, top.port);
        assert_eq!(msg.from_tag(), msg.from().unwrap().tag());
        assert_eq!(msg.to_tag(), msg.to().unwrap().tag());
    }
    if let Message::Request(r) = &msg {
        let s = r.uri().to_string();
        let back = Uri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{:?} -> {s}: {e}", r.uri()));
        assert!(back.equivalent(r.uri()), "{:?} -> {s} -> {back:?}", r.uri());
    }
    // lazy headers never panic, and what parses re-parses from its canonical form
    typed::<header::Contact>(&msg);
    typed::<header::Route>(&msg);
    typed::<header::RecordRoute>(&msg);
    typed::<header::ContentType>(&msg);
    typed::<header::Expires>(&msg);
    typed::<header::Event>(&msg);
    typed::<header::SubscriptionState>(&msg);
    typed::<header::WwwAuthenticate>(&msg);
    typed::<header::Authorization>(&msg);
    typed::<header::RAck>(&msg);
    typed::<header::Replaces>(&msg);
    typed::<header::SessionExpires>(&msg);
    typed::<header::RetryAfter>(&msg);
    typed::<header::Reason>(&msg);
    typed::<header::Date>(&msg);
    typed::<header::Allow>(&msg);
    typed::<header::Supported>(&msg);
    typed::<header::ReferTo>(&msg);
    // a modified message serialises canonically and parses again
    if valid {
        let mut m = msg.clone();
        m.set_to_tag("fuzz").unwrap_or_else(|e| panic!("cannot set a To tag: {e}\n{msg}"));
        assert_eq!(m.to_tag(), Some("fuzz"));
        assert_eq!(m.to().unwrap().tag(), Some("fuzz"));
        assert_eq!(m.call_id(), msg.call_id());
        assert_eq!(m.via().unwrap().len(), msg.via().unwrap().len());
    }
});
