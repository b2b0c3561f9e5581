//! Constrained decoding for `response_format: {"type": "json_object"}`.
//!
//! [`JsonState`] is a byte-level incremental recognizer of JSON object texts: it accepts exactly
//! the byte strings that are prefixes of a JSON object (RFC 8259, with a few bounds listed below)
//! and says when the object is complete. The sampler masks out every token whose bytes the
//! current state rejects ([`TokenTrie::allowed`]) and stops once [`JsonState::is_complete`].
//!
//! The bounds keep generation finite and the output parseable by strict parsers, and never leave
//! the recognizer in a state from which no byte can continue:
//! - nesting deeper than [`MAX_DEPTH`] containers is rejected;
//! - at most [`MAX_LEADING_WS`] whitespace bytes before the `{`, and runs of more than
//!   [`MAX_WS_RUN`] whitespace bytes between tokens are rejected, so a model cannot loop on
//!   whitespace;
//! - numbers have at most [`MAX_INT_DIGITS`] integer digits, [`MAX_FRAC_DIGITS`] fraction digits
//!   and [`MAX_EXP_DIGITS`] exponent digits, so every number is a finite `f64` (parsers such as
//!   serde_json reject `1e400`);
//! - `\u` escapes must form valid scalar values (a high surrogate must be followed by a low one),
//!   and raw bytes in strings must be well-formed UTF-8 (no overlongs, surrogates or values above
//!   U+10FFFF), so the output is always valid UTF-8 text;
//! - nothing, not even whitespace, is accepted after the closing `}`.

/// Containers (objects and arrays) that may be open at once.
pub const MAX_DEPTH: usize = 32;
/// Whitespace bytes allowed before the opening `{`.
pub const MAX_LEADING_WS: u8 = 4;
/// Longest run of whitespace allowed between tokens inside the object.
pub const MAX_WS_RUN: u8 = 16;
/// Digits allowed in a number's integer part.
pub const MAX_INT_DIGITS: u8 = 20;
/// Digits allowed in a number's fraction.
pub const MAX_FRAC_DIGITS: u8 = 20;
/// Digits allowed in a number's exponent (with [`MAX_INT_DIGITS`], keeps numbers below 1e120).
pub const MAX_EXP_DIGITS: u8 = 2;

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// Where in a number the recognizer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    /// After `-`: a digit must follow.
    Minus,
    /// The integer part is a single `0`: no more integer digits.
    Zero,
    /// In a nonzero integer part.
    Int,
    /// After `.`: a digit must follow.
    Dot,
    /// In the fraction.
    Frac,
    /// After `e`/`E`: a sign or digit must follow.
    E,
    /// After the exponent's sign: a digit must follow.
    ESign,
    /// In the exponent.
    Exp,
}

