//! Witness generation: every table's main columns for one execution, filled by replaying the
//! row recipes over the execution's values, and the lookup tables' multiplicities (how often
//! the other tables' rows look each entry up).
//!
//! The engine has already computed every value; generation only lays them out, and refuses
//! (as an internal error) any value the circuit's own arithmetic would not accept.

use std::collections::HashMap;

use p3_field::PrimeCharacteristicRing;
use p3_matrix::dense::RowMajorMatrix;
use p3_matrix::Matrix;
use verity_engine::canonical::CanonicalModel;

use super::{fe, Circuit, PoolRow};
use crate::air::{Kind, Table, RANGE_BITS, TOP_LIMB_SHIFT};
use crate::config::Val;
use crate::error::ZkError;

impl Circuit {
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
        let mut g = Generation::new(self, vals);
        let mut traces = Vec::with_capacity(self.airs.len());
        // Tables come in an order where every table is filled after those whose lookups it
        // counts (MAC before requantization, requantization before its thresholds).
        for air in &self.airs {
            let height = air.preprocessed.height();
            let width = air.kind.main_width();
            let mut t = Trace {
                values: vec![Val::ZERO; height * width],
                width,
            };
            match air.kind {
                Kind::Io => g.io(&mut t),
                Kind::Gather { .. } => g.gather(&mut t),
                Kind::Mac { k } => g.mac(&mut t, k),
                Kind::Requant => g.requant(&mut t, height)?,
                Kind::Unary => g.unary(&mut t),
                Kind::Binary => g.binary(&mut t),
                Kind::MaxPool { k } => g.max_pool(&mut t, k)?,
                Kind::AvgPool { k } => g.avg_pool(&mut t, k)?,
                Kind::Table { table, .. } => match table {
                    Table::Threshold => g.threshold_counts(&mut t),
                    Table::Unary => g.unary_counts(&mut t)?,
                    Table::Binary => g.binary_counts(&mut t),
                    // Filled last, once every table has made its range checks.
                    Table::Range => {}
                },
            }
            traces.push(RowMajorMatrix::new(t.values, width));
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
            let counts = g.range_counts.into_iter().map(Val::from_u64).collect();
            traces[i] = RowMajorMatrix::new(counts, self.airs[i].kind.lanes());
        }
        Ok(traces)
    }
}

/// One table's main columns, row-major.
struct Trace {
    values: Vec<Val>,
    width: usize,
}

impl Trace {
    fn row(&mut self, i: usize) -> &mut [Val] {
        &mut self.values[i * self.width..(i + 1) * self.width]
    }
}

/// What witness generation carries from table to table.
struct Generation<'c> {
    circuit: &'c Circuit,
    /// Every value of the execution, by address.
    mem: Vec<i8>,
    /// Finished dot products by output address: the MAC table's results, requantized next.
    accs: HashMap<usize, i64>,
    /// Lookups of each range table entry.
    range_counts: Vec<u64>,
    /// Lookups of each threshold table entry (channel * 256 + y + 128).
    threshold_counts: Vec<u64>,
}

