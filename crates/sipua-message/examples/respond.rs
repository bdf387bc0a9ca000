//! A UAS in miniature: parse a request, check it, answer it.
//!
//! `cargo run -p sipua-message --example respond < request.sip` prints the response sipua would
//! send: 400 with a reason for malformed input, 505 for a bad version, else 200 with a To tag.

use std::io::Read;

use sipua_message::header::{Contact, Expires};
use sipua_message::{Message, Response};

fn main() {
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        eprintln!("cannot read standard input");
        std::process::exit(2);
    }
    let out = match Message::parse(&input) {
        Err(e) => match sipua_message::error_response(&input, &e, "a6c85cf") {
            Some(resp) => String::from_utf8_lossy(&resp).into_owned(),
            None => format!("unanswerable ({e}): dropped\n"),
        },
        Ok(Message::Response(r)) => format!(
            "a response ({} {}): nothing to answer\n",
            r.status(),
            r.reason()
        ),
        Ok(Message::Request(req)) => {
            // the lazily checked headers: a UAS answers 400 if they are malformed
            let status = match req.validate() {
                Ok(()) => 200,
                Err(e) => {
                    eprintln!("invalid request: {e}");
                    400
                }
            };
            let mut resp = Response::from_request(&req, status);
            if status == 200 {
                let _ = resp.set_to_tag("a6c85cf");
                if let Ok(contacts) = req.contacts() {
                    for c in contacts.iter().filter_map(Contact::addr) {
                        eprintln!("contact {} expires {:?}", c.uri, c.params.value("expires"));
                    }
                }
                if let Some(Ok(Expires(e))) = req.typed::<Expires>() {
                    let _ = resp.push_header(sipua_message::Header::typed(&Expires(e.min(3600))));
                }
            }
            String::from_utf8_lossy(&resp.to_bytes()).into_owned()
        }
    };
    print!("{out}");
}
