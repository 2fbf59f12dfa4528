//! The pre-norm decoder-only transformer every architecture here is an instance of, over
//! quantised weights, after candle-transformers' `quantized_llama` / `quantized_gemma3`, with
//! what scoring needs: a KV cache the caller owns, explicit positions and attention masks (for
//! padded batches and shared prefixes), and log-probabilities only at the positions asked for.
//!
//! A [`DecoderSpec`] says how an architecture departs from plain llama (Touvron et al., 2023):
//! NEOX RoPE, per-layer RoPE bases and sliding windows (Gemma 3), q/k RMS norms (Gemma 3,
//! Qwen 3), post-attention and post-MLP norms and a scaled embedding (Gemma 3), GELU-tanh
//! instead of SiLU, q/k/v biases (Qwen 2), final logit soft-capping. Two forward paths read it:
//! candle's ops (any device, any [`WeightFormat`]) and the native CPU bf16 path
//! ([`super::super::native`]), whose results do not depend on batch, padding or cache.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::{Architecture, ModelConfig, PackedRow};
use crate::error::{Error, Result};
use crate::model::attention::{attention, AttentionShape};
use crate::model::kernels::{Bf16Matrix, Q8Matrix};
use crate::model::kv_cache::KvCache;
use crate::model::native::{Native, NativeLayer, NativeShape};
use crate::model::weights::WeightSource;

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

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// Dimension `2i` with `2i + 1` (llama.cpp's `LLAMA_ROPE_TYPE_NORM`; GGUF llama weights are
    /// permuted for it).
    Interleaved,
    /// Dimension `i` with `i + d/2` (`LLAMA_ROPE_TYPE_NEOX`: Gemma, Qwen).
    Neox,
}

/// The gate activation of the MLP (`act(gate) · up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// SiLU (SwiGLU: llama, Qwen).
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma).
    GeluTanh,
}

/// What an architecture is, for the shared forward.
#[derive(Clone, Debug)]
pub(crate) struct DecoderSpec {
    /// Hyper-parameters (`vocab` is filled in from the embedding matrix at load).
    pub config: ModelConfig,
    /// RoPE layout.
    pub rope: RopeStyle,
    /// Each RoPE table's base and linear position scale (1 for none; Gemma 3's global layers
    /// of the larger models use 1/8).
    pub rope_tables: Vec<(f32, f32)>,
    /// Per RoPE dimension pair, a divisor of its frequency (Llama 3's `rope_freqs`), if any.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Per layer: its RoPE table (an index into `rope_tables`).
    pub layer_rope: Vec<usize>,
    /// Per layer: whether it attends within the sliding window only.
    pub sliding: Vec<bool>,
    /// The sliding window (a query at position `q` sees keys at `k > q - window`).
    pub window: Option<usize>,
    /// Factor of the attention scores.
    pub attn_scale: f64,
    /// Factor of the token embeddings (Gemma: `sqrt(hidden)`).
    pub embed_scale: Option<f32>,
    /// MLP gate activation.
    pub activation: Activation,
    /// Per-head RMS norms of queries and keys (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMS norms of the attention and MLP outputs (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Biases of the q/k/v projections (`attn_q.bias`, ...).
    pub qkv_bias: bool,
    /// Final logit soft-capping: `c · tanh(logits / c)`.
    pub softcap: Option<f32>,
}

impl DecoderSpec {
    /// Plain llama: interleaved RoPE of one base, SiLU, no extra norms or biases.
    pub(crate) fn llama(config: ModelConfig) -> Self {
        let n = config.n_layer;
        Self {
            rope: RopeStyle::Interleaved,
            rope_tables: vec![(config.rope_base, 1.0)],
            rope_freq_factors: None,
            layer_rope: vec![0; n],
            sliding: vec![false; n],
            window: None,
            attn_scale: 1.0 / (config.head_dim as f64).sqrt(),
            embed_scale: None,
            activation: Activation::Silu,
            qk_norm: false,
            post_norms: false,
            qkv_bias: false,
            softcap: None,
            config,
        }
    }

