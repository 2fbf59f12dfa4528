//! Qwen 3 (dense): llama's blocks with per-head RMS norms of queries and keys before NEOX RoPE,
//! no q/k/v biases, and a head width of its own (`attention.key_length`), as llama.cpp's
//! `qwen3` graph runs them.
//!
//! Yang et al., "Qwen3 Technical Report", 2025.

use candle_core::Device;

use super::decoder;
use super::forward::Architecture;
use super::metadata::{
    read_config, read_hf_config, refuse_gguf_rope_scaling, refuse_hf_rope_scaling,
};
use super::spec::{DecoderSpec, RopeStyle, WeightFormat};
use crate::error::Result;
use crate::model::gguf::GgufFile;
use crate::model::safetensors::HfConfig;

/// Loads a Qwen 3 GGUF model onto `device`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let config = read_config(gguf, "qwen3")?;
    refuse_gguf_rope_scaling(gguf, "qwen3")?;
    let spec = DecoderSpec {
        rope: RopeStyle::Neox,
        qk_norm: true,
        ..DecoderSpec::llama(config)
    };
    decoder::load(gguf, spec, format, device)
}

/// The spec of a Hugging Face qwen3 folder.
pub(crate) fn spec_from_hf(cfg: &HfConfig) -> Result<DecoderSpec> {
    let config = read_hf_config(cfg, "qwen3")?;
    refuse_hf_rope_scaling(cfg, "qwen3")?;
    Ok(DecoderSpec {
        rope: RopeStyle::Neox,
        qk_norm: true,
        ..DecoderSpec::llama(config)
    })
}
