//! Test support shared by the crates' attack tests (a few lines, so it ships with the library
//! rather than as one more crate).

use std::process::Command;

/// Runs the calling test binary's test `name` again in a child process whose address space is
/// capped at 4 GiB, so an attack that aborts or allocates without bound fails the test instead
/// of taking the test run (or CI) down. Returns `true` in the parent (after asserting that the
/// child passed) and `false` in the child, which sees `VERITY_ATTACK_CHILD` and runs the attack.
pub fn in_capped_child(name: &str) -> bool {
    if std::env::var_os("VERITY_ATTACK_CHILD").is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(["--exact", name, "--test-threads", "1"])
        .env("VERITY_ATTACK_CHILD", "1")
        .status()
        .expect("sh runs");
    assert!(
        status.success(),
        "the attack ended the child process: {status:?}"
    );
    true
}
