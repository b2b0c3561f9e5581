//! The GGUF reader: a synthetic file round-trips; every truncation and hostile field is an
//! error, not a panic; and on the real SmolLM2 file the tensor directory and dequantized values
//! equal those of llama.cpp's own `gguf` package (fixtures/llm/smollm2_reference.json, made by
//! scripts/llm_reference.py).

mod common;

use common::{smollm2_path, string, Writer};
use half::f16;
use std::path::PathBuf;
use verity_llm::{GgmlType, Gguf, GgufError, Value};

fn q4_1_block(d: f32, m: f32) -> Vec<u8> {
    let mut b = f16::from_f32(d).to_le_bytes().to_vec();
    b.extend(f16::from_f32(m).to_le_bytes());
    b.extend((0..16u8).map(|i| i | (15 - i) << 4));
    b
}

fn sample() -> Vec<u8> {
    let mut tokens = 8u32.to_le_bytes().to_vec(); // array of strings
    tokens.extend(2u64.to_le_bytes());
    string(&mut tokens, "hello");
    string(&mut tokens, "wörld");
    let mut arch = vec![];
    string(&mut arch, "llama");
    let f32s: Vec<u8> = [1.0f32, -2.5, 3.25, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut q41 = q4_1_block(0.5, -1.0);
    q41.extend(q4_1_block(0.25, 2.0));
    let mut q8 = f16::from_f32(2.0).to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    Writer::new()
        .kv("general.architecture", 8, &arch)
        .kv("llama.block_count", 4, &30u32.to_le_bytes())
        .kv("llama.rope.freq_base", 6, &10000f32.to_le_bytes())
        .kv("tokenizer.ggml.add_bos_token", 7, &[1])
        .kv("tokenizer.ggml.tokens", 9, &tokens)
        .tensor("norm", &[4], 0, f32s)
        .tensor("w", &[32, 2], 3, q41)
        .tensor("emb", &[32, 1], 8, q8)
        .finish()
}

#[test]
fn synthetic_file_round_trips() {
    let bytes = sample();
    let g = Gguf::parse(&bytes).expect("valid file");
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.architecture"), Ok("llama"));
    assert_eq!(g.get_u64("llama.block_count"), Ok(30));
    assert_eq!(
        g.get("llama.rope.freq_base").unwrap().as_f32(),
        Some(10000.0)
    );
    assert_eq!(
        g.get("tokenizer.ggml.add_bos_token"),
        Ok(&Value::Bool(true))
    );
    let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(tokens[1].as_str(), Some("wörld"));
    let norm = g.tensor("norm").unwrap();
    assert_eq!(norm.ty.dequantize(g.data(norm)), vec![1.0, -2.5, 3.25, 0.0]);
    let w = g.tensor("w").unwrap();
    assert_eq!((w.ty, w.elements()), (GgmlType::Q4_1, 64));
    let v = w.ty.dequantize(g.data(w));
    assert_eq!((v[0], v[16], v[32], v[63]), (-1.0, 6.5, 2.0, 2.0));
    let e = g.tensor("emb").unwrap();
    let v = e.ty.dequantize(g.data(e));
    assert_eq!((v[0], v[31]), (-32.0, 30.0));
    assert_eq!(
        g.get_u64("missing"),
        Err(GgufError::Metadata("missing".into()))
    );
}

#[test]
fn truncated_and_hostile_files_are_errors() {
    let bytes = sample();
    // Every strict prefix fails cleanly (the padding after the last tensor excepted).
    let data_end = {
        let g = Gguf::parse(&bytes).unwrap();
        g.tensors.iter().map(|t| t.start + t.len).max().unwrap()
    };
    for n in 0..data_end {
        assert!(
            Gguf::parse(&bytes[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(Gguf::parse(&b).err(), Some(GgufError::Magic));
    let mut b = bytes.clone();
    b[4] = 1;
    assert_eq!(Gguf::parse(&b).err(), Some(GgufError::Version(1)));
    // A metadata count of 2^60 is refused before anything is allocated.
    let mut b = bytes.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(Gguf::parse(&b), Err(GgufError::Malformed { .. })));
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Gguf::parse(&b).is_err());

    let arch = {
        let mut a = vec![];
        string(&mut a, "llama");
        a
    };
    let bad = |w: &mut Writer| Gguf::parse(&w.kv("general.architecture", 8, &arch).finish()).err();
    // Unsupported type, a shape that does not fill whole blocks, data past the end, a bad
    // alignment, an unknown value type, a nested array.
    assert!(matches!(
        bad(Writer::new().tensor("t", &[32], 12, vec![0; 144])),
        Some(GgufError::Tensor { .. })
    ));
    assert!(matches!(
        bad(Writer::new().tensor("t", &[33], 3, vec![0; 40])),
        Some(GgufError::Tensor { .. })
    ));
    assert!(matches!(
        bad(Writer::new().tensor("t", &[32, 4], 3, vec![0; 40])),
        Some(GgufError::Tensor { .. })
    ));
    assert!(matches!(
        bad(Writer::new().kv("general.alignment", 4, &3u32.to_le_bytes())),
        Some(GgufError::Metadata(_))
    ));
    assert!(matches!(
        bad(Writer::new().kv("x", 13, &[0])),
        Some(GgufError::Malformed { .. })
    ));
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend(1u64.to_le_bytes());
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    assert!(matches!(
        bad(Writer::new().kv("x", 9, &nested)),
        Some(GgufError::Malformed { .. })
    ));
    assert!(matches!(
        bad(Writer::new().tensor("t", &[1, 1, 1, 1, 1], 0, vec![0; 4])),
        Some(GgufError::Malformed { .. })
    ));
    // Arrays of one-byte elements beyond the metadata budget: refused before they are built
    // (each element would take 32 bytes in memory).
    let over = verity_llm::gguf::MAX_ARRAY_ELEMENTS + 1;
    let mut huge = 0u32.to_le_bytes().to_vec();
    huge.extend((over as u64).to_le_bytes());
    huge.resize(huge.len() + over, 1);
    assert!(matches!(
        bad(Writer::new().kv("x", 9, &huge)),
        Some(GgufError::Malformed { .. })
    ));
}

#[test]
fn smollm2_directory_and_values_match_llama_cpp_gguf_package() {
    let path = smollm2_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/fetch_smollm2.sh` first",
            path.display()
        )
    });
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/llm/smollm2_reference.json"),
        )
        .expect("reference fixture"),
    )
    .expect("reference json");
    let g = Gguf::parse(&bytes).expect("SmolLM2 parses");
    assert_eq!(
        g.tensors.len() as u64,
        reference["tensor_count"].as_u64().unwrap()
    );
    assert_eq!(
        g.get_str("general.architecture").unwrap(),
        reference["architecture"]
    );
    assert_eq!(
        g.get_u64("llama.block_count").unwrap(),
        reference["block_count"].as_u64().unwrap()
    );
    assert_eq!(
        g.get_u64("llama.embedding_length").unwrap(),
        reference["embedding_length"].as_u64().unwrap()
    );
    assert_eq!(
        g.get("tokenizer.ggml.tokens")
            .unwrap()
            .as_array()
            .unwrap()
            .len() as u64,
        reference["vocab_tokens"].as_u64().unwrap()
    );
    for r in reference["tensors"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let t = g.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.ty.name(), r["type"], "{name}");
        let dims: Vec<u64> = r["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{name}");
        assert_eq!(t.start as u64, r["start"].as_u64().unwrap(), "{name}");
        let values = t.ty.dequantize(g.data(t));
        assert_eq!(values.len() as u64, t.elements());
        let bits: Vec<u64> = values[..64].iter().map(|v| v.to_bits() as u64).collect();
        let want: Vec<u64> = r["first_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .collect();
        assert_eq!(
            bits, want,
            "{name}: first 64 values differ from the reference"
        );
        let sum: f64 = values.iter().map(|v| *v as f64).sum();
        let want = r["sum"].as_f64().unwrap();
        assert!(
            (sum - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{name}: sum {sum} vs {want}"
        );
    }
}
