//! The chart's images as a cluster runs them: built by the project's command
//! (`images/build`), loaded from their OCI archives into podman and run with
//! runc on the host's network (loopback only), as user 65532 with a read-only
//! root filesystem and no capabilities, as the chart's securityContext says.
//!
//! What an empty base could break, each proved here: the static binaries run
//! at all; the webhook serves TLS from mounted certificate files; a name that
//! exists only in the container's /etc/hosts is resolved by the binary (glibc's
//! getaddrinfo, statically linked) and the reconciler's TLS client verifies
//! the API server against a kubeconfig's CA; without a ServiceAccount the
//! reconciler says which file is missing. And a rebuild gives the same digests.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use emqx_images::{AS_THE_CHART_RUNS_IT, Image, Podman, build, default_out};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A name no resolver outside the container knows (`.test` is reserved):
/// only `--add-host` puts it into the container's /etc/hosts.
const API_NAME: &str = "kube-api.images.test";

/// Both images, built once per test run and loaded into podman.
struct Built {
    podman: Podman,
    images: Vec<Image>,
    /// Image ID by binary name.
    ids: BTreeMap<String, String>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = default_out();
        let images = build(&out).expect("images/build");
        let podman = Podman::new(&out);
        let ids = images
            .iter()
            .map(|image| {
                let id = podman.load(image).expect("podman load");
                (image.binary.clone(), id)
            })
            .collect();
        Built {
            podman,
            images,
            ids,
        }
    })
}

fn image_id(binary: &str) -> &'static str {
    built()
        .ids
        .get(binary)
        .map(String::as_str)
        .unwrap_or_else(|| unreachable!("images/build made no {binary} image"))
}

/// `podman run --rm` with the chart's restrictions on the host network.
fn run_once(binary: &str, extra: &[&str], args: &[&str]) -> std::process::Output {
    let mut run = vec!["run", "--rm", "--network=host"];
    run.extend_from_slice(&AS_THE_CHART_RUNS_IT);
    run.extend_from_slice(extra);
    run.push(image_id(binary));
    run.extend_from_slice(args);
    built().podman.output(&run).expect("podman run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn chart_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/emqx-operator")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| unreachable!("{}: {e}", path.display()))
}

/// The `tag:` beside `repository: <repository>` in values.yaml (same indent).
fn default_tag<'a>(values: &'a str, repository: &str) -> Option<&'a str> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut lines = values.lines();
    let at = lines.find(|l| l.trim() == format!("repository: {repository}"))?;
    lines
        .take_while(|l| indent(l) == indent(at))
        .find_map(|l| l.trim().strip_prefix("tag:"))
        .map(str::trim)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A fresh folder for files a container mounts, readable by user 65532
/// (as a Secret volume's files are, mode 0644).
fn mount_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn write_file(dir: &Path, name: &str, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// A CA and a serving certificate signed by it for `names`, all PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("leaf params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    Pki {
        ca_pem,
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One HTTPS request over a fresh connection that verifies the server
/// against `ca_pem` for `server_name`; the status and body.
fn https(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    request: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)?;
    let response = read_http_message(&mut tls)?;
    parse_response(&response)
}

