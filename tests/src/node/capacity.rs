//! What the simulated Node reports of itself. The kubelet registers it; the
//! downward API hands it to a container that sets no limit of its own.

/// CPU capacity the node reports.
pub const NODE_CPU: u32 = 16;
/// Memory capacity the node reports, bytes.
pub const NODE_MEMORY_BYTES: u64 = 32 * 1024 * 1024 * 1024;
