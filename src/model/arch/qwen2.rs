//! Qwen 2 / 2.5: llama's blocks with biases on the q/k/v projections and NEOX RoPE (llama.cpp's
//! `qwen2` graph); tied or separate output embeddings.
//!
//! Yang et al., "Qwen2 Technical Report", 2024.

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

/// Loads a Qwen 2 GGUF model onto `device`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let config = read_config(gguf, "qwen2")?;
    refuse_gguf_rope_scaling(gguf, "qwen2")?;
    let spec = DecoderSpec {
        rope: RopeStyle::Neox,
        // Converted Qwen 2 files always carry the biases; a file without them is refused by the
        // shape check, naming the missing tensor.
        qkv_bias: true,
        ..DecoderSpec::llama(config)
    };
    decoder::load(gguf, spec, format, device)
}

/// The spec of a Hugging Face qwen2 folder.
pub(crate) fn spec_from_hf(cfg: &HfConfig) -> Result<DecoderSpec> {
    let config = read_hf_config(cfg, "qwen2")?;
    refuse_hf_rope_scaling(cfg, "qwen2")?;
    Ok(DecoderSpec {
        rope: RopeStyle::Neox,
        qkv_bias: true,
        ..DecoderSpec::llama(config)
    })
}