    /// Width of all query heads together.
    fn q_width(&self) -> usize {
        self.config.n_head * self.config.head_dim
    }

    /// Stored tensors per block.
    fn tensors_per_block(&self) -> usize {
        9 + 2 * usize::from(self.qk_norm)
            + 2 * usize::from(self.post_norms)
            + 3 * usize::from(self.qkv_bias)
    }
}

/// Reads the hyper-parameters every architecture shares from GGUF metadata (`{arch}.*` keys),
/// checked for consistency; `head_dim` from `attention.key_length`, else
/// `rope.dimension_count`, else `hidden / n_head`.
pub(crate) fn read_config(gguf: &crate::model::gguf::GgufFile, arch: &str) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let n_head = gguf.usize(&key("attention.head_count"))?;
    let hidden = gguf.usize(&key("embedding_length"))?;
    if n_head == 0 {
        return Err(bad_file(
            gguf.path(),
            arch,
            format!("{arch}.attention.head_count is 0"),
        ));
    }
    let head_dim = match gguf.usize_opt(&key("attention.key_length"))? {
        Some(d) => d,
        None => gguf
            .usize_opt(&key("rope.dimension_count"))?
            .unwrap_or(hidden / n_head),
    };
    let rope_base = gguf.f32_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let n_layer = gguf.usize(&key("block_count"))?;
    check_block_count(
        n_layer,
        gguf.tensor_count(),
        gguf.path(),
        arch,
        &key("block_count"),
    )?;
    let config = ModelConfig {
        architecture: arch.to_string(),
        n_layer,
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
    check_config(&config, gguf.path(), arch)?;
    Ok(config)
}

/// Reads the hyper-parameters every architecture shares from a Hugging Face `config.json`.
pub(crate) fn read_hf_config(
    cfg: &crate::model::safetensors::HfConfig,
    arch: &str,
) -> Result<ModelConfig> {
    let n_head = cfg.usize("num_attention_heads")?;
    let hidden = cfg.usize("hidden_size")?;
    let path = cfg.dir.join("config.json");
    if n_head == 0 || hidden == 0 {
        return Err(bad_file(
            &path,
            arch,
            "num_attention_heads or hidden_size is 0".into(),
        ));
    }
    let config = ModelConfig {
        architecture: arch.to_string(),
        n_layer: cfg.usize("num_hidden_layers")?,
        n_head,
        n_kv_head: cfg.usize_opt("num_key_value_heads").unwrap_or(n_head),
        hidden,
        head_dim: cfg.usize_opt("head_dim").unwrap_or(hidden / n_head),
        vocab: 0,
        context_length: cfg.usize_opt("max_position_embeddings").unwrap_or(2048),
        rms_eps: cfg.f64_opt("rms_norm_eps").unwrap_or(1e-6),
        rope_base: cfg.f64_opt("rope_theta").unwrap_or(10_000.0) as f32,
    };
    check_config(&config, &path, arch)?;
    Ok(config)
}

/// Refuses a block count (`key`) of 0 or more than `tensors` stored tensors can hold (9 per
/// block at least), before any per-layer table is sized by it.
pub(crate) fn check_block_count(
    n_layer: usize,
    tensors: usize,
    path: &std::path::Path,
    arch: &str,
    key: &str,
) -> Result<()> {
    if n_layer == 0 || n_layer > tensors / 9 {
        return Err(bad_file(
            path,
            arch,
            format!("{key} is {n_layer} but there are {tensors} tensors (9 per block)"),
        ));
    }
    Ok(())
}

/// Most blocks a model may declare (the largest open models have about 130): a count past it
/// is a damaged or hostile file, refused before any per-layer table is sized by it.
const MAX_LAYERS: usize = 1024;

