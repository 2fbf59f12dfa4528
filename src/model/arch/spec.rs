//! What an architecture is, for either forward path: the hyper-parameters every model has
//! ([`ModelConfig`]), how an architecture departs from plain llama ([`DecoderSpec`]) and how the
//! weights are held ([`WeightFormat`]). A leaf: it imports neither forward path, and both read it.

/// Hyper-parameters every architecture has, as read from the model file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelConfig {
    /// `general.architecture` (a name of [`super::ARCHITECTURES`]).
    pub architecture: String,
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
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab: usize,
    /// Longest context the model was trained for.
    pub context_length: usize,
    /// RMS-norm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency (of the global layers, where local ones have their own).
    pub rope_base: f32,
}

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
    /// 8-bit weights per block of 32 (a scale and a minimum) times activations quantised per
    /// block of 32 as llama.cpp's Q8_1, with integer dot products (AVX-512 VNNI where the CPU
    /// has it), on the CPU's native path: Q4_1 and Q8_0 weights exactly as stored, other types
    /// re-quantised to 8 bits. Other devices hold Q8_0.
    Int8,
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

/// What an architecture is, for the shared forward: how it departs from plain llama (Touvron et
/// al., 2023): NEOX RoPE, per-layer RoPE bases and sliding windows (Gemma 3), q/k RMS norms
/// (Gemma 3, Qwen 3), post-attention and post-MLP norms and a scaled embedding (Gemma 3),
/// GELU-tanh instead of SiLU, q/k/v biases (Qwen 2), final logit soft-capping.
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

/// Most positions the RoPE tables cover, whatever context the model declares: the tables take
/// `positions × head_dim` floats each, and scoring prompts are far shorter.
const MAX_POSITIONS: usize = 32_768;

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
    pub(crate) fn q_width(&self) -> usize {
        self.config.n_head * self.config.head_dim
    }

    /// Stored tensors per block.
    pub(crate) fn tensors_per_block(&self) -> usize {
        9 + 2 * usize::from(self.qk_norm)
            + 2 * usize::from(self.post_norms)
            + 3 * usize::from(self.qkv_bias)
    }

    /// Longest sequence (cache + new tokens) the RoPE tables cover.
    pub(crate) fn max_positions(&self) -> usize {
        self.config.context_length.min(MAX_POSITIONS)
    }

    /// Per RoPE table of [`DecoderSpec::rope_tables`], its `cos` and `sin` tables
    /// (`max_positions × head_dim / 2`, row major).
    pub(crate) fn rope_cos_sin(&self) -> Vec<(Vec<f32>, Vec<f32>)> {
        self.rope_tables
            .iter()
            .map(|&(base, scale)| {
                rope_tables(
                    base,
                    scale,
                    self.config.head_dim,
                    self.rope_freq_factors.as_deref(),
                    self.max_positions(),
                )
            })
            .collect()
    }
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

/// Name of block `i`'s tensor `role` (`attn_q.weight`, ...), as GGUF files (and the Hugging
/// Face folder reader, which renames to them) call it.
pub(crate) fn block(i: usize, role: &str) -> String {
    format!("blk.{i}.{role}")
}