impl Num {
    /// Whether the number may end here.
    fn terminal(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Before the top-level `{`.
    Start,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:`, or after `,` in an array: a value.
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After a value inside a container: `,` or that container's closer.
    AfterValue,
    /// Inside a string (key or value, see `JsonState::key`).
    Str,
    /// After `\` in a string.
    Escape,
    /// In the hex digits of `\u`: `seen` digits so far, their `value`, and whether this escape
    /// must be the low surrogate completing a pair.
    Hex {
        seen: u8,
        value: u16,
        low: bool,
    },
    /// After a high-surrogate escape: the `\` of its low surrogate must follow.
    LowBackslash,
    /// After that `\`: the `u` must follow.
    LowU,
    /// Inside a multi-byte UTF-8 character: `left` continuation bytes to go, the next in
    /// `lo..=hi` (narrower than 0x80..=0xBF right after some lead bytes, which is what rules out
    /// overlongs, surrogates and values above U+10FFFF).
    Utf8 {
        left: u8,
        lo: u8,
        hi: u8,
    },
    Num(Num),
    /// Inside `LITERALS[which]`, `pos` bytes matched.
    Lit {
        which: u8,
        pos: u8,
    },
    /// The top-level object is closed.
    Done,
}

/// Incremental recognizer of JSON object texts, fed one byte at a time.
///
/// It is `Copy` and 12 bytes, so trying a byte or a token is a cheap copy plus pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonState {
    mode: Mode,
    /// Bit `i` set: the container at depth `i` is an object (clear: an array).
    stack: u32,
    /// Open containers.
    depth: u8,
    /// Length of the current whitespace run (between tokens).
    ws: u8,
    /// Digits in the current number part (integer, fraction or exponent).
    digits: u8,
    /// Whether the current string is an object key.
    key: bool,
}

// The container stack is a bitmask.
const _: () = assert!(MAX_DEPTH <= 32);

impl Default for JsonState {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonState {
    /// The state before any byte: expecting (optional whitespace and) `{`.
    pub fn new() -> Self {
        JsonState {
            mode: Mode::Start,
            stack: 0,
            depth: 0,
            ws: 0,
            digits: 0,
            key: false,
        }
    }

    /// Whether a full top-level object has been closed; no further byte is accepted.
    pub fn is_complete(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Containers currently open.
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// Whether `bytes` can all follow the text so far (an empty slice always can).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut s = *self;
        bytes.iter().all(|&b| s.push(b))
    }

    /// Feeds one byte. Returns false if the text so far followed by `b` is not a prefix of a
    /// JSON object text (within the bounds in the module docs); the state is then unspecified,
    /// so callers that want to try a byte push on a copy.
    pub fn push(&mut self, b: u8) -> bool {
        match self.mode {
            Mode::Str => self.string_byte(b),
            Mode::Escape => {
                self.mode = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Mode::Str,
                    b'u' => Mode::Hex {
                        seen: 0,
                        value: 0,
                        low: false,
                    },
                    _ => return false,
                };
                true
            }
            Mode::Hex { seen, value, low } => self.hex_digit(b, seen, value, low),
            Mode::LowBackslash => {
                self.mode = Mode::LowU;
                b == b'\\'
            }
            Mode::LowU => {
                self.mode = Mode::Hex {
                    seen: 0,
                    value: 0,
                    low: true,
                };
                b == b'u'
            }
            Mode::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return false;
                }
                self.mode = if left == 1 {
                    Mode::Str
                } else {
                    Mode::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xBF,
                    }
                };
                true
            }
            Mode::Num(n) => self.number_byte(b, n),
            Mode::Lit { which, pos } => {
                let lit = LITERALS[usize::from(which)];
                if lit.get(usize::from(pos)) != Some(&b) {
                    return false;
                }
                let pos = pos + 1;
                self.mode = if usize::from(pos) == lit.len() {
                    Mode::AfterValue
                } else {
                    Mode::Lit { which, pos }
                };
                true
            }
            Mode::Done => false,
            Mode::Start
            | Mode::KeyOrClose
            | Mode::Key
            | Mode::Colon
            | Mode::Value
            | Mode::ValueOrClose
            | Mode::AfterValue => self.structural(b),
        }
    }

    /// A byte between tokens: whitespace, punctuation, or the first byte of a key or value.
    fn structural(&mut self, b: u8) -> bool {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            let limit = if self.mode == Mode::Start {
                MAX_LEADING_WS
            } else {
                MAX_WS_RUN
            };
            self.ws = self.ws.saturating_add(1);
            return self.ws <= limit;
        }
        self.ws = 0;
        match (self.mode, b) {
            (Mode::Start, b'{') => self.open(true),
            (Mode::KeyOrClose | Mode::Key, b'"') => {
                self.key = true;
                self.mode = Mode::Str;
                true
            }
            (Mode::KeyOrClose, b'}') => self.close(true),
            (Mode::Colon, b':') => {
                self.mode = Mode::Value;
                true
            }
            (Mode::ValueOrClose, b']') => self.close(false),
            (Mode::Value | Mode::ValueOrClose, _) => self.value_start(b),
            (Mode::AfterValue, b',') => {
                self.mode = if self.top_is_object() {
                    Mode::Key
                } else {
                    Mode::Value
                };
                true
            }
            (Mode::AfterValue, b'}') if self.top_is_object() => self.close(true),
            (Mode::AfterValue, b']') if !self.top_is_object() => self.close(false),
            _ => false,
        }
    }

    /// The first byte of a value.
    fn value_start(&mut self, b: u8) -> bool {
        self.mode = match b {
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'"' => {
                self.key = false;
                Mode::Str
            }
            b'-' => Mode::Num(Num::Minus),
            b'0' => Mode::Num(Num::Zero),
            b'1'..=b'9' => {
                self.digits = 1;
                Mode::Num(Num::Int)
            }
            b't' => Mode::Lit { which: 0, pos: 1 },
            b'f' => Mode::Lit { which: 1, pos: 1 },
            b'n' => Mode::Lit { which: 2, pos: 1 },
            _ => return false,
        };
        true
    }

    fn top_is_object(&self) -> bool {
        self.depth > 0 && self.stack >> (self.depth - 1) & 1 == 1
    }

    fn open(&mut self, object: bool) -> bool {
        if usize::from(self.depth) >= MAX_DEPTH {
            return false;
        }
        if object {
            self.stack |= 1 << self.depth;
        } else {
            self.stack &= !(1 << self.depth);
        }
        self.depth += 1;
        self.mode = if object {
            Mode::KeyOrClose
        } else {
            Mode::ValueOrClose
        };
        true
    }

    /// Closes the innermost container; the caller has checked it is of the right kind.
    fn close(&mut self, object: bool) -> bool {
        debug_assert_eq!(self.top_is_object(), object);
        self.depth -= 1;
        self.mode = if self.depth == 0 {
            Mode::Done
        } else {
            Mode::AfterValue
        };
        true
    }

    fn string_byte(&mut self, b: u8) -> bool {
        self.mode = match b {
            b'"' => {
                if self.key {
                    Mode::Colon
                } else {
                    Mode::AfterValue
                }
            }
            b'\\' => Mode::Escape,
            0x00..=0x1F => return false,
            0x20..=0x7F => return true,
            0xC2..=0xDF => utf8(1, 0x80, 0xBF),
            0xE0 => utf8(2, 0xA0, 0xBF),
            0xED => utf8(2, 0x80, 0x9F),
            0xE1..=0xEF => utf8(2, 0x80, 0xBF),
            0xF0 => utf8(3, 0x90, 0xBF),
            0xF1..=0xF3 => utf8(3, 0x80, 0xBF),
            0xF4 => utf8(3, 0x80, 0x8F),
            // Continuation bytes without a lead, overlong leads C0/C1, and F5..FF.
            _ => return false,
        };
        true
    }

    /// One hex digit of a `\u` escape. Surrogates are checked as soon as the second digit
    /// decides them: a low surrogate must follow a high one, and nowhere else.
    fn hex_digit(&mut self, b: u8, seen: u8, value: u16, low: bool) -> bool {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return false,
        };
        let value = value << 4 | u16::from(d);
        let seen = seen + 1;
        let in_low_range = (0xDC..=0xDF).contains(&value);
        match (seen, low) {
            (1, true) if value != 0xD => return false,
            (2, true) if !in_low_range => return false,
            (2, false) if in_low_range => return false,
            _ => {}
        }
        self.mode = if seen < 4 {
            Mode::Hex { seen, value, low }
        } else if !low && (0xD800..=0xDBFF).contains(&value) {
            Mode::LowBackslash
        } else {
            Mode::Str
        };
        true
    }

    fn number_byte(&mut self, b: u8, n: Num) -> bool {
        let digit = b.is_ascii_digit();
        let next = match (n, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => {
                self.digits = 1;
                Num::Int
            }
            (Num::Int, _) if digit => return self.more_digits(MAX_INT_DIGITS),
            (Num::Frac, _) if digit => return self.more_digits(MAX_FRAC_DIGITS),
            (Num::Exp, _) if digit => return self.more_digits(MAX_EXP_DIGITS),
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::E,
            (Num::Dot, _) if digit => {
                self.digits = 1;
                Num::Frac
            }
            (Num::E, b'+' | b'-') => Num::ESign,
            (Num::E | Num::ESign, _) if digit => {
                self.digits = 1;
                Num::Exp
            }
            // A digit after a leading zero ("01") is never valid.
            (Num::Zero, _) if digit => return false,
            // Anything else ends the number if it may end here; the byte then has to be valid
            // after a value.
            _ if n.terminal() => {
                self.mode = Mode::AfterValue;
                return self.structural(b);
            }
            _ => return false,
        };
        self.mode = Mode::Num(next);
        true
    }

    fn more_digits(&mut self, max: u8) -> bool {
        self.digits = self.digits.saturating_add(1);
        self.digits <= max
    }
}

fn utf8(left: u8, lo: u8, hi: u8) -> Mode {
    Mode::Utf8 { left, lo, hi }
}

/// A node of a [`Trie`]: the byte on the edge into it, its children (consecutive nodes) and the
/// tokens whose bytes end here (a range of `Trie::ends`).
#[derive(Clone, Copy, Debug)]
struct Node {
    byte: u8,
    children: u16,
    first_child: u32,
    ends_start: u32,
    ends_end: u32,
}

/// Token byte strings as a trie, so a walk tries each shared prefix once and skips a whole
/// subtree as soon as its prefix is rejected.
#[derive(Clone, Debug)]
struct Trie {
    nodes: Vec<Node>,
    /// Token ids grouped by the node where their bytes end.
    ends: Vec<u32>,
}

impl Trie {
    /// The trie of tokens `ids` (all with nonempty bytes).
    fn build<'a>(bytes: impl Fn(u32) -> &'a [u8], mut ids: Vec<u32>) -> Trie {
        // Lexicographic order puts every node's tokens in one contiguous range, the ones ending
        // at the node first, then its children's ranges in byte order.
        ids.sort_unstable_by(|&a, &b| bytes(a).cmp(bytes(b)));
        let empty = Node {
            byte: 0,
            children: 0,
            first_child: 0,
            ends_start: 0,
            ends_end: 0,
        };
        let mut nodes = vec![empty];
        let mut ends = Vec::with_capacity(ids.len());
        // Depth first, each node's children allocated consecutively when the node is expanded,
        // so the (also depth-first) walk reads the arrays nearly in order.
        let mut stack = vec![(0usize, 0usize, ids.len(), 0usize)];
        let mut groups = Vec::new();
        while let Some((node, lo, hi, depth)) = stack.pop() {
            let mut i = lo;
            nodes[node].ends_start = ends.len() as u32;
            while i < hi && bytes(ids[i]).len() == depth {
                ends.push(ids[i]);
                i += 1;
            }
            nodes[node].ends_end = ends.len() as u32;
            let first_child = nodes.len();
            groups.clear();
            while i < hi {
                let b = bytes(ids[i])[depth];
                let mut j = i + 1;
                while j < hi && bytes(ids[j])[depth] == b {
                    j += 1;
                }
                nodes.push(Node { byte: b, ..empty });
                groups.push((nodes.len() - 1, i, j, depth + 1));
                i = j;
            }
            stack.extend(groups.iter().rev());
            nodes[node].first_child = first_child as u32;
            // At most 256 distinct next bytes.
            nodes[node].children = (nodes.len() - first_child) as u16;
        }
        Trie { nodes, ends }
    }

    /// Sets `out[id]` for every token whose bytes `state` accepts; returns how many.
    fn walk(&self, state: &JsonState, out: &mut [bool]) -> usize {
        let mut count = 0;
        let mut stack: Vec<(u32, JsonState)> = Vec::with_capacity(64);
        stack.push((0, *state));
        while let Some((node, st)) = stack.pop() {
            let n = self.nodes[node as usize];
            for child in (n.first_child..n.first_child + u32::from(n.children)).rev() {
                let c = &self.nodes[child as usize];
                let mut s = st;
                if !s.push(c.byte) {
                    continue;
                }
                for &id in &self.ends[c.ends_start as usize..c.ends_end as usize] {
                    out[id as usize] = true;
                    count += 1;
                }
                if c.children > 0 {
                    stack.push((child, s));
                }
            }
        }
        count
    }
}

/// The vocabulary prepared once per model for masking: [`TokenTrie::allowed`] gives the tokens
/// a [`JsonState`] accepts.
///
/// Inside string content, where nearly every token is allowed, a trie walk would still visit
/// the whole trie. So tokens that stay inside a string whatever the string (their fate depends
/// only on being in plain string content) are classified once, and for such states only the
/// other tokens are walked.
#[derive(Clone, Debug)]
pub struct TokenTrie {
    /// Every token with nonempty bytes.
    all: Trie,
    /// The tokens not in `in_string`.
    rest: Trie,
    /// Per token id: accepted from plain string content without leaving the string.
    in_string: Vec<bool>,
    in_string_count: usize,
}

impl TokenTrie {
    /// Builds the tries; token id `i` has bytes `tokens[i]`. Tokens with no bytes (e.g. special
    /// tokens that render to nothing) are never allowed.
    pub fn new<T: AsRef<[u8]>>(tokens: &[T]) -> TokenTrie {
        let vocab = tokens.len().min(u32::MAX as usize);
        let bytes = |id: u32| tokens[id as usize].as_ref();
        let nonempty: Vec<u32> = (0..vocab as u32)
            .filter(|&id| !bytes(id).is_empty())
            .collect();
        let mut in_string = vec![false; vocab];
        let mut rest = Vec::new();
        for &id in &nonempty {
            if stays_in_string(bytes(id)) {
                in_string[id as usize] = true;
            } else {
                rest.push(id);
            }
        }
        TokenTrie {
            in_string_count: nonempty.len() - rest.len(),
            all: Trie::build(bytes, nonempty),
            rest: Trie::build(bytes, rest),
            in_string,
        }
    }

    /// Number of token ids (the length of the mask [`TokenTrie::allowed`] fills).
    pub fn vocab_size(&self) -> usize {
        self.in_string.len()
    }

    /// Sets `out` to one flag per token id: whether all of the token's bytes are accepted from
    /// `state`. Returns how many are allowed; zero once `state` is complete, when the caller
    /// should stop (end of sequence) rather than sample.
    pub fn allowed(&self, state: &JsonState, out: &mut Vec<bool>) -> usize {
        out.clear();
        if state.mode == Mode::Str {
            out.extend_from_slice(&self.in_string);
            self.in_string_count + self.rest.walk(state, out)
        } else {
            out.resize(self.in_string.len(), false);
            self.all.walk(state, out)
        }
    }
}

/// Whether `bytes`, pushed in plain string content, are all accepted and never close the
/// string. Such bytes only move between string modes, which read nothing else of the state,
/// so the answer holds for every state in `Mode::Str`.
fn stays_in_string(bytes: &[u8]) -> bool {
    let mut s = JsonState {
        mode: Mode::Str,
        stack: 1,
        depth: 1,
        ws: 0,
        digits: 0,
        key: false,
    };
    bytes.iter().all(|&b| {
        s.push(b)
            && matches!(
                s.mode,
                Mode::Str
                    | Mode::Escape
                    | Mode::Hex { .. }
                    | Mode::LowBackslash
                    | Mode::LowU
                    | Mode::Utf8 { .. }
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `text` byte by byte from the start; returns the index of the first rejected byte.
    fn first_reject(text: &[u8]) -> Option<usize> {
        let mut s = JsonState::new();
        text.iter().position(|&b| !s.push(b))
    }

    fn assert_valid(text: &[u8]) {
        let mut s = JsonState::new();
        for (i, &b) in text.iter().enumerate() {
            assert!(
                !s.is_complete(),
                "complete early at {i} in {:?}",
                show(text)
            );
            assert!(s.push(b), "rejected byte {i} of {:?}", show(text));
        }
        assert!(s.is_complete(), "not complete: {:?}", show(text));
        let parsed = std::str::from_utf8(text).ok().and_then(|t| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).ok()
        });
        assert!(parsed.is_some(), "serde_json rejects {:?}", show(text));
    }

    fn assert_reject_at(text: &[u8], at: usize) {
        assert_eq!(first_reject(text), Some(at), "{:?}", show(text));
    }

    fn show(text: &[u8]) -> String {
        String::from_utf8_lossy(text).into_owned()
    }

    #[test]
    fn valid_objects() {
        let docs: &[&[u8]] = &[
            b"{}",
            b"    {}",
            b"{\"a\":1}",
            b"{\"\":\"\"}",
            b"{\"a\":{\"b\":[1,2,{\"c\":null}],\"d\":[],\"e\":[[]]},\"f\":true,\"g\":false}",
            br#"{"s":"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00 \u0000 \uffff"}"#,
            "{\"k\":\"h\u{e9}llo \u{65e5}\u{672c} \u{1F600} \u{7f}\",\"\u{10FFFF}\":0}".as_bytes(),
            b"{\"n\":[-0.5e+10,0,-0,1.25,3E-7,10,1e5,0.0,-12.5E99,1e-05]}",
            b"{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : {\r\n } , \"c\" : -1 }",
            b"{\"a\":1 ,\"b\":true }",
            b"{\"n\":12345678901234567890.12345678901234567890e-99}",
        ];
        for doc in docs {
            assert_valid(doc);
        }
    }

    #[test]
    fn deepest_nesting_is_accepted() {
        let mut doc = b"{\"a\":".to_vec();
        doc.extend(std::iter::repeat_n(b'[', MAX_DEPTH - 1));
        doc.extend(std::iter::repeat_n(b']', MAX_DEPTH - 1));
        doc.push(b'}');
        assert_valid(&doc);
    }

    #[test]
    fn invalid_texts_rejected_at_the_right_byte() {
        let cases: &[(&[u8], usize)] = &[
            (b"[1]", 0),
            (b"\"a\"", 0),
            (b"1", 0),
            (b"{\"a\":1,}", 7),
            (b"{\"a\":01}", 6),
            (b"{\"a\":-01}", 7),
            (b"{\"a\":\"b\nc\"}", 7),
            (b"{\"a\":\"\x1f\"}", 6),
            (b"{\"a\":\"\\x\"}", 7),
            (b"{\"a\":\"\\u12G4\"}", 10),
            (b"{\"a\":\"\xff\"}", 6),
            (b"{\"a\":\"\x80\"}", 6),
            (b"{\"a\":\"\xc3(\"}", 7),
            (b"{\"a\":\"\xc0\x80\"}", 6),
            (b"{\"a\":\"\xe0\x80\x80\"}", 7),
            (b"{\"a\":\"\xed\xa0\x80\"}", 7),
            (b"{\"a\":\"\xf4\x90\x80\x80\"}", 7),
            (b"{\"a\":\"\xf5\"}", 6),
            (b"{\"a\":\"\\uDC00\"}", 9),
            (b"{\"a\":\"\\uD800x\"}", 12),
            (b"{\"a\":\"\\uD800\\n\"}", 13),
            (b"{\"a\":\"\\uD800\\uD800\"}", 15),
            (b"{}}", 2),
            (b"{} ", 2),
            (b"{a:1}", 1),
            (b"{\"a\" 1}", 5),
            (b"{\"a\":1 2}", 7),
            (b"{\"a\":tru}", 8),
            (b"{\"a\":nul1}", 8),
            (b"{\"a\":truex}", 9),
            (b"{\"a\":1.}", 7),
            (b"{\"a\":1.e5}", 7),
            (b"{\"a\":-}", 6),
            (b"{\"a\":1e}", 7),
            (b"{\"a\":1e+}", 8),
            (b"{\"a\":.5}", 5),
            (b"{\"a\":+1}", 5),
            (b"{\"a\":1e100}", 9),
            (b"{\"a\":[1}", 7),
            (b"{\"a\":{]}", 6),
            (b"{\"a\":[,]}", 6),
            (b"{\"a\":1,,}", 7),
            (b"{,}", 1),
            (b"{\"a\":\"x\" \"b\"}", 9),
        ];
        for &(text, at) in cases {
            assert_reject_at(text, at);
        }
        // Number part lengths.
        let mut long = b"{\"a\":".to_vec();
        long.extend(std::iter::repeat_n(b'1', usize::from(MAX_INT_DIGITS) + 1));
        assert_reject_at(&long, long.len() - 1);
        let mut long = b"{\"a\":0.".to_vec();
        long.extend(std::iter::repeat_n(b'1', usize::from(MAX_FRAC_DIGITS) + 1));
        assert_reject_at(&long, long.len() - 1);
    }

    #[test]
    fn unterminated_texts_are_prefixes_but_not_complete() {
        for text in [
            &b"{"[..],
            b"  {",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":\"b",
            b"{\"a\":\"\\",
            b"{\"a\":\"\\u00",
            b"{\"a\":\"\\uD83D",
            b"{\"a\":\"\xe6\x97",
            b"{\"a\":[1,{\"b\":2}",
            b"{\"a\":12",
            b"{\"a\":fals",
        ] {
            let mut s = JsonState::new();
            assert!(s.accepts(text), "{:?}", show(text));
            for &b in text {
                assert!(s.push(b));
            }
            assert!(!s.is_complete(), "{:?}", show(text));
        }
    }

    #[test]
    fn too_deep_nesting_rejected() {
        let mut doc = b"{\"a\":".to_vec();
        doc.extend(std::iter::repeat_n(b'[', MAX_DEPTH - 1));
        doc.push(b'{');
        assert_reject_at(&doc, doc.len() - 1);
        doc.pop();
        doc.push(b'[');
        assert_reject_at(&doc, doc.len() - 1);
    }

    #[test]
    fn whitespace_bounded() {
        let lead = usize::from(MAX_LEADING_WS);
        let mut text = vec![b' '; lead];
        text.push(b'{');
        assert_eq!(first_reject(&text), None);
        assert_reject_at(&vec![b'\n'; lead + 1], lead);

        let run = usize::from(MAX_WS_RUN);
        for prefix in [
            &b"{"[..],
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":[",
            b"{\"a\":[1,",
        ] {
            let mut text = prefix.to_vec();
            text.extend(std::iter::repeat_n(b' ', run));
            assert_eq!(first_reject(&text), None, "{:?}", show(&text));
            text.push(b'\t');
            assert_reject_at(&text, text.len() - 1);
        }
        // Pushing on after a rejection is meaningless but must not panic (no counter overflow).
        let mut s = JsonState::new();
        for b in b"{\"a\":1".iter().chain(&[b' '; 600]).chain(&[b'9'; 600]) {
            s.push(*b);
        }
        let mut s = JsonState::new();
        for b in b"{\"a\":1".iter().chain(&[b'9'; 600]) {
            s.push(*b);
        }

        // Runs separated by a token each count from zero.
        let mut text = b"{".to_vec();
        text.extend(std::iter::repeat_n(b' ', run));
        text.extend(b"\"a\"");
        text.extend(std::iter::repeat_n(b' ', run));
        text.extend(b":1}");
        assert_valid(&text);
    }

    /// Tiny deterministic generator (splitmix64), so tests need no `rand`.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A vocabulary of every single byte, some JSON-shaped pieces and random byte strings drawn
    /// mostly from JSON's alphabet (with some arbitrary bytes), including duplicates and empties.
    fn vocabulary(rng: &mut Rng, random: usize) -> Vec<Vec<u8>> {
        let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for piece in [
            &b""[..],
            b"{\"",
            b"\":",
            b"\": \"",
            b"\",",
            b"\"}",
            b"},",
            b"}}",
            b"]}",
            b"true",
            b"false",
            b"null",
            b"\\u00e9",
            b"\\uD83D",
            b"\\uDE00",
            b"\\n",
            "\u{e9}".as_bytes(),
            "\u{65e5}\u{672c}".as_bytes(),
            "\u{1F600}".as_bytes(),
            b"\xf0\x9f",
            b"\x98\x80",
            b"-0.5e+10",
            b"123",
            b"  ",
            b"true",
        ] {
            vocab.push(piece.to_vec());
        }
        let alphabet = b"{}[]:,\"\\ \n0123456789-+.eEabcdefnrtuxlsDC";
        for _ in 0..random {
            let len = 1 + rng.below(6);
            let token = (0..len)
                .map(|_| {
                    if rng.below(8) == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            vocab.push(token);
        }
        vocab
    }

    fn brute_force(state: &JsonState, vocab: &[Vec<u8>]) -> Vec<bool> {
        vocab
            .iter()
            .map(|t| !t.is_empty() && state.accepts(t))
            .collect()
    }

    #[test]
    fn trie_mask_equals_brute_force() {
        let mut rng = Rng(0x5EED);
        let vocab = vocabulary(&mut rng, 3000);
        let trie = TokenTrie::new(&vocab);
        assert_eq!(trie.vocab_size(), vocab.len());
        let docs: &[&[u8]] = &[
            b"  { \"a\" : [ 1 , -2.5e+3 , {\"b\":null} ] , \"c\":true,\"d\":false}",
            br#"{"s":"x\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00y"}"#,
            "{\"k\":\"h\u{e9}llo \u{65e5}\u{672c} \u{1F600}\"}".as_bytes(),
            b"{\"n\":[0,-0,0.0,1E5,12e-07]}",
        ];
        let mut mask = Vec::new();
        let mut checked = 0;
        for doc in docs {
            let mut s = JsonState::new();
            for i in 0..=doc.len() {
                let count = trie.allowed(&s, &mut mask);
                let expected = brute_force(&s, &vocab);
                assert_eq!(mask, expected, "after {:?}", show(&doc[..i]));
                assert_eq!(count, expected.iter().filter(|&&a| a).count());
                checked += 1;
                if let Some(&b) = doc.get(i) {
                    assert!(s.push(b));
                }
            }
            assert!(s.is_complete());
            assert_eq!(trie.allowed(&s, &mut mask), 0);
        }
        assert!(checked > 100);
        // Tokens with no bytes are never allowed, even where everything else is.
        let empty = vocab.iter().position(|t| t.is_empty());
        assert!(empty.is_some_and(|i| !mask[i]));
    }

    /// Bytes the finishing phase of the walk prefers, in order: each state has one that makes
    /// progress towards closing the object (closing a string, a container or a number, or the
    /// next byte a pending escape, literal or UTF-8 character needs).
    const FINISH: &[u8] = b"\"}]0:\\uDC{truefalsn\x80\x90\xa0";

    #[test]
    fn random_walks_end_in_objects_serde_parses() {
        let mut rng = Rng(42);
        let vocab = vocabulary(&mut rng, 2000);
        let trie = TokenTrie::new(&vocab);
        let mut mask = Vec::new();
        let mut allowed_ids = Vec::new();
        for walk in 0..200 {
            let mut s = JsonState::new();
            let mut text: Vec<u8> = Vec::new();
            let random_steps = rng.below(80);
            let mut steps = 0;
            while !s.is_complete() {
                steps += 1;
                assert!(
                    steps < 2000,
                    "walk {walk} did not finish: {:?}",
                    show(&text)
                );
                let count = trie.allowed(&s, &mut mask);
                assert!(count > 0, "walk {walk} stuck after {:?}", show(&text));
                let id = if steps <= random_steps {
                    allowed_ids.clear();
                    allowed_ids.extend(mask.iter().enumerate().filter(|(_, &a)| a).map(|(i, _)| i));
                    allowed_ids[rng.below(allowed_ids.len())]
                } else {
                    // Single-byte tokens are ids 0..=255.
                    let b = FINISH.iter().find(|&&b| mask[usize::from(b)]);
                    usize::from(*b.unwrap_or_else(|| panic!("no finisher after {:?}", show(&text))))
                };
                for &b in &vocab[id] {
                    assert!(s.push(b));
                }
                text.extend(&vocab[id]);
                if !s.is_complete() {
                    assert_is_json_prefix(&text);
                }
            }
            let utf8 = std::str::from_utf8(&text);
            assert!(utf8.is_ok(), "not UTF-8: {:?}", show(&text));
            let parsed = utf8
                .ok()
                .map(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>);
            assert!(
                matches!(parsed, Some(Ok(_))),
                "walk {walk}: {parsed:?} for {:?}",
                show(&text)
            );
        }
    }

    /// serde_json sees an accepted, incomplete text as cut short, not as wrong. Texts ending
    /// inside a UTF-8 character, and inside an escape, are skipped: serde_json reports those
    /// differently.
    fn assert_is_json_prefix(text: &[u8]) {
        let Ok(t) = std::str::from_utf8(text) else {
            return;
        };
        let err = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).err();
        assert!(
            err.as_ref().is_some_and(|e| e.is_eof()),
            "{err:?} for {:?}",
            show(text)
        );
    }
}
