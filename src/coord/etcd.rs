//! A small etcd v3 client over the JSON gRPC gateway (`POST /v3/...`, base64 keys and
//! values, 64-bit integers as strings). Only what coordination needs: leases, ranges and
//! transactions. Plain HTTP with `reqwest`, so no protobuf toolchain is needed to build.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Etcd {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Etcd {
            client,
            endpoints,
            timeout,
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for i in (0..n).map(|k| (first + k) % n) {
            let base = &self.endpoints[i];
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let sent = tokio::time::timeout(self.timeout, async {
                let resp = self.client.post(&url).json(body).send().await?;
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
