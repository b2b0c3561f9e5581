//! `verity prove`, `verity verify-proof`, and the proof check of zk-mode receipts. Everything
//! here runs offline: the verifier needs the model file (its commitment is derived from it),
//! the inputs, the outputs and the proof.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use verity_core::{ModelId, Receipt, TensorMap};
use verity_zk::ZkModel;

use crate::{read_file, read_inputs};

/// What `verity prove` writes: a self-contained claim and its proof.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    pub model: ModelId,
    /// The model's preprocessed commitment (hex), for reference; the verifier re-derives it.
    pub commitment: String,
    pub inputs: TensorMap,
    pub outputs: TensorMap,
    /// The STARK proof, base64.
    pub proof: String,
}

/// A zk-mode receipt as `verity infer --mode zk` saves it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkReceipt {
    pub receipt: Receipt,
    pub zk_proof: String,
}

fn setup(model: &[u8]) -> Result<(ZkModel, f64)> {
    let start = Instant::now();
    let zk = ZkModel::setup(model).context(
        "cannot compile the model's circuit (zk proofs cover canonical int8 models: quantize \
         an ONNX model with `verity model quantize`)",
    )?;
    Ok((zk, start.elapsed().as_secs_f64()))
}

pub fn prove(model: &Path, input: &Path, out: &Path) -> Result<()> {
    let bytes = read_file(model)?;
    let inputs = read_inputs(input)?;
    let (zk, setup_s) = setup(&bytes)?;
    let start = Instant::now();
    let (outputs, _, proof) = zk.prove(&inputs)?;
    let prove_s = start.elapsed().as_secs_f64();
    let file = ProofFile {
        model: zk.model_id(),
        commitment: hex::encode(zk.commitment()),
        inputs,
        outputs,
        proof: base64::engine::general_purpose::STANDARD.encode(&proof),
    };
    std::fs::write(out, serde_json::to_vec(&file)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    crate::print_outputs(&file.outputs);
    println!("model    {}", file.model);
    println!(
        "proof    {} bytes, proven in {prove_s:.2} s (circuit setup {setup_s:.2} s); written to {}",
        proof.len(),
        out.display()
    );
    Ok(())
}

pub fn verify_proof_file(file: &Path, model: &Path) -> Result<()> {
    let f: ProofFile = serde_json::from_slice(&read_file(file)?).with_context(|| {
        format!(
            "{} is not a proof file (`verity prove` output)",
            file.display()
        )
    })?;
    let bytes = read_file(model)?;
    check(&bytes, &f.model, &f.inputs, &f.outputs, &f.proof)?;
    println!("proof verified");
    Ok(())
}

/// Checks that `proof` proves the model with id `model` (whose file is `bytes`) maps `inputs`
/// to `outputs`.
pub fn check(
    bytes: &[u8],
    model: &ModelId,
    inputs: &TensorMap,
    outputs: &TensorMap,
    proof: &str,
) -> Result<()> {
    let got = ModelId::of_bytes(bytes);
    if got != *model {
        bail!("the model file hashes to {got}, the proof is about {model}");
    }
    let proof = base64::engine::general_purpose::STANDARD
        .decode(proof.trim())
        .context("the proof is not valid base64")?;
    let (zk, setup_s) = setup(bytes)?;
    let statement = zk.statement(inputs, outputs)?;
    let start = Instant::now();
    zk.verify(&statement, &proof)
        .context("the zk proof does not verify")?;
    println!(
        "ok  zk proof ({} bytes) verified in {:.1} ms: model {model} maps these inputs to these \
         outputs (commitment {}, derived in {setup_s:.2} s)",
        proof.len(),
        start.elapsed().as_secs_f64() * 1e3,
        hex::encode(zk.commitment())
    );
    Ok(())
}
