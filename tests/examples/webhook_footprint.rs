//! The webhook's resident memory installed by the chart (issue 16, item 5),
//! against the same binary standalone, side by side in one run. Prints
//! figures; asserts nothing.
//!
//! `cargo run --release -p sandbox --example webhook_footprint -- [--seconds 60]`
//!
//! 1. **In cluster**: `helm install` of the chart with its defaults
//!    (self-managed certificates: the webhook keeps its Secret, injects
//!    `caBundle` into its two webhook configurations and the two CRDs,
//!    and re-checks them every `refreshSeconds`); the webhook's pods' VmRSS
//!    sampled every second for `--seconds`, while a review of seed 003's
//!    object (`kubectl apply --dry-run=server`, mutating and validating)
//!    runs every 2 s.
//! 2. **Standalone**: the same image, run by podman as the chart runs it
//!    (user 65532, read-only root, host network) but with a certificate
//!    directory (`--cert-mode provided`, no Kubernetes client), sampled the
//!    same way while the same number of reviews is posted to it directly.
//!
//! Medians per process, and the ratio in-cluster / standalone.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sandbox::operator::chart::NAMESPACE;
use sandbox::operator::project_image::build_operator_images;
use sandbox::seed_003::{Operator, Seed003};

#[derive(Parser, Debug)]
struct Args {
    /// How long to sample each setup.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let window = Duration::from_secs(args.seconds);

    // 1. In cluster.
    let stage = Seed003::new()
        .operator(Operator::Chart)
        .stage()
        .await
        .context("sandbox with the chart installed")?;
    let webhooks: Vec<(String, u32)> = stage
        .sandbox
        .pids()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with(&format!("{NAMESPACE}/")) && name.ends_with("/webhook")
        })
        .collect();
    if webhooks.is_empty() {
        bail!("no webhook process among {:?}", stage.sandbox.pids());
    }
    let manifest = serde_json::to_vec(&stage.manifest)?;
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); webhooks.len()];
    let started = Instant::now();
    let mut reviews = 0u32;
    let mut tick = 0u64;
    while started.elapsed() < window {
        for (i, (_, pid)) in webhooks.iter().enumerate() {
            if let Some(rss) = rss_kib(*pid) {
                samples[i].push(rss);
            }
        }
        if tick.is_multiple_of(2) {
            let mut kubectl = stage.sandbox.kubectl();
            kubectl.args(["apply", "--dry-run=server", "-f", "-"]);
            let out =
                sandbox::operator::chart::run(kubectl, Some(&manifest), Duration::from_secs(20))
                    .await?;
            if !out.success {
                bail!("review refused: {}", out.stderr);
            }
            reviews += 1;
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let in_cluster: Vec<(String, u64, u64)> = webhooks
        .iter()
        .zip(samples)
        .map(|((name, _), s)| {
            (
                name.clone(),
                median(s.clone()),
                s.iter().copied().max().unwrap_or(0),
            )
        })
        .collect();
    stage.stop().await?;

    // 2. Standalone, same image, same number of reviews.
    let images = tokio::task::spawn_blocking(build_operator_images).await??;
    let image = images
        .images
        .iter()
        .find(|i| i.binary == "emqx-webhook")
        .context("no emqx-webhook image")?;
    let podman = emqx_images::Podman::new(&images.out);
    podman.load(image)?;
    let dir = tempfile::tempdir()?;
    let standalone = standalone_rss(&podman, &image.reference, dir.path(), window, reviews).await?;

    println!(
        "webhook resident memory, median (max) over {}s:",
        args.seconds
    );
    for (name, med, max) in &in_cluster {
        println!(
            "  in cluster (chart, self-managed)  {name}: {} ({})",
            mib(*med),
            mib(*max)
        );
    }
    println!(
        "  standalone (same image, provided certificates): {} ({})",
        mib(standalone.0),
        mib(standalone.1)
    );
    let cluster_median = median(in_cluster.iter().map(|(_, m, _)| *m).collect());
    println!(
        "  ratio in cluster / standalone: {:.2} ({reviews} reviews each)",
        cluster_median as f64 / standalone.0.max(1) as f64
    );
    Ok(())
}

/// Median and max VmRSS of the webhook image serving a certificate
/// directory, with `reviews` admission reviews posted to it over `window`.
async fn standalone_rss(
    podman: &emqx_images::Podman,
    reference: &str,
    dir: &Path,
    window: Duration,
    reviews: u32,
) -> Result<(u64, u64)> {
    let identity = emqx_certs::ServiceIdentity {
        service: "emqx-webhook".into(),
        namespace: "default".into(),
        cluster_domain: String::new(),
        extra_names: vec!["127.0.0.1".into()],
    };
    let bundle = emqx_certs::authority::new_bundle(&identity, std::time::SystemTime::now(), None)?;
    emqx_certs::store::write_dir(dir, &bundle)?;
    // Readable by the image's user 65532.
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let volume = format!("{}:/certs:ro", dir.display());
    let listen = format!("127.0.0.1:{port}");
    let mut run: Vec<&str> = emqx_images::AS_THE_CHART_RUNS_IT.to_vec();
    run.extend(["--network=host", "-v", &volume, reference]);
    run.extend([
        "--listen",
        &listen,
        "--cert-mode",
        "provided",
        "--cert-dir",
        "/certs",
    ]);
    let container = podman.start(&run)?;
    let pid: u32 = podman
        .run(&["inspect", "--format", "{{.State.Pid}}", &container.id])?
        .parse()
        .context("the container's pid")?;
    let ca = dir.join("ca.crt");
    let review_file = dir.join("review.json");
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "1", "kind": {"group": "apps.emqx.io", "version": "v2beta1", "kind": "EMQX"},
            "operation": "CREATE", "object": sandbox::seed_003::Seed003::new().manifest()?}
    });
    std::fs::write(&review_file, serde_json::to_vec(&review)?)?;
    let url = format!("https://127.0.0.1:{port}/validate");
    // curl: the machine's, so that no TLS client of this process is measured.
    let post = || {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", review_file.display()))
            .arg(&url)
            .status()
    };
    let result = async {
        let mut samples = Vec::new();
        let started = Instant::now();
        let every = window / reviews.max(1);
        let mut sent = 0;
        while started.elapsed() < window {
            if sent < reviews && started.elapsed() >= every * sent {
                post().context("running curl")?;
                sent += 1;
            }
            if let Some(rss) = rss_kib(pid) {
                samples.push(rss);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let max = samples.iter().copied().max().unwrap_or(0);
        anyhow::Ok((median(samples), max))
    }
    .await;
    drop(container);
    result
}
