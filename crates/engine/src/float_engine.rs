//! Serving float ONNX models (mode `signed` only) with rten. Float results are reproducible
//! only on the same engine version and CPU class, so the receipt's engine id names both.

use crate::error::{EngineError, Result};
use crate::graph;
use rten::{Model, NodeId};
use rten_tensor::prelude::*;
use verity_core::{DType, EngineId, Tensor, TensorMap, TensorSpec};

pub struct FloatModel {
    model: Model,
    inputs: Vec<(TensorSpec, NodeId)>,
    outputs: Vec<(String, NodeId)>,
}

/// "rten" with its version and the instruction-set class its kernels will pick here.
pub fn engine_id() -> EngineId {
    let isa = match crate::kernels::detect_isa() {
        crate::kernels::Isa::Avx2 => "avx2",
        crate::kernels::Isa::Portable => "baseline",
    };
    EngineId {
        name: "rten".into(),
        version: format!("0.27/{}-{isa}", std::env::consts::ARCH),
    }
}

impl FloatModel {
    pub fn load(bytes: &[u8]) -> Result<FloatModel> {
        let summary = graph::summarize(&graph::decode_onnx(bytes)?)?;
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
        for (spec, id) in &self.inputs {
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
            let data = t.to_f32().unwrap_or_default();
            let tensor = rten_tensor::Tensor::from_data(t.shape(), data);
            feed.push((*id, tensor.into()));
        }
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
