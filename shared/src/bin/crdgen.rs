//! Writes the CRDs to `charts/emqx-operator/files/crds/` (or prints them with
//! `--stdout`), and the defaulting trees taken from them to
//! `shared/src/defaults_tree.json`. `cargo run -p emqx-crd --bin crdgen`.

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
    let trees = match emqx_crd::defaults::generate_file() {
        Ok(trees) => trees,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trees_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(emqx_crd::defaults::GENERATED_FILE);
    let outputs = files
        .into_iter()
        .map(|(name, yaml)| (dir.join(name), yaml))
        .chain([(trees_path, trees)]);
    for (path, yaml) in outputs {
        if let Err(e) = std::fs::write(&path, yaml.as_bytes()) {
            eprintln!("crdgen: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} ({} bytes)", path.display(), yaml.len());
    }
    ExitCode::SUCCESS
}
