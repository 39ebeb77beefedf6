//! Handlebars templates for params and argv elements: strict, unescaped, checked statically.
//!
//! Every template is compiled once when rules load. `check` walks each template's syntax
//! tree and rejects a variable that cannot exist in the render context (see
//! [`check_ref`]); at render time strict mode turns a missing label into an error instead of
//! an empty string, so a half-rendered command never runs.

use std::collections::BTreeSet;

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{Handlebars, Path, PathSeg, no_escape};
use serde_json::Value;

/// Compiled templates, keyed by their own source text.
#[derive(Debug, Clone)]
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // Rendered values are argv elements, not HTML.
        registry.register_escape_fn(no_escape);
        Templates { registry }
    }
}

/// A template that does not compile or renders with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn is_template(src: &str) -> bool {
    src.contains("{{")
}

impl Templates {
    /// Compiles `src` (once) and returns the variables it refers to, each as path segments.
    /// A segment that is not a plain name (`this`, `../`, `@root`) makes the reference
    /// unknown and it is skipped, like references inside `each`/`with` blocks whose
    /// context changes.
    pub fn add(&mut self, src: &str) -> Result<Vec<Vec<String>>, TemplateError> {
        if !is_template(src) {
            return Ok(Vec::new());
        }
        let tpl = Template::compile(src).map_err(|e| TemplateError(describe_compile(&e)))?;
        let mut refs = Vec::new();
        collect(&tpl, &mut refs)?;
        if !self.registry.has_template(src) {
            self.registry.register_template(src, tpl);
        }
        Ok(refs)
    }

    /// Renders `src`, which must have been [`add`](Self::add)ed, against `ctx`.
    pub fn render(&self, src: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !is_template(src) {
            return Ok(src.to_string());
        }
        self.registry
            .render(src, ctx)
            .map_err(|e| TemplateError(describe_render(&e)))
    }
}

fn describe_compile(e: &handlebars::TemplateError) -> String {
    let mut s = format!("template does not compile: {}", e.reason());
    if let Some((line, col)) = e.pos() {
        s.push_str(&format!(" (template line {line}, column {col})"));
    }
    s
}

fn describe_render(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is not set (strict templates never render a missing value as empty)")
        }
        other => other.to_string(),
    }
}

fn path_segments(p: &Path) -> Option<Vec<String>> {
    match p {
        Path::Relative((segs, _)) if !segs.is_empty() => segs
            .iter()
            .map(|s| match s {
                PathSeg::Named(n) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn param_refs(p: &Parameter, refs: &mut Vec<Vec<String>>) -> Result<(), TemplateError> {
    match p {
        Parameter::Path(path) => refs.extend(path_segments(path)),
        Parameter::Subexpression(sub) => element_refs(&sub.element, refs)?,
        _ => {}
    }
    Ok(())
}

fn element_refs(el: &TemplateElement, refs: &mut Vec<Vec<String>>) -> Result<(), TemplateError> {
    match el {
        TemplateElement::Expression(h)
        | TemplateElement::HtmlExpression(h)
        | TemplateElement::HelperBlock(h) => {
            let helper = match &h.name {
                Parameter::Name(n) => Some(n.as_str()),
                _ => None,
            };
            match (
                &h.name,
                h.params.is_empty() && h.hash.is_empty() && !h.block,
            ) {
                // `{{name}}` alone is a variable, not a helper call.
                (Parameter::Name(n), true) => refs.push(vec![n.clone()]),
                (other, _) => param_refs(other, refs)?,
            }
            for p in h.params.iter().chain(h.hash.values()) {
                param_refs(p, refs)?;
            }
            // Blocks that keep the context are walked; `each`/`with` change it.
            let keeps_context = matches!(helper, Some("if" | "unless"));
            if keeps_context {
                for t in h.template.iter().chain(h.inverse.iter()) {
                    collect(t, refs)?;
                }
            }
        }
        TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
        // Partials, decorators and whatever a later handlebars adds.
        _ => {
            return Err(TemplateError(
                "partials and decorators are not supported in runbook templates".into(),
            ));
        }
    }
    Ok(())
}

fn collect(tpl: &Template, refs: &mut Vec<Vec<String>>) -> Result<(), TemplateError> {
    for el in &tpl.elements {
        element_refs(el, refs)?;
    }
    Ok(())
}

/// Which variables a template may use.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A rule's param template: no `params`.
    Param,
    /// A runbook template used by a rule with these params.
    Runbook(&'a BTreeSet<String>),
    /// A runbook template checked on its own: any `params.NAME`.
    AnyParams,
}

const ALERT_FIELDS: &[&str] = &[
    "status",
    "fingerprint",
    "starts_at",
    "ends_at",
    "generator_url",
];
const TARGET_FIELDS: &[&str] = &["kind", "node_id", "host", "port", "jmx_port"];

/// A template variable that cannot exist in the render context. Each carries the
/// reference as written (`alert.labels.x`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// A rule's param refers to `params.*`, which is not rendered yet.
    #[error("`{0}`: a param cannot refer to other params")]
    ParamInParam(String),
    /// `params.NAME` that the rule using the runbook does not declare.
    #[error(
        "`{shown}` is not a param of this rule (it declares: {})",
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    )]
    Undeclared {
        /// The reference as written.
        shown: String,
        /// The params the rule declares, in order.
        declared: Vec<String>,
    },
    /// Nothing of that name is ever in the context.
    #[error(
        "`{0}` cannot exist: templates see alert.labels.NAME, alert.annotations.NAME, \
         alert.{{{alert}}}, params.NAME, target.{{{target}}}, cluster.name, cluster.bootstrap \
         and rule.name",
        alert = ALERT_FIELDS.join(","),
        target = TARGET_FIELDS.join(",")
    )]
    Unknown(String),
}

