//! etcd + kube-apiserver + kube-controller-manager, started as real processes
//! on the sandbox's loopback address and stopped in reverse order.
//!
//! The apiserver runs as a cluster's would: TLS with a client CA, RBAC (plus
//! the Node authorizer), the default admission plugins plus NodeRestriction,
//! a ServiceAccount token issuer with its signing key, and Service ClusterIPs
//! from a loopback range. The controller manager runs the workload, garbage
//! collection, EndpointSlice and ServiceAccount controllers, each with its
//! own ServiceAccount credentials (so their RBAC is real too).

pub mod audit;
pub mod binaries;
pub mod kubeconfig;
pub mod pins;
pub mod pki;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::control_plane::binaries::Binaries;
use crate::control_plane::kubeconfig::Credentials;
use crate::control_plane::pki::Pki;
use crate::control_plane::process::Supervised;
use crate::network::addresses::AddressPlan;

/// etcd client port.
pub const ETCD_PORT: u16 = 2379;
/// etcd peer port (bound, but there is one member).
pub const ETCD_PEER_PORT: u16 = 2380;
/// kube-apiserver secure port.
pub const APISERVER_PORT: u16 = 6443;
/// The ServiceAccount token issuer.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The controllers kube-controller-manager runs. The endpointslice controller
/// writes the EndpointSlices the sandbox's service proxy follows (the
/// apiserver is built to accept their loopback addresses, see
/// [`binaries`]). Not run: the node lifecycle and IPAM controllers (the
/// simulated node has no lease or CIDR), the legacy Endpoints controllers
/// (nothing in the sandbox reads Endpoints, whose validation still refuses
/// loopback addresses), cloud, volume attach and CSR controllers.
pub const CONTROLLERS: &[&str] = &[
    "endpointslice-controller",
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
    "resourcequota-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "clusterrole-aggregation-controller",
    "service-cidr-controller",
    "validatingadmissionpolicy-status-controller",
];

