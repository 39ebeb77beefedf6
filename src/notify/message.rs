//! Composing messages: subject, plain text and HTML from handlebars templates (built in,
//! or files named in the config). Alert data is HTML-escaped in the HTML part and kept
//! as is in the text part; the subject loses every control character, so no alert label
//! can ever add a header. Links are only ever `http`/`https`, and the silence link only
//! points at a configured Alertmanager: whatever else a payload says is shown as text.

use std::path::Path;

use handlebars::{Handlebars, no_escape};
use serde::Serialize;

use crate::config::TemplateFiles;
use crate::journal::{StepRecord, StepStatus};

const SUBJECT: &str = include_str!("templates/subject.hbs");
const TEXT: &str = include_str!("templates/text.hbs");
const HTML: &str = include_str!("templates/html.hbs");

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One-line subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// One `name = value` pair (labels, annotations), in order.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    /// Name.
    pub name: String,
    /// Value (untrusted).
    pub value: String,
}

/// The alert as shown in a message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertView {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels in name order.
    pub labels: Vec<Pair>,
    /// Annotations in name order.
    pub annotations: Vec<Pair>,
    /// startsAt.
    pub starts_at: String,
    /// generatorURL as a link: set only when it is an `http`/`https` URL (normalised).
    pub generator_url: String,
    /// generatorURL as text, when it is not a safe link (`javascript:…`): never an `href`.
    pub generator_url_text: String,
    /// Fingerprint.
    pub fingerprint: String,
}

/// Rule name and description.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleView {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// Execution facts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecutionView {
    /// Id.
    pub id: i64,
    /// Attempt number.
    pub attempt: u32,
    /// RFC 3339 start.
    pub started: String,
    /// Human duration.
    pub duration: String,
}

/// A step as shown in a message.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// 1-based position.
    pub number: u32,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Argv, quoted for reading.
    pub argv: String,
    /// `succeeded`, `failed`, `timed out`, `not run`.
    pub status: String,
    /// Exit code (non-zero only).
    pub exit_code: Option<i32>,
    /// Signal.
    pub signal: Option<i32>,
    /// Human duration.
    pub duration: String,
    /// `3 tries` when retried.
    pub attempts_note: String,
    /// Error text.
    pub error: Option<String>,
    /// Captured output.
    pub stdout: String,
    /// Whether cut.
    pub stdout_truncated: bool,
    /// Captured errors.
    pub stderr: String,
    /// Whether cut.
    pub stderr_truncated: bool,
}

/// Everything a template can use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageContext {
    /// `RECOVERED`, `FAILED`, `ESCALATED`, `INTERRUPTED`, `DRY-RUN`, `ESCALATION`, `NOTICE`
    /// (a notify-only runbook), `DIAGNOSED` (a non-disruptive runbook that succeeded).
    pub outcome: String,
    /// One sentence at the top.
    pub headline: String,
    /// Cluster name.
    pub cluster: String,
    /// Rule.
    pub rule: RuleView,
    /// Runbook name.
    pub runbook: String,
    /// Target node_id.
    pub target: Option<String>,
    /// Final status word.
    pub status: String,
    /// Why.
    pub reason: String,
    /// The execution, when the message reports one.
    pub execution: Option<ExecutionView>,
    /// The alert.
    pub alert: AlertView,
    /// Alertmanager link that opens a prefilled silence: only when the payload's
    /// externalURL is a configured Alertmanager URL.
    pub silence_url: Option<String>,
    /// The payload's externalURL, as text, when it is no configured Alertmanager URL.
    pub alertmanager_text: Option<String>,
    /// Steps as they ran.
    pub steps: Vec<StepView>,
    /// Policy decisions along the way.
    pub decisions: Vec<String>,
    /// What kafka-healing does next.
    pub next: String,
    /// The subject (for the HTML title; filled in by the composer).
    pub subject: String,
}

/// Why the message templates cannot be compiled or a message rendered.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A template file named in the config cannot be read.
    #[error("template {}: {source}", path.display())]
    Read {
        /// The file, joined to the config's directory.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A template (`subject`, `text` or `html`) is not valid handlebars.
    #[error("template `{name}`: {source}")]
    Compile {
        /// Which template.
        name: &'static str,
        /// What handlebars says (boxed: it is large).
        source: Box<handlebars::TemplateError>,
    },
    /// A template failed on this message's data.
    #[error("{part} template: {source}")]
    Render {
        /// Which part: `subject`, `text` or `html`.
        part: &'static str,
        /// What handlebars says (boxed: it is large).
        source: Box<handlebars::RenderError>,
    },
}

