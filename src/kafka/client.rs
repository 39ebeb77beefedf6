//! The client: options from the `security:` section, one reused connection per broker, and
//! the four requests, each bounded by the time limit.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeQuorumRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::conn::{Conn, error_text};
pub use super::sasl::SaslCredentials;
use super::tls::TlsSettings;
use super::{
    ApiVersions, BrokerInfo, ClusterMetadata, KafkaError, MinIsr, PartitionInfo, QuorumInfo,
    QuorumReplica, TopicInfo,
};
use crate::config::SecurityConfig;

/// Kafka's DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// The config key the preconditions need.
pub(crate) const MIN_ISR: &str = "min.insync.replicas";
/// KRaft's metadata log, whose quorum DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit of every request, the dial, TLS and SASL of a new connection included.
    pub timeout: Duration,
    /// Largest response accepted; a peer announcing more gets
    /// [`KafkaError::ResponseTooLarge`] before anything is allocated for it.
    pub max_response_bytes: usize,
    /// TLS, when `security.ssl.enabled`.
    pub tls: Option<TlsSettings>,
    /// SASL, when `security.sasl.enabled`.
    pub sasl: Option<SaslCredentials>,
}

/// Default of [`ClientOptions::max_response_bytes`]: Metadata of a cluster with tens of
/// thousands of partitions fits.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

impl ClientOptions {
    /// Plaintext, no SASL.
    pub fn plaintext(timeout: Duration) -> ClientOptions {
        ClientOptions {
            timeout,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            tls: None,
            sasl: None,
        }
    }

