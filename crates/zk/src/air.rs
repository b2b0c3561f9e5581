//! The AIRs (tables) a model's execution is proven with, and the buses that tie them together.
//!
//! Every int8 value of the execution lives at an address. A table that computes a value
//! *provides* `(addr, value)` on the `mem` bus as many times as the value is read; a table
//! that uses a value *queries* it. LogUp proves the multiset of queries is covered by what was
//! provided, and since the addresses and read counts are preprocessed (fixed by the model), a
//! query can only ever see the one value computed for its address. Non-linear steps are
//! lookups into preprocessed tables (requantization thresholds, unary and binary op tables,
//! a 12-bit range table). docs/zk.md gives the argument in full.

use std::sync::Arc;

use p3_air::{Air, AirBuilder, BaseAir, PermutationAirBuilder, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_lookup::{Count, InteractionBuilder};
use p3_matrix::dense::RowMajorMatrix;

use crate::config::Val;

/// `(addr, int8 value)`: every value of the execution.
pub const MEM: &str = "mem";
/// `(chunk id, v_0 .. v_{K-1})`: K gathered values, read whole by the matrix rows.
pub const VEC: &str = "vec";
/// `(acc id, i32 accumulator)`: a finished dot product, handed to requantization.
pub const ACC: &str = "acc";
/// `(channel, y, T(y), T(y+1))`: requantization thresholds.
pub const THR: &str = "thr";
/// `(v)`: v in [0, 2^12).
pub const RANGE: &str = "range";
/// `(table, x, y)`: unary int8 tables (Relu, LUT activations, Concat rescales).
pub const UNARY: &str = "unary";
/// `(table, a, b, y)`: binary int8 tables (Add).
pub const BINARY: &str = "binary";

/// Most entries per row of a lookup table: entries sharing a row share its running-sum
/// column and pack two per fraction column, so wide rows commit fewer columns per entry.
pub const MAX_TABLE_LANES: usize = 8;

/// Limb size of the requantization range checks.
pub const RANGE_BITS: usize = 12;
/// A difference of requantization is `l0 + 2^12 l1 + 2^24 l2`, each limb in [0, 2^12) and
/// `2^7 l2` too, so l2 < 2^5 and the difference is in [0, 2^29).
pub const TOP_LIMB_SHIFT: u32 = 7;
/// Number of public values: the statement digest as 16-bit limbs.
pub const STATEMENT_LIMBS: usize = 16;

/// What a table computes; the column layouts are documented on each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Graph inputs and constants (provided) and graph outputs (queried), checked against
    /// periodic columns the verifier builds from the statement.
    /// main `[in, out]`; pre `[in_addr, in_mult, const, out_addr, out_rd]`; periodic `[in, out]`.
    Io,
    /// Gathers `k` values into one chunk for the matrix rows.
    /// main `[v_0..v_k]`; pre `[chunk, mult, addr_0..addr_k, rd_0..rd_k]`.
    Gather { k: usize },
    /// `k` multiply-accumulates per row; an output's rows run consecutively.
    /// The bias is folded into the output's requantization thresholds.
    /// main `[x_0..x_k, acc]`; pre `[chunk, rd, first, last, acc_id, w_0..w_k]`.
    Mac { k: usize },
    /// `T(y) <= acc < T(y+1)`: each difference is range-checked to [0, 2^29) in three 12-bit
    /// limbs (the top one also shifted, to bound it by 2^5).
    /// main `[acc, y, t_lo, t_hi, l0, l1, l2, h0, h1, h2]`; pre `[acc_id, channel, addr, mult, active]`.
    Requant,
    /// A preprocessed lookup table with `lanes` entries per row: main `[mult]` and pre
    /// `[entry]` per lane.
    Table { table: Table, lanes: usize },
    /// main `[x, y]`; pre `[in_addr, table, out_addr, mult, active]`.
    Unary,
    /// main `[a, b, y]`; pre `[a_addr, b_addr, table, out_addr, mult, active]`.
    Binary,
    /// y = the selected x_j, and y - x_j >= 0 for every x_j in the window.
    /// main `[x_0..x_k, y, s_0..s_k]`; pre `[addr_0..addr_k, rd_0..rd_k, out_addr, mult, active]`.
    MaxPool { k: usize },
    /// 2 sum + count = 2 count y + r with 0 <= r < 2 count, and y + 128, 127 - y in range.
    /// main `[x_0..x_k, y, r]`; pre `[addr_0..addr_k, rd_0..rd_k, out_addr, mult, count, active]`.
    AvgPool { k: usize },
}

