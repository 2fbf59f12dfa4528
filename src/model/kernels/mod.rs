//! CPU matrix kernels for the batched forward pass: `x · Wᵀ` with bf16 weights, picked at run
//! time by CPU feature (AVX-512 f32 FMAs over packed bf16 panels, else a portable loop), split
//! across rayon's threads.
//!
//! Every SIMD kernel of the native path (matmul, attention, RMS norm, SiLU) asks this module
//! whether it may run: `PROMPTEVO_KERNEL=portable` turns all of them off at once, so a user can
//! rule promptevo's SIMD out of a wrong result.

mod bf16;
pub mod exp;
pub mod q8;

pub use bf16::{bf16_to_f32, f32_to_bf16, Bf16Matrix, KernelKind, KernelUnavailable};
pub use q8::Q8Matrix;

use std::sync::OnceLock;

/// Whether `PROMPTEVO_KERNEL=portable` asks for the portable code everywhere (read once).
pub(crate) fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("PROMPTEVO_KERNEL").is_ok_and(|v| v == "portable"))
}

/// Whether the AVX-512 (F, VL) builds of attention and RMS norm may run: the CPU has the
/// features and the portable switch is off.
pub(crate) fn wide_vectors() -> bool {
    if portable_forced() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Which implementation each kernel of the native path uses in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelChoice {
    /// The bf16 matrix product.
    pub matmul: KernelKind,
    /// Attention (true: the AVX-512 build).
    pub attention_avx512: bool,
    /// RMS norm (true: the AVX-512 build).
    pub rms_norm_avx512: bool,
    /// SiLU · up (true: the AVX-512 vector loop).
    pub silu_avx512: bool,
}

impl KernelChoice {
    /// The kernels the dispatchers pick on this CPU under the current environment.
    pub fn current() -> Self {
        Self {
            matmul: KernelKind::detect(),
            attention_avx512: wide_vectors(),
            rms_norm_avx512: wide_vectors(),
            silu_avx512: exp::silu_vectorised(),
        }
    }
}
