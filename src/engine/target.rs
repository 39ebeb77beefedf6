//! Mapping an alert to the broker it is about.

use crate::config::Broker;
use crate::ingest::webhook::LabelSet;

/// Whether `value` names `b`: its node_id, its host, or host:port with the broker's port,
/// JMX port or metrics URL port. Host names compare case-insensitively (DNS does).
fn names_broker(b: &Broker, value: &str, by_node_id: bool) -> bool {
    if by_node_id && b.node_id == value {
        return true;
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => match p.parse::<u16>() {
            Ok(p) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            Err(_) => (value, None),
        },
        _ => (value, None),
    };
    if !host.eq_ignore_ascii_case(&b.host) {
        return false;
    }
    let metrics_port = b
        .metrics_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.port_or_known_default());
    match port {
        None => true,
        Some(p) => p == b.port || Some(p) == b.jmx_port || Some(p) == metrics_port,
    }
}

/// Finds the broker an alert is about: by the rule's `target_label` when it has one, else
/// by label `node_id`, else by `instance`. The error says which labels were looked at.
pub fn find_target<'a>(
    brokers: &'a [Broker],
    labels: &LabelSet,
    target_label: Option<&str>,
) -> Result<&'a Broker, String> {
    let (label, by_node_id) = match target_label {
        Some(l) => (l, true),
        None if labels.contains_key("node_id") => ("node_id", true),
        None if labels.contains_key("instance") => ("instance", false),
        None => {
            return Err(
                "the alert has no `node_id` or `instance` label to find its broker by".into(),
            );
        }
    };
    let Some(value) = labels.get(label) else {
        return Err(format!(
            "the alert has no `{label}` label (the rule's target_label)"
        ));
    };
    let by_id = label == "node_id";
    let found: Vec<&Broker> = brokers
        .iter()
        .filter(|b| {
            if by_id {
                b.node_id == *value
            } else {
                names_broker(b, value, by_node_id)
            }
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "{label}=\"{}\" is not a configured broker",
            value.escape_debug()
        )),
        many => Err(format!(
            "{label}=\"{}\" matches {} brokers ({}); add the port or use node_id",
            value.escape_debug(),
            many.len(),
            many.iter()
                .map(|b| b.node_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: &str, host: &str, port: u16, jmx: Option<u16>) -> Broker {
        Broker {
            node_id: id.into(),
            host: host.into(),
            port,
            jmx_port: jmx,
            metrics_url: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_by_node_id_instance_and_target_label() {
        let bs = vec![
            broker("kafka-1", "k1.example.com", 9092, Some(9404)),
            broker("kafka-2", "k2.example.com", 9092, Some(9404)),
            broker("3", "shared.example.com", 9093, Some(9405)),
            broker("4", "shared.example.com", 9094, Some(9406)),
        ];
        let t = |l: &[(&str, &str)], tl: Option<&str>| {
            find_target(&bs, &labels(l), tl).map(|b| b.node_id.clone())
        };
        assert_eq!(t(&[("node_id", "kafka-2")], None).unwrap(), "kafka-2");
        assert_eq!(
            t(
                &[("node_id", "kafka-2"), ("instance", "k1.example.com:9404")],
                None
            )
            .unwrap(),
            "kafka-2"
        );
        assert_eq!(
            t(&[("instance", "k1.example.com:9404")], None).unwrap(),
            "kafka-1"
        );
        assert_eq!(
            t(&[("instance", "K1.Example.COM:9092")], None).unwrap(),
            "kafka-1"
        );
        assert_eq!(
            t(&[("instance", "k2.example.com")], None).unwrap(),
            "kafka-2"
        );
        assert!(
            t(&[("instance", "k2.example.com:1234")], None)
                .unwrap_err()
                .contains("not a configured broker")
        );
        assert_eq!(
            t(&[("instance", "shared.example.com:9406")], None).unwrap(),
            "4"
        );
        assert!(
            t(&[("instance", "shared.example.com")], None)
                .unwrap_err()
                .contains("matches 2 brokers")
        );
        assert_eq!(t(&[("pod", "kafka-1")], Some("pod")).unwrap(), "kafka-1");
        assert_eq!(
            t(&[("host", "k2.example.com:9092")], Some("host")).unwrap(),
            "kafka-2"
        );
        assert!(
            t(&[("x", "y")], Some("pod"))
                .unwrap_err()
                .contains("no `pod` label")
        );
        assert!(
            t(&[("alertname", "A")], None)
                .unwrap_err()
                .contains("no `node_id` or `instance`")
        );
        assert!(t(&[("node_id", "kafka-9")], None).is_err());
    }
}
