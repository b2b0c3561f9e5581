//! Admission rules (docs/canonical-semantics.md §6 and §9): every index, length, multiplier and
//! window is checked, and so is the accumulator bound, so the interpreter can never read out of
//! range or overflow whatever bytes it was given.

use super::{CanonicalModel, QOp, Requant};
use crate::cost::{self, Cost, CostLimits, Step, Work};
use crate::error::{EngineError, Result};
use crate::geometry::Window;
use crate::ir::ValueId;

impl CanonicalModel {
    /// Checks every structural invariant the interpreter relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(EngineError::NotCanonical(msg));
        let nvals = self.shapes.len();
        let mut defined = vec![false; nvals];
        for s in &self.shapes {
            if s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > verity_core::tensor::MAX_ELEMENTS)
            {
                return bad(format!("value shape {s:?} too large"));
            }
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return bad("no inputs or no outputs".into());
        }
        for i in &self.inputs {
            if i.value >= nvals
                || defined[i.value]
                || !i.inv_scale.is_finite()
                || i.inv_scale <= 0.0
            {
                return bad(format!("input `{}` is malformed", i.name));
            }
            defined[i.value] = true;
        }
        for (idx, op) in self.ops.iter().enumerate() {
            let check = OpCheck {
                shapes: &self.shapes,
                idx,
                name: op.name(),
            };
            for x in op.inputs() {
                check.require(x < nvals && defined[x], "reads an undefined value")?;
            }
            let y = op.output();
            check.require(
                y < nvals && !defined[y],
                "writes an invalid or already defined value",
            )?;
            check.op(op)?;
            defined[y] = true;
        }
        for o in &self.outputs {
            if o.value >= nvals || !defined[o.value] || !o.scale.is_finite() {
                return bad(format!("output `{}` is malformed", o.name));
            }
        }
        // A decoding error, not a node's choice: a file above the format's ceiling is not a
        // canonical model anywhere.
        self.cost()
            .check(&CostLimits::default())
            .map_err(|e| EngineError::NotCanonical(e.to_string()))?;
        Ok(())
    }

    /// What one inference costs, from the model's structure alone (nothing is run or
    /// allocated): the values the interpreter holds at once (it frees each after its last
    /// reader, see [`crate::exec::Interpreter::run`]), all values together, and the work of
    /// every operator, counting windows at their full nominal size.
    pub fn cost(&self) -> Cost {
        let inputs: Vec<ValueId> = self.inputs.iter().map(|i| i.value).collect();
        let outputs: Vec<ValueId> = self.outputs.iter().map(|o| o.value).collect();
        let ops = self.ops.iter().zip(self.steps()).map(|(op, step)| {
            let work = match op {
                QOp::Dense { k, .. } => Work::Dot { k: *k },
                QOp::Conv { win, .. } => Work::Conv { win },
                QOp::MaxPool { win, .. } | QOp::AvgPool { win, .. } => Work::Pool { win },
                QOp::Softmax { .. } => Work::Softmax,
                _ => Work::Elementwise,
            };
            (step, work)
        });
        cost::of_graph(&self.shapes, 1, &inputs, &outputs, ops)
    }

    /// The ops as the cost and the interpreter's freeing schedule see them.
    pub fn steps(&self) -> Vec<Step> {
        self.ops
            .iter()
            .map(|op| Step {
                reads: op.inputs(),
                writes: op.output(),
            })
            .collect()
    }
}

/// True when the worst case |sum_k x*w + b| (|x| <= 128) stays below 2^31 for every channel.
pub fn check_accumulator(w: &[i8], b: &[i32], k: usize) -> bool {
    for (o, row) in w.chunks(k.max(1)).enumerate() {
        let bound: i64 =
            row.iter().map(|&v| (v as i64).abs() * 128).sum::<i64>() + (b[o] as i64).abs();
        if bound > i32::MAX as i64 {
            return false;
        }
    }
    true
}

fn requant_ok(r: &Requant) -> bool {
    r.mult > 0 && (1..=62).contains(&r.shift)
}

/// The parameters of a Dense or Conv: `channels` rows of weights, and one bias and one
/// requantizer per output channel.
struct Layer<'a> {
    w: &'a [i8],
    b: &'a [i32],
    rq: &'a [Requant],
}

impl Layer<'_> {
    fn has_shape(&self, channels: usize, per_channel: usize) -> bool {
        self.w.len() == channels.saturating_mul(per_channel)
            && self.b.len() == channels
            && self.rq.len() == channels
            && self.rq.iter().all(requant_ok)
    }
}

/// Checks one op whose operands are known to be defined values (so shapes can be indexed).
struct OpCheck<'a> {
    shapes: &'a [Vec<usize>],
    /// Position and name of the op, for error messages.
    idx: usize,
    name: &'static str,
}

