//! `emqx-migrate --image emqx/emqx-enterprise:5.10.0 < old.yaml > new.yaml`:
//! turns an `EmqxEnterprise` v1beta4 manifest (EMQX 4.4) into an `EMQX`
//! v2beta1 manifest (EMQX 5). Fields without a counterpart are listed on
//! stderr (and make `--strict` fail).

use clap::Parser;
use emqx_crd::migrate::{MigrateOptions, migrate_v1beta4};
use std::io::Read;
use std::process::ExitCode;

/// Migrate an EmqxEnterprise v1beta4 manifest (stdin) to an EMQX v2beta1 manifest (stdout).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// EMQX 5.1.1+ image of the new cluster (EMQX 4.4 cannot run as EMQX v2beta1).
    #[arg(long)]
    image: Option<String>,
    /// Name of the new EMQX object (default: the old name).
    #[arg(long)]
    name: Option<String>,
    /// Fail (exit 3) if any field cannot be carried over.
    #[arg(long)]
    strict: bool,
}

/// Input larger than this is refused: a manifest is a few KiB.
const MAX_INPUT: u64 = 4 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = String::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut input)
    {
        eprintln!("emqx-migrate: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    if input.len() as u64 > MAX_INPUT {
        eprintln!("emqx-migrate: input larger than {MAX_INPUT} bytes");
        return ExitCode::FAILURE;
    }
    let object: serde_json::Value = match serde_saphyr::from_str(&input) {
        Ok(object) => object,
        Err(e) => {
            eprintln!("emqx-migrate: stdin is not one YAML document: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = MigrateOptions {
        image: args.image,
        name: args.name,
    };
    let migration = match migrate_v1beta4(&object, &options) {
        Ok(migration) => migration,
        Err(e) => {
            eprintln!("emqx-migrate: cannot migrate: {e}");
            return ExitCode::from(2);
        }
    };
    let yaml = match serde_saphyr::to_string(&migration.object) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("emqx-migrate: writing YAML: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{yaml}");
    for field in &migration.unmapped {
        eprintln!("not migrated: {}: {}", field.path, field.reason);
    }
    for note in &migration.notes {
        eprintln!("note: {note}");
    }
    if args.strict && !migration.unmapped.is_empty() {
        eprintln!(
            "emqx-migrate: --strict: {} field(s) not migrated",
            migration.unmapped.len()
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
