//! The llama architecture (Llama 2/3, SmolLM, ...) over GGUF quantised weights, after
//! candle-transformers' `quantized_llama`, with what scoring needs: a KV cache the caller owns,
//! explicit positions and attention masks (for padded batches and shared prefixes), and
//! log-probabilities only at the positions asked for.
//!
//! Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", 2023.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::attention::{attention, AttentionShape};
use super::gguf::GgufFile;
use super::kernels::Bf16Matrix;
use super::kv_cache::KvCache;
use super::native::{Native, NativeLayer, NativeShape, PackedRow};
use crate::error::{Error, Result};

/// How the matrix weights are held in memory for the forward pass.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum WeightFormat {
    /// As stored in the file.
    Native,
    /// Re-quantised to Q8_0 at load (candle has SIMD dot products for Q8_0; not for Q4_1/Q5_x).
    Q8_0,
    /// Dequantised to f16 (matrix-matrix products through gemm).
    F16,
    /// Dequantised to f32 (matrix-matrix products through gemm; the most memory).
    F32,
    /// Rounded to bf16 for promptevo's own CPU kernel (AVX-512 BF16 dot products where the CPU
    /// has them); other devices use f16.
    Bf16,
}

/// Hyper-parameters read from GGUF metadata.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Longest context the model was trained for.
    pub context_length: usize,
    /// RMS-norm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
}

struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// A llama-architecture model ready for forward passes.
pub struct Llama {
    config: LlamaConfig,
    embed: Arc<QTensor>,
    /// The candle path's blocks (empty when `native` runs the model).
    layers: Vec<Layer>,
    /// The CPU bf16 path: weights and tables for [`Native::forward`].
    native: Option<Native>,
    norm: Tensor,
    lm_head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

fn matmul_weight(t: QTensor, format: WeightFormat, device: &Device) -> Result<QMatMul> {
    let block_ok = t.shape().dims().last().is_some_and(|d| d % 32 == 0);
    Ok(match format {
        WeightFormat::Native => QMatMul::from_qtensor(t)?,
        WeightFormat::Q8_0 => match t.dtype() {
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

/// Dequantised f32 values of a stored tensor.
fn values(gguf: &mut GgufFile, name: &str, device: &Device) -> Result<Vec<f32>> {
    Ok(gguf
        .tensor(name, device)?
        .dequantize(device)?
        .flatten_all()?
        .to_vec1()?)
}

/// Rows of the named matrices stacked (each `? × cols`) and packed as one bf16 matrix.
fn stacked_bf16(
    gguf: &mut GgufFile,
    names: &[String],
    cols: usize,
    device: &Device,
) -> Result<Bf16Matrix> {
    let mut all = Vec::new();
    for name in names {
        let v = values(gguf, name, device)?;
        if cols == 0 || v.len() % cols != 0 {
            return Err(Error::model(
                gguf.path(),
                format!("{name} is not a matrix of {cols} columns"),
            ));
        }
        all.extend(v);
    }
    let rows = all.len() / cols.max(1);
    Ok(Bf16Matrix::from_f32(&all, rows, cols))
}

/// The native path's weights for every block.
fn native_layers(
    gguf: &mut GgufFile,
    config: &LlamaConfig,
    device: &Device,
) -> Result<Vec<NativeLayer>> {
    let hidden = config.hidden;
    (0..config.n_layer)
        .map(|i| {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let ff_rows = gguf.tensor(&n("ffn_down"), device)?.shape().dims2()?.1;
            Ok(NativeLayer {
                attn_norm: values(gguf, &n("attn_norm"), device)?,
                qkv: stacked_bf16(
                    gguf,
                    &[n("attn_q"), n("attn_k"), n("attn_v")],
                    hidden,
                    device,
                )?,
                wo: stacked_bf16(gguf, &[n("attn_output")], hidden, device)?,
                ffn_norm: values(gguf, &n("ffn_norm"), device)?,
                gate_up: stacked_bf16(gguf, &[n("ffn_gate"), n("ffn_up")], hidden, device)?,
                down: stacked_bf16(gguf, &[n("ffn_down")], ff_rows, device)?,
            })
        })
        .collect()
}

/// Checks every tensor the forward pass reads against the metadata's shape before any is
/// loaded, so that a malformed file is an error naming the tensor instead of a slice panic or a
/// shape error deep in a forward pass. Returns the vocabulary size.
fn check_shapes(gguf: &GgufFile, cfg: &LlamaConfig) -> std::result::Result<usize, String> {
    let dims = |name: &str| -> std::result::Result<&[usize], String> {
        gguf.tensor_dims(name)
            .ok_or_else(|| format!("tensor '{name}' is missing"))
    };
    let want = |name: &str, shape: &[usize]| -> std::result::Result<(), String> {
        let got = dims(name)?;
        if got != shape {
            return Err(format!(
                "tensor '{name}' has shape {got:?}, the metadata implies {shape:?}"
            ));
        }
        Ok(())
    };
    // Nine tensors per block: a block count beyond what the file holds is refused before any
    // per-block loop or allocation.
    if cfg.n_layer == 0 || cfg.n_layer > gguf.tensor_count() / 9 {
        return Err(format!(
            "block_count is {} but the file holds {} tensors (9 per block)",
            cfg.n_layer,
            gguf.tensor_count()
        ));
    }
    let (h, kv) = (cfg.hidden, cfg.n_kv_head * cfg.head_dim);
    let vocab = match dims("token_embd.weight")? {
        &[v, c] if c == h && v > 0 => v,
        got => {
            return Err(format!(
                "tensor 'token_embd.weight' has shape {got:?}, want [vocab, {h}]"
            ))
        }
    };
    if gguf.has_tensor("output.weight") {
        want("output.weight", &[vocab, h])?;
    }
    want("output_norm.weight", &[h])?;
    for i in 0..cfg.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let ff = match dims(&n("ffn_gate"))? {
            &[f, c] if c == h && f > 0 => f,
            got => {
                return Err(format!(
                    "tensor '{}' has shape {got:?}, want [ffn, {h}]",
                    n("ffn_gate")
                ))
            }
        };
        want(&n("attn_norm"), &[h])?;
        want(&n("ffn_norm"), &[h])?;
        want(&n("attn_q"), &[h, h])?;
        want(&n("attn_k"), &[kv, h])?;
        want(&n("attn_v"), &[kv, h])?;
        want(&n("attn_output"), &[h, h])?;
        want(&n("ffn_up"), &[ff, h])?;
        want(&n("ffn_down"), &[h, ff])?;
    }
    Ok(vocab)
}

impl Llama {
    /// Loads a llama-architecture GGUF model onto `device`.
    pub fn load(gguf: &mut GgufFile, format: WeightFormat, device: &Device) -> Result<Self> {
        let arch = gguf.architecture()?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_head = gguf.usize(&key("attention.head_count"))?;
        let hidden = gguf.usize(&key("embedding_length"))?;
        let path = gguf.path().to_path_buf();
        let bad_shape = |what: String| {
            Error::model(
                &path,
                format!(
                    "{what}; the file is not a valid llama model: download or convert it again"
                ),
            )
        };
        if n_head == 0 {
            return Err(bad_shape(format!("{arch}.attention.head_count is 0")));
        }
        let head_dim = gguf
            .usize_opt(&key("rope.dimension_count"))?
            .unwrap_or(hidden / n_head);
        let rope_base = gguf.f32_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        let config = LlamaConfig {
            n_layer: gguf.usize(&key("block_count"))?,
            n_head,
            n_kv_head: gguf
                .usize_opt(&key("attention.head_count_kv"))?
                .unwrap_or(n_head),
            hidden,
            head_dim,
            vocab: 0,
            context_length: gguf.usize_opt(&key("context_length"))?.unwrap_or(2048),
            rms_eps: gguf.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_base,
        };
        if config.n_kv_head == 0
            || !config.n_head.is_multiple_of(config.n_kv_head)
            || config.head_dim.checked_mul(config.n_head) != Some(config.hidden)
            || !config.head_dim.is_multiple_of(2)
        {
            return Err(bad_shape(format!(
                "inconsistent attention shape in metadata: {config:?}"
            )));
        }
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(bad_shape(format!(
                "{arch}.rope.freq_base is {rope_base}, not a positive number"
            )));
        }
        let vocab = check_shapes(gguf, &config).map_err(bad_shape)?;
        let embed = Arc::new(gguf.tensor("token_embd.weight", device)?);
        let lm_head = if gguf.has_tensor("output.weight") {
            QMatMul::from_qtensor(gguf.tensor("output.weight", device)?)?
        } else {
            // Tied embeddings (SmolLM2): the output projection is the embedding matrix.
            QMatMul::from_arc(embed.clone())?
        };
        let norm = gguf
            .tensor("output_norm.weight", device)?
            .dequantize(device)?;
        let native_path = format == WeightFormat::Bf16 && device.is_cpu();
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            if native_path {
                break;
            }
            let mut w = |name: &str| -> Result<QMatMul> {
                matmul_weight(
                    gguf.tensor(&format!("blk.{i}.{name}.weight"), device)?,
                    format,
                    device,
                )
            };
            let (wq, wk, wv, wo) = (w("attn_q")?, w("attn_k")?, w("attn_v")?, w("attn_output")?);
            let (w_gate, w_up, w_down) = (w("ffn_gate")?, w("ffn_up")?, w("ffn_down")?);
            layers.push(Layer {
                attn_norm: gguf
                    .tensor(&format!("blk.{i}.attn_norm.weight"), device)?
                    .dequantize(device)?,
                ffn_norm: gguf
                    .tensor(&format!("blk.{i}.ffn_norm.weight"), device)?
                    .dequantize(device)?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        let max_pos = config.context_length.min(32_768);
        let half = config.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_base
                    .powf(2.0 * i as f32 / config.head_dim as f32)
            })
            .collect();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let native = if native_path {
            Some(Native {
                layers: native_layers(gguf, &config, device)?,
                norm: norm.flatten_all()?.to_vec1()?,
                cos: cos.clone(),
                sin: sin.clone(),
                shape: NativeShape {
                    hidden: config.hidden,
                    heads: config.n_head,
                    kv_heads: config.n_kv_head,
                    head_dim: config.head_dim,
                    eps: config.rms_eps as f32,
                },
            })
        } else {
            None
        };
        let cos = Tensor::from_vec(cos, (max_pos, half), device)?;
        let sin = Tensor::from_vec(sin, (max_pos, half), device)?;
        Ok(Self {
            config: LlamaConfig { vocab, ..config },
            embed,
            layers,
            native,
            norm,
            lm_head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layer)
    }

    /// Longest sequence (cache + new tokens) the position tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// Runs `tokens` (`(batch, seq)` u32) through the transformer after what `cache` holds, and
    /// returns the final-normed hidden states `(batch, seq, hidden)`.
    ///
    /// `positions` (`(batch, seq)` u32) are the RoPE positions of the new tokens; `mask`
    /// (`(batch, 1, seq, cache.len() + seq)` f32) is added to the attention scores: 0 where a
    /// query may attend to a key, `-inf` where not. The cache is extended in place.
    pub fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, s) = tokens.dims2()?;
        let cfg = &self.config;
        if let Some(native) = &self.native {
            let x: Vec<f32> = self.embed.embedding(tokens)?.flatten_all()?.to_vec1()?;
            let positions: Vec<u32> = positions.flatten_all()?.to_vec1()?;
            let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
            let y = native.forward(x, &positions, &mask, (b, s), cache)?;
            return Ok(Tensor::from_vec(y, (b, s, cfg.hidden), &self.device)?);
        }
        let flat_pos = positions.flatten_all()?;
        let half = cfg.head_dim / 2;
        let cos = self.cos.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let sin = self.sin.index_select(&flat_pos, 0)?.reshape((b, s, half))?;
        let mut x = self.embed.embedding(tokens)?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let n_rep = cfg.n_head / cfg.n_kv_head;
        // The CPU attention reads the mask once as a plain slice.
        let mask_cpu: Option<Vec<f32>> = if self.device.is_cpu() {
            Some(mask.flatten_all()?.to_vec1()?)
        } else {
            None
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let residual = &x;
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps as f32)?;
            let q = layer
                .wq
                .forward(&h)?
                .reshape((b, s, cfg.n_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .wk
                .forward(&h)?
                .reshape((b, s, cfg.n_kv_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .wv
                .forward(&h)?
                .reshape((b, s, cfg.n_kv_head, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            // GGUF llama weights are permuted for interleaved RoPE (llama.cpp's ROPE_TYPE_NORM).
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = cache.append(i, k, v)?;
            let y = if self.device.is_cpu() {
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
                let y = attention(
                    &flat(&q)?,
                    &flat(&k)?,
                    &flat(&v)?,
                    mask_cpu.as_deref().unwrap_or(&[]),
                    &shape,
                    scale as f32,
                );
                Tensor::from_vec(y, (b, s, cfg.hidden), &self.device)?
            } else {
                let k = candle_transformers::utils::repeat_kv(k, n_rep)?;
                let v = candle_transformers::utils::repeat_kv(v, n_rep)?;
                let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                att.matmul(&v.contiguous()?)?
                    .transpose(1, 2)?
                    .reshape((b, s, cfg.hidden))?
            };
            let x_attn = (residual + layer.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x_attn, &layer.ffn_norm, cfg.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let mlp = layer.w_down.forward(&(gate * layer.w_up.forward(&h)?)?)?;
            x = (x_attn + mlp)?;
        }
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            self.config.rms_eps as f32,
        )?)
    }

    /// Whether [`Llama::forward_packed`] is available (the native CPU bf16 path).
    pub fn packs(&self) -> bool {
        self.native.is_some()
    }

    /// Runs rows of different lengths packed back to back (no padding) after a shared one-row
    /// `prefix` cache, which is left as is; returns the final-normed hidden states of the packed
    /// tokens `keep` (ascending indices into `tokens`; `keep.len() × hidden`). `tokens` and
    /// `positions` hold every row's tokens in order; see [`PackedRow`] for the masks. Each token
    /// gets exactly the result [`Llama::forward`] gives it in a padded batch. Only when
    /// [`Llama::packs`].
    pub(crate) fn forward_packed(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> Result<Vec<f32>> {
        let Some(native) = &self.native else {
            return Err(Error::Usage(
                "packed forward passes need --weights bf16 on the CPU".into(),
            ));
        };
        let ids = Tensor::new(tokens, &self.device)?;
        let x: Vec<f32> = self.embed.embedding(&ids)?.flatten_all()?.to_vec1()?;
        Ok(native.forward_packed(x, positions, rows, prefix, keep)?)
    }

    /// Log-probabilities of the next token after every prefix of `ids` (`ids.len() × vocab`), from
    /// one plain causal pass with a fresh cache: the reference the batched engine must agree with.
    pub fn causal_log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let s = ids.len();
        let tokens = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let positions: Vec<u32> = (0..s as u32).collect();
        let positions = Tensor::new(positions.as_slice(), &self.device)?.unsqueeze(0)?;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, s, s), &self.device)?;
        let hidden = self
            .forward(&tokens, &positions, &mask, &mut self.new_cache())?
            .squeeze(0)?;
        Ok(self.log_probs(&hidden)?.to_vec2()?)
    }

    /// Log-probabilities over the vocabulary (`(n, vocab)`, f32) for hidden states `(n, hidden)`.
    pub fn log_probs(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(hidden)?.to_dtype(DType::F32)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}
