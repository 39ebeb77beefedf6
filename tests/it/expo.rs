//! The exposition parser (`kafka_healing::expo`): a corpus of tricky cases and of errors with
//! exact output, a differential test against `prometheus-parse`, property tests (round trip,
//! never panics) and a realistic JMX-exporter fixture.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kafka_healing::expo::{Entry, ExpoError, MetricType, Parser, Sample, parse, parse_into};
use proptest::prelude::*;

/// The JMX-exporter fixture (`tests/data/expo/gen_jmx.py` made it).
const JMX: &str = include_str!("../data/expo/jmx_kafka.prom");
/// The number of sample lines in [`JMX`], as printed by `gen_jmx.py`.
const JMX_SAMPLES: usize = 2101;

/// A sample as plain data, for comparisons.
#[derive(Debug, Clone, PartialEq)]
struct Owned {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn owned(s: &Sample<'_>) -> Owned {
    Owned {
        name: s.name.to_string(),
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: s.value,
        timestamp_ms: s.timestamp_ms,
    }
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) -> Owned {
    Owned {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        timestamp_ms: ts,
    }
}

/// Same samples, NaN equal to NaN.
fn same(a: &[Owned], b: &[Owned]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.labels == y.labels
                && x.timestamp_ms == y.timestamp_ms
                && (x.value == y.value && x.value.is_sign_negative() == y.value.is_sign_negative()
                    || x.value.is_nan() && y.value.is_nan())
        })
}

fn parsed(input: &str) -> Vec<Owned> {
    match parse(input) {
        Ok(v) => v.iter().map(owned).collect(),
        Err(e) => panic!("{input:?}: {e}"),
    }
}

