//! The architectures promptevo runs, behind one trait: what the scorer and the generator call
//! (a new KV cache, a forward pass over padded or packed rows with explicit positions and masks,
//! log-probabilities at the rows asked for). One file per architecture reads its hyper-parameters
//! from the GGUF metadata and names the tensors its blocks use; [`ARCHITECTURES`] is the one list
//! of them, which `--model` dispatches on and error messages quote.
//!
//! The architectures here are all pre-norm decoder-only transformers, so they share one forward
//! implementation ([`decoder`]) and differ in a [`decoder::DecoderSpec`]: RoPE layout and bases,
//! q/k norms, post-norms, biases, activation, sliding windows, scales. Sharing it keeps the
//! fixed-order CPU attention and the bf16 kernel (whose results must not depend on the batch) in
//! one place instead of one copy per architecture.

pub(crate) mod decoder;
pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;

use candle_core::{Device, Tensor};

use super::gguf::GgufFile;
use super::kv_cache::KvCache;
use super::safetensors::{HfConfig, SafetensorsFolder};
use super::weights::WeightSource;
use crate::error::{Error, Result};

pub use decoder::WeightFormat;

/// Hyper-parameters every architecture has, as read from the model file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelConfig {
    /// `general.architecture` (a name of [`ARCHITECTURES`]).
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

/// One row of a packed batch (the native CPU path): its token count and its mask.
pub struct PackedRow<'a> {
    /// Its tokens.
    pub len: usize,
    /// `len × (prefix + len)` additive mask (0 or -inf) over the prefix and the row's tokens.
    pub mask: &'a [f32],
}

/// A transformer ready for forward passes: what the scoring engine and the generator need.
pub trait Architecture: Send + Sync {
    /// The model's hyper-parameters.
    fn config(&self) -> &ModelConfig;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// An empty KV cache for this model.
    fn new_cache(&self) -> KvCache;

    /// Longest sequence (cache + new tokens) the position tables cover.
    fn max_positions(&self) -> usize;

    /// Runs `tokens` (`(batch, seq)` u32) after what `cache` holds and returns the final-normed
    /// hidden states `(batch, seq, hidden)`. `positions` (`(batch, seq)` u32) are the new tokens'
    /// positions; `mask` (`(batch, 1, seq, cache.len() + seq)` f32) is added to the attention
    /// scores (0 where a query may see a key, `-inf` where not). The cache is extended in place.
    fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor>;

    /// Whether [`Architecture::forward_packed`] is available (the native CPU bf16 path).
    fn packs(&self) -> bool;

    /// Runs rows of different lengths packed back to back (no padding) after a shared one-row
    /// `prefix` cache, which is left as is; returns the final-normed hidden states of the packed
    /// tokens `keep` (ascending indices into `tokens`; `keep.len() × hidden`). Each token gets
    /// exactly the result [`Architecture::forward`] gives it in a padded batch. Only when
    /// [`Architecture::packs`].
    fn forward_packed(
        &self,
        tokens: &[u32],
        positions: &[u32],
        rows: &[PackedRow],
        prefix: &KvCache,
        keep: &[usize],
    ) -> Result<Vec<f32>>;

    /// Runs packed rows of different lengths after the shared one-row `prefix` cache (left as
    /// is) and each row's own one-row cache `tails[r]` (its tokens after the prefix so far),
    /// which is extended in place; row `r`'s mask is `len × (prefix + tails[r] + len)`. Returns
    /// the final-normed hidden states of the packed tokens `keep` (ascending), each exactly what
    /// [`Architecture::forward`] gives it with the prefix and tail as one batch-1 cache: many
    /// greedy decodings advance in one pass. Only when [`Architecture::packs`].
    fn forward_ragged(
        &self,
        _tokens: &[u32],
        _positions: &[u32],
        _rows: &[PackedRow],
        _prefix: &KvCache,
        _tails: &mut [KvCache],
        _keep: &[usize],
    ) -> Result<Vec<f32>> {
        Err(Error::Internal(
            "ragged forward passes need --weights bf16 on the CPU".into(),
        ))
    }

    /// Log-probabilities over the vocabulary (`(n, vocab)`, f32) for hidden states `(n, hidden)`.
    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor>;

