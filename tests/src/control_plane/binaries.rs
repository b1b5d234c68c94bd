//! The pinned Go binaries (etcd, kube-apiserver, kube-controller-manager,
//! kubectl, helm): built from module source on first use into a per-version
//! cache outside the work tree, under a file lock so that parallel tests build
//! once, with progress on stderr. A second call finds them in milliseconds.
//!
//! Cache: `$EMQX_OPERATOR_SANDBOX_CACHE`, else `$XDG_CACHE_HOME/emqx-operator-sandbox`,
//! else `~/.cache/emqx-operator-sandbox`; inside it `<recipe-hash>/bin/`, where the
//! hash covers `pins.env`, every `go.mod`/`go.sum`/`*.go` of `k8s-binaries/`, the
//! build flags and `go version`. Changing a pin therefore builds into a new directory.
//!
//! One change to Kubernetes' source, made at build time (nothing upstream is
//! copied into this repository): EndpointSlice validation
//! (`pkg/apis/discovery/validation/validation.go`) refuses loopback
//! addresses, and every sandbox pod has one, so the apiserver is built to
//! accept IPv4 loopback endpoint addresses ([`patch_endpoint_validation`]).
//! Without it the endpointslice controller could not write a single
//! EndpointSlice. The builder links a copy of the pinned `k8s.io/kubernetes`
//! module (hard links, one file rewritten) next to the binaries and builds
//! with a `-modfile` that replaces the module by it (`go build -overlay`
//! refuses files in the module cache); it refuses to build if the pinned
//! source no longer has the lines it patches.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::control_plane::pins::{Pins, check_go_mod};

/// Bump when the build recipe below changes in a way the hashed files do not show.
const RECIPE_VERSION: &str = "3";

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd server.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kubectl.
    pub kubectl: PathBuf,
    /// helm (v3).
    pub helm: PathBuf,
    /// The versions they were built from.
    pub pins: Pins,
}

const BINARY_NAMES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

impl Binaries {
    fn in_dir(dir: &Path, pins: Pins) -> Binaries {
        Binaries {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kubectl: dir.join("kubectl"),
            helm: dir.join("helm"),
            pins,
        }
    }
}

/// The `k8s-binaries/` directory of this crate (Go modules and `pins.env`).
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s-binaries")
}

/// The cache root (see the module documentation).
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EMQX_OPERATOR_SANDBOX_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("emqx-operator-sandbox"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("neither EMQX_OPERATOR_SANDBOX_CACHE, XDG_CACHE_HOME nor HOME is set: nowhere to cache the Go binaries")?;
    Ok(PathBuf::from(home)
        .join(".cache")
        .join("emqx-operator-sandbox"))
}

