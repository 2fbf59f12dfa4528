//! The element-wise steps of the native path, row by row on rayon's threads: RMS norms, RoPE,
//! SiLU or GELU gating, residual adds, sliding-window masks and row gathers. Each computes a row
//! from that row alone, in a fixed order, with the same expressions as candle's CPU ops
//! (`rms_norm`, `rope_i`/`rope`, `silu`, `gelu`), so a token's result does not depend on the
//! batch it was computed in.

use rayon::prelude::*;

use crate::model::kernels::{exp, wide_vectors};
use crate::model::profile::{busy, Busy, Part};

/// Rows per rayon task in the element-wise steps.
pub(super) const ROWS_PER_TASK: usize = 8;

/// `x / rms(x) · alpha` for each row of `x` (width `alpha.len()`), as candle's `rms_norm`.
pub(super) fn rms_norm(x: &[f32], alpha: &[f32], eps: f32) -> Vec<f32> {
    let n = alpha.len();
    let mut out = vec![0f32; x.len()];
    let wide = wide_vectors();
    out.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(x.par_chunks(n * ROWS_PER_TASK))
        .for_each(|(dst, src)| {
            let _busy = Busy::new(Part::Norm);
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` says the CPU has these features.
                return unsafe { rms_rows_avx512(src, dst, alpha, eps) };
            }
            let _ = wide;
            rms_rows(src, dst, alpha, eps)
        });
    out
}

/// [`rms_rows`] compiled for AVX-512 (same arithmetic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
unsafe fn rms_rows_avx512(src: &[f32], dst: &mut [f32], alpha: &[f32], eps: f32) {
    rms_rows(src, dst, alpha, eps)
}

/// RMS norm of up to [`ROWS_PER_TASK`] rows. Each row's sum of squares is a sequential sum (as
/// candle's), the rows' sums interleaved so that they do not wait on one another.
#[inline(always)]
fn rms_rows(src: &[f32], dst: &mut [f32], alpha: &[f32], eps: f32) {
    let n = alpha.len();
    let rows = src.len() / n.max(1);
    let mut sum = [0f32; ROWS_PER_TASK];
    for k in 0..n {
        for (r, acc) in sum.iter_mut().enumerate().take(rows) {
            let v = src[r * n + k];
            *acc += v * v;
        }
    }
    for (r, &sum2) in sum.iter().enumerate().take(rows) {
        let m = (sum2 / n as f32 + eps).sqrt();
        let (d, s) = (&mut dst[r * n..(r + 1) * n], &src[r * n..(r + 1) * n]);
        for ((o, &v), &a) in d.iter_mut().zip(s).zip(alpha) {
            *o = v / m * a;
        }
    }
}

/// Adds `y` to `x` element-wise.
pub(super) fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(a, b)| {
            busy(Part::Residual, || {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b)
            })
        });
}

/// `silu(gate) · up` for rows of `[gate, up]` (each `ff` wide); returns rows of `ff`.
pub(super) fn silu_mul(gu: &[f32], ff: usize) -> Vec<f32> {
    let mut out = vec![0f32; gu.len() / 2];
    out.par_chunks_mut(ff)
        .zip(gu.par_chunks(2 * ff))
        .with_min_len(2)
        .for_each(|(o, row)| {
            let (g, u) = row.split_at(ff);
            busy(Part::Activation, || exp::silu_mul(o, g, u))
        });
    out
}

/// `gelu(gate) · up` (tanh approximation, candle's `gelu` expression) for rows of
/// `[gate, up]` (each `ff` wide); returns rows of `ff`.
pub(super) fn gelu_mul(gu: &[f32], ff: usize) -> Vec<f32> {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let mut out = vec![0f32; gu.len() / 2];
    out.par_chunks_mut(ff)
        .zip(gu.par_chunks(2 * ff))
        .with_min_len(2)
        .for_each(|(o, row)| {
            let (g, u) = row.split_at(ff);
            let _busy = Busy::new(Part::Activation);
            for ((o, &v), &u) in o.iter_mut().zip(g).zip(u) {
                let gelu =
                    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)));
                *o = gelu * u;
            }
        });
    out
}

/// RMS norm of one row in place, with [`rms_rows`]' arithmetic.
pub(super) fn rms_in_place(x: &mut [f32], alpha: &[f32], eps: f32) {
    let mut sum2 = 0f32;
    for &v in x.iter() {
        sum2 += v * v;
    }
    let m = (sum2 / alpha.len() as f32 + eps).sqrt();
    for (v, &a) in x.iter_mut().zip(alpha) {
        *v = *v / m * a;
    }
}

/// Interleaved RoPE (candle's `rope_i`) of `heads` heads starting at column `start` of a row,
/// for the position whose tables start at `cos`/`sin`.
pub(super) fn rope_row(
    row: &mut [f32],
    start: usize,
    heads: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
) {
    for h in 0..heads {
        let x = &mut row[start + h * d..start + (h + 1) * d];
        for i in 0..d / 2 {
            let (a, b) = (x[2 * i], x[2 * i + 1]);
            x[2 * i] = a * cos[i] - b * sin[i];
            x[2 * i + 1] = a * sin[i] + b * cos[i];
        }
    }
}

/// NEOX RoPE (candle's `rope`: dimension `i` pairs with `i + d/2`) of `heads` heads starting at
/// column `start` of a row.
pub(super) fn rope_row_neox(
    row: &mut [f32],
    start: usize,
    heads: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let half = d / 2;
    for h in 0..heads {
        let x = &mut row[start + h * d..start + (h + 1) * d];
        for i in 0..half {
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * cos[i] - b * sin[i];
            x[i + half] = a * sin[i] + b * cos[i];
        }
    }
}

/// Closes, in one query's additive mask row, the keys at least `window` positions before the
/// query's position `q` (`keys` yields every key's position in mask order).
pub(super) fn window_row<'a>(
    row: &mut [f32],
    q: u32,
    keys: impl Iterator<Item = &'a u32>,
    window: usize,
) {
    // A window wider than i64 closes nothing (a plain `as` cast would wrap and close all).
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    for (m, &k) in row.iter_mut().zip(keys) {
        if i64::from(q) - i64::from(k) >= window {
            *m = f32::NEG_INFINITY;
        }
    }
}

/// Rows `idx` of `x` (rows of `width`), in that order.
pub(super) fn gather(x: &[f32], width: usize, idx: &[usize]) -> Vec<f32> {
    let _busy = Busy::new(Part::Gather);
    let mut out = Vec::with_capacity(idx.len() * width);
    for &i in idx {
        out.extend_from_slice(&x[i * width..(i + 1) * width]);
    }
    out
}
