//! `pinnace-shim CONFIG.json`: the supervisor of one detached container
//! (see `pinnace_core::shim`). Shipped inside the Python extension, which
//! writes it out on first use (`_core.shim_path`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(pinnace_core::shim::main(&args));
}
