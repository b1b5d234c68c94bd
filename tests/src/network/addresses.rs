//! Which loopback addresses a sandbox uses. Each running sandbox holds a
//! *slot* (an exclusive file lock), and the slot fixes all its addresses, so
//! sandboxes in parallel tests or processes never collide and need no port
//! probing:
//!
//! | what | address |
//! |---|---|
//! | etcd, kube-apiserver | `127.95.<slot>.1` (ports 2379/2380, 6443) |
//! | the simulated node (pods' `hostIP`) | `127.95.<slot>.2` |
//! | Service ClusterIPs | `127.<164 + slot>.0.0/16` (`kubernetes` is `.0.1`) |
//! | pod IPs | `127.<100 + slot>.0.1` – `127.<100 + slot>.255.254` |
//!
//! Everything is inside 127.0.0.0/8, and none of it is 127.0.0.1: the
//! second octet is 95 for control planes, 100–163 for pods and 164–227 for
//! Services, so no two slots and no two kinds of address overlap.
//!
//! ## How many objects fit, and what limits remain
//!
//! - **ClusterIPs**: 65,534 per slot (a /16). kube-apiserver refuses a
//!   larger IPv4 range than a /12 (`maxCIDRBits = 20` in
//!   `cmd/kube-apiserver/app/options/validation.go`, v1.35.4), so a /16 is
//!   well inside. An EMQX object takes two ClusterIPs (its listeners and
//!   dashboard Services; the headless Service has none), so 1,000 objects
//!   take 2,000.
//! - **Pod IPs**: 65,024 per slot ([`PodIpPool`]); addresses are reused only
//!   after the whole range has been handed out once.
//! - **Slots**: [`SLOTS`] = 64 sandboxes at once on one machine.
//! - **File descriptors**: not an address limit but the one met first. The
//!   sandbox process holds a listening socket per Service port (the service
//!   proxy) and per simulated EMQX listener of each pod, plus one per
//!   proxied or API connection; 1,000 one-core EMQX objects need several
//!   thousand. `ulimit -n` must allow it (raise the soft limit to the hard
//!   one before a large run).
//! - **etcd and kube-apiserver** run with their defaults: thousands of
//!   objects are fine, the memory they take grows with them.

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

/// Pod IPs of slot `s` are `127.<POD_OCTET_BASE + s>.0.0/16`.
const POD_OCTET_BASE: u8 = 100;

/// Service ClusterIPs of slot `s` are `127.<SERVICE_OCTET_BASE + s>.0.0/16`,
/// right after the last slot's pods.
const SERVICE_OCTET_BASE: u8 = POD_OCTET_BASE + SLOTS;

