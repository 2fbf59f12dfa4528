//! Reading an architecture's hyper-parameters from a model file's metadata (GGUF `{arch}.*` keys
//! or a Hugging Face `config.json`) into a [`ModelConfig`], with the consistency checks they
//! share and the one error form for a file that is not a valid model.

use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;
use crate::model::safetensors::HfConfig;

use super::spec::ModelConfig;

/// Reads the hyper-parameters every architecture shares from GGUF metadata (`{arch}.*` keys),
/// checked for consistency; `head_dim` from `attention.key_length`, else
/// `rope.dimension_count`, else `hidden / n_head`.
pub(crate) fn read_config(gguf: &GgufFile, arch: &str) -> Result<ModelConfig> {
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
pub(crate) fn read_hf_config(cfg: &HfConfig, arch: &str) -> Result<ModelConfig> {
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
pub(crate) fn refuse_gguf_rope_scaling(gguf: &GgufFile, arch: &str) -> Result<()> {
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
pub(crate) fn refuse_hf_rope_scaling(cfg: &HfConfig, arch: &str) -> Result<()> {
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
