//! `emqx-reconciler`: the blue-green upgrade engine. Filled in by issue 6.

fn main() {
    eprintln!("emqx-reconciler: not built yet (see issue 6)");
    std::process::exit(2);
}
