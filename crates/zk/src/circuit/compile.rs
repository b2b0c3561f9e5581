//! Compiling a canonical model into row recipes: an address for every int8 value, the rows
//! each operator needs, how often each address is read, and the requantization thresholds and
//! op tables its lookups go to. What the circuit does not cover is refused here, by name.

use p3_matrix::Matrix;
use verity_engine::canonical::{clamp_i8, CanonicalModel, QOp, Requant};
use verity_engine::geometry::Window;

use super::{
    BinaryRow, Circuit, IoInput, MacRow, PoolRow, RequantRow, Rows, Source, UnaryRow, ACC_BOUND,
    MAC_WIDTH, MAX_LOG_HEIGHT,
};
use crate::air::RANGE_BITS;
use crate::error::{unsupported, ZkError};

fn numel(model: &CanonicalModel, v: usize) -> usize {
    model.shapes[v].iter().product()
}

/// The address of element 0 of every value (`usize::MAX` for values never computed), and the
/// memory size: inputs first, then each op's output; a Reshape's output aliases its input.
fn addresses(model: &CanonicalModel) -> (Vec<usize>, usize) {
    let mut base = vec![usize::MAX; model.shapes.len()];
    let mut next = 0usize;
    for i in &model.inputs {
        base[i.value] = next;
        next += numel(model, i.value);
    }
    for op in &model.ops {
        match op {
            QOp::Reshape { x, y } => base[*y] = base[*x],
            _ => {
                base[op.output()] = next;
                next += numel(model, op.output());
            }
        }
    }
    (base, next)
}

/// Thresholds of a non-decreasing requantization of a dot product (the bias is folded in, so
/// only the dot product need stay within ±2^28): T(y) = the least d in [-2^28, 2^28] with
/// f(d) >= y (2^28 when none), T(-128) = -2^28, T(128) = 2^28. Found by bisection over the
/// engine's own [`Requant::apply`], so they are exact for its rounding.
fn thresholds(f: impl Fn(i64) -> i64) -> Vec<i64> {
    (-128i64..=128)
        .map(|y| {
            if y == -128 {
                return -ACC_BOUND;
            }
            let (mut lo, mut hi) = (-ACC_BOUND, ACC_BOUND);
            // Invariant: f(hi) >= y or hi = 2^28; f(lo - 1) < y.
            if f(hi) < y {
                return ACC_BOUND;
            }
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if f(mid) >= y {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lo
        })
        .collect()
}

/// A Dense or Conv's weights as its MAC rows read them.
struct Weights<'a> {
    w: &'a [i8],
    /// Weights per output channel.
    taps: usize,
    /// The threshold channel of output channel 0.
    channel0: usize,
}

/// The most values (memory-bus addresses) a provable model may have: the tables that provide
/// them hold at most 2^20 rows of a few lanes each.
const MAX_ADDRESSES: usize = 1 << 24;

#[derive(Clone, Copy)]
enum Pooling {
    Max,
    Average { count_include_pad: bool },
}

impl Circuit {
    pub fn compile(model: &CanonicalModel) -> Result<Circuit, ZkError> {
        let (base, memory_size) = addresses(model);
        // Every value is an address on the memory bus, provided by some table row: a model with
        // more values than the largest tables can hold is refused before anything is allocated.
        if memory_size > MAX_ADDRESSES {
            return Err(unsupported(
                "model",
                &format!("more than {MAX_ADDRESSES} values in all (it has {memory_size})"),
            ));
        }
        let mut c = Circuit {
            rows: Rows::default(),
            base,
            memory_size,
            reads: vec![0; memory_size],
            thresholds: Vec::new(),
            unary_tables: Vec::new(),
            binary_tables: Vec::new(),
            input_len: 0,
            output_len: 0,
            airs: Vec::new(),
        };
        c.compile_inputs(model);
        for op in &model.ops {
            c.compile_op(model, op)?;
        }
        c.compile_outputs(model);
        c.airs = c.build_airs();
        if let Some(a) = c
            .airs
            .iter()
            .find(|a| a.preprocessed.height() > 1 << MAX_LOG_HEIGHT)
        {
            return Err(unsupported(
                "model",
                &format!("its {:?} table exceeds 2^{MAX_LOG_HEIGHT} rows", a.kind),
            ));
        }
        Ok(c)
    }

    fn read(&mut self, addr: usize) {
        self.reads[addr] += 1;
    }

