//! `emqx_reconciler_heap_bytes` follows what the program allocates and
//! frees. Its own test binary, because the figures are jemalloc's: here,
//! as in the reconciler's `main`, jemalloc is the global allocator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The binary's own module (it is not part of the library).
#[path = "../src/heap.rs"]
mod heap;

use emqx_reconciler::metrics::Metrics;
use heap::HeapCollector;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: u64 = 1 << 20;

/// The `kind` series of one scrape of `metrics`.
fn heap_series(metrics: &Metrics) -> Vec<(String, u64)> {
    let page = metrics.encode();
    let series: Vec<(String, u64)> = page
        .lines()
        .filter_map(|line| line.strip_prefix("emqx_reconciler_heap_bytes{kind=\""))
        .map(|rest| {
            let (kind, value) = rest.split_once("\"} ").expect("a labelled sample");
            (kind.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    assert!(
        page.contains("# TYPE emqx_reconciler_heap_bytes gauge"),
        "{page}"
    );
    series
}

fn kind(series: &[(String, u64)], kind: &str) -> u64 {
    series
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} in {series:?}"))
        .1
}

#[test]
fn heap_bytes_follow_allocations_and_frees() {
    let mut metrics = Metrics::default();
    metrics.registry.register_collector(Box::new(HeapCollector));

    let before = heap_series(&metrics);
    let kinds: Vec<&str> = before.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["allocated", "active", "metadata", "resident"]);
    assert!(
        kind(&before, "allocated") <= kind(&before, "active")
            && kind(&before, "active") <= kind(&before, "resident"),
        "{before:?}"
    );

    // 64 MiB written, so its pages are resident.
    let block = vec![7u8; 64 * MIB as usize];
    let held = heap_series(&metrics);
    assert!(
        kind(&held, "allocated") >= kind(&before, "allocated") + 64 * MIB,
        "{before:?} then {held:?}"
    );
    assert!(
        kind(&held, "resident") >= kind(&before, "resident") + 64 * MIB,
        "{before:?} then {held:?}"
    );

    drop(std::hint::black_box(block));
    let freed = heap_series(&metrics);
    assert!(
        kind(&freed, "allocated") + 64 * MIB <= kind(&held, "allocated"),
        "{held:?} then {freed:?}"
    );
}
