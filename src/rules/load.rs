//! Reading rule files: globs, YAML, deserialization, and every cross-check `check` makes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::matcher::{Matcher, anchored_regex};
use super::model::{RuleSpec, Runbook, StepKind};
use super::{Condition, Param, Rule, RuleSet};
use crate::diag::Diagnostics;
use crate::runbook::Templates;
use crate::runbook::template::{Scope, check_ref, uses_target};
use crate::yaml::{Document, join_index, join_key};

/// Loads the rule files named by a config file that did not load (so that `check` can
/// still report every rule file's problems): reads its `rules:` list as written.
pub fn load_rules_of_file(cfg_path: &Path) -> (RuleSet, Diagnostics) {
    let doc = raw_doc(cfg_path);
    let patterns: Vec<String> = match doc.value.get("rules") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let base = cfg_path.parent().unwrap_or(Path::new("."));
    load_globs(cfg_path, &doc, base, &patterns)
}

pub(super) fn raw_doc(path: &Path) -> Document {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| Document::parse(&t).ok())
        .unwrap_or_default()
}

/// Loads the rule files `patterns` name; problems with a pattern are reported at its line
/// in `cfg_doc`, the text of `cfg_path`.
pub(super) fn load_globs(
    cfg_path: &Path,
    cfg_doc: &Document,
    base: &Path,
    patterns: &[String],
) -> (RuleSet, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut files = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let path = join_index("rules", i);
        match rule_files_matching(&full) {
            Ok(found) => {
                if found.is_empty() {
                    diags.error_at(
                        cfg_path,
                        cfg_doc,
                        &path,
                        format!("`{pattern}` matches no rule file"),
                    );
                }
                files.extend(found);
            }
            Err(e) => diags.error_at(
                cfg_path,
                cfg_doc,
                &path,
                format!("bad glob `{pattern}`: {e}"),
            ),
        }
    }
    let (set, more) = load_rule_files(&files);
    diags.extend(more);
    (set, diags)
}