/// The templates, compiled.
#[derive(Debug, Clone)]
pub struct Composer {
    plain: Handlebars<'static>,
    html: Handlebars<'static>,
}

fn indent(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let text = h
        .param(0)
        .and_then(|v| v.value().as_str())
        .unwrap_or_default();
    let lines: Vec<String> = text
        .trim_end()
        .lines()
        .map(|l| format!("       {l}"))
        .collect();
    out.write(&lines.join("\n"))?;
    Ok(())
}

impl Composer {
    /// Compiles the built-in templates, replaced by the files in `files` (relative to
    /// `base`) where given.
    pub fn new(files: &TemplateFiles, base: &Path) -> Result<Composer, ComposeError> {
        let read = |p: &Option<std::path::PathBuf>,
                    builtin: &'static str|
         -> Result<String, ComposeError> {
            match p {
                None => Ok(builtin.to_string()),
                Some(p) => {
                    let full = if p.is_absolute() {
                        p.clone()
                    } else {
                        base.join(p)
                    };
                    std::fs::read_to_string(&full)
                        .map_err(|source| ComposeError::Read { path: full, source })
                }
            }
        };
        let mut plain = Handlebars::new();
        plain.register_escape_fn(no_escape);
        plain.register_helper("indent", Box::new(indent));
        let mut html = Handlebars::new();
        html.register_helper("indent", Box::new(indent));
        let compile = |reg: &mut Handlebars<'static>, name: &'static str, src: String| {
            reg.register_template_string(name, src)
                .map_err(|e| ComposeError::Compile {
                    name,
                    source: Box::new(e),
                })
        };
        compile(&mut plain, "subject", read(&files.subject, SUBJECT)?)?;
        compile(&mut plain, "text", read(&files.text, TEXT)?)?;
        compile(&mut html, "html", read(&files.html, HTML)?)?;
        Ok(Composer { plain, html })
    }

