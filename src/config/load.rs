//! Loading: files (deep-merged in order), the `config/<environment>.yaml` overlay, then
//! environment variables, then `${NAME}` references and `*_file` secrets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::alertmanager::AlertmanagerConfig;
use super::expand::expand_env;
use super::kubernetes::KubernetesConfig;
use super::layers::{ENV_PREFIX, Layer, Merged};
use super::model::*;
use super::node::Node;
use super::secret::Secret;
use super::security::SecurityConfig;
use super::validate::validate;
use crate::diag::Diagnostics;
use crate::yaml::{Document, join_index, join_key};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all (a usage problem: wrong path, permissions).
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("invalid configuration:\n{0}")]
    Invalid(Diagnostics),
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The (first) config file's path as given.
    pub path: PathBuf,
    /// Directory relative paths in the config are resolved against: the first file's,
    /// whichever file a path came from.
    pub base_dir: PathBuf,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Diagnostics,
    /// Where each value came from: the files in merge order, and the keys environment
    /// variables set.
    pub provenance: Provenance,
}

/// What `check --explain` needs to say where a value came from.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// Every file read, in merge order (the environment overlay last).
    pub layers: Vec<Layer>,
    /// The keys `KAFKA_HEALING__*` variables set: (dotted path, variable name).
    pub env_keys: Vec<(String, String)>,
}

impl Loaded {
    /// The file whose value of `path` (`rules`, `recovery.actions`) is in effect, with its
    /// document (for lines): the last layer that sets it, else the first file.
    pub fn layer_with(&self, path: &str) -> Option<&Layer> {
        let layers = &self.provenance.layers;
        layers
            .iter()
            .rev()
            .find(|l| l.doc.own_line(path).is_some())
            .or(layers.first())
    }

    /// The config files given (`-c`), in order: [`Loaded::files`] without the overlay.
    pub fn given_files(&self) -> Vec<PathBuf> {
        self.provenance
            .layers
            .iter()
            .filter(|l| !l.overlay)
            .map(|l| l.path.clone())
            .collect()
    }

    /// Every config file read, in merge order (the environment overlay last).
    pub fn files(&self) -> Vec<PathBuf> {
        self.provenance
            .layers
            .iter()
            .map(|l| l.path.clone())
            .collect()
    }

    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve(&self.base_dir, p)
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads `path` with the process environment.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    load_files(&[path.to_path_buf()])
}

/// Loads `paths`, deep-merged in order, with the process environment.
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    // `std::env::vars` panics on a variable that is not Unicode; such a one cannot be
    // a config key or a `${NAME}` this file can use anyway.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_files_with_env(paths, env)
}

/// Loads `path` with an explicit environment (tests use this instead of mutating the
/// process environment).
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Loaded, LoadError> {
    load_files_with_env(&[path.to_path_buf()], env)
}

/// Loads `paths`, deep-merged in order, with an explicit environment.
pub fn load_files_with_env(
    paths: &[PathBuf],
    env: HashMap<String, String>,
) -> Result<Loaded, LoadError> {
    if paths.is_empty() {
        return Err(LoadError::Read {
            path: PathBuf::new(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no config file given"),
        });
    }
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        sources.push((path.clone(), text));
    }
    load_sources(sources, env)
}

/// Loads a configuration from `text` as if read from `path` (relative paths and `*_file`
/// secrets resolve against `path`'s directory; diagnostics name `path`; an environment
/// overlay is read from `path`'s directory).
pub fn load_text(
    text: &str,
    path: &Path,
    env: HashMap<String, String>,
) -> Result<Loaded, LoadError> {
    load_sources(vec![(path.to_path_buf(), text.to_string())], env)
}

