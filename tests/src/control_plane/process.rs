//! Child processes of the sandbox: started with output to a log file, ended
//! with SIGTERM then SIGKILL, by pid only. Each start is recorded in the slot's
//! directory, so that a sandbox whose test process was killed outright (no
//! Drop ran) has its leftovers ended when the slot is next taken; a recorded
//! pid is only signalled while its command line is still the recorded one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running child process of the sandbox.
#[derive(Debug)]
pub struct Supervised {
    /// Short name for messages ("etcd", "kube-apiserver" ...).
    pub name: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Child,
    record: Option<PathBuf>,
}

impl Supervised {
    /// Starts `command` with its output appended to `log`; the start is recorded
    /// in `record_dir`.
    pub fn start(
        name: &str,
        mut command: Command,
        log: &Path,
        record_dir: &Path,
    ) -> Result<Supervised> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let record = record_dir.join(format!("{}.pid", child.id()));
        let cmdline = command_line(child.id());
        let record = std::fs::write(&record, cmdline).ok().map(|()| record);
        Ok(Supervised {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            record,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state: {e}")),
        }
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.exited().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.exited().is_none() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if let Some(record) = self.record.take() {
            let _ = std::fs::remove_file(record);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// The last `lines` lines of a file ("" if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The command line of a child just spawned. `spawn` returns once the
/// child has started its `execve`, but the kernel sets the new program's
/// argument area only after loading it, and until then the command line
/// reads empty: for kube-apiserver (a large binary) that was what every
/// record held, so a killed test's apiserver was never ended and the next
/// sandbox in its slot could not bind its address. Read again until it is
/// there (bounded; empty if the child is gone or never shows it).
fn command_line(pid: u32) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.is_empty() || Instant::now() > deadline {
            return cmdline;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `pid` still runs: not gone, and not a zombie (whose sockets
/// are closed and which only waits for its parent).
pub fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Ends processes recorded in `record_dir` by an earlier sandbox that did not
/// clean up (its test process was killed), then forgets them. Returns once
/// they have stopped running (at most 10 s), so that the addresses they
/// held are free for the slot's next control plane.
pub fn end_leftovers(record_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(record_dir) else {
        return;
    };
    let mut ended = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let pid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(pid) = pid {
            let recorded = std::fs::read(&path).unwrap_or_default();
            let current = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !recorded.is_empty() && recorded == current {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                ended.extend(u32::try_from(pid));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ended.iter().any(|pid| running(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of live (non-zombie) processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if running(pid) && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// CPU time (user + system) `pid` has used so far, in clock ticks (from
/// /proc), if it is alive. Divide by [`clock_ticks_per_second`].
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_ticks(&stat)
}

/// `utime` + `stime` of a `/proc/<pid>/stat` line (fields 14 and 15; the
/// command name before them is in parentheses and may hold spaces).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name: state is field 3, so utime (14) is the 12th here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second for /proc times (`getconf CLK_TCK`;
/// 100 on every Linux build this runs on if `getconf` is missing).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Resident set size of `pid` in KiB (from /proc), if it is alive.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (emqx rec) S 1 4242 4242 0 -1 4194560 900 0 0 0 170 35 0 0 20 0 6 0 12345 1000 2000";
        assert_eq!(stat_cpu_ticks(stat), Some(205));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
        let own = cpu_ticks(std::process::id());
        assert!(own.is_some(), "this process's own stat reads");
    }
}
