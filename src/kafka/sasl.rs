//! SASL client messages: PLAIN (RFC 4616) and SCRAM (RFC 5802 with SHA-256 per RFC 7677, and
//! SHA-512 as Kafka offers it). Pure functions and a small state machine; the exchange over
//! SaslHandshake and SaslAuthenticate is in the connection.
//!
//! The server's final message is verified (its signature proves it knows the password's
//! salted key), so a peer that merely says "ok" is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::config::{SaslMechanism, Secret};

/// SASL credentials, resolved (the password read from its file or environment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// Kafka's largest SCRAM iteration count is 16384; a peer asking for far more would make
/// the client burn CPU, so more than this is refused.
pub const MAX_ITERATIONS: u32 = 65_536;
/// RFC 5802 requires at least 4096 iterations of the client too.
pub const MIN_ITERATIONS: u32 = 4096;

/// Why a SCRAM exchange failed on the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The server's message does not have SCRAM's shape.
    #[error("malformed SCRAM server message: {0}")]
    Malformed(String),
    /// The server's nonce does not start with the client's.
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    /// The iteration count is outside what the client accepts.
    #[error("iteration count {0} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// The server reported an error (`e=`).
    #[error("the server refused: {0}")]
    Server(String),
    /// The server's signature is wrong: it does not know the password's keys.
    #[error(
        "the server's signature does not match (not the real broker, or a different password database)"
    )]
    BadServerSignature,
    /// A message was out of order.
    #[error("SCRAM message out of order")]
    State,
}

/// PLAIN's single message: `\0username\0password` (no authorization identity).
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(username.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

/// The hash behind a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail here.
        match self {
            ScramHash::Sha256 => {
                let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC accepts any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut m = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key)
                    .expect("HMAC accepts any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// A fresh client nonce: 24 random bytes, base64 (printable, no comma).
pub fn new_nonce() -> Result<String, std::io::Error> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(B64.encode(b))
}

/// `=` and `,` in a SCRAM user name are escaped (RFC 5802 §5.1).
fn escape_username(u: &str) -> String {
    u.replace('=', "=3D").replace(',', "=2C")
}

/// A SCRAM client exchange: [`ScramClient::client_first`], then
/// [`ScramClient::client_final`] with the server's first message, then
/// [`ScramClient::verify_server_final`] with its last.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    client_nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `username` with the client nonce `nonce` (see [`new_nonce`]).
    pub fn new(hash: ScramHash, username: &str, password: &str, nonce: &str) -> ScramClient {
        ScramClient {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_username(username)),
            client_nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// The client's first message (no channel binding, no authorization identity).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server's first message (`r=…,s=…,i=…`) with the client's final one
    /// (`c=biws,r=…,p=…`), keeping the server signature to expect.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_string()));
        }
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => {
                    return Err(ScramError::Malformed(
                        "mandatory extension not supported".into(),
                    ));
                }
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::Malformed(
                "missing r=, s= or i= in the server's first message".into(),
            ));
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|e| ScramError::Malformed(format!("salt is not base64: {e}")))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed(format!("iteration count `{iterations}`")))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server's final message (`v=…`) against the expected signature.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        let Some(expected) = &self.server_signature else {
            return Err(ScramError::State);
        };
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_string()));
        }
        let v = server_final
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or_else(|| ScramError::Malformed("no v= in the server's final message".into()))?;
        let got = B64
            .decode(v)
            .map_err(|e| ScramError::Malformed(format!("signature is not base64: {e}")))?;
        if subtle::ConstantTimeEq::ct_eq(got.as_slice(), expected.as_slice()).into() {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3: user "user", password "pencil".
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", NONCE);
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_final(SERVER_FIRST).unwrap(), CLIENT_FINAL);
        assert_eq!(c.verify_server_final(SERVER_FINAL), Ok(()));
        // A server that does not know the password cannot produce the signature.
        assert_eq!(
            c.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::BadServerSignature)
        );
        assert_eq!(
            c.verify_server_final("e=invalid-proof"),
            Err(ScramError::Server("invalid-proof".into()))
        );
    }

    #[test]
    fn wrong_password_gives_a_different_proof() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil2", NONCE);
        let f = c.client_final(SERVER_FIRST).unwrap();
        assert_ne!(f, CLIENT_FINAL);
        assert_eq!(
            c.verify_server_final(SERVER_FINAL),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn sha512_proof_has_sha512_length() {
        let mut c = ScramClient::new(ScramHash::Sha512, "u,=x", "p", NONCE);
        assert_eq!(c.client_first(), "n,,n=u=2C=3Dx,r=rOprNGfwEbeRWgbNEkqO");
        let f = c.client_final(SERVER_FIRST).unwrap();
        let proof = B64.decode(f.rsplit_once(",p=").unwrap().1).unwrap();
        assert_eq!(proof.len(), 64);
    }

    #[test]
    fn hostile_server_first_messages() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", NONCE);
        assert_eq!(
            c.client_final("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            c.client_final(&format!("r={NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")),
            Err(ScramError::NonceMismatch),
            "the server must add its own nonce"
        );
        assert_eq!(
            c.client_final(&format!(
                "r={NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000"
            )),
            Err(ScramError::Iterations(4_000_000_000))
        );
        assert!(matches!(
            c.client_final(&format!("r={NONCE}x,i=4096")),
            Err(ScramError::Malformed(_))
        ));
        assert_eq!(
            c.client_final("e=unknown-user"),
            Err(ScramError::Server("unknown-user".into()))
        );
        assert_eq!(c.verify_server_final(SERVER_FINAL), Err(ScramError::State));
    }

    #[test]
    fn plain_and_nonce() {
        assert_eq!(plain_message("u", "p"), b"\0u\0p".to_vec());
        let (a, b) = (new_nonce().unwrap(), new_nonce().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(!a.contains(','));
    }
}
