//! The decoder forward pass on the CPU for bf16 weights, without candle in the hot loop:
//! activations stay in `Vec<f32>` through each layer, the linears run promptevo's bf16 kernel
//! (q/k/v fused into one product, gate/up into another: each output column is still its own dot
//! product in the same order), the element-wise steps (RMS norms, RoPE, SiLU or GELU, residual
//! adds) are plain loops over rows on rayon's threads, and attention reads the CPU rows of the
//! [`KvCache`]. So every core runs one pool (rayon's) and candle's thread pool sits idle. What
//! differs between architectures (q/k norms, post-norms, biases, NEOX RoPE, sliding windows) is
//! a field of [`NativeLayer`] or [`NativeShape`]; for llama the steps are the ones it always had.
//!
//! Every step computes a row from that row alone, in a fixed order, with the same expressions as
//! candle's CPU ops (`rms_norm`, `rope_i`/`rope`, `silu`, `gelu`), so a token's result does not depend on the
//! batch, the padding or the cache it was computed with.

use rayon::prelude::*;

use super::arch::decoder::{Activation, RopeStyle};
use super::arch::PackedRow;
use super::attention::{attention_ctx, KvSeg, QueryCtx};
use super::kernels::{exp, wide_vectors, Bf16Matrix};
use super::kv_cache::KvCache;

/// Rows per rayon task in the element-wise steps.
const ROWS_PER_TASK: usize = 8;

/// One transformer block's weights.
pub(crate) struct NativeLayer {
    /// RMS-norm weight before attention.
    pub attn_norm: Vec<f32>,
    /// `[W_q; W_k; W_v]` stacked by output row.
    pub qkv: Bf16Matrix,
    /// `[b_q; b_k; b_v]`, added after the product (qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head RMS-norm weights of queries and keys, before RoPE (gemma3, qwen3).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Attention output projection.
    pub wo: Bf16Matrix,
    /// RMS-norm weight of the attention output before the residual add (gemma3).
    pub post_attn_norm: Option<Vec<f32>>,
    /// RMS-norm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// `[W_gate; W_up]` stacked by output row.
    pub gate_up: Bf16Matrix,
    /// MLP down projection.
    pub down: Bf16Matrix,
    /// RMS-norm weight of the MLP output before the residual add (gemma3).
    pub post_ffn_norm: Option<Vec<f32>>,
    /// Which RoPE table this layer uses (local and global layers differ in gemma3).
    pub rope: usize,
    /// Whether attention is limited to the sliding window ([`NativeShape::window`]).
    pub sliding: bool,
}

impl NativeLayer {
    /// The rest of the block once attention gave `y` (`m` rows): adds the output projection to
    /// the residual `x`, then the gated MLP of its RMS norm (each output RMS-normed first when
    /// the layer has post-norms).
    fn attention_out_and_mlp(&self, x: &mut [f32], y: &[f32], m: usize, shape: &NativeShape) {
        let eps = shape.eps;
        let mut o = self.wo.matmul(y, m);
        if let Some(w) = &self.post_attn_norm {
            o = rms_norm(&o, w, eps);
        }
        add_in_place(x, &o);
        let h = rms_norm(x, &self.ffn_norm, eps);
        let gu = self.gate_up.matmul(&h, m);
        let act = match shape.activation {
            Activation::Silu => silu_mul(&gu, self.down.cols()),
            Activation::GeluTanh => gelu_mul(&gu, self.down.cols()),
        };
        let mut d = self.down.matmul(&act, m);
        if let Some(w) = &self.post_ffn_norm {
            d = rms_norm(&d, w, eps);
        }
        add_in_place(x, &d);
    }

