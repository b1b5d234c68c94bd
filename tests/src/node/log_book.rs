//! Which pods the node runs and where their containers' logs are, for the
//! kubelet's log endpoint: the pod workers write it, the server reads it.
//!
//! Each container instance writes its own file (`<container>.log`); when a
//! container restarts, the last instance's file becomes
//! `<container>.previous.log` (the kubelet keeps one dead instance, which
//! `kubectl logs --previous` shows).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::node::pod_process::{log_path, previous_log_path};

/// The logs of the pods on the node, by `(namespace, name)`.
#[derive(Debug, Clone, Default)]
pub struct LogBook {
    pods: Arc<Mutex<HashMap<(String, String), PodLogs>>>,
}

/// One pod's logs.
#[derive(Debug, Clone)]
pub struct PodLogs {
    /// The pod's uid (a pod re-created under its name is another entry).
    pub uid: String,
    /// The pod's directory, where the log files are.
    pub dir: PathBuf,
    /// Its containers by name.
    pub containers: BTreeMap<String, ContainerLog>,
}

/// What the server needs to know of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerLog {
    /// How many instances have started (0: never started).
    pub starts: u64,
    /// Whether the current instance runs.
    pub running: bool,
}

impl PodLogs {
    /// The current instance's log file.
    pub fn current(&self, container: &str) -> PathBuf {
        log_path(&self.dir, container)
    }

    /// The previous instance's log file.
    pub fn previous(&self, container: &str) -> PathBuf {
        previous_log_path(&self.dir, container)
    }
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), PodLogs>> {
        // Entries are whole values: a panic mid-update leaves no torn state.
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pod the node now runs, with its containers (none started yet).
    pub fn add_pod<'a>(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        dir: &Path,
        containers: impl IntoIterator<Item = &'a str>,
    ) {
        let containers = containers
            .into_iter()
            .map(|c| (c.to_string(), ContainerLog::default()))
            .collect();
        self.lock().insert(
            (namespace.to_string(), name.to_string()),
            PodLogs {
                uid: uid.to_string(),
                dir: dir.to_path_buf(),
                containers,
            },
        );
    }

    /// A container instance is about to start: the last instance's log
    /// becomes the previous one, and the new instance writes a fresh file.
    pub fn starting(&self, namespace: &str, name: &str, uid: &str, container: &str) {
        let mut pods = self.lock();
        let Some(pod) = pods
            .get_mut(&(namespace.to_string(), name.to_string()))
            .filter(|p| p.uid == uid)
        else {
            return;
        };
        let current = pod.current(container);
        if current.exists()
            && let Err(e) = std::fs::rename(&current, pod.previous(container))
        {
            tracing::warn!("keeping the previous log of {namespace}/{name}/{container}: {e}");
        }
        // Every instance has a log, if an empty one (an inert container's).
        if let Err(e) = std::fs::File::create(&current) {
            tracing::warn!("creating the log of {namespace}/{name}/{container}: {e}");
        }
        if let Some(c) = pod.containers.get_mut(container) {
            c.starts += 1;
            c.running = true;
        }
    }

    /// The container's current instance stopped (exited or was stopped).
    pub fn stopped(&self, namespace: &str, name: &str, uid: &str, container: &str) {
        if let Some(c) = self
            .lock()
            .get_mut(&(namespace.to_string(), name.to_string()))
            .filter(|p| p.uid == uid)
            .and_then(|p| p.containers.get_mut(container))
        {
            c.running = false;
        }
    }

    /// The pod is gone from the node.
    pub fn remove_pod(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.lock();
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|p| p.uid == uid) {
            pods.remove(&key);
        }
    }

    /// The pod's logs as they are now.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodLogs> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_one_previous_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = LogBook::default();
        book.add_pod("ns", "p", "u1", dir.path(), ["c"]);
        book.starting("ns", "p", "u1", "c");
        let pod = book.pod("ns", "p").expect("pod");
        std::fs::write(pod.current("c"), "first\n").expect("write");
        book.stopped("ns", "p", "u1", "c");
        assert_eq!(
            book.pod("ns", "p").expect("pod").containers["c"],
            ContainerLog {
                starts: 1,
                running: false
            }
        );
        book.starting("ns", "p", "u1", "c");
        assert_eq!(
            std::fs::read_to_string(pod.previous("c")).expect("previous"),
            "first\n"
        );
        assert_eq!(
            std::fs::read_to_string(pod.current("c")).expect("current"),
            "",
            "the new instance starts empty"
        );
        assert_eq!(book.pod("ns", "p").expect("pod").containers["c"].starts, 2);
    }

    #[test]
    fn another_pods_uid_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = LogBook::default();
        book.add_pod("ns", "p", "new", dir.path(), ["c"]);
        // The old pod of the same name finishes its teardown late.
        book.stopped("ns", "p", "old", "c");
        book.remove_pod("ns", "p", "old");
        assert!(book.pod("ns", "p").is_some());
        book.remove_pod("ns", "p", "new");
        assert!(book.pod("ns", "p").is_none());
    }
}
