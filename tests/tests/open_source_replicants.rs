//! Replicants of open-source EMQX 5.8 get past nothing but the webhook:
//! with the object created directly (no webhook in this stage), the
//! replicant pods look as they would on a real cluster — the container
//! starts, EMQX refuses `node.role = replicant` at boot and exits 1, and
//! the kubelet restarts it again and again — while the cores run.

mod support;

use std::time::Duration;

use sandbox::seed_003::Seed003;
use support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_source_5_8_replicants_crash_loop_at_boot() {
    let stage = support::stage(
        Seed003::new()
            .cores(1)
            .replicants(1)
            .image("emqx/emqx:5.8.9"),
    )
    .await;
    stage.create().await.expect("EMQX object");
    let (restarts, exit_code) = wait_for(
        "a crash-looping replicant",
        Duration::from_secs(120),
        || async {
            let pods = stage.pods().await.map_err(|e| e.to_string())?;
            let replicant = pods
                .iter()
                .find(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.contains("-replicant-"))
                })
                .ok_or("no replicant pod yet")?;
            let status = replicant
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .ok_or("no container status yet")?;
            let exit = status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            match exit {
                Some(code) if status.restart_count >= 1 && !status.ready => {
                    Ok((status.restart_count, code))
                }
                _ => Err(format!("not crash-looping yet: {status:?}")),
            }
        },
    )
    .await;
    assert!(restarts >= 1);
    assert_eq!(exit_code, 1);
    // The cores boot (the one core asked for: `all` of none would pass);
    // the cluster never becomes Ready.
    let pods = stage.pods().await.expect("pods");
    let cores: Vec<_> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.contains("-core-"))
        })
        .collect();
    assert_eq!(
        cores.len(),
        1,
        "core pods: {:?}",
        cores.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
    );
    let cores_ready = cores.into_iter().all(support::is_ready);
    assert!(cores_ready);
    let emqx = stage.api.get(sandbox::seed_003::NAME).await.expect("EMQX");
    assert!(sandbox::seed_003::ready_on(&emqx, None).is_err());
}
