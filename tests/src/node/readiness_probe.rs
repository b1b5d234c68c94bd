//! Readiness probes run for real against the pod's address, as the kubelet
//! runs them: `httpGet` (HTTP or HTTPS without certificate verification,
//! success is a status in 200..400) and `tcpSocket`; named ports are looked up
//! in the container's ports; period, timeout and thresholds honoured.
//! `exec` and `grpc` probes cannot run here and always fail, so a pod that
//! depends on one never becomes Ready (rather than being Ready by pretence).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::network::addresses::dialable;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// HTTP(S) GET.
    Http {
        /// Use TLS.
        https: bool,
        /// Address to connect to.
        addr: SocketAddr,
        /// Request path.
        path: String,
        /// Extra headers (name, value).
        headers: Vec<(String, String)>,
    },
    /// TCP connect.
    Tcp {
        /// Address to connect to.
        addr: SocketAddr,
    },
    /// Cannot be run here; the reason.
    Unsupported(String),
}

/// Timing of a probe, with Kubernetes defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default).max(0)).unwrap_or(0))
}

impl ProbeTiming {
    /// The timing of `probe`, defaults applied and nonsense clamped to the minimum.
    pub fn of(probe: &Probe) -> ProbeTiming {
        ProbeTiming {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: u32::try_from(probe.success_threshold.unwrap_or(1).max(1))
                .unwrap_or(1),
            failure_threshold: u32::try_from(probe.failure_threshold.unwrap_or(3).max(1))
                .unwrap_or(3),
        }
    }
}

/// Resolves a probe port (number or container port name).
fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("container {} has no port named {name:?}", container.name))
        }
    }
}

/// What `probe` of `container` checks on a pod at `pod_ip`.
pub fn target(probe: &Probe, container: &Container, pod_ip: Ipv4Addr) -> ProbeTarget {
    let host = |h: Option<&String>| -> Result<IpAddr, String> {
        match h.filter(|h| !h.is_empty()) {
            None => Ok(IpAddr::V4(pod_ip)),
            Some(h) => match h.parse::<IpAddr>() {
                Ok(ip) if dialable(ip) => Ok(ip),
                _ => Err(format!("probe host {h:?} is not a loopback address")),
            },
        }
    };
    let build = || -> Result<ProbeTarget, String> {
        if let Some(http) = &probe.http_get {
            let addr = SocketAddr::new(host(http.host.as_ref())?, port(container, &http.port)?);
            let https = http
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"));
            let path = http
                .path
                .clone()
                .filter(|p| p.starts_with('/'))
                .unwrap_or_else(|| "/".into());
            let headers = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            return Ok(ProbeTarget::Http {
                https,
                addr,
                path,
                headers,
            });
        }
        if let Some(tcp) = &probe.tcp_socket {
            return Ok(ProbeTarget::Tcp {
                addr: SocketAddr::new(host(tcp.host.as_ref())?, port(container, &tcp.port)?),
            });
        }
        if probe.exec.is_some() {
            return Err("exec probes cannot run in the sandbox".into());
        }
        if probe.grpc.is_some() {
            return Err("grpc probes are not supported by the sandbox".into());
        }
        Err("the probe has no handler".into())
    };
    build().unwrap_or_else(ProbeTarget::Unsupported)
}

/// Consecutive-result bookkeeping of one probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// Current verdict.
    pub ready: bool,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    /// Folds one probe result into the state, per the thresholds.
    pub fn observe(mut self, success: bool, timing: &ProbeTiming) -> ProbeState {
        if success {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= timing.success_threshold {
                self.ready = true;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= timing.failure_threshold || !self.ready {
                self.ready = false;
            }
        }
        self
    }
}

