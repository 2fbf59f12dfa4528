//! Causal attention on the CPU with a fixed summation order, so that a query's output depends only
//! on its own query, the keys and values it may see and their order: never on the batch it was
//! computed in, the padding around it, or whether its prefix came from a cache. (candle's gemm
//! picks blockings by shape, which changes rounding; activation rounding to bf16 downstream then
//! turns those 1e-7 differences into visible score changes.)

use rayon::prelude::*;

use crate::model::kernels::exp::exp_in_place;
use crate::model::profile::{Busy, Part};

/// Lanes of the dot-product accumulator (a fixed order, vectorised by the compiler).
const LANES: usize = 8;

#[inline(always)]
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

/// One head of one query: `o = softmax(qv·kⱼ · scale + maskⱼ) · vⱼ` over `j < p.len()`, with
/// keys and values located by `key(j)` / `value(j)`; `p` is scratch of the key count. The one
/// summation order every attention path here shares.
#[inline(always)]
fn attend_head<'a>(
    qv: &[f32],
    mask: &[f32],
    scale: f32,
    p: &mut [f32],
    key: impl Fn(usize) -> &'a [f32],
    value: impl Fn(usize) -> &'a [f32],
    o: &mut [f32],
) {
    let mut max = f32::NEG_INFINITY;
    for (j, pj) in p.iter_mut().enumerate() {
        *pj = if mask[j] == f32::NEG_INFINITY {
            f32::NEG_INFINITY
        } else {
            dot(qv, key(j)) * scale + mask[j]
        };
        max = max.max(*pj);
    }
    // Masked keys stay -inf, whose exp is 0 (also when every key is masked and max is -inf).
    for x in p.iter_mut() {
        if *x != f32::NEG_INFINITY {
            *x -= max;
        }
    }
    exp_in_place(p);
    let mut sum = 0f32;
    for x in p.iter() {
        sum += *x;
    }
    o.fill(0.0);
    for (j, &w) in p.iter().enumerate() {
        if w != 0.0 {
            let w = w / sum;
            for (oo, vv) in o.iter_mut().zip(value(j)) {
                *oo += w * vv;
            }
        }
    }
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
        let _busy = Busy::new(Part::Attention);
        let (b, i) = (bi / seq, bi % seq);
        let mrow = &mask[(b * seq + i) * kv_len..(b * seq + i + 1) * kv_len];
        let mut p = vec![0f32; kv_len];
        for h in 0..heads {
            let qv = &q[((b * heads + h) * seq + i) * d..][..d];
            let kbase = (b * kv_heads + h / rep) * kv_len * d;
            attend_head(
                qv,
                mrow,
                scale,
                &mut p,
                |j| &k[kbase + j * d..][..d],
                |j| &v[kbase + j * d..][..d],
                &mut dst[h * d..(h + 1) * d],
            );
        }
    });
    out
}

/// Keys and values of consecutive positions in some buffer: position `j`'s keys of kv head `h`
/// are `k[j · stride + h · d..][..d]` (values likewise in `v`).
#[derive(Clone, Copy)]
pub(crate) struct KvSeg<'a> {
    /// Keys (from the first position's row on).
    pub k: &'a [f32],
    /// Values (from the first position's row on).
    pub v: &'a [f32],
    /// Distance between positions.
    pub stride: usize,
    /// Positions.
    pub len: usize,
}

impl KvSeg<'_> {
    /// No positions.
    pub(crate) const EMPTY: KvSeg<'static> = KvSeg {
        k: &[],
        v: &[],
        stride: 0,
        len: 0,
    };
}

/// What one query may see: its keys/values (the concatenation of two segments, e.g. a shared
/// prefix and the query's own row) and its additive mask over them.
pub(crate) struct QueryCtx<'a> {
    /// Key/value segments, in position order.
    pub segs: [KvSeg<'a>; 2],
    /// 0 or -inf per position of `segs`.
    pub mask: &'a [f32],
}

/// [`attention`] for `m` queries read from rows of `q` (`stride q_stride`, heads side by side)
/// whose keys and values `ctx(t)` locates; same summation order as [`attention`], so a query's
/// output depends only on what it sees. Returns `m × heads · d`.
pub(crate) fn attention_ctx<'a>(
    q: &[f32],
    q_stride: usize,
    m: usize,
    (heads, kv_heads, d): (usize, usize, usize),
    scale: f32,
    ctx: impl Fn(usize) -> QueryCtx<'a> + Sync,
) -> Vec<f32> {
    let width = heads * d;
    let mut out = vec![0f32; m * width];
    let wide = super::kernels::wide_vectors();
    out.par_chunks_mut(width)
        .enumerate()
        .with_min_len(4)
        .for_each_init(Vec::new, |p, (t, dst)| {
            let _busy = Busy::new(Part::Attention);
            let QueryCtx { segs, mask } = ctx(t);
            let qrow = &q[t * q_stride..][..width];
            let a = Attend {
                heads,
                kv_heads,
                d,
                scale,
            };
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` says the CPU has these features.
                return unsafe { a.run_avx512(qrow, &segs, mask, dst, p) };
            }
            let _ = wide;
            a.run(qrow, &segs, mask, dst, p)
        });
    out
}

/// One query's attention over its segments (heads and scale fixed).
struct Attend {
    heads: usize,
    kv_heads: usize,
    d: usize,
    scale: f32,
}

impl Attend {
    /// [`Attend::run`] compiled for AVX-512 (identical results: no reassociation).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    unsafe fn run_avx512(
        &self,
        qrow: &[f32],
        segs: &[KvSeg; 2],
        mask: &[f32],
        dst: &mut [f32],
        p: &mut Vec<f32>,
    ) {
        self.run(qrow, segs, mask, dst, p)
    }

    /// Writes `softmax(q·kᵀ · scale + mask) · v` of every head of `qrow` into `dst`; `p` is
    /// scratch.
    #[inline(always)]
    fn run(
        &self,
        qrow: &[f32],
        segs: &[KvSeg; 2],
        mask: &[f32],
        dst: &mut [f32],
        p: &mut Vec<f32>,
    ) {
        let Attend {
            heads,
            kv_heads,
            d,
            scale,
        } = *self;
        let rep = heads / kv_heads;
        let kv_len = segs[0].len + segs[1].len;
        p.clear();
        p.resize(kv_len, 0.0);
        let key = |j: usize| -> (&[f32], &[f32]) {
            let (seg, j) = if j < segs[0].len {
                (&segs[0], j)
            } else {
                (&segs[1], j - segs[0].len)
            };
            (&seg.k[j * seg.stride..], &seg.v[j * seg.stride..])
        };
        for h in 0..heads {
            let off = (h / rep) * d;
            attend_head(
                &qrow[h * d..(h + 1) * d],
                mask,
                scale,
                p,
                |j| &key(j).0[off..][..d],
                |j| &key(j).1[off..][..d],
                &mut dst[h * d..(h + 1) * d],
            );
        }
    }
}
