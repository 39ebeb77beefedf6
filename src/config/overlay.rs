//! The seed's per-environment overlay: `environment: X` loads `config/X.yaml` beside the
//! first config file, merged over the files given. This module chooses the file and judges
//! what it says; the loader reads it.

use std::collections::HashMap;

use serde_json::Value;

use std::path::PathBuf;

use super::layers::{ENV_PREFIX, Layer, bad_environment_name, overlay_path};
use crate::diag::Diagnostics;

/// Where the environment's name was set.
enum From<'a> {
    /// A file's `environment:` key.
    File(&'a Layer),
    /// `KAFKA_HEALING__ENVIRONMENT`, by its name as set.
    Env(&'a str),
}

/// The name and path of the overlay the files (or `KAFKA_HEALING__ENVIRONMENT`) choose,
/// if any. A name that is not a plain file name is an error in `diags` (and no overlay).
pub(super) fn overlay_file(
    layers: &[Layer],
    env: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Option<(String, PathBuf)> {
    let first = layers.first()?;
    let (name, from) = environment_name(layers, env)?;
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
        return None;
    }
    Some((name.to_string(), overlay_path(&first.path, name)))
}

/// The overlay cannot switch to another environment: it was chosen by `name`.
pub(super) fn check_overlay(name: &str, overlay: &Layer, diags: &mut Diagnostics) {
    if let Some(other) = overlay.doc.value.get("environment")
        && other.as_str() != Some(name)
    {
        diags.error_at(
            &overlay.path,
            &overlay.doc,
            "environment",
            format!("the overlay of environment {name:?} sets another environment ({other}); remove the key here"),
        );
    }
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
