//! One connection to one broker: dial, TLS, ApiVersions, SASL, then framed requests.
//! Time limits are applied by the caller around whole operations; a connection that saw
//! any error (or whose operation was cut by a time limit) is dropped, never reused.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sasl::{SaslCredentials, ScramClient, ScramHash, new_nonce, plain_message};
use super::tls::TlsSettings;
use super::{ApiVersions, KafkaError};
use crate::config::SaslMechanism;

/// A plain or TLS byte stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client id sent in every request header.
const CLIENT_ID: &str = "kafka-healing";

/// Kafka's error code for a request version the broker does not support.
const UNSUPPORTED_VERSION: i16 = 35;
/// Kafka's error code for a SASL mechanism the listener does not enable.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// A Kafka error code as text (`SASL_AUTHENTICATION_FAILED (58)`), with the broker's own
/// message when it sent one.
pub(crate) fn error_text(code: i16, message: Option<&StrBytes>) -> String {
    let name = match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("no error ({code})"),
    };
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{name}: {m}"),
        None => name,
    }
}

/// An open, negotiated (and when configured, authenticated) connection.
pub(crate) struct Conn {
    stream: Box<dyn Io>,
    /// `host:port`, for errors.
    broker: String,
    correlation: i32,
    max_response: usize,
    /// What the broker announced at connect time.
    pub(crate) versions: ApiVersions,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("broker", &self.broker())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Dials `host:port`, does TLS when `tls` is set, exchanges ApiVersions and, when
    /// `sasl` is set, authenticates. Not bounded in time: the caller bounds it.
    pub(crate) async fn open(
        host: &str,
        port: u16,
        tls: Option<&TlsSettings>,
        sasl: Option<&SaslCredentials>,
        max_response: usize,
    ) -> Result<Conn, KafkaError> {
        let broker = format!("{host}:{port}");
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| KafkaError::Connect {
                broker: broker.clone(),
                source,
            })?;
        // Small request/response exchanges: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let name = t.name_for(host)?;
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| KafkaError::Tls {
                        broker: broker.clone(),
                        message: e.to_string(),
                    })?;
                Box::new(s)
            }
        };
        let mut conn = Conn {
            stream,
            broker,
            correlation: 0,
            max_response,
            versions: ApiVersions::default(),
        };
        conn.versions = conn.api_versions().await?;
        if let Some(creds) = sasl {
            conn.authenticate(creds).await?;
        }
        Ok(conn)
    }

    /// `host:port`.
    pub(crate) fn broker(&self) -> &str {
        &self.broker
    }

    fn protocol(&self, request: &'static str, message: impl std::fmt::Display) -> KafkaError {
        KafkaError::Protocol {
            broker: self.broker.clone(),
            request,
            message: message.to_string(),
        }
    }

    fn io(&self, request: &'static str, source: std::io::Error) -> KafkaError {
        KafkaError::Io {
            broker: self.broker.clone(),
            request,
            source,
        }
    }

    /// The version of `R` to use: the highest both sides speak within `ours`.
    pub(crate) fn version<R: Request>(
        &self,
        request: &'static str,
        ours: (i16, i16),
    ) -> Result<i16, KafkaError> {
        let ours = (ours.0.max(R::VERSIONS.min), ours.1.min(R::VERSIONS.max));
        self.versions
            .negotiate(R::KEY, ours)
            .ok_or_else(|| KafkaError::Unsupported {
                broker: self.broker.clone(),
                request,
            })
    }

    /// Sends `req` at `version` and decodes the answer.
    pub(crate) async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        request: &'static str,
    ) -> Result<R::Response, KafkaError> {
        let mut body = self.exchange(req, version, request).await?;
        R::Response::decode(&mut body, version).map_err(|e| self.protocol(request, e))
    }

    /// Sends one request and returns the response body (after its header).
    async fn exchange<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        request: &'static str,
    ) -> Result<Bytes, KafkaError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| req.encode(&mut buf, version))
            .map_err(|e| self.protocol(request, format!("cannot encode: {e}")))?;
        let len = i32::try_from(buf.len() - 4)
            .map_err(|_| self.protocol(request, "request too large"))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        if let Err(e) = self.stream.write_all(&buf).await {
            return Err(self.io(request, e));
        }
        if let Err(e) = self.stream.flush().await {
            return Err(self.io(request, e));
        }
        let mut frame = self.read_frame(request).await?;
        let h = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| self.protocol(request, e))?;
        if h.correlation_id != self.correlation {
            return Err(self.protocol(
                request,
                format!(
                    "correlation id {} does not match the request's {}",
                    h.correlation_id, self.correlation
                ),
            ));
        }
        Ok(frame)
    }

    /// Reads one size-prefixed frame, refusing sizes above the limit before reading them.
    async fn read_frame(&mut self, request: &'static str) -> Result<Bytes, KafkaError> {
        let mut len = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut len).await {
            return Err(self.io(request, e));
        }
        // Common wrong peers, named: a TLS listener reached without TLS answers with an
        // alert record, an HTTP server with a status line.
        if len[0] == 0x15 && len[1] == 0x03 {
            return Err(self.protocol(
                request,
                "the peer answered with a TLS alert: a TLS listener (set security.ssl.enabled)",
            ));
        }
        if &len == b"HTTP" {
            return Err(self.protocol(request, "the peer is an HTTP server, not Kafka"));
        }
        let size = u32::from_be_bytes(len);
        if size > i32::MAX as u32 || size as usize > self.max_response {
            return Err(KafkaError::ResponseTooLarge {
                broker: self.broker.clone(),
                request,
                size,
                limit: self.max_response,
            });
        }
        // Grows as bytes arrive: a peer that announces much and sends little costs little.
        let mut buf = Vec::with_capacity((size as usize).min(64 * 1024));
        let read = (&mut self.stream)
            .take(u64::from(size))
            .read_to_end(&mut buf)
            .await;
        match read {
            Err(e) => Err(self.io(request, e)),
            Ok(n) if n < size as usize => Err(self.io(
                request,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {n} of {size} bytes"),
                ),
            )),
            Ok(_) => Ok(Bytes::from(buf)),
        }
    }

    /// ApiVersions: the highest version this client speaks first; a broker that does not
    /// know it answers in version 0 with UNSUPPORTED_VERSION and its own range, and the
    /// request is repeated at the broker's highest version.
    /// On a connection that already knows the broker's versions, the negotiated one is
    /// asked directly.
    pub(crate) async fn api_versions(&mut self) -> Result<ApiVersions, KafkaError> {
        const NAME: &str = "ApiVersions";
        let ours = ApiVersionsRequest::VERSIONS;
        let mut version = self
            .versions
            .negotiate(ApiVersionsRequest::KEY, (ours.min, ours.max))
            .unwrap_or(ours.max);
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req = req
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
            }
            let body = self.exchange(&req, version, NAME).await?;
            let resp = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(r) if r.error_code != UNSUPPORTED_VERSION => r,
                _ => ApiVersionsResponse::decode(&mut body.clone(), 0)
                    .map_err(|e| self.protocol(NAME, e))?,
            };
            if resp.error_code == UNSUPPORTED_VERSION {
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiVersionsRequest::KEY)
                    .map(|k| k.max_version)
                    .filter(|&v| v < version && v >= 0);
                match theirs {
                    Some(v) => {
                        version = v;
                        continue;
                    }
                    None => {
                        return Err(KafkaError::Unsupported {
                            broker: self.broker.clone(),
                            request: NAME,
                        });
                    }
                }
            }
            if resp.error_code != 0 {
                return Err(KafkaError::Broker {
                    broker: self.broker.clone(),
                    request: NAME,
                    code: resp.error_code,
                    message: error_text(resp.error_code, None),
                });
            }
            return Ok(ApiVersions {
                ranges: resp
                    .api_keys
                    .iter()
                    .map(|k| (k.api_key, (k.min_version, k.max_version)))
                    .collect(),
            });
        }
        Err(KafkaError::Unsupported {
            broker: self.broker.clone(),
            request: NAME,
        })
    }

    fn auth_error(&self, mechanism: SaslMechanism, message: impl std::fmt::Display) -> KafkaError {
        KafkaError::Authentication {
            broker: self.broker.clone(),
            mechanism: mechanism.as_str(),
            message: message.to_string(),
        }
    }

    /// SaslHandshake (v1) then the mechanism's SaslAuthenticate exchange.
    async fn authenticate(&mut self, creds: &SaslCredentials) -> Result<(), KafkaError> {
        let mech = creds.mechanism;
        let hv = self.version::<SaslHandshakeRequest>("SaslHandshake", (1, 1))?;
        let req = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mech.as_str()));
        let resp = self.call(&req, hv, "SaslHandshake").await?;
        if resp.error_code == UNSUPPORTED_SASL_MECHANISM {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(self.auth_error(
                mech,
                format!(
                    "the listener does not enable {}; it offers [{}]",
                    mech.as_str(),
                    offered.join(", ")
                ),
            ));
        }
        if resp.error_code != 0 {
            return Err(self.auth_error(mech, error_text(resp.error_code, None)));
        }
        let av = self.version::<SaslAuthenticateRequest>("SaslAuthenticate", (0, 2))?;
        let (user, pass) = (creds.username.as_str(), creds.password.expose());
        match mech {
            SaslMechanism::Plain => {
                self.sasl_step(mech, av, plain_message(user, pass)).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if mech == SaslMechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                let nonce = new_nonce().map_err(|e| self.auth_error(mech, e))?;
                let mut scram = ScramClient::new(hash, user, pass, &nonce);
                let first = self
                    .sasl_step(mech, av, scram.client_first().into_bytes())
                    .await?;
                let first = std::str::from_utf8(&first)
                    .map_err(|_| self.auth_error(mech, "server-first message is not UTF-8"))?
                    .to_string();
                // PBKDF2 (thousands of HMACs) runs on the blocking pool, not on a runtime
                // thread.
                let (scram_back, fin) = tokio::task::spawn_blocking(move || {
                    let fin = scram.client_final(&first);
                    (scram, fin)
                })
                .await
                .map_err(|e| self.auth_error(mech, format!("SCRAM task failed: {e}")))?;
                scram = scram_back;
                let fin = fin.map_err(|e| self.auth_error(mech, e))?;
                let last = self.sasl_step(mech, av, fin.into_bytes()).await?;
                let last = std::str::from_utf8(&last)
                    .map_err(|_| self.auth_error(mech, "server-final message is not UTF-8"))?;
                scram
                    .verify_server_final(last)
                    .map_err(|e| self.auth_error(mech, e))?;
            }
        }
        Ok(())
    }

    async fn sasl_step(
        &mut self,
        mech: SaslMechanism,
        version: i16,
        token: Vec<u8>,
    ) -> Result<Bytes, KafkaError> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let resp = self.call(&req, version, "SaslAuthenticate").await?;
        if resp.error_code != 0 {
            return Err(self.auth_error(
                mech,
                error_text(resp.error_code, resp.error_message.as_ref()),
            ));
        }
        Ok(resp.auth_bytes)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{
        DescribeConfigsResponse, DescribeQuorumResponse, MetadataResponse,
        SaslAuthenticateResponse, SaslHandshakeResponse,
    };
    use proptest::prelude::*;

    use super::*;

    /// Decodes `b` as every response this client reads, at every version.
    fn decode_all(b: &[u8]) {
        fn each<M: Decodable + Message>(b: &[u8]) {
            for v in M::VERSIONS.min..=M::VERSIONS.max {
                let _ = M::decode(&mut Bytes::copy_from_slice(b), v);
            }
        }
        each::<ApiVersionsResponse>(b);
        each::<MetadataResponse>(b);
        each::<DescribeConfigsResponse>(b);
        each::<DescribeQuorumResponse>(b);
        each::<SaslHandshakeResponse>(b);
        each::<SaslAuthenticateResponse>(b);
        each::<ResponseHeader>(b);
    }

    // Hostile bodies (bytes biased to 0xff / 0x7f / 0, which make counts and lengths huge)
    // give errors: no panic, and no allocation sized by a count (an allocation failure
    // would abort the test process).
    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn response_decoders_survive_hostile_bytes(
            b in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(0xffu8), Just(0x7fu8), Just(0u8)],
                0..256,
            )
        ) {
            decode_all(&b);
        }
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            error_text(58, Some(&StrBytes::from_static_str("bad password"))),
            "SaslAuthenticationFailed (58): bad password"
        );
        assert_eq!(error_text(35, None), "UnsupportedVersion (35)");
    }
}