    /// Bias, per-head q/k norms and RoPE on rows of `qkv` (`[q | k | v]`, width
    /// `shape.qkv_width()`) at `positions`.
    fn qkv_steps(&self, native: &Native, qkv: &mut [f32], positions: &[u32]) {
        let shape = &native.shape;
        let width = shape.qkv_width();
        if let Some(b) = &self.qkv_bias {
            qkv.par_chunks_mut(width)
                .with_min_len(ROWS_PER_TASK)
                .for_each(|row| row.iter_mut().zip(b).for_each(|(x, b)| *x += b));
        }
        if let Some((qn, kn)) = &self.qk_norm {
            let (q_width, d, eps) = (shape.heads * shape.head_dim, shape.head_dim, shape.eps);
            let kv_width = shape.kv_heads * d;
            qkv.par_chunks_mut(width)
                .with_min_len(ROWS_PER_TASK)
                .for_each(|row| {
                    for head in row[..q_width].chunks_exact_mut(d) {
                        rms_in_place(head, qn, eps);
                    }
                    for head in row[q_width..q_width + kv_width].chunks_exact_mut(d) {
                        rms_in_place(head, kn, eps);
                    }
                });
        }
        native.rope(qkv, positions, self.rope);
    }
}

/// Shapes the native pass needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NativeShape {
    /// Residual width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// RMS-norm epsilon.
    pub eps: f32,
    /// Factor of the attention scores.
    pub scale: f32,
    /// How RoPE pairs a head's dimensions.
    pub rope: RopeStyle,
    /// The MLP's gate activation.
    pub activation: Activation,
    /// Sliding-window length of the layers marked `sliding`: a query at position `q` sees a key
    /// at `k` only when `q - k < window` (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`).
    pub window: Option<usize>,
}

