//! Receipts: the node's signed statement "model M produced outputs O on inputs I".

use crate::encode::{Decoder, Encoder};
use crate::hash::{domain, Hash, ModelId};
use crate::keys::{NodeKey, PublicKey, Signature};
use crate::request::Mode;
use crate::tensor::{hash_map, Tensor, TensorMap};
use crate::CoreError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// 2: receipts name the chain (network) they were signed for.
pub const RECEIPT_VERSION: u32 = 2;

/// Which engine produced the outputs: the canonical interpreter, or a float engine whose bits
/// are only reproducible on the same engine, version and CPU class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineId {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub version: u32,
    /// The network the node signed for (its ledger's chain id); empty from a standalone node.
    /// A receipt cannot be passed off on another network.
    pub chain_id: String,
    pub request_hash: Hash,
    pub model: ModelId,
    pub input_hash: Hash,
    pub outputs: TensorMap,
    pub output_hash: Hash,
    /// Merkle root over the hashes of every intermediate tensor (canonical models only).
    pub trace_root: Option<Hash>,
    pub engine: EngineId,
    pub mode: Mode,
    pub node: PublicKey,
    pub timestamp_ms: u64,
    pub signature: Signature,
}

/// Everything a receipt states, before it is signed.
pub struct ReceiptBody {
    pub chain_id: String,
    pub request_hash: Hash,
    pub model: ModelId,
    pub input_hash: Hash,
    pub outputs: TensorMap,
    pub output_hash: Hash,
    pub trace_root: Option<Hash>,
    pub engine: EngineId,
    pub mode: Mode,
    pub timestamp_ms: u64,
}

impl ReceiptBody {
    /// The statement that `outputs` answer the request `request_hash` with `inputs`, stamped
    /// now. The input and output hashes are computed here, so no caller can sign hashes that
    /// do not match what it states.
    pub fn new(
        request_hash: Hash,
        model: ModelId,
        inputs: &TensorMap,
        outputs: TensorMap,
        engine: EngineId,
        trace_root: Option<Hash>,
        mode: Mode,
    ) -> ReceiptBody {
        ReceiptBody {
            chain_id: String::new(),
            request_hash,
            model,
            input_hash: hash_map(inputs),
            output_hash: hash_map(&outputs),
            outputs,
            trace_root,
            engine,
            mode,
            timestamp_ms: crate::now_ms(),
        }
    }

    pub fn sign(self, key: &NodeKey) -> Receipt {
        let mut r = Receipt {
            version: RECEIPT_VERSION,
            chain_id: self.chain_id,
            request_hash: self.request_hash,
            model: self.model,
            input_hash: self.input_hash,
            outputs: self.outputs,
            output_hash: self.output_hash,
            trace_root: self.trace_root,
            engine: self.engine,
            mode: self.mode,
            node: key.public(),
            timestamp_ms: self.timestamp_ms,
            signature: Signature([0; 64]),
        };
        r.signature = key.sign(&r.signing_hash().0);
        r
    }
}

/// A receipt's statement without its signer and signature (to sign it again, as tests that
/// forge receipts do).
impl From<Receipt> for ReceiptBody {
    fn from(r: Receipt) -> ReceiptBody {
        ReceiptBody {
            chain_id: r.chain_id,
            request_hash: r.request_hash,
            model: r.model,
            input_hash: r.input_hash,
            outputs: r.outputs,
            output_hash: r.output_hash,
            trace_root: r.trace_root,
            engine: r.engine,
            mode: r.mode,
            timestamp_ms: r.timestamp_ms,
        }
    }
}

impl Receipt {
    /// The domain-separated hash the node signs (docs/receipts.md lists the field order).
    /// Outputs are bound through `output_hash`; the verifier recomputes that from `outputs`.
    pub fn signing_hash(&self) -> Hash {
        let mut e = Encoder::new();
        self.encode_signed_fields(&mut e);
        Hash::of(domain::RECEIPT, &e.finish())
    }

    /// The signed fields, in signing order (everything but the outputs and the signature).
    fn encode_signed_fields(&self, e: &mut Encoder) {
        e.u32(self.version)
            .str(&self.chain_id)
            .fixed32(&self.request_hash.0)
            .fixed32(&self.model.0)
            .fixed32(&self.input_hash.0)
            .fixed32(&self.output_hash.0);
        match &self.trace_root {
            None => e.u8(0),
            Some(h) => e.u8(1).fixed32(&h.0),
        };
        e.str(&self.engine.name)
            .str(&self.engine.version)
            .str(&self.mode.name())
            .fixed32(&self.node.0)
            .u64(self.timestamp_ms);
    }

    /// A receipt's id is its signing hash: unique per statement, known before storage.
    pub fn id(&self) -> Hash {
        self.signing_hash()
    }

    /// Full canonical encoding (for ledger transactions and blocks): the signed fields in
    /// signing order, then the outputs map and the signature.
    pub fn encode_into(&self, e: &mut Encoder) {
        self.encode_signed_fields(e);
        e.u64(self.outputs.len() as u64);
        for (name, t) in &self.outputs {
            e.str(name);
            t.encode_into(e);
        }
        e.fixed64(&self.signature.0);
    }

    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Receipt, CoreError> {
        let mut r = Receipt::decode_signed_fields(d)?;
        for _ in 0..d.count(16)? {
            let name = d.str()?.to_string();
            r.outputs.insert(name, Tensor::decode_from(d)?);
        }
        r.signature = Signature(d.fixed64()?);
        Ok(r)
    }

