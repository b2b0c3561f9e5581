//! The security level docs/zk.md states, recomputed from the prover's actual parameters with
//! Plonky3's own estimator (p3-security), for the largest tables the circuit accepts.

use p3_field::{BasedVectorSpace, Field};
use p3_fri::FriParameters;
use p3_security::grinding::GrindingSites;
use p3_security::logup::{self, LogUpAir};
use p3_security::shape::{InstanceShape, StarkAirParams};
use p3_security::stark::conjectured_security_report;
use verity_zk::circuit::{MAC_WIDTH, MAX_LOG_HEIGHT};
use verity_zk::config::{self, Challenge};

#[test]
fn conjectured_security_is_at_least_100_bits() {
    let fri: FriParameters<()> = config::fri_parameters(());
    let regime = fri.security_regime();
    // Generous bounds over every table: constraints summed over all tables, degree 3 (two
    // quotient chunks at rate 1/2), rows read at `next` (the MAC table).
    let air = StarkAirParams {
        num_constraints: 256,
        max_constraint_degree: 3,
        num_quotient_chunks: 2,
        max_combo: 2,
    };
    let d = <Challenge as BasedVectorSpace<config::Val>>::DIMENSION;
    // Committed codewords batched into FRI: every table's main, preprocessed, auxiliary and
    // quotient columns, bounded by 12 tables of the widest kind (MAC: K+1 main, K+5 fixed).
    let per_table = 2 * (MAC_WIDTH + 1) + 2 * (MAC_WIDTH + 5) + 2 * 2 * d + 2 * 10 * d;
    let shape = InstanceShape {
        log_trace_length: MAX_LOG_HEIGHT,
        modulus_bits: Challenge::bits(),
        collision_resistance: 128,
        num_batched_functions: 12 * per_table,
    };
    let grinding = GrindingSites {
        out_of_domain: config::OOD_POW_BITS,
        batch_combination: config::BATCH_POW_BITS,
        lookup_challenge: config::LOOKUP_POW_BITS,
    };
    // Up to MAC_WIDTH + 1 interactions per row (the gather table), widest message K + 1,
    // over 12 tables.
    let lookups = LogUpAir {
        num_interactions: 12 * (MAC_WIDTH + 1),
        max_message_width: MAC_WIDTH + 1,
    };
    let lookup = logup::security_term(&lookups, &shape, &grinding).unwrap();
    let report = conjectured_security_report(&regime, &air, &shape, &[lookup], &grinding);
    let bits = report.security_bits();
    println!(
        "conjectured security: {bits:.1} bits; binding term: {}",
        report.binding().label
    );
    for t in report.terms() {
        println!("  {}: {:.1}", t.label, t.bits.0);
    }
    assert!(bits >= 100.0, "{bits}");
}
