//! A small async client for the few Kafka requests the healer needs: ApiVersions (is the
//! broker alive, in the protocol's sense), Metadata (brokers, controller, every partition's
//! leader, replicas, ISR and offline replicas), DescribeConfigs (`min.insync.replicas`) and
//! DescribeQuorum (KRaft's controller quorum), over plaintext, TLS (rustls) and SASL
//! (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
//!
//! The wire format comes from the `kafka-protocol` crate: its request and response types are
//! generated from Kafka's own JSON message schemas (every API and version, currently Kafka
//! 4.1's), so nothing here hand-encodes a field. Of the alternatives, `rdkafka` wraps the C
//! librdkafka (FFI, which this crate's `forbid(unsafe_code)` and static build avoid) and has
//! no DescribeQuorum; `rskafka` is a producer/consumer client without DescribeConfigs' broker
//! defaults or DescribeQuorum, and its protocol layer is not public. This module adds only
//! the framing, version negotiation, timeouts, connection reuse, TLS and SASL.
//!
//! The crate is vendored (`vendor/kafka-protocol/`, release 0.18.0) with one fix: its array
//! decoders sized an allocation from the count a peer sent, so a 15-byte answer could abort
//! the whole process; they are now bounded by the bytes received (see VENDORED.md there).
//!
//! Every request is bounded by [`ClientOptions::timeout`] (dial, TLS, SASL and the request
//! itself), a response larger than [`ClientOptions::max_response_bytes`] is refused before
//! it is read, and one connection per broker is kept and re-dialed after any error.

mod client;
pub mod cluster;
mod conn;
pub mod sasl;
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

pub use client::{ClientOptions, KafkaClient, SaslCredentials};

/// Why a Kafka request did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No answer within the time limit (a hung broker, or one that accepts TCP only).
    #[error("{broker}: no answer to {request} within {after:?}")]
    Timeout {
        /// `host:port`.
        broker: String,
        /// The request (or `connect`, `TLS handshake`, `SASL`) that did not finish.
        request: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    #[error("{broker}: cannot connect: {source}")]
    Connect {
        /// `host:port`.
        broker: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The connection failed while a request was under way (reset, closed early).
    #[error("{broker}: connection lost during {request}: {source}")]
    Io {
        /// `host:port`.
        broker: String,
        /// The request.
        request: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, not a TLS listener).
    #[error("{broker}: TLS handshake failed: {message}")]
    Tls {
        /// `host:port`.
        broker: String,
        /// rustls' reason.
        message: String,
    },
    /// The broker answered and refused the credentials: the broker is alive, the
    /// configuration (user, password, mechanism) is wrong.
    #[error("{broker}: SASL authentication failed ({mechanism}): {message}")]
    Authentication {
        /// `host:port`.
        broker: String,
        /// The mechanism tried.
        mechanism: &'static str,
        /// The broker's message, or what the client found wrong (server signature).
        message: String,
    },
    /// The peer announced a response larger than the limit; nothing of it was read.
    #[error("{broker}: a response of {size} bytes to {request} exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// `host:port`.
        broker: String,
        /// The request.
        request: &'static str,
        /// The size the peer announced.
        size: u32,
        /// [`ClientOptions::max_response_bytes`].
        limit: usize,
    },
    /// What came back is not a valid Kafka response (not a Kafka listener, a TLS listener
    /// reached without TLS, a codec error).
    #[error("{broker}: invalid response to {request}: {message}")]
    Protocol {
        /// `host:port`.
        broker: String,
        /// The request.
        request: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The broker supports no version of the API that this client speaks.
    #[error("{broker}: {request} is not supported by this broker")]
    Unsupported {
        /// `host:port`.
        broker: String,
        /// The request.
        request: &'static str,
    },
    /// The broker answered the request with a Kafka error code.
    #[error("{broker}: {request} failed with Kafka error {code}: {message}")]
    Broker {
        /// `host:port`.
        broker: String,
        /// The request.
        request: &'static str,
        /// Kafka's error code.
        code: i16,
        /// The error's name or the broker's message.
        message: String,
    },
    /// The TLS settings could not be used (unreadable or invalid PEM files).
    #[error("TLS settings: {0}")]
    TlsSettings(#[from] tls::TlsError),
}

impl KafkaError {
    /// True when the error proves the broker answers the Kafka protocol (it refused the
    /// credentials or answered with an error code): not a reason to call it down.
    pub fn proves_alive(&self) -> bool {
        matches!(
            self,
            KafkaError::Authentication { .. } | KafkaError::Broker { .. }
        )
    }

    /// True for a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, KafkaError::Timeout { .. })
    }
}

/// The API version ranges a broker announced in ApiVersions, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersions {
    /// API key → (min, max) version.
    pub ranges: BTreeMap<i16, (i16, i16)>,
}