    fn addr(&self, v: usize, i: usize) -> usize {
        self.base[v] + i
    }

    /// The graph inputs, provided by the IO table from the statement.
    fn compile_inputs(&mut self, model: &CanonicalModel) {
        for i in &model.inputs {
            for j in 0..numel(model, i.value) {
                self.rows.io_in.push(IoInput {
                    addr: self.base[i.value] + j,
                    source: Source::Input(self.input_len + j),
                });
            }
            self.input_len += numel(model, i.value);
        }
    }

    /// The graph outputs, read by the IO table and checked against the statement.
    fn compile_outputs(&mut self, model: &CanonicalModel) {
        for o in &model.outputs {
            for j in 0..numel(model, o.value) {
                let addr = self.base[o.value] + j;
                self.read(addr);
                self.rows.io_out.push(addr);
            }
            self.output_len += numel(model, o.value);
        }
    }

    fn compile_op(&mut self, model: &CanonicalModel, op: &QOp) -> Result<(), ZkError> {
        match op {
            QOp::Dense {
                x,
                y,
                k,
                n,
                w,
                b,
                rq,
            } => {
                let weights = self.weights("Dense", w, *k, b, rq)?;
                self.compile_dense(model, *x, *y, *n, &weights);
            }
            QOp::Conv {
                x,
                y,
                out_channels,
                win,
                w,
                b,
                rq,
            } => {
                let taps = win.channels * win.kernel_h * win.kernel_w;
                let weights = self.weights("Conv", w, taps, b, rq)?;
                self.compile_conv(model, *x, *y, *out_channels, win, &weights);
            }
            QOp::Relu { x, y } => {
                let table = (-128i16..=127).map(|v| v.max(0) as i8).collect();
                self.compile_unary(model, *x, *y, table);
            }
            QOp::Lut { x, y, table } => self.compile_unary(model, *x, *y, table.clone()),
            QOp::Concat { xs, y, axis } => self.compile_concat(model, xs, *y, *axis),
            QOp::Add {
                a,
                b,
                y,
                ma,
                mb,
                shift,
            } => {
                let table = self.binary_table((*ma, *mb, *shift));
                self.compile_add(model, *a, *b, *y, table);
            }
            QOp::Const { y, data } => self.compile_const(*y, data),
            QOp::MaxPool { x, y, win } => self.compile_pool(model, *x, *y, win, Pooling::Max)?,
            QOp::AvgPool {
                x,
                y,
                win,
                count_include_pad,
            } => {
                let pooling = Pooling::Average {
                    count_include_pad: *count_include_pad,
                };
                self.compile_pool(model, *x, *y, win, pooling)?
            }
            // Free: the output aliases the input's addresses.
            QOp::Reshape { .. } => {}
            QOp::Softmax { .. } => {
                return Err(unsupported(
                    "Softmax",
                    "not provable yet (its division is not in the circuit)",
                ))
            }
        }
        Ok(())
    }