/// Checks that a referenced variable can exist in the render context.
pub fn check_ref(segs: &[String], scope: Scope<'_>) -> Result<(), RefError> {
    let shown = segs.join(".");
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let ok = match s.as_slice() {
        ["alert", "labels" | "annotations", _] => true,
        ["alert", f] => ALERT_FIELDS.contains(f),
        ["target", f] => TARGET_FIELDS.contains(f),
        ["cluster", "name" | "bootstrap"] | ["rule", "name"] => true,
        ["params", name] => match scope {
            Scope::Param => return Err(RefError::ParamInParam(shown)),
            Scope::Runbook(declared) if !declared.contains(*name) => {
                return Err(RefError::Undeclared {
                    shown,
                    declared: declared.iter().cloned().collect(),
                });
            }
            Scope::Runbook(_) | Scope::AnyParams => true,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(RefError::Unknown(shown))
    }
}

/// True when a reference needs a target broker.
pub fn uses_target(segs: &[String]) -> bool {
    segs.first().is_some_and(|s| s == "target")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(src: &str) -> Vec<String> {
        Templates::default()
            .add(src)
            .unwrap()
            .into_iter()
            .map(|r| r.join("."))
            .collect()
    }

    #[test]
    fn finds_references() {
        assert_eq!(refs("plain"), Vec::<String>::new());
        assert_eq!(
            refs("{{alert.labels.instance}}:{{target.port}}"),
            ["alert.labels.instance", "target.port"]
        );
        assert_eq!(
            refs("{{#if alert.labels.x}}{{params.a}}{{else}}{{rule.name}}{{/if}}"),
            ["alert.labels.x", "params.a", "rule.name"]
        );
        assert_eq!(refs("{{cluster}}"), ["cluster"]);
        assert_eq!(
            refs("{{#each alert.labels}}{{this}}{{/each}}"),
            ["alert.labels"]
        );
    }

    #[test]
    fn rejects_partials_and_bad_syntax() {
        let mut t = Templates::default();
        assert!(t.add("{{> evil}}").is_err());
        let e = t.add("{{#if x}}unclosed").unwrap_err();
        assert!(e.0.contains("does not compile"), "{e}");
    }

    #[test]
    fn scope_rules() {
        let v = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        let declared: BTreeSet<String> = ["broker".to_string()].into();
        assert!(check_ref(&v("alert.labels.anything"), Scope::Param).is_ok());
        assert!(check_ref(&v("alert.fingerprint"), Scope::Param).is_ok());
        assert!(check_ref(&v("target.host"), Scope::Param).is_ok());
        assert!(check_ref(&v("target.hostname"), Scope::Param).is_err());
        assert!(check_ref(&v("alert.labels"), Scope::Param).is_err());
        assert!(check_ref(&v("alert.labels.a.b"), Scope::Param).is_err());
        assert_eq!(
            check_ref(&v("params.broker"), Scope::Param),
            Err(RefError::ParamInParam("params.broker".into()))
        );
        assert!(check_ref(&v("params.broker"), Scope::Runbook(&declared)).is_ok());
        let e = check_ref(&v("params.other"), Scope::Runbook(&declared)).unwrap_err();
        assert!(matches!(&e, RefError::Undeclared { declared, .. } if declared == &["broker"]));
        assert!(e.to_string().contains("declares: broker"), "{e}");
        assert!(check_ref(&v("params.other"), Scope::AnyParams).is_ok());
        let e = check_ref(&v("labels.instance"), Scope::AnyParams).unwrap_err();
        assert_eq!(e, RefError::Unknown("labels.instance".into()));
        assert!(e.to_string().starts_with("`labels.instance` cannot exist: templates see alert.labels.NAME, alert.annotations.NAME, alert.{status,"), "{e}");
    }

    #[test]
    fn strict_and_unescaped() {
        let mut t = Templates::default();
        let src = "{{alert.labels.v}}";
        t.add(src).unwrap();
        let out = t
            .render(
                src,
                &json!({"alert": {"labels": {"v": "<a href=\"x\">&'"}}}),
            )
            .unwrap();
        assert_eq!(out, "<a href=\"x\">&'");
        let err = t
            .render(src, &json!({"alert": {"labels": {}}}))
            .unwrap_err();
        assert!(err.0.contains("alert.labels.v"), "{err}");
    }
}