/// The consistency checks both metadata readers share: one error naming `path` and the value.
fn check_config(config: &ModelConfig, path: &std::path::Path, arch: &str) -> Result<()> {
    let width = |heads: usize| heads.checked_mul(config.head_dim);
    if config.n_kv_head == 0
        || !config.n_head.is_multiple_of(config.n_kv_head)
        || config.head_dim == 0
        || !config.head_dim.is_multiple_of(2)
        || config.hidden == 0
        || width(config.n_head).is_none()
        || width(config.n_kv_head).is_none()
    {
        return Err(bad_file(
            path,
            arch,
            format!("inconsistent attention shape in metadata: {config:?}"),
        ));
    }
    if config.n_layer == 0 || config.n_layer > MAX_LAYERS {
        return Err(bad_file(
            path,
            arch,
            format!(
                "the model declares {} blocks; a model has 1 to {MAX_LAYERS}",
                config.n_layer
            ),
        ));
    }
    require_positive(
        f64::from(config.rope_base),
        "the RoPE base (rope.freq_base / rope_theta)",
        path,
        arch,
    )?;
    if !(config.rms_eps.is_finite() && config.rms_eps >= 0.0) {
        return Err(bad_file(
            path,
            arch,
            format!(
                "the RMS-norm epsilon is {}, not a number >= 0",
                config.rms_eps
            ),
        ));
    }
    Ok(())
}

/// Refuses `value` (named `what` in the error) unless it is a finite number above 0.
pub(crate) fn require_positive(
    value: f64,
    what: &str,
    path: &std::path::Path,
    arch: &str,
) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(bad_file(
        path,
        arch,
        format!("{what} is {value}, not a positive number"),
    ))
}

/// Refuses RoPE scaling the decoder would not apply: GGUF `{arch}.rope.scaling.type` other than
/// `none` (or linear by 1), so that no file runs with silently wrong positions. Llama 3's
/// `rope_freqs` and Gemma 3's linear scaling are read by their own architectures.
pub(crate) fn refuse_gguf_rope_scaling(
    gguf: &crate::model::gguf::GgufFile,
    arch: &str,
) -> Result<()> {
    let kind = match gguf.get(&format!("{arch}.rope.scaling.type")) {
        None => return Ok(()),
        Some(candle_core::quantized::gguf_file::Value::String(t)) => t.clone(),
        Some(other) => format!("{other:?}"),
    };
    let factor = gguf.f32_opt(&format!("{arch}.rope.scaling.factor"))?;
    let harmless = kind == "none" || (kind == "linear" && factor.is_none_or(|f| f == 1.0));
    if harmless {
        return Ok(());
    }
    Err(bad_file(
        gguf.path(),
        arch,
        format!("{arch}.rope.scaling.type is '{kind}', which promptevo does not apply to {arch} models; use a file converted without RoPE scaling"),
    ))
}

/// Refuses a Hugging Face `rope_scaling` other than none/default, for architectures whose
/// decoder applies none (the llama and Gemma 3 readers handle theirs).
pub(crate) fn refuse_hf_rope_scaling(
    cfg: &crate::model::safetensors::HfConfig,
    arch: &str,
) -> Result<()> {
    let Some((_, kind)) = cfg.rope_scaling() else {
        return Ok(());
    };
    let kind = kind.unwrap_or("unnamed");
    if kind == "default" || kind == "none" {
        return Ok(());
    }
    Err(bad_file(
        &cfg.dir.join("config.json"),
        arch,
        format!("rope_scaling type '{kind}' is not supported for {arch}; remove rope_scaling from config.json to run the model at its trained context"),
    ))
}

/// An error for a file whose metadata or tensors do not make a valid model of `arch`.
pub(crate) fn bad_file(path: &std::path::Path, arch: &str, what: String) -> Error {
    Error::model(
        path,
        format!("{what}; the file is not a valid {arch} model: download or convert it again"),
    )
}

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

