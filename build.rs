//! With the `python` feature, build the `pinnace-shim` binary (a nested
//! cargo: the outer one holds its own target dir's lock, so the nested one
//! gets a directory of its own under OUT_DIR) and leave it in OUT_DIR for the
//! extension to embed. Static (crt-static, no PIE): it must run in any root
//! filesystem, and a static non-PIE binary has no relocations to dirty the
//! pages every resident shim would otherwise copy.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    for p in ["rust", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target = std::env::var("TARGET").unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let target_dir = out.join("shim-target");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--profile", "shim", "--bin", "pinnace-shim", "--no-default-features", "--features", "shim", "--target", &target])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are not the shim's: flags, target dir and
    // features come from here. (`--target` keeps the flags off build scripts
    // and proc macros, which cannot be static.) The jobserver is shared.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_RUSTFLAGS", "CARGO_PRIMARY_PACKAGE"] {
        cmd.env_remove(var);
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_CFG_") || k.starts_with("PYO3_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", ["-Ctarget-feature=+crt-static", "-Crelocation-model=static"].join("\x1f"));
    let status = cmd.status().expect("run cargo for pinnace-shim");
    assert!(status.success(), "building pinnace-shim failed: {status}");
    let bin = target_dir.join(&target).join("shim").join("pinnace-shim");
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {}: {e}", bin.display()));
    // FNV-1a names the binary by its content: a new build never overwrites
    // a binary a running shim was started from.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    std::fs::copy(&bin, out.join("pinnace-shim")).unwrap();
    std::fs::write(out.join("pinnace-shim.hash"), format!("{hash:016x}")).unwrap();
}