/// Loads the texts of `sources` (path, text), deep-merged in order, then the environment
/// overlay, then the environment.
fn load_sources(
    sources: Vec<(PathBuf, String)>,
    env: HashMap<String, String>,
) -> Result<Loaded, LoadError> {
    let mut diags = Diagnostics::default();
    let mut layers = Vec::with_capacity(sources.len() + 1);
    for (i, (path, text)) in sources.into_iter().enumerate() {
        if let Some(doc) = parse_layer(&path, &text, i == 0, &mut diags) {
            layers.push(Layer {
                path,
                doc,
                overlay: false,
            });
        }
    }
    if diags.has_errors() {
        return Err(LoadError::Invalid(diags));
    }
    let Some(primary) = layers.first().map(|l| l.path.clone()) else {
        return Err(LoadError::Invalid(diags));
    };
    let base_dir = primary
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Some(overlay) = read_overlay(&layers, &env, &mut diags)? {
        layers.push(overlay);
    }
    if diags.has_errors() {
        diags.sort();
        return Err(LoadError::Invalid(diags));
    }

    let merged = Merged::new(&layers);
    let mut found = Diagnostics::default();
    let built = build(&merged.doc, &primary, &base_dir, &env, &mut found);
    merged.remap(&mut found, &primary);
    diags.extend(found);
    diags.sort();
    let (Some((config, env_keys)), false) = (built, diags.has_errors()) else {
        return Err(LoadError::Invalid(diags));
    };
    Ok(Loaded {
        config,
        path: primary,
        base_dir,
        warnings: diags,
        provenance: Provenance { layers, env_keys },
    })
}

/// Parses one file; `None` (with the reason in `diags`) when it is no YAML mapping. Files
/// after the first may be empty: they then change nothing.
pub(super) fn parse_layer(
    path: &Path,
    text: &str,
    first: bool,
    diags: &mut Diagnostics,
) -> Option<Document> {
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            diags.error(path, Some(e.line), format!("YAML: {}", e.message));
            return None;
        }
    };
    if doc.value.is_null() && !first {
        return Some(Document::default());
    }
    if !doc.value.is_object() {
        diags.error(path, None, "the config must be a YAML mapping");
        return None;
    }
    Some(doc)
}