    /// From a validated `security:` section; relative paths resolve against `base_dir`
    /// (the config file's directory).
    pub fn from_config(
        security: &SecurityConfig,
        timeout: Duration,
        base_dir: &Path,
    ) -> Result<ClientOptions, KafkaError> {
        let path = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        let mut opts = ClientOptions::plaintext(timeout);
        let ssl = &security.ssl;
        if ssl.enabled {
            let Some(ca) = &ssl.ca_file else {
                return Err(super::tls::TlsError::Rustls(
                    "security.ssl.enabled without ca_file".into(),
                )
                .into());
            };
            let client = match (&ssl.cert_file, &ssl.key_file) {
                (Some(c), Some(k)) => Some((path(c), path(k))),
                _ => None,
            };
            opts.tls = Some(TlsSettings::from_files(
                &path(ca),
                client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                ssl.server_name.as_deref(),
            )?);
        }
        let sasl = &security.sasl;
        if sasl.enabled
            && let (Some(mechanism), Some(username), Some(password)) =
                (sasl.mechanism, &sasl.username, &sasl.password)
        {
            opts.sasl = Some(SaslCredentials {
                mechanism,
                username: username.clone(),
                password: password.clone(),
            });
        }
        Ok(opts)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;
type BoxFut<'c, T> = Pin<Box<dyn Future<Output = Result<T, KafkaError>> + Send + 'c>>;

/// A Kafka client: one connection per broker (`host:port`), reused by later requests and
/// re-dialed after any error. Requests to one broker run one at a time; requests to
/// different brokers run in parallel.
#[derive(Debug)]
pub struct KafkaClient {
    opts: ClientOptions,
    pool: Mutex<HashMap<String, Slot>>,
    dials: AtomicU64,
}

impl KafkaClient {
    /// A client with no connection yet.
    pub fn new(opts: ClientOptions) -> KafkaClient {
        KafkaClient {
            opts,
            pool: Mutex::new(HashMap::new()),
            dials: AtomicU64::new(0),
        }
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Connections dialed so far (a reused connection is not dialed again).
    pub fn dials(&self) -> u64 {
        self.dials.load(Ordering::Relaxed)
    }

    /// Drops the connection to `host:port`, if any.
    pub fn forget(&self, host: &str, port: u16) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.remove(&format!("{host}:{port}"));
        }
    }

    fn slot(&self, key: &str) -> Slot {
        // A poisoned map (a panic elsewhere while it was held) still holds valid slots.
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.entry(key.to_string()).or_default().clone()
    }

    /// Runs `op` on the broker's connection within `limit` (the wait for the connection,
    /// a dial and the request together). `op` learns whether the connection is new. A
    /// reused connection that fails on I/O (closed by a restart) is re-dialed once within
    /// the same limit; after any error the connection is dropped.
    async fn with_conn<T: Send>(
        &self,
        host: &str,
        port: u16,
        request: &'static str,
        limit: Duration,
        op: impl for<'c> Fn(&'c mut Conn, bool) -> BoxFut<'c, T> + Send + Sync,
    ) -> Result<T, KafkaError> {
        let key = format!("{host}:{port}");
        let slot = self.slot(&key);
        let work = async {
            let mut guard = slot.lock().await;
            let mut reused = guard.take();
            loop {
                let fresh = reused.is_none();
                let mut conn = match reused.take() {
                    Some(c) => c,
                    None => {
                        self.dials.fetch_add(1, Ordering::Relaxed);
                        Conn::open(
                            host,
                            port,
                            self.opts.tls.as_ref(),
                            self.opts.sasl.as_ref(),
                            self.opts.max_response_bytes,
                        )
                        .await?
                    }
                };
                match op(&mut conn, fresh).await {
                    Ok(v) => {
                        *guard = Some(conn);
                        return Ok(v);
                    }
                    Err(KafkaError::Io { .. }) if !fresh => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(KafkaError::Timeout {
                broker: key,
                request,
                after: limit,
            }),
        }
    }

    /// ApiVersions within [`ClientOptions::timeout`]: the broker answers the protocol.
    pub async fn api_versions(&self, host: &str, port: u16) -> Result<ApiVersions, KafkaError> {
        self.api_versions_within(host, port, self.opts.timeout)
            .await
    }

    /// ApiVersions within `limit`. On a new connection the answer of the connection's own
    /// ApiVersions is returned (not asked twice).
    pub async fn api_versions_within(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<ApiVersions, KafkaError> {
        self.with_conn(host, port, "ApiVersions", limit, |c, fresh| {
            Box::pin(async move {
                if fresh {
                    Ok(c.versions.clone())
                } else {
                    let v = c.api_versions().await?;
                    c.versions = v.clone();
                    Ok(v)
                }
            })
        })
        .await
    }

    /// Metadata of every topic: brokers, controller, partitions' leader, replicas, ISR and
    /// offline replicas.
    pub async fn metadata(&self, host: &str, port: u16) -> Result<ClusterMetadata, KafkaError> {
        self.with_conn(host, port, "Metadata", self.opts.timeout, |c, _| {
            Box::pin(metadata(c))
        })
        .await
    }

    /// `min.insync.replicas` of `topics` and of the broker `broker_id` (which must be the
    /// broker at `host:port`: Kafka answers broker configs only about itself; `None` asks
    /// for the cluster-wide dynamic default only).
    pub async fn min_insync_replicas(
        &self,
        host: &str,
        port: u16,
        topics: &[String],
        broker_id: Option<i32>,
    ) -> Result<MinIsr, KafkaError> {
        let topics = topics.to_vec();
        self.with_conn(host, port, "DescribeConfigs", self.opts.timeout, |c, _| {
            let topics = topics.clone();
            Box::pin(async move { min_isr(c, &topics, broker_id).await })
        })
        .await
    }

    /// KRaft's controller quorum; `Ok(None)` when the broker does not offer DescribeQuorum
    /// (ZooKeeper mode, or Kafka before 3.3).
    pub async fn describe_quorum(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Option<QuorumInfo>, KafkaError> {
        self.with_conn(host, port, "DescribeQuorum", self.opts.timeout, |c, _| {
            Box::pin(quorum(c))
        })
        .await
    }

    /// [`KafkaClient::api_versions`] in up to 2 tries within `limit` (a stale connection
    /// or a lost packet is not a dead broker); the answer's latency on success.
    pub async fn alive(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<Duration, KafkaError> {
        let t0 = Instant::now();
        let first = self.api_versions_within(host, port, limit / 2).await;
        match first {
            Ok(_) => Ok(t0.elapsed()),
            Err(e) if e.proves_alive() => Err(e),
            Err(_) => {
                let rest = limit
                    .saturating_sub(t0.elapsed())
                    .max(Duration::from_millis(1));
                self.api_versions_within(host, port, rest)
                    .await
                    .map(|_| t0.elapsed())
                    .map_err(|e| match e {
                        // The limit of the whole check, not the second try's share.
                        KafkaError::Timeout {
                            broker, request, ..
                        } => KafkaError::Timeout {
                            broker,
                            request,
                            after: limit,
                        },
                        e => e,
                    })
            }
        }
    }
}

fn broker_error(c: &Conn, request: &'static str, code: i16, msg: Option<&StrBytes>) -> KafkaError {
    KafkaError::Broker {
        broker: c.broker().to_string(),
        request,
        code,
        message: error_text(code, msg),
    }
}

async fn metadata(c: &mut Conn) -> Result<ClusterMetadata, KafkaError> {
    const NAME: &str = "Metadata";
    let v = c.version::<MetadataRequest>(NAME, (1, i16::MAX))?;
    let mut req = MetadataRequest::default().with_topics(None);
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(false);
    }
    let r = c.call(&req, v, NAME).await?;
    if r.error_code != 0 {
        return Err(broker_error(c, NAME, r.error_code, None));
    }
    let id = |b: kafka_protocol::messages::BrokerId| (b.0 >= 0).then_some(b.0);
    Ok(ClusterMetadata {
        cluster_id: r.cluster_id.map(|s| s.to_string()),
        controller_id: id(r.controller_id),
        brokers: r
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|s| s.to_string()),
            })
            .collect(),
        topics: r
            .topics
            .iter()
            .map(|t| TopicInfo {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                internal: t.is_internal,
                error_code: t.error_code,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: id(p.leader_id),
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect(),
            })
            .collect(),
    })
}

async fn min_isr(
    c: &mut Conn,
    topics: &[String],
    broker_id: Option<i32>,
) -> Result<MinIsr, KafkaError> {
    const NAME: &str = "DescribeConfigs";
    let v = c.version::<DescribeConfigsRequest>(NAME, (1, 4))?;
    let keys = Some(vec![StrBytes::from_static_str(MIN_ISR)]);
    let mut resources: Vec<DescribeConfigsResource> = topics
        .iter()
        .map(|t| {
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(t.clone()))
                .with_configuration_keys(keys.clone())
        })
        .collect();
    resources.push(
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(
                broker_id.map(|b| b.to_string()).unwrap_or_default(),
            ))
            .with_configuration_keys(keys.clone()),
    );
    let r = c
        .call(
            &DescribeConfigsRequest::default().with_resources(resources),
            v,
            NAME,
        )
        .await?;
    let mut out = MinIsr::default();
    for res in &r.results {
        let name = res.resource_name.to_string();
        if res.error_code != 0 {
            out.errors
                .insert(name, error_text(res.error_code, res.error_message.as_ref()));
            continue;
        }
        let value = res
            .configs
            .iter()
            .find(|e| e.name.as_str() == MIN_ISR)
            .and_then(|e| e.value.as_ref())
            .and_then(|v| v.as_str().parse::<u32>().ok());
        match (res.resource_type, value) {
            (RESOURCE_BROKER, v) => out.broker_default = v,
            (RESOURCE_TOPIC, Some(v)) => {
                out.topics.insert(name, v);
            }
            (RESOURCE_TOPIC, None) => {
                out.errors.insert(
                    format!("topic {name}"),
                    format!("no numeric {MIN_ISR} in the answer"),
                );
            }
            _ => {}
        }
    }
    Ok(out)
}

