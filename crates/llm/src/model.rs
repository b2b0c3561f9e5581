//! The llama architecture: weights read from GGUF and the forward pass with a KV cache.
//!
//! Every float operation outside the matrix kernels is written out here in the order
//! `docs/llm-semantics.md` gives, with Rust's IEEE arithmetic (Rust never fuses a multiply and
//! an add on its own) and `libm`'s software exp/sin/cos, so logits are the same bits on every
//! CPU. A batch of tokens (the prompt) gives exactly the same numbers as feeding the tokens one
//! at a time.

use crate::kernels::{Activations, Matrix};
use crate::{GgmlType, Gguf};
use rayon::prelude::*;

/// Largest embedding or feed-forward width, and vocabulary, this runtime accepts: they size
/// every per-token buffer and every sampling step.
pub const MAX_WIDTH: usize = 1 << 16;
pub const MAX_VOCAB: usize = 1 << 20;

/// Shape and constants of a llama model, from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub layers: usize,
    pub embedding: usize,
    pub feed_forward: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub rms_epsilon: f32,
    pub context_length: usize,
    pub vocab: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Matrix,
    k: Matrix,
    v: Matrix,
    o: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

pub struct Model {
    pub config: Config,
    embeddings: Matrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// `None`: the output projection is the embedding matrix (tied weights).
    output: Option<Matrix>,
    /// Rotation frequency of each dimension pair: `base^(-2i / head_dim)`, in f64.
    rope_frequencies: Vec<f64>,
}

