//! The streaming API: [`Parser`] yields samples and metadata one line at a time.

use std::borrow::Cow;

use super::labels::unescape_help;
use super::meta::{Meta, MetricType, parse_meta};
use super::sample::parse_sample;
use super::scan::Cursor;
use super::{ExpoError, Sample};

/// One meaningful line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// A sample line.
    Sample(Sample<'a>),
    /// A `# HELP name text` line.
    Help {
        /// The metric family.
        name: &'a str,
        /// The help text, unescaped (`\\`, `\n`).
        text: Cow<'a, str>,
    },
    /// A `# TYPE name type` line.
    Type {
        /// The metric family.
        name: &'a str,
        /// Its type.
        kind: MetricType,
    },
}

/// A line classified, before any copying.
pub(super) enum Line<'a> {
    /// A sample.
    Sample(Sample<'a>),
    /// `# HELP`, the text still escaped.
    Help(&'a str, &'a str),
    /// `# TYPE`.
    Type(&'a str, MetricType),
}

/// A streaming parser over an exposition body: an iterator of [`Entry`] results.
///
/// Blank lines and plain comments are skipped. It stops after the first error (yielding it
/// once) and at `# EOF`; anything but blank lines after `# EOF` is an error. Never panics.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    /// What is left to read.
    rest: &'a str,
    /// The 1-based number of the next line.
    line: usize,
    /// Set after an error or the end.
    done: bool,
    /// Reused for each sample's labels before they are moved to a right-sized vector.
    scratch: Vec<(&'a str, Cow<'a, str>)>,
    /// Sample lines skipped by name ([`Self::samples_kept_into`]).
    skipped: usize,
    /// Set once `# EOF` was read.
    eof: bool,
}

impl<'a> Parser<'a> {
    /// A parser over `input`.
    pub fn new(input: &'a str) -> Self {
        Self::at_line(input, 1)
    }

    /// A parser over `input` whose first line is line `line` of a longer body (the chunks
    /// of a streamed body are parsed one after the other).
    pub(super) fn at_line(input: &'a str, line: usize) -> Self {
        Parser {
            rest: input,
            line,
            done: false,
            scratch: Vec::new(),
            skipped: 0,
            eof: false,
        }
    }

    /// Whether `# EOF` was read.
    pub(super) fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Checks that `input` (which follows a `# EOF` line) holds only blank lines.
    pub(super) fn only_blank_after_eof(input: &'a str, line: usize) -> Result<(), ExpoError> {
        Self::at_line(input, line).after_eof()
    }

    /// The next non-blank line, classified; `Ok(None)` at the end of the input or after
    /// `# EOF`.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'a>>, ExpoError> {
        let mut found = None;
        self.drive(
            |_| false,
            |line| {
                found = Some(line);
                true
            },
        )?;
        Ok(found)
    }

    /// Appends every remaining sample to `out`; HELP and TYPE lines are checked and dropped.
    pub(super) fn samples_into(&mut self, out: &mut Vec<Sample<'a>>) -> Result<(), ExpoError> {
        self.drive(
            |_| false,
            |line| {
                if let Line::Sample(s) = line {
                    out.push(s);
                }
                false
            },
        )
    }

    /// Like [`Self::samples_into`], but a sample line whose metric name `keep_name` refuses
    /// is skipped after its name is read: its labels and value are neither parsed nor
    /// checked. Returns how many were skipped.
    pub(super) fn samples_kept_into(
        &mut self,
        keep_name: impl Fn(&str) -> bool,
        out: &mut Vec<Sample<'a>>,
    ) -> Result<usize, ExpoError> {
        self.samples_kept_each(keep_name, |s| out.push(s))
    }

    /// Like [`Self::samples_kept_into`], handing each kept sample to `each`.
    pub(super) fn samples_kept_each(
        &mut self,
        keep_name: impl Fn(&str) -> bool,
        mut each: impl FnMut(Sample<'a>),
    ) -> Result<usize, ExpoError> {
        self.drive(
            |name| !keep_name(name),
            |line| {
                if let Line::Sample(s) = line {
                    each(s);
                }
                false
            },
        )?;
        Ok(self.skipped)
    }

    /// Reads lines and hands each meaningful one to `sink` until `sink` returns `true`, the
    /// input ends, `# EOF`, or an error. Generic so that [`Self::samples_into`] pushes each
    /// sample straight into its vector (no `Result<Option<..>>` moved per line).
    #[inline(always)]
    fn drive(
        &mut self,
        skip: impl Fn(&'a str) -> bool,
        mut sink: impl FnMut(Line<'a>) -> bool,
    ) -> Result<(), ExpoError> {
        while !self.done && !self.rest.is_empty() {
            let line_no = self.line;
            let text = self.take_line();
            let mut cur = Cursor::new(text);
            cur.skip_ws();
            let line = match cur.peek() {
                None => continue,
                Some(b'#') => match parse_meta(&mut cur) {
                    Ok(Meta::Comment) => continue,
                    Ok(Meta::Eof) => {
                        self.done = true;
                        self.eof = true;
                        return self.after_eof();
                    }
                    Ok(Meta::Help { name, raw }) => Line::Help(name, raw),
                    Ok(Meta::Type { name, kind }) => Line::Type(name, kind),
                    Err(message) => return Err(self.fail(line_no, message)),
                },
                Some(_) if skip(cur.clone().metric_name()) => {
                    self.skipped += 1;
                    continue;
                }
                Some(_) => match parse_sample(&mut cur, &mut self.scratch) {
                    Ok(s) => Line::Sample(s),
                    Err(message) => return Err(self.fail(line_no, message)),
                },
            };
            if sink(line) {
                return Ok(());
            }
        }
        self.done = true;
        Ok(())
    }

    /// Stops the parser with an error on line `line`.
    #[cold]
    fn fail(&mut self, line: usize, message: String) -> ExpoError {
        self.done = true;
        ExpoError { line, message }
    }

    /// Cuts the next line (without `\n` or `\r\n`) off the input.
    #[inline]
    fn take_line(&mut self) -> &'a str {
        let bytes = self.rest.as_bytes();
        let (line, rest) = match memchr::memchr(b'\n', bytes) {
            Some(i) => (
                self.rest.get(..i).unwrap_or(""),
                self.rest.get(i + 1..).unwrap_or(""),
            ),
            None => (self.rest, ""),
        };
        self.rest = rest;
        self.line += 1;
        line.strip_suffix('\r').unwrap_or(line)
    }

    /// Checks that only blank lines follow `# EOF`.
    fn after_eof(&mut self) -> Result<(), ExpoError> {
        while !self.rest.is_empty() {
            let line_no = self.line;
            let text = self.take_line();
            if !text.trim_matches([' ', '\t']).is_empty() {
                return Err(ExpoError {
                    line: line_no,
                    message: "unexpected content after `# EOF`".into(),
                });
            }
        }
        Ok(())
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ExpoError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_line() {
            Ok(None) => None,
            Ok(Some(Line::Sample(s))) => Some(Ok(Entry::Sample(s))),
            Ok(Some(Line::Help(name, raw))) => Some(Ok(Entry::Help {
                name,
                text: unescape_help(raw),
            })),
            Ok(Some(Line::Type(name, kind))) => Some(Ok(Entry::Type { name, kind })),
            Err(e) => Some(Err(e)),
        }
    }
}

impl std::iter::FusedIterator for Parser<'_> {}
