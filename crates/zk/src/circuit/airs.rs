//! The tables' preprocessed columns, built from the row recipes: addresses, read counts,
//! weights and lookup tables, all fixed by the model (their commitment is the model's
//! verifying key). Tables come in a fixed order, each padded to a power-of-two height.

use std::sync::Arc;

use p3_field::PrimeCharacteristicRing;
use p3_matrix::dense::RowMajorMatrix;
use p3_matrix::Matrix;
use verity_engine::canonical::add_i8;

use super::{fe, Circuit, Source, MAC_WIDTH};
use crate::air::{Kind, Table, ZkAir, RANGE_BITS};
use crate::config::Val;

/// Smallest table height.
const MIN_HEIGHT: usize = 16;

fn height(rows: usize) -> usize {
    rows.max(MIN_HEIGHT).next_power_of_two()
}

fn u(v: usize) -> Val {
    Val::from_usize(v)
}

fn bit(v: bool) -> Val {
    Val::from_bool(v)
}

/// A lookup table's kind; its lanes are chosen by [`padded`] from the number of entries.
fn lookup(table: Table) -> Kind {
    Kind::Table { table, lanes: 1 }
}

/// One table from its rows (entries, for lookup tables), padded to a power-of-two height:
/// lookup tables with copies of their first entry (a duplicate entry adds nothing a prover
/// could use), MAC rows with fresh dot products that are never emitted, other tables with
/// inactive zero rows.
fn padded(kind: Kind, rows: Vec<Vec<Val>>) -> ZkAir {
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
    ZkAir {
        kind,
        preprocessed: Arc::new(RowMajorMatrix::new(values, width)),
        periodic: Vec::new(),
    }
}

impl Circuit {
    /// Preprocessed columns of every table the model uses, in proof order: IO, the dot
    /// products, unary ops, binary ops, pools, and the range table they check against.
    pub(super) fn build_airs(&self) -> Vec<ZkAir> {
        let mut airs = vec![self.io_air()];
        if !self.rows.mac.is_empty() {
            airs.extend(self.dot_product_airs());
        }
        if !self.rows.unary.is_empty() {
            airs.extend(self.unary_airs());
        }
        if !self.rows.binary.is_empty() {
            airs.extend(self.binary_airs());
        }
        airs.extend(self.pool_airs());
        if !(self.rows.requant.is_empty() && self.rows.pools.is_empty()) {
            let range = (0..1usize << RANGE_BITS).map(|v| vec![u(v)]).collect();
            airs.push(padded(lookup(Table::Range), range));
        }
        airs
    }

    /// How often the value at `addr` is read: the multiplicity its provider puts on `mem`.
    fn reads(&self, addr: usize) -> Val {
        Val::from_u64(self.reads[addr])
    }

    /// IO: inputs and constants provided, outputs queried.
    fn io_air(&self) -> ZkAir {
        let zero = Val::ZERO;
        let n = self.rows.io_in.len().max(self.rows.io_out.len());
        let rows = (0..n)
            .map(|i| {
                let (in_addr, mult, constant) = match self.rows.io_in.get(i) {
                    Some(p) => {
                        let constant = match p.source {
                            Source::Const(v) => fe(v as i64),
                            Source::Input(_) => zero,
                        };
                        (u(p.addr), self.reads(p.addr), constant)
                    }
                    None => (zero, zero, zero),
                };
                let (out_addr, read) = match self.rows.io_out.get(i) {
                    Some(&a) => (u(a), Val::ONE),
                    None => (zero, zero),
                };
                vec![in_addr, mult, constant, out_addr, read]
            })
            .collect();
        let mut io = padded(Kind::Io, rows);
        // Periodic columns of the right length, so setup sees the same layout as proofs.
        let h = io.preprocessed.height();
        io.periodic = vec![vec![Val::ZERO; h]; 2];
        io
    }

