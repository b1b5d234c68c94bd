//! Writes the CRDs to `charts/emqx-operator/files/crds/` (or prints them with
//! `--stdout`). `cargo run -p emqx-crd --bin crdgen`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files = match emqx_crd::crd::crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().any(|a| a == "--stdout") {
        for (_, yaml) in files {
            print!("---\n{yaml}");
        }
        return ExitCode::SUCCESS;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/emqx-operator/files/crds");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, yaml) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, yaml.as_bytes()) {
            eprintln!("crdgen: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} ({} bytes)", path.display(), yaml.len());
    }
    ExitCode::SUCCESS
}
