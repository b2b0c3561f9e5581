//! Inference requests: what a client asks a node to run, signed by the client's key so that a
//! nonce can be bound to one client and replays rejected.

use crate::encode::Encoder;
use crate::hash::{domain, Hash, ModelId};
use crate::keys::{NodeKey, PublicKey, Signature};
use crate::tensor::{hash_map, TensorMap};
use crate::CoreError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// How the result is to be verified (DESIGN.md §5). `signed`: one node signs. `quorum:k`: k
/// registered nodes, chosen by the ledger from the request hash, each sign the same output.
/// `zk`: one node signs and attaches a succinct proof of the canonical execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Signed,
    Quorum { k: u32 },
    Zk,
}

/// Quorum size when a request says just `quorum`.
pub const DEFAULT_QUORUM: u32 = 3;
/// Largest quorum the ledger escrows for.
pub const MAX_QUORUM: u32 = 16;

impl Mode {
    /// The canonical name, bound into request and receipt hashes: `signed`, `quorum:k` or
    /// `zk`.
    pub fn name(self) -> String {
        match self {
            Mode::Signed => "signed".into(),
            Mode::Quorum { k } => format!("quorum:{k}"),
            Mode::Zk => "zk".into(),
        }
    }

    /// Executors a request in this mode escrows for: 0 means the one node the client asked.
    pub fn executors(self) -> u32 {
        match self {
            Mode::Signed | Mode::Zk => 0,
            Mode::Quorum { k } => k,
        }
    }

    /// Accepts `signed`, `zk`, `quorum` (k = 3) and `quorum:k` with 1 <= k <= 16.
    pub fn parse(s: &str) -> Result<Mode, CoreError> {
        let unknown = || CoreError::UnknownMode(s.to_string());
        match s {
            "signed" => Ok(Mode::Signed),
            "zk" => Ok(Mode::Zk),
            "quorum" => Ok(Mode::Quorum { k: DEFAULT_QUORUM }),
            other => {
                let k: u32 = other
                    .strip_prefix("quorum:")
                    .ok_or_else(unknown)?
                    .parse()
                    .map_err(|_| unknown())?;
                if !(1..=MAX_QUORUM).contains(&k) {
                    return Err(unknown());
                }
                Ok(Mode::Quorum { k })
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Mode::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The request body a client signs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InferenceRequest {
    pub model: ModelId,
    pub inputs: TensorMap,
    pub mode: Mode,
    /// Free-form execution parameters, bound into the request hash.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Chosen by the client; a node accepts each (client, nonce) pair once.
    pub nonce: u64,
    pub client: PublicKey,
}

impl InferenceRequest {
    /// Hash over the model id, the inputs' hash, the mode, the parameters, the nonce and the
    /// client key. The receipt repeats it, so a receipt names exactly one request.
    pub fn hash(&self) -> Hash {
        request_hash(
            &self.model,
            &hash_map(&self.inputs),
            self.mode,
            &self.params,
            self.nonce,
            &self.client,
        )
    }

    pub fn sign(self, key: &NodeKey) -> SignedRequest {
        let signature = key.sign(&self.hash().0);
        SignedRequest {
            request: self,
            signature,
        }
    }
}

/// The request hash from its parts (a verifier may know the input hash but not the inputs).
pub fn request_hash(
    model: &ModelId,
    input_hash: &Hash,
    mode: Mode,
    params: &BTreeMap<String, String>,
    nonce: u64,
    client: &PublicKey,
) -> Hash {
    let mut e = Encoder::new();
    e.fixed32(&model.0).fixed32(&input_hash.0).str(&mode.name());
    e.u64(params.len() as u64);
    for (k, v) in params {
        e.str(k).str(v);
    }
    e.u64(nonce).fixed32(&client.0);
    Hash::of(domain::REQUEST, &e.finish())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedRequest {
    pub request: InferenceRequest,
    pub signature: Signature,
}

impl SignedRequest {
    pub fn signature_is_valid(&self) -> bool {
        self.request
            .client
            .verify(&self.request.hash().0, &self.signature)
    }
}

/// A fresh random nonce for a new request.
pub fn random_nonce() -> Result<u64, CoreError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| CoreError::Malformed(format!("no system randomness: {e}")))?;
    Ok(u64::from_le_bytes(b))
}
