//! The seed's per-environment overlay: `environment: X` loads `config/X.yaml` beside the
//! first config file, merged over the files given. A missing overlay is no error (the seed
//! reads it when it exists); an unreadable one is.

use std::collections::HashMap;

use serde_json::Value;

use super::layers::{Layer, bad_environment_name, overlay_path};
use super::load::{ENV_PREFIX, LoadError, parse_layer};
use crate::diag::Diagnostics;

/// Where the environment's name was set.
enum From<'a> {
    /// A file's `environment:` key.
    File(&'a Layer),
    /// `KAFKA_HEALING__ENVIRONMENT`, by its name as set.
    Env(&'a str),
}

/// The overlay of the environment the files (or `KAFKA_HEALING__ENVIRONMENT`) name, when
/// its file exists. A name that is not a plain file name is an error in `diags`.
pub(super) fn environment_overlay(
    layers: &[Layer],
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Result<Option<Layer>, LoadError> {
    let Some(first) = layers.first() else {
        return Ok(None);
    };
    let Some((name, from)) = environment_name(layers, env) else {
        return Ok(None);
    };
    if let Some(why) = bad_environment_name(name) {
        let msg = format!(
            "{name:?} cannot name an overlay file (config/<environment>.yaml): {why}; \
             use a plain name such as production"
        );
        match from {
            From::File(l) => diags.error_at(&l.path, &l.doc, "environment", msg),
            From::Env(var) => diags.error(
                &first.path,
                None,
                format!("environment: {msg} (value from environment variable {var})"),
            ),
        }
        return Ok(None);
    }
    let path = overlay_path(&first.path, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let Some(doc) = parse_layer(&path, &text, false, diags) else {
        return Ok(None);
    };
    // The overlay cannot switch to another environment: it was chosen by this one.
    if let Some(other) = doc.value.get("environment")
        && other.as_str() != Some(name)
    {
        diags.error_at(
            &path,
            &doc,
            "environment",
            format!("the overlay of environment {name:?} sets another environment ({other}); remove the key here"),
        );
    }
    Ok(Some(Layer {
        path,
        doc,
        overlay: true,
    }))
}

/// The environment in effect before the overlay: the variable's, else the last file's
/// that sets a string.
fn environment_name<'a>(
    layers: &'a [Layer],
    env: &'a HashMap<String, String>,
) -> Option<(&'a str, From<'a>)> {
    let var = format!("{ENV_PREFIX}__ENVIRONMENT");
    if let Some((k, v)) = env.iter().find(|(k, _)| k.eq_ignore_ascii_case(&var)) {
        return Some((v.as_str(), From::Env(k.as_str())));
    }
    layers
        .iter()
        .rev()
        .find_map(|l| match l.doc.value.get("environment")? {
            Value::String(s) => Some((s.as_str(), From::File(l))),
            _ => None,
        })
}