/// Keys and values of every position so far, per layer: `[position][kv_heads * head_dim]`.
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a GGUF file is not a model this runtime can run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] crate::GgufError),
    #[error("architecture {0:?}: only llama is supported")]
    Architecture(String),
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl Model {
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Model, ModelError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(ModelError::Architecture(arch.to_string()));
        }
        let n = |key: &str| -> Result<usize, ModelError> {
            Ok(g.get_u64(&format!("llama.{key}"))? as usize)
        };
        // Optional keys take their default only when absent: present with the wrong type is an
        // error, never a silent default.
        let present = |key: &str| g.get(&format!("llama.{key}")).is_ok();
        let optional_n = |key: &str, default: usize| match present(key) {
            true => n(key),
            false => Ok(default),
        };
        let f = |key: &str, default: f32| -> Result<f32, ModelError> {
            match g.get(&format!("llama.{key}")) {
                Err(_) => Ok(default),
                Ok(v) => v
                    .as_f32()
                    .ok_or_else(|| ModelError::Config(format!("llama.{key} is not an f32"))),
            }
        };
        let embedding = n("embedding_length")?;
        let heads = n("attention.head_count")?;
        let kv_heads = optional_n("attention.head_count_kv", heads)?;
        let embeddings = matrix(g, "token_embd.weight", None, Some(embedding))?;
        let config = Config {
            layers: n("block_count")?,
            embedding,
            feed_forward: n("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim: embedding.checked_div(heads).unwrap_or(0),
            rope_base: f("rope.freq_base", 10000.0)?,
            rms_epsilon: f("attention.layer_norm_rms_epsilon", 1e-5)?,
            context_length: n("context_length")?,
            vocab: embeddings.rows,
        };
        let c = &config;
        if heads == 0
            || kv_heads == 0
            || c.head_dim == 0
            || c.feed_forward == 0
            || embedding > MAX_WIDTH
            || c.feed_forward > MAX_WIDTH
            || c.vocab == 0
            || c.vocab > MAX_VOCAB
            || !heads.is_multiple_of(kv_heads)
            || !embedding.is_multiple_of(heads)
            || !c.head_dim.is_multiple_of(2)
            || c.layers == 0
            || c.layers > 1024
            || c.context_length == 0
            || c.rms_epsilon.is_nan()
            || c.rms_epsilon <= 0.0
            || c.rope_base.is_nan()
            || c.rope_base <= 1.0
        {
            return Err(ModelError::Config(format!(
                "inconsistent llama config {c:?}"
            )));
        }
        if present("rope.dimension_count") {
            let rope_dims = n("rope.dimension_count")?;
            if rope_dims != c.head_dim {
                return Err(ModelError::Config(format!(
                    "rope over {rope_dims} of {} dimensions is not supported",
                    c.head_dim
                )));
            }
        }
        let kv = kv_heads * c.head_dim;
        let (e, ff) = (embedding, c.feed_forward);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let t = |name: &str| format!("blk.{i}.{name}.weight");
            layers.push(Layer {
                attn_norm: vector(g, &t("attn_norm"), e)?,
                q: matrix(g, &t("attn_q"), Some(e), Some(e))?,
                k: matrix(g, &t("attn_k"), Some(kv), Some(e))?,
                v: matrix(g, &t("attn_v"), Some(kv), Some(e))?,
                o: matrix(g, &t("attn_output"), Some(e), Some(e))?,
                ffn_norm: vector(g, &t("ffn_norm"), e)?,
                gate: matrix(g, &t("ffn_gate"), Some(ff), Some(e))?,
                up: matrix(g, &t("ffn_up"), Some(ff), Some(e))?,
                down: matrix(g, &t("ffn_down"), Some(e), Some(ff))?,
            });
        }
        let output = match g.tensor("output.weight") {
            Some(_) => Some(matrix(g, "output.weight", Some(c.vocab), Some(e))?),
            None => None,
        };
        let rope_frequencies = (0..c.head_dim / 2)
            .map(|i| libm::pow(c.rope_base as f64, -((2 * i) as f64) / c.head_dim as f64))
            .collect();
        Ok(Model {
            output_norm: vector(g, "output_norm.weight", e)?,
            config,
            embeddings,
            layers,
            output,
            rope_frequencies,
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            keys: vec![vec![]; self.config.layers],
            values: vec![vec![]; self.config.layers],
            len: 0,
        }
    }

    /// Runs `tokens` at the positions following the cache, appends them to the cache, and
    /// returns the logits of the last token (or of every token when `all_logits`).
    /// No tokens, no logits.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all_logits: bool) -> Vec<f32> {
        if tokens.is_empty() {
            return vec![];
        }
        let c = &self.config;
        let (e, n) = (c.embedding, tokens.len());
        let mut x = Vec::with_capacity(n * e);
        for &t in tokens {
            x.extend(self.embeddings.row(t as usize));
        }
        let start = cache.len;
        // The rotations of the new positions, computed once for every layer, q and k.
        let rotations: Vec<Vec<(f32, f32)>> =
            (start..start + n).map(|p| self.rotation(p)).collect();
        let kv = c.kv_heads * c.head_dim;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = Activations::new(n, e, rms_norm(&x, &layer.attn_norm, c.rms_epsilon));
            let mut q = vec![0f32; n * e];
            let mut k = vec![0f32; n * kv];
            let mut v = vec![0f32; n * kv];
            layer.q.matmul(&h, &mut q);
            layer.k.matmul(&h, &mut k);
            layer.v.matmul(&h, &mut v);
            for t in 0..n {
                rope(&mut q[t * e..(t + 1) * e], &rotations[t], c.head_dim);
                rope(&mut k[t * kv..(t + 1) * kv], &rotations[t], c.head_dim);
            }
            cache.keys[l].extend_from_slice(&k);
            cache.values[l].extend_from_slice(&v);
            let attended = self.attention(&q, &cache.keys[l], &cache.values[l], start, n);
            let mut o = vec![0f32; n * e];
            layer.o.matmul(&Activations::new(n, e, attended), &mut o);
            add(&mut x, &o);

            let h = Activations::new(n, e, rms_norm(&x, &layer.ffn_norm, c.rms_epsilon));
            let ff = c.feed_forward;
            let mut gate = vec![0f32; n * ff];
            let mut up = vec![0f32; n * ff];
            layer.gate.matmul(&h, &mut gate);
            layer.up.matmul(&h, &mut up);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
            let mut down = vec![0f32; n * e];
            layer.down.matmul(&Activations::new(n, ff, act), &mut down);
            add(&mut x, &down);
        }
        cache.len += n;
        let rows = if all_logits { n } else { 1 };
        let last = &x[(n - rows) * e..];
        let normed = Activations::new(rows, e, rms_norm(last, &self.output_norm, c.rms_epsilon));
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        let mut logits = vec![0f32; rows * output.rows];
        output.matmul(&normed, &mut logits);
        logits
    }

    /// Cosine and sine of `position * frequency_i` for each dimension pair i: the angle and
    /// both functions in f64, each rounded to f32 once.
    fn rotation(&self, position: usize) -> Vec<(f32, f32)> {
        self.rope_frequencies
            .iter()
            .map(|f| {
                let angle = position as f64 * f;
                (libm::cos(angle) as f32, libm::sin(angle) as f32)
            })
            .collect()
    }

    /// Causal attention of `n` new queries (positions `start..start + n`) over the cache.
    /// Per head: scores `(q · k_j) * (1 / sqrt(head_dim))` with the dot in order; softmax with
    /// the maximum subtracted and libm's `expf`; values summed in position order, then divided
    /// by the sum of weights.
    fn attention(
        &self,
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        start: usize,
        n: usize,
    ) -> Vec<f32> {
        let c = &self.config;
        let (d, e, kv) = (c.head_dim, c.embedding, c.kv_heads * c.head_dim);
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; n * e];
        out.par_chunks_mut(d).enumerate().for_each(|(i, o)| {
            let (t, head) = (i / c.heads, i % c.heads);
            let query = &q[t * e + head * d..t * e + (head + 1) * d];
            let kv_off = (head / group) * d;
            let visible = start + t + 1;
            // Eight keys at a time: eight independent sums, each still in dimension order.
            let mut scores = vec![0f32; visible];
            for (c, chunk) in scores.chunks_mut(8).enumerate() {
                let key = |jj: usize| {
                    let j = (c * 8 + jj).min(visible - 1);
                    &keys[j * kv + kv_off..j * kv + kv_off + d]
                };
                let k: [&[f32]; 8] = std::array::from_fn(key);
                let mut sums = [0f32; 8];
                for (i, q) in query.iter().enumerate() {
                    for (s, k) in sums.iter_mut().zip(&k) {
                        *s += q * k[i];
                    }
                }
                for (out, s) in chunk.iter_mut().zip(sums) {
                    *out = s * scale;
                }
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
            let mut total = 0f32;
            for s in scores.iter_mut() {
                *s = libm::expf(*s - max);
                total += *s;
            }
            for (j, w) in scores.iter().enumerate() {
                let value = &values[j * kv + kv_off..j * kv + kv_off + d];
                for (acc, v) in o.iter_mut().zip(value) {
                    *acc += w * v;
                }
            }
            for acc in o.iter_mut() {
                *acc /= total;
            }
        });
        out
    }
}

