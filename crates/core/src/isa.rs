//! The one switch for the SIMD kernels of the canonical engine and the LLM runtime: the
//! widest instruction set this CPU has, detected once per process, optionally capped by the
//! environment variable `VERITY_ISA` (`portable`, `avx2` or `avx512vnni`).
//!
//! Every path computes the same bits (the kernels are exact or keep the scalar operation
//! order), so the cap changes speed, never results: tests use it to compare the paths, and to
//! run the portable one on CPUs that have more. A value other than those three names means
//! `portable`, the reading of a typo that cannot take a path the CPU lacks.

use std::sync::OnceLock;

/// The variable that caps the instruction set.
pub const ISA_VAR: &str = "VERITY_ISA";

/// Instruction sets the kernels are written for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, on any CPU.
    Portable,
    /// x86-64 AVX2.
    Avx2,
    /// AVX2 plus AVX-512 VNNI with VL (the byte dot products on 256-bit registers).
    Avx512Vnni,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    pub fn parse(name: &str) -> Option<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .find(|isa| isa.name() == name.trim().to_ascii_lowercase())
    }

    /// The widest instruction set this CPU has.
    pub fn of_cpu() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl");
            return if vnni { Isa::Avx512Vnni } else { Isa::Avx2 };
        }
        Isa::Portable
    }

    /// The CPU's instruction set capped by a `VERITY_ISA` value (None: not set).
    pub fn capped(cpu: Isa, cap: Option<&str>) -> Isa {
        match cap {
            None => cpu,
            Some(cap) => cpu.min(Isa::parse(cap).unwrap_or(Isa::Portable)),
        }
    }
}

/// The instruction set the kernels use in this process.
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let cap = std::env::var(ISA_VAR).ok();
        Isa::capped(Isa::of_cpu(), cap.as_deref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_only_narrows() {
        let vnni = Isa::Avx512Vnni;
        assert_eq!(Isa::capped(vnni, None), vnni);
        assert_eq!(Isa::capped(vnni, Some("avx2")), Isa::Avx2);
        assert_eq!(Isa::capped(vnni, Some("PORTABLE")), Isa::Portable);
        assert_eq!(Isa::capped(Isa::Avx2, Some("avx512vnni")), Isa::Avx2);
        assert_eq!(Isa::capped(Isa::Portable, Some("avx2")), Isa::Portable);
        assert_eq!(Isa::capped(vnni, Some("avx3")), Isa::Portable);
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni] {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert!(active() <= Isa::of_cpu());
    }
}
