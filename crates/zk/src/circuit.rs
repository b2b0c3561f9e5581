//! Compiles a canonical int8 model into the tables of its proof (preprocessed columns, fixed by
//! the model) and fills their witness columns from one execution.
//!
//! Compilation lays out every row once, as a recipe; [`Circuit::witness`] replays the recipes
//! over the execution's values, so layout and witness cannot drift apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use p3_field::PrimeCharacteristicRing;
use p3_matrix::dense::RowMajorMatrix;
use p3_matrix::Matrix;
use verity_engine::canonical::{add_i8, clamp_i8, CanonicalModel, QOp, Requant};
use verity_engine::geometry::Window;

use crate::air::{Kind, Table, ZkAir, RANGE_BITS, TOP_LIMB_SHIFT};
use crate::config::Val;
use crate::error::{unsupported, ZkError};

/// Multiply-accumulates per matrix row (and values per gathered chunk).
pub const MAC_WIDTH: usize = 32;
/// Every accumulator and every threshold stays within ±2^28, which keeps the 29-bit limb
/// range checks of requantization sound (docs/zk.md).
pub const ACC_BOUND: i64 = 1 << 28;
/// Smallest table height.
const MIN_HEIGHT: usize = 16;
/// Largest table height (log2): the stated security level assumes no table is taller.
pub const MAX_LOG_HEIGHT: usize = 20;

fn fe(v: i64) -> Val {
    Val::from_i64(v)
}

fn height(rows: usize) -> usize {
    rows.max(MIN_HEIGHT).next_power_of_two()
}

/// Where a graph input or constant row of the IO table takes its value from.
#[derive(Clone, Copy)]
enum Source {
    /// Index into the statement's quantized input vector.
    Input(usize),
    Const(i8),
}

/// Every table's rows, as recipes: what each row reads, computes and provides.
#[derive(Default)]
struct Rows {
    io_in: Vec<(usize, Source)>,
    io_out: Vec<usize>,
    /// Per chunk: the gathered addresses (None = empty slot).
    gather: Vec<Vec<Option<usize>>>,
    /// Per row: chunk, weights, first, last, output address (= acc id).
    mac: Vec<MacRow>,
    /// Per output: (address, channel).
    requant: Vec<(usize, usize)>,
    /// Per element: (in address, table, out address).
    unary: Vec<(usize, usize, usize)>,
    /// Per element: (a address, b address, table, out address).
    binary: Vec<(usize, usize, usize, usize)>,
    /// Per (average?, kernel size): one row per pooled output.
    pools: BTreeMap<(bool, usize), Vec<PoolRow>>,
}

struct PoolRow {
    /// The window's in-image addresses (None = outside the image).
    slots: Vec<Option<usize>>,
    out: usize,
    /// The divisor (average pooling only).
    count: i64,
}

struct MacRow {
    chunk: usize,
    w: Vec<i8>,
    first: bool,
    last: bool,
    out: usize,
}

