//! The seed guide's keys that this service accepts with a meaning of its own: normalizing
//! them after loading, and the warnings for those that have no effect yet.

use std::collections::HashMap;
use std::path::Path;

use super::model::{Config, MonitoringMethod};
use super::node::Node;
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// Takes the seed's `notifications.escalation.enabled` out of the tree before the section
/// is read (the model has no such field): returns true when it is `false`, and then drops
/// the whole `escalation` section. A value that is not a boolean is an error.
pub(super) fn take_escalation_switch(
    table: &mut HashMap<String, Node>,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) -> bool {
    let Some(Node::Map(n)) = table.get_mut("notifications") else {
        return false;
    };
    let Some(i) = n.iter().position(|(k, _)| k == "escalation") else {
        return false;
    };
    let Node::Map(esc) = &mut n[i].1 else {
        return false;
    };
    let Some(j) = esc.iter().position(|(k, _)| k == "enabled") else {
        return false;
    };
    let (_, value) = esc.remove(j);
    match serde_path_to_error::deserialize::<_, bool>(value) {
        Ok(true) => false,
        Ok(false) => {
            n.remove(i);
            true
        }
        Err(e) => {
            let path = "notifications.escalation.enabled";
            diags.error_at(file, doc, path, e.into_inner().to_string());
            false
        }
    }
}

/// Whether `config` lists a Kubernetes recovery action (`restart_pod`,
/// `scale_statefulset`), and whether it watches through the `kubernetes` method.
fn kube_uses(config: &Config) -> (bool, bool) {
    let action = config.recovery.actions.iter().any(|a| {
        matches!(
            a,
            super::RecoveryAction::RestartPod | super::RecoveryAction::ScaleStatefulset
        )
    });
    let method = config
        .monitoring
        .methods
        .contains(&MonitoringMethod::Kubernetes);
    (action, method)
}

/// Settles the seed's shorthand into the model every consumer reads: an escalation without
/// `to_emails` goes to on-call (`smtp.to_emails`).
pub(super) fn normalize(config: &mut Config, escalation_disabled: bool) {
    // The seed runs its Kubernetes actions and watch from a pod in the cluster, with no
    // section for it; so do we, and `warn` says so.
    let (kube_action, kube_method) = kube_uses(config);
    if ((kube_action && config.rules.is_empty()) || kube_method) && config.kubernetes.is_none() {
        config.kubernetes = Some(super::KubernetesConfig {
            in_cluster: true,
            kubeconfig: None,
            context: None,
            request_timeout_seconds: 30,
        });
    }
    let n = &mut config.notifications;
    n.escalation_disabled = escalation_disabled;
    if let (Some(esc), Some(smtp)) = (n.escalation.as_mut(), n.smtp.as_ref())
        && esc.to_emails.is_empty()
    {
        esc.to_emails.clone_from(&smtp.to_emails);
    }
}

