//! Differential tests against Alertmanager's own Go code.
//!
//! `tests/oracle/amatch` is a tiny Go program linked against
//! `github.com/prometheus/alertmanager/pkg/labels` (`ParseMatcher`, the classic matcher parser
//! that Alertmanager's compat layer falls back to) and
//! `github.com/prometheus/common/model` (`LabelSet.Fingerprint`). It is built once per test
//! run with `go build` under `CARGO_TARGET_TMPDIR`, then fed JSON lines; every answer must be
//! exactly what [`Matcher::parse`], [`Matcher::matches`] and [`fingerprint`] say.
//!
//! A Go toolchain is required: without `go` on PATH these tests fail (they never skip). The
//! first build downloads the pinned modules (go.mod / go.sum) through the Go module proxy.
//!
//! Known regex-engine differences between Go's RE2 (`regexp`) and Rust's `regex` are kept out
//! of the tables below (they are listed after [`CASES`]); everything else must agree.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use kafka_healing::ingest::fingerprint;
use kafka_healing::rules::{MatchOp, Matcher};
use serde_json::{Value, json};

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The oracle process.
// ---------------------------------------------------------------------------------------------

/// The built oracle binary (built on first use, once per test process).
fn oracle() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_oracle)
}

fn build_oracle() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/amatch");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("am_oracle")
        .join(if cfg!(windows) {
            "amatch.exe"
        } else {
            "amatch"
        });
    match Command::new("go").arg("version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`go` is not on PATH. The Alertmanager differential tests (tests/it/am_oracle.rs) \
             need a Go toolchain (>= 1.22) to build their oracle, tests/oracle/amatch; \
             install Go (https://go.dev/dl/) and put `go` on PATH. These tests never skip."
        ),
        Err(e) => panic!("cannot run `go version` (needed to build tests/oracle/amatch): {e}"),
        Ok(o) if !o.status.success() => panic!(
            "`go version` failed (needed to build tests/oracle/amatch): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
    let started = Instant::now();
    let o = Command::new("go")
        .args(["build", "-mod=readonly", "-buildvcs=false", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .output()
        .expect("spawn `go build`");
    assert!(
        o.status.success(),
        "`go build` of the Alertmanager oracle in {} failed (it needs the Go module proxy \
         the first time, to fetch github.com/prometheus/alertmanager):\n{}{}",
        src.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "am_oracle: built {} in {:.1?}",
        out.display(),
        started.elapsed()
    );
    out
}

/// Sends `requests` to the oracle, one JSON line each, and returns its answers in order.
fn ask(requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new(oracle())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the Alertmanager oracle");
    let mut stdin = child.stdin.take().expect("oracle stdin");
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    // Write from another thread: the oracle answers while we are still writing.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait for the oracle");
    writer
        .join()
        .expect("oracle writer thread")
        .expect("write to the oracle");
    assert!(
        out.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("oracle output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("oracle output is JSON lines"))
        .collect();
    assert_eq!(
        answers.len(),
        requests.len(),
        "one oracle answer per request"
    );
    answers
}

// ---------------------------------------------------------------------------------------------
// Matchers.
// ---------------------------------------------------------------------------------------------

/// Hand-written matcher strings. Each is evaluated against many label sets (see [`label_sets`]).
const CASES: &[&str] = &[
    // Perl classes and word boundaries: ASCII in Go, translated so in ours.
    r#"x=~"\\d+""#,
    r#"x=~"\\D+""#,
    r#"x=~"[\\d]+""#,
    r#"x=~"[^\\d]+""#,
    r#"x=~"\\w+""#,
    r#"x=~"\\W+""#,
    r#"x=~"[\\w.-]+""#,
    r#"x=~"a\\sb""#,
    r#"x=~"\\S+""#,
    r#"x=~"[^\\s]+""#,
    r#"x=~".*\\b.*""#,
    r#"x=~"\\ba\\b""#,
    r#"x=~".\\B.""#,
    r#"x!~"\\d""#,
    // Plain forms.
    r#"alertname="KafkaBrokerDown""#,
    "alertname=KafkaBrokerDown",
    r#"severity!="critical""#,
    r#"severity=~"critical|page""#,
    r#"severity!~"warning|info""#,
    // Anchoring: a regex must match the whole value.
    r#"severity=~"crit""#,
    r#"severity=~"crit|page""#,
    r#"severity=~"crit.*""#,
    r#"severity=~".*crit""#,
    r#"severity=~"^crit$""#,
    r#"severity=~"^crit""#,
    r#"severity=~"crit$""#,
    r#"severity!~"crit""#,
    "severity=~crit|page",
    // `!~` with an alternative that matches the empty string (and so a missing label).
    r#"severity!~"critical|""#,
    r#"severity!~"|critical""#,
    r#"severity!~"(critical)?""#,
    r#"severity!~"critical|.*""#,
    r#"severity=~"critical|""#,
    // Empty values and the missing label.
    r#"severity="""#,
    r#"severity!="""#,
    r#"severity=~"""#,
    r#"severity!~"""#,
    "severity=",
    "severity!=",
    "severity=~",
    "severity!~",
    r#"severity=~".+""#,
    r#"severity!~".+""#,
    r#"severity=~".*""#,
    r#"severity!~".*""#,
    // Operators run together with the value.
    "a==b",
    "a===b",
    "a=!b",
    "a!==b",
    "a=~~b",
    "a!~~b",
    "a=~=b",
    "a=!=b",
    "a=!~b",
    r#"a=="b""#,
    r#"a!=="b""#,
    "a~=b",
    "a!b",
    "a~b",
    "a<b",
    "a",
    "=b",
    "=",
    "!=",
    "",
    " ",
    "\n",
    // Unquoted values.
    "a=b",
    "a=b c",
    "a=b  c",
    "a=b,c",
    "a={b}",
    "a=b}",
    "a={b",
    "a=b=c",
    "a=é",
    "a=日本語",
    "a=😀",
    "a=1",
    "a=-1",
    "a='b'",
    "a=`b`",
    // Unquoted values with quotes and backslashes.
    r#"a=b""#,
    r#"a="b"#,
    r#"a=b"c"#,
    r#"a=b\"c"#,
    r#"a=\"b\""#,
    r#"a=b\"#,
    r#"a=b\\"#,
    r#"a=b\n"#,
    r#"a=b\d"#,
    r#"a=\"#,
    r#"a=\\"#,
    r#"a=\\\"#,
    // Quoted values and escapes.
    r#"a="b""#,
    r#"a="b c""#,
    r#"a=" b ""#,
    r#"a=" ""#,
    r#"a="q\"uo\\te\n""#,
    r#"a="\"""#,
    r#"a="\"\"""#,
    r#"a="\\""#,
    r#"a="\\\\""#,
    r#"a="\\\"""#,
    r#"a="\n""#,
    r#"a="\\n""#,
    r#"a="\\\n""#,
    r#"a="x\ny""#,
    // Spurious escapes stay literal.
    r#"a="\d""#,
    r#"a="\d+""#,
    r#"a="back\slash""#,
    r#"a="\t""#,
    r#"a="\r""#,
    r#"a="\x41""#,
    r#"a="\é""#,
    r#"a="\😀""#,
    r#"a="\ ""#,
    r#"a="\'""#,
    r#"a="a\b\c""#,
    // Trailing backslashes and unterminated quotes.
    r#"a="x\""#,
    r#"a="x\\""#,
    r#"a="x\\\""#,
    r#"a="\""#,
    r#"a="\"#,
    r#"a="x\"#,
    r#"a=x\"#,
    r#"a="x"#,
    r#"a=""#,
    r#"a="x "#,
    "a=\"x\n",
    // Embedded unescaped quotes.
    r#"a="x"y""#,
    r#"a=x"y"#,
    r#"a="x""y""#,
    r#"a="""""#,
    r#"a="""#,
    r#"a="x" "#,
    r#"a="x"  y"#,
    r#"a="x"""#,
    r#"a=""x""#,
    r#"a="x" ""#,
    // Leading and trailing whitespace, around every part.
    " a=b",
    "a=b ",
    "  a  =  b  ",
    "\ta\t=\tb\t",
    "\na=b\n",
    "\r\na=b\r\n",
    "a=\"b\"\n",
    "\u{0C}a=b\u{0C}",
    r#" a =~ "b" "#,
    r#" a != "" "#,
    r#"a= "b""#,
    r#"a ="b""#,
    "a=b \t",
    "a=\" b\t\"",
    // Whitespace Go's `\s` ([\t\n\f\r ]) does not cover but Rust's `trim` does.
    "a=b\u{0B}",
    "\u{0B}a=b",
    "a\u{0B}=b",
    "a=\u{0B}b",
    "a=b\u{A0}",
    "\u{A0}a=b",
    "a\u{A0}=b",
    "a=\u{A0}b",
    "a=\u{2003}b\u{2003}",
    "\u{85}a=b",
    "a=b\u{85}",
    "a=b\u{3000}",
    "a=b\u{2028}",
    "a=b\u{FEFF}",
    "\u{FEFF}a=b",
    "a=\"b\"\u{A0}",
    "a=\"b\u{A0}\"",
    // Names.
    "job:rate5m=1",
    r#"job:rate5m:sum="1""#,
    ":a=b",
    ":=b",
    "_=b",
    "__name__=up",
    "a1=b",
    "A_Z:09=b",
    "1a=b",
    "9=b",
    "a-b=c",
    "a.b=c",
    "a/b=c",
    "a b=c",
    "é=x",
    "aé=x",
    r#""a"=b"#,
    "{a=b}",
    "a=b,c=d",
    // Values with newlines.
    "a=x\ny",
    "a=\"x\ny\"",
    "a=\n",
    "a=\"\n\"",
    r#"a=~"x\ny""#,
    r#"a=~"x.y""#,
    r#"a=~"(?s)x.y""#,
    "a=~\"x\ny\"",
    r#"a=~"x\\ny""#,
    r#"a=~".*""#,
    r#"a=~"(?m)^x$""#,
    // Regex special characters.
    r#"instance=~"kafka-\\d+:9404""#,
    r#"instance=~"kafka-\d+:9404""#,
    r#"instance=~"kafka-[0-9]+\\.example\\.com:9404""#,
    r#"a=~"[""#,
    r#"a=~"(""#,
    r#"a=~")""#,
    r#"a=~"*""#,
    r#"a=~"+""#,
    r#"a=~"?""#,
    r#"a=~"a??""#,
    r#"a=~"a{2}""#,
    r#"a=~"a{2,}""#,
    r#"a=~"a{1,2}""#,
    r#"a=~"a{1000}""#,
    r#"a=~"^a$""#,
    r#"a=~"$""#,
    r#"a=~"^""#,
    r#"a=~"^$""#,
    r#"a=~"|""#,
    r#"a=~"a|""#,
    r#"a=~"(a|)""#,
    r#"a=~"()""#,
    r#"a=~"(?:)""#,
    r#"a=~"(?i)CRIT""#,
    r#"a=~"(?i)k""#,
    r#"a=~"(?i)é""#,
    r#"a=~"(?U)a+""#,
    r#"a=~"[[:alpha:]]+""#,
    r#"a=~"[[:digit:]]""#,
    r#"a=~"[[:^alpha:]]""#,
    r#"a=~"\\pL+""#,
    r#"a=~"\\p{Han}+""#,
    r#"a=~"\\p{Greek}""#,
    r#"a=~"\\PL""#,
    r#"a=~"\\p{Foo}""#,
    r#"a=~".""#,
    r#"a=~"...""#,
    r#"a=~"[^a]""#,
    r#"a=~"[^\n]""#,
    r#"a=~"\\.""#,
    r#"a=~"a.b""#,
    r#"a=~"a\\.b""#,
    r#"a=~"(a)(b)""#,
    r#"a=~"(?P<x>a)""#,
    r#"a=~"(?:a|b)+""#,
    r#"a=~"a+?""#,
    r#"a=~"\\x41""#,
    r#"a=~"\\x{1F600}""#,
    r#"a=~"\\x{110000}""#,
    r#"a=~"\\z""#,
    r#"a=~"\\A""#,
    r#"a=~"a\\z""#,
    r#"a=~"[a-]""#,
    r#"a=~"[-a]""#,
    r#"a=~"[]a]""#,
    r#"a=~"[^]a]""#,
    r#"a=~"[z-a]""#,
    r#"a=~"[a-c]+""#,
    r#"a=~"[\\]]""#,
    r#"a=~"[\"]""#,
    r#"a=~"\"""#,
    r#"a=~"\\""#,
    r#"a=~"\\\\""#,
    r#"a=~"\\n""#,
    r#"a=~"\\t""#,
    r#"a=~"\\(""#,
    r#"a=~"\\*""#,
    r#"a=~"\\+""#,
    r#"a=~"\\$""#,
    r#"a=~"\\^""#,
    r#"a=~"\\|""#,
    r#"a=~"\\{""#,
    r#"a=~"\\}""#,
    r#"a=~"\\-""#,
    r#"a=~"\\#""#,
    r#"a=~"\\1""#,
    r#"a=~"(a)\\1""#,
    r#"a=~"\\8""#,
    r#"a=~"\\q""#,
    r#"a=~"\\é""#,
    r#"a=~"x\""#,
    r#"a=~x\"#,
    r#"a=~"(?i""#,
    r#"a=~"(?z)a""#,
    r#"a=~"(?=a)""#,
    r#"a=~"(?!a)""#,
    r#"a=~"(?<=a)""#,
    r#"a=~"((((a))))""#,
    r#"a!~"[""#,
    r#"a!~"a|b""#,
    r#"a!~"^$""#,
    r#"a=~"\\d""#,
    r#"a=~"\\d+""#,
    r#"a=~"\\D""#,
    r#"a=~"\d""#,
    r#"a=~"[\\d]""#,
    r#"a=~"\\b""#,
];

// Regex-engine differences: Go's RE2 (`regexp`, what Alertmanager compiles `^(?:re)$` with)
// and Rust's `regex` disagree on these, so they are kept out of the tables. Each was checked
// against the oracle (Alertmanager v0.28.1, Go 1.26):
//
// | regex                 | Go (Alertmanager)                          | Rust (ours)                    |
// |-----------------------|--------------------------------------------|--------------------------------|
// (`\d` `\w` `\s` `\b` and their negations are ASCII in Go and Unicode in Rust; ours
// translates them to Go's meaning before compiling, so they are in the tables above.)
// | `\b{start}`, `\<a\>`  | `\b{start}` / `\<` `\>`: literal or error  | word-boundary assertions       |
// | `a**` `a+*` `a++`     | error: invalid nested repetition operator  | accepted                       |
// | `a{1001}`, `(a{500}){3}` | error: invalid repeat count (> 1000)    | accepted                       |
// | `a{`, `{`, `a{,2}`    | literal braces                             | error                          |
// | `[[:foo:]]`           | error: invalid character class range       | accepted (nested class)        |
// | `[[]`                 | class of `[`                               | error (unclosed nested class)  |
// | `[a[b]]`              | class `[a[b]` then a literal `]`           | nested class: `a` or `b`       |
// | `[a&&b]` `[a~~b]`     | literal `&`, `~`                           | class intersection / sym. diff |
// | `[a--b]`              | error: invalid character class range       | class difference               |
// | `\Qa.b\E`             | quoted literal `a.b`                       | error                          |
// | `\0` `\01`            | octal escape                               | error                          |
// | `\u0041` `\u{41}`     | error: invalid escape sequence             | code point escape              |
// | `\p{sc=Greek}`        | error                                      | accepted                       |
// | `(?x)a b` `(?R)a`     | error: unsupported Perl syntax             | verbose / CRLF mode            |
// | `(?i-i)a` `(?)`       | accepted                                   | error                          |
// | `(?P<x>a)(?P<x>b)`    | accepted (duplicate group names)           | error                          |

/// Label values every matcher is tried against (under the matcher's own label name).
const VALUES: &[&str] = &[
    "٣",
    "42",
    "é",
    "aé",
    "a\u{a0}b",
    "a\u{b}b",
    "a b",
    "a_b",
    "",
    "x",
    "a",
    "b",
    "ab",
    "aa",
    "aaa",
    "crit",
    "critical",
    "page",
    "xpage",
    "CRIT",
    "warning",
    "KafkaBrokerDown",
    "kafka-12:9404",
    "kafka-12:94045",
    "kafka-2.example.com:9404",
    "=b",
    "b c",
    " ",
    " b ",
    "\t",
    "\n",
    "x\ny",
    "\"",
    "\\",
    "\\d",
    "1",
    "12",
    "-1",
    "A",
    "é",
    "É",
    "日本語",
    "😀",
    "k",
    "K",
    "\u{212A}",
    "\u{0B}",
    "\u{A0}",
    ".",
    "a.b",
    "a|b",
    "(",
    "[",
    "_",
    "\r",
    "\u{0C}",
    "\u{1}",
    "\u{2003}",
];

/// Go's `\s`, which Alertmanager's matcher regex trims.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ')
}

/// Label sets to evaluate `matcher` against: the label missing, the label with each of
/// [`VALUES`], and the label with the value we parsed and variants of it.
fn label_sets(matcher: &str, parsed: Option<&Matcher>) -> Vec<Labels> {
    let name: String = matcher
        .trim_start_matches(is_go_space)
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let name = if name.is_empty() {
        "a".to_string()
    } else {
        name
    };
    let mut values: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
    if let Some(m) = parsed {
        values.push(m.value.clone());
        values.push(format!("{}x", m.value));
        values.push(format!("x{}", m.value));
    }
    let mut sets = vec![Labels::new(), labels(&[("alertname", "KafkaBrokerDown")])];
    for v in values {
        let mut l = labels(&[("alertname", "KafkaBrokerDown"), ("job", "kafka")]);
        l.insert(name.clone(), v);
        sets.push(l);
    }
    sets
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex => "=~",
        MatchOp::NotRegex => "!~",
    }
}

/// A tiny deterministic PRNG (xorshift64), so the generated cases are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// `n` matcher strings built from tricky pieces, with a fixed seed.
fn generated_cases(n: usize) -> Vec<String> {
    const SPACE: &[&str] = &[
        "", "", "", "", " ", "  ", "\t", "\n", "\r\n", "\u{0C}", "\u{0B}", "\u{A0}",
    ];
    const NAMES: &[&str] = &[
        "a",
        "a",
        "severity",
        "job:rate5m",
        "_x",
        "__name__",
        "a1",
        ":",
        "1a",
        "a-b",
        "",
        "é",
        "a b",
    ];
    const OPS: &[&str] = &[
        "=", "=", "!=", "=~", "=~", "!~", "!~", "==", "!", "~", "=!", "=~~", "",
    ];
    // Quantifiers only come attached to an atom: Go rejects stacked ones (`a**`, see
    // the regex-engine differences after CASES) and Rust does not.
    const PIECES: &[&str] = &[
        "a", "b", "x", "crit", "page", "\"", "\"", "\\", "\\", "\\\"", "\\\\", "\\n", "\\d", "n",
        "d", ".", ".*", ".+", "a?", "b*", "x+", "a*?", "|", "|", "(", ")", "()", "(a)", "(a)?",
        "[ab]", "[^a]", "[a-c]", "[ab]{2}", "^", "$", "é", "日", "😀", "\n", " ", "\t", ",", "=",
        "~", "!", "1", "K", "-", ":", "'",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            let mut s = String::new();
            s += rng.pick(SPACE);
            s += rng.pick(NAMES);
            s += rng.pick(SPACE);
            s += rng.pick(OPS);
            s += rng.pick(SPACE);
            let quoted = rng.below(3) != 0;
            if quoted {
                s.push('"');
            }
            for _ in 0..rng.below(7) {
                s += rng.pick(PIECES);
            }
            if quoted && rng.below(6) != 0 {
                s.push('"');
            }
            s += rng.pick(SPACE);
            s
        })
        .collect()
}

/// Every case against the oracle; reports all disagreements at once.
fn check_matchers(cases: &[String]) -> usize {
    let parsed: Vec<_> = cases.iter().map(|c| Matcher::parse(c)).collect();
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for (case, p) in cases.iter().zip(&parsed) {
        for l in label_sets(case, p.as_ref().ok()) {
            requests.push(json!({ "matcher": case, "labels": l }));
            ours.push(match p {
                Err(_) => json!({ "ok": false }),
                Ok(m) => json!({
                    "ok": true,
                    "name": m.name,
                    "type": op_str(m.op),
                    "value": m.value,
                    "matches": m.matches(&l),
                }),
            });
        }
    }
    let theirs = ask(&requests);
    // Disagreements grouped by matcher: (matcher, first disagreement, how many).
    let mut failures: Vec<(String, String, usize)> = Vec::new();
    for ((req, ours), theirs) in requests.iter().zip(&ours).zip(&theirs) {
        let agree = if theirs["ok"] == json!(false) {
            ours["ok"] == json!(false)
        } else {
            ["ok", "name", "type", "value", "matches"]
                .iter()
                .all(|k| ours[k] == theirs[k])
        };
        if agree {
            continue;
        }
        let matcher = req["matcher"].as_str().unwrap_or_default().to_string();
        match failures.last_mut() {
            Some((m, _, n)) if *m == matcher => *n += 1,
            _ => {
                let first = format!(
                    "labels {}\n    alertmanager: {theirs}\n    ours:         {ours}",
                    req["labels"]
                );
                failures.push((matcher, first, 1));
            }
        }
    }
    let evaluations: usize = failures.iter().map(|f| f.2).sum();
    let shown: Vec<String> = failures
        .iter()
        .take(60)
        .map(|(m, first, n)| format!("matcher {m:?} ({n} label sets), first: {first}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} matchers ({evaluations} of {} evaluations) disagree with Alertmanager{}:\n{}",
        failures.len(),
        cases.len(),
        requests.len(),
        if failures.len() > shown.len() {
            " (first 60 shown)"
        } else {
            ""
        },
        shown.join("\n")
    );
    requests.len()
}

#[test]
fn hand_written_matchers_agree_with_alertmanager() {
    let cases: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let n = check_matchers(&cases);
    eprintln!("{} cases, {n} evaluations", cases.len());
}

#[test]
fn generated_matchers_agree_with_alertmanager() {
    let cases = generated_cases(400);
    let n = check_matchers(&cases);
    eprintln!("{} cases, {n} evaluations", cases.len());
}

// ---------------------------------------------------------------------------------------------
// Fingerprints.
// ---------------------------------------------------------------------------------------------

/// The alerts' labels in the fixture `alertmanager-0.25/firing-two-brokers.json`, with the
/// fingerprints Alertmanager 0.25 sent for them.
fn fixture_alerts() -> Vec<(Labels, &'static str)> {
    let broker = |instance| {
        labels(&[
            ("alertname", "KafkaBrokerDown"),
            ("cluster", "prod-east"),
            ("instance", instance),
            ("job", "kafka"),
            ("severity", "critical"),
        ])
    };
    vec![
        (broker("kafka-2.example.com:9404"), "4bc93ef1eb7b9805"),
        (broker("kafka-3.example.com:9404"), "41861009e54d0b9e"),
    ]
}

#[test]
fn fixture_fingerprints_are_alertmanagers() {
    for (l, want) in fixture_alerts() {
        assert_eq!(fingerprint(&l), want, "fingerprint of {l:?}");
    }
}

#[test]
fn fingerprints_agree_with_alertmanager() {
    const KEYS: &[&str] = &[
        "alertname",
        "a",
        "b",
        "ab",
        "_",
        ":",
        "job:rate5m",
        "__name__",
        "instance",
        "severity",
    ];
    const VALS: &[&str] = &[
        "",
        "x",
        "a",
        "b",
        "ab",
        "critical",
        "é",
        "日本語",
        "😀",
        "\n",
        "\u{ff}",
        " ",
        "\"",
        "\\",
        "=",
        "\u{0}",
        "kafka-2.example.com:9404",
    ];
    let mut sets: Vec<Labels> = fixture_alerts().into_iter().map(|(l, _)| l).collect();
    sets.push(Labels::new());
    sets.push(labels(&[("a", "")]));
    sets.push(labels(&[("", "")]));
    sets.push(labels(&[("a", "b")]));
    sets.push(labels(&[("ab", "")]));
    sets.push(labels(&[("a", "b"), ("", "")]));
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    for _ in 0..300 {
        let mut l = Labels::new();
        for _ in 0..rng.below(6) {
            let v: String = (0..rng.below(3)).map(|_| rng.pick(VALS)).collect();
            l.insert(rng.pick(KEYS).to_string(), v);
        }
        sets.push(l);
    }
    let requests: Vec<Value> = sets.iter().map(|l| json!({ "fingerprint": l })).collect();
    let theirs = ask(&requests);
    let mut failures = Vec::new();
    for (l, theirs) in sets.iter().zip(&theirs) {
        let ours = fingerprint(l);
        if theirs["fingerprint"] != json!(ours) {
            failures.push(format!("{l:?}: alertmanager {theirs}, ours {ours}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fingerprints disagree with Alertmanager:\n{}",
        failures.len(),
        sets.len(),
        failures.join("\n")
    );
    for (l, want) in fixture_alerts() {
        let i = sets.iter().position(|s| *s == l).expect("fixture set");
        assert_eq!(theirs[i]["fingerprint"], json!(want), "oracle on {l:?}");
    }
}
