//! A small etcd v3 client over the JSON gRPC gateway (`POST /v3/...`, base64 keys and
//! values, 64-bit integers as strings). Only what coordination needs: leases, ranges and
//! transactions. Plain HTTP with `reqwest`, so no protobuf toolchain is needed to build.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered (connection refused, timeout, …).
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// An endpoint answered with an error status.
    #[error("etcd answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The answer was not what the gateway sends.
    #[error("unexpected etcd answer: {0}")]
    Decode(String),
    /// The client could not be set up (a bad CA certificate).
    #[error("etcd client: {0}")]
    Setup(String),
}

/// One key-value pair as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value (UTF-8 text in every key kafka-healing writes).
    pub value: String,
    /// Revision of the key's creation (0: absent).
    pub create_revision: i64,
    /// Revision of its last change.
    pub mod_revision: i64,
    /// Lease the key is attached to (0: none).
    pub lease: i64,
}

/// The result of a transaction.
#[derive(Debug, Clone)]
pub struct TxnResult {
    /// Whether every compare held (the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
    /// Key-values returned by the range operations of the branch that ran, in order.
    pub ranges: Vec<Vec<Kv>>,
}

/// The client: endpoints tried in turn, starting with the last one that answered (a dead
/// first endpoint then costs one timeout once, not on every renewal); one timeout per try.
#[derive(Debug, Clone)]
pub struct Etcd {
    client: reqwest::Client,
    endpoints: Vec<String>,
    timeout: Duration,
    preferred: Arc<AtomicUsize>,
    /// User and password, when etcd authenticates clients.
    credentials: Option<(String, String)>,
    /// The current auth token (fetched on first use, again when etcd refuses it).
    token: Arc<Mutex<Option<String>>>,
}

/// How to reach etcd beyond its URLs.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// User and password, when etcd authenticates clients.
    pub credentials: Option<(String, String)>,
    /// A private CA's certificate (PEM) to trust for `https` endpoints.
    pub ca_pem: Option<Vec<u8>>,
}

/// The `range_end` that makes a range cover every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// Compare: `key` does not exist.
pub fn absent(key: &str) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
}

/// Compare: `key` was created at `revision`.
pub fn created_at(key: &str, revision: i64) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": revision.to_string()})
}

/// Compare: `key` was last changed at `revision`.
pub fn modified_at(key: &str, revision: i64) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()})
}

/// Compare: `key` is attached to `lease`.
pub fn leased_by(key: &str, lease: i64) -> Value {
    json!({"key": b64(key.as_bytes()), "target": "LEASE", "result": "EQUAL", "lease": lease.to_string()})
}

/// Operation: put `value` at `key`, attached to `lease` (0: none).
pub fn put(key: &str, value: &str, lease: i64) -> Value {
    json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value.as_bytes()), "lease": lease.to_string()}})
}

/// Operation: read `key`.
pub fn get(key: &str) -> Value {
    json!({"request_range": {"key": b64(key.as_bytes())}})
}

/// Operation: delete `key`.
pub fn delete(key: &str) -> Value {
    json!({"request_delete_range": {"key": b64(key.as_bytes())}})
}

/// An int64 field: the gateway writes them as strings, absent when zero.
fn int(v: &Value, field: &str) -> i64 {
    match &v[field] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value, field: &str) -> Result<String, EtcdError> {
    match v[field].as_str() {
        None => Ok(String::new()),
        Some(s) => B64
            .decode(s)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| EtcdError::Decode(format!("{field}: {e}"))),
    }
}

fn kvs(v: &Value) -> Result<Vec<Kv>, EtcdError> {
    let Some(list) = v["kvs"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            Ok(Kv {
                key: text(kv, "key")?,
                value: text(kv, "value")?,
                create_revision: int(kv, "create_revision"),
                mod_revision: int(kv, "mod_revision"),
                lease: int(kv, "lease"),
            })
        })
        .collect()
}