    /// The signed fields, read back into a receipt with no outputs and a zero signature.
    fn decode_signed_fields(d: &mut Decoder<'_>) -> Result<Receipt, CoreError> {
        let version = d.u32()?;
        let chain_id = d.str()?.to_string();
        let request_hash = Hash(d.fixed32()?);
        let model = ModelId(d.fixed32()?);
        let input_hash = Hash(d.fixed32()?);
        let output_hash = Hash(d.fixed32()?);
        let trace_root = match d.u8()? {
            0 => None,
            1 => Some(Hash(d.fixed32()?)),
            t => return Err(CoreError::Malformed(format!("option tag {t}"))),
        };
        let engine = EngineId {
            name: d.str()?.to_string(),
            version: d.str()?.to_string(),
        };
        let mode = Mode::parse(d.str()?)?;
        let node = PublicKey(d.fixed32()?);
        let timestamp_ms = d.u64()?;
        Ok(Receipt {
            version,
            chain_id,
            request_hash,
            model,
            input_hash,
            outputs: TensorMap::new(),
            output_hash,
            trace_root,
            engine,
            mode,
            node,
            timestamp_ms,
            signature: Signature([0; 64]),
        })
    }

    /// The compact form: every signed field and the signature, without the outputs (they are
    /// bound by `output_hash`). A few hundred bytes however long the outputs, so it fits in an
    /// HTTP header; the outputs travel separately (e.g. in the response body).
    pub fn encode_compact(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_signed_fields(&mut e);
        e.fixed64(&self.signature.0);
        e.finish()
    }

    /// Reads a compact receipt and attaches `outputs`. Nothing is checked here: pass the result
    /// to [`crate::verify_receipt`], which recomputes the output hash from `outputs`.
    pub fn decode_compact(bytes: &[u8], outputs: TensorMap) -> Result<Receipt, CoreError> {
        let mut d = Decoder::new(bytes);
        let mut r = Receipt::decode_signed_fields(&mut d)?;
        r.signature = Signature(d.fixed64()?);
        d.expect_end()?;
        r.outputs = outputs;
        Ok(r)
    }

    /// [`Receipt::encode_compact`] in standard base64 (RFC 4648, padded): the value of the
    /// `verity-receipt` HTTP header.
    pub fn to_compact_base64(&self) -> String {
        BASE64.encode(self.encode_compact())
    }

    /// The inverse of [`Receipt::to_compact_base64`], with the outputs attached.
    pub fn from_compact_base64(text: &str, outputs: TensorMap) -> Result<Receipt, CoreError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| CoreError::Malformed(format!("compact receipt base64: {e}")))?;
        Receipt::decode_compact(&bytes, outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{chat_outputs, FinishReason};
    use crate::verify::{verify_receipt, Expectations, VerifyError};

    fn receipt() -> Receipt {
        let outputs = chat_outputs(&[1, 2, 3], &"long answer ".repeat(500), FinishReason::Stop);
        let engine = EngineId {
            name: "verity-llm".into(),
            version: "1".into(),
        };
        ReceiptBody::new(
            Hash::of("t", b"request"),
            ModelId::of_bytes(b"model"),
            &TensorMap::new(),
            outputs,
            engine,
            None,
            Mode::Signed,
        )
        .sign(&NodeKey::from_seed([3; 32]))
    }

    #[test]
    fn compact_form_round_trips_without_outputs_and_stays_small() {
        let r = receipt();
        let text = r.to_compact_base64();
        assert!(text.len() < 512, "{} bytes", text.len());
        let back = Receipt::from_compact_base64(&text, r.outputs.clone()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.id(), r.id());
        // Every truncation and any trailing byte is refused.
        let bytes = r.encode_compact();
        for cut in 0..bytes.len() {
            assert!(Receipt::decode_compact(&bytes[..cut], TensorMap::new()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Receipt::decode_compact(&longer, TensorMap::new()).is_err());
        assert!(Receipt::from_compact_base64("not base64!", TensorMap::new()).is_err());
    }

    #[test]
    fn compact_receipt_verifies_only_with_the_signed_outputs() {
        let r = receipt();
        let header = r.to_compact_base64();
        let joined = Receipt::from_compact_base64(&header, r.outputs.clone()).unwrap();
        verify_receipt(&joined, &Expectations::default()).unwrap();

        // Other outputs than the ones signed.
        let other = chat_outputs(&[1, 2, 4], "long answer", FinishReason::Stop);
        let joined = Receipt::from_compact_base64(&header, other).unwrap();
        assert!(matches!(
            verify_receipt(&joined, &Expectations::default()),
            Err(VerifyError::OutputHash { .. })
        ));
        // A flipped bit in any signed field or in the signature.
        let bytes = r.encode_compact();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 1;
            if let Ok(t) = Receipt::decode_compact(&t, r.outputs.clone()) {
                assert!(
                    verify_receipt(&t, &Expectations::default()).is_err(),
                    "flip at byte {i} went unnoticed"
                );
            }
        }
    }
}