    /// Gather, MAC, requantization and threshold tables.
    fn dot_product_airs(&self) -> [ZkAir; 4] {
        let k = MAC_WIDTH;
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
                r.extend(slots.iter().map(|s| bit(s.is_some())));
                r
            })
            .collect();
        let mac = self
            .rows
            .mac
            .iter()
            .map(|m| {
                let mut r = vec![u(m.chunk), Val::ONE, bit(m.first), bit(m.last), u(m.out)];
                r.extend(m.w.iter().map(|&w| fe(w as i64)));
                r
            })
            .collect();
        let requant = self
            .rows
            .requant
            .iter()
            .map(|r| {
                vec![
                    u(r.out),
                    u(r.channel),
                    u(r.out),
                    self.reads(r.out),
                    Val::ONE,
                ]
            })
            .collect();
        let thresholds = self
            .thresholds
            .iter()
            .enumerate()
            .flat_map(|(ch, t)| {
                (0..256).map(move |i| vec![u(ch), fe(i as i64 - 128), fe(t[i]), fe(t[i + 1])])
            })
            .collect();
        [
            padded(Kind::Gather { k }, gather),
            padded(Kind::Mac { k }, mac),
            padded(Kind::Requant, requant),
            padded(lookup(Table::Threshold), thresholds),
        ]
    }

    /// The unary op rows and their 256-entry tables.
    fn unary_airs(&self) -> [ZkAir; 2] {
        let rows = self
            .rows
            .unary
            .iter()
            .map(|r| {
                let (input, table, out) = (u(r.input), u(r.table), u(r.out));
                vec![input, table, out, self.reads(r.out), Val::ONE]
            })
            .collect();
        let tables = self
            .unary_tables
            .iter()
            .enumerate()
            .flat_map(|(t, tab)| {
                (0..256).map(move |i| vec![u(t), fe(i as i64 - 128), fe(tab[i] as i64)])
            })
            .collect();
        [
            padded(Kind::Unary, rows),
            padded(lookup(Table::Unary), tables),
        ]
    }

    /// The Add rows and their 65,536-entry tables, one per parameter set.
    fn binary_airs(&self) -> [ZkAir; 2] {
        let rows = self
            .rows
            .binary
            .iter()
            .map(|r| {
                let (a, b, table, out) = (u(r.a), u(r.b), u(r.table), u(r.out));
                vec![a, b, table, out, self.reads(r.out), Val::ONE]
            })
            .collect();
        let tables = self
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
        [
            padded(Kind::Binary, rows),
            padded(lookup(Table::Binary), tables),
        ]
    }

    /// One table per pooling kind and kernel size.
    fn pool_airs(&self) -> Vec<ZkAir> {
        self.rows
            .pools
            .iter()
            .map(|(&(average, k), pool)| {
                let rows = pool
                    .iter()
                    .map(|p| {
                        let mut r: Vec<Val> = p.slots.iter().map(|s| u(s.unwrap_or(0))).collect();
                        r.extend(p.slots.iter().map(|s| bit(s.is_some())));
                        r.extend([u(p.out), self.reads(p.out)]);
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
                padded(kind, rows)
            })
            .collect()
    }

    /// The tables with the statement's periodic columns for the IO table: inputs at the input
    /// rows (zero at constant and padding rows), outputs at the output rows.
    pub fn airs_for(&self, input: &[i8], output: &[i8]) -> Vec<ZkAir> {
        let mut airs = self.airs.clone();
        let h = airs[0].preprocessed.height();
        let mut pin = vec![Val::ZERO; h];
        for (i, p) in self.rows.io_in.iter().enumerate() {
            if let Source::Input(j) = p.source {
                pin[i] = fe(input[j] as i64);
            }
        }
        let mut pout = vec![Val::ZERO; h];
        for (i, &v) in output.iter().enumerate() {
            pout[i] = fe(v as i64);
        }
        airs[0].periodic = vec![pin, pout];
        airs
    }
}
