//! Prints the simulated EMQX node's resident memory per 1,000 MQTT connections.
//!
//! `cargo run -p emqx-sim --release --example emqx_memory [batches]`
//!
//! The node runs in this process; the clients run in a child process (this
//! same binary with `--clients`), so their memory is not counted. Each client
//! is an MQTT 5 connection with `clean_start=false`, a session expiry and one
//! QoS 1 subscription, like the load generator's clients.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use emqx_sim::operator_pod::v2_pod;
use emqx_sim::{EmqxNode, NodeConfig, Role};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Connect, ConnectProperties, Filter, Packet, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BATCH: usize = 1000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn client(addr: SocketAddr, id: String) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(600);
    let connect = Connect {
        keep_alive: 0,
        client_id: id.clone(),
        clean_start: false,
        properties: Some(props),
    };
    let sub = Subscribe {
        pkid: 1,
        filters: vec![Filter::new(format!("load/{id}"), QoS::AtLeastOnce)],
        properties: None,
    };
    let mut buf = BytesMut::new();
    let encode = |p: Packet, b: &mut BytesMut| {
        p.write(b, None)
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    encode(Packet::Connect(connect, None, None), &mut buf)?;
    encode(Packet::Subscribe(sub), &mut buf)?;
    s.write_all(&buf).await?;
    // CONNACK (5 bytes with empty properties) + SUBACK (6 bytes).
    let mut ack = [0u8; 11];
    s.read_exact(&mut ack).await?;
    Ok(s)
}

async fn run_clients(addr: SocketAddr, batches: usize) {
    let mut held = Vec::new();
    let stdout = std::io::stdout();
    for b in 0..batches {
        // Wait for the parent's go, so each measurement sees exactly one batch more.
        let go = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !go {
            return;
        }
        let tasks: Vec<_> = (0..BATCH)
            .map(|i| tokio::spawn(client(addr, format!("mem-{b}-{i}"))))
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => held.push(s),
                Ok(Err(e)) => eprintln!("client failed: {e}"),
                Err(e) => eprintln!("client task failed: {e}"),
            }
        }
        let mut out = stdout.lock();
        let _ = writeln!(out, "batch {b} {}", held.len());
        let _ = out.flush();
    }
    // Hold the connections until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--clients") {
        let addr: SocketAddr = args.get(2).ok_or("--clients ADDR N")?.parse()?;
        let batches: usize = args.get(3).ok_or("--clients ADDR N")?.parse()?;
        run_clients(addr, batches).await;
        return Ok(());
    }
    let batches: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let ip = Ipv4Addr::new(127, 24, 0, 10);
    let pod = v2_pod(
        "mem",
        "ns",
        "mem-core-0",
        Role::Core,
        ip,
        "emqx/emqx-enterprise:5.8.9",
        "k:s\n",
    );
    let node = EmqxNode::start(NodeConfig::from_pod(&pod)?).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib();
    println!("node idle: RSS {:.1} MiB", idle as f64 / 1024.0);

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--clients",
            &node.mqtt_addr().to_string(),
            &batches.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut stdin = child.stdin.take().ok_or("child stdin")?;
    let mut previous = idle;
    let mut per_batch = Vec::new();
    for _ in 0..batches {
        writeln!(stdin, "go")?;
        stdin.flush()?;
        let line = tokio::task::block_in_place(|| lines.next()).ok_or("child ended early")??;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib();
        let live = node.live_connections_by_node().values().sum::<u64>();
        let delta = now.saturating_sub(previous) as f64;
        println!(
            "{line}: {live} live connections, RSS {:.1} MiB, +{:.0} KiB for this 1,000",
            now as f64 / 1024.0,
            delta
        );
        per_batch.push(delta);
        previous = now;
    }
    let total = previous.saturating_sub(idle) as f64 / batches as f64;
    println!(
        "simulator memory per 1,000 connections: median {:.0} KiB, mean {:.0} KiB ({batches} batches)",
        median(&mut per_batch),
        total
    );
    drop(stdin);
    let _ = child.wait();
    Ok(())
}
