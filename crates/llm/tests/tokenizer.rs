//! The tokenizer and chat template: on the real SmolLM2 file every reference string encodes to
//! the ids llama.cpp gives and decodes to llama.cpp's text, and the chat prompts render and
//! tokenize as llama-cpp-python renders them (fixtures/llm/tokenizer_reference.json, made by
//! scripts/llm_tokenizer_reference.py); on small synthetic files the merge order is checked and
//! every malformed vocabulary or template is an error, not a panic.

mod common;

use common::{smollm2_path, string, Writer};
use std::path::PathBuf;
use verity_llm::chat_template::{ChatTemplate, ChatTemplateError, Message};
use verity_llm::tokenizer::{TokenKind, Tokenizer, TokenizerError};
use verity_llm::{Gguf, GgufError};

fn reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm/tokenizer_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("reference fixture")).expect("json")
}

fn smollm2_bytes() -> Vec<u8> {
    let path = smollm2_path();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/fetch_smollm2.sh` first",
            path.display()
        )
    })
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|i| i.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn smollm2_tokenizes_as_llama_cpp() {
    let bytes = smollm2_bytes();
    let g = Gguf::parse(&bytes).expect("SmolLM2 parses");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer loads");
    let r = reference();
    assert_eq!(tok.vocab_size() as u64, r["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.bos() as u64, r["bos"].as_u64().unwrap());
    assert_eq!(tok.eos() as u64, r["eos"].as_u64().unwrap());
    assert!(!tok.add_bos());

    let cases = r["strings"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, true), want, "encoding {text:?}");
        assert_eq!(
            tok.encode(text, false),
            ids(&case["ids_no_special"]),
            "encoding {text:?} without special tokens"
        );
        let decoded = tok.decode(&want);
        assert_eq!(decoded, case["decoded"], "decoding {text:?}");
        // llama.cpp drops bytes the vocabulary has no token for (0x04 is one in SmolLM2's);
        // every other string comes back unchanged.
        if text.contains('\x04') {
            assert_ne!(decoded, text);
        } else {
            assert_eq!(decoded, text, "round trip of {text:?}");
        }
    }
}

#[test]
fn smollm2_token_pieces() {
    let bytes = smollm2_bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    for id in 0..=16 {
        assert!(tok.is_control(id), "{id}");
        assert_eq!(tok.kind(id), Some(TokenKind::Control));
    }
    assert!(!tok.is_control(17));
    assert_eq!(tok.token_bytes(2), b"<|im_end|>");
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    let the = tok.token_id("Ġthe").expect("Ġthe");
    assert_eq!(tok.token_bytes(the), b" the");
    assert_eq!(tok.token_text(the), Some("Ġthe"));
    assert_eq!(tok.token_bytes(u32::MAX), b"");
    assert_eq!(tok.decode(&[u32::MAX, the]), " the");
    // Every token has bytes, and a byte-level vocabulary spells each normal token in them.
    let total: usize = (0..tok.vocab_size() as u32)
        .map(|id| tok.token_bytes(id).len())
        .sum();
    assert!(total > tok.vocab_size());
    // A cut multi-byte character decodes lossily, it does not fail: "â" is byte 0xE2, the
    // first byte of "€".
    let e2 = tok.token_id("â").expect("byte 0xE2");
    assert_eq!(tok.token_bytes(e2), [0xE2]);
    assert_eq!(tok.decode(&[e2, the]), "\u{FFFD} the");
}

#[test]
fn smollm2_chat_prompts_match_llama_cpp_python() {
    let bytes = smollm2_bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let template = ChatTemplate::from_gguf(&g).expect("template compiles");
    let r = reference();
    let chats = r["chats"].as_array().unwrap();
    assert!(!chats.is_empty());
    for chat in chats {
        let messages: Vec<Message> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let prompt = template
            .render(&messages, chat["add_generation_prompt"].as_bool().unwrap())
            .expect("renders");
        assert_eq!(prompt, chat["prompt"].as_str().unwrap());
        assert_eq!(tok.encode(&prompt, true), ids(&chat["ids"]), "{prompt:?}");
    }
}

/// GGUF value type codes.
const U32: u32 = 4;
const I32: u32 = 5;
const STRING: u32 = 8;
const ARRAY: u32 = 9;

fn str_value(s: &str) -> Vec<u8> {
    let mut v = vec![];
    string(&mut v, s);
    v
}

fn str_array(items: &[&str]) -> Vec<u8> {
    let mut v = STRING.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|s| string(&mut v, s));
    v
}

fn i32_array(items: &[i32]) -> Vec<u8> {
    let mut v = I32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|i| v.extend(i.to_le_bytes()));
    v
}

/// A tiny byte-level vocabulary: id 0 is a control token, then a, b, c, Ġ (space) and merges.
struct Vocab<'a> {
    model: &'a str,
    pre: &'a str,
    tokens: Vec<&'a str>,
    types: Option<Vec<i32>>,
    merges: Option<Vec<&'a str>>,
    eos: u32,
    template: Option<&'a str>,
}

impl Default for Vocab<'_> {
    fn default() -> Self {
        Vocab {
            model: "gpt2",
            pre: "smollm",
            tokens: vec![
                "<|end|>", "a", "b", "c", "Ġ", "1", "ab", "abc", "Ġa", "bb", "Ġab",
            ],
            types: Some(vec![3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            merges: Some(vec!["Ġ a", "a b", "ab c", "b b", "Ġa b"]),
            eos: 0,
            template: Some("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"),
        }
    }
}

impl Vocab<'_> {
    fn file(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.kv("tokenizer.ggml.model", STRING, &str_value(self.model))
            .kv("tokenizer.ggml.pre", STRING, &str_value(self.pre))
            .kv("tokenizer.ggml.tokens", ARRAY, &str_array(&self.tokens))
            .kv("tokenizer.ggml.bos_token_id", U32, &0u32.to_le_bytes())
            .kv("tokenizer.ggml.eos_token_id", U32, &self.eos.to_le_bytes());
        if let Some(types) = &self.types {
            w.kv("tokenizer.ggml.token_type", ARRAY, &i32_array(types));
        }
        if let Some(merges) = &self.merges {
            w.kv("tokenizer.ggml.merges", ARRAY, &str_array(merges));
        }
        if let Some(t) = self.template {
            w.kv("tokenizer.chat_template", STRING, &str_value(t));
        }
        w.finish()
    }

    fn load(&self) -> Result<Tokenizer, TokenizerError> {
        let bytes = self.file();
        let g = Gguf::parse(&bytes).expect("synthetic file parses");
        Tokenizer::from_gguf(&g)
    }
}

#[test]
fn synthetic_vocabulary_merges_by_rank() {
    let tok = Vocab::default().load().expect("loads");
    assert_eq!((tok.vocab_size(), tok.eos()), (11, 0));
    // "abc": a+b (rank 1) then ab+c (rank 2).
    assert_eq!(tok.encode("abc", false), vec![7]);
    // " ab": Ġ+a (rank 0) beats a+b (rank 1), then Ġa+b (rank 4).
    assert_eq!(tok.encode(" ab", false), vec![10]);
    // " abb": Ġ+a, then b+b (rank 3) beats Ġa+b (rank 4).
    assert_eq!(tok.encode(" abb", false), vec![8, 9]);
    // "bbb": the leftmost b+b merges first.
    assert_eq!(tok.encode("bbb", false), vec![9, 2]);
    // Digits are split one by one; bytes without a token ("x", "2") are dropped.
    assert_eq!(tok.encode("1x12", false), vec![5, 5]);
    // The control token is parsed only when asked.
    assert_eq!(tok.encode("ab<|end|>c", true), vec![6, 0, 3]);
    assert_eq!(tok.encode("<|end|>", false), Vec::<u32>::new());
    assert_eq!(tok.decode(&[8, 9, 0]), " abb<|end|>");
}

#[test]
fn malformed_vocabularies_are_errors() {
    let malformed = |v: Vocab| match v.load() {
        Err(TokenizerError::Malformed { key, .. }) => key,
        other => panic!("expected a malformed-metadata error, got {:?}", other.err()),
    };
    assert_eq!(
        Vocab {
            merges: None,
            ..Default::default()
        }
        .load()
        .err(),
        Some(TokenizerError::Gguf(GgufError::Metadata(
            "tokenizer.ggml.merges".into()
        )))
    );
    assert_eq!(
        Vocab {
            merges: Some(vec!["Ġ a", "a x"]),
            ..Default::default()
        }
        .load()
        .err(),
        Some(TokenizerError::UnknownMergeToken {
            rank: 1,
            merge: "a x".into()
        })
    );
    // Both parts exist but their join is not a token.
    assert!(matches!(
        Vocab {
            merges: Some(vec!["c a"]),
            ..Default::default()
        }
        .load(),
        Err(TokenizerError::UnknownMergeToken { rank: 0, .. })
    ));
    assert_eq!(
        malformed(Vocab {
            merges: Some(vec!["ab"]),
            ..Default::default()
        }),
        "tokenizer.ggml.merges"
    );
    assert!(matches!(
        Vocab {
            tokens: vec!["<|end|>", "a", "a", "c", "Ġ", "1", "ab", "abc", "Ġa", "bb", "Ġab"],
            ..Default::default()
        }
        .load(),
        Err(TokenizerError::DuplicateToken {
            first: 1,
            second: 2,
            ..
        })
    ));
    assert_eq!(
        Vocab {
            model: "llama",
            ..Default::default()
        }
        .load()
        .err(),
        Some(TokenizerError::UnsupportedModel("llama".into()))
    );
    assert_eq!(
        Vocab {
            pre: "qwen2",
            ..Default::default()
        }
        .load()
        .err(),
        Some(TokenizerError::UnsupportedPreTokenizer("qwen2".into()))
    );
    assert_eq!(
        malformed(Vocab {
            eos: 11,
            ..Default::default()
        }),
        "tokenizer.ggml.eos_token_id"
    );
    assert_eq!(
        malformed(Vocab {
            types: Some(vec![3, 1, 1]),
            ..Default::default()
        }),
        "tokenizer.ggml.token_type"
    );
    assert_eq!(
        malformed(Vocab {
            types: Some(vec![-1; 11]),
            ..Default::default()
        }),
        "tokenizer.ggml.token_type"
    );
    assert_eq!(
        malformed(Vocab {
            tokens: vec![],
            types: Some(vec![]),
            ..Default::default()
        }),
        "tokenizer.ggml.tokens"
    );
    // A byte-type token must spell its byte as <0xXX>.
    assert_eq!(
        malformed(Vocab {
            types: Some(vec![3, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            ..Default::default()
        }),
        "tokenizer.ggml.tokens"
    );
    // Without types every token is normal, so nothing is special.
    let plain = Vocab {
        types: None,
        ..Default::default()
    }
    .load()
    .expect("loads without types");
    assert!(!plain.is_control(0));
    // Wrongly typed values.
    let bytes = Writer::new()
        .kv("tokenizer.ggml.model", STRING, &str_value("gpt2"))
        .kv("tokenizer.ggml.pre", STRING, &str_value("smollm"))
        .kv("tokenizer.ggml.tokens", U32, &7u32.to_le_bytes())
        .finish();
    assert!(matches!(
        Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()),
        Err(TokenizerError::Malformed {
            key: "tokenizer.ggml.tokens",
            ..
        })
    ));
    let bytes = Writer::new().finish();
    assert!(matches!(
        Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()),
        Err(TokenizerError::Gguf(GgufError::Metadata(_)))
    ));
}

#[test]
fn chat_templates_render_and_fail_cleanly() {
    let load = |v: Vocab| {
        let bytes = v.file();
        let g = Gguf::parse(&bytes).unwrap();
        ChatTemplate::from_gguf(&g)
    };
    let t = load(Vocab::default()).expect("compiles");
    let messages = [Message::new("user", "hi"), Message::new("assistant", "yo")];
    assert_eq!(t.render(&messages, false).unwrap(), "<user>hi<assistant>yo");
    // bos_token and eos_token are the texts of those tokens.
    let t = load(Vocab {
        template: Some(
            "{{ bos_token }}|{{ eos_token }}{% if add_generation_prompt %}|go{% endif %}",
        ),
        eos: 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(t.render(&[], true).unwrap(), "<|end|>|a|go");
    assert_eq!(t.render(&[], false).unwrap(), "<|end|>|a");
    assert!(matches!(
        load(Vocab {
            template: None,
            ..Default::default()
        }),
        Err(ChatTemplateError::Metadata("tokenizer.chat_template"))
    ));
    assert!(matches!(
        load(Vocab {
            template: Some("{% for m in messages %}"),
            ..Default::default()
        }),
        Err(ChatTemplateError::Template(_))
    ));
    let t = load(Vocab {
        template: Some(
            "{% if messages[0].role != 'system' %}{{ raise_exception('needs a system turn') }}{% endif %}",
        ),
        ..Default::default()
    })
    .unwrap();
    let err = t.render(&messages, true).unwrap_err();
    assert!(err.to_string().contains("needs a system turn"), "{err}");
    // Errors at render time (an undefined callable, a bad operation) are errors too.
    let t = load(Vocab {
        template: Some("{{ nope() }}"),
        ..Default::default()
    })
    .unwrap();
    assert!(t.render(&messages, true).is_err());
}

#[test]
fn a_runaway_template_runs_out_of_fuel() {
    let t = ChatTemplate::new(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "<s>",
        "</s>",
    )
    .unwrap();
    assert!(t.render(&[Message::new("user", "hi")], true).is_err());
}

#[test]
fn a_template_that_prints_without_end_is_stopped_at_the_prompt_cap() {
    if verity_core::testing::in_capped_child(
        "a_template_that_prints_without_end_is_stopped_at_the_prompt_cap",
    ) {
        return;
    }
    // 64 x 100 MB of output within the fuel limit: before the cap, 6.4 GB in one String.
    let t = ChatTemplate::new(
        "{% for i in range(64) %}{{ \"x\" * 100000000 }}{% endfor %}",
        "<s>",
        "</s>",
    )
    .unwrap();
    let err = t.render(&[Message::new("user", "hi")], true).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
}
