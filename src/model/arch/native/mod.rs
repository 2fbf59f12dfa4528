//! The decoder forward pass on the CPU for bf16 or int8 weights, without candle in the hot
//! loop: activations stay in `Vec<f32>` through each layer, the linears ([`Linear`]) run
//! promptevo's bf16 kernel or its int8 one (q/k/v fused into one product, gate/up into another:
//! each output column is still its own dot product in the same order), the element-wise steps ([`ops`]: RMS norms, RoPE, SiLU or GELU,
//! residual adds) are plain loops over rows on rayon's threads, and attention reads the CPU rows
//! of the [`KvCache`]. So every core runs one pool (rayon's) and candle's thread pool sits idle.
//! What differs between architectures (q/k norms, post-norms, biases, NEOX RoPE, sliding
//! windows) is a field of [`NativeLayer`] or [`NativeShape`]; for llama the steps are the ones
//! it always had.
//!
//! Every step computes a row from that row alone, in a fixed order, so a token's result does not
//! depend on the batch, the padding or the cache it was computed with; that is why this path,
//! and only this one, offers [`PackedForward`]: rows packed back to back without padding.

mod linear;
mod load;
mod ops;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use self::linear::Linear;
use self::ops::{
    add_in_place, gather, gelu_mul, rms_in_place, rms_norm, rope_row, rope_row_neox, silu_mul,
    window_row, ROWS_PER_TASK,
};
use super::ends::Ends;
use super::forward::{Architecture, PackedForward, PackedRow};
use super::spec::{Activation, ModelConfig, RopeStyle};
use crate::error::Result;
use crate::model::attention::{attention_ctx, KvSeg, QueryCtx};
use crate::model::kv_cache::{KvCache, RowKv};
use crate::model::profile::{Busy, Part};

