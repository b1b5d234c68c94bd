//! Benchmark: starts and stops a sandbox N times (default 3) and prints each
//! start time, the median, and the resident memory of etcd, kube-apiserver and
//! kube-controller-manager 10 s after the first start.
//!
//! `cargo run --release -p sandbox --bin sandbox-startup -- [N]`

use std::time::{Duration, Instant};

use sandbox::{Sandbox, SandboxOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .map_err(|e| anyhow::anyhow!("N must be a positive number: {e}"))?
        .unwrap_or(3)
        .clamp(1, 20);
    let build = Instant::now();
    sandbox::control_plane::binaries::ensure_built_async().await?;
    println!("binaries ready in {:.1}s", build.elapsed().as_secs_f64());
    let mut times = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let sandbox = Sandbox::start(SandboxOptions::default()).await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!("start {}: {elapsed:.2}s", run + 1);
        times.push(elapsed);
        if run == 0 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let rss = sandbox.control_plane_rss_kib();
            let total: u64 = rss.iter().map(|(_, kib)| kib).sum();
            for (name, kib) in &rss {
                println!("rss {name}: {:.0} MiB", *kib as f64 / 1024.0);
            }
            println!("rss control plane total: {:.0} MiB", total as f64 / 1024.0);
        }
        let stopping = Instant::now();
        sandbox.stop().await?;
        println!("stop {}: {:.2}s", run + 1, stopping.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median start: {:.2}s over {runs} runs",
        times[times.len() / 2]
    );
    Ok(())
}
