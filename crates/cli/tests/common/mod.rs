//! Helpers shared by the CLI integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `verity` binary under test.
pub fn verity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verity"))
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// A command's stdout and stderr, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