/// Per row: `scale = 1 / sqrt(Σ x² / n + ε)` with the squares summed in order in f64, then
/// `y = (x * scale) * w` in f32.
fn rms_norm(x: &[f32], weight: &[f32], epsilon: f32) -> Vec<f32> {
    let n = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(n) {
        let mut sum = 0f64;
        for v in row {
            sum += *v as f64 * *v as f64;
        }
        let scale = (1.0 / (sum / n as f64 + epsilon as f64).sqrt()) as f32;
        out.extend(row.iter().zip(weight).map(|(v, w)| (v * scale) * w));
    }
    out
}

/// Rotates each (2i, 2i+1) pair of every head of `x` by the i-th (cos, sin).
fn rope(x: &mut [f32], rotation: &[(f32, f32)], head_dim: usize) {
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (cos, sin)) in rotation.iter().enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = a * sin + b * cos;
        }
    }
}

/// `x / (1 + expf(-x))`.
fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// A GGUF matrix with its dims checked: GGUF lists the input width first, then the rows.
fn matrix(
    g: &Gguf<'_>,
    name: &str,
    rows: Option<usize>,
    cols: Option<usize>,
) -> Result<Matrix, ModelError> {
    let bad = |reason: String| ModelError::Tensor {
        name: name.to_string(),
        reason,
    };
    let t = g.tensor(name).ok_or_else(|| bad("missing".into()))?;
    let [c, r] = t.dims[..] else {
        return Err(bad(format!("dims {:?}, a matrix was expected", t.dims)));
    };
    let (r, c) = (r as usize, c as usize);
    if rows.is_some_and(|x| x != r) || cols.is_some_and(|x| x != c) {
        return Err(bad(format!("shape {r}x{c}, expected {rows:?}x{cols:?}")));
    }
    Matrix::from_ggml(t.ty, r, c, g.data(t))
        .ok_or_else(|| bad(format!("{} data does not fit {r}x{c}", t.ty.name())))
}

/// A GGUF vector of `len` floats (norm weights).
fn vector(g: &Gguf<'_>, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let bad = |reason: String| ModelError::Tensor {
        name: name.to_string(),
        reason,
    };
    let t = g.tensor(name).ok_or_else(|| bad("missing".into()))?;
    if t.dims[..] != [len as u64] || !matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
        return Err(bad(format!(
            "{} {:?}, expected F32 [{len}]",
            t.ty.name(),
            t.dims
        )));
    }
    Ok(t.ty.dequantize(g.data(t)))
}
