//! A small synthetic llama GGUF whose matrices use every supported type (Q4_0, Q4_1, Q8_0, F16,
//! F32) and a separate output matrix: the runtime's logits track a plain f64 reference forward
//! pass written here from the dequantized weights (so only activation quantization separates
//! them), and inconsistent files are refused with an error, never a panic.

mod common;

use common::Writer;
use half::f16;
use verity_llm::model::Model;
use verity_llm::{GgmlType, Gguf};

const LAYERS: usize = 2;
const EMBD: usize = 64;
const FF: usize = 96;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = EMBD / HEADS;
const VOCAB: usize = 40;
const BASE: f64 = 10000.0;
const EPS: f64 = 1e-5;

/// xorshift: reproducible test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows x cols` random weights of type `ty`, as GGML bytes.
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![];
    let n = rows * cols;
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend((rng.unit() * 0.3).to_le_bytes())),
        GgmlType::F16 => {
            (0..n).for_each(|_| out.extend(f16::from_f32(rng.unit() * 0.3).to_le_bytes()))
        }
        _ => {
            for _ in 0..n / 32 {
                let (d, m) = match ty {
                    GgmlType::Q4_1 => (0.04, -0.3),
                    GgmlType::Q4_0 => (0.04, 0.0),
                    _ => (0.0025, 0.0),
                };
                out.extend(f16::from_f32(d).to_le_bytes());
                if ty == GgmlType::Q4_1 {
                    out.extend(f16::from_f32(m).to_le_bytes());
                }
                let quant_bytes = if ty == GgmlType::Q8_0 { 32 } else { 16 };
                (0..quant_bytes).for_each(|_| out.push(rng.next() as u8));
            }
        }
    }
    out
}

fn code(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 8,
    }
}

/// Tensor name, (rows, cols) and type of every matrix of the synthetic model.
fn matrices() -> Vec<(String, usize, usize, GgmlType)> {
    let kv = KV_HEADS * HEAD_DIM;
    let mut m = vec![("token_embd.weight".to_string(), VOCAB, EMBD, GgmlType::Q8_0)];
    for l in 0..LAYERS {
        let t = |n: &str| format!("blk.{l}.{n}.weight");
        m.extend([
            (t("attn_q"), EMBD, EMBD, GgmlType::Q4_0),
            (t("attn_k"), kv, EMBD, GgmlType::Q4_1),
            (t("attn_v"), kv, EMBD, GgmlType::F16),
            (t("attn_output"), EMBD, EMBD, GgmlType::F32),
            (t("ffn_gate"), FF, EMBD, GgmlType::Q8_0),
            (t("ffn_up"), FF, EMBD, GgmlType::Q4_0),
            (t("ffn_down"), EMBD, FF, GgmlType::Q4_1),
        ]);
    }
    m.push(("output.weight".to_string(), VOCAB, EMBD, GgmlType::F16));
    m
}

fn vectors() -> Vec<String> {
    let mut v = vec!["output_norm.weight".to_string()];
    for l in 0..LAYERS {
        v.push(format!("blk.{l}.attn_norm.weight"));
        v.push(format!("blk.{l}.ffn_norm.weight"));
    }
    v
}

fn u32_kv(w: &mut Writer, key: &str, v: u32) {
    w.kv(key, 4, &v.to_le_bytes());
}