impl NativeShape {
    /// Width of a `[q | k | v]` row.
    fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// The model's weights in the native path's form.
pub(crate) struct Native {
    /// Transformer blocks.
    pub layers: Vec<NativeLayer>,
    /// Final RMS-norm weight.
    pub norm: Vec<f32>,
    /// Per RoPE table: `cos(p · f_i)`, `max_positions × head_dim / 2`.
    pub cos: Vec<Vec<f32>>,
    /// Per RoPE table: `sin(p · f_i)`, same shape.
    pub sin: Vec<Vec<f32>>,
    /// Shapes.
    pub shape: NativeShape,
}

/// `x / rms(x) · alpha` for each row of `x` (width `alpha.len()`), as candle's `rms_norm`.
pub(crate) fn rms_norm(x: &[f32], alpha: &[f32], eps: f32) -> Vec<f32> {
    let n = alpha.len();
    let mut out = vec![0f32; x.len()];
    let wide = wide_vectors();
    out.par_chunks_mut(n * ROWS_PER_TASK)
        .zip(x.par_chunks(n * ROWS_PER_TASK))
        .for_each(|(dst, src)| {
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
fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

/// `silu(gate) · up` for rows of `[gate, up]` (each `ff` wide); returns rows of `ff`.
fn silu_mul(gu: &[f32], ff: usize) -> Vec<f32> {
    let mut out = vec![0f32; gu.len() / 2];
    out.par_chunks_mut(ff)
        .zip(gu.par_chunks(2 * ff))
        .with_min_len(2)
        .for_each(|(o, row)| {
            let (g, u) = row.split_at(ff);
            exp::silu_mul(o, g, u)
        });
    out
}

/// `gelu(gate) · up` (tanh approximation, candle's `gelu` expression) for rows of
/// `[gate, up]` (each `ff` wide); returns rows of `ff`.
fn gelu_mul(gu: &[f32], ff: usize) -> Vec<f32> {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let mut out = vec![0f32; gu.len() / 2];
    out.par_chunks_mut(ff)
        .zip(gu.par_chunks(2 * ff))
        .with_min_len(2)
        .for_each(|(o, row)| {
            let (g, u) = row.split_at(ff);
            for ((o, &v), &u) in o.iter_mut().zip(g).zip(u) {
                let gelu =
                    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)));
                *o = gelu * u;
            }
        });
    out
}

/// RMS norm of one row in place, with [`rms_rows`]' arithmetic.
fn rms_in_place(x: &mut [f32], alpha: &[f32], eps: f32) {
    let mut sum2 = 0f32;
    for &v in x.iter() {
        sum2 += v * v;
    }
    let m = (sum2 / alpha.len() as f32 + eps).sqrt();
    for (v, &a) in x.iter_mut().zip(alpha) {
        *v = *v / m * a;
    }
}

impl Native {
    /// Interleaved RoPE (candle's `rope_i`) of `heads` heads starting at column `start` of a
    /// row, for the position whose tables start at `cos`/`sin`.
    fn rope_row(row: &mut [f32], start: usize, heads: usize, d: usize, cos: &[f32], sin: &[f32]) {
        for h in 0..heads {
            let x = &mut row[start + h * d..start + (h + 1) * d];
            for i in 0..d / 2 {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
    }

    /// NEOX RoPE (candle's `rope`: dimension `i` pairs with `i + d/2`) of `heads` heads starting
    /// at column `start` of a row.
    fn rope_row_neox(
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

    /// Fails (instead of reading past the RoPE tables) when a position is beyond them.
    fn check_positions(&self, positions: &[u32]) -> candle_core::Result<()> {
        let max_pos = self.cos.first().map_or(0, Vec::len) / (self.shape.head_dim / 2).max(1);
        if let Some(&bad) = positions.iter().find(|&&q| q as usize >= max_pos) {
            candle_core::bail!("position {bad} is past the model's {max_pos} RoPE positions");
        }
        Ok(())
    }

    /// Runs `b × s` token embeddings `x` (rows of `hidden`) after what `cache` holds, with
    /// `positions` (`b × s`) and an additive `mask` (`b × s × (cache.len() + s)`); returns the
    /// final-normed hidden states (`b × s × hidden`) and extends the cache.
    pub(crate) fn forward(
        &self,
        mut x: Vec<f32>,
        positions: &[u32],
        mask: &[f32],
        (b, s): (usize, usize),
        cache: &mut KvCache,
    ) -> candle_core::Result<Vec<f32>> {
        let NativeShape {
            hidden,
            heads,
            kv_heads,
            head_dim: d,
            scale,
            ..
        } = self.shape;
        let m = b * s;
        let q_width = heads * d;
        let kv_width = kv_heads * d;
        let qkv_width = self.shape.qkv_width();
        self.check_positions(positions)?;
        let p = cache.len();
        let kv_len = p + s;
        if mask.len() != m * kv_len || x.len() != m * hidden || positions.len() != m {
            candle_core::bail!("native forward: inputs do not match batch {b} × {s}");
        }
        // The sliding-window mask, once for every windowed layer: the cached tokens' positions
        // and the new ones', as llama.cpp measures windows.
        let swa = match self.window() {
            Some(w) => {
                let mut out = mask.to_vec();
                for r in 0..b {
                    let cached = cache.positions(r);
                    if cached.len() != p {
                        candle_core::bail!("native forward: the KV cache lacks its positions");
                    }
                    let new = &positions[r * s..(r + 1) * s];
                    for i in 0..s {
                        let row = &mut out[(r * s + i) * kv_len..][..kv_len];
                        window_row(row, new[i], cached.iter().chain(new), w);
                    }
                }
                Some(out)
            }
            None => None,
        };
        cache.push_positions(b, positions)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, self.shape.eps);
            let mut qkv = layer.qkv.matmul(&h, m);
            layer.qkv_steps(self, &mut qkv, positions);
            let rows = cache.append_rows(li, (b, s, kv_width), |r, i| {
                let row = &qkv[(r * s + i) * qkv_width..][..qkv_width];
                (
                    &row[q_width..q_width + kv_width],
                    &row[q_width + kv_width..],
                )
            })?;
            let lmask: &[f32] = match (&swa, layer.sliding) {
                (Some(w), true) => w,
                _ => mask,
            };
            let y = attention_ctx(&qkv, qkv_width, m, (heads, kv_heads, d), scale, |t| {
                let row = &rows[t / s];
                QueryCtx {
                    segs: [
                        KvSeg {
                            k: &row.k,
                            v: &row.v,
                            stride: kv_width,
                            len: kv_len,
                        },
                        KvSeg::EMPTY,
                    ],
                    mask: &lmask[t * kv_len..(t + 1) * kv_len],
                }
            });
            layer.attention_out_and_mlp(&mut x, &y, m, &self.shape);
        }
        Ok(rms_norm(&x, &self.norm, self.shape.eps))
    }

    /// The sliding window, when some layer uses one.
    fn window(&self) -> Option<usize> {
        self.shape
            .window
            .filter(|_| self.layers.iter().any(|l| l.sliding))
    }

    /// Runs packed rows of different lengths (no padding) after a shared `prefix` cache of one
    /// row (or an empty one), which it leaves as is: `x` holds the token embeddings of every row
    /// back to back (`Σ len × hidden`), `positions` their positions, and row `r`'s `mask` is
    /// `len × (prefix.len() + len)` over the prefix and the row's own tokens. Returns the
    /// final-normed hidden states of the packed tokens listed in `keep` (ascending), in that
    /// order: the last layer runs its attention output and MLP for those tokens only. A token's
    /// result is the one [`Native::forward`] gives it in any padded batch.
    pub(crate) fn forward_packed(
        &self,
        mut x: Vec<f32>,
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> candle_core::Result<Vec<f32>> {
        let NativeShape {
            hidden,
            heads,
            kv_heads,
            head_dim: d,
            scale,
            ..
        } = self.shape;
        let m: usize = rows.iter().map(|r| r.len).sum();
        let p = prefix.len();
        let q_width = heads * d;
        let kv_width = kv_heads * d;
        let qkv_width = self.shape.qkv_width();
        self.check_positions(positions)?;
        if x.len() != m * hidden
            || positions.len() != m
            || rows.iter().any(|r| r.mask.len() != r.len * (p + r.len))
        {
            candle_core::bail!("packed forward: inputs do not match the rows' lengths");
        }
        if p > 0 && prefix.batch() != 1 {
            candle_core::bail!("packed forward: the prefix cache must hold one row");
        }
        if keep.windows(2).any(|w| w[0] >= w[1]) || keep.last().is_some_and(|&t| t >= m) {
            candle_core::bail!("packed forward: rows to keep must ascend and lie below {m}");
        }
        // Query t belongs to row owner[t], whose tokens start at start[owner[t]].
        let mut owner = Vec::with_capacity(m);
        let mut start = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            start.push(owner.len());
            owner.extend(std::iter::repeat_n(r, row.len));
        }
        // Each row's sliding-window mask, over the prefix's positions and its own.
        let swa: Option<Vec<Vec<f32>>> = match self.window() {
            Some(w) => {
                let cached = prefix.positions(0);
                if cached.len() != p {
                    candle_core::bail!("packed forward: the prefix cache lacks its positions");
                }
                Some(
                    rows.iter()
                        .zip(&start)
                        .map(|(row, &s0)| {
                            let own = &positions[s0..s0 + row.len];
                            let kv = p + row.len;
                            let mut out = row.mask.to_vec();
                            for (i, mrow) in out.chunks_exact_mut(kv).enumerate() {
                                window_row(mrow, own[i], cached.iter().chain(own), w);
                            }
                            out
                        })
                        .collect(),
                )
            }
            None => None,
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let pre = match prefix.rows(li) {
                Some([row]) => KvSeg {
                    k: &row.k,
                    v: &row.v,
                    stride: kv_width,
                    len: p,
                },
                _ if p == 0 => KvSeg::EMPTY,
                _ => candle_core::bail!("packed forward: the prefix cache is not a CPU cache"),
            };
            let h = rms_norm(&x, &layer.attn_norm, self.shape.eps);
            let mut qkv = layer.qkv.matmul(&h, m);
            layer.qkv_steps(self, &mut qkv, positions);
            // The last layer needs keys and values of every token but outputs only for `keep`.
            let last = li + 1 == self.layers.len();
            let queries: Vec<usize> = if last {
                keep.to_vec()
            } else {
                (0..m).collect()
            };
            let q_rows = if last {
                gather(&qkv, qkv_width, keep)
            } else {
                Vec::new()
            };
            let q: &[f32] = if last { &q_rows } else { &qkv };
            let windowed = swa.as_ref().filter(|_| layer.sliding);
            let y = attention_ctx(
                q,
                qkv_width,
                queries.len(),
                (heads, kv_heads, d),
                scale,
                |tq| {
                    let t = queries[tq];
                    let r = owner[t];
                    let (row, s0) = (&rows[r], start[r]);
                    let i = t - s0;
                    let base = s0 * qkv_width + q_width;
                    let mask: &[f32] = match windowed {
                        Some(w) => &w[r],
                        None => row.mask,
                    };
                    QueryCtx {
                        segs: [
                            pre,
                            KvSeg {
                                k: &qkv[base..],
                                v: &qkv[base + kv_width..],
                                stride: qkv_width,
                                len: row.len,
                            },
                        ],
                        mask: &mask[i * (p + row.len)..(i + 1) * (p + row.len)],
                    }
                },
            );
            if last {
                x = gather(&x, hidden, keep);
            }
            layer.attention_out_and_mlp(&mut x, &y, queries.len(), &self.shape);
        }
        if self.layers.is_empty() {
            x = gather(&x, hidden, keep);
        }
        Ok(rms_norm(&x, &self.norm, self.shape.eps))
    }

    /// Runs packed rows of different lengths (no padding), each after the shared one-row
    /// `prefix` cache (left as is) and then its own one-row `tails[r]` cache (the row's earlier
    /// tokens after the prefix; empty at first), which is extended with the row's new keys and
    /// values: the step of many decodings at once, each row at its own length. `x` holds the
    /// token embeddings of every row back to back, `positions` their positions, and row `r`'s
    /// `mask` is `len × (prefix.len() + tails[r].len() + len)`. Returns the final-normed hidden
    /// states of the packed tokens `keep` (ascending). A token's result is the one
    /// [`Native::forward`] gives it with the prefix and tail as one cache.
    pub(crate) fn forward_ragged(
        &self,
        mut x: Vec<f32>,
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        tails: &mut [KvCache],
        keep: &[usize],
    ) -> candle_core::Result<Vec<f32>> {
        let NativeShape {
            hidden,
            heads,
            kv_heads,
            head_dim: d,
            scale,
            ..
        } = self.shape;
        let m: usize = rows.iter().map(|r| r.len).sum();
        let p = prefix.len();
        let q_width = heads * d;
        let kv_width = kv_heads * d;
        let qkv_width = self.shape.qkv_width();
        self.check_positions(positions)?;
        if tails.len() != rows.len()
            || x.len() != m * hidden
            || positions.len() != m
            || rows
                .iter()
                .zip(tails.iter())
                .any(|(r, t)| r.mask.len() != r.len * (p + t.len() + r.len))
        {
            candle_core::bail!("ragged forward: inputs do not match the rows' lengths");
        }
        if p > 0 && prefix.batch() != 1 || tails.iter().any(|t| !t.is_empty() && t.batch() != 1) {
            candle_core::bail!("ragged forward: the prefix and every tail must hold one row");
        }
        if keep.windows(2).any(|w| w[0] >= w[1]) || keep.last().is_some_and(|&t| t >= m) {
            candle_core::bail!("ragged forward: rows to keep must ascend and lie below {m}");
        }
        let mut owner = Vec::with_capacity(m);
        let mut start = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            start.push(owner.len());
            owner.extend(std::iter::repeat_n(r, row.len));
        }
        let before: Vec<usize> = tails.iter().map(KvCache::len).collect();
        let swa: Option<Vec<Vec<f32>>> = match self.window() {
            Some(w) => {
                let cached = prefix.positions(0);
                if cached.len() != p {
                    candle_core::bail!("ragged forward: the prefix cache lacks its positions");
                }
                let mut out = Vec::with_capacity(rows.len());
                for ((row, &s0), tail) in rows.iter().zip(&start).zip(tails.iter()) {
                    let own = &positions[s0..s0 + row.len];
                    let earlier = tail.positions(0);
                    if earlier.len() != tail.len() {
                        candle_core::bail!("ragged forward: a tail cache lacks its positions");
                    }
                    let kv = p + tail.len() + row.len;
                    let mut mask = row.mask.to_vec();
                    for (i, mrow) in mask.chunks_exact_mut(kv).enumerate() {
                        let keys = cached.iter().chain(earlier).chain(own);
                        window_row(mrow, own[i], keys, w);
                    }
                    out.push(mask);
                }
                Some(out)
            }
            None => None,
        };
        for ((tail, row), &s0) in tails.iter_mut().zip(rows).zip(&start) {
            tail.push_positions(1, &positions[s0..s0 + row.len])?;
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let pre = match prefix.rows(li) {
                Some([row]) => KvSeg {
                    k: &row.k,
                    v: &row.v,
                    stride: kv_width,
                    len: p,
                },
                _ if p == 0 => KvSeg::EMPTY,
                _ => candle_core::bail!("ragged forward: the prefix cache is not a CPU cache"),
            };
            let h = rms_norm(&x, &layer.attn_norm, self.shape.eps);
            let mut qkv = layer.qkv.matmul(&h, m);
            layer.qkv_steps(self, &mut qkv, positions);
            for ((tail, row), &s0) in tails.iter_mut().zip(rows).zip(&start) {
                tail.append_rows(li, (1, row.len, kv_width), |_, i| {
                    let r = &qkv[(s0 + i) * qkv_width..][..qkv_width];
                    (&r[q_width..q_width + kv_width], &r[q_width + kv_width..])
                })?;
            }
            let own: Vec<&super::kv_cache::RowKv> = tails
                .iter()
                .map(|t| match t.rows(li) {
                    Some([row]) => Ok(row),
                    _ => Err(candle_core::Error::Msg(
                        "ragged forward: a tail cache is not a one-row CPU cache".into(),
                    )),
                })
                .collect::<candle_core::Result<_>>()?;
            let last = li + 1 == self.layers.len();
            let queries: Vec<usize> = if last {
                keep.to_vec()
            } else {
                (0..m).collect()
            };
            let q_rows = if last {
                gather(&qkv, qkv_width, keep)
            } else {
                Vec::new()
            };
            let q: &[f32] = if last { &q_rows } else { &qkv };
            let windowed = swa.as_ref().filter(|_| layer.sliding);
            let y = attention_ctx(
                q,
                qkv_width,
                queries.len(),
                (heads, kv_heads, d),
                scale,
                |tq| {
                    let t = queries[tq];
                    let r = owner[t];
                    let (row, i) = (&rows[r], t - start[r]);
                    let kv = p + before[r] + row.len;
                    let mask: &[f32] = match windowed {
                        Some(w) => &w[r],
                        None => row.mask,
                    };
                    QueryCtx {
                        segs: [
                            pre,
                            KvSeg {
                                k: &own[r].k,
                                v: &own[r].v,
                                stride: kv_width,
                                len: before[r] + row.len,
                            },
                        ],
                        mask: &mask[i * kv..(i + 1) * kv],
                    }
                },
            );
            if last {
                x = gather(&x, hidden, keep);
            }
            layer.attention_out_and_mlp(&mut x, &y, queries.len(), &self.shape);
        }
        if self.layers.is_empty() {
            x = gather(&x, hidden, keep);
        }
        Ok(rms_norm(&x, &self.norm, self.shape.eps))
    }

