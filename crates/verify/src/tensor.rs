//! Re-execution of tensor models: run the model file locally on the verifier's inputs and
//! require the receipt's exact outputs (and, for canonical int8 models, its layer-trace root).

use crate::report::{fail, Check, Failure, Report};
use crate::Context;
use verity_core::tensor::hash_map;
use verity_core::{Receipt, TensorMap};
use verity_engine::{is_canonical_file, CanonicalModel, FloatModel, Interpreter};

/// Re-executes when the context asks for it.
pub(crate) fn maybe_reexecute(
    r: &Receipt,
    ctx: &Context<'_>,
    report: &mut Report,
) -> Result<(), Failure> {
    if !ctx.reexecute {
        return Ok(());
    }
    if r.engine.name == verity_llm::RUNTIME_NAME {
        return fail(
            Check::Evidence,
            "re-executing a chat receipt needs its request: verify the file `verity chat \
             --receipt-out` writes (receipt + request)",
        );
    }
    let Some(inputs) = ctx.inputs else {
        return fail(Check::Evidence, "re-execution needs the inputs");
    };
    let bytes = ctx.model(&r.model, report)?;
    reexecute(r, &bytes, inputs, report)
}

/// Runs the model (whose bytes already hash to the receipt's model id) and compares.
pub fn reexecute(
    r: &Receipt,
    model: &[u8],
    inputs: &TensorMap,
    report: &mut Report,
) -> Result<(), Failure> {
    let err = |e: String| Failure::new(Check::Reexecution, e);
    let actual = hash_map(inputs);
    if actual != r.input_hash {
        return fail(
            Check::InputHash,
            format!(
                "the inputs hash to {actual}, the receipt says {}",
                r.input_hash
            ),
        );
    }
    let canonical = is_canonical_file(model);
    let (outputs, trace_root) = if canonical {
        let m = CanonicalModel::decode(model).map_err(|e| err(e.to_string()))?;
        let e = Interpreter::new(m)
            .run(inputs)
            .map_err(|e| err(e.to_string()))?;
        (e.outputs, Some(e.trace_root))
    } else {
        let m = FloatModel::load(model, &verity_engine::CostLimits::default())
            .map_err(|e| err(e.to_string()))?;
        (m.run(inputs).map_err(|e| err(e.to_string()))?, None)
    };
    if trace_root != r.trace_root {
        return fail(
            Check::Reexecution,
            format!(
                "layer trace root differs: local {}, receipt {}",
                trace_root.map_or("none".into(), |h| h.to_hex()),
                r.trace_root.map_or("none".into(), |h| h.to_hex())
            ),
        );
    }
    let local = hash_map(&outputs);
    if local != r.output_hash || outputs != r.outputs {
        return fail(
            Check::Reexecution,
            format!(
                "outputs differ: local output hash {local}, receipt {}",
                r.output_hash
            ),
        );
    }
    report.ok(
        Check::Reexecution,
        if canonical {
            "re-executed: identical outputs and layer trace root".to_string()
        } else {
            "re-executed (float model): identical outputs on this engine and CPU class".to_string()
        },
    );
    Ok(())
}
