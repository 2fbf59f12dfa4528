//! The decoder forward pass through candle's ops, for any device and any [`WeightFormat`], after
//! candle-transformers' `quantized_llama` / `quantized_gemma3`, with what scoring needs: a KV
//! cache the caller owns, explicit positions and attention masks (for padded batches and shared
//! prefixes), and log-probabilities only at the positions asked for. On the CPU, attention runs
//! promptevo's fixed-order kernel ([`crate::model::attention`]).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::ends::Ends;
use super::forward::Architecture;
use super::spec::{block, Activation, DecoderSpec, ModelConfig, RopeStyle, WeightFormat};
use crate::error::{Error, Result};
use crate::model::attention::{attention, AttentionShape};
use crate::model::kv_cache::KvCache;
use crate::model::weights::WeightSource;

/// One block's weights on the candle path.
struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    /// `(b_q, b_k, b_v)`.
    bias: Option<(Tensor, Tensor, Tensor)>,
    /// `(q_norm, k_norm)`, each `head_dim` wide.
    qk_norm: Option<(Tensor, Tensor)>,
    wo: QMatMul,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
    post_ffn_norm: Option<Tensor>,
}

/// A decoder-only transformer whose blocks run through candle's ops.
pub(crate) struct CandleDecoder {
    spec: DecoderSpec,
    /// The token embedding and the output projection.
    ends: Ends,
    layers: Vec<Layer>,
    norm: Tensor,
    /// Per RoPE table, `(max_positions, head_dim / 2)`.
    cos: Vec<Tensor>,
    sin: Vec<Tensor>,
    max_positions: usize,
}

/// Grouped-query attention's keys or values, `(batch, kv_heads, seq, head_dim)`, repeated to
/// `kv_heads * n_rep` heads (as candle-transformers' `utils::repeat_kv`, by concatenation, which
/// avoids a strided copy; written here so that crate is not built for one function).
fn repeat_kv(xs: Tensor, n_rep: usize) -> candle_core::Result<Tensor> {
    if n_rep == 1 {
        return Ok(xs);
    }
    let (batch, kv_heads, seq, head_dim) = xs.dims4()?;
    Tensor::cat(&vec![&xs; n_rep], 2)?.reshape((batch, kv_heads * n_rep, seq, head_dim))
}

/// A matrix weight held as `format` says.
fn matmul_weight(t: QTensor, format: WeightFormat, device: &Device) -> Result<QMatMul> {
    let block_ok = t.shape().dims().last().is_some_and(|d| d % 32 == 0);
    Ok(match format {
        WeightFormat::Native => QMatMul::from_qtensor(t)?,
        // Int8 on the CPU is the native path; other devices hold Q8_0.
        WeightFormat::Q8_0 | WeightFormat::Int8 => match t.dtype() {
            GgmlDType::Q8_0 | GgmlDType::F32 => QMatMul::from_qtensor(t)?,
            _ if block_ok => {
                QMatMul::from_qtensor(QTensor::quantize(&t.dequantize(device)?, GgmlDType::Q8_0)?)?
            }
            _ => QMatMul::from_qtensor(t)?,
        },
        // Bf16 on the CPU is the native path; other devices hold f16.
        WeightFormat::F16 | WeightFormat::Bf16 => QMatMul::TensorF16(t.dequantize_f16(device)?),
        WeightFormat::F32 => QMatMul::Tensor(t.dequantize(device)?),
    })
}

impl CandleDecoder {
    /// Loads the blocks and the final norm `spec` names from `src` onto `device`, after `ends`.
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        spec: DecoderSpec,
        ends: Ends,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self> {
        let norm = src
            .tensor("output_norm.weight", device)?
            .dequantize(device)?;
        let mut layers = Vec::with_capacity(spec.config.n_layer);
        for i in 0..spec.config.n_layer {
            layers.push(Self::candle_layer(src, &spec, i, format, device)?);
        }
        let max_pos = spec.max_positions();
        let half = spec.config.head_dim / 2;
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for (c, s) in spec.rope_cos_sin() {
            cos.push(Tensor::from_vec(c, (max_pos, half), device)?);
            sin.push(Tensor::from_vec(s, (max_pos, half), device)?);
        }
        Ok(Self {
            spec,
            ends,
            layers,
            norm,
            cos,
            sin,
            max_positions: max_pos,
        })
    }

