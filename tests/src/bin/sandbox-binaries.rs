//! Builds (or finds in the cache) the sandbox's pinned Go binaries and prints
//! their paths. CI calls it first so the long cold build shows its progress.

fn main() -> std::process::ExitCode {
    match sandbox::control_plane::binaries::ensure_built() {
        Ok(binaries) => {
            for path in [
                &binaries.etcd,
                &binaries.kube_apiserver,
                &binaries.kube_controller_manager,
                &binaries.kubectl,
                &binaries.helm,
            ] {
                println!("{}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("[sandbox] cannot provide the sandbox binaries: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
