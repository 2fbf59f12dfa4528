//! One linear layer of the native path, whichever way its weights are held: bf16 (the default
//! native path, `--weights bf16`) or 8-bit integers with Q8_1 activations (`--weights int8`).
//! The layer code calls [`Linear::matmul`] and never asks which.

use crate::model::kernels::{Bf16Matrix, Int8Matrix};

/// A weight matrix `W` (`rows × cols`) and its product kernel.
pub(crate) enum Linear {
    /// bf16 weights, f32 accumulation of bf16-rounded products.
    Bf16(Bf16Matrix),
    /// 8-bit weights per block of 32 (scale and minimum), activations quantised as Q8_1.
    Int8(Int8Matrix),
}

impl Linear {
    /// `x · Wᵀ` for `x` of `m × cols` (row major); returns `m × rows`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        match self {
            Linear::Bf16(w) => w.matmul(x, m),
            Linear::Int8(w) => w.matmul(x, m),
        }
    }

    /// Input features (columns of `W`).
    pub fn cols(&self) -> usize {
        match self {
            Linear::Bf16(w) => w.cols(),
            Linear::Int8(w) => w.cols(),
        }
    }
}
