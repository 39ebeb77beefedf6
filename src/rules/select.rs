//! Which rules a configuration uses: its rule files (`rules:`), or the built-in pack when
//! it gives `recovery.actions` and no `rules:` ([`super::builtin`]).

use crate::config::Loaded;
use crate::diag::Diagnostics;

use super::RuleSet;
use super::builtin;
use super::load::{load_globs, raw_doc};

/// Loads the rule files a configuration names (globs relative to the config file).
/// Returns the rule set and the diagnostics; the set is only safe to use without errors.
///
/// A `kube` step in a runbook while the config has no `kubernetes:` section is an error
/// at the step's line.
///
/// A config with `recovery.actions` and no `rules:` loads the built-in pack instead
/// ([`super::builtin`]); with both, `rules:` is used and `recovery.actions` is an error.
pub fn load_rules(cfg: &Loaded) -> (RuleSet, Diagnostics) {
    let actions = !cfg.config.recovery.actions.is_empty();
    let (set, mut diags) = if actions && cfg.config.rules.is_empty() {
        builtin::load(cfg)
    } else {
        // Lines of `rules:` from the layer that set it (`-c` files merge).
        match cfg.layer_with("rules") {
            Some(l) => load_globs(&l.path, &l.doc, &cfg.base_dir, &cfg.config.rules),
            None => load_globs(
                &cfg.path,
                &raw_doc(&cfg.path),
                &cfg.base_dir,
                &cfg.config.rules,
            ),
        }
    };
    if actions && !cfg.config.rules.is_empty() {
        let (file, doc) = match cfg.layer_with("recovery.actions") {
            Some(l) => (l.path.clone(), l.doc.clone()),
            None => (cfg.path.clone(), raw_doc(&cfg.path)),
        };
        diags.error_at(
            &file,
            &doc,
            "recovery.actions",
            "`rules:` and `recovery.actions` are both given: `rules:` wins (its rule files \
             are the rules used) and `recovery.actions` would be ignored; remove one of them",
        );
    }
    if cfg.config.kubernetes.is_none() {
        for (file, line, at) in &set.kube_steps {
            diags.error(
                file,
                *line,
                format!(
                    "{at}: a `kube` step needs the `kubernetes:` section in {} \
                     (in_cluster: true or kubeconfig: PATH)",
                    cfg.path.display()
                ),
            );
        }
    }
    (set, diags)
}
