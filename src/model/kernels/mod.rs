//! CPU matrix kernels for the batched forward pass: `x · Wᵀ` with bf16 weights, picked at run
//! time by CPU feature (AVX-512 f32 FMAs over packed bf16 panels, else a portable loop), split
//! across rayon's threads.

mod bf16;
pub mod exp;

pub use bf16::{bf16_to_f32, f32_to_bf16, Bf16Matrix, KernelKind};
