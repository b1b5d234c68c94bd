//! The `emqx-webhook` binary as a process: provided-directory certificates,
//! readiness, reload on file change, SIGTERM.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_certs::store;
use hyper_util::rt::TokioIo;
use support::{client_config, tls_connect};

struct Webhook {
    child: Child,
    addr: std::net::SocketAddr,
    dir: PathBuf,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(tag: &str, with_cert: Option<&emqx_certs::CertBundle>) -> Webhook {
    let dir = std::env::temp_dir().join(format!("emqx-webhook-bin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    if let Some(b) = with_cert {
        store::write_dir(&dir, b).expect("write certs");
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_emqx-webhook"))
        .args([
            "--cert-mode",
            "provided",
            "--cert-refresh-seconds",
            "1",
            "--log-format",
            "json",
        ])
        .arg("--cert-dir")
        .arg(&dir)
        .arg("--listen")
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emqx-webhook");
    Webhook { child, addr, dir }
}

async fn get(addr: std::net::SocketAddr, ca_pem: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    let tls = tls_connect(addr, client_config(ca_pem, &[b"http/1.1"]))
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = axum::http::Request::get(path)
        .header("host", "emqx-webhook.test.svc")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    Some((resp.status().as_u16(), leaf))
}

async fn wait_for<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("timed out waiting for {what}");
}

#[tokio::test]
async fn serves_reloads_a_replaced_certificate_and_exits_cleanly_on_sigterm() {
    let first = support::bundle();
    let mut hook = spawn("reload", Some(&first));
    let (addr, ca) = (hook.addr, first.ca_pem.clone());
    wait_for("readyz", || async {
        matches!(get(addr, &ca, "/readyz").await, Some((200, _)))
    })
    .await;

    let second = support::bundle();
    store::write_dir(&hook.dir, &second).expect("replace certs");
    let both = format!("{}{}", first.ca_pem, second.ca_pem);
    use rustls::pki_types::pem::PemObject;
    let expected = rustls::pki_types::CertificateDer::from_pem_slice(second.cert_pem.as_bytes())
        .expect("pem")
        .to_vec();
    wait_for("the new certificate", || async {
        get(addr, &both, "/healthz")
            .await
            .is_some_and(|(_, leaf)| leaf == expected)
    })
    .await;

    let pid = nix::unistd::Pid::from_raw(i32::try_from(hook.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = hook.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn without_a_certificate_it_runs_unready_and_becomes_ready_when_one_appears() {
    let hook = spawn("late", None);
    let addr = hook.addr;
    // Listening, but no certificate: handshakes fail, the process stays up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = support::bundle();
    assert!(get(addr, &b.ca_pem, "/readyz").await.is_none());
    store::write_dir(&hook.dir, &b).expect("write certs");
    let ca = b.ca_pem.clone();
    wait_for("readyz after the certificate appeared", || async {
        matches!(get(addr, &ca, "/readyz").await, Some((200, _)))
    })
    .await;
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_emqx-webhook"))
        .args([
            "--cert-mode",
            "provided",
            "--cert-dir",
            "/nonexistent",
            "--max-body-bytes",
            "0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-body-bytes"));
}
