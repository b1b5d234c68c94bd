//! `emqx-migrate --image emqx/emqx-enterprise:5.10.0 < old.yaml > new.yaml`:
//! turns an `EmqxEnterprise` v1beta4 manifest (EMQX 4.4) into an `EMQX`
//! v2beta1 manifest (EMQX 5). Fields without a counterpart are listed on
//! stderr (and make `--strict` fail).

use clap::Parser;
use emqx_crd::migrate::CliArgs;
use std::process::ExitCode;

/// Migrate an EmqxEnterprise v1beta4 manifest (stdin) to an EMQX v2beta1 manifest (stdout).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    migrate: CliArgs,
}

fn main() -> ExitCode {
    ExitCode::from(Args::parse().migrate.run_stdio("emqx-migrate"))
}
