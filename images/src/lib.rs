//! The chart's two container images, `emqx-operator/emqx-webhook` and
//! `emqx-operator/emqx-reconciler`, as the project's own command builds them
//! (`images/build`: OCI archives in `target/images/`), and podman with the
//! project's settings (`images/podman`) to load and run them: for the image
//! tests, and for anything else (the sandbox) that runs the project's pods as
//! containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail, ensure};

/// One image that `images/build` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The binary in it, also its path in the image (`/emqx-webhook`).
    pub binary: String,
    /// `emqx-operator/<binary>:<appVersion>`, the chart's default reference.
    pub reference: String,
    /// The manifest digest, `sha256:…`: what a registry serves it by.
    pub digest: String,
    /// The OCI archive.
    pub archive: PathBuf,
}

/// The project's `images/` folder (Containerfiles, `build`, `podman`).
pub fn images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `images/build` puts the archives by default: `target/images`, or
/// `$CARGO_TARGET_DIR/images`.
pub fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| images_dir().join("../target"));
    target.join("images")
}

/// Runs `images/build` with its output in `out` and returns the two images.
/// The binaries' cargo build is incremental and unchanged inputs skip the
/// image step, so a second call takes about a second. Its report (sizes and
/// digests) goes to stderr.
pub fn build(out: &Path) -> Result<Vec<Image>> {
    let script = images_dir().join("build");
    let mut build = Command::new(&script);
    // `cargo test` hands its programs the variables it hands build scripts
    // (CARGO_PKG_NAME, OUT_DIR, ...); build scripts such as ring's rerun when
    // those change, so a nested cargo build with them would rebuild half the
    // tree, and the next plain build again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if PER_PACKAGE_VARIABLES.iter().any(|p| name.starts_with(p)) {
            build.env_remove(name.as_ref());
        }
    }
    let output = build
        .env("IMAGES_OUT", out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        output.status,
        tail(&stderr, 40)
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    let table = out.join("images.tsv");
    let text =
        std::fs::read_to_string(&table).with_context(|| format!("reading {}", table.display()))?;
    parse_images_table(&text).with_context(|| format!("in {}", table.display()))
}

/// `images.tsv`: binary, reference, digest, archive, tab-separated.
pub fn parse_images_table(text: &str) -> Result<Vec<Image>> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
            [binary, reference, digest, archive] if digest.starts_with("sha256:") => Ok(Image {
                binary: binary.to_owned(),
                reference: reference.to_owned(),
                digest: digest.to_owned(),
                archive: PathBuf::from(archive),
            }),
            _ => bail!("not binary, reference, sha256 digest and archive: {line:?}"),
        })
        .collect()
}

/// podman as `images/podman` runs it: the project's containers.conf (runc,
/// cgroupfs, no default ulimits) and its own storage under the images'
/// output folder.
#[derive(Debug, Clone)]
pub struct Podman {
    out: PathBuf,
}

impl Podman {
    /// podman on the storage of the images' output folder `out`.
    pub fn new(out: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
        }
    }

    /// A `images/podman` command, to add arguments to.
    pub fn command(&self) -> Command {
        let mut command = Command::new(images_dir().join("podman"));
        command.env("IMAGES_OUT", &self.out).stdin(Stdio::null());
        command
    }

    /// Runs podman with `args` to the end; its output, whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        self.command()
            .args(args)
            .output()
            .with_context(|| format!("running images/podman {}", args.join(" ")))
    }

    /// Runs podman with `args`; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        ensure!(
            output.status.success(),
            "images/podman {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Loads an image's archive into the storage and returns its image ID.
    pub fn load(&self, image: &Image) -> Result<String> {
        let archive = image.archive.to_string_lossy();
        self.run(&["load", "--quiet", "-i", &archive])?;
        self.run(&["image", "inspect", "--format", "{{.Id}}", &image.reference])
    }

    /// Starts a detached container (`podman run -d ARGS`). It is removed
    /// when the returned value is dropped, also when a test fails.
    pub fn start(&self, args: &[&str]) -> Result<Container> {
        let mut run = vec!["run", "--detach"];
        run.extend_from_slice(args);
        let id = self.run(&run)?;
        ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
            "podman run printed no container ID: {id:?}"
        );
        Ok(Container {
            podman: self.clone(),
            id,
        })
    }
}

/// The `podman run` flags that match the chart's pods: user and group 65532,
/// a read-only root filesystem without podman's extra writable /tmp and /run
/// (Kubernetes adds none), no capabilities, no privilege escalation.
pub const AS_THE_CHART_RUNS_IT: [&str; 6] = [
    "--user=65532:65532",
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
    "--pull=never",
];

/// A container this process started; removed (`podman rm -f ID`) on drop.
#[derive(Debug)]
pub struct Container {
    podman: Podman,
    /// The full container ID.
    pub id: String,
}

impl Container {
    /// Everything it wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match self.podman.output(&["logs", &self.id]) {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(no logs: {e:#})"),
        }
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.podman
            .run(&["inspect", "--format", "{{.State.Running}}", &self.id])
            .is_ok_and(|s| s == "true")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Only the container this process started, by its ID.
        let _ = self
            .podman
            .output(&["rm", "--force", "--time", "0", &self.id]);
    }
}

/// Prefixes of the variables cargo sets for one package's programs.
const PER_PACKAGE_VARIABLES: [&str; 8] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_CFG_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_table_is_read_and_bad_lines_are_named() {
        let text =
            "emqx-webhook\temqx-operator/emqx-webhook:0.1.0\tsha256:ab\t/t/emqx-webhook.oci.tar\n";
        let images = parse_images_table(text).expect("parses");
        assert_eq!(
            images,
            [Image {
                binary: "emqx-webhook".into(),
                reference: "emqx-operator/emqx-webhook:0.1.0".into(),
                digest: "sha256:ab".into(),
                archive: PathBuf::from("/t/emqx-webhook.oci.tar"),
            }]
        );
        let err = parse_images_table("emqx-webhook\tref\tmd5:x\t/a\n").expect_err("bad digest");
        assert!(format!("{err}").contains("md5:x"), "{err}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
