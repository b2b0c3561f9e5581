//! Receipts: the node's signed statement "model M produced outputs O on inputs I".

use crate::encode::{Decoder, Encoder};
use crate::hash::{domain, Hash, ModelId};
use crate::keys::{NodeKey, PublicKey, Signature};
use crate::request::Mode;
use crate::tensor::{Tensor, TensorMap};
use crate::CoreError;
use serde::{Deserialize, Serialize};

pub const RECEIPT_VERSION: u32 = 1;

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
    pub fn sign(self, key: &NodeKey) -> Receipt {
        let mut r = Receipt {
            version: RECEIPT_VERSION,
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
        let version = d.u32()?;
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
        let mut outputs = TensorMap::new();
        for _ in 0..d.count(16)? {
            let name = d.str()?.to_string();
            outputs.insert(name, Tensor::decode_from(d)?);
        }
        let signature = d.fixed64()?;
        Ok(Receipt {
            version,
            request_hash,
            model,
            input_hash,
            outputs,
            output_hash,
            trace_root,
            engine,
            mode,
            node,
            timestamp_ms,
            signature: Signature(signature),
        })
    }
}
