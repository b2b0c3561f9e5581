//! What one inference costs, known from a model's structure before anything runs or is
//! allocated (docs/canonical-semantics.md §6): the peak memory of its values, when each value
//! is freed after its last reader, and its work. Canonical and float models are both admitted
//! by it; the limits are a node's configuration, and the offline commands use the defaults.

use crate::error::{EngineError, Result};

/// Index of a value in a graph (the same index the float IR and the canonical model use).
type ValueId = usize;

/// Most bytes of values one inference may hold at once, and the format's ceiling for it.
pub const MAX_VALUE_BYTES: u64 = 1 << 28;
/// Most multiply-accumulates and window reads one inference may take, and the format's ceiling.
pub const MAX_WORK: u64 = 1 << 36;

/// The cost of one inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    /// Bytes of values live at once, at the worst point of the run.
    pub peak_bytes: u64,
    /// Bytes of every value together (what a full witness, e.g. for a zk proof, holds).
    pub total_bytes: u64,
    /// Multiply-accumulates and window reads.
    pub work: u64,
}

/// The largest cost a node admits. The default is the format's ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CostLimits {
    pub peak_bytes: u64,
    pub work: u64,
}

impl Default for CostLimits {
    fn default() -> CostLimits {
        CostLimits {
            peak_bytes: MAX_VALUE_BYTES,
            work: MAX_WORK,
        }
    }
}

impl Cost {
    /// Refuses a cost above `limits`, naming the limit.
    pub fn check(&self, limits: &CostLimits) -> Result<()> {
        if self.peak_bytes > limits.peak_bytes {
            return Err(EngineError::TooCostly(format!(
                "an inference would hold {} bytes of values at once, above the limit of {}",
                self.peak_bytes, limits.peak_bytes
            )));
        }
        if self.work > limits.work {
            return Err(EngineError::TooCostly(format!(
                "an inference would take {} multiply-accumulates and window reads, above the \
                 limit of {}",
                self.work, limits.work
            )));
        }
        Ok(())
    }
}

/// How an operator's work grows with its output size `y`.
pub enum Work<'a> {
    /// `k` multiply-accumulates per output (Dense).
    Dot { k: usize },
    /// A window over every input channel per output (Conv).
    Conv { win: &'a crate::geometry::Window },
    /// A window per output, at its full nominal size (pools).
    Pool { win: &'a crate::geometry::Window },
    /// Three passes (Softmax: max, exponentials, division).
    Softmax,
    /// One read per output.
    Elementwise,
}

impl Work<'_> {
    pub fn of(&self, y: u64) -> u64 {
        let window =
            |w: &crate::geometry::Window| (w.kernel_h as u64).saturating_mul(w.kernel_w as u64);
        match self {
            Work::Dot { k } => y.saturating_mul(*k as u64),
            Work::Conv { win } => y
                .saturating_mul(window(win))
                .saturating_mul(win.channels as u64),
            Work::Pool { win } => y.saturating_mul(window(win)),
            Work::Softmax => y.saturating_mul(3),
            Work::Elementwise => y,
        }
    }
}

/// One step of a graph for the cost: the values it reads and the value it writes.
pub struct Step {
    pub reads: Vec<ValueId>,
    pub writes: ValueId,
}

/// For each value, the index of the last step that reads it; `usize::MAX` for graph outputs
/// (kept to the end). A value nobody reads dies at the step that writes it.
pub fn last_reads(values: usize, steps: &[Step], outputs: &[ValueId]) -> Vec<usize> {
    let mut last = vec![0usize; values];
    for (i, s) in steps.iter().enumerate() {
        if let Some(l) = last.get_mut(s.writes) {
            *l = i;
        }
        for &x in &s.reads {
            if let Some(l) = last.get_mut(x) {
                *l = i;
            }
        }
    }
    for &o in outputs {
        if let Some(l) = last.get_mut(o) {
            *l = usize::MAX;
        }
    }
    last
}

/// The cost of a graph of `shapes` (`elem_bytes` per element) whose ops, in order, are
/// `steps` with their `work`.
pub fn of_graph<'a>(
    shapes: &[Vec<usize>],
    elem_bytes: u64,
    inputs: &[ValueId],
    outputs: &[ValueId],
    ops: impl Iterator<Item = (Step, Work<'a>)>,
) -> Cost {
    let numel = |v: ValueId| -> u64 {
        shapes.get(v).map_or(0, |s| {
            s.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
        })
    };
    let (steps, work): (Vec<Step>, Vec<Work>) = ops.unzip();
    let work = steps
        .iter()
        .zip(&work)
        .map(|(s, w)| w.of(numel(s.writes)))
        .fold(0u64, u64::saturating_add);
    let bytes = |v| numel(v).saturating_mul(elem_bytes);
    let (peak_bytes, total_bytes) = memory(bytes, shapes.len(), inputs, &steps, outputs);
    Cost {
        peak_bytes,
        total_bytes,
        work,
    }
}

/// Peak and total bytes of values when the steps run in order, the graph inputs are live from
/// the start, and each value is freed after its last reader (outputs are kept).
pub fn memory(
    bytes_of: impl Fn(ValueId) -> u64,
    values: usize,
    inputs: &[ValueId],
    steps: &[Step],
    outputs: &[ValueId],
) -> (u64, u64) {
    let last = last_reads(values, steps, outputs);
    let mut live: u64 = inputs.iter().map(|&v| bytes_of(v)).sum();
    let mut peak = live;
    let mut total = live;
    for (i, s) in steps.iter().enumerate() {
        let written = bytes_of(s.writes);
        live = live.saturating_add(written);
        total = total.saturating_add(written);
        peak = peak.max(live);
        // Free what this step read (or wrote) for the last time.
        let mut dead: Vec<ValueId> = s.reads.clone();
        dead.push(s.writes);
        dead.sort_unstable();
        dead.dedup();
        for v in dead {
            if last.get(v) == Some(&i) {
                live = live.saturating_sub(bytes_of(v));
            }
        }
    }
    (peak, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_holds_two_values_at_a_time_and_outputs_stay() {
        // x(0) -> a(1) -> b(2) -> y(3), each 10 bytes; y is the output.
        let steps: Vec<Step> = (0..3)
            .map(|i| Step {
                reads: vec![i],
                writes: i + 1,
            })
            .collect();
        let (peak, total) = memory(|_| 10, 4, &[0], &steps, &[3]);
        assert_eq!((peak, total), (20, 40));
        // A value read again later stays live until then (a skip connection).
        let mut skip = steps;
        skip.push(Step {
            reads: vec![0, 3],
            writes: 4,
        });
        let (peak, _) = memory(|_| 10, 5, &[0], &skip, &[4]);
        assert_eq!(peak, 30);
    }
}
