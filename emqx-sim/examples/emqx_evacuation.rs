//! Seed 003 on simulated nodes, standalone: N clients on one of three nodes,
//! the "Service" moved to the other two, the node evacuated at R per tick;
//! writes CSV, SVG, PNG and a summary, and prints the summary.
//!
//! `cargo run -p emqx-sim --release --example emqx_evacuation [clients] [rate] [out_dir]`
//! (defaults 3000, 500, target/emqx-evacuation-demo). Stops by itself.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use emqx_sim::evacuation::EvacuationOptions;
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use mqtt_load::recorder::{Summary, write_all};
use mqtt_load::{Endpoints, LoadConfig, MqttLoad};

async fn node(idx: u8) -> Result<EmqxNode, Box<dyn std::error::Error>> {
    let ip = Ipv4Addr::new(127, 25, 0, 10 + idx);
    let pod = v2_pod(
        "demo",
        "default",
        &format!("demo-core-{idx}"),
        Role::Core,
        ip,
        "emqx/emqx-enterprise:5.8.9",
        "k:s\n",
    );
    Ok(EmqxNode::start(NodeConfig::from_pod(&pod)?).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3000);
    let rate: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(500);
    let out = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/emqx-evacuation-demo"));
    let (a, b, c) = (node(0).await?, node(1).await?, node(2).await?);
    let cluster = a.cluster().clone();
    let service = Endpoints::new(vec![a.mqtt_addr()]);
    let config = LoadConfig {
        clients,
        connect_rate: 1000,
        publish_interval: Duration::from_secs(2),
        max_duration: Duration::from_secs(600),
        ..LoadConfig::default()
    };
    let load = MqttLoad::start(
        config,
        service.clone(),
        Endpoints::new(vec![b.mqtt_addr()]),
        cluster.clone(),
    );
    if !load.wait_all_subscribed(Duration::from_secs(120)).await {
        return Err(format!("clients did not connect: {:?}", load.progress()).into());
    }
    println!("{clients} clients connected to {}", a.name());
    tokio::time::sleep(Duration::from_secs(3)).await;
    service.set(vec![b.mqtt_addr(), c.mqtt_addr()]);
    let started = std::time::Instant::now();
    let options = EvacuationOptions {
        wait_health_check: Duration::ZERO,
        conn_evict_rate: rate,
        sess_evict_rate: rate,
        wait_takeover: Duration::from_secs(5),
        migrate_to: Some(vec![b.name().to_string(), c.name().to_string()]),
        ..EvacuationOptions::default()
    };
    cluster
        .start_evacuation(a.name(), options)
        .map_err(|e| format!("start evacuation: {e:?}"))?;
    loop {
        match cluster.evacuation_state(a.name()) {
            Some(s) if s.as_str() == "prohibiting" => break,
            Some(s) => print!(
                "\r{:>5.1} s {:<20} {:?}      ",
                started.elapsed().as_secs_f64(),
                s.as_str(),
                cluster
                    .live_connections_by_node()
                    .values()
                    .collect::<Vec<_>>()
            ),
            None => return Err("evacuation vanished".into()),
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("evacuation did not finish in 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let floor = clients as f64 / f64::from(rate) + 5.0;
    println!(
        "\nevacuation done in {:.1} s (floor {floor:.1} s)",
        started.elapsed().as_secs_f64()
    );
    load.wait_all_connected(Duration::from_secs(60)).await;
    let report = load.finish(Duration::from_secs(30)).await;
    let artifacts = write_all(
        &report,
        &out,
        &format!("Connections per node: {clients} clients evacuated at {rate}/s"),
    )?;
    println!("{}", Summary::of(&report));
    println!(
        "wrote {}, {}, {}, {}",
        artifacts.csv.display(),
        artifacts.svg.display(),
        artifacts.png.display(),
        artifacts.summary.display()
    );
    Ok(())
}