/// Warnings for the seed's keys whose meaning here is implied, each saying what to set
/// to choose otherwise.
pub(super) fn warn(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let implied = config.kubernetes.as_ref().is_some_and(|k| k.in_cluster)
        && doc.line_of("kubernetes").is_none();
    let (kube_action, kube_method) = kube_uses(config);
    if implied && kube_method {
        diags.warning(
            file,
            doc.line_of("monitoring.methods"),
            "monitoring.methods: `kubernetes` reads the broker pods through the Kubernetes API, \
             and no `kubernetes:` section is set: the pod's service account is used \
             (in_cluster: true), as the seed's deployment runs; set `kubernetes:` to choose"
                .to_string(),
        );
    }
    if kube_method {
        // Said now, not as an unknown state every round.
        for b in &config.cluster.kafka_brokers {
            if let Err(e) = crate::ingest::kube_watch::pod_of(config, b) {
                diags.error_at(
                    file,
                    doc,
                    "monitoring.methods",
                    format!(
                        "`kubernetes` cannot name the pod of broker `{}`: {e}",
                        b.node_id
                    ),
                );
            }
        }
    }
    if implied && kube_action && config.rules.is_empty() {
        diags.warning(
            file,
            doc.line_of("recovery.actions"),
            "recovery.actions: `restart_pod` and `scale_statefulset` use the Kubernetes API, and \
             no `kubernetes:` section is set: the pod's service account is used (in_cluster: \
             true), as the seed's deployment runs; set `kubernetes:` to choose"
                .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, LoadError, MonitoringMethod, RecoveryAction, load_text};

    const SMTP: &str = "notifications:\n  smtp: { host: 127.0.0.1, port: 1025, tls: none, from_email: a@b.test, to_emails: [oncall@b.test] }\n";

    /// Loads `text` as `/cfg/c.yaml`; the config and its warnings, or the errors.
    fn load(text: &str) -> Result<(Config, String), String> {
        match load_text(text, Path::new("/cfg/c.yaml"), Default::default()) {
            Ok(l) => Ok((l.config, l.warnings.to_string())),
            Err(LoadError::Invalid(d)) => Err(d.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn base(extra: &str) -> String {
        format!(
            "cluster:\n  kafka_brokers:\n    - {{ node_id: k1, host: 127.0.0.1, port: 9092 }}\nmonitoring: {{ methods: [socket] }}\nrules: []\n{extra}"
        )
    }

    #[test]
    fn cluster_name_defaults_to_kafka() {
        let (c, _) = load(&base("")).unwrap();
        assert_eq!(c.cluster.name, "kafka");
        let (c, _) = load(&base("").replace("cluster:\n", "cluster:\n  name: prod-eu\n")).unwrap();
        assert_eq!(c.cluster.name, "prod-eu");
    }

    #[test]
    fn escalation_enabled_false_turns_escalation_off() {
        let off =
            format!("{SMTP}  escalation:\n    enabled: false\n    to_emails: [boss@b.test]\n");
        let (c, _) = load(&base(&off)).unwrap();
        assert!(c.notifications.escalation.is_none());
        assert!(c.notifications.escalation_disabled);
        // The seed's bare `enabled: true`: escalations go to on-call.
        let on = format!("{SMTP}  escalation:\n    enabled: true\n");
        let (c, _) = load(&base(&on)).unwrap();
        assert!(!c.notifications.escalation_disabled);
        let esc = c.notifications.escalation.unwrap();
        assert_eq!(esc.to_emails, vec!["oncall@b.test".to_string()]);
        assert_eq!(esc.undeliverable_after_seconds, 3600);
        // Absent: not disabled (escalations go to on-call, as before).
        let (c, _) = load(&base(SMTP)).unwrap();
        assert!(!c.notifications.escalation_disabled);
        let e = load(&base(&format!("{SMTP}  escalation:\n    enabled: maybe\n"))).unwrap_err();
        assert!(
            e.contains("/cfg/c.yaml:9: error: notifications.escalation.enabled: expected true or false, got the string \"maybe\""),
            "{e}"
        );
    }

    #[test]
    fn escalation_without_smtp_is_a_warning_in_the_seed_shape_only() {
        let (_, w) = load(&base("notifications:\n  escalation:\n    enabled: true\n")).unwrap();
        assert!(
            w.contains("/cfg/c.yaml:7: warning: notifications.escalation: no escalation mail is sent without notifications.smtp (host, from_email, to_emails); add it, or set `enabled: false`"),
            "{w}"
        );
        let e = load(&base(
            "notifications:\n  escalation:\n    to_emails: [boss@b.test]\n",
        ))
        .unwrap_err();
        assert!(
            e.contains("error: notifications.escalation: escalation needs notifications.smtp"),
            "{e}"
        );
    }

    #[test]
    fn recovery_actions_are_parsed_and_validated() {
        let (c, w) = load(&base(
            "recovery:\n  actions: [restart_service, ansible, RESTART_POD, scale_statefulset]\n",
        ))
        .unwrap();
        assert_eq!(
            c.recovery.actions,
            vec![
                RecoveryAction::RestartService,
                RecoveryAction::Ansible,
                RecoveryAction::RestartPod,
                RecoveryAction::ScaleStatefulset
            ]
        );
        // They run (the built-in pack): no "not run yet" warning; the Kubernetes ones, with
        // no `kubernetes:` section, say they use the pod's service account.
        assert!(!w.contains("not run yet"), "{w}");
        assert!(
            w.contains("/cfg/c.yaml:7: warning: recovery.actions: `restart_pod` and `scale_statefulset` use the Kubernetes API, and no `kubernetes:` section is set: the pod's service account is used (in_cluster: true)"),
            "{w}"
        );
        assert!(c.kubernetes.as_ref().is_some_and(|k| k.in_cluster));
        let e = load(&base("recovery:\n  actions: [restart_service, reboot]\n")).unwrap_err();
        assert!(
            e.contains("/cfg/c.yaml:7: error: recovery.actions[1]: unknown recovery action `reboot`, expected one of: restart_service ansible restart_pod scale_statefulset"),
            "{e}"
        );
        let (c, w) = load(&base("")).unwrap();
        assert!(c.recovery.actions.is_empty());
        assert!(!w.contains("recovery.actions"), "{w}");
    }

    #[test]
    fn kubernetes_method_is_watched_with_the_service_account_by_default() {
        let (c, w) = load(&base("").replace("[socket]", "[socket, kubernetes]")).unwrap();
        assert_eq!(
            c.monitoring.methods,
            vec![MonitoringMethod::Socket, MonitoringMethod::Kubernetes]
        );
        assert!(!w.contains("not watched"), "{w}");
        assert!(
            w.contains("/cfg/c.yaml:4: warning: monitoring.methods: `kubernetes` reads the broker pods through the Kubernetes API, and no `kubernetes:` section is set: the pod's service account is used (in_cluster: true)"),
            "{w}"
        );
        assert!(c.kubernetes.as_ref().is_some_and(|k| k.in_cluster));
        // A `kubernetes:` section is used as given, and nothing is said.
        let kc = "kubernetes: { in_cluster: true, request_timeout_seconds: 7 }\n";
        let (c, w) = load(&base(kc).replace("[socket]", "[socket, kubernetes]")).unwrap();
        assert_eq!(c.kubernetes.map(|k| k.request_timeout_seconds), Some(7));
        assert!(!w.contains("monitoring.methods"), "{w}");
        // A broker whose pod cannot be named is said at load, not every round.
        let bad = base("")
            .replace("[socket]", "[kubernetes]")
            .replace("k1", "Kafka_1");
        let e = load(&bad).unwrap_err();
        assert!(
            e.contains("/cfg/c.yaml:4: error: monitoring.methods: `kubernetes` cannot name the pod of broker `Kafka_1`: pod: `Kafka_1` is not a DNS-1123 name"),
            "{e}"
        );
    }

    #[test]
    fn jmx_by_default_without_a_port_is_a_warning_listed_jmx_an_error() {
        let text = "cluster:\n  kafka_brokers:\n    - { node_id: k1, host: 127.0.0.1, port: 9092 }\nrules: []\n";
        let (_, w) = load(text).unwrap();
        assert!(
            w.contains("warning: cluster.kafka_brokers[0]: broker `k1` has neither jmx_port nor metrics_url, but monitoring.methods has jmx (by default): its metrics are not scraped"),
            "{w}"
        );
        let e = load(&format!("{text}monitoring: {{ methods: [jmx] }}\n")).unwrap_err();
        assert!(
            e.contains("error: cluster.kafka_brokers[0]: broker `k1` has neither jmx_port nor metrics_url, but monitoring.methods has jmx"),
            "{e}"
        );
    }
}