impl<'c> Generation<'c> {
    fn new(circuit: &'c Circuit, vals: &[Vec<i8>]) -> Generation<'c> {
        let mut mem = vec![0i8; circuit.memory_size];
        for (v, data) in vals.iter().enumerate() {
            let base = circuit.base[v];
            if base != usize::MAX {
                mem[base..base + data.len()].copy_from_slice(data);
            }
        }
        Generation {
            circuit,
            mem,
            accs: HashMap::new(),
            range_counts: vec![0; 1 << RANGE_BITS],
            threshold_counts: vec![0; circuit.thresholds.len() * 256],
        }
    }

    fn value(&self, addr: usize) -> i64 {
        self.mem[addr] as i64
    }

    /// The value in a slot of a gathered chunk or pool window (0 for an empty slot).
    fn slot(&self, slot: Option<usize>) -> i64 {
        slot.map_or(0, |a| self.value(a))
    }

    /// Counts a range-table lookup of `v`, refusing a value outside the table.
    fn range_check(&mut self, v: i64) -> Result<(), ZkError> {
        let i = usize::try_from(v)
            .ok()
            .filter(|&i| i < self.range_counts.len())
            .ok_or_else(|| ZkError::Internal(format!("range check of {v} fails")))?;
        self.range_counts[i] += 1;
        Ok(())
    }

    /// `[in, out]`: the input or constant provided, and the output queried.
    fn io(&self, t: &mut Trace) {
        let rows = &self.circuit.rows;
        for (i, p) in rows.io_in.iter().enumerate() {
            t.row(i)[0] = fe(self.value(p.addr));
        }
        for (i, &a) in rows.io_out.iter().enumerate() {
            t.row(i)[1] = fe(self.value(a));
        }
    }

    /// `[v_0..v_k]`: the gathered values.
    fn gather(&self, t: &mut Trace) {
        for (i, slots) in self.circuit.rows.gather.iter().enumerate() {
            let row = t.row(i);
            for (j, &s) in slots.iter().enumerate() {
                row[j] = fe(self.slot(s));
            }
        }
    }

    /// `[x_0..x_k, acc]`: the chunk's values and the running dot product.
    fn mac(&mut self, t: &mut Trace, k: usize) {
        let rows = &self.circuit.rows;
        let mut acc = 0i64;
        for (i, m) in rows.mac.iter().enumerate() {
            let slots = &rows.gather[m.chunk];
            let row = t.row(i);
            let mut dot = 0i64;
            for (j, (&s, &w)) in slots.iter().zip(&m.w).enumerate() {
                let x = self.slot(s);
                dot += x * w as i64;
                row[j] = fe(x);
            }
            acc = if m.first { dot } else { acc + dot };
            row[k] = fe(acc);
            if m.last {
                self.accs.insert(m.out, acc);
            }
        }
    }

    /// `[acc, y, t_lo, t_hi, l0, l1, l2, h0, h1, h2]`: the dot product, its int8, the
    /// thresholds around it and the limbs of both differences.
    fn requant(&mut self, t: &mut Trace, height: usize) -> Result<(), ZkError> {
        let circuit = self.circuit;
        let limb = 1i64 << RANGE_BITS;
        let split = |d: i64| [d % limb, d / limb % limb, d / (limb * limb)];
        for (i, r) in circuit.rows.requant.iter().enumerate() {
            let acc = *self.accs.get(&r.out).ok_or_else(|| {
                ZkError::Internal(format!("no dot product for address {}", r.out))
            })?;
            let y = self.value(r.out);
            let at = (y + 128) as usize;
            let (lo, hi) = (
                circuit.thresholds[r.channel][at],
                circuit.thresholds[r.channel][at + 1],
            );
            if !(lo <= acc && acc < hi) {
                return Err(ZkError::Internal(format!(
                    "requantization of {acc} to {y} disagrees with the engine"
                )));
            }
            let (above, below) = (split(acc - lo), split(hi - 1 - acc));
            for v in above.iter().chain(&below) {
                self.range_check(*v)?;
            }
            self.range_check(above[2] << TOP_LIMB_SHIFT)?;
            self.range_check(below[2] << TOP_LIMB_SHIFT)?;
            let row = [fe(acc), fe(y), fe(lo), fe(hi)]
                .into_iter()
                .chain(above.map(fe))
                .chain(below.map(fe));
            for (cell, v) in t.row(i).iter_mut().zip(row) {
                *cell = v;
            }
            self.threshold_counts[r.channel * 256 + at] += 1;
        }
        // Padding rows: acc 0 within [T_lo, T_hi) = [0, 1).
        for i in circuit.rows.requant.len()..height {
            t.row(i)[3] = Val::ONE;
        }
        Ok(())
    }

    fn threshold_counts(&self, t: &mut Trace) {
        for (v, &n) in t.values.iter_mut().zip(&self.threshold_counts) {
            *v = Val::from_u64(n);
        }
    }

    /// `[x, y]`.
    fn unary(&self, t: &mut Trace) {
        for (i, r) in self.circuit.rows.unary.iter().enumerate() {
            let row = t.row(i);
            row[0] = fe(self.value(r.input));
            row[1] = fe(self.value(r.out));
        }
    }

    /// Lookups of each unary table entry (table * 256 + x + 128).
    fn unary_counts(&self, t: &mut Trace) -> Result<(), ZkError> {
        for r in &self.circuit.rows.unary {
            let entry = (self.value(r.input) + 128) as usize;
            if self.circuit.unary_tables[r.table][entry] != self.mem[r.out] {
                return Err(ZkError::Internal(
                    "unary op disagrees with its table".into(),
                ));
            }
            t.values[r.table * 256 + entry] += Val::ONE;
        }
        Ok(())
    }

    /// `[a, b, y]`.
    fn binary(&self, t: &mut Trace) {
        for (i, r) in self.circuit.rows.binary.iter().enumerate() {
            let row = t.row(i);
            row[0] = fe(self.value(r.a));
            row[1] = fe(self.value(r.b));
            row[2] = fe(self.value(r.out));
        }
    }

    /// Lookups of each binary table entry (table * 65536 + (a + 128) * 256 + b + 128).
    fn binary_counts(&self, t: &mut Trace) {
        for r in &self.circuit.rows.binary {
            let entry = ((self.value(r.a) + 128) << 8 | (self.value(r.b) + 128)) as usize;
            t.values[r.table * 65536 + entry] += Val::ONE;
        }
    }

    /// `[x_0..x_k, y, s_0..s_k]`: the window, its maximum, and a one-hot selector of the first
    /// value equal to it.
    fn max_pool(&mut self, t: &mut Trace, k: usize) -> Result<(), ZkError> {
        for (i, PoolRow { slots, out, .. }) in
            self.circuit.rows.pools[&(false, k)].iter().enumerate()
        {
            let y = self.value(*out);
            let row = t.row(i);
            row[k] = fe(y);
            let mut chosen = false;
            for (j, s) in slots.iter().enumerate() {
                if let Some(a) = s {
                    let x = self.value(*a);
                    row[j] = fe(x);
                    row[k + 1 + j] = Val::from_bool(!chosen && x == y);
                    chosen |= x == y;
                    self.range_check(y - x)?;
                }
            }
            if !chosen {
                return Err(ZkError::Internal(
                    "max pool output not in its window".into(),
                ));
            }
        }
        Ok(())
    }

    /// `[x_0..x_k, y, r]`: the window, its rounded mean and the division's remainder.
    fn avg_pool(&mut self, t: &mut Trace, k: usize) -> Result<(), ZkError> {
        for (i, PoolRow { slots, out, count }) in
            self.circuit.rows.pools[&(true, k)].iter().enumerate()
        {
            let y = self.value(*out);
            let row = t.row(i);
            let mut sum = 0;
            for (j, s) in slots.iter().enumerate() {
                if let Some(a) = s {
                    row[j] = fe(self.value(*a));
                    sum += self.value(*a);
                }
            }
            let r = 2 * sum + count - 2 * count * y;
            row[k] = fe(y);
            row[k + 1] = fe(r);
            self.range_check(r)?;
            self.range_check(2 * count - 1 - r)?;
            self.range_check(y + 128)?;
            self.range_check(127 - y)?;
        }
        Ok(())
    }
}