/// One transformer block's weights.
pub(crate) struct NativeLayer {
    /// RMS-norm weight before attention.
    pub attn_norm: Vec<f32>,
    /// `[W_q; W_k; W_v]` stacked by output row.
    pub qkv: Linear,
    /// `[b_q; b_k; b_v]`, added after the product (qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head RMS-norm weights of queries and keys, before RoPE (gemma3, qwen3).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Attention output projection.
    pub wo: Linear,
    /// RMS-norm weight of the attention output before the residual add (gemma3).
    pub post_attn_norm: Option<Vec<f32>>,
    /// RMS-norm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// `[W_gate; W_up]` stacked by output row.
    pub gate_up: Linear,
    /// MLP down projection.
    pub down: Linear,
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
    fn qkv_steps(&self, native: &NativeDecoder, qkv: &mut [f32], positions: &[u32]) {
        let shape = &native.shape;
        let width = shape.qkv_width();
        if let Some(b) = &self.qkv_bias {
            qkv.par_chunks_mut(width)
                .with_min_len(ROWS_PER_TASK)
                .for_each(|row| {
                    let _busy = Busy::new(Part::Rope);
                    row.iter_mut().zip(b).for_each(|(x, b)| *x += b)
                });
        }
        if let Some((qn, kn)) = &self.qk_norm {
            let (q_width, d, eps) = (shape.heads * shape.head_dim, shape.head_dim, shape.eps);
            let kv_width = shape.kv_heads * d;
            qkv.par_chunks_mut(width)
                .with_min_len(ROWS_PER_TASK)
                .for_each(|row| {
                    let _busy = Busy::new(Part::Rope);
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

/// A decoder-only transformer on the native CPU path (bf16 or int8 linears).
pub(crate) struct NativeDecoder {
    /// Hyper-parameters.
    config: ModelConfig,
    /// The token embedding and the output projection.
    ends: Ends,
    /// Transformer blocks.
    layers: Vec<NativeLayer>,
    /// Final RMS-norm weight.
    norm: Vec<f32>,
    /// Per RoPE table: `cos(p · f_i)`, `max_positions × head_dim / 2`.
    cos: Vec<Vec<f32>>,
    /// Per RoPE table: `sin(p · f_i)`, same shape.
    sin: Vec<Vec<f32>>,
    /// Shapes.
    shape: NativeShape,
    /// Positions the RoPE tables cover.
    max_positions: usize,
}

impl NativeDecoder {
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
    fn run_padded(
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

    /// Runs packed rows of different lengths (no padding), each after the shared one-row
    /// `prefix` cache (or an empty one), which it leaves as is, and, in a ragged pass (`tails`
    /// given), then after its own one-row cache `tails[r]` (the row's earlier tokens after the
    /// prefix; empty at first), which is extended with the row's new keys and values: the step
    /// of many decodings at once, each row at its own length. `x` holds the token embeddings of
    /// every row back to back (`Σ len × hidden`), `positions` their positions, and row `r`'s
    /// `mask` is `len × (prefix.len() + tails[r].len() + len)` over the prefix, its tail and its
    /// own tokens. Returns the final-normed hidden states of the packed tokens listed in `keep`
    /// (ascending), in that order: the last layer runs its attention output and MLP for those
    /// tokens only. A token's result is the one [`NativeDecoder::run_padded`] gives it in any
    /// padded batch, with the prefix (and tail) as its cache.
    fn run_packed(
        &self,
        mut x: Vec<f32>,
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        mut tails: Option<&mut [KvCache]>,
        keep: &[usize],
    ) -> candle_core::Result<Vec<f32>> {
        let what = if tails.is_some() { "ragged" } else { "packed" };
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
        // Each row's tokens after the prefix from before this pass (none in a packed pass).
        let before: Vec<usize> = match &tails {
            Some(tails) => tails.iter().map(KvCache::len).collect(),
            None => vec![0; rows.len()],
        };
        if before.len() != rows.len()
            || x.len() != m * hidden
            || positions.len() != m
            || rows
                .iter()
                .zip(&before)
                .any(|(r, &t)| r.mask.len() != r.len * (p + t + r.len))
        {
            candle_core::bail!("{what} forward: inputs do not match the rows' lengths");
        }
        let tails_one_row = tails
            .as_deref()
            .is_some_and(|t| t.iter().any(|t| !t.is_empty() && t.batch() != 1));
        if p > 0 && prefix.batch() != 1 || tails_one_row {
            candle_core::bail!("{what} forward: the prefix and every tail must hold one row");
        }
        if keep.windows(2).any(|w| w[0] >= w[1]) || keep.last().is_some_and(|&t| t >= m) {
            candle_core::bail!("{what} forward: rows to keep must ascend and lie below {m}");
        }
        // Query t belongs to row owner[t], whose tokens start at start[owner[t]].
        let mut owner = Vec::with_capacity(m);
        let mut start = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            start.push(owner.len());
            owner.extend(std::iter::repeat_n(r, row.len));
        }
        // Each row's sliding-window mask, over the positions of the prefix, its tail and its own.
        let swa: Option<Vec<Vec<f32>>> = match self.window() {
            Some(w) => {
                let cached = prefix.positions(0);
                if cached.len() != p {
                    candle_core::bail!("{what} forward: the prefix cache lacks its positions");
                }
                let mut out = Vec::with_capacity(rows.len());
                for (r, (row, &s0)) in rows.iter().zip(&start).enumerate() {
                    let own = &positions[s0..s0 + row.len];
                    let earlier: &[u32] = match &tails {
                        Some(tails) => tails[r].positions(0),
                        None => &[],
                    };
                    if earlier.len() != before[r] {
                        candle_core::bail!("{what} forward: a tail cache lacks its positions");
                    }
                    let kv = p + before[r] + row.len;
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
        if let Some(tails) = tails.as_deref_mut() {
            for ((tail, row), &s0) in tails.iter_mut().zip(rows).zip(&start) {
                tail.push_positions(1, &positions[s0..s0 + row.len])?;
            }
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
                _ => candle_core::bail!("{what} forward: the prefix cache is not a CPU cache"),
            };
            let h = rms_norm(&x, &layer.attn_norm, self.shape.eps);
            let mut qkv = layer.qkv.matmul(&h, m);
            layer.qkv_steps(self, &mut qkv, positions);
            // A ragged pass keeps each row's new keys and values in its tail and attends over the
            // tail; a packed pass reads them from `qkv`.
            let tail_rows: Option<Vec<&RowKv>> = match tails.as_deref_mut() {
                Some(tails) => {
                    for ((tail, row), &s0) in tails.iter_mut().zip(rows).zip(&start) {
                        tail.append_rows(li, (1, row.len, kv_width), |_, i| {
                            let r = &qkv[(s0 + i) * qkv_width..][..qkv_width];
                            (&r[q_width..q_width + kv_width], &r[q_width + kv_width..])
                        })?;
                    }
                    let tails: &[KvCache] = tails;
                    let own = tails.iter().map(|t| match t.rows(li) {
                        Some([row]) => Ok(row),
                        _ => Err(candle_core::Error::Msg(
                            "ragged forward: a tail cache is not a one-row CPU cache".into(),
                        )),
                    });
                    Some(own.collect::<candle_core::Result<_>>()?)
                }
                None => None,
            };
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
                    let (row, i) = (&rows[r], t - start[r]);
                    let kv = p + before[r] + row.len;
                    let mask: &[f32] = match windowed {
                        Some(w) => &w[r],
                        None => row.mask,
                    };
                    let own = match &tail_rows {
                        Some(tail) => KvSeg {
                            k: &tail[r].k,
                            v: &tail[r].v,
                            stride: kv_width,
                            len: before[r] + row.len,
                        },
                        None => {
                            let base = start[r] * qkv_width + q_width;
                            KvSeg {
                                k: &qkv[base..],
                                v: &qkv[base + kv_width..],
                                stride: qkv_width,
                                len: row.len,
                            }
                        }
                    };
                    QueryCtx {
                        segs: [pre, own],
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
                let _busy = Busy::new(Part::Rope);
                let p = p as usize;
                let (cos, sin) = (&cos_t[p * half..][..half], &sin_t[p * half..][..half]);
                match rope {
                    RopeStyle::Interleaved => {
                        rope_row(row, 0, heads, d, cos, sin);
                        rope_row(row, q_width, kv_heads, d, cos, sin);
                    }
                    RopeStyle::Neox => {
                        rope_row_neox(row, 0, heads, d, cos, sin);
                        rope_row_neox(row, q_width, kv_heads, d, cos, sin);
                    }
                }
            });
    }
}

impl Architecture for NativeDecoder {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn device(&self) -> &Device {
        self.ends.device()
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layer)
    }

    fn max_positions(&self) -> usize {
        self.max_positions
    }

    fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, s) = tokens.dims2()?;
        let x: Vec<f32> = self.ends.embed(tokens)?.flatten_all()?.to_vec1()?;
        let positions: Vec<u32> = positions.flatten_all()?.to_vec1()?;
        let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
        let y = self.run_padded(x, &positions, &mask, (b, s), cache)?;
        let device = self.ends.device();
        Ok(Tensor::from_vec(y, (b, s, self.config.hidden), device)?)
    }

    fn packed(&self) -> Option<&dyn PackedForward> {
        Some(self)
    }

    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor> {
        self.ends.log_probs(hidden)
    }
}

impl PackedForward for NativeDecoder {
    fn forward_packed(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> Result<Vec<f32>> {
        let x = self.ends.embed_rows(tokens)?;
        Ok(self.run_packed(x, positions, rows, prefix, None, keep)?)
    }

    fn forward_ragged(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        tails: &mut [KvCache],
        keep: &[usize],
    ) -> Result<Vec<f32>> {
        let x = self.ends.embed_rows(tokens)?;
        Ok(self.run_packed(x, positions, rows, prefix, Some(tails), keep)?)
    }
}