fn check(input: &str, expected: &[Owned]) {
    let got = parsed(input);
    assert!(
        same(&got, expected),
        "{input:?}\n got {got:?}\nwant {expected:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------

#[test]
fn escapes_each_one() {
    check(
        r#"m{a="back\\slash"} 1"#,
        &[sample("m", &[("a", "back\\slash")], 1.0, None)],
    );
    check(
        r#"m{a="say \"hi\""} 1"#,
        &[sample("m", &[("a", "say \"hi\"")], 1.0, None)],
    );
    check(
        r#"m{a="two\nlines"} 1"#,
        &[sample("m", &[("a", "two\nlines")], 1.0, None)],
    );
    // Other escapes are kept verbatim, as Prometheus's replacer does.
    check(
        r#"m{a="tab\there"} 1"#,
        &[sample("m", &[("a", "tab\\there")], 1.0, None)],
    );
    check(
        r#"m{a="\\\"\n\\n"} 1"#,
        &[sample("m", &[("a", "\\\"\n\\n")], 1.0, None)],
    );
    check(
        r#"m{a="é\"ü"} 1"#,
        &[sample("m", &[("a", "é\"ü")], 1.0, None)],
    );
}

#[test]
fn zero_copy_unless_escaped() {
    let body = "m{plain=\"x y\",esc=\"a\\\\b\"} 1\n";
    let s = parse(body).unwrap();
    assert!(matches!(s[0].labels[0].1, Cow::Borrowed("x y")));
    assert!(matches!(&s[0].labels[1].1, Cow::Owned(v) if v == "a\\b"));
    // Names and borrowed values point into the body itself.
    let range = body.as_bytes().as_ptr_range();
    assert!(range.contains(&s[0].name.as_ptr()));
    assert!(range.contains(&s[0].labels[0].0.as_ptr()));
    assert!(range.contains(&s[0].labels[0].1.as_ptr()));
}

#[test]
fn special_characters_inside_values() {
    check(
        r##"m{a="}",b=",",c="=",d="#",e="with spaces",f="{x=\"1\",y}"} 2"##,
        &[sample(
            "m",
            &[
                ("a", "}"),
                ("b", ","),
                ("c", "="),
                ("d", "#"),
                ("e", "with spaces"),
                ("f", "{x=\"1\",y}"),
            ],
            2.0,
            None,
        )],
    );
    check(r#"m{a=""} 1"#, &[sample("m", &[("a", "")], 1.0, None)]);
    check(
        r##"m{a="# TYPE x gauge"} 1"##,
        &[sample("m", &[("a", "# TYPE x gauge")], 1.0, None)],
    );
}

#[test]
fn names_with_colons_and_label_set_shapes() {
    check(
        "job:http_requests:rate5m{a=\"1\"} 3\n:leading 1\n_x 2\n",
        &[
            sample("job:http_requests:rate5m", &[("a", "1")], 3.0, None),
            sample(":leading", &[], 1.0, None),
            sample("_x", &[], 2.0, None),
        ],
    );
    check("m{} 1", &[sample("m", &[], 1.0, None)]);
    check("m{a=\"1\",} 1", &[sample("m", &[("a", "1")], 1.0, None)]);
    check(
        "m { a = \"1\" , b=\"2\" , } 1",
        &[sample("m", &[("a", "1"), ("b", "2")], 1.0, None)],
    );
    check("m{a=\"1\"}7", &[sample("m", &[("a", "1")], 7.0, None)]);
    // Labels keep their written order.
    check(
        "m{z=\"1\",a=\"2\"} 1",
        &[sample("m", &[("z", "1"), ("a", "2")], 1.0, None)],
    );
}

#[test]
fn special_values() {
    let got = parsed("a NaN\nb +Inf\nc -Inf\nd Inf\ne inf\nf -inf\ng nan\nh INF\ni Infinity\n");
    let values: Vec<f64> = got.iter().map(|s| s.value).collect();
    assert!(values[0].is_nan() && values[6].is_nan());
    assert_eq!(values[1], f64::INFINITY);
    assert_eq!(values[2], f64::NEG_INFINITY);
    assert_eq!(values[3], f64::INFINITY);
    assert_eq!(values[4], f64::INFINITY);
    assert_eq!(values[5], f64::NEG_INFINITY);
    assert_eq!(values[7], f64::INFINITY);
    assert_eq!(values[8], f64::INFINITY);
    let got = parsed("a 1.2345E7\nb -0.0\nc 1e-3\nd .5\ne +12\n");
    let values: Vec<f64> = got.iter().map(|s| s.value).collect();
    assert_eq!(values, [12_345_000.0, -0.0, 0.001, 0.5, 12.0]);
    assert!(values[1].is_sign_negative());
}

#[test]
fn timestamps() {
    check(
        "a 1 1700000000000\nb{x=\"y\"} 2 -5\nc 3 +7\nd 4 1700000000000   \n",
        &[
            sample("a", &[], 1.0, Some(1_700_000_000_000)),
            sample("b", &[("x", "y")], 2.0, Some(-5)),
            sample("c", &[], 3.0, Some(7)),
            sample("d", &[], 4.0, Some(1_700_000_000_000)),
        ],
    );
}

#[test]
fn blank_lines_comments_whitespace_crlf() {
    let body = "\r\n\n  \n# HELP a The a.\r\n# TYPE a counter\r\n# just a comment with {\"}\r\n#no space\n  a 1  \r\n\ta\t2\t\r\nb{x=\"1\"} 3 \t\n\n";
    check(
        body,
        &[
            sample("a", &[], 1.0, None),
            sample("a", &[], 2.0, None),
            sample("b", &[("x", "1")], 3.0, None),
        ],
    );
    assert!(parse("").unwrap().is_empty());
    assert!(parse("\n\n\r\n").unwrap().is_empty());
    assert!(parse("# only a comment").unwrap().is_empty());
    // No newline at the end.
    check("a 1", &[sample("a", &[], 1.0, None)]);
}

#[test]
fn openmetrics_eof_and_exemplars() {
    let body = "# TYPE a counter\n# UNIT a seconds\na_total 1 # {trace_id=\"abc\"} 0.5 1700000000.1\na_created 1700000000\n# EOF\n";
    check(
        body,
        &[
            sample("a_total", &[], 1.0, None),
            sample("a_created", &[], 1.7e9, None),
        ],
    );
    // Blank lines after `# EOF` are fine; anything else is not.
    check("a 1\n# EOF\n\n  \n", &[sample("a", &[], 1.0, None)]);
    check("a 1\n# EOF", &[sample("a", &[], 1.0, None)]);
    check("a 1\r\n# EOF\r\n", &[sample("a", &[], 1.0, None)]);
}

#[test]
fn streaming_api_yields_metadata() {
    let body =
        "# HELP a Help with \\\\ and \\n.\n# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b info\nb_info 1\n";
    let entries: Vec<Entry<'_>> = Parser::new(body).collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries[0],
        Entry::Help {
            name: "a",
            text: Cow::Owned("Help with \\ and \n.".into())
        }
    );
    assert_eq!(
        entries[1],
        Entry::Type {
            name: "a",
            kind: MetricType::Gauge
        }
    );
    assert!(matches!(&entries[2], Entry::Sample(s) if s.name == "a" && s.value == 1.0));
    assert_eq!(
        entries[3],
        Entry::Type {
            name: "b",
            kind: MetricType::Info
        }
    );
    // It stops after the first error.
    let mut p = Parser::new("a 1\nb x\nc 2\n");
    assert!(matches!(p.next(), Some(Ok(Entry::Sample(_)))));
    assert!(matches!(p.next(), Some(Err(ExpoError { line: 2, .. }))));
    assert!(p.next().is_none());
}

#[test]
fn parse_into_reuses_and_appends() {
    let first = "a 1\nb 2\n";
    let mut out = Vec::with_capacity(16);
    parse_into(first, &mut out).unwrap();
    parse_into(first, &mut out).unwrap();
    assert_eq!(out.len(), 4);
    assert!(out.capacity() >= 16);
    // On error, the samples before the bad line are kept.
    let mut out = Vec::new();
    let err = parse_into("a 1\nb 2\nc oops\nd 4\n", &mut out).unwrap_err();
    assert_eq!(err.line, 3);
    assert_eq!(out.len(), 2);
}

#[test]
fn errors_with_line_numbers_and_messages() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\nb{x=\"open} 1\n", 2, "unterminated label value"),
        ("a{x=\"ends with backslash\\", 1, "unterminated label value"),
        ("\n\na abc\n", 3, "invalid value `abc`"),
        ("a{x=\"1\",x=\"2\"} 1\n", 1, "duplicate label `x`"),
        ("a -NaN\n", 1, "invalid value `-NaN`"),
        ("a 1_000\n", 1, "invalid value `1_000`"),
        ("a 0x1p3\n", 1, "invalid value `0x1p3`"),
        ("a 1e999\n", 1, "value `1e999` out of range"),
        ("a\n", 1, "missing value for `a`"),
        ("a{x=\"1\"}\n", 1, "missing value for `a`"),
        ("a 1 1.5\n", 1, "invalid timestamp `1.5`"),
        ("a 1 123 456\n", 1, "unexpected `456` after the timestamp"),
        (
            "a{x=\"1\" 1\n",
            1,
            "expected `,` or `}` after the value of label `x`, found `1`",
        ),
        (
            "a{x=\"1\"\n",
            1,
            "unterminated label set: expected `,` or `}`",
        ),
        ("a{\n", 1, "unterminated label set: expected `}`"),
        ("a{x} 1\n", 1, "expected `=` after label name `x`"),
        (
            "a{x=1} 1\n",
            1,
            "expected `\"` to open the value of label `x`",
        ),
        ("a{,} 1\n", 1, "invalid label name at `,} 1`"),
        ("a{x=\"1\",,} 1\n", 1, "invalid label name at `,} 1`"),
        ("a{1x=\"1\"} 1\n", 1, "invalid label name at `1x=\"1\"} 1`"),
        ("a{x:y=\"1\"} 1\n", 1, "expected `=` after label name `x`"),
        ("{x=\"1\"} 1\n", 1, "missing metric name before `{`"),
        ("1abc 1\n", 1, "invalid metric name at `1abc 1`"),
        (
            "a-b 1\n",
            1,
            "invalid character in metric name `a` at `-b 1`",
        ),
        (
            "a.b 1\n",
            1,
            "invalid character in metric name `a` at `.b 1`",
        ),
        ("# TYPE a countr\n", 1, "invalid metric type `countr`"),
        (
            "# TYPE a gauge extra\n",
            1,
            "unexpected `extra` after the metric type",
        ),
        (
            "# HELP 9a text\n",
            1,
            "invalid metric name after `# HELP`: `9a text`",
        ),
        ("a 1\n# EOF\nb 2\n", 3, "unexpected content after `# EOF`"),
        ("a 1\r\nb 2\r\n\r\nc\t\"\r\n", 4, "invalid value `\"`"),
        ("a 1\rb 2\n", 1, "invalid value `1\\rb`"),
    ];
    for (input, line, message) in cases {
        let err = parse(input).expect_err(input);
        assert_eq!(
            (err.line, err.message.as_str()),
            (*line, *message),
            "input {input:?}"
        );
        assert_eq!(err.to_string(), format!("line {line}: {message}"));
    }
    // Long tokens are cut in messages.
    let long = format!("a {}\n", "x".repeat(1000));
    let err = parse(&long).unwrap_err();
    assert_eq!(err.message, format!("invalid value `{}…`", "x".repeat(40)));
}