/// A decoder-only transformer ready for forward passes.
pub(crate) struct Decoder {
    spec: DecoderSpec,
    embed: Arc<QTensor>,
    /// The candle path's blocks (empty when `native` runs the model).
    layers: Vec<Layer>,
    /// The CPU bf16 path: weights and tables for [`Native::forward`].
    native: Option<Native>,
    norm: Tensor,
    lm_head: QMatMul,
    /// The output projection for [`Q8Matrix`] when it is Q8_0 on a CPU that runs that kernel
    /// (the same bits as `lm_head`, faster); None: `lm_head` runs.
    lm_head_q8: Option<Q8Matrix>,
    /// Per RoPE table, `(max_positions, head_dim / 2)` (the candle path only).
    cos: Vec<Tensor>,
    sin: Vec<Tensor>,
    max_positions: usize,
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
fn values(src: &mut dyn WeightSource, name: &str, device: &Device) -> Result<Vec<f32>> {
    Ok(src
        .tensor(name, device)?
        .dequantize(device)?
        .flatten_all()?
        .to_vec1()?)
}

/// Rows of the named matrices stacked (each `? × cols`) and packed as one bf16 matrix.
fn stacked_bf16(
    src: &mut dyn WeightSource,
    names: &[String],
    cols: usize,
    device: &Device,
) -> Result<Bf16Matrix> {
    let mut all = Vec::new();
    for name in names {
        let v = values(src, name, device)?;
        if cols == 0 || v.len() % cols != 0 {
            return Err(Error::model(
                src.path(),
                format!("{name} is not a matrix of {cols} columns"),
            ));
        }
        all.extend(v);
    }
    let rows = all.len() / cols.max(1);
    Ok(Bf16Matrix::from_f32(&all, rows, cols))
}

/// Name of block `i`'s tensor `role` (`attn_q.weight`, ...).
fn block(i: usize, role: &str) -> String {
    format!("blk.{i}.{role}")
}

/// The native path's weights for every block.
fn native_layers(
    src: &mut dyn WeightSource,
    spec: &DecoderSpec,
    device: &Device,
) -> Result<Vec<NativeLayer>> {
    let hidden = spec.config.hidden;
    (0..spec.config.n_layer)
        .map(|i| {
            let n = |s: &str| block(i, &format!("{s}.weight"));
            let ff_rows = src
                .tensor_dims(&n("ffn_down"))
                .and_then(|d| d.get(1).copied())
                .unwrap_or(0);
            let qkv_bias = if spec.qkv_bias {
                let mut b = values(src, &block(i, "attn_q.bias"), device)?;
                b.extend(values(src, &block(i, "attn_k.bias"), device)?);
                b.extend(values(src, &block(i, "attn_v.bias"), device)?);
                Some(b)
            } else {
                None
            };
            let qk_norm = if spec.qk_norm {
                Some((
                    values(src, &n("attn_q_norm"), device)?,
                    values(src, &n("attn_k_norm"), device)?,
                ))
            } else {
                None
            };
            let post = |src: &mut dyn WeightSource, role: &str| -> Result<Option<Vec<f32>>> {
                if spec.post_norms {
                    values(src, &n(role), device).map(Some)
                } else {
                    Ok(None)
                }
            };
            Ok(NativeLayer {
                attn_norm: values(src, &n("attn_norm"), device)?,
                qkv: stacked_bf16(
                    src,
                    &[n("attn_q"), n("attn_k"), n("attn_v")],
                    hidden,
                    device,
                )?,
                qkv_bias,
                qk_norm,
                wo: stacked_bf16(src, &[n("attn_output")], spec.q_width(), device)?,
                post_attn_norm: post(src, "post_attention_norm")?,
                ffn_norm: values(src, &n("ffn_norm"), device)?,
                gate_up: stacked_bf16(src, &[n("ffn_gate"), n("ffn_up")], hidden, device)?,
                down: stacked_bf16(src, &[n("ffn_down")], ff_rows, device)?,
                post_ffn_norm: post(src, "post_ffw_norm")?,
                rope: spec.layer_rope[i],
                sliding: spec.sliding[i],
            })
        })
        .collect()
}

/// What is wrong with a file's tensors (see [`check_shapes`]); the caller adds the file and
/// the fix.
#[derive(Debug, thiserror::Error)]
enum ShapeError {
    /// A tensor the forward pass reads is not in the file.
    #[error("tensor '{name}' is missing")]
    Missing { name: String },
    /// A tensor's shape differs from what the metadata implies.
    #[error("tensor '{name}' has shape {got:?}, the metadata implies {implied:?}")]
    Implied {
        name: String,
        got: Vec<usize>,
        implied: Vec<usize>,
    },
    /// A tensor that sets a size (vocabulary, feed-forward width) has the wrong form.
    #[error("tensor '{name}' has shape {got:?}, want {want}")]
    Form {
        name: String,
        got: Vec<usize>,
        /// The form wanted, e.g. `[vocab, 576]`.
        want: String,
    },
    /// The block count is zero or more than the file's tensors can hold.
    #[error(
        "block_count is {blocks} but the file holds {tensors} tensors ({per_block} per block)"
    )]
    BlockCount {
        blocks: usize,
        tensors: usize,
        per_block: usize,
    },
}

