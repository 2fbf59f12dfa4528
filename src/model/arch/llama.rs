//! The llama architecture (Llama 2/3, SmolLM, Mistral, ...): RMS-norm pre-norm blocks,
//! interleaved RoPE (GGUF's llama weights are permuted for it), SwiGLU MLP, grouped-query
//! attention; Llama 3's RoPE frequency factors when the file has `rope_freqs.weight`.
//!
//! Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", 2023.

use candle_core::Device;

use super::decoder;
use super::forward::Architecture;
use super::metadata::{bad_file, read_config, read_hf_config, refuse_gguf_rope_scaling};
use super::spec::{DecoderSpec, RopeStyle, WeightFormat};
use crate::error::Result;
use crate::model::gguf::GgufFile;
use crate::model::safetensors::HfConfig;
use crate::model::weights::WeightSource;

/// Loads a llama-architecture GGUF model onto `device`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let config = read_config(gguf, "llama")?;
    refuse_gguf_rope_scaling(gguf, "llama")?;
    let mut spec = DecoderSpec::llama(config);
    // Llama 3.1+: per-dimension divisors of the RoPE frequencies (llama.cpp's `rope_freqs`).
    if WeightSource::has_tensor(gguf, "rope_freqs.weight") {
        let t = WeightSource::tensor(gguf, "rope_freqs.weight", device)?;
        spec.rope_freq_factors = Some(t.dequantize(device)?.flatten_all()?.to_vec1()?);
    }
    decoder::load(gguf, spec, format, device)
}

/// The spec of a Hugging Face llama/mistral folder. Its q/k projections are not permuted (the
/// GGUF converter permutes them for the interleaved layout), so RoPE pairs dimensions NEOX-style;
/// Llama 3.1's `rope_scaling` (`rope_type: llama3`) becomes the frequency factors llama.cpp's
/// converter writes as `rope_freqs`.
pub(crate) fn spec_from_hf(cfg: &HfConfig) -> Result<DecoderSpec> {
    let config = read_hf_config(cfg, "llama")?;
    let mut spec = DecoderSpec {
        rope: RopeStyle::Neox,
        ..DecoderSpec::llama(config)
    };
    if let Some((scaling, kind)) = cfg.rope_scaling() {
        let kind = kind.unwrap_or("");
        if kind != "llama3" {
            return Err(bad_file(
                &cfg.dir.join("config.json"),
                "llama",
                format!("rope_scaling type '{kind}' is not supported (only llama3)"),
            ));
        }
        let num = |k: &str, d: f64| scaling[k].as_f64().unwrap_or(d);
        let (factor, low, high) = (
            num("factor", 8.0),
            num("low_freq_factor", 1.0),
            num("high_freq_factor", 4.0),
        );
        let old = num("original_max_position_embeddings", 8192.0);
        let d = spec.config.head_dim;
        let base = f64::from(spec.config.rope_base);
        spec.rope_freq_factors = Some(llama3_rope_factors(d, base, factor, low, high, old));
    }
    Ok(spec)
}

/// Llama 3.1's RoPE scaling as per-pair frequency divisors (what llama.cpp's converter writes as
/// `rope_freqs.weight`): 1 for wavelengths shorter than `old / high`, `factor` for those longer
/// than `old / low`, interpolated smoothly between.
pub(crate) fn llama3_rope_factors(
    head_dim: usize,
    base: f64,
    factor: f64,
    low: f64,
    high: f64,
    old: f64,
) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < old / high {
                1.0
            } else if wavelen > old / low {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}
