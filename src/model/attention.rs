//! Causal attention on the CPU with a fixed summation order, so that a query's output depends only
//! on its own query, the keys and values it may see and their order: never on the batch it was
//! computed in, the padding around it, or whether its prefix came from a cache. (candle's gemm
//! picks blockings by shape, which changes rounding; activation rounding to bf16 downstream then
//! turns those 1e-7 differences into visible score changes.)

use rayon::prelude::*;

use super::kv_cache::RowKv;

/// Lanes of the dot-product accumulator (a fixed order, vectorised by the compiler).
const LANES: usize = 8;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Shapes of one attention call.
pub struct AttentionShape {
    /// Batch rows.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// New tokens per row.
    pub seq: usize,
    /// Cached plus new positions per row.
    pub kv_len: usize,
    /// Width of a head.
    pub head_dim: usize,
}

/// `softmax(q·kᵀ · scale + mask) · v` for `q` `(batch, heads, seq, d)`, `k`/`v`
/// `(batch, kv_heads, kv_len, d)` and an additive `mask` `(batch, seq, kv_len)` (0 or -inf);
/// returns `(batch, seq, heads · d)`, ready for the output projection.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    shape: &AttentionShape,
    scale: f32,
) -> Vec<f32> {
    let AttentionShape {
        batch,
        heads,
        kv_heads,
        seq,
        kv_len,
        head_dim: d,
    } = *shape;
    let rep = heads / kv_heads;
    let width = heads * d;
    let mut out = vec![0f32; batch * seq * width];
    // One task per (row, query position): each writes its own slice of `out`.
    out.par_chunks_mut(width).enumerate().for_each(|(bi, dst)| {
        let (b, i) = (bi / seq, bi % seq);
        let mrow = &mask[(b * seq + i) * kv_len..(b * seq + i + 1) * kv_len];
        let mut p = vec![0f32; kv_len];
        for h in 0..heads {
            let kvh = h / rep;
            let qv = &q[((b * heads + h) * seq + i) * d..][..d];
            let kbase = (b * kv_heads + kvh) * kv_len * d;
            let mut max = f32::NEG_INFINITY;
            for j in 0..kv_len {
                p[j] = if mrow[j] == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    dot(qv, &k[kbase + j * d..][..d]) * scale + mrow[j]
                };
                max = max.max(p[j]);
            }
            let mut sum = 0f32;
            for x in p.iter_mut() {
                *x = if *x == f32::NEG_INFINITY {
                    0.0
                } else {
                    (*x - max).exp()
                };
                sum += *x;
            }
            let o = &mut dst[h * d..(h + 1) * d];
            o.fill(0.0);
            for (j, &w) in p.iter().enumerate() {
                if w != 0.0 {
                    let w = w / sum;
                    for (oo, vv) in o.iter_mut().zip(&v[kbase + j * d..][..d]) {
                        *oo += w * vv;
                    }
                }
            }
        }
    });
    out
}

/// [`attention`] over the native path's layouts: `q` `(batch, seq, heads, d)` (the query
/// projection's output as is) and, per batch row, keys and values `(kv_len, kv_heads, d)` from
/// the CPU cache; same mask, output and summation order.
pub(crate) fn attention_rows(
    q: &[f32],
    q_stride: usize,
    rows: &[RowKv],
    mask: &[f32],
    shape: &AttentionShape,
    scale: f32,
) -> Vec<f32> {
    let AttentionShape {
        batch: _,
        heads,
        kv_heads,
        seq,
        kv_len,
        head_dim: d,
    } = *shape;
    let rep = heads / kv_heads;
    let width = heads * d;
    let kv_width = kv_heads * d;
    let mut out = vec![0f32; rows.len() * seq * width];
    out.par_chunks_mut(width).enumerate().for_each(|(bi, dst)| {
        let row = &rows[bi / seq];
        let (k, v) = (&row.k, &row.v);
        let mrow = &mask[bi * kv_len..(bi + 1) * kv_len];
        let qrow = &q[bi * q_stride..][..width];
        let mut p = vec![0f32; kv_len];
        for h in 0..heads {
            let off = (h / rep) * d;
            let qv = &qrow[h * d..(h + 1) * d];
            let mut max = f32::NEG_INFINITY;
            for j in 0..kv_len {
                p[j] = if mrow[j] == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    dot(qv, &k[j * kv_width + off..][..d]) * scale + mrow[j]
                };
                max = max.max(p[j]);
            }
            let mut sum = 0f32;
            for x in p.iter_mut() {
                *x = if *x == f32::NEG_INFINITY {
                    0.0
                } else {
                    (*x - max).exp()
                };
                sum += *x;
            }
            let o = &mut dst[h * d..(h + 1) * d];
            o.fill(0.0);
            for (j, &w) in p.iter().enumerate() {
                if w != 0.0 {
                    let w = w / sum;
                    for (oo, vv) in o.iter_mut().zip(&v[j * kv_width + off..][..d]) {
                        *oo += w * vv;
                    }
                }
            }
        }
    });
    out
}
