//! The llama architecture (Llama 2/3, SmolLM, Mistral, ...): RMS-norm pre-norm blocks,
//! interleaved RoPE (GGUF's llama weights are permuted for it), SwiGLU MLP, grouped-query
//! attention; Llama 3's RoPE frequency factors when the file has `rope_freqs.weight`.
//!
//! Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", 2023.

use candle_core::Device;

use super::decoder::{read_config, Decoder, DecoderSpec, WeightFormat};
use super::Architecture;
use crate::error::Result;
use crate::model::gguf::GgufFile;
use crate::model::weights::WeightSource;

/// Loads a llama-architecture GGUF model onto `device`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let config = read_config(gguf, "llama")?;
    let mut spec = DecoderSpec::llama(config);
    // Llama 3.1+: per-dimension divisors of the RoPE frequencies (llama.cpp's `rope_freqs`).
    if WeightSource::has_tensor(gguf, "rope_freqs.weight") {
        let t = WeightSource::tensor(gguf, "rope_freqs.weight", device)?;
        spec.rope_freq_factors = Some(t.dequantize(device)?.flatten_all()?.to_vec1()?);
    }
    Ok(Box::new(Decoder::load(gguf, spec, format, device)?))
}
