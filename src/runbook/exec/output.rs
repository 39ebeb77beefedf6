//! Capturing an output stream: keep the first bytes, read and discard the rest.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// What was kept of one stream.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// The first `max` bytes.
    pub bytes: Vec<u8>,
    /// Whether more came than was kept (or reading was stopped before the end).
    pub truncated: bool,
    /// A read error, if reading ended with one.
    pub error: Option<String>,
}

impl Captured {
    /// The kept bytes as lossy UTF-8; a character cut by truncation is dropped, not replaced.
    pub fn text(&self) -> String {
        lossy(&self.bytes, self.truncated)
    }
}

/// Reads `r` to its end or until `stop` is cancelled, keeping at most `max` bytes.
///
/// Reading never stalls on a full buffer, so the writer never blocks on the pipe.
pub(crate) async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    max: usize,
    stop: CancellationToken,
) -> Captured {
    let mut out = Captured::default();
    // Small: two per run, zeroed each time; a pipe read returns what is there anyway.
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = tokio::select! {
            biased;
            n = r.read(&mut buf) => n,
            _ = stop.cancelled() => {
                // Still open: whatever holds the other end may write more.
                out.truncated = true;
                break;
            }
        };
        match n {
            Ok(0) => break,
            Ok(n) => push_capped(&mut out, &buf[..n], max),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out
}

/// Appends what fits of `chunk` under `max`, flagging the rest.
pub(crate) fn push_capped(out: &mut Captured, chunk: &[u8], max: usize) {
    let room = max.saturating_sub(out.bytes.len());
    let take = room.min(chunk.len());
    out.bytes.extend_from_slice(&chunk[..take]);
    if take < chunk.len() {
        out.truncated = true;
    }
}

/// Lossy UTF-8; when `cut`, an incomplete character at the very end is dropped.
pub(crate) fn lossy(bytes: &[u8], cut: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) if cut && e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        let mut c = Captured::default();
        push_capped(&mut c, b"hello", 3);
        push_capped(&mut c, b"world", 3);
        assert_eq!(c.bytes, b"hel");
        assert!(c.truncated);
    }

    #[test]
    fn cut_char_dropped() {
        let s = "aé".as_bytes();
        assert_eq!(lossy(&s[..2], true), "a");
        assert_eq!(lossy(&s[..2], false), "a\u{FFFD}");
        assert_eq!(lossy(b"\xffa", true), "\u{FFFD}a");
    }

    #[tokio::test]
    async fn reads_all_keeps_max() {
        let data = vec![b'x'; 200_000];
        let c = read_capped(&data[..], 1000, CancellationToken::new()).await;
        assert_eq!(c.bytes.len(), 1000);
        assert!(c.truncated);
        let c = read_capped(&b"abc"[..], 1000, CancellationToken::new()).await;
        assert_eq!(c.bytes, b"abc");
        assert!(!c.truncated);
    }
}
