//! The check functions the fuzz targets run. They live in the main crate's
//! `tests/support/fuzz_checks.rs` so that `tests/fuzz_corpus.rs` replays the checked-in corpus
//! through exactly the same assertions on a stable toolchain.

#[path = "../../tests/support/fuzz_checks.rs"]
pub mod checks;

pub use checks::reference;