/// The preprocessed lookup tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// entry `[channel, y, T(y), T(y+1)]`.
    Threshold,
    /// entry `[v]`, v = 0 .. 2^12.
    Range,
    /// entry `[table, x, y]`.
    Unary,
    /// entry `[table, a, b, y]`.
    Binary,
}

impl Table {
    /// The bus it provides on, and its entry width.
    fn bus(self) -> (&'static str, usize) {
        match self {
            Table::Threshold => (THR, 4),
            Table::Range => (RANGE, 1),
            Table::Unary => (UNARY, 3),
            Table::Binary => (BINARY, 4),
        }
    }

    /// The table kind for `entries` entries: as many lanes (up to [`MAX_TABLE_LANES`]) as
    /// fill the smallest power-of-two height that holds them all.
    pub fn kind(self, entries: usize, min_height: usize) -> Kind {
        let height = entries
            .div_ceil(MAX_TABLE_LANES)
            .max(min_height)
            .next_power_of_two();
        Kind::Table {
            table: self,
            lanes: entries.div_ceil(height).max(1),
        }
    }
}

impl Kind {
    /// Entries per row: a table's lanes, 1 for the rest.
    pub fn lanes(self) -> usize {
        match self {
            Kind::Table { lanes, .. } => lanes,
            _ => 1,
        }
    }

    pub fn main_width(self) -> usize {
        match self {
            Kind::Io => 2,
            Kind::Gather { k } => k,
            Kind::Mac { k } => k + 1,
            Kind::Requant => 10,
            Kind::Table { lanes, .. } => lanes,
            Kind::Unary => 2,
            Kind::Binary => 3,
            Kind::MaxPool { k } => 2 * k + 1,
            Kind::AvgPool { k } => k + 2,
        }
    }

    pub fn preprocessed_width(self) -> usize {
        match self {
            Kind::Io => 5,
            Kind::Gather { k } => 2 + 2 * k,
            Kind::Mac { k } => 5 + k,
            Kind::Requant => 5,
            Kind::Table { table, lanes } => table.bus().1 * lanes,
            Kind::Unary => 5,
            Kind::Binary => 6,
            Kind::MaxPool { k } => 2 * k + 3,
            Kind::AvgPool { k } => 2 * k + 4,
        }
    }
}

/// One table of a model's proof: its kind, its preprocessed (model-fixed) columns and, for
/// the IO table, the statement's periodic columns.
#[derive(Clone)]
pub struct ZkAir {
    pub kind: Kind,
    pub preprocessed: Arc<RowMajorMatrix<Val>>,
    pub periodic: Vec<Vec<Val>>,
}

impl BaseAir<Val> for ZkAir {
    fn width(&self) -> usize {
        self.kind.main_width()
    }

    fn preprocessed_trace(&self) -> Option<RowMajorMatrix<Val>> {
        Some((*self.preprocessed).clone())
    }

    fn preprocessed_width(&self) -> usize {
        self.kind.preprocessed_width()
    }

    fn num_public_values(&self) -> usize {
        if self.kind == Kind::Io {
            STATEMENT_LIMBS
        } else {
            0
        }
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
    }

