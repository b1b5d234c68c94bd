//! `kubectl emqx`: a kubectl plugin to watch and steer blue-green upgrades
//! of EMQX clusters run by this operator. kubectl finds it on `PATH` as
//! `kubectl-emqx`; it reads the same kubeconfig as kubectl.
//!
//! - [`snapshot`]: what one status screen shows, read from the API;
//! - [`render`]: the screen as text (pure);
//! - [`steer`]: the annotation patches of `pause`, `resume`, `promote`,
//!   `abort`, `retry` (pure).

pub mod render;
pub mod snapshot;
pub mod steer;
