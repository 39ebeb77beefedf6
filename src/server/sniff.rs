//! A look at each HTTP/1 request head as the connection reads it, for what hyper
//! normalises away before a handler could see it: a request that carries both
//! `Content-Length` and `Transfer-Encoding` (hyper drops the length and goes on).
//!
//! The bytes are followed only as far as their framing is plain: a head, then a body of
//! `Content-Length` bytes, then the next head. After a chunked body, an HTTP/2 preface or
//! anything unclear the sniffer stops; hyper's own handling applies from there.

use std::collections::VecDeque;

/// Largest head followed; hyper's own buffer limit refuses larger ones.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Skip(u64),
    Off,
}

/// One connection's sniffer: feed it every byte read, in order.
#[derive(Debug)]
pub struct Sniffer {
    state: State,
    head: Vec<u8>,
    /// One verdict per head seen, oldest first: true when it had both framings.
    pub verdicts: VecDeque<bool>,
}

impl Default for Sniffer {
    fn default() -> Self {
        Sniffer {
            state: State::Head,
            head: Vec::new(),
            verdicts: VecDeque::new(),
        }
    }
}

impl Sniffer {
    /// Takes the next bytes read from the peer.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Skip(n) => {
                    let k = n.min(data.len() as u64);
                    data = &data[k as usize..];
                    self.state = if n == k {
                        State::Head
                    } else {
                        State::Skip(n - k)
                    };
                }
                State::Head => {
                    let before = self.head.len();
                    let take = data.len().min(MAX_HEAD + 4 - before);
                    self.head.extend_from_slice(&data[..take]);
                    let from = before.saturating_sub(3);
                    match memchr::memmem::find(&self.head[from..], b"\r\n\r\n") {
                        Some(i) => {
                            let end = from + i + 4;
                            data = &data[end - before..];
                            let head = std::mem::take(&mut self.head);
                            self.state = self.judge(&head[..end]);
                        }
                        None if self.head.len() > MAX_HEAD => {
                            self.head = Vec::new();
                            self.state = State::Off;
                        }
                        None => data = &data[take..],
                    }
                }
            }
        }
    }

    fn judge(&mut self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let (mut length, mut lengths, mut te) = (None, 0, false);
        for line in head.split(|b| *b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths += 1;
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te = true;
            }
        }
        self.verdicts.push_back(te && lengths > 0);
        match (te, lengths, length) {
            (false, 0, _) => State::Head,
            (false, 1, Some(n)) => State::Skip(n),
            // Chunked, both (hyper closes after it), or a length hyper refuses.
            _ => State::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(chunks: &[&[u8]]) -> Vec<bool> {
        let mut s = Sniffer::default();
        for c in chunks {
            s.feed(c);
        }
        s.verdicts.into_iter().collect()
    }

    #[test]
    fn both_framings_are_seen_whichever_order_and_split() {
        let both = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(verdicts(&[both]), [true]);
        let rev = b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length:3\r\n\r\n";
        assert_eq!(verdicts(&[rev]), [true]);
        // Split anywhere, even inside the terminator.
        for cut in 1..both.len() {
            assert_eq!(verdicts(&[&both[..cut], &both[cut..]]), [true], "cut {cut}");
        }
    }

    #[test]
    fn bodies_are_skipped_so_later_heads_are_judged() {
        // A body that looks like a head must not count.
        let body = b"X: 1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        let a = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let a = a.as_bytes();
        let b = b"GET /b HTTP/1.1\r\n\r\n";
        let c = b"POST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let all = [a, &body[..], b, c].concat();
        assert_eq!(verdicts(&[&all]), [false, false, true]);
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(verdicts(&bytes), [false, false, true]);
    }

    #[test]
    fn stops_where_framing_is_not_plain() {
        let chunked = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdicts(&[chunked]), [false]);
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(verdicts(&[h2]), Vec::<bool>::new());
        let huge = vec![b'a'; MAX_HEAD + 100];
        assert_eq!(verdicts(&[&huge, b"\r\n\r\n"]), Vec::<bool>::new());
    }
}
