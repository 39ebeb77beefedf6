//! Brokers whose `jmx_port` is likely the raw JMX port rather than an exporter's.

use std::path::Path;

use crate::config::model::*;
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// The ports JMX exporters are commonly served on: jmx_exporter's own default (5556),
/// Strimzi's and Confluent's (7071), Bitnami's and the Helm charts' (9404).
const EXPORTER_PORTS: &[u16] = &[5556, 7071, 9404];

/// `jmx_port` without `metrics_url` is scraped as a JMX exporter's HTTP port; in the
/// seed it is the broker's raw JMX (RMI) port, which speaks no HTTP. `check` is offline,
/// so it cannot ask: a port that is no common exporter port ([`EXPORTER_PORTS`]) is one
/// warning naming the brokers and what to set.
pub(super) fn raw_jmx_port(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    if !config.monitoring.methods.contains(&MonitoringMethod::Jmx) {
        return;
    }
    let bare: Vec<(usize, &Broker)> = config
        .cluster
        .kafka_brokers
        .iter()
        .enumerate()
        .filter(|(_, b)| {
            b.metrics_url.is_none() && b.jmx_port.is_some_and(|p| !EXPORTER_PORTS.contains(&p))
        })
        .collect();
    let Some((first, _)) = bare.first() else {
        return;
    };
    let names: Vec<&str> = bare.iter().map(|(_, b)| b.node_id.as_str()).collect();
    diags.warning(
        file,
        doc.line_of(&format!("cluster.kafka_brokers[{first}].jmx_port")),
        format!(
            "cluster.kafka_brokers[{first}].jmx_port: `jmx` scrapes http://HOST:JMX_PORT/metrics \
             of {} {}, so jmx_port must be a Prometheus JMX exporter's port (commonly 5556, \
             7071 or 9404); if it is the broker's raw JMX port, as the seed's jmx_port is, it \
             speaks no HTTP and nothing is scraped: set metrics_url to the JMX exporter's URL (jmx_port then only maps \
             `instance` labels to the broker)",
            if names.len() == 1 {
                "broker"
            } else {
                "brokers"
            },
            names.join(", ")
        ),
    );
}