    /// A Dense or Conv's weights with their threshold channels.
    fn weights<'w>(
        &mut self,
        name: &str,
        w: &'w [i8],
        taps: usize,
        b: &[i32],
        rq: &[Requant],
    ) -> Result<Weights<'w>, ZkError> {
        let channel0 = self.channels(name, w, b, rq)?;
        Ok(Weights { w, taps, channel0 })
    }

    /// Threshold channels of one Dense/Conv; refuses dot products that could leave ±2^28.
    fn channels(
        &mut self,
        name: &str,
        w: &[i8],
        b: &[i32],
        rq: &[Requant],
    ) -> Result<usize, ZkError> {
        let taps = w.len() / b.len().max(1);
        for (o, r) in rq.iter().enumerate() {
            let bound: i64 = w[o * taps..(o + 1) * taps]
                .iter()
                .map(|&v| (v as i64).abs() * 128)
                .sum::<i64>();
            if bound >= ACC_BOUND {
                return Err(unsupported(
                    name,
                    "an output's worst-case dot product exceeds 2^28 (weights too large)",
                ));
            }
            if r.mult < 0 {
                return Err(unsupported(name, "negative requantization multiplier"));
            }
        }
        let first = self.thresholds.len();
        self.thresholds.extend(
            rq.iter().zip(b).map(|(&r, &bias)| {
                thresholds(move |dot| clamp_i8(r.apply(dot + bias as i64)) as i64)
            }),
        );
        Ok(first)
    }

    /// Lays out the gather chunks of one dot-product input (`patch`: address and tap index of
    /// each value) and the MAC rows of its outputs (output channel and address).
    fn dot_products(
        &mut self,
        patch: &[(usize, usize)],
        outputs: impl Iterator<Item = (usize, usize)>,
        weights: &Weights,
    ) {
        let mut chunks = Vec::new();
        for part in patch.chunks(MAC_WIDTH) {
            let mut slots: Vec<Option<usize>> = part.iter().map(|&(a, _)| Some(a)).collect();
            slots.resize(MAC_WIDTH, None);
            for a in slots.iter().flatten() {
                self.reads[*a] += 1;
            }
            chunks.push(self.rows.gather.len());
            self.rows.gather.push(slots);
        }
        for (o, out) in outputs {
            let n = chunks.len();
            for (i, (part, &chunk)) in patch.chunks(MAC_WIDTH).zip(&chunks).enumerate() {
                let mut ws: Vec<i8> = part
                    .iter()
                    .map(|&(_, t)| weights.w[o * weights.taps + t])
                    .collect();
                ws.resize(MAC_WIDTH, 0);
                self.rows.mac.push(MacRow {
                    chunk,
                    w: ws,
                    first: i == 0,
                    last: i + 1 == n,
                    out,
                });
            }
            self.rows.requant.push(RequantRow {
                out,
                channel: weights.channel0 + o,
            });
        }
    }

    /// `y = x W` for every row of `x` (rows of `taps` values), `n` outputs per row.
    fn compile_dense(
        &mut self,
        model: &CanonicalModel,
        x: usize,
        y: usize,
        n: usize,
        weights: &Weights,
    ) {
        let k = weights.taps;
        for r in 0..numel(model, x) / k.max(1) {
            let patch: Vec<(usize, usize)> = (0..k).map(|i| (self.addr(x, r * k + i), i)).collect();
            let outs: Vec<(usize, usize)> = (0..n).map(|o| (o, self.addr(y, r * n + o))).collect();
            self.dot_products(&patch, outs.into_iter(), weights);
        }
    }

    /// A convolution as one dot product per window and output channel (im2col addressing).
    fn compile_conv(
        &mut self,
        model: &CanonicalModel,
        x: usize,
        y: usize,
        out_channels: usize,
        win: &Window,
        weights: &Weights,
    ) {
        let (oh, ow) = (win.out_h(), win.out_w());
        let plane = win.channels * win.height * win.width;
        for img in 0..numel(model, x) / plane.max(1) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let patch = self.conv_patch(x, img * plane, win, oy, ox);
                    let out_base = img * out_channels * oh * ow + oy * ow + ox;
                    let outs: Vec<(usize, usize)> = (0..out_channels)
                        .map(|o| (o, self.addr(y, out_base + o * oh * ow)))
                        .collect();
                    self.dot_products(&patch, outs.into_iter(), weights);
                }
            }
        }
    }

    /// The in-image taps of a conv window: (address, tap index) in the weights' tap order.
    /// Padding taps are left out: they contribute 0.
    fn conv_patch(
        &self,
        x: usize,
        img: usize,
        win: &Window,
        oy: usize,
        ox: usize,
    ) -> Vec<(usize, usize)> {
        let (rs, cs) = win.span(oy, ox);
        let y0 = (oy * win.stride_h) as isize - win.pad_top as isize;
        let x0 = (ox * win.stride_w) as isize - win.pad_left as isize;
        let mut patch = Vec::new();
        for ch in 0..win.channels {
            for r in rs.clone() {
                for col in cs.clone() {
                    let dy = (r as isize - y0) as usize;
                    let dx = (col as isize - x0) as usize;
                    let tap = (ch * win.kernel_h + dy) * win.kernel_w + dx;
                    let a = self.addr(x, img + (ch * win.height + r) * win.width + col);
                    patch.push((a, tap));
                }
            }
        }
        patch
    }

    /// The index of a unary table, adding it if new.
    fn unary_table(&mut self, table: Vec<i8>) -> usize {
        match self.unary_tables.iter().position(|t| *t == table) {
            Some(i) => i,
            None => {
                self.unary_tables.push(table);
                self.unary_tables.len() - 1
            }
        }
    }

    /// The index of the binary table of an Add's parameters, adding it if new.
    fn binary_table(&mut self, params: (i32, i32, u8)) -> usize {
        match self.binary_tables.iter().position(|p| *p == params) {
            Some(i) => i,
            None => {
                self.binary_tables.push(params);
                self.binary_tables.len() - 1
            }
        }
    }

    /// `y[i] = table[x[i mod len(x)]]` for every element of `y`.
    fn compile_unary(&mut self, model: &CanonicalModel, x: usize, y: usize, table: Vec<i8>) {
        let x_len = numel(model, x).max(1);
        let table = self.unary_table(table);
        for i in 0..numel(model, y) {
            let input = self.addr(x, i % x_len);
            self.read(input);
            self.rows.unary.push(UnaryRow {
                input,
                table,
                out: self.addr(y, i),
            });
        }
    }

    /// Each input rescaled through its own 256-entry table, written to its slice of `y`.
    fn compile_concat(
        &mut self,
        model: &CanonicalModel,
        xs: &[(usize, Requant)],
        y: usize,
        axis: usize,
    ) {
        let outer: usize = model.shapes[y][..axis].iter().product();
        let mut at = 0;
        for o in 0..outer {
            for (x, rq) in xs {
                let chunk = numel(model, *x) / outer.max(1);
                let table: Vec<i8> = (-128i64..=127).map(|v| clamp_i8(rq.apply(v))).collect();
                let table = self.unary_table(table);
                for i in 0..chunk {
                    let input = self.addr(*x, o * chunk + i);
                    self.read(input);
                    self.rows.unary.push(UnaryRow {
                        input,
                        table,
                        out: self.addr(y, at),
                    });
                    at += 1;
                }
            }
        }
    }

    /// `y[i] = table[a[i], b[i mod len(b)]]` for every element of `y`.
    fn compile_add(&mut self, model: &CanonicalModel, a: usize, b: usize, y: usize, table: usize) {
        let b_len = numel(model, b).max(1);
        for i in 0..numel(model, y) {
            let (a_addr, b_addr) = (self.addr(a, i), self.addr(b, i % b_len));
            self.read(a_addr);
            self.read(b_addr);
            self.rows.binary.push(BinaryRow {
                a: a_addr,
                b: b_addr,
                table,
                out: self.addr(y, i),
            });
        }
    }

    /// A constant's values, provided by the IO table (they are part of the model).
    fn compile_const(&mut self, y: usize, data: &[i8]) {
        for (i, &v) in data.iter().enumerate() {
            self.rows.io_in.push(IoInput {
                addr: self.addr(y, i),
                source: Source::Const(v),
            });
        }
    }

    /// One pool row per output: the window's in-image addresses, padded to the kernel size.
    fn compile_pool(
        &mut self,
        model: &CanonicalModel,
        x: usize,
        y: usize,
        win: &Window,
        pooling: Pooling,
    ) -> Result<(), ZkError> {
        // Each pool row holds the whole window, and the average's remainder check
        // 0 <= r < 2 * count must fit the range table: windows are capped before any row exists.
        let k = win.kernel_h.saturating_mul(win.kernel_w);
        if k > 1 << (RANGE_BITS - 1) {
            let op = match pooling {
                Pooling::Max => "MaxPool",
                Pooling::Average { .. } => "AveragePool",
            };
            return Err(unsupported(op, "windows of more than 2048 values"));
        }
        let (oh, ow) = (win.out_h(), win.out_w());
        let plane = win.height * win.width;
        let mut out = 0;
        for p in 0..numel(model, x) / plane.max(1) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rs, cs) = win.span(oy, ox);
                    let in_image = rs.len() * cs.len();
                    let mut slots = Vec::with_capacity(k);
                    for r in rs {
                        for col in cs.clone() {
                            let a = self.addr(x, p * plane + r * win.width + col);
                            self.read(a);
                            slots.push(Some(a));
                        }
                    }
                    slots.resize(k, None);
                    let o = self.addr(y, out);
                    out += 1;
                    let (average, count) = match pooling {
                        Pooling::Average {
                            count_include_pad: true,
                        } => (true, k),
                        Pooling::Average { .. } => (true, in_image),
                        Pooling::Max => (false, 0),
                    };
                    self.rows
                        .pools
                        .entry((average, k))
                        .or_default()
                        .push(PoolRow {
                            slots,
                            out: o,
                            count: count as i64,
                        });
                }
            }
        }
        Ok(())
    }
}
