//! Succinct proofs that a canonical int8 model, identified by its id, turned an input into an
//! output, bit for bit as the canonical engine computes it.
//!
//! The proof is a batch of STARKs (Plonky3: KoalaBear, FRI, Keccak Merkle trees) over the
//! tables of [`air`], tied together by LogUp buses. The model's weights and wiring are
//! preprocessed columns: their commitment, derived deterministically from the model file, is
//! the model's verifying key. The statement (model id, quantized input, quantized output) is
//! bound twice: as periodic columns the constraints check, and as a digest in the transcript.
//! docs/zk.md describes the circuit and its security level.

pub mod air;
pub mod circuit;
pub mod config;
mod error;

use p3_batch_stark::{prove_batch, verify_batch, BatchProof, ProverData, StarkInstance};
use p3_field::PrimeCharacteristicRing;
use p3_matrix::Matrix;
use verity_core::hash::domain;
use verity_core::{Hash, ModelId, TensorMap};
use verity_engine::canonical::CanonicalModel;
use verity_engine::Interpreter;

pub use circuit::Circuit;
use error::unsupported;
pub use error::ZkError;

use air::{Kind, STATEMENT_LIMBS};
use config::{Config, Val};

/// What a proof proves: this model mapped this quantized input to this quantized output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub model_id: ModelId,
    /// All graph inputs, quantized, concatenated in the model's input order.
    pub input: Vec<i8>,
    /// All graph outputs, concatenated in the model's output order.
    pub output: Vec<i8>,
}