    /// Renders a message.
    pub fn render(&self, ctx: &MessageContext) -> Result<Rendered, ComposeError> {
        let failed = |part: &'static str| {
            move |e: handlebars::RenderError| ComposeError::Render {
                part,
                source: Box::new(e),
            }
        };
        let subject = self
            .plain
            .render("subject", ctx)
            .map_err(failed("subject"))?;
        let subject = one_line(&subject);
        let mut ctx = ctx.clone();
        ctx.subject = subject.clone();
        let text = self.plain.render("text", &ctx).map_err(failed("text"))?;
        let html = self.html.render("html", &ctx).map_err(failed("html"))?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// The subject as one line: control characters become spaces, runs of spaces one space.
pub fn one_line(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `url` as a link, when it is an absolute `http`/`https` URL with a host and no user
/// info (`http://trusted@evil/` misleads): its normalised form, safe in an `href`.
pub fn safe_link(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let plain = matches!(u.scheme(), "http" | "https")
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none();
    plain.then(|| u.to_string())
}

/// generatorURL as `(link, text)`: the link when [`safe_link`] allows it, the text
/// otherwise.
pub fn generator_link(url: &str) -> (String, String) {
    match safe_link(url) {
        Some(l) => (l, String::new()),
        None => (String::new(), url.to_string()),
    }
}

/// Whether `external` names the same Alertmanager as `configured`: scheme, host, port and
/// path (trailing `/` aside), with no user info, query or fragment.
fn same_alertmanager(external: &str, configured: &str) -> bool {
    let (Ok(e), Ok(c)) = (url::Url::parse(external), url::Url::parse(configured)) else {
        return false;
    };
    safe_link(external).is_some()
        && e.query().is_none()
        && e.fragment().is_none()
        && e.scheme() == c.scheme()
        && e.host_str() == c.host_str()
        && e.port_or_known_default() == c.port_or_known_default()
        && e.path().trim_end_matches('/') == c.path().trim_end_matches('/')
}

/// The silence link and the Alertmanager text of a message: the link (built on the
/// configured URL) when the payload's externalURL matches one of `configured`, otherwise
/// no link and the externalURL as text (none when it is empty).
pub fn silence_link(
    external_url: &str,
    configured: &[&str],
    labels: &[Pair],
) -> (Option<String>, Option<String>) {
    match configured
        .iter()
        .find(|c| same_alertmanager(external_url, c))
    {
        Some(c) => (silence_url(c, labels), None),
        None if external_url.is_empty() => (None, None),
        None => (None, Some(external_url.to_string())),
    }
}

/// Alertmanager's "new silence" link for a label set, when its external URL is known.
pub fn silence_url(external_url: &str, labels: &[Pair]) -> Option<String> {
    if external_url.is_empty() || labels.is_empty() {
        return None;
    }
    let matchers: Vec<String> = labels
        .iter()
        .map(|p| {
            format!(
                "{}=\"{}\"",
                p.name,
                p.value.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    let filter = format!("{{{}}}", matchers.join(", "));
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    Some(format!(
        "{}/#/silences/new?filter={encoded}",
        external_url.trim_end_matches('/')
    ))
}

/// A duration in readable form.
pub fn human_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A step record as shown in a message.
pub fn step_view(r: &StepRecord) -> StepView {
    let argv: Vec<String> = r
        .argv
        .iter()
        .map(|a| crate::runbook::display_arg(a))
        .collect();
    StepView {
        number: r.index + 1,
        name: r.name.clone(),
        kind: r.kind.clone(),
        argv: argv.join(" "),
        status: match r.status {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed out",
            StepStatus::NotRun => "not run",
        }
        .into(),
        exit_code: r.exit_code.filter(|c| *c != 0),
        signal: r.signal,
        duration: human_ms(r.duration_ms),
        attempts_note: if r.attempts > 1 {
            format!("{} tries", r.attempts)
        } else {
            String::new()
        },
        error: r.error.clone(),
        stdout: r.stdout.clone(),
        stdout_truncated: r.stdout_truncated,
        stderr: r.stderr.clone(),
        stderr_truncated: r.stderr_truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MessageContext {
        MessageContext {
            outcome: "RECOVERED".into(),
            headline: "kafka-2 recovered".into(),
            cluster: "prod-east".into(),
            rule: RuleView {
                name: "broker-down".into(),
                description: String::new(),
            },
            runbook: "restart".into(),
            target: Some("kafka-2".into()),
            status: "succeeded".into(),
            reason: "all 1 step(s) succeeded".into(),
            alert: AlertView {
                status: "firing".into(),
                labels: vec![Pair {
                    name: "x".into(),
                    value: "<script>alert(1)</script>\r\nBcc: evil@example.com".into(),
                }],
                ..Default::default()
            },
            next: "nothing".into(),
            ..Default::default()
        }
    }

    #[test]
    fn subject_and_escaping() {
        let c = Composer::new(&TemplateFiles::default(), Path::new(".")).unwrap();
        let r = c.render(&ctx()).unwrap();
        assert_eq!(
            r.subject,
            "[kafka-healing] RECOVERED kafka-2 (broker-down) prod-east"
        );
        assert!(
            r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<script>"));
        assert!(
            r.text
                .contains("x=\"<script>alert(1)</script>\r\nBcc: evil@example.com\""),
            "text is plain: {}",
            r.text
        );
    }

    #[test]
    fn one_line_subjects() {
        assert_eq!(one_line("a\r\nBcc: x\t y"), "a Bcc: x y");
    }

    #[test]
    fn silence_links() {
        let labels = vec![
            Pair {
                name: "alertname".into(),
                value: "KafkaBrokerDown".into(),
            },
            Pair {
                name: "q".into(),
                value: "a\"b".into(),
            },
        ];
        assert_eq!(
            silence_url("http://am:9093/", &labels).unwrap(),
            "http://am:9093/#/silences/new?filter=%7Balertname%3D%22KafkaBrokerDown%22%2C+q%3D%22a%5C%22b%22%7D"
        );
        assert_eq!(silence_url("", &labels), None);
    }

    #[test]
    fn only_http_links_and_only_configured_alertmanagers() {
        assert_eq!(
            safe_link("HTTPS://Prom.example.com:9090/graph?g0.expr=up").as_deref(),
            Some("https://prom.example.com:9090/graph?g0.expr=up")
        );
        for bad in [
            "javascript:alert(1)",
            " javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "file:///etc/passwd",
            "//evil.example.com/",
            "http://trusted.example.com@evil.example.com/",
            "",
        ] {
            assert_eq!(safe_link(bad), None, "{bad:?}");
            assert_eq!(generator_link(bad), (String::new(), bad.to_string()));
        }
        let labels = vec![Pair {
            name: "alertname".into(),
            value: "X".into(),
        }];
        let conf = ["http://am.example.com:9093/am/"];
        let link = Some(
            "http://am.example.com:9093/am/#/silences/new?filter=%7Balertname%3D%22X%22%7D"
                .to_string(),
        );
        for same in [
            "http://am.example.com:9093/am",
            "http://AM.example.com:9093/am/",
            "HTTP://am.example.com:9093/am",
        ] {
            assert_eq!(
                silence_link(same, &conf, &labels),
                (link.clone(), None),
                "{same}"
            );
        }
        for other in [
            "http://evil.example.com:9093/am",
            "https://am.example.com:9093/am",
            "http://am.example.com:9094/am",
            "http://am.example.com:9093/",
            "http://am.example.com:9093/am/x",
            "http://am.example.com:9093/am?x=1",
            "http://am.example.com:9093/am#/x",
            "http://u:p@am.example.com:9093/am",
            "javascript:alert(1)",
        ] {
            assert_eq!(
                silence_link(other, &conf, &labels),
                (None, Some(other.to_string())),
                "{other}"
            );
        }
        assert_eq!(silence_link("", &conf, &labels), (None, None));
        assert_eq!(
            silence_link("http://am.example.com:9093/am", &[], &labels),
            (None, Some("http://am.example.com:9093/am".to_string()))
        );
    }

    #[test]
    fn a_hostile_generator_url_is_text_in_html() {
        let c = Composer::new(&TemplateFiles::default(), Path::new(".")).unwrap();
        let mut x = ctx();
        (x.alert.generator_url, x.alert.generator_url_text) =
            generator_link("javascript:alert(1)\"><b>");
        x.alertmanager_text = Some("http://evil.example.com/".into());
        let r = c.render(&x).unwrap();
        assert!(!r.html.contains("href"), "{}", r.html);
        assert!(
            r.html
                .contains("<code>javascript:alert(1)&quot;&gt;&lt;b&gt;</code>"),
            "{}",
            r.html
        );
        assert!(
            r.html
                .contains("no silence link): <code>http://evil.example.com/</code>"),
            "{}",
            r.html
        );
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;

    #[test]
    fn template_files_replace_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("subject.hbs"),
            "{{outcome}}: {{target}} on {{cluster}}\n",
        )
        .unwrap();
        let files = TemplateFiles {
            subject: Some("subject.hbs".into()),
            ..Default::default()
        };
        let c = Composer::new(&files, dir.path()).unwrap();
        let ctx = MessageContext {
            outcome: "FAILED".into(),
            target: Some("kafka-9".into()),
            cluster: "c1".into(),
            ..Default::default()
        };
        let r = c.render(&ctx).unwrap();
        assert_eq!(r.subject, "FAILED: kafka-9 on c1");
        assert!(
            r.text.contains("Cluster:   c1"),
            "the built-in text template is kept"
        );
        let missing = TemplateFiles {
            html: Some("nope.hbs".into()),
            ..Default::default()
        };
        let e = Composer::new(&missing, dir.path()).unwrap_err();
        assert!(matches!(&e, ComposeError::Read { path, .. } if path.ends_with("nope.hbs")));
        assert!(e.to_string().contains("nope.hbs"), "{e}");
        std::fs::write(dir.path().join("bad.hbs"), "{{#if x}}").unwrap();
        let bad = TemplateFiles {
            text: Some("bad.hbs".into()),
            ..Default::default()
        };
        let e = Composer::new(&bad, dir.path()).unwrap_err();
        assert!(matches!(e, ComposeError::Compile { name: "text", .. }));
        assert!(e.to_string().contains("template `text`"), "{e}");
    }
}
