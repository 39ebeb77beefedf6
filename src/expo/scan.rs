//! The byte-level scanner: a cursor over one line, character classes and error snippets.

/// Bytes allowed in a metric name after the first: `[a-zA-Z0-9_:]`.
const NAME: [bool; 256] = class(true, true);
/// Bytes allowed in a label name after the first: `[a-zA-Z0-9_]`.
const LABEL: [bool; 256] = class(true, false);

/// Bytes per step of the metric-name scan.
const CHUNK: usize = 16;

/// `[a-zA-Z0-9_:]` without branches or tables (`:` is the byte after `9`).
#[inline(always)]
fn is_name_byte(c: u8) -> bool {
    (c | 0x20).wrapping_sub(b'a') < 26 || c.wrapping_sub(b'0') < 11 || c == b'_'
}

/// Builds a lookup table of `[a-zA-Z_]`, plus digits and/or `:` when asked.
const fn class(digits: bool, colon: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphabetic()
            || b == b'_'
            || (digits && b.is_ascii_digit())
            || (colon && b == b':');
        c += 1;
    }
    t
}

/// A cursor over one line (without its line ending). Positions always sit on ASCII bytes
/// or at the end, so every slice taken is on a `char` boundary.
#[derive(Clone)]
pub(super) struct Cursor<'a> {
    /// The line.
    pub(super) s: &'a str,
    /// The line's bytes.
    pub(super) b: &'a [u8],
    /// Current byte offset.
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `s`.
    pub(super) fn new(s: &'a str) -> Self {
        Cursor {
            s,
            b: s.as_bytes(),
            pos: 0,
        }
    }

    /// The byte under the cursor, if any.
    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Skips spaces and tabs; returns whether any were skipped.
    #[inline]
    pub(super) fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.pos != start
    }

    /// `s[a..b]`, or `""` if that is not a valid range (it always is: see the type's doc).
    #[inline]
    pub(super) fn slice(&self, a: usize, b: usize) -> &'a str {
        self.s.get(a..b).unwrap_or("")
    }

    /// The rest of the line from the cursor.
    #[inline]
    pub(super) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Takes a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); empty if none starts here.
    ///
    /// Metric names are long (JMX-exporter names are 40–60 bytes), so whole 16-byte chunks
    /// are checked with a branch-free class test the compiler turns into SIMD; the chunk
    /// where the name ends is then scanned byte by byte.
    #[inline]
    pub(super) fn metric_name(&mut self) -> &'a str {
        let start = self.pos;
        match self.peek() {
            Some(c) if NAME[usize::from(c)] && !c.is_ascii_digit() => {}
            _ => return "",
        }
        let rest = self.b.get(start..).unwrap_or_default();
        let mut len = 0;
        for chunk in rest.chunks_exact(CHUNK) {
            // No early exit, so this is a few vector instructions.
            if !chunk.iter().fold(true, |all, &c| all & is_name_byte(c)) {
                break;
            }
            len += CHUNK;
        }
        self.pos = start + len;
        // The chunk where the name ends, or the tail shorter than a chunk.
        for &c in rest.get(len..).unwrap_or_default() {
            if !NAME[usize::from(c)] {
                break;
            }
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Takes a label name (`[a-zA-Z_][a-zA-Z0-9_]*`); empty if none starts here.
    #[inline]
    pub(super) fn label_name(&mut self) -> &'a str {
        self.ident(&LABEL)
    }

    #[inline]
    fn ident(&mut self, table: &[bool; 256]) -> &'a str {
        let start = self.pos;
        match self.peek() {
            Some(c) if table[usize::from(c)] && !c.is_ascii_digit() => {}
            _ => return "",
        }
        self.pos += 1;
        while let Some(c) = self.peek() {
            if !table[usize::from(c)] {
                break;
            }
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Takes a token up to the next space, tab or the end of the line.
    #[inline]
    pub(super) fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' {
                break;
            }
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// A short, printable excerpt of the text at the cursor, for error messages.
    pub(super) fn snippet_here(&self) -> String {
        snippet(self.rest())
    }
}

/// The longest excerpt an error message quotes, in characters.
const SNIPPET_CHARS: usize = 40;

/// `s` cut to [`SNIPPET_CHARS`] characters (with `…` when cut), control characters escaped.
pub(super) fn snippet(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == SNIPPET_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut c = Cursor::new("a:b_1{x");
        assert_eq!(c.metric_name(), "a:b_1");
        assert_eq!(c.peek(), Some(b'{'));
        let mut c = Cursor::new("1ab");
        assert_eq!(c.metric_name(), "");
        let mut c = Cursor::new("a:b");
        assert_eq!(c.label_name(), "a");
        let mut c = Cursor::new(":x");
        assert_eq!(c.label_name(), "");
    }

    #[test]
    fn long_names_every_length_and_stop_byte() {
        for len in 1..70 {
            let name: String = (0..len).map(|i| ['a', 'Z', '_', ':', '7'][i % 5]).collect();
            for stop in ["", "{", " ", "-", "é", "\t", "\u{0}"] {
                let line = format!("{name}{stop}rest");
                let mut c = Cursor::new(&line);
                let want = if stop.is_empty() {
                    line.as_str()
                } else {
                    name.as_str()
                };
                assert_eq!(c.metric_name(), want, "{line:?}");
            }
        }
        for c in 0..=255u8 {
            assert_eq!(is_name_byte(c), NAME[usize::from(c)], "{c}");
        }
    }

    #[test]
    fn snippets_are_cut_and_escaped() {
        assert_eq!(snippet("a\tb"), "a\\tb");
        let long = "é".repeat(50);
        assert_eq!(snippet(&long).chars().count(), SNIPPET_CHARS + 1);
    }
}
