//! The recovery section includes the tests' llama-server harness (tests/llama/), which
//! writes its logs under `CARGO_TARGET_TMPDIR`; cargo sets that only for integration tests
//! and benches, so the binary gets this package's target/tmp.
fn main() {
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("target/tmp");
    println!("cargo:rustc-env=CARGO_TARGET_TMPDIR={}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");
}