/// Reads one HTTP/1.1 message (head and a Content-Length or chunked body).
fn read_http_message(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = head_end(&buf)
            && body_complete(&buf[..end], &buf[end..])
        {
            return Ok(buf);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A peer that closes without close_notify after a complete answer.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(buf),
            Err(e) => return Err(e),
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn body_complete(head: &[u8], body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    if let Some(length) = header(&head, "content-length") {
        return length.parse::<usize>().is_ok_and(|n| body.len() >= n);
    }
    if header(&head, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    // A request without a body.
    head.starts_with("GET ")
}

fn parse_response(message: &[u8]) -> std::io::Result<(u16, String)> {
    let end = head_end(message).ok_or_else(|| std::io::Error::other("no complete HTTP head"))?;
    let head = String::from_utf8_lossy(&message[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let raw = &message[end..];
    let body =
        if header(&head, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            dechunk(raw)
        } else {
            raw.to_vec()
        };
    Ok((status, text(&body)))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(text(&raw[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let Some(chunk) = raw.get(start..start + size) else {
            break;
        };
        body.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    body
}

/// Polls `probe` until it returns Some, for at most `limit`.
fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn images_are_named_versioned_and_run_as_the_chart_expects() {
    let chart = chart_file("Chart.yaml");
    let values = chart_file("values.yaml");
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("Chart.yaml has appVersion");
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion and the Cargo workspace version differ"
    );
    let images = &built().images;
    assert_eq!(images.len(), 2, "{images:?}");
    for image in images {
        let repository = format!("emqx-operator/{}", image.binary);
        // The chart pulls <repository>:<appVersion> when the tag is empty.
        assert_eq!(image.reference, format!("{repository}:{app_version}"));
        assert_eq!(
            default_tag(&values, &repository),
            Some("\"\""),
            "values.yaml's default image is not {repository} with an empty tag (the appVersion)"
        );
        let field = |format: &str| {
            built()
                .podman
                .run(&[
                    "image",
                    "inspect",
                    "--format",
                    format,
                    image_id(&image.binary),
                ])
                .expect("podman image inspect")
        };
        assert_eq!(field("{{.Config.User}}"), "65532:65532");
        assert_eq!(
            field("{{.Config.Entrypoint}}"),
            format!("[/{}]", image.binary)
        );
        let label = |name: &str| {
            field(&format!(
                "{{{{index .Labels \"org.opencontainers.image.{name}\"}}}}"
            ))
        };
        assert_eq!(label("version"), app_version);
        let revision = label("revision");
        let commit = revision.trim_end_matches("-dirty");
        assert!(
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "revision label {revision:?} is not a commit"
        );
        assert!(
            label("source").starts_with("https://"),
            "{}",
            label("source")
        );
        // One layer: the binary and /etc/{passwd,group,nsswitch.conf}.
        assert_eq!(field("{{len .RootFS.Layers}}"), "1");
    }
}

#[test]
fn both_binaries_answer_version_and_help_in_their_images() {
    for binary in ["emqx-webhook", "emqx-reconciler"] {
        let version = run_once(binary, &[], &["--version"]);
        assert!(
            version.status.success(),
            "{binary} --version: {}{}",
            text(&version.stdout),
            text(&version.stderr)
        );
        assert_eq!(
            text(&version.stdout).trim(),
            format!("{binary} {}", env!("CARGO_PKG_VERSION"))
        );
        let help = run_once(binary, &[], &["--help"]);
        assert!(
            help.status.success(),
            "{binary} --help: {}",
            text(&help.stderr)
        );
        assert!(
            text(&help.stdout).contains("Usage:"),
            "{}",
            text(&help.stdout)
        );
    }
}

#[test]
fn webhook_serves_https_from_mounted_certificate_files() {
    let pki = pki(&["localhost"]);
    let certs = mount_dir("webhook-certs");
    write_file(&certs, "ca.crt", &pki.ca_pem);
    write_file(&certs, "tls.crt", &pki.cert_pem);
    write_file(&certs, "tls.key", &pki.key_pem);
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut run = vec!["--network=host".to_owned()];
    run.extend(AS_THE_CHART_RUNS_IT.map(String::from));
    run.push(format!(
        "--volume={}:/etc/webhook/certs:ro",
        certs.display()
    ));
    run.push(image_id("emqx-webhook").to_owned());
    run.extend(
        [
            "--cert-mode=provided",
            "--cert-dir=/etc/webhook/certs",
            "--log-format=json",
        ]
        .map(String::from),
    );
    run.push(format!("--listen=127.0.0.1:{port}"));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let webhook = built().podman.start(&run).expect("start the webhook");

    let ready = wait_for(Duration::from_secs(30), || {
        https(
            addr,
            "localhost",
            &pki.ca_pem,
            b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .ok()
        .filter(|(status, _)| *status == 200)
    });
    assert!(
        ready.is_some(),
        "no HTTPS 200 from /readyz within 30 s (running: {}):\n{}",
        webhook.is_running(),
        webhook.logs()
    );

    // A real admission request: the webhook's validation runs in the image.
    let object = serde_json::json!({
        "apiVersion": "apps.emqx.io/v2beta1",
        "kind": "EMQX",
        "metadata": {"name": "emqx-ee", "namespace": "default"},
        "spec": {
            "image": "emqx/emqx:6.0.1",
            "updateStrategy": {
                "type": "Recreate",
                // Out of range (1-1,000,000): the webhook must name the field.
                "evacuationStrategy": {"connEvictRate": 0, "sessEvictRate": 1000, "waitTakeover": 10}
            }
        }
    });
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "images-test-1",
            "kind": {"group": "apps.emqx.io", "version": "v2beta1", "kind": "EMQX"},
            "resource": {"group": "apps.emqx.io", "version": "v2beta1", "resource": "emqxes"},
            "name": "emqx-ee",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "dryRun": false
        }
    })
    .to_string();
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{review}",
        review.len()
    );
    let (status, body) = https(addr, "localhost", &pki.ca_pem, request.as_bytes())
        .expect("POST /validate over HTTPS");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("an AdmissionReview");
    assert_eq!(answer["response"]["uid"], "images-test-1", "{answer}");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("connEvictRate"), "{answer}");
    drop(webhook);
    let _ = std::fs::remove_dir_all(&certs);
}

/// What the fake API server saw of the first request.
#[derive(Debug)]
struct Seen {
    sni: Option<String>,
    head: String,
}

/// A TLS server on 127.0.0.1 that answers every request with 503 and
/// reports the first one; it stops by itself after `limit`.
fn fake_api_server(pki: &Pki, limit: Duration) -> (u16, mpsc::Receiver<Seen>) {
    let certs = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let tcp = match listener.accept() {
                Ok((tcp, _)) => tcp,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(_) => return,
            };
            let _ = tcp.set_nonblocking(false);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let Ok(message) = read_http_message(&mut tls) else {
                continue;
            };
            let head = head_end(&message).map_or(message.as_slice(), |end| &message[..end]);
            let seen = Seen {
                sni: tls.conn.server_name().map(str::to_owned),
                head: text(head),
            };
            let _ = tls.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn reconciler_resolves_a_name_in_its_image_and_verifies_the_api_servers_certificate() {
    assert!(
        (API_NAME, 443).to_socket_addrs().is_err(),
        "{API_NAME} resolves on this host, so the test would not show resolution in the container"
    );
    let pki = pki(&[API_NAME]);
    let (port, seen) = fake_api_server(&pki, Duration::from_secs(90));
    let kube = mount_dir("reconciler-kubeconfig");
    write_file(&kube, "ca.crt", &pki.ca_pem);
    write_file(
        &kube,
        "config",
        &format!(
            "apiVersion: v1
kind: Config
clusters:
  - name: images-test
    cluster:
      server: https://{API_NAME}:{port}
      certificate-authority: /etc/kube/ca.crt
users:
  - name: images-test
    user:
      token: images-test-token
contexts:
  - name: images-test
    context: {{cluster: images-test, user: images-test}}
current-context: images-test
"
        ),
    );
    let metrics_port = free_port();
    let mut run = vec![
        "--network=host".to_owned(),
        format!("--add-host={API_NAME}:127.0.0.1"),
    ];
    run.extend(AS_THE_CHART_RUNS_IT.map(String::from));
    run.push(format!("--volume={}:/etc/kube:ro", kube.display()));
    run.push("--env=KUBECONFIG=/etc/kube/config".to_owned());
    run.push(image_id("emqx-reconciler").to_owned());
    run.push(format!("--metrics-addr=127.0.0.1:{metrics_port}"));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let reconciler = built().podman.start(&run).expect("start the reconciler");

    // Until the first request arrives, the reconciler exits, or 60 s pass.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        match seen.recv_timeout(Duration::from_secs(1)) {
            Ok(first) => break Some(first),
            Err(_) if !reconciler.is_running() || Instant::now() >= deadline => {
                break seen.try_recv().ok();
            }
            Err(_) => {}
        }
    };
    let Some(first) = first else {
        unreachable!(
            "no request reached the API server (running: {}):\n{}",
            reconciler.is_running(),
            reconciler.logs()
        );
    };
    // TLS verified against the kubeconfig's CA for the name, and the name
    // resolved to 127.0.0.1 inside the container.
    assert_eq!(first.sni.as_deref(), Some(API_NAME), "{first:?}");
    assert_eq!(
        header(&first.head, "host"),
        Some(format!("{API_NAME}:{port}").as_str()),
        "{first:?}"
    );
    assert_eq!(
        header(&first.head, "authorization"),
        Some("Bearer images-test-token"),
        "{first:?}"
    );
    assert!(first.head.starts_with("GET /api"), "{first:?}");

    // Its readiness endpoint answers on the metrics address.
    let healthz = wait_for(Duration::from_secs(10), || {
        let mut tcp = TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        parse_response(&read_http_message(&mut tcp).ok()?).ok()
    });
    assert_eq!(
        healthz.as_ref().map(|(status, _)| *status),
        Some(200),
        "{healthz:?}\n{}",
        reconciler.logs()
    );
    drop(reconciler);
    let _ = std::fs::remove_dir_all(&kube);
}

#[test]
fn reconciler_without_a_service_account_fails_with_the_in_cluster_config_error() {
    // In a pod without a mounted ServiceAccount token: the service variables
    // are there, the files are not.
    let output = run_once(
        "emqx-reconciler",
        &[
            "--env=KUBERNETES_SERVICE_HOST=127.0.0.1",
            "--env=KUBERNETES_SERVICE_PORT=443",
        ],
        &["--metrics-addr=127.0.0.1:0"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // kube's in-cluster config reads the ServiceAccount's namespace file
    // first; its error names the step, ours the path it looked in.
    // The error is what it ends with (its `starting` line comes first).
    assert!(
        stderr.contains("\nError: no Kubernetes client configuration")
            && stderr.contains("/var/run/secrets/kubernetes.io/serviceaccount/")
            && stderr.contains("in-cluster: (failed to read the default namespace: No such file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_rebuild_in_a_fresh_folder_gives_the_same_digests() {
    let first = &built().images;
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("images-rebuild");
    let _ = std::fs::remove_dir_all(&out);
    // A new output folder: a fresh builder store and staging, no stamps.
    let again = build(&out).expect("images/build into a fresh folder");
    let digests = |images: &[Image]| -> Vec<(String, String)> {
        images
            .iter()
            .map(|i| (i.reference.clone(), i.digest.clone()))
            .collect()
    };
    assert_eq!(digests(first), digests(&again));
    let _ = std::fs::remove_dir_all(&out);
}
