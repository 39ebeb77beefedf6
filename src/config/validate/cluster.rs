//! The `cluster` section: Kafka brokers and the ZooKeeper ensemble.

use std::collections::HashSet;

use crate::config::model::*;
use crate::yaml::Document;

/// Checks every Kafka broker (names, ports, `metrics_url`, a way to scrape it) and the
/// production minimum of three. Returns the warnings for brokers the default
/// `monitoring.methods` cannot scrape, which are said after all errors.
pub(super) fn kafka_brokers(
    config: &Config,
    doc: &Document,
    err: &mut impl FnMut(&str, String),
) -> Vec<String> {
    let m = &config.monitoring;
    let methods_given = doc.value.pointer("/monitoring/methods").is_some();
    let mut no_metrics = Vec::new();
    let c = &config.cluster;
    if c.name.trim().is_empty() {
        err("cluster.name", "must not be empty".into());
    }
    if c.kafka_brokers.is_empty() {
        err(
            "cluster.kafka_brokers",
            "at least one broker is required".into(),
        );
    }
    if config.environment == Environment::Production && c.kafka_brokers.len() < 3 {
        err(
            "cluster.kafka_brokers",
            format!(
                "production environment requires at least 3 Kafka brokers, found {}",
                c.kafka_brokers.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, b) in c.kafka_brokers.iter().enumerate() {
        let p = format!("cluster.kafka_brokers[{i}]");
        if b.node_id.trim().is_empty() {
            err(&format!("{p}.node_id"), "must not be empty".into());
        } else if !seen.insert(b.node_id.as_str()) {
            err(
                &format!("{p}.node_id"),
                format!("duplicate node_id `{}`", b.node_id),
            );
        }
        if b.host.trim().is_empty() {
            err(&format!("{p}.host"), "must not be empty".into());
        }
        if b.port == 0 {
            err(&format!("{p}.port"), "must be between 1 and 65535".into());
        }
        if b.jmx_port == Some(0) {
            err(
                &format!("{p}.jmx_port"),
                "must be between 1 and 65535".into(),
            );
        }
        if let Some(u) = &b.metrics_url {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(url) => err(
                    &format!("{p}.metrics_url"),
                    format!("scheme `{}` is not http or https", url.scheme()),
                ),
                Err(e) => err(&format!("{p}.metrics_url"), format!("not a URL: {e}")),
            }
        }
        if m.methods.contains(&MonitoringMethod::Jmx)
            && b.jmx_port.is_none()
            && b.metrics_url.is_none()
        {
            let msg = format!(
                "broker `{}` has neither jmx_port nor metrics_url, but monitoring.methods has jmx",
                b.node_id
            );
            if methods_given {
                err(&p, msg);
            } else {
                // The seed's configs leave `methods` at its default: not scraped, and said.
                no_metrics.push(format!("{p}: {msg} (by default): its metrics are not scraped; set metrics_url, or list monitoring.methods without jmx"));
            }
        }
    }
    no_metrics
}

/// Checks the ZooKeeper ensemble: odd size, unique names, ports, and that the
/// `zookeeper` monitoring method has nodes to probe.
pub(super) fn zookeeper_nodes(config: &Config, err: &mut impl FnMut(&str, String)) {
    let m = &config.monitoring;
    let zk = &config.cluster.zookeeper_nodes;
    if !zk.is_empty() && zk.len().is_multiple_of(2) {
        err(
            "cluster.zookeeper_nodes",
            format!(
                "ZooKeeper ensemble size should be an odd number, found {}",
                zk.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, z) in zk.iter().enumerate() {
        if !seen.insert(z.node_id.as_str()) {
            err(
                &format!("cluster.zookeeper_nodes[{i}].node_id"),
                format!("duplicate node_id `{}`", z.node_id),
            );
        }
        if z.port == 0 {
            err(
                &format!("cluster.zookeeper_nodes[{i}].port"),
                "must be between 1 and 65535".into(),
            );
        }
    }
    if m.methods.contains(&MonitoringMethod::Zookeeper) && zk.is_empty() {
        err(
            "monitoring.methods",
            "method `zookeeper` needs cluster.zookeeper_nodes".into(),
        );
    }
}
