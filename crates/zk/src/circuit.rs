//! A canonical int8 model compiled for proving: the tables of its proof, and the row recipes
//! they are filled from.
//!
//! Compilation (`compile`) lays out every row once, as a recipe, and builds the tables'
//! preprocessed columns from the recipes (`airs`); witness generation (`generation`)
//! replays the same recipes over one execution's values, so layout and witness cannot drift
//! apart.

mod airs;
mod compile;
mod generation;

use std::collections::BTreeMap;

use p3_field::PrimeCharacteristicRing;

use crate::air::ZkAir;
use crate::config::Val;

/// Multiply-accumulates per matrix row (and values per gathered chunk).
pub const MAC_WIDTH: usize = 32;
/// Every accumulator and every threshold stays within ±2^28, which keeps the 29-bit limb
/// range checks of requantization sound (docs/zk.md).
pub const ACC_BOUND: i64 = 1 << 28;
/// Largest table height (log2): the stated security level assumes no table is taller.
pub const MAX_LOG_HEIGHT: usize = 20;

/// An integer as a field element (a negative one is p minus its magnitude).
fn fe(v: i64) -> Val {
    Val::from_i64(v)
}

/// Where a graph input or constant row of the IO table takes its value from.
#[derive(Clone, Copy)]
enum Source {
    /// Index into the statement's quantized input vector.
    Input(usize),
    Const(i8),
}

/// A value the IO table provides: a graph input or a model constant.
struct IoInput {
    addr: usize,
    source: Source,
}

/// Every table's rows, as recipes: what each row reads, computes and provides.
#[derive(Default)]
struct Rows {
    io_in: Vec<IoInput>,
    /// The addresses of the graph outputs, in statement order.
    io_out: Vec<usize>,
    /// Per chunk: the gathered addresses (None = empty slot).
    gather: Vec<Vec<Option<usize>>>,
    mac: Vec<MacRow>,
    /// One per Dense/Conv output.
    requant: Vec<RequantRow>,
    /// One per element of a Relu, LUT activation or Concat.
    unary: Vec<UnaryRow>,
    /// One per element of an Add.
    binary: Vec<BinaryRow>,
    /// Per (average?, kernel size): one row per pooled output.
    pools: BTreeMap<(bool, usize), Vec<PoolRow>>,
}

/// 32 multiply-accumulates of one output's dot product.
struct MacRow {
    /// The gathered chunk it reads.
    chunk: usize,
    /// The weights it multiplies the chunk with.
    w: Vec<i8>,
    /// Whether it starts / ends its output's dot product.
    first: bool,
    last: bool,
    /// The output's address, which is also its accumulator's id on the `acc` bus.
    out: usize,
}

/// A finished dot product requantized to the int8 at `out` with the thresholds of `channel`.
struct RequantRow {
    out: usize,
    channel: usize,
}

/// `out = table[input]`.
struct UnaryRow {
    input: usize,
    table: usize,
    out: usize,
}

/// `out = table[a, b]`.
struct BinaryRow {
    a: usize,
    b: usize,
    table: usize,
    out: usize,
}

struct PoolRow {
    /// The window's in-image addresses (None = outside the image).
    slots: Vec<Option<usize>>,
    out: usize,
    /// The divisor (average pooling only).
    count: i64,
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
    /// The tables in proof order (periodic columns zero; [`Circuit::airs_for`] fills them).
    pub airs: Vec<ZkAir>,
}
