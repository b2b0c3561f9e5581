//! The STARK configuration every Verity proof uses, and the parameters its security rests on.
//!
//! KoalaBear (p = 2^31 - 2^24 + 1) holds int8 products and int32 accumulators natively; the
//! degree-4 extension gives ~124-bit challenges. Merkle trees and Fiat-Shamir use Keccak-256,
//! which is fast on CPUs and keeps verification cheap. docs/zk.md states the security level.

use p3_challenger::{HashChallenger, SerializingChallenger32};
use p3_commit::ExtensionMmcs;
use p3_dft::Radix2DitParallel;
use p3_field::extension::BinomialExtensionField;
use p3_fri::{FriParameters, TwoAdicFriPcs};
use p3_keccak::{Keccak256Hash, KeccakF, VECTOR_LEN};
use p3_koala_bear::KoalaBear;
use p3_merkle_tree::MerkleTreeMmcs;
use p3_symmetric::{CompressionFunctionFromHasher, PaddingFreeSponge, SerializingHasher};
use p3_uni_stark::StarkConfig;

pub type Val = KoalaBear;
pub type Challenge = BinomialExtensionField<Val, 4>;
type U64Hash = PaddingFreeSponge<KeccakF, 25, 17, 4>;
type FieldHash = SerializingHasher<U64Hash>;
type Compress = CompressionFunctionFromHasher<U64Hash, 2, 4>;
type ValMmcs = MerkleTreeMmcs<[Val; VECTOR_LEN], [u64; VECTOR_LEN], FieldHash, Compress, 2, 4>;
type ChallengeMmcs = ExtensionMmcs<Val, Challenge, ValMmcs>;
type Challenger = SerializingChallenger32<Val, HashChallenger<u8, Keccak256Hash, 32>>;
type Pcs = TwoAdicFriPcs<Val, Radix2DitParallel<Val>, ValMmcs, ChallengeMmcs>;
pub type Config = StarkConfig<Pcs, Challenge, Challenger>;

/// Rate 1/2: the low-degree extension doubles each trace, so constraints may have degree 3.
pub const LOG_BLOWUP: usize = 1;
/// FRI queries; with rate 1/2 each contributes one bit of conjectured soundness.
pub const NUM_QUERIES: usize = 100;
/// Grinding before the query phase: a forger pays 2^16 hashes per attempt.
pub const QUERY_POW_BITS: usize = 16;
/// Grinding before the challenge that batches all opened columns into one FRI instance (its
/// error grows with the number of columns, so it binds first without grinding).
pub const BATCH_POW_BITS: usize = 12;
/// Grinding before each FRI folding challenge.
pub const COMMIT_POW_BITS: usize = 4;
/// Grinding before the LogUp challenges are drawn (the lookup fingerprint's error term).
pub const LOOKUP_POW_BITS: usize = 16;
/// Grinding before the out-of-domain point is drawn.
pub const OOD_POW_BITS: usize = 12;
/// Largest folding arity (log2) per FRI round.
pub const MAX_LOG_ARITY: usize = 3;
/// The last FRI polynomial is sent in the clear with this many coefficients (log2).
pub const LOG_FINAL_POLY_LEN: usize = 0;

/// The fixed, public FRI parameters (also the input to the security estimate).
pub fn fri_parameters<M>(mmcs: M) -> FriParameters<M> {
    FriParameters {
        log_blowup: LOG_BLOWUP,
        log_final_poly_len: LOG_FINAL_POLY_LEN,
        max_log_arity: MAX_LOG_ARITY,
        num_queries: NUM_QUERIES,
        batch_proof_of_work_bits: BATCH_POW_BITS,
        commit_proof_of_work_bits: COMMIT_POW_BITS,
        query_proof_of_work_bits: QUERY_POW_BITS,
        mmcs,
    }
}

pub fn config() -> Config {
    let sponge = U64Hash::new(KeccakF);
    let val_mmcs = ValMmcs::new(
        SerializingHasher::new(sponge),
        CompressionFunctionFromHasher::new(sponge),
        0,
    );
    let challenge_mmcs = ChallengeMmcs::new(val_mmcs.clone());
    let pcs = Pcs::new(
        Radix2DitParallel::default(),
        val_mmcs,
        fri_parameters(challenge_mmcs),
    );
    let challenger = Challenger::from_hasher(Vec::new(), Keccak256Hash);
    Config::new(pcs, challenger)
        .with_lookup_proof_of_work_bits(LOOKUP_POW_BITS)
        .with_ood_proof_of_work_bits(OOD_POW_BITS)
}
