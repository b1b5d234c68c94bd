//! The chart's two images as `images/build` makes them, for sandboxes that
//! run the operator's pods as real containers (the chart's path in the
//! tests and the demo).

use std::path::PathBuf;

use anyhow::Result;
use emqx_images::Image;

use crate::SandboxOptions;

/// The chart's images and the output folder (archives, podman storage).
#[derive(Debug, Clone)]
pub struct OperatorImages {
    /// `images/build`'s output folder.
    pub out: PathBuf,
    /// `emqx-operator/emqx-webhook` and `emqx-operator/emqx-reconciler`.
    pub images: Vec<Image>,
}

impl OperatorImages {
    /// Sandbox options that run the chart's images as podman containers.
    pub fn options(&self, options: SandboxOptions) -> SandboxOptions {
        options.project_images(&self.out, self.images.clone())
    }
}

/// Runs `images/build` (an incremental release build; a cache hit when CI
/// built the images before `cargo test`, about a second) and returns the
/// images. Blocking: call it from `spawn_blocking` in async code.
pub fn build_operator_images() -> Result<OperatorImages> {
    let out = emqx_images::default_out();
    eprintln!(
        "building the chart's images with images/build in {}",
        out.display()
    );
    let images = emqx_images::build(&out)?;
    Ok(OperatorImages { out, images })
}