// ---------------------------------------------------------------------------------------
// The JMX-exporter fixture
// ---------------------------------------------------------------------------------------

#[test]
fn jmx_fixture_parses() {
    assert!(JMX.len() > 150_000, "fixture is {} bytes", JMX.len());
    let samples = parse(JMX).unwrap();
    assert_eq!(samples.len(), JMX_SAMPLES);
    let lag = samples
        .iter()
        .filter(|s| s.name == "kafka_server_fetcherlagmetrics_consumerlag")
        .count();
    assert_eq!(lag, 3 * 10 * 12);
    let p99 = samples
        .iter()
        .find(|s| {
            s.name == "kafka_network_requestmetrics_totaltimems"
                && s.labels
                    .iter()
                    .any(|(k, v)| *k == "quantile" && v == "0.99")
        })
        .unwrap();
    assert_eq!(p99.labels[0].0, "request");
    assert!(samples.iter().any(|s| s.value.is_nan()));
    // Every value is borrowed: the fixture has no escapes.
    assert!(
        samples
            .iter()
            .all(|s| s.labels.iter().all(|(_, v)| matches!(v, Cow::Borrowed(_))))
    );
    let meta = Parser::new(JMX)
        .filter(|e| matches!(e, Ok(Entry::Help { .. } | Entry::Type { .. })))
        .count();
    assert_eq!(meta, JMX.lines().filter(|l| l.starts_with("# ")).count());
}