/// Builds the config from the merged tree: environment variables, `${NAME}` references,
/// sections, secrets, checks. Diagnostics name `file` with the merged tree's virtual
/// lines. Returns the config and the keys environment variables set (path, variable).
fn build(
    doc: &Document,
    file: &Path,
    base_dir: &Path,
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Option<(Config, Vec<(String, String)>)> {
    let mut root = Node::from_doc(doc);
    let (problems, env_keys) = apply_env(&mut root, env);
    if !problems.is_empty() {
        for p in problems {
            diags.error(file, None, p);
        }
        return None;
    }
    let Node::Map(entries) = expand_node(root, "", env, file, doc, diags) else {
        diags.error(file, None, "the config must be a YAML mapping");
        return None;
    };
    let mut table: HashMap<String, Node> = entries.into_iter().collect();
    let escalation_off = super::seed::take_escalation_switch(&mut table, file, doc, diags);

    let config = sections(table, file, doc, diags);
    let Some(mut config) = config else {
        name_env_overrides(diags, env);
        return None;
    };
    resolve_secrets(&mut config, base_dir, file, doc, diags);
    super::seed::normalize(&mut config, escalation_off);
    validate(&config, file, doc, diags);
    super::seed::warn(&config, file, doc, diags);
    name_env_overrides(diags, env);
    Some((config, env_keys))
}

/// Applies the `KAFKA_HEALING__*` variables to the file's tree. Their values stay text:
/// the field's type decides how it is read, so `007` fills a string field as `007`.
fn apply_env(
    root: &mut Node,
    env: &HashMap<String, String>,
) -> (Vec<String>, Vec<(String, String)>) {
    let prefix = format!("{}__", ENV_PREFIX.to_ascii_lowercase());
    let mut vars: Vec<_> = env.iter().collect();
    vars.sort();
    let mut problems = Vec::new();
    let mut keys = Vec::new();
    for (name, value) in vars {
        let key = name.to_ascii_lowercase();
        let Some(key) = key.strip_prefix(&prefix) else {
            continue;
        };
        let path: Vec<&str> = key.split("__").collect();
        if path.iter().any(|seg| seg.is_empty()) {
            problems.push(format!(
                "environment variable {name} names no config key (KAFKA_HEALING__SECTION__KEY)"
            ));
            continue;
        }
        root.set(&path, Node::Text(value.clone()));
        keys.push((path.join("."), name.clone()));
    }
    (problems, keys)
}

/// The environment variable that would override `path` (for error messages).
fn env_name(path: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for seg in path.split('.') {
        name.push_str("__");
        name.push_str(&seg.to_ascii_uppercase());
    }
    name
}

/// A problem with a value that came from an environment variable says so: the file's
/// line alone would point at a value that is not the one in effect.
fn name_env_overrides(diags: &mut Diagnostics, env: &HashMap<String, String>) {
    for d in &mut diags.items {
        let Some((path, _)) = d.message.split_once(": ") else {
            continue;
        };
        let mut p = path.to_string();
        // `monitoring.methods[1]` was set as a whole list by KAFKA_HEALING__MONITORING__METHODS.
        if let Some(i) = p.find('[') {
            p.truncate(i);
        }
        let var = env_name(&p);
        if env.contains_key(&var) && !d.message.contains(&var) {
            d.message
                .push_str(&format!(" (value from environment variable {var})"));
        }
    }
}

/// Replaces `${NAME}` in every string value, recursively. What a reference brought in is
/// text from the environment, read by the field's type like a `KAFKA_HEALING__*` value.
fn expand_node(
    node: Node,
    path: &str,
    env: &HashMap<String, String>,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) -> Node {
    match node {
        Node::Str(s) | Node::Text(s) if s.contains("${") => {
            match expand_env(&s, |n| env.get(n).cloned()) {
                Ok(s) => Node::Text(s),
                Err(e) => {
                    diags.error_at(file, doc, path, e);
                    Node::Text(s)
                }
            }
        }
        Node::Map(entries) => Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let v = expand_node(v, &join_key(path, &k), env, file, doc, diags);
                    (k, v)
                })
                .collect(),
        ),
        Node::Seq(items) => Node::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| expand_node(v, &join_index(path, i), env, file, doc, diags))
                .collect(),
        ),
        other => other,
    }
}

/// Deserializes one section, recording every error in it (with path and line). Serde
/// stops at a section's first error, so the offending key is taken out and the section
/// read again, until it reads or an error names no key that can be taken out.
fn section<T: DeserializeOwned>(
    table: &mut HashMap<String, Node>,
    key: &str,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) -> Option<Option<T>> {
    let mut value = table.remove(key)?;
    let mut failed = false;
    // Bounded: each pass takes one key out; a section has far fewer wrong keys than this.
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some((!failed).then_some(v)),
            Err(e) => {
                failed = true;
                let inner = e.path().to_string();
                let path = if inner == "." {
                    key.to_string()
                } else if inner.starts_with('[') {
                    format!("{key}{inner}")
                } else {
                    format!("{key}.{inner}")
                };
                let segments: Vec<_> = e.path().iter().cloned().collect();
                diags.error_at(file, doc, &path, e.into_inner().to_string());
                if !value.remove_at(&segments) {
                    break;
                }
            }
        }
    }
    Some(None)
}

