//! What `webhook-bench` and `webhook-attack` share: the emqx-webhook they
//! start as their own child, and its memory as `/proc` reports it.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// An emqx-webhook child process and its scratch directory: on drop it gets
/// SIGTERM, `grace` to exit, then SIGKILL, and the directory is removed.
pub struct ChildServer {
    pub child: Child,
    pub dir: PathBuf,
    pub grace: Duration,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Our own child, by pid.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `/proc/PID/status` figure in KiB (`field` with its colon, e.g.
/// `"VmRSS:"` or `"VmHWM:"`); `None` when the process or field is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