    fn periodic_columns(&self) -> std::borrow::Cow<'_, [Vec<Val>]> {
        std::borrow::Cow::Borrowed(&self.periodic)
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        match self.kind {
            Kind::Mac { .. } => (0..self.kind.main_width()).collect(),
            _ => Vec::new(),
        }
    }

    fn preprocessed_next_row_columns(&self) -> Vec<usize> {
        match self.kind {
            Kind::Mac { .. } => (0..self.kind.preprocessed_width()).collect(),
            _ => Vec::new(),
        }
    }
}

/// A query: counted once per row where `flag` is 1. Every flag passed here is a preprocessed
/// 0/1 column; a flag in the main trace would need `assert_bool`, or the LogUp bound on query
/// counts (weight 1 per row) would not hold.
fn query<AB: InteractionBuilder>(b: &mut AB, bus: &str, fields: Vec<AB::Expr>, flag: AB::Expr) {
    b.push_interaction(bus, fields, Count::bounded(flag, 1));
}

/// A provision: `mult` copies of the message, as many as its queries.
fn provide<AB: InteractionBuilder>(b: &mut AB, bus: &str, fields: Vec<AB::Expr>, mult: AB::Expr) {
    b.push_interaction(bus, fields, Count::provided(-mult));
}

impl<AB> Air<AB> for ZkAir
where
    AB: PermutationAirBuilder<F = Val> + InteractionBuilder,
{
    fn eval(&self, b: &mut AB) {
        let main = b.main();
        let pre = b.preprocessed().clone();
        let m: Vec<AB::Expr> = main.current_slice().iter().map(|&v| v.into()).collect();
        let p: Vec<AB::Expr> = pre.current_slice().iter().map(|&v| v.into()).collect();
        let one = || AB::Expr::ONE;
        match self.kind {
            Kind::Io => {
                let periodic: Vec<AB::Expr> =
                    b.periodic_values().iter().map(|&v| v.into()).collect();
                b.assert_zero(m[0].clone() - periodic[0].clone() - p[2].clone());
                b.assert_zero(m[1].clone() - periodic[1].clone());
                provide(b, MEM, vec![p[0].clone(), m[0].clone()], p[1].clone());
                query(b, MEM, vec![p[3].clone(), m[1].clone()], p[4].clone());
            }
            Kind::Gather { k } => {
                for j in 0..k {
                    let rd = p[2 + k + j].clone();
                    b.assert_zero(m[j].clone() * (one() - rd.clone()));
                    query(b, MEM, vec![p[2 + j].clone(), m[j].clone()], rd);
                }
                let mut chunk = vec![p[0].clone()];
                chunk.extend(m.iter().cloned());
                provide(b, VEC, chunk, p[1].clone());
            }
            Kind::Mac { k } => {
                let next_m: Vec<AB::Expr> = main.next_slice().iter().map(|&v| v.into()).collect();
                let next_p: Vec<AB::Expr> = pre.next_slice().iter().map(|&v| v.into()).collect();
                let dot = |m: &[AB::Expr], p: &[AB::Expr]| {
                    (0..k).fold(AB::Expr::ZERO, |acc, j| {
                        acc + m[j].clone() * p[5 + j].clone()
                    })
                };
                let (acc, next_acc) = (m[k].clone(), next_m[k].clone());
                b.when_first_row().assert_zero(acc.clone() - dot(&m, &p));
                b.when_transition().assert_zero(
                    next_acc - dot(&next_m, &next_p) + (next_p[2].clone() - one()) * acc.clone(),
                );
                let mut chunk = vec![p[0].clone()];
                chunk.extend(m[..k].iter().cloned());
                query(b, VEC, chunk, p[1].clone());
                provide(b, ACC, vec![p[4].clone(), acc], p[3].clone());
            }
            Kind::Requant => {
                let (acc, y, t_lo, t_hi) = (m[0].clone(), m[1].clone(), m[2].clone(), m[3].clone());
                let join = |l: &[AB::Expr]| {
                    l[0].clone()
                        + l[1].clone() * AB::Expr::from_u32(1 << RANGE_BITS)
                        + l[2].clone() * AB::Expr::from_u32(1 << (2 * RANGE_BITS))
                };
                b.assert_zero(acc.clone() - t_lo.clone() - join(&m[4..7]));
                b.assert_zero(t_hi.clone() - one() - acc.clone() - join(&m[7..10]));
                let active = p[4].clone();
                query(b, ACC, vec![p[0].clone(), acc], active.clone());
                query(
                    b,
                    THR,
                    vec![p[1].clone(), y.clone(), t_lo, t_hi],
                    active.clone(),
                );
                for l in &m[4..10] {
                    query(b, RANGE, vec![l.clone()], active.clone());
                }
                for top in [&m[6], &m[9]] {
                    let shifted = top.clone() * AB::Expr::from_u32(1 << TOP_LIMB_SHIFT);
                    query(b, RANGE, vec![shifted], active.clone());
                }
                provide(b, MEM, vec![p[2].clone(), y], p[3].clone());
            }
            Kind::Table { table, .. } => {
                let (bus, width) = table.bus();
                for (lane, entry) in p.chunks(width).enumerate() {
                    provide(b, bus, entry.to_vec(), m[lane].clone());
                }
            }
            Kind::Unary => {
                let active = p[4].clone();
                query(b, MEM, vec![p[0].clone(), m[0].clone()], active.clone());
                query(
                    b,
                    UNARY,
                    vec![p[1].clone(), m[0].clone(), m[1].clone()],
                    active,
                );
                provide(b, MEM, vec![p[2].clone(), m[1].clone()], p[3].clone());
            }
            Kind::Binary => {
                let active = p[5].clone();
                query(b, MEM, vec![p[0].clone(), m[0].clone()], active.clone());
                query(b, MEM, vec![p[1].clone(), m[1].clone()], active.clone());
                let fields = vec![p[2].clone(), m[0].clone(), m[1].clone(), m[2].clone()];
                query(b, BINARY, fields, active);
                provide(b, MEM, vec![p[3].clone(), m[2].clone()], p[4].clone());
            }
            Kind::MaxPool { k } => {
                let y = m[k].clone();
                let mut chosen = AB::Expr::ZERO;
                let mut selected = AB::Expr::ZERO;
                for j in 0..k {
                    let (x, s, rd) = (m[j].clone(), m[k + 1 + j].clone(), p[k + j].clone());
                    b.assert_bool(s.clone());
                    b.assert_zero(s.clone() * (one() - rd.clone()));
                    chosen += s.clone() * x.clone();
                    selected += s;
                    query(b, MEM, vec![p[j].clone(), x.clone()], rd.clone());
                    query(b, RANGE, vec![y.clone() - x], rd);
                }
                b.assert_zero(selected - p[2 * k + 2].clone());
                b.assert_zero(y.clone() - chosen);
                provide(b, MEM, vec![p[2 * k].clone(), y], p[2 * k + 1].clone());
            }
            Kind::AvgPool { k } => {
                let (y, r) = (m[k].clone(), m[k + 1].clone());
                let (count, active) = (p[2 * k + 2].clone(), p[2 * k + 3].clone());
                let mut sum = AB::Expr::ZERO;
                for j in 0..k {
                    let (x, rd) = (m[j].clone(), p[k + j].clone());
                    b.assert_zero(x.clone() * (one() - rd.clone()));
                    sum += x.clone();
                    query(b, MEM, vec![p[j].clone(), x], rd);
                }
                let two = AB::Expr::TWO;
                b.assert_zero(
                    two.clone() * sum + count.clone()
                        - two.clone() * count.clone() * y.clone()
                        - r.clone(),
                );
                query(b, RANGE, vec![r.clone()], active.clone());
                query(b, RANGE, vec![two * count - one() - r], active.clone());
                query(
                    b,
                    RANGE,
                    vec![y.clone() + AB::Expr::from_u32(128)],
                    active.clone(),
                );
                query(b, RANGE, vec![AB::Expr::from_u32(127) - y.clone()], active);
                provide(b, MEM, vec![p[2 * k].clone(), y], p[2 * k + 1].clone());
            }
        }
    }
}