/// The compiled model: tables with their preprocessed columns, and the recipes to fill them.
pub struct Circuit {
    rows: Rows,
    /// Address of element 0 of every value id.
    base: Vec<usize>,
    memory_size: usize,
    /// How often each address is read.
    reads: Vec<u64>,
    /// Per channel: T(-128) ..= T(128).
    thresholds: Vec<Vec<i64>>,
    unary_tables: Vec<Vec<i8>>,
    /// (ma, mb, shift) per binary table.
    binary_tables: Vec<(i32, i32, u8)>,
    /// Lengths of the statement's input and output vectors.
    pub input_len: usize,
    pub output_len: usize,
    /// The tables in proof order (periodic columns empty; [`Circuit::airs_for`] fills them).
    pub airs: Vec<ZkAir>,
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

impl Circuit {
    pub fn compile(model: &CanonicalModel) -> Result<Circuit, ZkError> {
        let numel = |v: usize| model.shapes[v].iter().product::<usize>();
        // Addresses: inputs, then each op's output; a Reshape's output aliases its input.
        let mut base = vec![usize::MAX; model.shapes.len()];
        let mut next = 0usize;
        for i in &model.inputs {
            base[i.value] = next;
            next += numel(i.value);
        }
        for op in &model.ops {
            match op {
                QOp::Reshape { x, y } => base[*y] = base[*x],
                _ => {
                    base[op.output()] = next;
                    next += numel(op.output());
                }
            }
        }
        let mut c = Circuit {
            rows: Rows::default(),
            base,
            memory_size: next,
            reads: vec![0; next],
            thresholds: Vec::new(),
            unary_tables: Vec::new(),
            binary_tables: Vec::new(),
            input_len: 0,
            output_len: 0,
            airs: Vec::new(),
        };
        for i in &model.inputs {
            for j in 0..numel(i.value) {
                c.rows
                    .io_in
                    .push((c.base[i.value] + j, Source::Input(c.input_len + j)));
            }
            c.input_len += numel(i.value);
        }
        for op in &model.ops {
            c.compile_op(model, op)?;
        }
        for o in &model.outputs {
            for j in 0..numel(o.value) {
                let addr = c.base[o.value] + j;
                c.read(addr);
                c.rows.io_out.push(addr);
            }
            c.output_len += numel(o.value);
        }
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
        // Periodic columns of the right length, so setup sees the same layout as proofs.
        let io_height = c.airs[0].preprocessed.height();
        c.airs[0].periodic = vec![vec![Val::ZERO; io_height]; 2];
        Ok(c)
    }

    fn read(&mut self, addr: usize) {
        self.reads[addr] += 1;
    }

    fn addr(&self, v: usize, i: usize) -> usize {
        self.base[v] + i
    }

    fn unary_table(&mut self, table: Vec<i8>) -> usize {
        match self.unary_tables.iter().position(|t| *t == table) {
            Some(i) => i,
            None => {
                self.unary_tables.push(table);
                self.unary_tables.len() - 1
            }
        }
    }

    fn unary_op(&mut self, x: usize, y: usize, n: usize, table: Vec<i8>, x_len: usize) {
        let t = self.unary_table(table);
        for i in 0..n {
            let a = self.addr(x, i % x_len.max(1));
            self.read(a);
            self.rows.unary.push((a, t, self.addr(y, i)));
        }
    }

    /// Channels of one Dense/Conv: refuses dot products that could leave ±2^28.
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