/// Checks every tensor the forward pass reads against the metadata's shape before any is
/// loaded, so that a malformed file is an error naming the tensor instead of a slice panic or a
/// shape error deep in a forward pass. Returns the vocabulary size.
fn check_shapes(
    src: &dyn WeightSource,
    spec: &DecoderSpec,
) -> std::result::Result<usize, ShapeError> {
    let cfg = &spec.config;
    let dims = |name: &str| -> std::result::Result<Vec<usize>, ShapeError> {
        src.tensor_dims(name).ok_or_else(|| ShapeError::Missing {
            name: name.to_string(),
        })
    };
    let want = |name: &str, shape: &[usize]| -> std::result::Result<(), ShapeError> {
        let got = dims(name)?;
        if got != shape {
            return Err(ShapeError::Implied {
                name: name.to_string(),
                got,
                implied: shape.to_vec(),
            });
        }
        Ok(())
    };
    // A block count beyond what the file holds is refused before any per-block loop or
    // allocation.
    let per_block = spec.tensors_per_block();
    if cfg.n_layer == 0 || cfg.n_layer > src.tensor_count() / per_block {
        return Err(ShapeError::BlockCount {
            blocks: cfg.n_layer,
            tensors: src.tensor_count(),
            per_block,
        });
    }
    let (h, q, kv, d) = (
        cfg.hidden,
        spec.q_width(),
        cfg.n_kv_head * cfg.head_dim,
        cfg.head_dim,
    );
    let vocab = match dims("token_embd.weight")?.as_slice() {
        &[v, c] if c == h && v > 0 => v,
        got => {
            return Err(ShapeError::Form {
                name: "token_embd.weight".into(),
                got: got.to_vec(),
                want: format!("[vocab, {h}]"),
            })
        }
    };
    if src.has_tensor("output.weight") {
        want("output.weight", &[vocab, h])?;
    }
    want("output_norm.weight", &[h])?;
    for i in 0..cfg.n_layer {
        let n = |s: &str| block(i, &format!("{s}.weight"));
        let ff = match dims(&n("ffn_gate"))?.as_slice() {
            &[f, c] if c == h && f > 0 => f,
            got => {
                return Err(ShapeError::Form {
                    name: n("ffn_gate"),
                    got: got.to_vec(),
                    want: format!("[ffn, {h}]"),
                })
            }
        };
        want(&n("attn_norm"), &[h])?;
        want(&n("ffn_norm"), &[h])?;
        want(&n("attn_q"), &[q, h])?;
        want(&n("attn_k"), &[kv, h])?;
        want(&n("attn_v"), &[kv, h])?;
        want(&n("attn_output"), &[h, q])?;
        want(&n("ffn_up"), &[ff, h])?;
        want(&n("ffn_down"), &[h, ff])?;
        if spec.qk_norm {
            want(&n("attn_q_norm"), &[d])?;
            want(&n("attn_k_norm"), &[d])?;
        }
        if spec.post_norms {
            want(&n("post_attention_norm"), &[h])?;
            want(&n("post_ffw_norm"), &[h])?;
        }
        if spec.qkv_bias {
            want(&block(i, "attn_q.bias"), &[q])?;
            want(&block(i, "attn_k.bias"), &[kv])?;
            want(&block(i, "attn_v.bias"), &[kv])?;
        }
    }
    Ok(vocab)
}