    /// Block `i`'s weights for the candle path.
    fn candle_layer(
        src: &mut dyn WeightSource,
        spec: &DecoderSpec,
        i: usize,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Layer> {
        let mut w = |name: &str| -> Result<QMatMul> {
            matmul_weight(
                src.tensor(&block(i, &format!("{name}.weight")), device)?,
                format,
                device,
            )
        };
        let (wq, wk, wv, wo) = (w("attn_q")?, w("attn_k")?, w("attn_v")?, w("attn_output")?);
        let (w_gate, w_up, w_down) = (w("ffn_gate")?, w("ffn_up")?, w("ffn_down")?);
        let mut vector = |name: &str| -> Result<Tensor> {
            Ok(src.tensor(&block(i, name), device)?.dequantize(device)?)
        };
        let bias = if spec.qkv_bias {
            Some((
                vector("attn_q.bias")?,
                vector("attn_k.bias")?,
                vector("attn_v.bias")?,
            ))
        } else {
            None
        };
        let qk_norm = if spec.qk_norm {
            Some((vector("attn_q_norm.weight")?, vector("attn_k_norm.weight")?))
        } else {
            None
        };
        let (post_attn_norm, post_ffn_norm) = if spec.post_norms {
            (
                Some(vector("post_attention_norm.weight")?),
                Some(vector("post_ffw_norm.weight")?),
            )
        } else {
            (None, None)
        };
        Ok(Layer {
            attn_norm: vector("attn_norm.weight")?,
            ffn_norm: vector("ffn_norm.weight")?,
            wq,
            wk,
            wv,
            bias,
            qk_norm,
            wo,
            post_attn_norm,
            w_gate,
            w_up,
            w_down,
            post_ffn_norm,
        })
    }

    /// `mask` (flattened `(b, s, kv)`) with the sliding window applied: keys at least `window`
    /// positions before the query closed, positions from `cache` (before this step) and
    /// `positions` (`b × s`).
    fn window_mask(
        mask: &[f32],
        positions: &[u32],
        cache: &KvCache,
        (b, s): (usize, usize),
        window: usize,
    ) -> Result<Vec<f32>> {
        let p = cache.len();
        let kv = p + s;
        let mut out = mask.to_vec();
        for r in 0..b {
            let cached = cache.positions(r);
            if cached.len() != p {
                return Err(Error::Internal(
                    "the KV cache lacks the positions of its tokens".into(),
                ));
            }
            let new = &positions[r * s..(r + 1) * s];
            for i in 0..s {
                let row = &mut out[(r * s + i) * kv..][..kv];
                for (m, &k) in row.iter_mut().zip(cached.iter().chain(new)) {
                    if i64::from(new[i]) - i64::from(k) >= i64::try_from(window).unwrap_or(i64::MAX)
                    {
                        *m = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Architecture for CandleDecoder {
    fn config(&self) -> &ModelConfig {
        &self.spec.config
    }

    fn device(&self) -> &Device {
        self.ends.device()
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.spec.config.n_layer)
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
        let spec = &self.spec;
        let cfg = &spec.config;
        let device = self.ends.device();
        let pos_vec: Vec<u32> = positions.flatten_all()?.to_vec1()?;
        if let Some(&bad) = pos_vec.iter().find(|&&q| q as usize >= self.max_positions) {
            return Err(Error::Internal(format!(
                "position {bad} is past the model's {} positions",
                self.max_positions
            )));
        }
        let flat_pos = positions.flatten_all()?;
        let half = cfg.head_dim / 2;
        let mut tables = Vec::with_capacity(self.cos.len());
        for (cos, sin) in self.cos.iter().zip(&self.sin) {
            tables.push((
                cos.index_select(&flat_pos, 0)?.reshape((b, s, half))?,
                sin.index_select(&flat_pos, 0)?.reshape((b, s, half))?,
            ));
        }
        let mut x = self.ends.embed(tokens)?;
        let scale = spec.attn_scale;
        let n_rep = cfg.n_head / cfg.n_kv_head;
        let q_width = spec.q_width();
        // The CPU attention reads the mask once as a plain slice; windowed layers read their
        // own copy with the window closed.
        let windowed = spec.window.filter(|_| spec.sliding.iter().any(|&w| w));
        let need_vec = device.is_cpu() || windowed.is_some();
        let mask_vec: Option<Vec<f32>> = if need_vec {
            Some(mask.flatten_all()?.to_vec1()?)
        } else {
            None
        };
        let swa_vec = match (windowed, &mask_vec) {
            (Some(w), Some(m)) => Some(Self::window_mask(m, &pos_vec, cache, (b, s), w)?),
            _ => None,
        };
        let swa_tensor = match &swa_vec {
            Some(v) if !device.is_cpu() => Some(Tensor::from_vec(v.clone(), mask.shape(), device)?),
            _ => None,
        };
        cache.push_positions(b, &pos_vec)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let sliding = spec.sliding[i] && windowed.is_some();
            let (cos, sin) = &tables[spec.layer_rope[i]];
            let residual = &x;
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps as f32)?;
            let project = |w: &QMatMul, bias: Option<&Tensor>| -> Result<Tensor> {
                let y = w.forward(&h)?;
                Ok(match bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                })
            };
            let bias = layer.bias.as_ref();
            let heads = |t: Tensor, n: usize, norm: Option<&Tensor>| -> Result<Tensor> {
                let t = t.reshape((b, s, n, cfg.head_dim))?;
                let t = match norm {
                    Some(w) => candle_nn::ops::rms_norm(&t.contiguous()?, w, cfg.rms_eps as f32)?,
                    None => t,
                };
                Ok(t.transpose(1, 2)?.contiguous()?)
            };
            let norms = layer.qk_norm.as_ref();
            let q = heads(
                project(&layer.wq, bias.map(|b| &b.0))?,
                cfg.n_head,
                norms.map(|n| &n.0),
            )?;
            let k = heads(
                project(&layer.wk, bias.map(|b| &b.1))?,
                cfg.n_kv_head,
                norms.map(|n| &n.1),
            )?;
            let v = heads(project(&layer.wv, bias.map(|b| &b.2))?, cfg.n_kv_head, None)?;
            let (q, k) = match spec.rope {
                RopeStyle::Interleaved => (
                    candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                    candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
                ),
                RopeStyle::Neox => (
                    candle_nn::rotary_emb::rope(&q, cos, sin)?,
                    candle_nn::rotary_emb::rope(&k, cos, sin)?,
                ),
            };
            let (k, v) = cache.append(i, k, v)?;
            let y = if device.is_cpu() {
                let shape = AttentionShape {
                    batch: b,
                    heads: cfg.n_head,
                    kv_heads: cfg.n_kv_head,
                    seq: s,
                    kv_len: k.dim(2)?,
                    head_dim: cfg.head_dim,
                };
                let flat =
                    |t: &Tensor| -> candle_core::Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
                let m = match (&swa_vec, sliding) {
                    (Some(w), true) => w.as_slice(),
                    _ => mask_vec.as_deref().unwrap_or(&[]),
                };
                let y = attention(&flat(&q)?, &flat(&k)?, &flat(&v)?, m, &shape, scale as f32);
                Tensor::from_vec(y, (b, s, q_width), device)?
            } else {
                let k = repeat_kv(k, n_rep)?;
                let v = repeat_kv(v, n_rep)?;
                let m = match (&swa_tensor, sliding) {
                    (Some(w), true) => w,
                    _ => mask,
                };
                let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(m)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                att.matmul(&v.contiguous()?)?
                    .transpose(1, 2)?
                    .reshape((b, s, q_width))?
            };
            let o = layer.wo.forward(&y)?;
            let o = match &layer.post_attn_norm {
                Some(w) => candle_nn::ops::rms_norm(&o, w, cfg.rms_eps as f32)?,
                None => o,
            };
            let x_attn = (residual + o)?;
            let h = candle_nn::ops::rms_norm(&x_attn, &layer.ffn_norm, cfg.rms_eps as f32)?;
            let gate = layer.w_gate.forward(&h)?;
            let gate = match spec.activation {
                Activation::Silu => candle_nn::ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
            };
            let mlp = layer.w_down.forward(&(gate * layer.w_up.forward(&h)?)?)?;
            let mlp = match &layer.post_ffn_norm {
                Some(w) => candle_nn::ops::rms_norm(&mlp, w, cfg.rms_eps as f32)?,
                None => mlp,
            };
            x = (x_attn + mlp)?;
        }
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            cfg.rms_eps as f32,
        )?)
    }

    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor> {
        self.ends.log_probs(hidden)
    }
}
