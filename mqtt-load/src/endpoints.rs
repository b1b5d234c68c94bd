//! Where clients connect: one Service address, or a set the test can switch
//! (standing in for a Service whose selector moves to new pods).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rand::seq::IndexedRandom;

/// Addresses new connections go to; each (re)connect picks one at random.
#[derive(Debug, Clone)]
pub struct Endpoints {
    addrs: Arc<RwLock<Vec<SocketAddr>>>,
}

impl Endpoints {
    /// Endpoints starting with `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> Endpoints {
        Endpoints {
            addrs: Arc::new(RwLock::new(addrs)),
        }
    }

    /// Replaces the addresses; established connections are not touched.
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.write().unwrap_or_else(|e| e.into_inner()) = addrs;
    }

    /// One address for the next connection, if any.
    pub fn pick(&self) -> Option<SocketAddr> {
        let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        addrs.choose(&mut rand::rng()).copied()
    }
}
