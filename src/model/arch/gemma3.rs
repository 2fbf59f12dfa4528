//! Gemma 3 (text), as llama.cpp's `gemma3` graph runs it: the embedding scaled by
//! `sqrt(hidden)`, RMS norms whose weights the GGUF converter already stored as `1 + w`,
//! per-head q/k RMS norms before NEOX RoPE, post-attention and post-MLP norms, a GELU-tanh gated
//! MLP, five local sliding-window layers (RoPE base 10k) to every global one (the file's base,
//! 1M), attention scaled by `1/sqrt(head_dim)` (`query_pre_attn_scalar`; `hidden / n_head` for
//! 27B), tied output embeddings and, when the file says so, final logit soft-capping.
//!
//! Gemma Team, "Gemma 3 Technical Report", 2025.

use candle_core::quantized::gguf_file::Value;
use candle_core::Device;

use super::decoder;
use super::forward::Architecture;
use super::metadata::{bad_file, read_config, read_hf_config, require_positive};
use super::spec::{Activation, DecoderSpec, ModelConfig, RopeStyle, WeightFormat};
use crate::error::Result;
use crate::model::gguf::GgufFile;
use crate::model::safetensors::HfConfig;

/// Every `PATTERN`-th layer is global when the file does not say (llama.cpp's default).
const PATTERN: usize = 6;
/// RoPE base of the local layers when the file does not say (`rope_local_base_freq`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// Layers of Gemma 3 27B, whose queries are scaled by `hidden / n_head` instead of `head_dim`.
const LAYERS_27B: usize = 62;

/// Gemma3TextConfig's defaults for the keys the decoder reads (transformers leaves a key out
/// of config.json when it has its default value); the folder loader fills them in.
pub(crate) const HF_DEFAULTS: &[(&str, f64)] = &[
    ("num_hidden_layers", 26.0),
    ("num_attention_heads", 8.0),
    ("num_key_value_heads", 4.0),
    ("hidden_size", 2304.0),
    ("head_dim", 256.0),
    ("rms_norm_eps", 1e-6),
    ("rope_theta", 1_000_000.0),
    ("rope_local_base_freq", 10_000.0),
    ("query_pre_attn_scalar", 256.0),
    ("sliding_window", 4096.0),
    ("sliding_window_pattern", 6.0),
    ("max_position_embeddings", 131_072.0),
];

/// Which of `n` layers are local (sliding-window): all but every `pattern`-th (0: all).
fn sliding_from_pattern(n: usize, pattern: usize) -> Vec<bool> {
    (0..n)
        .map(|il| pattern == 0 || il % pattern < pattern - 1)
        .collect()
}

/// Loads a Gemma 3 GGUF model onto `device`.
pub fn load(
    gguf: &mut GgufFile,
    format: WeightFormat,
    device: &Device,
) -> Result<Box<dyn Architecture>> {
    let arch = "gemma3";
    let key = |k: &str| format!("{arch}.{k}");
    let config = read_config(gguf, arch)?;
    let n = config.n_layer;
    let window = gguf
        .usize_opt(&key("attention.sliding_window"))?
        .filter(|&w| w > 0);
    let sliding: Vec<bool> = match (window, gguf.get(&key("attention.sliding_window_pattern"))) {
        (None, _) => vec![false; n],
        (Some(_), Some(Value::Array(flags))) => {
            let flags: Vec<bool> = flags
                .iter()
                .filter_map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect();
            if flags.len() != n {
                return Err(bad_file(
                    gguf.path(),
                    arch,
                    format!(
                        "{arch}.attention.sliding_window_pattern has {} flags for {n} layers",
                        flags.len()
                    ),
                ));
            }
            flags
        }
        (Some(_), _) => {
            let pattern = gguf
                .usize_opt(&key("attention.sliding_window_pattern"))?
                .unwrap_or(PATTERN);
            sliding_from_pattern(n, pattern)
        }
    };
    let local_base = gguf
        .f32_opt(&key("rope.freq_base_swa"))?
        .unwrap_or(LOCAL_ROPE_BASE);
    // Linear RoPE scaling (the 4B-27B models) applies to the global layers only.
    let global_scale = match gguf.get(&key("rope.scaling.type")) {
        Some(Value::String(t)) if t == "linear" => {
            let factor = gguf.f32_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            require_positive(
                f64::from(factor),
                &key("rope.scaling.factor"),
                gguf.path(),
                arch,
            )?;
            1.0 / factor
        }
        Some(Value::String(t)) if t == "none" => 1.0,
        None => 1.0,
        Some(other) => {
            return Err(bad_file(
                gguf.path(),
                arch,
                format!(
                "{arch}.rope.scaling.type is {other:?}; only linear scaling is applied to Gemma 3"
            ),
            ))
        }
    };
    let softcap = gguf
        .f32_opt(&key("final_logit_softcapping"))?
        .filter(|&c| c > 0.0);
    let attn_scale = if n == LAYERS_27B {
        1.0 / ((config.hidden / config.n_head) as f64).sqrt()
    } else {
        1.0 / (config.head_dim as f64).sqrt()
    };
    let spec = spec(
        config,
        window,
        sliding,
        local_base,
        global_scale,
        softcap,
        attn_scale,
    );
    decoder::load(gguf, spec, format, device)
}

