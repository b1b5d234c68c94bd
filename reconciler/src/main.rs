//! `emqx-reconciler`: the blue-green upgrade engine. The controller shell
//! is issue 6; the decision logic is in the library.

fn main() {
    eprintln!("emqx-reconciler: controller shell not built yet (see issue 6)");
    std::process::exit(2);
}