impl Statement {
    /// Domain-separated digest of the statement, absorbed by the proof's transcript.
    pub fn digest(&self) -> Hash {
        let mut bytes = Vec::with_capacity(48 + self.input.len() + self.output.len());
        bytes.extend_from_slice(&self.model_id.0);
        for part in [&self.input, &self.output] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend(part.iter().map(|&v| v as u8));
        }
        Hash::of(domain::ZK_STATEMENT, &bytes)
    }

    fn public_values(&self) -> Vec<Val> {
        let d = self.digest().0;
        let limbs: Vec<Val> = d
            .chunks(2)
            .map(|c| Val::from_u16(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        debug_assert_eq!(limbs.len(), STATEMENT_LIMBS);
        limbs
    }
}

/// A model compiled for proving and verifying: its circuit and the commitment to its
/// preprocessed columns (the verifying key), derived from the model file alone.
pub struct ZkModel {
    model_id: ModelId,
    interpreter: Interpreter,
    circuit: Circuit,
    config: Config,
    prover_data: ProverData<Config>,
}

impl ZkModel {
    /// Compiles a canonical model file and commits to its preprocessed columns. Refuses
    /// models with operators the circuit does not cover, naming them.
    pub fn setup(model_bytes: &[u8]) -> Result<ZkModel, ZkError> {
        let model = CanonicalModel::decode(model_bytes)?;
        // Outputs are claimed as f32 `q * scale`; only a positive, moderate scale maps every
        // int8 to a distinct finite float, so that one proof covers exactly one claim.
        if let Some(o) = model
            .outputs
            .iter()
            .find(|o| !(o.scale > 0.0 && o.scale < 1e30))
        {
            return Err(unsupported(
                "model",
                &format!("output {:?} has scale {}", o.name, o.scale),
            ));
        }
        let circuit = Circuit::compile(&model)?;
        let config = config::config();
        let degrees: Vec<usize> = circuit
            .airs
            .iter()
            .map(|a| a.preprocessed.height().trailing_zeros() as usize)
            .collect();
        // Fold two lookups into each auxiliary column (degree 3, within the rate-1/2 budget).
        let budgets = vec![3; degrees.len()];
        let prover_data = ProverData::from_airs_and_degrees_with_lookup_budgets(
            &config,
            &circuit.airs,
            &degrees,
            &budgets,
            config::LOG_BLOWUP,
        )
        .map_err(|e| ZkError::Internal(format!("{e:?}")))?;
        // LogUp is sound only while no count can reach p: refuse circuits whose tables are
        // too tall for that.
        let heights: Vec<usize> = circuit
            .airs
            .iter()
            .map(|a| a.preprocessed.height())
            .collect();
        p3_lookup::check_multiplicity_height_bound(&prover_data.common.lookups, &heights).map_err(
            |e| {
                unsupported(
                    "model",
                    &format!("its lookups could overflow the field: {e}"),
                )
            },
        )?;
        Ok(ZkModel {
            model_id: ModelId::of_bytes(model_bytes),
            interpreter: Interpreter::new(model),
            circuit,
            config,
            prover_data,
        })
    }

    pub fn model_id(&self) -> ModelId {
        self.model_id
    }

    /// The commitment to the model's preprocessed columns (Keccak Merkle root), as bytes.
    pub fn commitment(&self) -> Vec<u8> {
        self.prover_data
            .common
            .preprocessed
            .as_ref()
            .map(|p| postcard::to_allocvec(&p.commitment).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Table kinds and heights, for reports.
    pub fn tables(&self) -> Vec<(Kind, usize)> {
        self.circuit
            .airs
            .iter()
            .map(|a| (a.kind, a.preprocessed.height()))
            .collect()
    }

    /// Runs the model on `inputs` and proves the run. Returns the outputs (exactly those of
    /// the canonical engine), the statement and the serialized proof.
    pub fn prove(&self, inputs: &TensorMap) -> Result<(TensorMap, Statement, Vec<u8>), ZkError> {
        let vals = self.interpreter.values(inputs)?;
        let model = self.interpreter.model();
        let (input, output) = self.circuit.statement(model, &vals);
        let statement = Statement {
            model_id: self.model_id,
            input,
            output,
        };
        let traces = self.circuit.witness(&vals)?;
        let bytes = self.prove_traces(&statement, &traces)?;
        Ok((self.interpreter.outputs(&vals)?, statement, bytes))
    }

    fn prove_traces(
        &self,
        statement: &Statement,
        traces: &[p3_matrix::dense::RowMajorMatrix<Val>],
    ) -> Result<Vec<u8>, ZkError> {
        let airs = self.circuit.airs_for(&statement.input, &statement.output);
        let publics = self.public_values(&airs, statement);
        let instances: Vec<StarkInstance<'_, Config, air::ZkAir>> = airs
            .iter()
            .zip(traces)
            .zip(publics)
            .map(|((air, trace), public_values)| StarkInstance {
                air,
                trace,
                public_values,
            })
            .collect();
        let proof = prove_batch(&self.config, &instances, &self.prover_data)
            .map_err(|e| ZkError::Internal(format!("{e:?}")))?;
        postcard::to_allocvec(&proof).map_err(|e| ZkError::Internal(e.to_string()))
    }

    fn public_values(&self, airs: &[air::ZkAir], statement: &Statement) -> Vec<Vec<Val>> {
        airs.iter()
            .map(|a| {
                if a.kind == Kind::Io {
                    statement.public_values()
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// The statement claimed by a receipt's f32 tensors: the input quantized as the engine
    /// does, the outputs mapped back to int8 (refusing any value that is not exactly
    /// `q * scale`, so one proof cannot cover two different claimed outputs).
    pub fn statement(&self, inputs: &TensorMap, outputs: &TensorMap) -> Result<Statement, ZkError> {
        let model = self.interpreter.model();
        let input = self
            .interpreter
            .quantize_inputs(inputs)?
            .into_iter()
            .flat_map(|(_, q)| q)
            .collect();
        if outputs.len() != model.outputs.len() {
            return Err(ZkError::Statement(format!(
                "{} output tensors, the model has {}",
                outputs.len(),
                model.outputs.len()
            )));
        }
        let mut output = Vec::new();
        for spec in &model.outputs {
            let t = outputs
                .get(&spec.name)
                .ok_or_else(|| ZkError::Statement(format!("output {:?} missing", spec.name)))?;
            let values = t
                .to_f32()
                .filter(|_| t.shape() == model.shapes[spec.value].as_slice())
                .ok_or_else(|| {
                    ZkError::Statement(format!(
                        "output {:?} has the wrong type or shape",
                        spec.name
                    ))
                })?;
            for f in values {
                let q = (f / spec.scale).round().clamp(-128.0, 127.0) as i8;
                if (q as f32 * spec.scale).to_bits() != f.to_bits() {
                    return Err(ZkError::Statement(format!(
                        "output {:?} holds {f}, which is not an int8 multiple of its scale",
                        spec.name
                    )));
                }
                output.push(q);
            }
        }
        Ok(Statement {
            model_id: self.model_id,
            input,
            output,
        })
    }

    /// Checks a proof against a statement about this model.
    pub fn verify(&self, statement: &Statement, proof: &[u8]) -> Result<(), ZkError> {
        if statement.model_id != self.model_id {
            return Err(ZkError::Statement(format!(
                "the statement names model {}, this key is for {}",
                statement.model_id, self.model_id
            )));
        }
        if statement.input.len() != self.circuit.input_len
            || statement.output.len() != self.circuit.output_len
        {
            return Err(ZkError::Statement(format!(
                "expected {} input and {} output values, got {} and {}",
                self.circuit.input_len,
                self.circuit.output_len,
                statement.input.len(),
                statement.output.len()
            )));
        }
        let (proof, rest): (BatchProof<Config>, _) =
            postcard::take_from_bytes(proof).map_err(|e| ZkError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            // One proof, one encoding: trailing bytes would make many byte strings verify.
            return Err(ZkError::Malformed(format!(
                "{} bytes after the proof",
                rest.len()
            )));
        }
        let expected: Vec<usize> = self
            .circuit
            .airs
            .iter()
            .map(|a| a.preprocessed.height().trailing_zeros() as usize)
            .collect();
        if proof.degree_bits != expected {
            return Err(ZkError::Rejected(
                "table sizes differ from the model's".into(),
            ));
        }
        let airs = self.circuit.airs_for(&statement.input, &statement.output);
        let publics = self.public_values(&airs, statement);
        // A proof is untrusted input: a shape the verifier does not expect must be a
        // rejection, never a crash of the program verifying it.
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verify_batch(
                &self.config,
                &airs,
                &proof,
                &publics,
                &self.prover_data.common,
            )
        }));
        match verdict {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ZkError::Rejected(format!("{e:?}"))),
            Err(_) => Err(ZkError::Rejected(
                "the proof's shape does not match the model".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p3_field::PrimeCharacteristicRing;
    use verity_core::Tensor;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// A prover that lies consistently everywhere it can: the statement, the IO table's
    /// periodic column and its trace all claim another output. Every row constraint holds;
    /// only the memory bus, where the output was provided with its true value, can catch it.
    #[test]
    fn a_consistent_lie_about_the_output_is_caught_by_the_memory_bus() {
        let calib =
            verity_engine::Calibration::from_json(&fixture("digits_calib_mlp.json")).unwrap();
        let model = verity_engine::quantize_onnx(&fixture("digits_mlp.onnx"), &calib)
            .unwrap()
            .encode();
        let zk = ZkModel::setup(&model).unwrap();
        let x: Vec<f32> = (0..64).map(|i| (i % 16) as f32 / 16.0).collect();
        let inputs =
            TensorMap::from([("input".into(), Tensor::from_f32(vec![1, 64], &x).unwrap())]);
        let vals = zk.interpreter.values(&inputs).unwrap();
        let (input, mut output) = zk.circuit.statement(zk.interpreter.model(), &vals);
        let mut traces = zk.circuit.witness(&vals).unwrap();
        let honest = Statement {
            model_id: zk.model_id,
            input: input.clone(),
            output: output.clone(),
        };
        zk.verify(&honest, &zk.prove_traces(&honest, &traces).unwrap())
            .unwrap();

        output[3] = output[3].wrapping_add(7);
        // IO main columns are [in, out]: output value 3 sits in row 3.
        traces[0].values[3 * 2 + 1] = Val::from_i8(output[3]);
        let lie = Statement {
            model_id: zk.model_id,
            input,
            output,
        };
        let proof = zk.prove_traces(&lie, &traces).unwrap();
        assert!(matches!(zk.verify(&lie, &proof), Err(ZkError::Rejected(_))));
    }
}
