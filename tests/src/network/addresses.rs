//! Which loopback addresses a sandbox uses. Each running sandbox holds a
//! *slot* (an exclusive file lock), and the slot fixes all its addresses, so
//! sandboxes in parallel tests or processes never collide and need no port
//! probing:
//!
//! | what | address |
//! |---|---|
//! | etcd, kube-apiserver | `127.95.<slot>.1` (ports 2379/2380, 6443) |
//! | the simulated node (pods' `hostIP`) | `127.95.<slot>.2` |
//! | Service ClusterIPs | `127.96.<slot>.0/24` |
//! | pod IPs | `127.<100 + slot>.0.1` – `127.<100 + slot>.255.254` |
//!
//! Everything is inside 127.0.0.0/8, and none of it is 127.0.0.1.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Whether the sandbox may dial `ip`: every address it ever connects to (pod
/// IPs, ClusterIPs, the control plane) must be in 127.0.0.0/8.
pub fn dialable(ip: std::net::IpAddr) -> bool {
    ip.is_loopback()
}

/// Number of sandboxes that can run at once on one machine.
pub const SLOTS: u8 = 64;

/// The addresses of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    /// The slot number (0..[`SLOTS`]).
    pub slot: u8,
}

impl AddressPlan {
    /// Address of etcd and kube-apiserver.
    pub fn control_plane(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 95, self.slot, 1)
    }
    /// The simulated node's address.
    pub fn node(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 95, self.slot, 2)
    }
    /// `--service-cluster-ip-range`.
    pub fn service_cidr(&self) -> String {
        format!("127.96.{}.0/24", self.slot)
    }
    /// The ClusterIP of the `kubernetes` Service (first of the range).
    pub fn kubernetes_service(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 96, self.slot, 1)
    }
    /// Whether `ip` is one of this sandbox's ClusterIPs.
    pub fn is_service_ip(&self, ip: Ipv4Addr) -> bool {
        let [a, b, c, _] = ip.octets();
        a == 127 && b == 96 && c == self.slot
    }
    /// The `index`-th pod address (index 0..65024).
    pub fn pod_ip(&self, index: u32) -> Option<Ipv4Addr> {
        if index >= POD_IPS {
            return None;
        }
        let high = u8::try_from(index / 254).ok()?;
        let low = u8::try_from(index % 254 + 1).ok()?;
        Some(Ipv4Addr::new(127, 100 + self.slot, high, low))
    }
}

const POD_IPS: u32 = 256 * 254;

/// Hands out pod IPs. Released addresses go to the back of the line so that a
/// new pod does not get the address a just-deleted pod had (stale connections
/// to the old pod then fail instead of reaching the new one).
#[derive(Debug)]
pub struct PodIpPool {
    plan: AddressPlan,
    next: u32,
    in_use: BTreeSet<Ipv4Addr>,
}

impl PodIpPool {
    /// A pool for `plan`.
    pub fn new(plan: AddressPlan) -> PodIpPool {
        PodIpPool {
            plan,
            next: 0,
            in_use: BTreeSet::new(),
        }
    }

    /// The next free address, or `None` when all are in use.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        for _ in 0..POD_IPS {
            let candidate = self.plan.pod_ip(self.next % POD_IPS)?;
            self.next = (self.next + 1) % POD_IPS;
            if self.in_use.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }
}

/// An exclusively held slot; released when dropped.
#[derive(Debug)]
pub struct SlotLock {
    /// The addresses this slot owns.
    pub plan: AddressPlan,
    /// Directory for this slot's bookkeeping (pids of processes it started).
    pub dir: PathBuf,
    _file: File,
}

/// Takes the first free slot.
pub fn acquire_slot() -> Result<SlotLock> {
    let root = std::env::temp_dir().join("emqx-operator-sandbox-slots");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    for slot in 0..SLOTS {
        let path = root.join(format!("{slot}.lock"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_ok() {
            let dir = root.join(format!("{slot}.d"));
            std::fs::create_dir_all(&dir)?;
            return Ok(SlotLock {
                plan: AddressPlan { slot },
                dir,
                _file: file,
            });
        }
    }
    bail!(
        "all {SLOTS} sandbox slots are in use (lock files in {})",
        root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_stays_in_loopback_and_avoids_127_0_0_1() {
        for slot in [0, 1, SLOTS - 1] {
            let plan = AddressPlan { slot };
            let first = plan.pod_ip(0).expect("first");
            let last = plan.pod_ip(POD_IPS - 1).expect("last");
            for ip in [
                plan.control_plane(),
                plan.node(),
                plan.kubernetes_service(),
                first,
                last,
            ] {
                assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST, "{ip}");
                assert_ne!(ip.octets()[3], 0);
                assert_ne!(ip.octets()[3], 255);
            }
            assert!(!plan.is_service_ip(first));
            assert!(plan.is_service_ip(plan.kubernetes_service()));
            assert_eq!(plan.pod_ip(POD_IPS), None);
        }
    }

    #[test]
    fn pool_gives_distinct_addresses_and_does_not_reuse_at_once() {
        let mut pool = PodIpPool::new(AddressPlan { slot: 3 });
        let a = pool.allocate().expect("a");
        let b = pool.allocate().expect("b");
        assert_ne!(a, b);
        pool.release(a);
        let c = pool.allocate().expect("c");
        assert!(c != a && c != b);
    }

    #[test]
    fn pool_exhaustion_is_none_not_a_panic() {
        let mut pool = PodIpPool::new(AddressPlan { slot: 0 });
        for _ in 0..POD_IPS {
            assert!(pool.allocate().is_some());
        }
        assert_eq!(pool.allocate(), None);
    }
}
