//! zk proofs: a succinct proof that a canonical model (identified by the hash of its file)
//! maps these inputs to these outputs. The verifier derives the model's commitment from the
//! file itself, so it trusts nothing the prover says about the model.

use crate::report::{fail, Check, Failure, Report};
use base64::Engine;
use std::time::Instant;
use verity_core::{ModelId, TensorMap};
use verity_zk::ZkModel;

/// Compiles a canonical model's circuit and commits to it.
pub fn setup(model: &[u8]) -> Result<ZkModel, Failure> {
    ZkModel::setup(model).map_err(|e| {
        Failure::new(
            Check::ZkProof,
            format!(
                "cannot compile the model's circuit ({e}); zk proofs cover canonical int8 \
                 models: quantize an ONNX model with `verity model quantize`"
            ),
        )
    })
}

/// Checks that `proof` (base64) proves the model whose file is `bytes`, with id `model`, maps
/// `inputs` to `outputs`.
pub fn check_proof(
    bytes: &[u8],
    model: &ModelId,
    inputs: &TensorMap,
    outputs: &TensorMap,
    proof: &str,
    report: &mut Report,
) -> Result<(), Failure> {
    crate::model_matches(bytes, model, report)?;
    let Ok(proof) = base64::engine::general_purpose::STANDARD.decode(proof.trim()) else {
        return fail(Check::ZkProof, "the proof is not valid base64");
    };
    let start = Instant::now();
    let zk = setup(bytes)?;
    let setup_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    check_compiled(&zk, inputs, outputs, &proof)?;
    report.ok(
        Check::ZkProof,
        format!(
            "zk proof ({} bytes) verified in {:.1} ms: model {model} maps these inputs to these \
             outputs (commitment {}, derived in {setup_s:.2} s)",
            proof.len(),
            start.elapsed().as_secs_f64() * 1e3,
            hex::encode(zk.commitment())
        ),
    );
    Ok(())
}

/// Checks that the raw `proof` proves that the model whose circuit is `zk` (compiled from the
/// model's own file) maps `inputs` to `outputs`. The one zk check: `verity verify` and the
/// validators judging a zk settlement both call it.
pub fn check_compiled(
    zk: &ZkModel,
    inputs: &TensorMap,
    outputs: &TensorMap,
    proof: &[u8],
) -> Result<(), Failure> {
    let statement = zk
        .statement(inputs, outputs)
        .map_err(|e| Failure::new(Check::ZkProof, format!("statement: {e}")))?;
    zk.verify(&statement, proof)
        .map_err(|e| Failure::new(Check::ZkProof, format!("the proof does not verify: {e}")))
}