/// Gemma 3's departures from llama, whatever file they were read from.
fn spec(
    config: ModelConfig,
    window: Option<usize>,
    sliding: Vec<bool>,
    local_base: f32,
    global_scale: f32,
    softcap: Option<f32>,
    attn_scale: f64,
) -> DecoderSpec {
    DecoderSpec {
        rope: RopeStyle::Neox,
        rope_tables: vec![(config.rope_base, global_scale), (local_base, 1.0)],
        rope_freq_factors: None,
        layer_rope: sliding.iter().map(|&s| usize::from(s)).collect(),
        sliding,
        window,
        attn_scale,
        embed_scale: Some((config.hidden as f32).sqrt()),
        activation: Activation::GeluTanh,
        qk_norm: true,
        post_norms: true,
        qkv_bias: false,
        softcap,
        ..DecoderSpec::llama(config)
    }
}

/// The spec of a Hugging Face Gemma 3 folder (`gemma3_text`, or a `gemma3` one's
/// `text_config`): `layer_types` or `sliding_window_pattern`, `rope_local_base_freq`,
/// `query_pre_attn_scalar`, linear `rope_scaling` of the global layers; the loader has filled in
/// [`HF_DEFAULTS`] for keys the folder leaves out. Its norm weights are stored as `w` (the
/// folder's weight source adds 1).
pub(crate) fn spec_from_hf(cfg: &HfConfig) -> Result<DecoderSpec> {
    let config = read_hf_config(cfg, "gemma3")?;
    let path = cfg.dir.join("config.json");
    let n = config.n_layer;
    let window = cfg.usize_opt("sliding_window").filter(|&w| w > 0);
    let sliding: Vec<bool> = match (window, cfg.json["layer_types"].as_array()) {
        (None, _) => vec![false; n],
        (Some(_), Some(types)) if types.len() == n => types
            .iter()
            .map(|t| t.as_str() == Some("sliding_attention"))
            .collect(),
        (Some(_), Some(types)) => {
            return Err(bad_file(
                &path,
                "gemma3",
                format!(
                    "layer_types lists {} layers for num_hidden_layers {n}",
                    types.len()
                ),
            ))
        }
        (Some(_), None) => sliding_from_pattern(
            n,
            cfg.usize_opt("sliding_window_pattern").unwrap_or(PATTERN),
        ),
    };
    let local_base = cfg
        .f64_opt("rope_local_base_freq")
        .map_or(LOCAL_ROPE_BASE, |b| b as f32);
    require_positive(
        f64::from(local_base),
        "rope_local_base_freq",
        &path,
        "gemma3",
    )?;
    let global_scale = match cfg.rope_scaling() {
        None => 1.0,
        Some((scaling, Some("linear"))) => {
            let factor = scaling["factor"].as_f64().unwrap_or(1.0);
            require_positive(factor, "rope_scaling.factor", &path, "gemma3")?;
            (1.0 / factor) as f32
        }
        Some((_, Some("default" | "none"))) => 1.0,
        Some((_, other)) => {
            return Err(bad_file(
                &path,
                "gemma3",
                format!("rope_scaling type {other:?} is not supported for Gemma 3 (only linear)"),
            ))
        }
    };
    let softcap = cfg
        .f64_opt("final_logit_softcapping")
        .map(|c| c as f32)
        .filter(|&c| c > 0.0);
    let attn_scale = 1.0
        / cfg
            .f64_opt("query_pre_attn_scalar")
            .unwrap_or(config.head_dim as f64)
            .sqrt();
    Ok(spec(
        config,
        window,
        sliding,
        local_base,
        global_scale,
        softcap,
        attn_scale,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder's config as the loader hands it over, [`HF_DEFAULTS`] filled in.
    fn folder(json: serde_json::Value) -> HfConfig {
        HfConfig {
            dir: "gemma-folder".into(),
            model_type: "gemma3_text".into(),
            json,
        }
        .with_defaults(HF_DEFAULTS)
    }

    #[test]
    fn a_config_json_without_default_values_gets_gemma3s_defaults() {
        // The keys transformers leaves out when they equal Gemma3TextConfig's defaults.
        let spec = spec_from_hf(&folder(serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 12,
            "num_attention_heads": 4, "num_key_value_heads": 1,
        })))
        .unwrap();
        assert_eq!(spec.config.head_dim, 256);
        assert_eq!(spec.config.rope_base, 1_000_000.0);
        assert_eq!(spec.window, Some(4096));
        // Five local layers (base 10k) to every global one (the file's base).
        let local: Vec<usize> = (0..12).filter(|&l| spec.sliding[l]).collect();
        assert_eq!(local, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);
        assert_eq!(spec.rope_tables[spec.layer_rope[5]].0, 1_000_000.0);
        assert_eq!(spec.rope_tables[spec.layer_rope[0]].0, 10_000.0);
        assert!((spec.attn_scale - 1.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn inconsistent_gemma3_folders_are_refused_with_the_key() {
        let base = serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        });
        let with = |k: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[k] = v;
            spec_from_hf(&folder(j)).err().map(|e| e.to_string())
        };
        let err = with("layer_types", serde_json::json!(["full_attention"])).unwrap();
        assert!(err.contains("layer_types lists 1 layers"), "{err}");
        let err = with(
            "rope_scaling",
            serde_json::json!({"rope_type": "linear", "factor": 0.0}),
        )
        .unwrap();
        assert!(err.contains("rope_scaling.factor is 0"), "{err}");
        let err = with(
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
        )
        .unwrap();
        assert!(err.contains("yarn"), "{err}");
        let err = with(
            "num_hidden_layers",
            serde_json::json!(1_000_000_000_000_000_000u64),
        )
        .unwrap();
        assert!(err.contains("declares 1000000000000000000 blocks"), "{err}");
        let err = with("rope_theta", serde_json::json!(-1.0)).unwrap();
        assert!(err.contains("RoPE base"), "{err}");
        assert_eq!(with("rope_scaling", serde_json::Value::Null), None);
    }
}