/// Returns the pinned binaries, building them first if this version is not cached.
///
/// Blocking (runs `go build` for many minutes on a cold machine); call it from
/// `spawn_blocking` in async code. Concurrent callers, in this or other
/// processes, wait for one build.
pub fn ensure_built() -> Result<Binaries> {
    let source = source_dir();
    let pins_text = std::fs::read_to_string(source.join("pins.env"))
        .with_context(|| format!("reading {}", source.join("pins.env").display()))?;
    let pins = Pins::parse(&pins_text)?;
    check_modules(&source, &pins)?;
    let go_version = go_version()?;
    let hash = recipe_hash(&source, &go_version)?;
    let dir = cache_root()?.join(&hash[..16]);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bin = dir.join("bin");
    if complete(&bin) {
        return Ok(Binaries::in_dir(&bin, pins));
    }
    let lock_path = dir.join("build.lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        progress(&format!(
            "another process is building the sandbox binaries; waiting for {}",
            lock_path.display()
        ));
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    if complete(&bin) {
        return Ok(Binaries::in_dir(&bin, pins));
    }
    let started = Instant::now();
    progress(&format!(
        "building etcd {}, Kubernetes {} (kube-apiserver, kube-controller-manager, kubectl) and helm {} from Go module source into {} ({go_version}); a cold build took 6 minutes on 2 cores with nothing else running",
        pins.etcd,
        pins.kubernetes,
        pins.helm,
        bin.display()
    ));
    let staging = dir.join(format!("bin.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for step in build_steps(&pins) {
        build(&source, &staging, &step)?;
    }
    // The linked module copy was only needed to build.
    let _ = std::fs::remove_dir_all(staging.with_extension("patched"));
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&staging, &bin)
        .with_context(|| format!("moving {} to {}", staging.display(), bin.display()))?;
    progress(&format!(
        "built the sandbox binaries in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    drop(lock);
    Ok(Binaries::in_dir(&bin, pins))
}

/// Async wrapper of [`ensure_built`].
pub async fn ensure_built_async() -> Result<Binaries> {
    tokio::task::spawn_blocking(ensure_built)
        .await
        .context("binary build task failed")?
}

fn complete(bin: &Path) -> bool {
    BINARY_NAMES.iter().all(|name| bin.join(name).is_file())
}

fn progress(message: &str) {
    eprintln!("[sandbox] {message}");
}

fn check_modules(source: &Path, pins: &Pins) -> Result<()> {
    let read = |file: &str| {
        std::fs::read_to_string(source.join(file))
            .with_context(|| format!("reading {}", source.join(file).display()))
    };
    check_go_mod(
        "kubernetes/go.mod",
        &read("kubernetes/go.mod")?,
        &[
            ("k8s.io/kubernetes", &pins.kubernetes),
            ("k8s.io/api", &pins.kubernetes_staging),
            ("k8s.io/apiserver", &pins.kubernetes_staging),
            ("k8s.io/client-go", &pins.kubernetes_staging),
            ("k8s.io/kubectl", &pins.kubernetes_staging),
        ],
    )?;
    check_go_mod(
        "etcd/go.mod",
        &read("etcd/go.mod")?,
        &[("go.etcd.io/etcd/server/v3", &pins.etcd)],
    )?;
    check_go_mod(
        "helm/go.mod",
        &read("helm/go.mod")?,
        &[("helm.sh/helm/v3", &pins.helm)],
    )?;
    Ok(())
}

fn go_command() -> Command {
    let mut command = Command::new("go");
    // Never download another toolchain, never edit go.mod/go.sum, never embed VCS
    // data of the work tree (the hash covers the inputs instead), no cgo (static
    // binaries like upstream's release builds, and no C compiler needed).
    command
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("CGO_ENABLED", "0");
    command
}

fn go_version() -> Result<String> {
    let output = go_command().arg("version").output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run `go` ({e}): the sandbox builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm from source and needs the Go toolchain (>= 1.25) in PATH"
        )
    })?;
    if !output.status.success() {
        bail!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn recipe_hash(source: &Path, go_version: &str) -> Result<String> {
    let mut files = Vec::new();
    collect_inputs(source, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(RECIPE_VERSION.as_bytes());
    hasher.update(go_version.as_bytes());
    for file in files {
        let relative = file.strip_prefix(source).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        hasher.update([0]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn collect_inputs(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if path.is_dir() {
            collect_inputs(&path, files)?;
        } else if name == "pins.env"
            || name == "go.mod"
            || name == "go.sum"
            || name.ends_with(".go")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// One `go build` invocation.
struct BuildStep {
    module: &'static str,
    targets: Vec<&'static str>,
    /// `-o` argument: a file name, or "" for "the directory" (several targets).
    output: &'static str,
    ldflags: String,
    /// Whether to build with the patched EndpointSlice validation.
    endpoint_patch: bool,
}

// The patch below is not among the files the recipe hash covers: a change
// to it must bump RECIPE_VERSION, or the binaries cached with the old patch
// stay in use.

/// The file of `k8s.io/kubernetes` the sandbox patches.
const ENDPOINT_VALIDATION_FILE: &str = "pkg/apis/discovery/validation/validation.go";
/// The call it replaces, once for IPv4 and once for IPv6 addresses.
const ENDPOINT_IP_CHECK: &str = "apivalidation.ValidateEndpointIP(address, addressPath.Index(i))";
/// What it calls instead.
const SANDBOX_ENDPOINT_IP_CHECK: &str = "sandboxEndpointIP(address, addressPath.Index(i))";
/// The function the patch adds (the file already imports `netutils`,
/// `field` and `apivalidation`).
const SANDBOX_ENDPOINT_IP_FUNCTION: &str = r#"
// sandboxEndpointIP is ValidateEndpointIP without its loopback rule for IPv4:
// the emqx-operator sandbox gives every pod its own 127.0.0.0/8 address.
// Added at build time by the sandbox's binary builder; not upstream code.
func sandboxEndpointIP(address string, fldPath *field.Path) field.ErrorList {
	if ip := netutils.ParseIPSloppy(address); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		return nil
	}
	return apivalidation.ValidateEndpointIP(address, fldPath)
}
"#;

/// The pinned EndpointSlice validation, changed to accept IPv4 loopback
/// endpoint addresses; an error if the source is not the one this was made for.
pub fn patch_endpoint_validation(source: &str) -> Result<String> {
    let found = source.matches(ENDPOINT_IP_CHECK).count();
    if found != 2 || !source.contains("netutils \"k8s.io/utils/net\"") {
        bail!(
            "{ENDPOINT_VALIDATION_FILE} is not the one the sandbox's patch was written for ({found} calls of {ENDPOINT_IP_CHECK}, expected 2); update patch_endpoint_validation for the new pin"
        );
    }
    Ok(format!(
        "{}{SANDBOX_ENDPOINT_IP_FUNCTION}",
        source.replace(ENDPOINT_IP_CHECK, SANDBOX_ENDPOINT_IP_CHECK)
    ))
}

/// Links a copy of the pinned `k8s.io/kubernetes` module with the patched
/// validation next to `out_dir`, and writes a go.mod (with its go.sum)
/// that replaces the module by it; returns the `-modfile` path.
fn patched_kubernetes_modfile(module_dir: &Path, out_dir: &Path) -> Result<PathBuf> {
    let listed = go_command()
        .current_dir(module_dir)
        .args(["list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"])
        .output()
        .context("go list -m k8s.io/kubernetes")?;
    if !listed.status.success() {
        bail!(
            "`go list -m k8s.io/kubernetes` failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    let pinned = PathBuf::from(String::from_utf8_lossy(&listed.stdout).trim());
    let work = out_dir.with_extension("patched");
    let _ = std::fs::remove_dir_all(&work);
    let copy = work.join("kubernetes");
    link_tree(&pinned, &copy)?;
    let file = copy.join(ENDPOINT_VALIDATION_FILE);
    let source =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let patched = patch_endpoint_validation(&source)?;
    // A hard link shares the module cache's inode: replace, never write through.
    std::fs::remove_file(&file)?;
    std::fs::write(&file, patched)?;
    let go_mod = std::fs::read_to_string(module_dir.join("go.mod"))?;
    let modfile = work.join("go.mod");
    std::fs::write(
        &modfile,
        format!(
            "{go_mod}\nreplace k8s.io/kubernetes => {}\n",
            copy.display()
        ),
    )?;
    std::fs::copy(module_dir.join("go.sum"), work.join("go.sum"))?;
    Ok(modfile)
}

/// Recreates the tree `from` at `to`: directories made, files hard-linked
/// (copied where linking fails, e.g. across filesystems).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            link_tree(&source, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}

fn build_steps(pins: &Pins) -> Vec<BuildStep> {
    let (major, minor) = pins.kubernetes_major_minor();
    let k8s_version: String = ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
        .iter()
        .map(|pkg| {
            format!(
                " -X {pkg}.gitVersion={} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean",
                pins.kubernetes
            )
        })
        .collect();
    vec![
        BuildStep {
            module: "etcd",
            targets: vec!["."],
            output: "etcd",
            ldflags: "-s -w".into(),
            endpoint_patch: false,
        },
        BuildStep {
            module: "kubernetes",
            targets: vec![
                "./cmd/kube-apiserver",
                "./cmd/kube-controller-manager",
                "./cmd/kubectl",
            ],
            output: "",
            ldflags: format!("-s -w{k8s_version}"),
            endpoint_patch: true,
        },
        BuildStep {
            module: "helm",
            targets: vec!["helm.sh/helm/v3/cmd/helm"],
            output: "helm",
            // Helm's default Kubernetes version (for `helm template` and
            // `helm lint` without a cluster) is set at link time, as helm's
            // own Makefile does; unset it is v1.20 and charts requiring a
            // newer Kubernetes fail to render.
            ldflags: format!(
                "-s -w -X helm.sh/helm/v3/internal/version.version={}{}",
                pins.helm,
                ["pkg/chartutil", "pkg/lint/rules"]
                    .iter()
                    .map(|pkg| format!(
                        " -X helm.sh/helm/v3/{pkg}.k8sVersionMajor={major} -X helm.sh/helm/v3/{pkg}.k8sVersionMinor={minor}"
                    ))
                    .collect::<String>()
            ),
            endpoint_patch: false,
        },
    ]
}

fn build(source: &Path, out_dir: &Path, step: &BuildStep) -> Result<()> {
    let module_dir = source.join(step.module);
    progress(&format!(
        "{}: resolving packages (downloads modules from the Go proxy on a cold cache)",
        step.module
    ));
    // The package count makes the progress line meaningful on a cold build.
    let listed = go_command()
        .current_dir(&module_dir)
        .args(["list", "-deps"])
        .args(&step.targets)
        .output()
        .with_context(|| format!("go list in {}", module_dir.display()))?;
    if !listed.status.success() {
        bail!(
            "`go list -deps` in {} failed (module download from the Go proxy?): {}",
            module_dir.display(),
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    let total = listed.stdout.iter().filter(|b| **b == b'\n').count();
    let output = if step.output.is_empty() {
        format!("{}/", out_dir.display())
    } else {
        out_dir.join(step.output).display().to_string()
    };
    progress(&format!(
        "go build in {} ({} packages to link; cached ones are skipped)",
        step.module, total
    ));
    let modfile = if step.endpoint_patch {
        let modfile = patched_kubernetes_modfile(&module_dir, out_dir)?;
        vec![format!("-modfile={}", modfile.display())]
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let mut child = go_command()
        .current_dir(&module_dir)
        .args([
            "build",
            "-v",
            "-trimpath",
            "-ldflags",
            &step.ldflags,
            "-o",
            &output,
        ])
        .args(&modfile)
        .args(&step.targets)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting go build in {}", module_dir.display()))?;
    let mut compiled = 0usize;
    let mut last_report = Instant::now();
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            compiled += 1;
            if tail.len() == 40 {
                tail.remove(0);
            }
            tail.push(line);
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                progress(&format!(
                    "{}: compiled {compiled} of at most {total} packages, {:.0}s",
                    step.module,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "go build in {} failed ({status}); last output:\n{}",
            module_dir.display(),
            tail.join("\n")
        );
    }
    progress(&format!(
        "{}: done in {:.0}s",
        step.module,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the pinned file's address checks, not its text.
    const SHAPE: &str = "import (\n\tnetutils \"k8s.io/utils/net\"\n)\n\
        case v4:\n\tallErrs = append(allErrs, apivalidation.ValidateEndpointIP(address, addressPath.Index(i))...)\n\
        case v6:\n\tallErrs = append(allErrs, apivalidation.ValidateEndpointIP(address, addressPath.Index(i))...)\n";

    #[test]
    fn the_patch_swaps_both_address_checks_and_adds_its_function() {
        let patched = patch_endpoint_validation(SHAPE).expect("patched");
        assert!(!patched.contains(ENDPOINT_IP_CHECK));
        assert_eq!(patched.matches(SANDBOX_ENDPOINT_IP_CHECK).count(), 2);
        assert!(patched.contains("func sandboxEndpointIP("));
        // Non-loopback addresses still get upstream's check.
        assert!(patched.contains("return apivalidation.ValidateEndpointIP(address, fldPath)"));
    }

    #[test]
    fn a_changed_upstream_file_is_refused() {
        let once = SHAPE.replacen(ENDPOINT_IP_CHECK, "somethingElse(address)", 1);
        let err = patch_endpoint_validation(&once).expect_err("refused");
        assert!(
            err.to_string().contains("update patch_endpoint_validation"),
            "{err}"
        );
        assert!(patch_endpoint_validation("").is_err());
    }
}
