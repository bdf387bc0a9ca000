//! Fuzzes the stream framer with arbitrary chunking: never a panic, never more buffered than
//! the limit plus one chunk, and the frames it yields do not depend on how input was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipua_message::{Frame, Message, StreamFramer};

const LIMIT: usize = 4096;

fn run(data: &[u8], chunk: usize) -> (Vec<Frame>, bool) {
    let mut f = StreamFramer::new(LIMIT);
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        f.push(piece);
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    if let Frame::Message(m) = &fr {
                        assert!(m.len() <= LIMIT);
                        let _ = Message::parse_bytes(m.clone());
                    }
                    frames.push(fr);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        assert!(f.pending() <= LIMIT + chunk.max(1) + 4, "framer holds {} bytes", f.pending());
    }
    (frames, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else { return };
    let (whole, whole_err) = run(data, data.len());
    let (pieces, pieces_err) = run(data, usize::from(split % 64) + 1);
    if !whole_err && !pieces_err {
        // a CRLF pair split across reads may be seen as two pongs instead of one ping
        let msgs = |v: &[Frame]| v.iter().filter(|f| matches!(f, Frame::Message(_))).cloned().collect::<Vec<_>>();
        assert_eq!(msgs(&whole), msgs(&pieces));
    }
});