/// `cos` and `sin` tables (`max_pos × head_dim / 2`, row major) of RoPE with `base`, positions
/// multiplied by `scale` (linear scaling) and each frequency divided by its `factors` entry.
fn rope_tables(
    base: f32,
    scale: f32,
    head_dim: usize,
    factors: Option<&[f32]>,
    max_pos: usize,
) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let f = 1.0 / base.powf(2.0 * i as f32 / head_dim as f32);
            match factors {
                Some(k) => f / k[i],
                None => f,
            }
        })
        .collect();
    let mut cos = Vec::with_capacity(max_pos * half);
    let mut sin = Vec::with_capacity(max_pos * half);
    for p in 0..max_pos {
        let p = if scale == 1.0 {
            p as f32
        } else {
            p as f32 * scale
        };
        for f in &inv_freq {
            let a = p * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

impl Decoder {
    /// Loads the weights `spec` names from `src` onto `device`.
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        spec: DecoderSpec,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self> {
        let arch = spec.config.architecture.clone();
        let path = src.path().to_path_buf();
        let vocab = check_shapes(src, &spec).map_err(|e| bad_file(&path, &arch, e.to_string()))?;
        if spec.layer_rope.len() != spec.config.n_layer
            || spec.sliding.len() != spec.config.n_layer
            || spec.layer_rope.iter().any(|&t| t >= spec.rope_tables.len())
            || spec
                .rope_freq_factors
                .as_ref()
                .is_some_and(|f| f.len() != spec.config.head_dim / 2)
        {
            return Err(bad_file(
                &path,
                &arch,
                "inconsistent per-layer RoPE or sliding-window settings".into(),
            ));
        }
        let embed = Arc::new(src.tensor("token_embd.weight", device)?);
        let head = if src.has_tensor("output.weight") {
            Arc::new(src.tensor("output.weight", device)?)
        } else {
            // Tied embeddings (SmolLM2, Gemma): the output projection is the embedding matrix.
            embed.clone()
        };
        let lm_head_q8 = if device.is_cpu() {
            Q8Matrix::new(&head)
        } else {
            None
        };
        let lm_head = QMatMul::from_arc(head)?;
        let norm = src
            .tensor("output_norm.weight", device)?
            .dequantize(device)?;
        let native_path = format == WeightFormat::Bf16 && device.is_cpu();
        let mut layers = Vec::with_capacity(spec.config.n_layer);
        for i in 0..spec.config.n_layer {
            if native_path {
                break;
            }
            layers.push(Self::candle_layer(src, &spec, i, format, device)?);
        }
        let cfg = &spec.config;
        let max_pos = cfg.context_length.min(32_768);
        let half = cfg.head_dim / 2;
        let tables: Vec<(Vec<f32>, Vec<f32>)> = spec
            .rope_tables
            .iter()
            .map(|&(base, scale)| {
                rope_tables(
                    base,
                    scale,
                    cfg.head_dim,
                    spec.rope_freq_factors.as_deref(),
                    max_pos,
                )
            })
            .collect();
        let (native, cos, sin) = if native_path {
            let native = Native {
                layers: native_layers(src, &spec, device)?,
                norm: norm.flatten_all()?.to_vec1()?,
                cos: tables.iter().map(|t| t.0.clone()).collect(),
                sin: tables.into_iter().map(|t| t.1).collect(),
                shape: NativeShape {
                    hidden: cfg.hidden,
                    heads: cfg.n_head,
                    kv_heads: cfg.n_kv_head,
                    head_dim: cfg.head_dim,
                    eps: cfg.rms_eps as f32,
                    scale: spec.attn_scale as f32,
                    rope: spec.rope,
                    activation: spec.activation,
                    window: spec.window,
                },
            };
            (Some(native), Vec::new(), Vec::new())
        } else {
            let mut cos = Vec::new();
            let mut sin = Vec::new();
            for (c, s) in tables {
                cos.push(Tensor::from_vec(c, (max_pos, half), device)?);
                sin.push(Tensor::from_vec(s, (max_pos, half), device)?);
            }
            (None, cos, sin)
        };
        let mut spec = spec;
        spec.config.vocab = vocab;
        Ok(Self {
            spec,
            embed,
            layers,
            native,
            norm,
            lm_head,
            lm_head_q8,
            cos,
            sin,
            max_positions: max_pos,
            device: device.clone(),
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

    /// Token embeddings of `tokens`, scaled when the architecture says so.
    fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let x = self.embed.embedding(tokens)?;
        Ok(match self.spec.embed_scale {
            Some(k) => (x * f64::from(k))?,
            None => x,
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

impl Architecture for Decoder {
    fn config(&self) -> &ModelConfig {
        &self.spec.config
    }

    fn device(&self) -> &Device {
        &self.device
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
        if let Some(native) = &self.native {
            let x: Vec<f32> = self.embed(tokens)?.flatten_all()?.to_vec1()?;
            let positions: Vec<u32> = positions.flatten_all()?.to_vec1()?;
            let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
            let y = native.forward(x, &positions, &mask, (b, s), cache)?;
            return Ok(Tensor::from_vec(y, (b, s, cfg.hidden), &self.device)?);
        }
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
        let mut x = self.embed(tokens)?;
        let scale = spec.attn_scale;
        let n_rep = cfg.n_head / cfg.n_kv_head;
        let q_width = spec.q_width();
        // The CPU attention reads the mask once as a plain slice; windowed layers read their
        // own copy with the window closed.
        let windowed = spec.window.filter(|_| spec.sliding.iter().any(|&w| w));
        let need_vec = self.device.is_cpu() || windowed.is_some();
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
            Some(v) if !self.device.is_cpu() => {
                Some(Tensor::from_vec(v.clone(), mask.shape(), &self.device)?)
            }
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
                let m = match (&swa_vec, sliding) {
                    (Some(w), true) => w.as_slice(),
                    _ => mask_vec.as_deref().unwrap_or(&[]),
                };
                let y = attention(&flat(&q)?, &flat(&k)?, &flat(&v)?, m, &shape, scale as f32);
                Tensor::from_vec(y, (b, s, q_width), &self.device)?
            } else {
                let k = candle_transformers::utils::repeat_kv(k, n_rep)?;
                let v = candle_transformers::utils::repeat_kv(v, n_rep)?;
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

    fn packs(&self) -> bool {
        self.native.is_some()
    }

    fn forward_packed(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> Result<Vec<f32>> {
        let Some(native) = &self.native else {
            return Err(Error::Internal(
                "packed forward passes need --weights bf16 on the CPU".into(),
            ));
        };
        let ids = Tensor::new(tokens, &self.device)?;
        let x: Vec<f32> = self.embed(&ids)?.flatten_all()?.to_vec1()?;
        Ok(native.forward_packed(x, positions, rows, prefix, keep)?)
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
        let Some(native) = &self.native else {
            return Err(Error::Internal(
                "ragged forward passes need --weights bf16 on the CPU".into(),
            ));
        };
        let ids = Tensor::new(tokens, &self.device)?;
        let x: Vec<f32> = self.embed(&ids)?.flatten_all()?.to_vec1()?;
        Ok(native.forward_ragged(x, positions, rows, prefix, tails, keep)?)
    }

    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = match (&self.lm_head_q8, hidden.dims2()) {
            (Some(q8), Ok((m, _))) => {
                let x: Vec<f32> = hidden.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                Tensor::from_vec(q8.matmul(&x, m), (m, q8.rows()), &self.device)?
            }
            _ => self.lm_head.forward(hidden)?.to_dtype(DType::F32)?,
        };
        let logits = match self.spec.softcap {
            Some(c) => ((logits / f64::from(c))?.tanh()? * f64::from(c))?,
            None => logits,
        };
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}
