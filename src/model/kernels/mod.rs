//! CPU matrix kernels for the batched forward pass: `x · Wᵀ` with bf16 weights (AVX-512 f32
//! FMAs over packed bf16 panels, else a portable loop) or with 8-bit weights and activations
//! (`int8.rs`: AVX-512 VNNI integer dot products, else a portable loop), picked at run time by
//! CPU feature and split across rayon's threads.
//!
//! Every SIMD kernel of the native path (matmul, attention, RMS norm, SiLU) asks `cpu.rs`
//! (re-exported here) whether it may run: `PROMPTEVO_KERNEL=portable` turns all of them off at once, so a user can
//! rule promptevo's SIMD out of a wrong result.

mod bf16;
mod cpu;
pub mod exp;
mod int8;
pub mod q8;
mod tiles;

pub use bf16::{bf16_to_f32, f32_to_bf16, Bf16Matrix, KernelKind, KernelUnavailable};
pub(crate) use cpu::wide_vectors;
pub use int8::{Int8Builder, Int8Error, Int8Kind, Int8Matrix};
pub use q8::Q8Matrix;

/// Which implementation each kernel of the native path uses in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelChoice {
    /// The bf16 matrix product.
    pub matmul: KernelKind,
    /// The int8 matrix product (`--weights int8`).
    pub int8: Int8Kind,
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
            int8: Int8Kind::detect(),
            attention_avx512: wide_vectors(),
            rms_norm_avx512: wide_vectors(),
            silu_avx512: exp::silu_vectorised(),
        }
    }
}