/// A metadata key and the value that replaces the normal one.
type Patch = (&'static str, u32);

/// The synthetic file; `skip` leaves out one tensor, `patch` changes one metadata value.
fn model_file(skip: Option<&str>, patch: Option<Patch>) -> Vec<u8> {
    let mut w = Writer::new();
    let mut arch = vec![];
    common::string(&mut arch, "llama");
    w.kv("general.architecture", 8, &arch);
    for (key, value) in [
        ("llama.block_count", LAYERS as u32),
        ("llama.embedding_length", EMBD as u32),
        ("llama.feed_forward_length", FF as u32),
        ("llama.attention.head_count", HEADS as u32),
        ("llama.attention.head_count_kv", KV_HEADS as u32),
        ("llama.context_length", 64),
    ] {
        let value = match patch {
            Some((k, v)) if k == key => v,
            _ => value,
        };
        u32_kv(&mut w, key, value);
    }
    match patch {
        // Present with the wrong type (u32, not f32): refused, not defaulted.
        Some(("llama.rope.freq_base", v)) => u32_kv(&mut w, "llama.rope.freq_base", v),
        _ => {
            w.kv("llama.rope.freq_base", 6, &(BASE as f32).to_le_bytes());
        }
    }
    w.kv(
        "llama.attention.layer_norm_rms_epsilon",
        6,
        &(EPS as f32).to_le_bytes(),
    );
    let mut rng = Rng(0x5eed);
    for (name, rows, cols, ty) in matrices() {
        let data = weights(ty, rows, cols, &mut rng);
        if skip != Some(name.as_str()) {
            w.tensor(&name, &[cols as u64, rows as u64], code(ty), data);
        }
    }
    for name in vectors() {
        let data: Vec<u8> = (0..EMBD)
            .flat_map(|_| (1.0 + 0.1 * rng.unit()).to_le_bytes())
            .collect();
        if skip != Some(name.as_str()) {
            w.tensor(&name, &[EMBD as u64], 0, data);
        }
    }
    w.finish()
}

/// Plain f64 llama forward pass over the dequantized weights; logits of the last token.
fn reference(g: &Gguf<'_>, tokens: &[usize]) -> Vec<f64> {
    let weight = |name: &str| -> Vec<f64> {
        let t = g.tensor(name).unwrap();
        t.ty.dequantize(g.data(t))
            .iter()
            .map(|v| *v as f64)
            .collect()
    };
    let matvec = |w: &[f64], x: &[f64]| -> Vec<f64> {
        w.chunks(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let norm = |x: &[f64], w: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(w).map(|(v, w)| v * s * w).collect()
    };
    let rope = |x: &mut [f64], p: usize| {
        for head in x.chunks_mut(HEAD_DIM) {
            for i in 0..HEAD_DIM / 2 {
                let angle = p as f64 * BASE.powf(-((2 * i) as f64) / HEAD_DIM as f64);
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * angle.cos() - b * angle.sin();
                head[2 * i + 1] = a * angle.sin() + b * angle.cos();
            }
        }
    };
    let embd = weight("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|t| embd[t * EMBD..(t + 1) * EMBD].to_vec())
        .collect();
    for l in 0..LAYERS {
        let w = |n: &str| weight(&format!("blk.{l}.{n}.weight"));
        let (wq, wk, wv, wo) = (w("attn_q"), w("attn_k"), w("attn_v"), w("attn_output"));
        let (gate, up, down) = (w("ffn_gate"), w("ffn_up"), w("ffn_down"));
        let (an, fnorm) = (w("attn_norm"), w("ffn_norm"));
        let (mut keys, mut values) = (vec![], vec![]);
        for (p, x) in xs.iter_mut().enumerate() {
            let h = norm(x, &an);
            let mut q = matvec(&wq, &h);
            let mut k = matvec(&wk, &h);
            rope(&mut q, p);
            rope(&mut k, p);
            keys.push(k);
            values.push(matvec(&wv, &h));
            let mut attended = vec![0.0; EMBD];
            for head in 0..HEADS {
                let kvh = head / (HEADS / KV_HEADS);
                let qh = &q[head * HEAD_DIM..(head + 1) * HEAD_DIM];
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|k| {
                        let kh = &k[kvh * HEAD_DIM..(kvh + 1) * HEAD_DIM];
                        qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f64>()
                            / (HEAD_DIM as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for (j, v) in values.iter().enumerate() {
                    for i in 0..HEAD_DIM {
                        attended[head * HEAD_DIM + i] += e[j] / total * v[kvh * HEAD_DIM + i];
                    }
                }
            }
            let o = matvec(&wo, &attended);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = norm(x, &fnorm);
            let (g, u) = (matvec(&gate, &h), matvec(&up, &h));
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = matvec(&down, &act);
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
    }
    let last = norm(&xs[tokens.len() - 1], &weight("output_norm.weight"));
    matvec(&weight("output.weight"), &last)
}

#[test]
fn every_tensor_type_runs_and_tracks_an_f64_reference() {
    let file = model_file(None, None);
    let g = Gguf::parse(&file).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    assert_eq!(model.config.vocab, VOCAB);
    let tokens = [3usize, 17, 0, 39, 8, 8, 21];
    let ids: Vec<u32> = tokens.iter().map(|t| *t as u32).collect();
    let mut cache = model.new_cache();
    let ours = model.forward(&ids, &mut cache, false);
    let exact = reference(&g, &tokens);
    let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(&exact)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0f64, f64::max);
    eprintln!("worst {worst:.5}, scale {scale:.3}");
    // Only the 8-bit activation blocks separate the two: a few percent of the logit range.
    assert!(worst < 0.05 * scale, "worst {worst}, scale {scale}");
    // Batch and token-at-a-time agree bit for bit here too.
    let mut single = model.new_cache();
    let mut last = vec![];
    for t in &ids {
        last = model.forward(&[*t], &mut single, false);
    }
    assert!(ours
        .iter()
        .zip(&last)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn inconsistent_models_are_refused() {
    let cases: Vec<(Option<&str>, Option<Patch>)> = vec![
        (Some("blk.1.ffn_down.weight"), None),
        (Some("output_norm.weight"), None),
        (None, Some(("llama.attention.head_count", 0))),
        (None, Some(("llama.attention.head_count_kv", 3))),
        (None, Some(("llama.embedding_length", 32))),
        (None, Some(("llama.feed_forward_length", 64))),
        (None, Some(("llama.block_count", 3))),
        (None, Some(("llama.context_length", 0))),
        (None, Some(("llama.embedding_length", 0))),
        (None, Some(("llama.feed_forward_length", 0))),
        (None, Some(("llama.rope.freq_base", 10000))),
    ];
    for (skip, patch) in cases {
        let file = model_file(skip, patch);
        let g = Gguf::parse(&file).unwrap();
        assert!(
            Model::from_gguf(&g).is_err(),
            "accepted with {skip:?} missing, {patch:?}"
        );
    }
    // A tied model (no output.weight) loads and uses the embeddings.
    let g_file = model_file(Some("output.weight"), None);
    let g = Gguf::parse(&g_file).unwrap();
    assert!(Model::from_gguf(&g).is_ok());
}