/// Runs one probe; `Err` carries the failure reason.
pub async fn run(target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_inner(target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

async fn run_inner(target: &ProbeTarget) -> Result<(), String> {
    match target {
        ProbeTarget::Unsupported(reason) => Err(reason.clone()),
        ProbeTarget::Tcp { addr } => {
            connect(*addr).await?;
            Ok(())
        }
        ProbeTarget::Http {
            https,
            addr,
            path,
            headers,
        } => {
            let stream = connect(*addr).await?;
            let status = if *https {
                let connector = tokio_rustls::TlsConnector::from(insecure_tls_config()?);
                let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                get(TokioIo::new(tls), *addr, path, headers).await?
            } else {
                get(TokioIo::new(stream), *addr, path, headers).await?
            };
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {status}"))
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    if !dialable(addr.ip()) {
        return Err(format!("refusing to dial {addr}: not a loopback address"));
    }
    tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial {addr}: {e}"))
}

async fn get<I>(
    io: I,
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let mut request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "kube-probe/1.35")
        .header(http::header::ACCEPT, "*/*");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("probe request: {e}"))?;
    let result = sender.send_request(request).await;
    driver.abort();
    result
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("HTTP request: {e}"))
}

/// Like the kubelet, HTTPS probes do not verify the certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(
            json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .expect("container")
    }

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).expect("probe")
    }

    const IP: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 9);

    #[test]
    fn named_ports_and_defaults() {
        let p = probe(json!({"httpGet": {"port": "http", "path": "/ready"}}));
        assert_eq!(
            target(&p, &container(), IP),
            ProbeTarget::Http {
                https: false,
                addr: SocketAddr::from((IP, 8080)),
                path: "/ready".into(),
                headers: vec![]
            }
        );
        let t = ProbeTiming::of(&p);
        assert_eq!(
            (
                t.period,
                t.timeout,
                t.success_threshold,
                t.failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let tcp = probe(json!({"tcpSocket": {"port": 1883}}));
        assert_eq!(
            target(&tcp, &container(), IP),
            ProbeTarget::Tcp {
                addr: SocketAddr::from((IP, 1883))
            }
        );
    }

    #[test]
    fn hostile_probes_are_unsupported_not_panics_nor_outside_dials() {
        for p in [
            json!({"httpGet": {"port": "nope"}}),
            json!({"httpGet": {"port": 70000}}),
            json!({"httpGet": {"port": -1}}),
            json!({"httpGet": {"port": 80, "host": "10.0.0.1"}}),
            json!({"httpGet": {"port": 80, "host": "example.com"}}),
            json!({"exec": {"command": ["true"]}}),
            json!({}),
        ] {
            assert!(
                matches!(
                    target(&probe(p.clone()), &container(), IP),
                    ProbeTarget::Unsupported(_)
                ),
                "{p}"
            );
        }
        let t = ProbeTiming::of(&probe(
            json!({"periodSeconds": -5, "timeoutSeconds": 0, "failureThreshold": -1}),
        ));
        assert_eq!(
            (t.period, t.timeout, t.failure_threshold),
            (Duration::from_secs(1), Duration::from_secs(1), 1)
        );
    }

    #[test]
    fn thresholds() {
        let t = ProbeTiming::of(&probe(
            json!({"successThreshold": 2, "failureThreshold": 2}),
        ));
        let s = ProbeState::default().observe(true, &t);
        assert!(!s.ready);
        let s = s.observe(true, &t);
        assert!(s.ready);
        let s = s.observe(false, &t);
        assert!(s.ready, "one failure below the threshold keeps it ready");
        let s = s.observe(false, &t);
        assert!(!s.ready);
    }

    #[tokio::test]
    async fn probes_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ");
                let status = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let http = |path: &str| ProbeTarget::Http {
            https: false,
            addr,
            path: path.into(),
            headers: vec![],
        };
        assert_eq!(run(&http("/ok"), Duration::from_secs(2)).await, Ok(()));
        assert!(
            run(&http("/bad"), Duration::from_secs(2))
                .await
                .expect_err("503")
                .contains("503")
        );
        assert_eq!(
            run(&ProbeTarget::Tcp { addr }, Duration::from_secs(2)).await,
            Ok(())
        );
        let closed = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 1));
        assert!(
            run(&ProbeTarget::Tcp { addr: closed }, Duration::from_secs(2))
                .await
                .is_err()
        );
        let outside = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 80));
        assert!(
            run(&ProbeTarget::Tcp { addr: outside }, Duration::from_secs(2))
                .await
                .expect_err("refused")
                .contains("loopback")
        );
    }
}
