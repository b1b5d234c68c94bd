//! `emqx-migrate --image emqx/emqx-enterprise:5.10.0 < old.yaml > new.yaml`:
//! turns an `EmqxEnterprise` v1beta4 manifest (EMQX 4.4) into an `EMQX`
//! v2beta1 manifest (EMQX 5). Fields without a counterpart are listed on
//! stderr (and make `--strict` fail).

use clap::Parser;
use emqx_crd::migrate::{MAX_CLI_INPUT, MigrateOptions, run_cli};
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

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = String::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_CLI_INPUT as u64 + 1)
        .read_to_string(&mut input)
    {
        eprintln!("emqx-migrate: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let options = MigrateOptions {
        image: args.image,
        name: args.name,
    };
    let outcome = run_cli("emqx-migrate", &input, &options, args.strict);
    print!("{}", outcome.stdout);
    for line in &outcome.stderr {
        eprintln!("{line}");
    }
    ExitCode::from(outcome.exit)
}
