//! `emqx-webhook`: admission (defaulting, validation) and CRD conversion for
//! `apps.emqx.io`. Filled in by issue 5.

fn main() {
    eprintln!("emqx-webhook: not built yet (see issue 5)");
    std::process::exit(2);
}