/// The files a rule-file glob matches, sorted (directories and unreadable entries left
/// out).
pub(crate) fn rule_files_matching(full: &Path) -> Result<Vec<PathBuf>, glob::PatternError> {
    let mut found: Vec<PathBuf> = glob::glob(&full.to_string_lossy())?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// One file's raw content, kept for line lookups.
struct Source {
    path: PathBuf,
    doc: Document,
}

fn take<T: DeserializeOwned>(
    v: Value,
    at: &str,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<T> {
    crate::config::deserialize_at(&v, at, &src.doc)
        .map_err(|(path, msg)| diags.error_at(&src.path, &src.doc, &path, msg))
        .ok()
}

/// A runbook; a step it refuses is reported at the step's key that is wrong (serde only
/// knows the step's path, as a step is read from its mapping as a whole).
fn take_runbook(v: Value, at: &str, src: &Source, diags: &mut Diagnostics) -> Option<Runbook> {
    let steps = v.get("steps").cloned();
    crate::config::deserialize_at(&v, at, &src.doc)
        .map_err(|(path, msg)| {
            let path = step_key_path(&path, at, steps.as_ref()).unwrap_or(path);
            diags.error_at(&src.path, &src.doc, &path, msg)
        })
        .ok()
}

/// `at.steps[i]` as `at.steps[i].key` when step `i`'s problem is in one key.
fn step_key_path(path: &str, at: &str, steps: Option<&Value>) -> Option<String> {
    let i: usize = path
        .strip_prefix(&join_key(at, "steps"))?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let step = steps?.get(i)?.clone();
    let key = crate::runbook::steps::Step::from_value(step).err()?.key?;
    Some(join_key(path, &key))
}

/// Loads and checks a list of rule files.
pub fn load_rule_files(files: &[PathBuf]) -> (RuleSet, Diagnostics) {
    load_rule_texts(
        files
            .iter()
            .map(|f| (f.clone(), std::fs::read_to_string(f)))
            .collect(),
    )
}

/// Loads and checks rule files already read: each is its path (for diagnostics) and its
/// text, or the error reading it.
pub fn load_rule_texts(files: Vec<(PathBuf, std::io::Result<String>)>) -> (RuleSet, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut sources = Vec::new();
    let mut specs: Vec<(usize, String, RuleSpec)> = Vec::new();
    let mut runbooks: BTreeMap<String, (usize, Runbook)> = BTreeMap::new();
    let mut invalid_runbooks: BTreeSet<String> = BTreeSet::new();

    for (file, text) in &files {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                diags.error(file, None, format!("cannot read rule file: {e}"));
                continue;
            }
        };
        let doc = match Document::parse(text) {
            Ok(d) => d,
            Err(e) => {
                diags.error(file, Some(e.line), format!("YAML: {}", e.message));
                continue;
            }
        };
        let src = Source {
            path: file.clone(),
            doc,
        };
        let idx = sources.len();
        let mut top = match &src.doc.value {
            Value::Object(m) => m.clone(),
            Value::Null => Default::default(),
            _ => {
                diags.error(
                    file,
                    Some(1),
                    "a rule file is a mapping with `rules:` and `runbooks:`",
                );
                continue;
            }
        };
        let rules_v = top.remove("rules");
        let runbooks_v = top.remove("runbooks");
        for key in top.keys() {
            diags.error_at(
                file,
                &src.doc,
                key,
                "unknown top-level key; a rule file has `rules:` and `runbooks:`",
            );
        }
        match runbooks_v {
            Some(Value::Object(m)) => {
                for (name, v) in m {
                    let at = join_key("runbooks", &name);
                    let Some(rb) = take_runbook(v, &at, &src, &mut diags) else {
                        // Defined, if broken: rules naming it are not "unknown runbook".
                        invalid_runbooks.insert(name);
                        continue;
                    };
                    {
                        if let Some((other, _)) = runbooks.get(&name) {
                            let o: &Source = &sources[*other];
                            let where_ = location(o, &at);
                            diags.error_at(
                                file,
                                &src.doc,
                                &at,
                                format!("duplicate runbook `{name}` (also defined at {where_})"),
                            );
                        } else {
                            runbooks.insert(name, (idx, rb));
                        }
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => diags.error_at(
                file,
                &src.doc,
                "runbooks",
                "`runbooks` must be a mapping of name to runbook",
            ),
        }
        match rules_v {
            Some(Value::Array(items)) => {
                for (i, v) in items.into_iter().enumerate() {
                    let at = join_index("rules", i);
                    if let Some(spec) = take::<RuleSpec>(v, &at, &src, &mut diags) {
                        specs.push((idx, at, spec));
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => diags.error_at(file, &src.doc, "rules", "`rules` must be a list of rules"),
        }
        sources.push(src);
    }

    let mut used = BTreeSet::new();
    for (name, key, msg) in super::fallback::resolve(&mut runbooks) {
        if let Some((idx, _)) = runbooks.get(&name) {
            let src = &sources[*idx];
            let at = join_key(&join_key("runbooks", &name), &key);
            diags.error_at(&src.path, &src.doc, &at, msg);
        }
    }
    // A chain's actions are used through it.
    for (_, rb) in runbooks.values() {
        used.extend(rb.fallback.iter().cloned());
    }
    let mut set = RuleSet::default();
    let mut names: HashMap<String, String> = HashMap::new();
    for (idx, at, spec) in specs {
        let src = &sources[idx];
        if let Some(prev) = names.get(&spec.name) {
            diags.error_at(
                &src.path,
                &src.doc,
                &join_key(&at, "name"),
                format!("duplicate rule name `{}` (also at {prev})", spec.name),
            );
            continue;
        }
        names.insert(spec.name.clone(), location(src, &at));
        let rb = runbooks
            .get(&spec.runbook)
            .map(|(i, rb)| (&sources[*i], rb));
        if rb.is_none() && !invalid_runbooks.contains(&spec.runbook) {
            let known: Vec<&str> = runbooks.keys().map(String::as_str).collect();
            diags.error_at(
                &src.path,
                &src.doc,
                &join_key(&at, "runbook"),
                format!(
                    "unknown runbook `{}` (defined: {})",
                    spec.runbook,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        used.insert(spec.runbook.clone());
        if let Some(rule) = compile_rule(
            spec,
            &at,
            src,
            rb.map(|(_, r)| r),
            &mut set.templates,
            &mut diags,
        ) {
            set.rules.push(rule);
        }
    }
    for (name, (idx, rb)) in &runbooks {
        let src = &sources[*idx];
        let at = join_key("runbooks", name);
        // A chain's steps are its actions', checked where they are written.
        if rb.fallback.is_empty() {
            check_runbook(
                rb,
                &at,
                src,
                &mut set.templates,
                &mut diags,
                &mut set.kube_steps,
            );
        }
        check_requires(rb, &at, src, &mut set.templates, &mut diags);
        if !used.contains(name) {
            diags.warning(
                &src.path,
                src.doc.line_of(&at),
                format!("runbooks.{name}: not used by any rule"),
            );
        }
    }
    set.runbooks = runbooks.into_iter().map(|(k, (_, rb))| (k, rb)).collect();
    set.index();
    (set, diags)
}

fn location(src: &Source, at: &str) -> String {
    match src.doc.line_of(at) {
        Some(l) => format!("{}:{l}", src.path.display()),
        None => src.path.display().to_string(),
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn compile_rule(
    spec: RuleSpec,
    at: &str,
    src: &Source,
    runbook: Option<&Runbook>,
    templates: &mut Templates,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let before = diags.error_count();
    let mut err = |path: String, msg: String| diags.error_at(&src.path, &src.doc, &path, msg);
    if spec.name.trim().is_empty() {
        err(join_key(at, "name"), "must not be empty".into());
    }
    let condition = spec.condition.as_ref().map(|c| Condition {
        expr: c.expr.clone(),
        for_ms: c
            .for_
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
        alertname: c.alertname.clone().unwrap_or_else(|| spec.name.clone()),
        labels: c.labels.clone(),
        annotations: c.annotations.clone(),
    });
    if let Some(c) = &condition {
        if let Err(e) = crate::promql::check(&c.expr) {
            err(join_key(&join_key(at, "condition"), "expr"), e.to_string());
        }
        for k in c.labels.keys() {
            if !valid_label_name(k) || k == "alertname" {
                err(
                    join_key(&join_key(at, "condition"), "labels"),
                    format!("`{k}` is not a label name the condition may set"),
                );
            }
        }
    }
    if spec.matchers.is_empty() && condition.is_none() {
        err(
            join_key(at, "matchers"),
            "a rule needs at least one matcher or a condition (an empty list would match every alert)"
                .into(),
        );
    }
    let mut matchers = Vec::new();
    if let (true, Some(c)) = (spec.matchers.is_empty(), &condition) {
        // A condition rule answers the alerts its condition raises.
        if let Ok(m) = Matcher::parse(&format!(
            "alertname=\"{}\"",
            c.alertname.replace('"', "\\\"")
        )) {
            matchers.push(m);
        }
    }
    for (j, m) in spec.matchers.iter().enumerate() {
        match Matcher::parse(m) {
            Ok(m) => matchers.push(m),
            Err(e) => err(join_index(&join_key(at, "matchers"), j), e.to_string()),
        }
    }
    // Preconditions judge the target broker: without one, nothing may run.
    let mut needs_target = runbook.is_some_and(|rb| !rb.requires.is_empty());
    let mut params = Vec::new();
    // The runbook's defaults, then the rule's own values over them.
    let mut effective = runbook.map(|rb| rb.params.clone()).unwrap_or_default();
    effective.extend(spec.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (name, p) in &effective {
        let ppath = join_key(&join_key(at, "params"), name);
        if !valid_label_name(name) {
            err(
                ppath.clone(),
                format!("param name `{name}` must be letters, digits and _"),
            );
        }
        match templates.add(&p.value) {
            Ok(refs) => {
                for r in refs {
                    needs_target |= uses_target(&r);
                    if let Err(m) = check_ref(&r, Scope::Param) {
                        err(ppath.clone(), m.to_string());
                    }
                }
            }
            Err(e) => err(ppath.clone(), e.to_string()),
        }
        let pattern = match p.pattern.as_deref().map(anchored_regex).transpose() {
            Ok(re) => re,
            Err(e) => {
                err(join_key(&ppath, "pattern"), e.to_string());
                None
            }
        };
        params.push(Param {
            name: name.clone(),
            template: p.value.clone(),
            pattern,
        });
    }
    if let Some(l) = &spec.target_label
        && !valid_label_name(l)
    {
        err(
            join_key(at, "target_label"),
            format!("`{l}` is not a label name"),
        );
    }
    if let Some(n) = spec.max_attempts
        && !(1..=10).contains(&n)
    {
        err(
            join_key(at, "max_attempts"),
            format!("must be between 1 and 10, got {n}"),
        );
    }
    if let Some(c) = spec.cooldown_seconds
        && c > 7 * 86_400
    {
        err(
            join_key(at, "cooldown_seconds"),
            format!("must be at most 604800 (7 days), got {c}"),
        );
    }
    for (j, to) in spec.notify.iter().enumerate() {
        if !crate::config::valid_email(to) {
            err(
                join_index(&join_key(at, "notify"), j),
                format!("`{to}` is not a valid email address"),
            );
        }
    }
    if let Some(rb) = runbook {
        let declared: BTreeSet<String> = effective.keys().cloned().collect();
        let mut referenced = BTreeSet::new();
        for step in &rb.steps {
            for src_t in step.kind.templates() {
                // Syntax errors are reported once, by check_runbook.
                let Ok(refs) = templates.add(src_t) else {
                    continue;
                };
                for r in refs {
                    needs_target |= uses_target(&r);
                    let is_param = r.first().is_some_and(|p| p == "params");
                    if let [_, name] = r.as_slice()
                        && is_param
                    {
                        referenced.insert(name.clone());
                    }
                    // Other impossible variables are reported once, at the runbook.
                    if !is_param {
                        continue;
                    }
                    if let Err(m) = check_ref(&r, Scope::Runbook(&declared)) {
                        err(
                            join_key(at, "runbook"),
                            format!("runbook `{}` step `{}`: {m}", spec.runbook, step.name),
                        );
                    }
                }
            }
        }
        // Only the rule's own params: a runbook's unused default is the runbook's business.
        let own: BTreeSet<String> = spec.params.keys().cloned().collect();
        for unused in own.difference(&referenced) {
            diags.warning(
                &src.path,
                src.doc.line_of(&join_key(&join_key(at, "params"), unused)),
                format!(
                    "{at}.params.{unused}: not used by runbook `{}`",
                    spec.runbook
                ),
            );
        }
    }
    if diags.error_count() > before {
        return None;
    }
    Some(Rule {
        name: spec.name,
        description: spec.description,
        matchers,
        condition,
        runbook: spec.runbook,
        params,
        target_label: spec.target_label,
        needs_target,
        cooldown_seconds: spec.cooldown_seconds,
        max_attempts: spec.max_attempts,
        dry_run: spec.dry_run,
        notify: spec.notify,
        guard: spec.guard,
        broker_down: spec.broker_down,
        file: src.path.clone(),
        line: src.doc.line_of(at),
    })
}

/// A runbook's `requires:`: each precondition once, and only on a runbook aimed at a
/// broker (a step or param default names `target.*`), as every precondition judges the
/// target broker. (Unknown names are refused by the parser, at their line.)
fn check_requires(
    rb: &Runbook,
    at: &str,
    src: &Source,
    templates: &mut Templates,
    diags: &mut Diagnostics,
) {
    if rb.requires.is_empty() {
        return;
    }
    let path = join_key(at, "requires");
    let mut seen = BTreeSet::new();
    for (i, p) in rb.requires.iter().enumerate() {
        if !seen.insert(*p) {
            diags.error_at(
                &src.path,
                &src.doc,
                &join_index(&path, i),
                format!("precondition `{p}` is listed twice"),
            );
        }
    }
    let sources = rb
        .steps
        .iter()
        .flat_map(|s| s.kind.templates())
        .chain(rb.params.values().map(|p| p.value.as_str()));
    let mut aimed = false;
    for t in sources {
        if let Ok(refs) = templates.add(t) {
            aimed |= refs.iter().any(|r| uses_target(r));
        }
    }
    if !aimed {
        let names: Vec<&str> = rb.requires.iter().map(|p| p.as_str()).collect();
        diags.error_at(
            &src.path,
            &src.doc,
            &path,
            format!(
                "requires {} but no step names a target broker (`target.*`): a precondition \
                 judges the broker a runbook acts on",
                names.join(", ")
            ),
        );
    }
}

fn check_runbook(
    rb: &Runbook,
    at: &str,
    src: &Source,
    templates: &mut Templates,
    diags: &mut Diagnostics,
    kube_steps: &mut Vec<(PathBuf, Option<usize>, String)>,
) {
    let mut err = |path: String, msg: String| diags.error_at(&src.path, &src.doc, &path, msg);
    // No steps is a notify-only runbook: the outcome mail is the action. Only for runbooks
    // that declare they change nothing, so a forgotten step list cannot pass as a restart.
    if rb.steps.is_empty() && rb.disruptive {
        err(
            join_key(at, "steps"),
            "a disruptive runbook needs at least one step (a notify-only runbook sets \
             `disruptive: false` and `steps: []`)"
                .into(),
        );
    }
    let mut names = BTreeSet::new();
    for (i, step) in rb.steps.iter().enumerate() {
        let sp = join_index(&join_key(at, "steps"), i);
        // What is wrong with the kind is reported at its key's line.
        let kp = join_key(&sp, step.kind.name());
        if !names.insert(step.name.as_str()) {
            err(
                join_key(&sp, "name"),
                format!("duplicate step name `{}`", step.name),
            );
        }
        for m in step.kind.problems(&step.name) {
            err(kp.clone(), m);
        }
        if let StepKind::Kube(_) = step.kind {
            kube_steps.push((src.path.clone(), src.doc.line_of(&sp), sp.clone()));
        }
        // A step that changes a service makes its runbook disruptive, whatever it says:
        // `disruptive: false` would run it without the cluster slot and the guard. (`exec`
        // may be either; the runbook's word is taken for it.)
        if !rb.disruptive
            && let Some(what) = step.kind.changes_a_service()
        {
            err(
                kp.clone(),
                format!(
                    "step `{}` ({what}) changes a service, so this runbook is disruptive: \
                     remove `disruptive: false`",
                    step.name
                ),
            );
        }
        for t in step.kind.templates() {
            match templates.add(t) {
                Ok(refs) => {
                    for r in refs {
                        if let Err(m) = check_ref(&r, Scope::AnyParams) {
                            err(kp.clone(), format!("step `{}`: {m}", step.name));
                        }
                    }
                }
                Err(e) => err(kp.clone(), format!("step `{}`: {e}", step.name)),
            }
        }
    }
}
