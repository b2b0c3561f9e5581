//! Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k and
//! top-p. The random stream is specified (BLAKE3 of the seed and the step), so a third party
//! can reproduce every draw.

/// The sampling parameters of one generation.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub seed: u64,
}

/// BLAKE3 key-derivation context of the sampler's random stream.
const RANDOM_DOMAIN: &str = "verity/llm-sample/v1";

/// The `step`-th uniform draw in [0, 1) for `seed`: the first 8 bytes of
/// `BLAKE3-derive-key(RANDOM_DOMAIN, seed_le ‖ step_le)` as a little-endian u64, top 53 bits,
/// divided by 2^53.
pub fn uniform(seed: u64, step: u64) -> f64 {
    let mut h = blake3::Hasher::new_derive_key(RANDOM_DOMAIN);
    h.update(&seed.to_le_bytes());
    h.update(&step.to_le_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

impl Sampler {
    /// Picks a token among those `allowed` (all when `None`); `None` if nothing is allowed.
    ///
    /// Greedy (temperature 0): the largest logit, lowest id on ties. Otherwise: candidates
    /// sorted by logit (descending, ties by ascending id), cut to `top_k` (0 = all); weights
    /// `exp((l - l_max) / T)` in f64 with libm; cut to the shortest prefix whose weight reaches
    /// `top_p` of the total; then the first candidate whose running weight exceeds
    /// `u * kept_total`, `u = uniform(seed, step)`.
    pub fn pick(&self, logits: &[f32], allowed: Option<&[bool]>, step: u64) -> Option<u32> {
        let ok = |i: usize| allowed.is_none_or(|a| a.get(i).copied().unwrap_or(false));
        if self.temperature == 0.0 {
            let mut best: Option<usize> = None;
            for (i, l) in logits.iter().enumerate() {
                if ok(i) && best.is_none_or(|b| *l > logits[b]) {
                    best = Some(i);
                }
            }
            return best.map(|b| b as u32);
        }
        let mut candidates: Vec<u32> = (0..logits.len() as u32)
            .filter(|i| ok(*i as usize))
            .collect();
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = self.top_k as usize;
        if k > 0 && k < candidates.len() {
            candidates.select_nth_unstable_by(k - 1, order);
            candidates.truncate(k);
        }
        candidates.sort_unstable_by(order);
        let max = logits[*candidates.first()? as usize] as f64;
        let t = self.temperature as f64;
        let weights: Vec<f64> = candidates
            .iter()
            .map(|i| libm::exp((logits[*i as usize] as f64 - max) / t))
            .collect();
        let total: f64 = weights.iter().fold(0.0, |s, w| s + w);
        let threshold = self.top_p as f64 * total;
        let mut kept = 0;
        let mut kept_total = 0.0;
        for w in &weights {
            kept += 1;
            kept_total += w;
            if kept_total >= threshold {
                break;
            }
        }
        let target = uniform(self.seed, step) * kept_total;
        let mut running = 0.0;
        for (i, w) in weights[..kept].iter().enumerate() {
            running += w;
            if running > target {
                return Some(candidates[i]);
            }
        }
        Some(candidates[kept - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_p: f32, top_k: u32, seed: u64) -> Sampler {
        Sampler {
            temperature,
            top_p,
            top_k,
            seed,
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum_among_allowed() {
        let logits = [1.0, 3.0, 3.0, 2.0];
        let s = sampler(0.0, 1.0, 0, 0);
        assert_eq!(s.pick(&logits, None, 0), Some(1));
        assert_eq!(
            s.pick(&logits, Some(&[true, false, true, true]), 0),
            Some(2)
        );
        assert_eq!(s.pick(&logits, Some(&[false; 4]), 0), None);
    }

    #[test]
    fn the_random_stream_is_fixed_and_uniform_enough() {
        // Pinned values: changing the stream changes every seeded generation.
        assert_eq!(uniform(0, 0).to_bits(), 0x3fd8f7ecbd249bf2);
        assert_eq!(uniform(42, 7).to_bits(), 0x3fcf953576953174);
        assert_ne!(uniform(0, 0), uniform(0, 1));
        assert_ne!(uniform(0, 0), uniform(1, 0));
        let mean = (0..10_000).map(|i| uniform(7, i)).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn top_k_and_top_p_limit_the_candidates() {
        let logits = [0.0, 5.0, 4.9, -3.0, 4.8];
        for seed in 0..200 {
            let k1 = sampler(1.0, 1.0, 1, seed).pick(&logits, None, 0);
            assert_eq!(k1, Some(1));
            let k2 = sampler(1.0, 1.0, 2, seed).pick(&logits, None, 3).unwrap();
            assert!(k2 == 1 || k2 == 2);
            // Token 1 alone weighs more than 30 % of the total: top_p 0.3 keeps only it.
            assert_eq!(sampler(1.0, 0.3, 0, seed).pick(&logits, None, 9), Some(1));
        }
        // With everything kept, low-weight tokens do appear at high temperature.
        let seen: std::collections::BTreeSet<u32> = (0..400)
            .filter_map(|step| sampler(2.0, 1.0, 0, 1).pick(&logits, None, step))
            .collect();
        assert!(seen.contains(&0) && seen.contains(&4), "{seen:?}");
        // Same seed and step, same draw.
        let s = sampler(0.8, 0.9, 0, 42);
        assert_eq!(s.pick(&logits, None, 5), s.pick(&logits, None, 5));
    }
}
