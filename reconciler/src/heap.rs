//! The allocator's own account of the reconciler's memory on `/metrics`,
//! read at each scrape: `emqx_reconciler_heap_bytes{kind}`.
//!
//! The resident memory the kernel reports (what a memory limit counts) is
//! the binary's code pages, thread stacks, and what jemalloc holds: the live
//! heap plus pages freed but kept for reuse, which jemalloc gives back to
//! the kernel over `dirty_decay_ms` (10 s by default). These figures split
//! it, so a rise can be told apart: more live data (the stores, passes in
//! flight) or more pages kept after a burst of passes.
//!
//! The figures are jemalloc's, so this is a module of the binary whose
//! global allocator is jemalloc (`main` declares it), not of the library;
//! `reconciler/tests/heap_metrics.rs` includes this file the same way.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tikv_jemalloc_ctl::{epoch, stats};

/// jemalloc's statistics, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapBytes {
    /// Bytes the program has allocated and not freed.
    pub allocated: u64,
    /// Bytes in pages that hold live allocations (≥ `allocated`).
    pub active: u64,
    /// jemalloc's own bookkeeping.
    pub metadata: u64,
    /// Bytes in pages jemalloc holds resident: active, metadata, and freed
    /// pages not yet given back (the upper bound of its part of the RSS).
    pub resident: u64,
}

impl HeapBytes {
    /// The series of `emqx_reconciler_heap_bytes`, by their `kind` label.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("allocated", self.allocated),
            ("active", self.active),
            ("metadata", self.metadata),
            ("resident", self.resident),
        ]
    }
}

/// Reads jemalloc's statistics now.
pub fn read() -> Result<HeapBytes, tikv_jemalloc_ctl::Error> {
    // jemalloc serves its statistics from a snapshot; advancing the epoch
    // takes a new one.
    epoch::advance()?;
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(HeapBytes {
        allocated: bytes(stats::allocated::read()?),
        active: bytes(stats::active::read()?),
        metadata: bytes(stats::metadata::read()?),
        resident: bytes(stats::resident::read()?),
    })
}

/// Reads the statistics at each scrape.
#[derive(Debug, Default)]
pub struct HeapCollector;

impl Collector for HeapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A failed read leaves the series out rather than the whole page.
        let Ok(heap) = read() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "heap_bytes",
            "Memory as jemalloc accounts it, by kind: allocated (live), active (pages of \
             live allocations), metadata, resident (active, metadata and freed pages not yet \
             returned)",
            None,
            MetricType::Gauge,
        )?;
        for (kind, value) in heap.by_kind() {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }
}
