//! CPU matrix kernels for the batched forward pass: `x · Wᵀ` with bf16 weights, picked at run
//! time by CPU feature (AVX-512 BF16 dot products, else a portable loop), split across rayon's
//! threads by output rows.

mod bf16;

pub use bf16::{Bf16Matrix, KernelKind};
