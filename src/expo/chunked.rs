//! A body parsed as it arrives: the complete lines of each chunk are parsed at once and only
//! the unfinished last line waits for the next chunk. A scrape then holds one chunk and one
//! line instead of the whole body (300 exporters in flight × 550 KB was most of the RSS).

use super::reader::Parser;
use super::{ExpoError, Sample};

/// The state of one streamed exposition: the unfinished line, the line count, whether
/// `# EOF` was read, and how many samples were skipped by name.
#[derive(Debug)]
pub struct Chunked {
    /// The bytes of the line not finished yet (no `\n` seen).
    pending: Vec<u8>,
    /// The 1-based number of the next line to parse.
    line: usize,
    /// Set once `# EOF` was read: only blank lines may follow.
    eof: bool,
    /// Sample lines skipped by name.
    skipped: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    /// A parser at the start of a body.
    pub fn new() -> Self {
        Chunked {
            pending: Vec::new(),
            line: 1,
            eof: false,
            skipped: 0,
        }
    }

    /// Sample lines skipped so far because `keep_name` refused their name.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Parses the lines `chunk` completes; each kept sample is handed to `each`, borrowed
    /// from the chunk (copy what is kept). Stop feeding after an error.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        keep_name: impl Fn(&str) -> bool,
        mut each: impl for<'s> FnMut(Sample<'s>),
    ) -> Result<(), ExpoError> {
        let Some(last) = memchr::memrchr(b'\n', chunk) else {
            self.pending.extend_from_slice(chunk);
            return Ok(());
        };
        let (complete, tail) = chunk.split_at(last + 1);
        let mut direct = complete;
        if !self.pending.is_empty() {
            // Finish the waiting line first; the rest is parsed in place, uncopied.
            let first = memchr::memchr(b'\n', complete).map_or(complete.len(), |i| i + 1);
            let (head, rest) = complete.split_at(first);
            let mut line = std::mem::take(&mut self.pending);
            line.extend_from_slice(head);
            self.region(&line, &keep_name, &mut each)?;
            line.clear();
            self.pending = line;
            direct = rest;
        }
        self.region(direct, &keep_name, &mut each)?;
        self.pending.extend_from_slice(tail);
        Ok(())
    }

    /// Parses what is left (a last line without `\n`) and ends the body.
    pub fn finish(
        mut self,
        keep_name: impl Fn(&str) -> bool,
        mut each: impl for<'s> FnMut(Sample<'s>),
    ) -> Result<usize, ExpoError> {
        let line = std::mem::take(&mut self.pending);
        self.region(&line, &keep_name, &mut each)?;
        Ok(self.skipped)
    }

    /// Parses whole lines `bytes`.
    fn region(
        &mut self,
        bytes: &[u8],
        keep_name: &impl Fn(&str) -> bool,
        each: &mut impl for<'s> FnMut(Sample<'s>),
    ) -> Result<(), ExpoError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let before = bytes.get(..e.valid_up_to()).unwrap_or_default();
            ExpoError {
                line: self.line + memchr::memchr_iter(b'\n', before).count(),
                message: "the body is not UTF-8".into(),
            }
        })?;
        if self.eof {
            Parser::only_blank_after_eof(text, self.line)?;
        } else {
            let mut p = Parser::at_line(text, self.line);
            self.skipped += p.samples_kept_each(keep_name, &mut *each)?;
            self.eof = p.saw_eof();
        }
        self.line += memchr::memchr_iter(b'\n', bytes).count();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Owned = (String, Vec<(String, String)>, u64);

    fn owned(s: Sample<'_>) -> Owned {
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (s.name.to_string(), labels, s.value.to_bits())
    }

    fn keep(n: &str) -> bool {
        !n.starts_with("skip") && !n.starts_with("jvm")
    }

    /// The whole-body parser's answer: kept samples and skipped count, or the error.
    fn whole(body: &str) -> Result<(Vec<Owned>, usize), ExpoError> {
        let (kept, skipped) = crate::expo::parse_kept(body, keep)?;
        Ok((kept.into_iter().map(owned).collect(), skipped))
    }

    /// The same body fed in pieces cut at `cuts` (byte offsets, any order).
    fn streamed(body: &[u8], cuts: &[usize]) -> Result<(Vec<Owned>, usize), ExpoError> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        at.push(0);
        at.push(body.len());
        at.sort_unstable();
        let mut out = Vec::new();
        let mut p = Chunked::new();
        for w in at.windows(2) {
            let piece = body.get(w[0]..w[1]).unwrap_or_default();
            p.feed(piece, keep, |s| out.push(owned(s)))?;
        }
        let skipped = p.finish(keep, |s| out.push(owned(s)))?;
        Ok((out, skipped))
    }

    const BODIES: &[&str] = &[
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\nskip_me{y=\"é\"} 2\nb 3 1700000000000\n",
        "a 1\r\nb{l=\"multi\\nline ünï\"} 2\r\n\r\n# EOF\n\n",
        "a 1\n# EOF\nb 2\n",
        "a 1\nb{l=\"x\",l=\"y\"} 2\n",
        "a 1\nb 0x10\n",
        "no_newline_at_end{a=\"b\"} 4",
        "skip_a 1\nskip_b{ 2\nc 3\n",
        "",
        "\n\n\n",
    ];

    #[test]
    fn every_split_of_the_sample_bodies_parses_as_the_whole_body() {
        for body in BODIES {
            let want = whole(body);
            for i in 0..=body.len() {
                for j in i..=body.len() {
                    assert_eq!(
                        streamed(body.as_bytes(), &[i, j]),
                        want,
                        "{body:?} cut at {i},{j}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_real_exporter_body_fed_in_small_chunks_keeps_the_same_samples() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/expo/jmx_kafka.prom"
        ))
        .expect("fixture");
        let want = whole(&body).expect("fixture parses");
        assert!(
            want.1 > 0 && want.0.len() > 100,
            "kept {} skipped {}",
            want.0.len(),
            want.1
        );
        let cuts: Vec<usize> = (1..body.len()).step_by(997).collect();
        assert_eq!(streamed(body.as_bytes(), &cuts), Ok(want));
    }

    #[test]
    fn invalid_utf8_is_an_error_with_its_line_even_across_chunks() {
        let body = b"a 1\nb{l=\"\xff\"} 2\n";
        let err = streamed(body, &[9]).expect_err("not UTF-8");
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("UTF-8"), "{err}");
    }

    proptest! {
        #[test]
        fn random_cuts_never_change_the_answer(
            which in 0..BODIES.len(),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let body = BODIES[which];
            prop_assert_eq!(streamed(body.as_bytes(), &cuts), whole(body));
        }
    }
}