/// Builds the config section by section so that one bad section does not hide the others.
fn sections(
    mut table: HashMap<String, Node>,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) -> Option<Config> {
    macro_rules! take {
        ($key:literal, $ty:ty) => {
            section::<$ty>(&mut table, $key, file, doc, diags)
        };
    }
    let cluster = take!("cluster", ClusterConfig);
    let monitoring = take!("monitoring", MonitoringConfig);
    let recovery = take!("recovery", RecoveryConfig);
    let notifications = take!("notifications", NotificationsConfig);
    let server = take!("server", ServerConfig);
    let rules = take!("rules", Vec<String>);
    let state = take!("state", StateConfig);
    let logging = take!("logging", LoggingConfig);
    let environment = take!("environment", Environment);
    let coordination = take!("coordination", CoordinationConfig);
    let kubernetes = take!("kubernetes", KubernetesConfig);
    let alertmanager = take!("alertmanager", AlertmanagerConfig);
    let security = take!("security", SecurityConfig);
    let system = take!("system", super::model::SystemConfig);

    let mut unknown: Vec<_> = table.keys().cloned().collect();
    unknown.sort();
    for key in unknown {
        diags.error_at(
            file,
            doc,
            &key,
            "unknown top-level key; expected one of cluster, monitoring, recovery, \
             notifications, server, rules, state, logging, environment, coordination, kubernetes, \
             alertmanager, security, system",
        );
    }
    if cluster.is_none() {
        diags.error(
            file,
            None,
            "missing required section `cluster` (kafka_brokers)",
        );
    }
    Some(Config {
        cluster: cluster??,
        monitoring: monitoring.unwrap_or(Some(Default::default()))?,
        recovery: recovery.unwrap_or(Some(Default::default()))?,
        notifications: notifications.unwrap_or(Some(Default::default()))?,
        server: server.unwrap_or(Some(Default::default()))?,
        rules: rules.unwrap_or(Some(Default::default()))?,
        state: state.unwrap_or(Some(Default::default()))?,
        logging: logging.unwrap_or(Some(Default::default()))?,
        environment: environment.unwrap_or(Some(Default::default()))?,
        coordination: match coordination {
            None => None,
            Some(c) => Some(c?),
        },
        kubernetes: kubernetes.map_or(Some(None), |k| k.map(Some))?,
        alertmanager: alertmanager.map_or(Some(None), |a| a.map(Some))?,
        security: security.unwrap_or(Some(Default::default()))?,
        system: system.unwrap_or(Some(Default::default()))?,
    })
}

/// Reads `*_file` secrets; a secret given both inline and as a file is an error.
fn resolve_secrets(
    config: &mut Config,
    base: &Path,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) {
    let mut read = |inline: &mut Option<Secret>, from: &Option<PathBuf>, path: &str| {
        let Some(f) = from else { return };
        if inline.is_some() {
            diags.error_at(
                file,
                doc,
                path,
                "set either the value or the `_file` variant, not both",
            );
            return;
        }
        let full = resolve(base, f);
        match std::fs::read_to_string(&full) {
            Ok(s) => *inline = Some(super::secret::from_file(&s)),
            Err(e) => diags.error_at(
                file,
                doc,
                path,
                format!("cannot read secret file {}: {e}", full.display()),
            ),
        }
    };
    if let Some(smtp) = config.notifications.smtp.as_mut() {
        read(
            &mut smtp.password,
            &smtp.password_file,
            "notifications.smtp.password_file",
        );
    }
    let sasl = &mut config.security.sasl;
    read(
        &mut sasl.password,
        &sasl.password_file,
        "security.sasl.password_file",
    );
    if let Some(auth) = config.server.auth.as_mut() {
        read(
            &mut auth.bearer_token,
            &auth.bearer_token_file,
            "server.auth.bearer_token_file",
        );
        if let Some(basic) = auth.basic.as_mut() {
            read(
                &mut basic.password,
                &basic.password_file,
                "server.auth.basic.password_file",
            );
        }
    }
}

/// The overlay of the environment the files (or `KAFKA_HEALING__ENVIRONMENT`) name
/// ([`super::overlay`] chooses it), read and parsed, when its file exists: the seed reads
/// it when it exists, so a missing one is no error; an unreadable one is.
fn read_overlay(
    layers: &[Layer],
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Result<Option<Layer>, LoadError> {
    let Some((name, path)) = super::overlay::overlay_file(layers, env, diags) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let Some(doc) = parse_layer(&path, &text, false, diags) else {
        return Ok(None);
    };
    let layer = Layer {
        path,
        doc,
        overlay: true,
    };
    super::overlay::check_overlay(&name, &layer, diags);
    Ok(Some(layer))
}