async fn quorum(c: &mut Conn) -> Result<Option<QuorumInfo>, KafkaError> {
    const NAME: &str = "DescribeQuorum";
    let Ok(v) = c.version::<DescribeQuorumRequest>(NAME, (0, 2)) else {
        return Ok(None);
    };
    let req = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let r = c.call(&req, v, NAME).await?;
    if r.error_code != 0 {
        return Err(broker_error(
            c,
            NAME,
            r.error_code,
            r.error_message.as_ref(),
        ));
    }
    let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
        return Err(KafkaError::Protocol {
            broker: c.broker().to_string(),
            request: NAME,
            message: "no partition in the answer".into(),
        });
    };
    if p.error_code != 0 {
        return Err(broker_error(
            c,
            NAME,
            p.error_code,
            p.error_message.as_ref(),
        ));
    }
    let hw = p.high_watermark;
    let replica =
        |s: &kafka_protocol::messages::describe_quorum_response::ReplicaState| QuorumReplica {
            replica_id: s.replica_id.0,
            log_end_offset: s.log_end_offset,
            lag: if s.log_end_offset >= 0 && hw >= 0 {
                (hw - s.log_end_offset).max(0)
            } else {
                0
            },
            last_caught_up_ms: (s.last_caught_up_timestamp >= 0)
                .then_some(s.last_caught_up_timestamp),
        };
    Ok(Some(QuorumInfo {
        leader_id: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
        leader_epoch: p.leader_epoch,
        high_watermark: hw,
        voters: p.current_voters.iter().map(replica).collect(),
        observers: p.observers.iter().map(replica).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A listener on 127.0.0.1:0 whose connections get `answer` (after the first bytes of a
    /// request are read), then are held open without another byte.
    async fn peer(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                if !answer.is_empty() {
                    let mut b = [0u8; 4];
                    let _ = s.read_exact(&mut b).await;
                    let _ = s.write_all(answer).await;
                }
                held.push(s);
            }
        });
        (port, task)
    }

    fn client(ms: u64) -> KafkaClient {
        KafkaClient::new(ClientOptions::plaintext(Duration::from_millis(ms)))
    }

    #[tokio::test]
    async fn a_peer_that_accepts_and_never_answers_times_out() {
        let (port, task) = peer(b"").await;
        let c = client(300);
        let t0 = Instant::now();
        // The outer limit only turns a hang into a failure; the client must end first.
        let r = tokio::time::timeout(Duration::from_secs(60), c.metadata("127.0.0.1", port))
            .await
            .expect("the client hung");
        let elapsed = t0.elapsed();
        match r {
            Err(KafkaError::Timeout {
                broker,
                request,
                after,
            }) => {
                assert_eq!(broker, format!("127.0.0.1:{port}"));
                assert_eq!(request, "Metadata");
                assert_eq!(after, Duration::from_millis(300));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        // The liveness check: two tries (two dials) within its limit, reported against it.
        let r = c.alive("127.0.0.1", port, Duration::from_millis(400)).await;
        assert!(
            matches!(&r, Err(e @ KafkaError::Timeout { after, .. })
                if *after == Duration::from_millis(400) && !e.proves_alive()),
            "{r:?}"
        );
        assert_eq!(c.dials(), 3);
        task.abort();
    }

    #[tokio::test]
    async fn a_huge_announced_frame_is_refused_before_allocation() {
        // 0x7fffffff: a 2 GiB response announced, nothing sent.
        let (port, task) = peer(&[0x7f, 0xff, 0xff, 0xff]).await;
        let c = client(5_000);
        let r = c.api_versions("127.0.0.1", port).await;
        match r {
            Err(KafkaError::ResponseTooLarge {
                size,
                limit,
                request,
                ..
            }) => {
                assert_eq!(size, 0x7fff_ffff);
                assert_eq!(limit, DEFAULT_MAX_RESPONSE_BYTES);
                assert_eq!(request, "ApiVersions");
            }
            other => panic!("expected ResponseTooLarge, got {other:?}"),
        }
        // A "negative" size (top bit set) too.
        let (port2, task2) = peer(&[0x80, 0, 0, 0]).await;
        let r = c.api_versions("127.0.0.1", port2).await;
        assert!(
            matches!(
                r,
                Err(KafkaError::ResponseTooLarge {
                    size: 0x8000_0000,
                    ..
                })
            ),
            "{r:?}"
        );
        task.abort();
        task2.abort();
    }

    #[tokio::test]
    async fn wrong_peers_are_named() {
        // A TLS listener answers a plaintext request with an alert record.
        let (port, task) = peer(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).await;
        let c = client(5_000);
        let e = c.api_versions("127.0.0.1", port).await.unwrap_err();
        assert!(
            matches!(&e, KafkaError::Protocol { message, .. } if message.contains("TLS alert")),
            "{e}"
        );
        let (port2, task2) = peer(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let e = c.api_versions("127.0.0.1", port2).await.unwrap_err();
        assert!(
            matches!(&e, KafkaError::Protocol { message, .. } if message.contains("HTTP")),
            "{e}"
        );
        // A short frame then EOF: the connection is lost mid-response.
        task.abort();
        task2.abort();
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = client(2_000);
        let e = c.api_versions("127.0.0.1", port).await.unwrap_err();
        assert!(
            matches!(&e, KafkaError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused),
            "{e:?}"
        );
        assert!(!e.proves_alive());
    }

    /// An old broker, scripted: it speaks ApiVersions up to v2 only (v4 gets Kafka's v0
    /// UNSUPPORTED_VERSION answer), lists no DescribeQuorum (as in ZooKeeper mode), and
    /// closes each connection after `per_conn` answers. Records the versions asked.
    async fn old_broker(
        per_conn: usize,
    ) -> (u16, Arc<Mutex<Vec<i16>>>, tokio::task::JoinHandle<()>) {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::{ApiVersionsResponse, ResponseHeader};
        use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                for _ in 0..per_conn {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        break;
                    }
                    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                    s.read_exact(&mut frame).await.unwrap();
                    let h =
                        decode_request_header_from_buffer(&mut bytes::Bytes::from(frame)).unwrap();
                    assert_eq!(h.request_api_key, 18, "only ApiVersions is expected");
                    log.lock().unwrap().push(h.request_api_version);
                    let keys = vec![
                        ApiVersion::default()
                            .with_api_key(18)
                            .with_min_version(0)
                            .with_max_version(2),
                        ApiVersion::default()
                            .with_api_key(3)
                            .with_min_version(0)
                            .with_max_version(9),
                    ];
                    let (body_version, resp) = if h.request_api_version > 2 {
                        (
                            0,
                            ApiVersionsResponse::default()
                                .with_error_code(35)
                                .with_api_keys(keys[..1].to_vec()),
                        )
                    } else {
                        (
                            h.request_api_version,
                            ApiVersionsResponse::default().with_api_keys(keys),
                        )
                    };
                    let mut out = bytes::BytesMut::new();
                    ResponseHeader::default()
                        .with_correlation_id(h.correlation_id)
                        .encode(&mut out, 0)
                        .unwrap();
                    resp.encode(&mut out, body_version).unwrap();
                    s.write_all(&(out.len() as u32).to_be_bytes())
                        .await
                        .unwrap();
                    s.write_all(&out).await.unwrap();
                }
            }
        });
        (port, seen, task)
    }

    #[tokio::test]
    async fn an_old_broker_negotiates_down_and_a_closed_connection_is_redialed() {
        let (port, seen, task) = old_broker(3).await;
        let c = client(5_000);
        let v = c.api_versions("127.0.0.1", port).await.unwrap();
        assert_eq!(
            v.ranges,
            [(18, (0, 2)), (3, (0, 9))].into_iter().collect(),
            "the v2 answer after the v0 UNSUPPORTED_VERSION one"
        );
        assert_eq!(*seen.lock().unwrap(), vec![4, 2]);
        // No DescribeQuorum listed: None, and nothing sent.
        assert_eq!(c.describe_quorum("127.0.0.1", port).await.unwrap(), None);
        assert_eq!(seen.lock().unwrap().len(), 2);
        // The reused connection asks v2 directly (its third request), then the peer
        // closes it.
        c.api_versions("127.0.0.1", port).await.unwrap();
        assert_eq!(c.dials(), 1);
        assert_eq!(*seen.lock().unwrap(), vec![4, 2, 2]);
        // The closed connection fails on I/O and is re-dialed within the same call.
        let v2 = c.api_versions("127.0.0.1", port).await.unwrap();
        assert_eq!(v2, v);
        assert_eq!(c.dials(), 2);
        assert_eq!(*seen.lock().unwrap(), vec![4, 2, 2, 4, 2]);
        task.abort();
    }

    #[tokio::test]
    async fn a_huge_array_count_in_a_small_response_is_an_error() {
        // ApiVersions v4 answer (correlation id 1): error 0, then a compact array that
        // claims 2^32 - 2 entries in a 11-byte frame. Decoders that reserve the claimed
        // count up front abort the process (an allocation failure is not a panic).
        const FRAME: &[u8] = &[0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let (port, task) = peer(FRAME).await;
        let c = client(5_000);
        let e = c.api_versions("127.0.0.1", port).await.unwrap_err();
        assert!(
            matches!(
                &e,
                KafkaError::Protocol {
                    request: "ApiVersions",
                    ..
                }
            ),
            "{e:?}"
        );
        task.abort();
    }
}
