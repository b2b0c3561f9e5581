//! Byte-level BPE tokenizer read from a GGUF file, encoding exactly as llama.cpp does for the
//! `gpt2` tokenizer model with the `smollm` (and `starcoder`, `gpt-2`) pre-tokenizers.
//!
//! Encoding runs in four steps, each mirroring llama.cpp's behavior:
//! 1. the text is cut around the texts of special tokens (control and unknown tokens only when
//!    `parse_special` is true; user-defined tokens always), longest texts first;
//! 2. every remaining piece is pre-tokenized: for `smollm` each `\p{N}` code point is isolated
//!    first, then each part is split by the GPT-2 pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
//! 3. each word's UTF-8 bytes become one symbol each (the GPT-2 byte-to-unicode table decides
//!    which token a byte is);
//! 4. adjacent symbols are merged, lowest merge rank first (leftmost first among equal ranks),
//!    until no listed merge applies.
//!
//! `\p{L}`, `\p{N}` and `\s` are Unicode general categories L and N and the White_Space
//! property. `unicode-properties` is pinned to 0.1.2 because its tables are Unicode 15.1, the
//! version llama.cpp's own tables are generated from: the two classify every code point the
//! same (a newer Unicode would make letters of characters llama.cpp treats as unassigned).
//!
//! Everything taken from the file is checked at load: a malformed vocabulary is an error, and
//! neither loading nor encoding can panic on it. Stricter than llama.cpp: every merge's parts and
//! result must be tokens, token texts must be unique, and the BOS and EOS ids must be given.
//! Not carried over: llama.cpp's per-model-name special-token whitespace stripping (phi-3 and a
//! few BERT models) and its promotion of normal tokens that look like end-of-turn markers to
//! control tokens; neither applies to SmolLM2.

use crate::gguf::{Gguf, GgufError, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model `{0}` is not supported (only `gpt2` byte-level BPE is)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer `{0}` is not supported (smollm, starcoder and gpt-2 are)")]
    UnsupportedPreTokenizer(String),
    #[error("metadata `{key}`: {reason}")]
    Malformed { key: &'static str, reason: String },
    #[error("tokens {first} and {second} have the same text {text:?}")]
    DuplicateToken {
        first: u32,
        second: u32,
        text: String,
    },
    #[error("merge {rank} ({merge:?}) names a token that is not in the vocabulary")]
    UnknownMergeToken { rank: usize, merge: String },
}

const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const BOS: &str = "tokenizer.ggml.bos_token_id";
const EOS: &str = "tokenizer.ggml.eos_token_id";

/// What a token is, from GGUF's `tokenizer.ggml.token_type` (llama.cpp's token attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    /// A type code outside 1..=6 (llama.cpp treats these as undefined and prints nothing).
    Undefined,
}

impl TokenKind {
    fn from_code(code: u64) -> TokenKind {
        match code {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }
}

/// The pre-tokenizers implemented (llama.cpp's names in `tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreTokenizer {
    /// The GPT-2 pattern alone (`gpt-2`).
    Gpt2,
    /// Every `\p{N}` code point isolated, then the GPT-2 pattern (`smollm`, `starcoder`).
    DigitsThenGpt2,
}

/// A byte-level BPE vocabulary with its merges, ready to encode and decode.
pub struct Tokenizer {
    /// Token texts as stored in the file (GPT-2 byte-encoded for normal tokens).
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    /// The bytes every token stands for, concatenated; `piece_ends[i]` ends token `i`'s.
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    by_text: HashMap<String, u32>,
    /// (left, right) -> (rank, merged token).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The token for each single byte, if the vocabulary has one.
    byte_tokens: [Option<u32>; 256],
    /// Tokens split out of the text before pre-tokenizing, longest text first.
    specials: Vec<u32>,
    pre: PreTokenizer,
    bos: u32,
    eos: u32,
    add_bos: bool,
}

/// GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the rest are
/// shifted to U+0100 onwards, so every byte has a visible character.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            b as u32
        } else {
            shifted += 1;
            255 + shifted
        };
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

fn metadata_err(key: &'static str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Malformed {
        key,
        reason: reason.into(),
    }
}