// The last slot's Services must still be in 127.0.0.0/8.
const _: () = assert!(SERVICE_OCTET_BASE as u16 + SLOTS as u16 - 1 <= 255);

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
    /// The second octet of this slot's Service range.
    fn service_octet(&self) -> u8 {
        SERVICE_OCTET_BASE + self.slot
    }
    /// `--service-cluster-ip-range`: a /16, 65,534 ClusterIPs.
    pub fn service_cidr(&self) -> String {
        format!("127.{}.0.0/16", self.service_octet())
    }
    /// The ClusterIP of the `kubernetes` Service: kube-apiserver gives it
    /// the first address of the range, and it is in the apiserver's serving
    /// certificate.
    pub fn kubernetes_service(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.service_octet(), 0, 1)
    }
    /// Whether `ip` is one of this sandbox's ClusterIPs.
    pub fn is_service_ip(&self, ip: Ipv4Addr) -> bool {
        let [a, b, _, _] = ip.octets();
        a == 127 && b == self.service_octet()
    }
    /// The `index`-th pod address (index 0..65024).
    pub fn pod_ip(&self, index: u32) -> Option<Ipv4Addr> {
        if index >= POD_IPS {
            return None;
        }
        let high = u8::try_from(index / 254).ok()?;
        let low = u8::try_from(index % 254 + 1).ok()?;
        Some(Ipv4Addr::new(127, POD_OCTET_BASE + self.slot, high, low))
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

/// Where slot `slot` records the processes it starts (one file per pid,
/// holding its command line).
pub fn slot_record_dir(slot: u8) -> PathBuf {
    slots_root().join(format!("{slot}.d"))
}

fn slots_root() -> PathBuf {
    std::env::temp_dir().join("emqx-operator-sandbox-slots")
}

/// Takes the first free slot.
pub fn acquire_slot() -> Result<SlotLock> {
    let root = slots_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    for slot in 0..SLOTS {
        let path = root.join(format!("{slot}.lock"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_ok() {
            let dir = slot_record_dir(slot);
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

    /// `a.b.c.d/len` → (first, last) address as integers.
    fn cidr_bounds(cidr: &str) -> (u32, u32) {
        let (ip, len) = cidr.split_once('/').expect("a prefix length");
        let ip: Ipv4Addr = ip.parse().expect("an address");
        let len: u32 = len.parse().expect("a length");
        let size = 1u32 << (32 - len);
        let first = u32::from(ip);
        assert_eq!(first % size, 0, "{cidr} starts on its boundary");
        (first, first + (size - 1))
    }

    /// Every address range a slot uses, as inclusive integer bounds.
    fn ranges(plan: AddressPlan) -> Vec<(&'static str, u32, u32)> {
        let pods = (
            u32::from(plan.pod_ip(0).expect("first")),
            u32::from(plan.pod_ip(POD_IPS - 1).expect("last")),
        );
        let (services_first, services_last) = cidr_bounds(&plan.service_cidr());
        vec![
            (
                "control plane",
                u32::from(plan.control_plane()),
                u32::from(plan.control_plane()),
            ),
            ("node", u32::from(plan.node()), u32::from(plan.node())),
            ("pods", pods.0, pods.1),
            ("services", services_first, services_last),
        ]
    }

    #[test]
    fn no_two_ranges_of_any_slots_overlap_and_all_are_loopback() {
        let all: Vec<(u8, &str, u32, u32)> = (0..SLOTS)
            .flat_map(|slot| {
                ranges(AddressPlan { slot })
                    .into_iter()
                    .map(move |(what, first, last)| (slot, what, first, last))
            })
            .collect();
        let localhost = u32::from(Ipv4Addr::LOCALHOST);
        for (slot, what, first, last) in &all {
            for ip in [*first, *last] {
                assert!(Ipv4Addr::from(ip).is_loopback(), "slot {slot} {what}");
            }
            assert!(!(*first..=*last).contains(&localhost), "slot {slot} {what}");
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(
                    a.3 < b.2 || b.3 < a.2,
                    "slot {} {} overlaps slot {} {}",
                    a.0,
                    a.1,
                    b.0,
                    b.1
                );
            }
        }
    }

    #[test]
    fn service_range_holds_a_thousand_emqx_objects_within_the_apiserver_limit() {
        for slot in [0, SLOTS - 1] {
            let plan = AddressPlan { slot };
            let cidr = plan.service_cidr();
            let (first, last) = cidr_bounds(&cidr);
            // Network and broadcast addresses are not handed out.
            let usable = last - first - 1;
            // Two ClusterIPs per EMQX object (listeners, dashboard).
            assert!(usable >= 2 * 1000 + 10, "{cidr}: {usable}");
            // kube-apiserver: `maxCIDRBits = 20` for the service range.
            assert!(last - first < 1 << 20, "{cidr} larger than a /12");
            // The `kubernetes` Service takes the first address.
            assert_eq!(u32::from(plan.kubernetes_service()), first + 1);
            assert!(plan.is_service_ip(Ipv4Addr::from(first + 1)));
            assert!(plan.is_service_ip(Ipv4Addr::from(last - 1)));
            assert!(!plan.is_service_ip(Ipv4Addr::from(last + 1)));
            assert!(!plan.is_service_ip(Ipv4Addr::from(first - 1)));
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