    /// Log-probabilities of the next token after every prefix of `ids` (`ids.len() × vocab`),
    /// from one plain causal pass with a fresh cache: the reference the batched engine must
    /// agree with.
    fn causal_log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let device = self.device();
        let s = ids.len();
        let tokens = Tensor::new(ids, device)?.unsqueeze(0)?;
        let positions: Vec<u32> = (0..s as u32).collect();
        let positions = Tensor::new(positions.as_slice(), device)?.unsqueeze(0)?;
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, s, s), device)?;
        let hidden = self
            .forward(&tokens, &positions, &mask, &mut self.new_cache())?
            .squeeze(0)?;
        Ok(self.log_probs(&hidden)?.to_vec2()?)
    }
}

/// Loads the architecture's weights from an opened GGUF file.
type Loader = fn(&mut GgufFile, WeightFormat, &Device) -> Result<Box<dyn Architecture>>;

/// Reads the architecture's spec from a Hugging Face `config.json`.
type HfSpec = fn(&HfConfig) -> Result<decoder::DecoderSpec>;

/// One supported architecture: its `general.architecture` name and its loaders.
pub(crate) struct ArchEntry {
    /// The name GGUF files give it.
    pub name: &'static str,
    /// The `model_type`s of Hugging Face `config.json` files of it.
    pub hf_model_types: &'static [&'static str],
    load: Loader,
    from_hf: HfSpec,
    /// Values of `config.json` keys its `transformers` config class defaults (transformers
    /// leaves a key out when it has its default), filled in when a folder is read.
    hf_defaults: &'static [(&'static str, f64)],
}

/// Every architecture promptevo implements, in the order error messages list them.
pub(crate) const ARCHITECTURES: &[ArchEntry] = &[
    ArchEntry {
        name: "llama",
        hf_model_types: &["llama", "mistral"],
        load: llama::load,
        from_hf: llama::spec_from_hf,
        hf_defaults: &[],
    },
    ArchEntry {
        name: "gemma3",
        hf_model_types: &["gemma3_text", "gemma3"],
        load: gemma3::load,
        from_hf: gemma3::spec_from_hf,
        hf_defaults: gemma3::HF_DEFAULTS,
    },
    ArchEntry {
        name: "qwen2",
        hf_model_types: &["qwen2"],
        load: qwen2::load,
        from_hf: qwen2::spec_from_hf,
        hf_defaults: &[],
    },
    ArchEntry {
        name: "qwen3",
        hf_model_types: &["qwen3"],
        load: qwen3::load,
        from_hf: qwen3::spec_from_hf,
        hf_defaults: &[],
    },
];

/// The names of [`ARCHITECTURES`], comma-separated.
pub fn supported() -> String {
    ARCHITECTURES
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the model of the GGUF file's `general.architecture`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let arch = gguf.architecture()?;
    let entry = ARCHITECTURES
        .iter()
        .find(|a| a.name == arch)
        .ok_or_else(|| unsupported(gguf.path(), &arch))?;
    (entry.load)(gguf, format, device)
}

/// Loads a Hugging Face model folder (`config.json` + `*.safetensors`) of a supported
/// `model_type`, weights through [`SafetensorsFolder`].
pub(crate) fn load_safetensors(
    dir: &std::path::Path,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let cfg = HfConfig::read(dir)?;
    let entry = ARCHITECTURES
        .iter()
        .find(|a| a.hf_model_types.contains(&cfg.model_type.as_str()))
        .ok_or_else(|| {
            let types: Vec<&str> = ARCHITECTURES
                .iter()
                .flat_map(|a| a.hf_model_types.iter().copied())
                .collect();
            Error::model(
                dir.join("config.json"),
                format!(
                    "unsupported model_type '{}' (supported: {}); use a model of a supported architecture",
                    cfg.model_type,
                    types.join(", ")
                ),
            )
        })?;
    let cfg = cfg.with_defaults(entry.hf_defaults);
    let mut source = SafetensorsFolder::open(dir, entry.name == "gemma3")?;
    decoder::check_block_count(
        cfg.usize("num_hidden_layers")?,
        source.tensor_count(),
        &dir.join("config.json"),
        entry.name,
        "num_hidden_layers",
    )?;
    let spec = (entry.from_hf)(&cfg)?;
    Ok(Box::new(decoder::Decoder::load(
        &mut source,
        spec,
        format,
        device,
    )?))
}

/// The error for an architecture not in [`ARCHITECTURES`].
pub(crate) fn unsupported(path: &std::path::Path, arch: &str) -> Error {
    Error::model(
        path,
        format!(
            "unsupported model architecture '{arch}' (supported: {}); use a model of a supported architecture",
            supported()
        ),
    )
}
