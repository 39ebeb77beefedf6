//! The seed guide's seven example configs (tests/data/seed/) load as written: `check`
//! passes on each with the SMTP variables set, except the development dictionary of the
//! config manager, which lacks `from_email` as the seed's own schema says.
//!
//! Written for the merged state: the `logging.file`/`max_size_mb`/`backup_count`/`audit`
//! and `system.metrics` keys are another branch's.

use std::path::Path;

use crate::common::*;

const DIR: &str = "tests/data/seed";

/// Every file of the directory and the brokers its summary must name (all in the default
/// cluster `kafka`, since the seed names none).
const PASSING: &[(&str, usize)] = &[
    ("dev-setup.yaml", 2),
    ("config.yaml.template", 1),
    ("kubernetes-configmap.yaml", 3),
    ("config-manager-staging.yaml", 2),
    ("config-manager-production.yaml", 2),
    ("integration-test.yaml", 1),
];
const DEVELOPMENT: &str = "config-manager-development.yaml";

fn check(file: &str) -> (Option<i32>, String, String) {
    let path = format!("{DIR}/{file}");
    let o = run_env(
        &["check", "-c", &path],
        &[("SMTP_USERNAME", "healer"), ("SMTP_PASSWORD", "s3cret")],
    );
    (o.status.code(), stdout(&o), stderr(&o))
}

#[test]
fn every_seed_file_is_checked() {
    let mut on_disk: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = PASSING.iter().map(|(f, _)| f.to_string()).collect();
    listed.push(DEVELOPMENT.into());
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(Path::new(DIR).join("README.md").exists());
}

#[test]
fn seed_configs_pass_check() {
    for (file, brokers) in PASSING {
        let (code, out, err) = check(file);
        assert_eq!(code, Some(0), "{file}:\n{err}");
        let noun = if *brokers == 1 { "broker" } else { "brokers" };
        assert!(
            out.contains(&format!("{brokers} {noun} in cluster kafka\n")),
            "{file}: {out}"
        );
        assert!(!err.contains(": error: "), "{file}:\n{err}");
    }
}

#[test]
fn the_development_dictionary_lacks_from_email() {
    let (code, out, err) = check(DEVELOPMENT);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        lines,
        vec![
            "tests/data/seed/config-manager-development.yaml:15: error: notifications.smtp: missing field `from_email`"
        ],
        "{err}"
    );
    assert!(
        err.ends_with("tests/data/seed/config-manager-development.yaml: INVALID (1 error)\n"),
        "{err}"
    );
}

/// What has no effect yet is said, with what to use instead, and is never an error.
#[test]
fn seed_keys_without_effect_are_warnings_that_say_what_to_use() {
    let (code, _, err) = check("kubernetes-configmap.yaml");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("kubernetes-configmap.yaml:30: warning: monitoring.methods: `kubernetes` reads the broker pods through the Kubernetes API, and no `kubernetes:` section is set: the pod's service account is used (in_cluster: true)"),
        "{err}"
    );
    // Its kube actions run with the pod's service account, as the seed's deployment does.
    assert!(
        err.contains("warning: recovery.actions: `restart_pod` and `scale_statefulset` use the Kubernetes API, and no `kubernetes:` section is set: the pod's service account is used (in_cluster: true)"),
        "{err}"
    );
    let (code, _, err) = check("config-manager-production.yaml");
    assert_eq!(code, Some(0), "{err}");
    for w in [
        ":27: warning: security.ssl: ssl is enabled but `ca_file` is missing",
        ":29: warning: security.sasl: sasl is enabled but `mechanism`, `username` and the password are missing",
        ":33: warning: notifications.escalation: no escalation mail is sent without notifications.smtp",
    ] {
        assert!(err.contains(w), "missing `{w}` in:\n{err}");
    }
}