/// A running control plane.
pub struct ControlPlane {
    /// `https://<ip>:6443`.
    pub server: String,
    /// The admin kubeconfig file.
    pub admin_kubeconfig: PathBuf,
    /// The admin kubeconfig document.
    pub admin_document: serde_json::Value,
    /// An admin client.
    pub client: kube::Client,
    /// The PKI (CA for pod kubeconfigs).
    pub pki: Pki,
    processes: Vec<Supervised>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("processes", &self.processes)
            .finish()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until
    /// the apiserver is ready. `audit_writes`: the apiserver logs every write
    /// ([`audit`], in `logs/`); `audit_readers`: and every request of these
    /// users (a non-empty list turns the log on too);
    /// `controller_manager_args`: more flags for kube-controller-manager.
    pub async fn start(
        binaries: &Binaries,
        plan: AddressPlan,
        state: &Path,
        records: &Path,
        audit_writes: bool,
        audit_readers: &[String],
        controller_manager_args: &[String],
    ) -> Result<ControlPlane> {
        let ip = plan.control_plane();
        let pki_dir = state.join("pki");
        let logs = state.join("logs");
        std::fs::create_dir_all(&pki_dir)?;
        std::fs::create_dir_all(&logs)?;
        let pki = Pki::generate(ip, plan.kubernetes_service(), plan.node())?;
        let file = |name: &str, content: &str| -> Result<PathBuf> {
            let path = pki_dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let ca = file("ca.crt", &pki.ca_pem)?;
        let serving_cert = file("apiserver.crt", &pki.apiserver.cert_pem)?;
        let serving_key = file("apiserver.key", &pki.apiserver.key_pem)?;
        let sa_key = file("sa.key", &pki.service_account_key_pem)?;
        let sa_pub = file("sa.pub", &pki.service_account_pub_pem)?;
        let kubelet_client_cert = file(
            "apiserver-kubelet-client.crt",
            &pki.apiserver_kubelet_client.cert_pem,
        )?;
        let kubelet_client_key = file(
            "apiserver-kubelet-client.key",
            &pki.apiserver_kubelet_client.key_pem,
        )?;

        let mut processes = Vec::new();
        let etcd_url = format!("http://{ip}:{ETCD_PORT}");
        let peer_url = format!("http://{ip}:{ETCD_PEER_PORT}");
        let mut etcd = Command::new(&binaries.etcd);
        etcd.args([
            "--name=sandbox",
            &format!("--data-dir={}", state.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=sandbox={peer_url}"),
            // A throwaway test store: durability is not worth the fsync latency.
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]);
        processes.push(Supervised::start(
            "etcd",
            etcd,
            &logs.join("etcd.log"),
            records,
        )?);
        wait_for_port(
            SocketAddr::from((ip, ETCD_PORT)),
            &mut processes,
            Duration::from_secs(30),
        )
        .await?;

        let server = format!("https://{ip}:{APISERVER_PORT}");
        let mut apiserver = Command::new(&binaries.kube_apiserver);
        apiserver.args([
            &format!("--etcd-servers={etcd_url}"),
            &format!("--bind-address={ip}"),
            &format!("--advertise-address={ip}"),
            &format!("--secure-port={APISERVER_PORT}"),
            &format!("--tls-cert-file={}", serving_cert.display()),
            &format!("--tls-private-key-file={}", serving_key.display()),
            &format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=Node,RBAC",
            // `kubectl logs` and friends: the apiserver dials the kubelet's
            // InternalIP over TLS it verifies, with its own client certificate.
            &format!("--kubelet-certificate-authority={}", ca.display()),
            &format!(
                "--kubelet-client-certificate={}",
                kubelet_client_cert.display()
            ),
            &format!("--kubelet-client-key={}", kubelet_client_key.display()),
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            &format!("--service-cluster-ip-range={}", plan.service_cidr()),
            &format!("--service-account-issuer={ISSUER}"),
            &format!("--service-account-key-file={}", sa_pub.display()),
            &format!("--service-account-signing-key-file={}", sa_key.display()),
            &format!("--api-audiences={ISSUER}"),
            // The `kubernetes` Service's endpoints would be the loopback address,
            // which Endpoints validation rejects; nothing in the sandbox needs them.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--event-ttl=1h",
            &format!("--cert-dir={}", pki_dir.display()),
            "--v=1",
        ]);
        if audit_writes || !audit_readers.is_empty() {
            apiserver.args(audit::apiserver_args(
                &pki_dir,
                &audit::log_path(&logs),
                audit_readers,
            )?);
        }
        processes.push(Supervised::start(
            "kube-apiserver",
            apiserver,
            &logs.join("kube-apiserver.log"),
            records,
        )?);

        let admin_document = kubeconfig::document(
            &server,
            &pki.ca_pem,
            "sandbox-admin",
            &Credentials::ClientCert {
                cert_pem: pki.admin.cert_pem.clone(),
                key_pem: pki.admin.key_pem.clone(),
            },
            "default",
        );
        let admin_kubeconfig = state.join("admin.kubeconfig");
        kubeconfig::write(&admin_kubeconfig, &admin_document)?;
        let client = kubeconfig::client(&admin_document).await?;
        wait_for_port(
            SocketAddr::from((ip, APISERVER_PORT)),
            &mut processes,
            Duration::from_secs(60),
        )
        .await?;
        wait_ready(&client, &mut processes, Duration::from_secs(120)).await?;

        let kcm_kubeconfig = state.join("kube-controller-manager.kubeconfig");
        kubeconfig::write(
            &kcm_kubeconfig,
            &kubeconfig::document(
                &server,
                &pki.ca_pem,
                "system:kube-controller-manager",
                &Credentials::ClientCert {
                    cert_pem: pki.controller_manager.cert_pem.clone(),
                    key_pem: pki.controller_manager.key_pem.clone(),
                },
                "kube-system",
            ),
        )?;
        let mut kcm = Command::new(&binaries.kube_controller_manager);
        kcm.args([
            &format!("--kubeconfig={}", kcm_kubeconfig.display()),
            &format!("--controllers={}", CONTROLLERS.join(",")),
            "--use-service-account-credentials=true",
            &format!("--service-account-private-key-file={}", sa_key.display()),
            &format!("--root-ca-file={}", ca.display()),
            "--leader-elect=false",
            // No metrics/health endpoint: nothing scrapes it, and it would need a port.
            "--secure-port=0",
            "--v=1",
        ]);
        kcm.args(controller_manager_args);
        processes.push(Supervised::start(
            "kube-controller-manager",
            kcm,
            &logs.join("kube-controller-manager.log"),
            records,
        )?);

        Ok(ControlPlane {
            server,
            admin_kubeconfig,
            admin_document,
            client,
            pki,
            processes,
        })
    }

    /// `(name, pid)` of each control-plane process.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .map(|p| (p.name.clone(), p.pid()))
            .collect()
    }

    /// Fails with the process's log tail if any control-plane process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        check_alive(&mut self.processes)
    }

    /// Stops the controller manager, the apiserver, then etcd.
    pub fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(10));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_alive(processes: &mut [Supervised]) -> Result<()> {
    for process in processes.iter_mut() {
        if let Some(status) = process.exited() {
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                process.name,
                process.log.display(),
                process.log_tail(30)
            );
        }
    }
    Ok(())
}

async fn wait_for_port(
    addr: SocketAddr,
    processes: &mut [Supervised],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        check_alive(processes)?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(
    client: &kube::Client,
    processes: &mut [Supervised],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        check_alive(processes)?;
        let request = http::Request::get("/readyz").body(Vec::new())?;
        let last = match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("kube-apiserver not ready after {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