// ---------------------------------------------------------------------------------------
// Differential test against `prometheus-parse`
// ---------------------------------------------------------------------------------------
//
// `prometheus-parse` 0.2.5 is regex-based and is wrong on much of the format, so the
// comparison is limited to what it handles: names matching `\w+` (no `:`), label values
// without `,`, `=`, `}`, `"` or escapes, no `{}`, no HELP/TYPE for histograms or summaries
// (it folds those into one sample per series). Where it is wrong:
// - a `,` or `=` in a label value splits the pair (the label is dropped or truncated);
// - a `}` in a label value ends the label set (the line is then misread or dropped);
// - escapes are not unescaped (`\"` stays as a backslash and a quote), and trimming the
//   quotes also eats an escaped quote at the end of a value;
// - names with `:` (recording rules) and `{}` lines are silently dropped;
// - an invalid value or timestamp silently drops the line or replaces the time with "now";
// - duplicate labels keep the last value where Prometheus rejects the series.

/// Our samples as (name, sorted labels, value), to compare with its `HashMap` labels.
type Flat = (String, BTreeMap<String, String>, f64);

fn ours_flat(input: &str) -> Vec<Flat> {
    parse(input)
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (s.name.to_string(), labels, s.value)
        })
        .collect()
}

fn theirs_flat(input: &str) -> Vec<Flat> {
    let lines = input.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected grouped value {other:?}"),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (s.metric, labels, value)
        })
        .collect()
}

fn same_flat(a: &[Flat], b: &[Flat]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && x.1 == y.1 && (x.2 == y.2 || x.2.is_nan() && y.2.is_nan()))
}

#[test]
fn differential_on_the_jmx_fixture() {
    let ours = ours_flat(JMX);
    let theirs = theirs_flat(JMX);
    assert_eq!(ours.len(), JMX_SAMPLES);
    assert!(same_flat(&ours, &theirs));
}

#[test]
fn where_prometheus_parse_is_wrong_and_we_are_right() {
    let body = "job:req:rate5m{path=\"/a,b=c}\",code=\"200\"} 1\n";
    let ours = parsed(body);
    assert!(same(
        &ours,
        &[sample(
            "job:req:rate5m",
            &[("path", "/a,b=c}"), ("code", "200")],
            1.0,
            None
        )]
    ));
    // It drops the line: the `:` name does not match its `\w+`.
    assert!(theirs_flat(body).is_empty());
    // Without the colon, the `}` inside the value ends its label set early, and it drops
    // the line too.
    assert!(theirs_flat(&body.replace("job:req:rate5m", "req")).is_empty());
    // Without the `}`, it splits the value at the `,` and the `=`: `path` becomes `"/a` and
    // a label `b="c"` appears that is not in the input.
    let body = "req{path=\"/a,b=c\",code=\"200\"} 1\n";
    assert_eq!(parsed(body)[0].labels[0], ("path".into(), "/a,b=c".into()));
    let theirs = theirs_flat(body);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].1.get("path").map(String::as_str), Some("/a"));
    assert_eq!(theirs[0].1.get("b").map(String::as_str), Some("c"));
    // Escapes: it keeps the backslashes, and trimming quotes eats the escaped last one.
    let body = "m{a=\"say \\\"hi\\\"\"} 1\n";
    assert_eq!(parsed(body)[0].labels[0].1, "say \"hi\"");
    assert_eq!(theirs_flat(body)[0].1["a"], "say \\\"hi\\");
}