    /// RoPE (table `table`) on the query and key columns of rows of `qkv` at `positions`.
    fn rope(&self, qkv: &mut [f32], positions: &[u32], table: usize) {
        let NativeShape {
            heads,
            kv_heads,
            head_dim: d,
            rope,
            ..
        } = self.shape;
        let half = d / 2;
        let q_width = heads * d;
        let (cos_t, sin_t) = (&self.cos[table], &self.sin[table]);
        qkv.par_chunks_mut(self.shape.qkv_width())
            .zip(positions.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(row, &p)| {
                let p = p as usize;
                let (cos, sin) = (&cos_t[p * half..][..half], &sin_t[p * half..][..half]);
                match rope {
                    RopeStyle::Interleaved => {
                        Self::rope_row(row, 0, heads, d, cos, sin);
                        Self::rope_row(row, q_width, kv_heads, d, cos, sin);
                    }
                    RopeStyle::Neox => {
                        Self::rope_row_neox(row, 0, heads, d, cos, sin);
                        Self::rope_row_neox(row, q_width, kv_heads, d, cos, sin);
                    }
                }
            });
    }
}

/// Closes, in one query's additive mask row, the keys at least `window` positions before the
/// query's position `q` (`keys` yields every key's position in mask order).
fn window_row<'a>(row: &mut [f32], q: u32, keys: impl Iterator<Item = &'a u32>, window: usize) {
    // A window wider than i64 closes nothing (a plain `as` cast would wrap and close all).
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    for (m, &k) in row.iter_mut().zip(keys) {
        if i64::from(q) - i64::from(k) >= window {
            *m = f32::NEG_INFINITY;
        }
    }
}

/// Rows `idx` of `x` (rows of `width`), in that order.
fn gather(x: &[f32], width: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * width);
    for &i in idx {
        out.extend_from_slice(&x[i * width..(i + 1) * width]);
    }
    out
}