fn string_array<'g>(g: &'g Gguf, key: &'static str) -> Result<Vec<&'g str>, TokenizerError> {
    let items = g
        .get(key)?
        .as_array()
        .ok_or_else(|| metadata_err(key, "not an array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| metadata_err(key, format!("item {i} is not a string")))
        })
        .collect()
}

fn token_id(g: &Gguf, key: &'static str, n: usize) -> Result<u32, TokenizerError> {
    let id = g.get_u64(key)?;
    if id >= n as u64 {
        return Err(metadata_err(
            key,
            format!("id {id} is outside the vocabulary"),
        ));
    }
    Ok(id as u32)
}

impl Tokenizer {
    /// Reads the vocabulary, token types, merges and special ids from GGUF metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let pre_name = match g.metadata.get("tokenizer.ggml.pre") {
            None => "",
            Some(v) => v
                .as_str()
                .ok_or_else(|| metadata_err("tokenizer.ggml.pre", "not a string"))?,
        };
        let pre = match pre_name {
            "smollm" | "starcoder" => PreTokenizer::DigitsThenGpt2,
            "gpt-2" => PreTokenizer::Gpt2,
            other => return Err(TokenizerError::UnsupportedPreTokenizer(other.into())),
        };

        let raw = string_array(g, TOKENS)?;
        let n = raw.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(metadata_err(TOKENS, format!("{n} tokens")));
        }
        // llama.cpp names empty tokens so that no text is empty (an empty special text would
        // match everywhere).
        let texts: Vec<String> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    (*t).to_string()
                }
            })
            .collect();

        let kinds: Vec<TokenKind> = match g.metadata.get(TOKEN_TYPE) {
            // Without types every token is normal, as in llama.cpp.
            None => vec![TokenKind::Normal; n],
            Some(v) => {
                let items = v
                    .as_array()
                    .ok_or_else(|| metadata_err(TOKEN_TYPE, "not an array"))?;
                if items.len() < n {
                    return Err(metadata_err(
                        TOKEN_TYPE,
                        format!("{} types for {n} tokens", items.len()),
                    ));
                }
                items[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::I32(_) | Value::U32(_) => v
                            .as_u64()
                            .map(TokenKind::from_code)
                            .ok_or_else(|| metadata_err(TOKEN_TYPE, format!("item {i} < 0"))),
                        _ => Err(metadata_err(
                            TOKEN_TYPE,
                            format!("item {i} is not a 32-bit integer"),
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
        };

        let mut by_text = HashMap::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            if let Some(first) = by_text.insert(t.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken {
                    first,
                    second: i as u32,
                    text: t.clone(),
                });
            }
        }

        let to_char = byte_to_char_table();
        let mut from_char: HashMap<char, u8> = HashMap::with_capacity(256);
        let mut byte_tokens = [None; 256];
        for (b, c) in to_char.iter().enumerate() {
            from_char.insert(*c, b as u8);
            byte_tokens[b] = by_text.get(c.to_string().as_str()).copied();
        }

        let mut pieces = Vec::new();
        let mut piece_ends = Vec::with_capacity(n);
        for (i, (text, kind)) in texts.iter().zip(&kinds).enumerate() {
            match kind {
                TokenKind::Normal => {
                    // A character outside the byte table passes through as its UTF-8 (llama.cpp
                    // prints an `[UNK_BYTE_…]` marker instead); GPT-2 vocabularies have none.
                    for c in text.chars() {
                        match from_char.get(&c) {
                            Some(b) => pieces.push(*b),
                            None => pieces.extend(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                }
                TokenKind::Unknown | TokenKind::Control | TokenKind::UserDefined => {
                    pieces.extend(text.as_bytes())
                }
                TokenKind::Byte => {
                    let byte = text
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .filter(|h| h.len() == 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            metadata_err(TOKENS, format!("byte token {i} is {text:?}, not <0xXX>"))
                        })?;
                    pieces.push(byte);
                }
                TokenKind::Unused | TokenKind::Undefined => {}
            }
            piece_ends.push(pieces.len());
        }

        let merge_texts = string_array(g, MERGES)?;
        let mut merges = HashMap::with_capacity(merge_texts.len());
        for (rank, m) in merge_texts.iter().enumerate() {
            // The two parts are separated by the first space after the first character.
            let split = m
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == ' ')
                .map(|(at, _)| (&m[..at], &m[at + 1..]))
                .ok_or_else(|| {
                    metadata_err(MERGES, format!("merge {rank} ({m:?}) has no space"))
                })?;
            let id = |s: &str| by_text.get(s).copied();
            let joined = format!("{}{}", split.0, split.1);
            let (Some(left), Some(right), Some(merged)) = (id(split.0), id(split.1), id(&joined))
            else {
                return Err(TokenizerError::UnknownMergeToken {
                    rank,
                    merge: (*m).into(),
                });
            };
            let rank32 = u32::try_from(rank).map_err(|_| metadata_err(MERGES, "too many"))?;
            // A repeated pair keeps its first (lowest) rank, as in llama.cpp.
            merges.entry((left, right)).or_insert((rank32, merged));
        }

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                matches!(
                    kinds[i as usize],
                    TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
                )
            })
            .collect();
        specials.sort_by_key(|&i| Reverse(texts[i as usize].len()));

        let add_bos = match g.metadata.get("tokenizer.ggml.add_bos_token") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(metadata_err(
                    "tokenizer.ggml.add_bos_token",
                    "not a boolean",
                ))
            }
        };

        Ok(Tokenizer {
            bos: token_id(g, BOS, n)?,
            eos: token_id(g, EOS, n)?,
            texts,
            kinds,
            pieces,
            piece_ends,
            by_text,
            merges,
            byte_tokens,
            specials,
            pre,
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Whether the model asks for BOS before a prompt (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    /// The token's text as stored in the file (byte-encoded for normal tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.kind(id) == Some(TokenKind::Control)
    }

    /// The bytes a token stands for: normal tokens their raw bytes, control, unknown and
    /// user-defined tokens their text, unused tokens nothing. An unknown id gives nothing.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.piece_ends.len() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        &self.pieces[start..self.piece_ends[i]]
    }

    /// The text of a token sequence (invalid UTF-8, e.g. a cut multi-byte character, becomes
    /// U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for id in ids {
            bytes.extend_from_slice(self.token_bytes(*id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Token ids for `text`, without BOS (add it with [`Tokenizer::bos`] when
    /// [`Tokenizer::add_bos`] says so). With `parse_special`, control-token texts such as
    /// `<|im_start|>` in the text become those tokens; without, they are encoded as plain text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        for fragment in self.split_specials(text, parse_special) {
            match fragment {
                Fragment::Text(t) => self.encode_plain(t, &mut out),
                Fragment::Token(id) => out.push(id),
            }
        }
        out
    }

    /// Cuts the text around special-token texts, each special token in turn over the pieces
    /// left by the ones before it (llama.cpp's order: longest text first).
    fn split_specials<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for &id in &self.specials {
            let kind = self.kinds[id as usize];
            if !parse_special && matches!(kind, TokenKind::Control | TokenKind::Unknown) {
                continue;
            }
            let special = self.texts[id as usize].as_str();
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(special)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text(t) = f else {
                    next.push(f);
                    continue;
                };
                let mut rest = 0;
                for (at, _) in t.match_indices(special) {
                    if at > rest {
                        next.push(Fragment::Text(&t[rest..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = at + special.len();
                }
                if rest < t.len() {
                    next.push(Fragment::Text(&t[rest..]));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Pre-tokenizes and BPE-encodes text that holds no special tokens.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut words = Vec::new();
        match self.pre {
            PreTokenizer::Gpt2 => split_gpt2(&chars, 0, chars.len(), &mut words),
            PreTokenizer::DigitsThenGpt2 => {
                let mut start = 0;
                for (i, (_, c)) in chars.iter().enumerate() {
                    if is_number(*c) {
                        split_gpt2(&chars, start, i, &mut words);
                        words.push((i, i + 1));
                        start = i + 1;
                    }
                }
                split_gpt2(&chars, start, chars.len(), &mut words);
            }
        }
        let byte_at = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
        for (start, end) in words {
            self.bpe(&text.as_bytes()[byte_at(start)..byte_at(end)], out);
        }
    }

    /// Merges one word's byte symbols by rank. Bytes with no token of their own (e.g. 0xC0 in
    /// SmolLM2's vocabulary) are dropped, as llama.cpp drops them.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>) {
        match word {
            [] => return,
            [b] => {
                out.extend(self.byte_tokens[*b as usize]);
                return;
            }
            _ => {}
        }
        struct Symbol {
            token: Option<u32>,
            prev: usize,
            next: usize,
        }
        const NONE: usize = usize::MAX;
        let mut symbols: Vec<Symbol> = word
            .iter()
            .enumerate()
            .map(|(i, b)| Symbol {
                token: self.byte_tokens[*b as usize],
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == word.len() { NONE } else { i + 1 },
            })
            .collect();
        // Candidate merges ordered by (rank, left position); stale ones are skipped on pop.
        let mut queue = BinaryHeap::new();
        let candidate = |symbols: &[Symbol], left: usize, right: usize| {
            let (Some(l), Some(r)) = (symbols[left].token, symbols[right].token) else {
                return None;
            };
            self.merges
                .get(&(l, r))
                .map(|&(rank, merged)| Reverse((rank, left, right, l, r, merged)))
        };
        for i in 1..symbols.len() {
            queue.extend(candidate(&symbols, i - 1, i));
        }
        while let Some(Reverse((_, left, right, l, r, merged))) = queue.pop() {
            if symbols[left].token != Some(l)
                || symbols[right].token != Some(r)
                || symbols[left].next != right
            {
                continue;
            }
            symbols[left].token = Some(merged);
            symbols[right].token = None;
            let after = symbols[right].next;
            symbols[left].next = after;
            symbols[right].next = NONE;
            if after != NONE {
                symbols[after].prev = left;
            }
            let before = symbols[left].prev;
            if before != NONE {
                queue.extend(candidate(&symbols, before, left));
            }
            if after != NONE {
                queue.extend(candidate(&symbols, left, after));
            }
        }
        let mut i = 0;
        while i != NONE {
            out.extend(symbols[i].token);
            i = symbols[i].next;
        }
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Unicode general category L (letters), as llama.cpp's `\p{L}`.
fn is_letter(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Letter
}

/// Unicode general category N (numbers), as llama.cpp's `\p{N}`.
fn is_number(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Number
}

/// Neither whitespace, letter nor number: `[^\s\p{L}\p{N}]`.
fn is_other(c: char) -> bool {
    !(c.is_whitespace() || is_letter(c) || is_number(c))
}

/// Splits `chars[start..end]` by the GPT-2 pattern, pushing (start, end) char ranges. Like
/// llama.cpp's hand-written matcher, the range is a world of its own: nothing before `start`
/// or from `end` on is seen, so a trailing whitespace run is never shortened for a look-ahead.
fn split_gpt2(chars: &[(usize, char)], start: usize, end: usize, words: &mut Vec<(usize, usize)>) {
    let at = |i: usize| if i < end { Some(chars[i].1) } else { None };
    let mut pos = start;
    while pos < end {
        let c = chars[pos].1;
        let word_start = pos;
        // 's|'t|'re|'ve|'m|'ll|'d
        if c == '\'' {
            let suffix = match (at(pos + 1), at(pos + 2)) {
                (Some('s' | 't' | 'm' | 'd'), _) => 2,
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
                _ => 0,
            };
            if suffix > 0 {
                pos += suffix;
                words.push((word_start, pos));
                continue;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the class of the character after an
        // optional leading space decides, and the run takes every following one of that class.
        let first = if c == ' ' { pos + 1 } else { pos };
        let class: Option<fn(char) -> bool> = match at(first) {
            Some(f) if is_letter(f) => Some(is_letter),
            Some(f) if is_number(f) => Some(is_number),
            Some(f) if is_other(f) => Some(is_other),
            _ => None,
        };
        if let Some(class) = class {
            pos = first;
            while at(pos).is_some_and(class) {
                pos += 1;
            }
            words.push((word_start, pos));
            continue;
        }
        let mut spaces = 0;
        while at(pos + spaces).is_some_and(char::is_whitespace) {
            spaces += 1;
        }
        if spaces > 1 && pos + spaces < end {
            // \s+(?!\S): leave the last whitespace to start the next word.
            pos += spaces - 1;
        } else if spaces > 0 {
            // \s+
            pos += spaces;
        } else {
            pos += 1;
        }
        words.push((word_start, pos));
    }
}
