//! `pinnace-shim CONFIG.json`: the supervisor of one detached container
//! (see `pinnace_core::shim`). Shipped inside the Python extension, which
//! writes it out on first use (`_core.shim_path`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The same static binary is a container's init under --init (bind-mounted
    // into it as /run/pinnace-init): one file to ship, runnable in any image.
    let init = args.first().is_some_and(|a| a.rsplit('/').next() == Some("pinnace-init"));
    std::process::exit(if init { pinnace_core::init::main(&args) } else { pinnace_core::shim::main(&args) });
}