impl Etcd {
    /// A client for `endpoints` (base URLs) with a per-request `timeout`.
    pub fn new(
        endpoints: Vec<String>,
        timeout: Duration,
        access: Access,
    ) -> Result<Etcd, EtcdError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(pem) = &access.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| EtcdError::Setup(format!("CA certificate: {e}")))?;
            builder = builder.add_root_certificate(ca);
        }
        let client = builder
            .build()
            .map_err(|e| EtcdError::Setup(e.to_string()))?;
        Ok(Etcd {
            client,
            endpoints,
            timeout,
            preferred: Arc::new(AtomicUsize::new(0)),
            credentials: access.credentials,
            token: Arc::new(Mutex::new(None)),
        })
    }

    fn token(&self) -> Option<String> {
        match self.token.lock() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_token(&self, token: Option<String>) {
        match self.token.lock() {
            Ok(mut t) => *t = token,
            Err(p) => *p.into_inner() = token,
        }
    }

    /// POSTs `body` to `path`; with credentials, authenticates first (once per token) and
    /// once more when etcd refuses the token (expired, or etcd restarted).
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let Some((name, password)) = &self.credentials else {
            return self.send(path, body, None).await;
        };
        for fresh in [false, true] {
            let token = match self.token() {
                Some(t) if !fresh => t,
                _ => {
                    let v = self
                        .send(
                            "/v3/auth/authenticate",
                            &json!({"name": name, "password": password}),
                            None,
                        )
                        .await?;
                    let t = v["token"]
                        .as_str()
                        .ok_or_else(|| EtcdError::Decode(format!("authenticate: no token in {v}")))?
                        .to_string();
                    self.set_token(Some(t.clone()));
                    t
                }
            };
            match self.send(path, body, Some(&token)).await {
                Err(EtcdError::Status { status, body })
                    if !fresh && (status == 401 || body.contains("token")) =>
                {
                    tracing::debug!(status, %body, "etcd refused the token: authenticating again");
                    self.set_token(None);
                }
                other => return other,
            }
        }
        Err(EtcdError::Decode("authentication loop".into()))
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for i in (0..n).map(|k| (first + k) % n) {
            let base = &self.endpoints[i];
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let sent = tokio::time::timeout(self.timeout, async {
                let mut req = self.client.post(&url).json(body);
                if let Some(t) = token {
                    req = req.header("Authorization", t);
                }
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let text = resp.text().await?;
                Ok::<_, reqwest::Error>((status, text))
            })
            .await;
            match sent {
                Ok(Ok((200, text))) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    // Streaming endpoints (keepalive) wrap the message in `result`.
                    let v: Value = serde_json::from_str(text.lines().next().unwrap_or(""))
                        .map_err(|e| EtcdError::Decode(format!("{path}: {e}")))?;
                    return Ok(match v.get("result") {
                        Some(r) => r.clone(),
                        None => v,
                    });
                }
                Ok(Ok((status, text))) => {
                    let body: String = text.chars().take(300).collect();
                    // A server error may be this member's problem: try the next one.
                    last = EtcdError::Status { status, body };
                    if status < 500 {
                        return Err(last);
                    }
                }
                Ok(Err(e)) => last = EtcdError::Unreachable(format!("{url}: {e}")),
                Err(_) => {
                    last = EtcdError::Unreachable(format!(
                        "{url}: no answer within {:?}",
                        self.timeout
                    ))
                }
            }
        }
        Err(last)
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl})).await?;
        match int(&v, "ID") {
            0 => Err(EtcdError::Decode(format!("lease grant without ID: {v}"))),
            id => Ok(id),
        }
    }

    /// Renews `lease`; returns its remaining TTL in seconds (0: the lease is gone).
    pub async fn keepalive(&self, lease: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(&v, "TTL"))
    }

    /// Revokes `lease`: every key attached to it is deleted at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Every key starting with `prefix`.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))});
        kvs(&self.call("/v3/kv/range", &body).await?)
    }

    /// Runs a transaction: if every `compare` holds, `success`, else `failure`.
    pub async fn txn(
        &self,
        compare: Vec<Value>,
        success: Vec<Value>,
        failure: Vec<Value>,
    ) -> Result<TxnResult, EtcdError> {
        let body = json!({"compare": compare, "success": success, "failure": failure});
        let v = self.call("/v3/kv/txn", &body).await?;
        let ranges = match v["responses"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(|r| r.get("response_range"))
                .map(kvs)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: int(&v["header"], "revision"),
            ranges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn decodes_gateway_key_values() {
        let v = json!({"kvs": [{"key": "L3gvbG9jaw==", "create_revision": "2", "mod_revision": "3", "value": "aGk=", "lease": "77"}]});
        let got = kvs(&v).expect("decode");
        assert_eq!(
            got,
            vec![Kv {
                key: "/x/lock".into(),
                value: "hi".into(),
                create_revision: 2,
                mod_revision: 3,
                lease: 77
            }]
        );
        assert!(kvs(&json!({})).expect("empty").is_empty());
    }
}
