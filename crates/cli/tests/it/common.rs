//! Helpers shared by the CLI integration tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// Runs a command that must succeed; its output.
pub fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "command failed: {}", text(&o));
    text(&o)
}

/// Runs a command that must fail; its output.
pub fn fails(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        !o.status.success(),
        "command unexpectedly succeeded: {}",
        text(&o)
    );
    text(&o)
}

/// A `verity node` process, killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub url: String,
}

/// Starts `verity node --config` and waits for its "listening on" line.
pub fn spawn_node(config: &Path) -> NodeProcess {
    let mut child = verity()
        .args(["node", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected node output: {line}"))
        .trim()
        .to_string();
    NodeProcess { child, url }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a standalone node's config under `dir` (data in `dir/data`); its path.
pub fn standalone_config(dir: &Path) -> PathBuf {
    let config = dir.join("node.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"data_dir": "{}", "listen": "127.0.0.1:{}"}}"#,
            dir.join("data").display(),
            free_port()
        ),
    )
    .unwrap();
    config
}