    /// Lays out the gather chunks of one dot-product input and the MAC rows of its outputs.
    fn dot_products(
        &mut self,
        patch: &[(usize, usize)],
        outputs: impl Iterator<Item = (usize, usize)>,
        w: &[i8],
        taps: usize,
        channel0: usize,
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
                let mut ws: Vec<i8> = part.iter().map(|&(_, t)| w[o * taps + t]).collect();
                ws.resize(MAC_WIDTH, 0);
                self.rows.mac.push(MacRow {
                    chunk,
                    w: ws,
                    first: i == 0,
                    last: i + 1 == n,
                    out,
                });
            }
            self.rows.requant.push((out, channel0 + o));
        }
    }

    fn compile_op(&mut self, model: &CanonicalModel, op: &QOp) -> Result<(), ZkError> {
        let numel = |v: usize| model.shapes[v].iter().product::<usize>();
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
                let channel0 = self.channels("Dense", w, b, rq)?;
                for r in 0..numel(*x) / (*k).max(1) {
                    let patch: Vec<(usize, usize)> =
                        (0..*k).map(|i| (self.addr(*x, r * k + i), i)).collect();
                    let outs: Vec<(usize, usize)> =
                        (0..*n).map(|o| (o, self.addr(*y, r * n + o))).collect();
                    self.dot_products(&patch, outs.into_iter(), w, *k, channel0);
                }
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
                let channel0 = self.channels("Conv", w, b, rq)?;
                let taps = win.channels * win.kernel_h * win.kernel_w;
                let (oh, ow) = (win.out_h(), win.out_w());
                let plane = win.channels * win.height * win.width;
                for img in 0..numel(*x) / plane.max(1) {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let patch = self.conv_patch(*x, img * plane, win, oy, ox);
                            let out_base = img * out_channels * oh * ow + oy * ow + ox;
                            let outs: Vec<(usize, usize)> = (0..*out_channels)
                                .map(|o| (o, self.addr(*y, out_base + o * oh * ow)))
                                .collect();
                            self.dot_products(&patch, outs.into_iter(), w, taps, channel0);
                        }
                    }
                }
            }
            QOp::Relu { x, y } => {
                let table = (-128i16..=127).map(|v| v.max(0) as i8).collect();
                self.unary_op(*x, *y, numel(*y), table, numel(*x));
            }
            QOp::Lut { x, y, table } => self.unary_op(*x, *y, numel(*y), table.clone(), numel(*x)),
            QOp::Concat { xs, y, axis } => {
                let outer: usize = model.shapes[*y][..*axis].iter().product();
                let mut at = 0;
                for o in 0..outer {
                    for (x, rq) in xs {
                        let chunk = numel(*x) / outer.max(1);
                        let table: Vec<i8> =
                            (-128i64..=127).map(|v| clamp_i8(rq.apply(v))).collect();
                        let t = self.unary_table(table);
                        for i in 0..chunk {
                            let a = self.addr(*x, o * chunk + i);
                            self.read(a);
                            self.rows.unary.push((a, t, self.addr(*y, at)));
                            at += 1;
                        }
                    }
                }
            }
            QOp::Add {
                a,
                b,
                y,
                ma,
                mb,
                shift,
            } => {
                let key = (*ma, *mb, *shift);
                let t = match self.binary_tables.iter().position(|k| *k == key) {
                    Some(t) => t,
                    None => {
                        self.binary_tables.push(key);
                        self.binary_tables.len() - 1
                    }
                };
                let b_len = numel(*b).max(1);
                for i in 0..numel(*y) {
                    let (aa, ba) = (self.addr(*a, i), self.addr(*b, i % b_len));
                    self.read(aa);
                    self.read(ba);
                    self.rows.binary.push((aa, ba, t, self.addr(*y, i)));
                }
            }
            QOp::Const { y, data } => {
                for (i, &v) in data.iter().enumerate() {
                    self.rows.io_in.push((self.addr(*y, i), Source::Const(v)));
                }
            }
            QOp::MaxPool { x, y, win } | QOp::AvgPool { x, y, win, .. } => {
                let k = win.kernel_h * win.kernel_w;
                // The remainder check 0 <= r < 2 * count must fit the range table.
                if matches!(op, QOp::AvgPool { .. }) && 2 * k > 1 << RANGE_BITS {
                    return Err(unsupported(
                        "AveragePool",
                        "windows of more than 2048 values",
                    ));
                }
                let (oh, ow) = (win.out_h(), win.out_w());
                let plane = win.height * win.width;
                let mut out = 0;
                for p in 0..numel(*x) / plane.max(1) {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (rs, cs) = win.span(oy, ox);
                            let count = rs.len() * cs.len();
                            let mut slots = Vec::with_capacity(k);
                            for r in rs {
                                for col in cs.clone() {
                                    let a = self.addr(*x, p * plane + r * win.width + col);
                                    self.read(a);
                                    slots.push(Some(a));
                                }
                            }
                            slots.resize(k, None);
                            let o = self.addr(*y, out);
                            out += 1;
                            let (average, count) = match op {
                                QOp::AvgPool {
                                    count_include_pad: true,
                                    ..
                                } => (true, k),
                                QOp::AvgPool { .. } => (true, count),
                                _ => (false, 0),
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
            }
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

    /// The in-image taps of a conv window: (address, tap index) in the weights' tap order.
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

    /// Preprocessed columns of every table the model uses, in a fixed order.
    fn build_airs(&self) -> Vec<ZkAir> {
        let mut airs = Vec::new();
        // Rows (entries, for tables) are padded to a power-of-two height: tables with copies
        // of their first entry (a duplicate entry adds nothing a prover could use), MAC rows
        // with fresh dot products that are never emitted, other tables with inactive zero rows.
        let mut push = |kind: Kind, rows: Vec<Vec<Val>>| {
            let kind = match kind {
                Kind::Table { table, .. } => table.kind(rows.len(), MIN_HEIGHT),
                other => other,
            };
            let width = kind.preprocessed_width();
            let lanes = kind.lanes();
            let h = height(rows.len().div_ceil(lanes));
            let mut values = Vec::with_capacity(h * width);
            let filler = match kind {
                Kind::Table { .. } => rows.first().cloned().unwrap_or_default(),
                Kind::Mac { .. } => {
                    let mut first = vec![Val::ZERO; width];
                    first[2] = Val::ONE;
                    first
                }
                _ => vec![Val::ZERO; width],
            };
            for r in rows
                .iter()
                .chain(std::iter::repeat(&filler))
                .take(h * lanes)
            {
                debug_assert_eq!(r.len() * lanes, width);
                values.extend_from_slice(r);
            }
            airs.push(ZkAir {
                kind,
                preprocessed: Arc::new(RowMajorMatrix::new(values, width)),
                periodic: Vec::new(),
            });
        };
        // Lanes are chosen by `push` from the number of entries.
        let lookup = |table: Table| Kind::Table { table, lanes: 1 };
        let b = |v: bool| Val::from_bool(v);
        let u = |v: usize| Val::from_usize(v);
        let reads = |a: usize| Val::from_u64(self.reads[a]);
        let zero = Val::ZERO;

        // IO: inputs and constants provided, outputs queried.
        let n = self.rows.io_in.len().max(self.rows.io_out.len());
        let io = (0..n)
            .map(|i| {
                let (in_addr, mult, cv) = match self.rows.io_in.get(i) {
                    Some(&(a, Source::Const(v))) => (u(a), reads(a), fe(v as i64)),
                    Some(&(a, Source::Input(_))) => (u(a), reads(a), zero),
                    None => (zero, zero, zero),
                };
                let (out_addr, rd) = match self.rows.io_out.get(i) {
                    Some(&a) => (u(a), Val::ONE),
                    None => (zero, zero),
                };
                vec![in_addr, mult, cv, out_addr, rd]
            })
            .collect();
        push(Kind::Io, io);

        let k = MAC_WIDTH;
        if !self.rows.mac.is_empty() {
            let mut chunk_reads = vec![0usize; self.rows.gather.len()];
            for m in &self.rows.mac {
                chunk_reads[m.chunk] += 1;
            }
            let gather = self
                .rows
                .gather
                .iter()
                .zip(chunk_reads)
                .enumerate()
                .map(|(id, (slots, mult))| {
                    let mut r = vec![u(id), u(mult)];
                    r.extend(slots.iter().map(|s| u(s.unwrap_or(0))));
                    r.extend(slots.iter().map(|s| b(s.is_some())));
                    r
                })
                .collect();
            push(Kind::Gather { k }, gather);
            let mac = self
                .rows
                .mac
                .iter()
                .map(|m| {
                    let mut r = vec![u(m.chunk), Val::ONE, b(m.first), b(m.last), u(m.out)];
                    r.extend(m.w.iter().map(|&w| fe(w as i64)));
                    r
                })
                .collect();
            push(Kind::Mac { k }, mac);
            let requant = self
                .rows
                .requant
                .iter()
                .map(|&(a, ch)| vec![u(a), u(ch), u(a), reads(a), Val::ONE])
                .collect();
            push(Kind::Requant, requant);
            let thr = self
                .thresholds
                .iter()
                .enumerate()
                .flat_map(|(ch, t)| {
                    (0..256).map(move |i| vec![u(ch), fe(i as i64 - 128), fe(t[i]), fe(t[i + 1])])
                })
                .collect();
            push(lookup(Table::Threshold), thr);
        }
        if !self.rows.unary.is_empty() {
            let rows = self
                .rows
                .unary
                .iter()
                .map(|&(x, t, y)| vec![u(x), u(t), u(y), reads(y), Val::ONE])
                .collect();
            push(Kind::Unary, rows);
            let table = self
                .unary_tables
                .iter()
                .enumerate()
                .flat_map(|(t, tab)| {
                    (0..256).map(move |i| vec![u(t), fe(i as i64 - 128), fe(tab[i] as i64)])
                })
                .collect();
            push(lookup(Table::Unary), table);
        }
        if !self.rows.binary.is_empty() {
            let rows = self
                .rows
                .binary
                .iter()
                .map(|&(a, bb, t, y)| vec![u(a), u(bb), u(t), u(y), reads(y), Val::ONE])
                .collect();
            push(Kind::Binary, rows);
            let table = self
                .binary_tables
                .iter()
                .enumerate()
                .flat_map(|(t, &(ma, mb, shift))| {
                    (0..65536).map(move |i| {
                        let (av, bv) = ((i >> 8) as i64 - 128, (i & 255) as i64 - 128);
                        let y = add_i8(av as i8, bv as i8, ma, mb, shift);
                        vec![u(t), fe(av), fe(bv), fe(y as i64)]
                    })
                })
                .collect();
            push(lookup(Table::Binary), table);
        }
        for (&(average, k), pool) in &self.rows.pools {
            let rows = pool
                .iter()
                .map(|p| {
                    let mut r: Vec<Val> = p.slots.iter().map(|s| u(s.unwrap_or(0))).collect();
                    r.extend(p.slots.iter().map(|s| b(s.is_some())));
                    r.extend([u(p.out), reads(p.out)]);
                    if average {
                        r.push(fe(p.count));
                    }
                    r.push(Val::ONE);
                    r
                })
                .collect();
            let kind = if average {
                Kind::AvgPool { k }
            } else {
                Kind::MaxPool { k }
            };
            push(kind, rows);
        }
        if !(self.rows.requant.is_empty() && self.rows.pools.is_empty()) {
            let rows = (0..1usize << RANGE_BITS).map(|v| vec![u(v)]).collect();
            push(lookup(Table::Range), rows);
        }
        airs
    }

    /// The statement's periodic columns for the IO table: inputs at the input rows (zero at
    /// constant and padding rows), outputs at the output rows.
    pub fn airs_for(&self, input: &[i8], output: &[i8]) -> Vec<ZkAir> {
        let mut airs = self.airs.clone();
        let h = airs[0].preprocessed.height();
        let mut pin = vec![Val::ZERO; h];
        for (i, (_, src)) in self.rows.io_in.iter().enumerate() {
            if let Source::Input(j) = src {
                pin[i] = fe(input[*j] as i64);
            }
        }
        let mut pout = vec![Val::ZERO; h];
        for (i, &v) in output.iter().enumerate() {
            pout[i] = fe(v as i64);
        }
        airs[0].periodic = vec![pin, pout];
        airs
    }

    /// The statement of one execution: the quantized input and output vectors.
    pub fn statement(&self, model: &CanonicalModel, vals: &[Vec<i8>]) -> (Vec<i8>, Vec<i8>) {
        let cat = |ids: Vec<usize>| ids.iter().flat_map(|&v| vals[v].iter().copied()).collect();
        (
            cat(model.inputs.iter().map(|i| i.value).collect()),
            cat(model.outputs.iter().map(|o| o.value).collect()),
        )
    }

    /// Fills every table's main columns from the execution's values (by value id).
    pub fn witness(&self, vals: &[Vec<i8>]) -> Result<Vec<RowMajorMatrix<Val>>, ZkError> {
        let mut mem = vec![0i8; self.memory_size];
        for (v, data) in vals.iter().enumerate() {
            if self.base[v] != usize::MAX {
                mem[self.base[v]..self.base[v] + data.len()].copy_from_slice(data);
            }
        }
        let mut range_mult = vec![0u64; 1 << RANGE_BITS];
        let mut range = |v: i64| -> Result<(), ZkError> {
            let i = usize::try_from(v)
                .ok()
                .filter(|&i| i < range_mult.len())
                .ok_or_else(|| ZkError::Internal(format!("range check of {v} fails")))?;
            range_mult[i] += 1;
            Ok(())
        };
        let mut traces = Vec::new();
        let mut accs: HashMap<usize, i64> = HashMap::new();
        let mut threshold_mult = vec![0u64; self.thresholds.len() * 256];
        for air in &self.airs {
            let h = air.preprocessed.height();
            let w = air.kind.main_width();
            let mut t = vec![Val::ZERO; h * w];
            match air.kind {
                Kind::Io => {
                    for (i, &(a, _)) in self.rows.io_in.iter().enumerate() {
                        t[i * w] = fe(mem[a] as i64);
                    }
                    for (i, &a) in self.rows.io_out.iter().enumerate() {
                        t[i * w + 1] = fe(mem[a] as i64);
                    }
                }
                Kind::Gather { .. } => {
                    for (i, slots) in self.rows.gather.iter().enumerate() {
                        for (j, s) in slots.iter().enumerate() {
                            t[i * w + j] = fe(s.map_or(0, |a| mem[a] as i64));
                        }
                    }
                }
                Kind::Mac { k } => {
                    let mut acc = 0i64;
                    for (i, m) in self.rows.mac.iter().enumerate() {
                        let slots = &self.rows.gather[m.chunk];
                        let mut dot = 0i64;
                        for (j, (s, &wv)) in slots.iter().zip(&m.w).enumerate() {
                            let x = s.map_or(0, |a| mem[a] as i64);
                            dot += x * wv as i64;
                            t[i * w + j] = fe(x);
                        }
                        acc = if m.first { dot } else { acc + dot };
                        t[i * w + k] = fe(acc);
                        if m.last {
                            accs.insert(m.out, acc);
                        }
                    }
                }
                Kind::Requant => {
                    let limb = 1i64 << RANGE_BITS;
                    for (i, &(a, ch)) in self.rows.requant.iter().enumerate() {
                        let acc = accs[&a];
                        let y = mem[a] as i64;
                        let at = (y + 128) as usize;
                        let (lo, hi) = (self.thresholds[ch][at], self.thresholds[ch][at + 1]);
                        if !(lo <= acc && acc < hi) {
                            return Err(ZkError::Internal(format!(
                                "requantization of {acc} to {y} disagrees with the engine"
                            )));
                        }
                        let split = |d: i64| [d % limb, d / limb % limb, d / (limb * limb)];
                        let (above, below) = (split(acc - lo), split(hi - 1 - acc));
                        for v in above.iter().chain(&below) {
                            range(*v)?;
                        }
                        range(above[2] << TOP_LIMB_SHIFT)?;
                        range(below[2] << TOP_LIMB_SHIFT)?;
                        let row = [fe(acc), fe(y), fe(lo), fe(hi)]
                            .into_iter()
                            .chain(above.map(fe))
                            .chain(below.map(fe));
                        let row: Vec<Val> = row.collect();
                        t[i * w..(i + 1) * w].copy_from_slice(&row);
                        threshold_mult[ch * 256 + at] += 1;
                    }
                    // Padding rows: acc 0 within [T_lo, T_hi) = [0, 1).
                    for i in self.rows.requant.len()..h {
                        t[i * w + 3] = Val::ONE;
                    }
                }
                Kind::Table {
                    table: Table::Threshold,
                    ..
                } => {
                    for (v, &n) in t.iter_mut().zip(&threshold_mult) {
                        *v = Val::from_u64(n);
                    }
                }
                Kind::Unary => {
                    for (i, &(x, _, y)) in self.rows.unary.iter().enumerate() {
                        t[i * w] = fe(mem[x] as i64);
                        t[i * w + 1] = fe(mem[y] as i64);
                    }
                }
                Kind::Table {
                    table: Table::Unary,
                    ..
                } => {
                    for &(x, tab, y) in &self.rows.unary {
                        if self.unary_tables[tab][(mem[x] as i64 + 128) as usize] != mem[y] {
                            return Err(ZkError::Internal(
                                "unary op disagrees with its table".into(),
                            ));
                        }
                        t[tab * 256 + (mem[x] as i64 + 128) as usize] += Val::ONE;
                    }
                }
                Kind::Binary => {
                    for (i, &(a, b, _, y)) in self.rows.binary.iter().enumerate() {
                        t[i * w] = fe(mem[a] as i64);
                        t[i * w + 1] = fe(mem[b] as i64);
                        t[i * w + 2] = fe(mem[y] as i64);
                    }
                }
                Kind::Table {
                    table: Table::Binary,
                    ..
                } => {
                    for &(a, b, tab, _) in &self.rows.binary {
                        let i = ((mem[a] as i64 + 128) << 8 | (mem[b] as i64 + 128)) as usize;
                        t[tab * 65536 + i] += Val::ONE;
                    }
                }
                Kind::MaxPool { k } => {
                    for (i, PoolRow { slots, out, .. }) in
                        self.rows.pools[&(false, k)].iter().enumerate()
                    {
                        let y = mem[*out] as i64;
                        let row = &mut t[i * w..(i + 1) * w];
                        row[k] = fe(y);
                        let mut chosen = false;
                        for (j, s) in slots.iter().enumerate() {
                            if let Some(a) = s {
                                let x = mem[*a] as i64;
                                row[j] = fe(x);
                                row[k + 1 + j] = Val::from_bool(!chosen && x == y);
                                chosen |= x == y;
                                range(y - x)?;
                            }
                        }
                        if !chosen {
                            return Err(ZkError::Internal(
                                "max pool output not in its window".into(),
                            ));
                        }
                    }
                }
                Kind::AvgPool { k } => {
                    for (i, PoolRow { slots, out, count }) in
                        self.rows.pools[&(true, k)].iter().enumerate()
                    {
                        let y = mem[*out] as i64;
                        let row = &mut t[i * w..(i + 1) * w];
                        let mut sum = 0;
                        for (j, s) in slots.iter().enumerate() {
                            if let Some(a) = s {
                                row[j] = fe(mem[*a] as i64);
                                sum += mem[*a] as i64;
                            }
                        }
                        let r = 2 * sum + count - 2 * count * y;
                        row[k] = fe(y);
                        row[k + 1] = fe(r);
                        range(r)?;
                        range(2 * count - 1 - r)?;
                        range(y + 128)?;
                        range(127 - y)?;
                    }
                }
                Kind::Table {
                    table: Table::Range,
                    ..
                } => {
                    // Filled last, once every table has made its range checks.
                    traces.push(RowMajorMatrix::new(Vec::new(), 1));
                    continue;
                }
            }
            traces.push(RowMajorMatrix::new(t, w));
        }
        let range_table = self.airs.iter().position(|a| {
            matches!(
                a.kind,
                Kind::Table {
                    table: Table::Range,
                    ..
                }
            )
        });
        if let Some(i) = range_table {
            let mult = range_mult.into_iter().map(Val::from_u64).collect();
            traces[i] = RowMajorMatrix::new(mult, self.airs[i].kind.lanes());
        }
        Ok(traces)
    }
}
