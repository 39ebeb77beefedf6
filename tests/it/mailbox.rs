//! A real SMTP server for the tests (Python aiosmtpd, tests/smtp/server.py), a test PKI,
//! and a parser for what it received.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const PYTHON: &str = "/usr/bin/python3";
pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/server.py");
pub const FROM: &str = "kafka-healing@example.com";

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// The aiosmtpd fixture; killed when dropped.
pub struct SmtpServer {
    /// The Python process.
    pub child: Child,
    /// Its port.
    pub port: u16,
    /// Where it writes what it receives.
    pub out: PathBuf,
}

impl SmtpServer {
    /// Starts the fixture on exactly `port` (for a server that was down and comes back).
    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> SmtpServer {
        SmtpServer::spawn(dir, port, args).unwrap_or_else(|e| panic!("SMTP fixture on {port}: {e}"))
    }

    fn spawn(dir: &Path, port: u16, args: &[&str]) -> Result<SmtpServer, String> {
        let out = dir.join(format!("received-{port}"));
        let log = dir.join(format!("server-{port}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new(PYTHON)
            .arg(FIXTURE)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {PYTHON} {FIXTURE}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) if line.trim() == "ready" => Ok(SmtpServer { child, port, out }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                Err(format!("{other:?}\n{log}"))
            }
        }
    }

    /// Starts the fixture on a free port with `args`, waiting (bounded) for `ready`;
    /// retries on another port if the chosen one was taken meanwhile.
    pub fn start(dir: &Path, args: &[&str]) -> SmtpServer {
        let mut last_err = String::new();
        for attempt in 0..3 {
            match SmtpServer::spawn(dir, free_port(), args) {
                Ok(s) => return s,
                Err(e) => {
                    last_err = format!("attempt {attempt}: {e}");
                    if e.contains("No module named") {
                        break;
                    }
                }
            }
        }
        panic!(
            "the SMTP fixture did not start (needs Debian's python3-aiosmtpd; scripts/test \
             installs it): {last_err}"
        );
    }

    /// Each received message's envelope recipients and Subject, in arrival order.
    pub fn envelopes(&self) -> Vec<(Vec<String>, String)> {
        self.received()
            .iter()
            .map(|(e, m)| {
                let subject = headers(&parse_eml(e), "Subject")
                    .first()
                    .cloned()
                    .unwrap_or_default();
                (strings(&m["rcpt_tos"]), subject)
            })
            .collect()
    }

    /// Received messages: (raw .eml, envelope JSON), in arrival order.
    pub fn received(&self) -> Vec<(String, Value)> {
        let Ok(dir) = std::fs::read_dir(&self.out) else {
            return vec![];
        };
        let mut names: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta: Value =
                    serde_json::from_str(&std::fs::read_to_string(&json).expect("json"))
                        .expect("parse json");
                let eml = std::fs::read_to_string(json.with_extension("eml")).expect("eml");
                (eml, meta)
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, as files.
pub struct Pki {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kafka-healing test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server cert");

    let p = Pki {
        ca: dir.join("pki/ca.pem"),
        cert: dir.join("pki/server.pem"),
        key: dir.join("pki/server-key.pem"),
    };
    std::fs::create_dir_all(dir.join("pki")).expect("mkdir pki");
    std::fs::write(&p.ca, ca_cert.pem()).expect("write ca");
    std::fs::write(&p.cert, cert.pem()).expect("write cert");
    std::fs::write(&p.key, key.serialize_pem()).expect("write key");
    p
}

/// Parses a received message with Python's `email` package: headers (unfolded), the MIME
/// structure and the decoded parts.
pub fn parse_eml(eml: &str) -> Value {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = []
if m.is_multipart():
    for p in m.iter_parts():
        parts.append({"type": p.get_content_type(), "charset": p.get_content_charset(),
                      "body": p.get_content()})
print(json.dumps({
    "headers": [[k, str(v)] for k, v in m.items()],
    "content_type": m.get_content_type(),
    "parts": parts,
}))
"#;
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(eml.as_bytes()).expect("write eml");
    }
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "parsing the message failed");
    serde_json::from_slice(&out.stdout).expect("parser JSON")
}

/// The values of header `name` (case-insensitive).
pub fn headers(parsed: &Value, name: &str) -> Vec<String> {
    parsed["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .map(|h| h[1].as_str().unwrap_or_default().to_string())
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}
