//! Serving float ONNX models (mode `signed` only) with rten. Float results are reproducible
//! only on the same engine version and CPU class, so the receipt's engine id names both.
//!
//! rten runs any ONNX graph, including operators whose output size comes from data
//! (ConstantOfShape, Expand, Tile: a tiny file can ask for terabytes). A model is loaded only
//! if Verity's own lowering computes every shape statically, which limits float serving to the
//! operators of the canonical form, and its cost is within the node's limits; an input with a
//! dynamic dimension scales that cost, and is refused at run time when the scaled cost is not.

use crate::cost::{Cost, CostLimits};
use crate::error::{EngineError, Result};
use crate::{lower, onnx};
use rten::{Model, NodeId};
use rten_tensor::prelude::*;
use verity_core::{DType, EngineId, Tensor, TensorMap, TensorSpec};

pub struct FloatModel {
    model: Model,
    inputs: Vec<(TensorSpec, NodeId)>,
    outputs: Vec<(String, NodeId)>,
    /// The cost with every dynamic dimension at 1, and the input sizes it assumed.
    cost: Cost,
    lowered_numel: Vec<u64>,
    limits: CostLimits,
}

/// "rten" with its version and the CPU class its kernels will pick here.
pub fn engine_id() -> EngineId {
    EngineId {
        name: "rten".into(),
        version: format!("0.27/{}-{}", std::env::consts::ARCH, cpu_class()),
    }
}

/// The instruction-set class that decides which float kernels rten picks on this CPU.
fn cpu_class() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2-fma";
        }
        "sse"
    }
    #[cfg(not(target_arch = "x86_64"))]
    "baseline"
}

impl FloatModel {
    /// Loads a model whose cost is within `limits`.
    pub fn load(bytes: &[u8], limits: &CostLimits) -> Result<FloatModel> {
        let proto = onnx::decode_onnx(bytes)?;
        let summary = onnx::summarize(&proto)?;
        let graph = lower::lower(&proto, &Default::default()).map_err(|e| match e {
            EngineError::UnsupportedOps(ops) => EngineError::FloatUnsupported(ops),
            e => e,
        })?;
        let cost = graph.cost();
        cost.check(limits)?;
        let lowered_numel = graph
            .inputs
            .iter()
            .map(|(_, v)| graph.shapes[*v].iter().product::<usize>() as u64)
            .collect();
        let model = Model::load(bytes.to_vec()).map_err(|e| EngineError::Float(e.to_string()))?;
        let find = |name: &str| {
            model
                .find_node(name)
                .ok_or_else(|| EngineError::Float(format!("no node `{name}`")))
        };
        let inputs = summary
            .inputs
            .into_iter()
            .map(|s| Ok((find(&s.name)?, s)))
            .map(|r| r.map(|(id, s)| (s, id)))
            .collect::<Result<_>>()?;
        let outputs = summary
            .outputs
            .iter()
            .map(|s| Ok((s.name.clone(), find(&s.name)?)))
            .collect::<Result<_>>()?;
        Ok(FloatModel {
            model,
            inputs,
            outputs,
            cost,
            lowered_numel,
            limits: *limits,
        })
    }

    pub fn run(&self, inputs: &TensorMap) -> Result<TensorMap> {
        if let Some(extra) = inputs
            .keys()
            .find(|k| !self.inputs.iter().any(|(s, _)| &s.name == *k))
        {
            return Err(EngineError::UnknownInput {
                name: extra.clone(),
                expected: self
                    .inputs
                    .iter()
                    .map(|(s, _)| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut feed = Vec::with_capacity(self.inputs.len());
        // Inputs larger than lowered (dynamic dimensions above 1) scale the cost.
        let mut scale = 1u64;
        for ((spec, id), lowered) in self.inputs.iter().zip(&self.lowered_numel) {
            let t = inputs
                .get(&spec.name)
                .ok_or_else(|| EngineError::MissingInput(spec.name.clone()))?;
            if !spec.accepts(t.dtype(), t.shape()) || t.dtype() != DType::F32 {
                return Err(EngineError::InputMismatch {
                    name: spec.name.clone(),
                    expected: format!("{} {}", spec.dtype, spec.shape_text()),
                    got: format!("{} {:?}", t.dtype(), t.shape()),
                });
            }
            scale =
                scale.max((t.shape().iter().product::<usize>() as u64).div_ceil((*lowered).max(1)));
            let data = t.to_f32().unwrap_or_default();
            let tensor = rten_tensor::Tensor::from_data(t.shape(), data);
            feed.push((*id, tensor.into()));
        }
        Cost {
            peak_bytes: self.cost.peak_bytes.saturating_mul(scale),
            total_bytes: self.cost.total_bytes.saturating_mul(scale),
            work: self.cost.work.saturating_mul(scale),
        }
        .check(&self.limits)?;
        let ids: Vec<NodeId> = self.outputs.iter().map(|(_, id)| *id).collect();
        let values = self
            .model
            .run(feed, &ids, None)
            .map_err(|e| EngineError::Float(e.to_string()))?;
        let mut out = TensorMap::new();
        for ((name, _), v) in self.outputs.iter().zip(values) {
            let t: rten_tensor::Tensor<f32> = v
                .try_into()
                .map_err(|_| EngineError::Float(format!("output `{name}` is not f32")))?;
            out.insert(
                name.clone(),
                Tensor::from_f32(t.shape().to_vec(), &t.to_vec())?,
            );
        }
        Ok(out)
    }
}