impl ApiVersions {
    /// The highest version both this client (`ours`, inclusive) and the broker support;
    /// `None` when the ranges do not meet or the broker does not list the API.
    pub fn negotiate(&self, key: i16, ours: (i16, i16)) -> Option<i16> {
        let (bmin, bmax) = *self.ranges.get(&key)?;
        let v = bmax.min(ours.1);
        (v >= bmin.max(ours.0)).then_some(v)
    }
}

/// A broker registered in the cluster (Metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Kafka's `node.id` / `broker.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when set.
    pub rack: Option<String>,
}

/// One partition's state (Metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id; `None` when leaderless (Kafka's -1).
    pub leader: Option<i32>,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas, as the controller last recorded them.
    pub isr: Vec<i32>,
    /// Replicas whose log directory is offline.
    pub offline: Vec<i32>,
    /// Kafka error code for this partition (0, or e.g. 5 LEADER_NOT_AVAILABLE).
    pub error_code: i16,
}

/// One topic (Metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Internal topic (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
    /// Kafka error code for this topic.
    pub error_code: i16,
    /// Partitions, by index.
    pub partitions: Vec<PartitionInfo>,
}

/// What one Metadata answer says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The active controller's node id as brokers see it (in KRaft: a random broker, as
    /// Kafka hides the controllers from clients); `None` when unknown.
    pub controller_id: Option<i32>,
    /// Registered (live, in Kafka's view) brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Every topic, internal ones included.
    pub topics: Vec<TopicInfo>,
}

/// `min.insync.replicas`: the broker default and each topic's effective value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinIsr {
    /// The broker's value (its static or dynamic config, or Kafka's default 1).
    pub broker_default: Option<u32>,
    /// Each topic's effective value (its override, else the broker default).
    pub topics: BTreeMap<String, u32>,
    /// Resources (`topic NAME`, `broker ID`) whose value could not be read, with the reason
    /// (deleted meanwhile, not authorized): a precondition must not assume the default.
    pub errors: BTreeMap<String, String>,
}

impl MinIsr {
    /// The value for `topic`: its own, else the broker default, else Kafka's default 1.
    pub fn of(&self, topic: &str) -> u32 {
        self.topics
            .get(topic)
            .copied()
            .or(self.broker_default)
            .unwrap_or(1)
    }
}

/// One replica of KRaft's metadata log (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    /// The controller's (or observer's) node id.
    pub replica_id: i32,
    /// Its log end offset; -1 when unknown.
    pub log_end_offset: i64,
    /// How far it is behind the leader's high watermark (0 when unknown or ahead).
    pub lag: i64,
    /// When it last caught up with the leader (ms since the epoch); `None` when unknown.
    pub last_caught_up_ms: Option<i64>,
}

/// KRaft's controller quorum (DescribeQuorum on `__cluster_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    /// The active controller; `None` during an election.
    pub leader_id: Option<i32>,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// The metadata log's high watermark.
    pub high_watermark: i64,
    /// The voters (controllers).
    pub voters: Vec<QuorumReplica>,
    /// Observers (brokers that only follow the log).
    pub observers: Vec<QuorumReplica>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation() {
        let v = ApiVersions {
            ranges: [(3, (0, 12)), (55, (0, 2)), (32, (1, 4))]
                .into_iter()
                .collect(),
        };
        assert_eq!(v.negotiate(3, (1, 13)), Some(12), "the broker's max");
        assert_eq!(v.negotiate(3, (1, 9)), Some(9), "ours");
        assert_eq!(v.negotiate(32, (5, 7)), None, "ranges do not meet");
        assert_eq!(
            v.negotiate(17, (1, 1)),
            None,
            "not listed (ZooKeeper mode: no 55)"
        );
        assert_eq!(v.negotiate(55, (0, 2)), Some(2));
    }
}