/// Names, label values and values `prometheus-parse` handles correctly.
fn simple_body() -> impl Strategy<Value = String> {
    let label = ("[a-z_][a-z0-9_]{0,8}", "[a-zA-Z0-9 ._/-]{0,12}");
    let value = prop_oneof![
        any::<i32>().prop_map(|v| v.to_string()),
        (-1e12f64..1e12).prop_map(|v| format!("{v:e}")),
        Just("NaN".to_string()),
        Just("+Inf".to_string()),
        Just("-Inf".to_string()),
    ];
    let line = (
        "[a-zA-Z_][a-zA-Z0-9_]{0,30}",
        prop::collection::btree_map(label.0, label.1, 0..5),
        value,
        any::<bool>(),
        prop::option::of(0i64..4_000_000_000_000),
    );
    prop::collection::vec(line, 0..30).prop_map(|lines| {
        let mut body = String::new();
        for (name, labels, value, trailing_comma, ts) in lines {
            body.push_str(&name);
            if !labels.is_empty() {
                body.push('{');
                let pairs: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                body.push_str(&pairs.join(","));
                if trailing_comma {
                    body.push(',');
                }
                body.push('}');
            }
            body.push(' ');
            body.push_str(&value);
            if let Some(ts) = ts {
                body.push_str(&format!(" {ts}"));
            }
            body.push('\n');
        }
        body
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn differential_against_prometheus_parse(body in simple_body()) {
        let ours = ours_flat(&body);
        let theirs = theirs_flat(&body);
        prop_assert!(same_flat(&ours, &theirs), "{body}\nours {ours:?}\ntheirs {theirs:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Round trip and robustness properties
// ---------------------------------------------------------------------------------------

/// Escapes a label value the way exporters must.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:e}")
    }
}

/// A series plus how to lay it out (whitespace, trailing comma, line ending).
fn series() -> impl Strategy<Value = (Owned, bool, bool, bool)> {
    let value = prop_oneof![
        4 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
    ];
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,40}",
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", any::<String>(), 0..6),
        value,
        prop::option::of(any::<i64>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, labels, value, ts, comma, crlf, spaces)| {
            let s = Owned {
                name,
                labels: labels.into_iter().collect(),
                value,
                timestamp_ms: ts,
            };
            (s, comma, crlf, spaces)
        })
}

fn render(series: &[(Owned, bool, bool, bool)]) -> String {
    let mut body = String::from("# HELP x generated\n");
    for (s, comma, crlf, spaces) in series {
        let sp = if *spaces { " \t " } else { " " };
        body.push_str(&s.name);
        if !s.labels.is_empty() || *comma {
            body.push('{');
            let pairs: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            body.push_str(&pairs.join(","));
            if *comma && !s.labels.is_empty() {
                body.push(',');
            }
            body.push('}');
        }
        body.push_str(sp);
        body.push_str(&render_value(s.value));
        if let Some(ts) = s.timestamp_ms {
            body.push_str(sp);
            body.push_str(&ts.to_string());
        }
        if *spaces {
            body.push(' ');
        }
        body.push_str(if *crlf { "\r\n" } else { "\n" });
        if *spaces {
            body.push_str("\n# a comment\n");
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn round_trip(series in prop::collection::vec(series(), 0..20)) {
        let body = render(&series);
        let want: Vec<Owned> = series.iter().map(|(s, ..)| s.clone()).collect();
        let got = parsed(&body);
        prop_assert!(same(&got, &want), "{body:?}\n got {got:?}\nwant {want:?}");
        let mut with_eof = body.clone();
        with_eof.push_str("# EOF\n");
        prop_assert!(same(&parsed(&with_eof), &want));
    }

    #[test]
    fn never_panics_on_arbitrary_strings(s in any::<String>()) {
        let _ = parse(&s);
        let _ = Parser::new(&s).count();
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_format_like_text(
        s in r#"([a-z:_{}="\\,# \t\r\n0-9.eE+-]|NaN|Inf|HELP|TYPE|EOF|é|\u{2028}){0,200}"#
    ) {
        match parse(&s) {
            Ok(_) => {}
            // Errors name a line that exists.
            Err(e) => prop_assert!(e.line >= 1 && e.line <= s.split('\n').count()),
        }
    }
}