impl OpCheck<'_> {
    fn numel(&self, v: ValueId) -> usize {
        self.shapes[v].iter().product()
    }

    fn require(&self, ok: bool, msg: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(EngineError::NotCanonical(format!(
                "op {} ({}): {msg}",
                self.idx, self.name
            )))
        }
    }

    /// The accumulator bound of docs/canonical-semantics.md §6.
    fn no_overflow(&self, layer: &Layer, per_channel: usize) -> Result<()> {
        if check_accumulator(layer.w, layer.b, per_channel) {
            Ok(())
        } else {
            Err(EngineError::Overflow(format!(
                "op {} ({})",
                self.idx, self.name
            )))
        }
    }

    fn op(&self, op: &QOp) -> Result<()> {
        match op {
            QOp::Dense {
                x,
                y,
                k,
                n,
                w,
                b,
                rq,
            } => self.dense(*x, *y, *k, *n, &Layer { w, b, rq }),
            QOp::Conv {
                x,
                y,
                out_channels,
                win,
                w,
                b,
                rq,
            } => self.conv(*x, *y, *out_channels, win, &Layer { w, b, rq }),
            QOp::Relu { x, y } | QOp::Reshape { x, y } => {
                self.require(self.numel(*x) == self.numel(*y), "element count changes")
            }
            QOp::Lut { x, y, table } => self.require(
                self.numel(*x) == self.numel(*y) && table.len() == 256,
                "bad table or shape",
            ),
            QOp::Softmax { x, y, exp } => self.require(
                self.shapes[*x] == self.shapes[*y]
                    && exp.len() == 256
                    && exp[0] != 0
                    && exp.iter().all(|&e| e <= 1 << 24)
                    && self.shapes[*y].last().is_some_and(|&n| n != 0),
                "bad table or shape",
            ),
            QOp::Add {
                a,
                b,
                y,
                ma,
                mb,
                shift,
            } => {
                let (sa, sb) = (&self.shapes[*a], &self.shapes[*b]);
                self.require(
                    sa == &self.shapes[*y]
                        && sa.ends_with(sb)
                        && self.numel(*b) != 0
                        && (0..1 << 30).contains(ma)
                        && (0..1 << 30).contains(mb)
                        && (1..=62).contains(shift),
                    "bad shapes or multipliers",
                )
            }
            QOp::Const { y, data } => self.require(
                data.len() == self.numel(*y),
                "data length does not match shape",
            ),
            QOp::MaxPool { x, y, win } | QOp::AvgPool { x, y, win, .. } => self.pool(*x, *y, win),
            QOp::Concat { xs, y, axis } => self.concat(xs, *y, *axis),
        }
    }

    fn dense(&self, x: ValueId, y: ValueId, k: usize, n: usize, layer: &Layer) -> Result<()> {
        let rows = self.numel(x).checked_div(k).unwrap_or(0);
        self.require(
            k != 0
                && self.numel(x).is_multiple_of(k)
                && layer.has_shape(n, k)
                && self.numel(y) == rows.saturating_mul(n),
            "parameter sizes do not match shapes",
        )?;
        self.no_overflow(layer, k)
    }

    fn conv(
        &self,
        x: ValueId,
        y: ValueId,
        out_channels: usize,
        win: &Window,
        layer: &Layer,
    ) -> Result<()> {
        win.validate("Conv")?;
        let per_channel = win
            .channels
            .saturating_mul(win.kernel_h)
            .saturating_mul(win.kernel_w);
        let plane = win
            .channels
            .saturating_mul(win.height)
            .saturating_mul(win.width);
        let batch = self.numel(x) / plane.max(1);
        let xs = &self.shapes[x];
        self.require(
            xs.len() == 4
                && xs[1..] == [win.channels, win.height, win.width]
                && layer.has_shape(out_channels, per_channel)
                && self.shapes[y] == [batch, out_channels, win.out_h(), win.out_w()],
            "parameter sizes do not match shapes",
        )?;
        self.no_overflow(layer, per_channel)
    }

    fn pool(&self, x: ValueId, y: ValueId, win: &Window) -> Result<()> {
        win.validate("pool")?;
        let xs = &self.shapes[x];
        self.require(
            xs.len() == 4
                && xs[1..] == [win.channels, win.height, win.width]
                && self.shapes[y] == [xs[0], win.channels, win.out_h(), win.out_w()],
            "window does not match shapes",
        )
    }

    fn concat(&self, xs: &[(ValueId, Requant)], y: ValueId, axis: usize) -> Result<()> {
        let ys = &self.shapes[y];
        self.require(
            !xs.is_empty() && axis < ys.len() && xs.iter().all(|(_, r)| requant_ok(r)),
            "bad axis or multipliers",
        )?;
        let mut total = 0;
        for (x, _) in xs {
            let s = &self.shapes[*x];
            self.require(
                s.len() == ys.len()
                    && s.iter()
                        .zip(ys)
                        .enumerate()
                        .all(|(i, (a, b))| i == axis || a == b),
                "input shapes do not match",
            )?;
            total += s[axis];
        }
        self.require(total == ys[axis], "output shape does not match")
    }
}
