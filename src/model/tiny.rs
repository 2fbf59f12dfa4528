//! Writes a tiny randomly-initialised GGUF (with a byte-level BPE vocabulary) of any supported
//! architecture, so that tests can exercise loading, tokenising and the forward pass in
//! milliseconds, without real weights, and compare it with llama.cpp on the same file.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// Shape and format of a tiny model.
#[derive(Clone, Debug)]
pub struct TinyConfig {
    /// `general.architecture` written into the file.
    pub architecture: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Residual width (a multiple of 32 so that every GGUF block type applies).
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// MLP width (a multiple of 32).
    pub ffn: usize,
    /// Storage type of the matrix weights.
    pub dtype: GgmlDType,
    /// Seed of the weights.
    pub seed: u64,
    /// Jinja chat template written as `tokenizer.chat_template` (none when `None`).
    pub chat_template: Option<String>,
    /// Width of a head (`hidden / heads` when `None`; Gemma's differs).
    pub head_dim: Option<usize>,
    /// gemma3: the sliding window, written with a pattern of 2 (even layers local, odd global).
    pub window: Option<usize>,
    /// llama: Llama 3.1 style, with RoPE frequency factors (`rope_freqs.weight`, from
    /// [`TINY_LLAMA3_ROPE`]) and the `llama-bpe` pre-tokenizer.
    pub llama3: bool,
}

/// The Llama 3.1 `rope_scaling` of a tiny `llama3` model: (factor, low_freq_factor,
/// high_freq_factor, original_max_position_embeddings), chosen so that a 16-wide head has pairs in
/// all three regimes (unscaled, interpolated, fully scaled).
pub(crate) const TINY_LLAMA3_ROPE: (f64, f64, f64, f64) = (8.0, 1.0, 4.0, 64.0);

impl Default for TinyConfig {
    fn default() -> Self {
        Self {
            architecture: "llama".into(),
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            dtype: GgmlDType::Q8_0,
            seed: 0,
            chat_template: None,
            head_dim: None,
            window: None,
            llama3: false,
        }
    }
}

/// GPT-2's map from bytes to printable characters (the byte-level BPE alphabet).
pub(crate) fn byte_alphabet() -> Vec<char> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut out = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        if let Some(pos) = printable.iter().position(|&p| p == b) {
            printable.remove(pos);
            out[b as usize] = char::from_u32(b).unwrap_or('?');
        } else {
            out[b as usize] = char::from_u32(256 + extra).unwrap_or('?');
            extra += 1;
        }
    }
    out
}

/// Writes the model to `path`. Vocabulary: `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, the 256
/// byte tokens, and a few merges ("Ġt", "he", "Ġthe", ...). The tensors and metadata are those
/// of `cfg.architecture` (`llama`, `gemma3`, `qwen2` or `qwen3`; other names get llama's, for
/// tests of refusal). Norm weights are 1 for llama, random around 1 for the others.
pub fn write_tiny_llama(path: &Path, cfg: &TinyConfig) -> Result<()> {
    let dev = Device::Cpu;
    let alphabet = byte_alphabet();
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types: Vec<i32> = vec![3, 3, 3];
    for c in &alphabet {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges = [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("Ġ", "a"),
        ("i", "n"),
        ("Ġ", "p"),
        ("o", "s"),
    ];
    for (a, b) in merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let vocab = tokens.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rand_tensor = |shape: (usize, usize), scale: f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.gen_range(-scale..scale))
            .collect();
        Ok(Tensor::from_vec(v, shape, &dev)?)
    };
    let head_dim = cfg.head_dim.unwrap_or(cfg.hidden / cfg.heads);
    let q_width = cfg.heads * head_dim;
    let arch = cfg.architecture.as_str();
    let (qk_norm, post_norms, bias) = match arch {
        "gemma3" => (true, true, false),
        "qwen3" => (true, false, false),
        "qwen2" => (false, false, true),
        _ => (false, false, false),
    };
    let plain_norms = !(qk_norm || post_norms || bias);
    let mut named: Vec<(String, QTensor)> = Vec::new();
    named.push((
        "token_embd.weight".into(),
        QTensor::quantize(&rand_tensor((vocab, cfg.hidden), 1.0)?, GgmlDType::F32)?,
    ));
    named.push((
        "output_norm.weight".into(),
        QTensor::quantize(
            &Tensor::ones(cfg.hidden, candle_core::DType::F32, &dev)?,
            GgmlDType::F32,
        )?,
    ));
    for l in 0..cfg.layers {
        let mut mat = |name: &str, rows: usize, cols: usize| -> Result<()> {
            let t = rand_tensor((rows, cols), 0.3)?;
            named.push((
                format!("blk.{l}.{name}.weight"),
                QTensor::quantize(&t, cfg.dtype)?,
            ));
            Ok(())
        };
        let kv = cfg.kv_heads * head_dim;
        mat("attn_q", q_width, cfg.hidden)?;
        mat("attn_k", kv, cfg.hidden)?;
        mat("attn_v", kv, cfg.hidden)?;
        mat("attn_output", cfg.hidden, q_width)?;
        mat("ffn_gate", cfg.ffn, cfg.hidden)?;
        mat("ffn_up", cfg.ffn, cfg.hidden)?;
        mat("ffn_down", cfg.hidden, cfg.ffn)?;
        let mut vector = |name: String, n: usize, base: f32, spread: f32| -> Result<()> {
            let t = if spread == 0.0 {
                Tensor::full(base, n, &dev)?
            } else {
                (rand_tensor((1, n), spread)?.flatten_all()? + f64::from(base))?
            };
            named.push((name, QTensor::quantize(&t, GgmlDType::F32)?));
            Ok(())
        };
        let spread = if plain_norms { 0.0 } else { 0.5 };
        for norm in ["attn_norm", "ffn_norm"] {
            vector(format!("blk.{l}.{norm}.weight"), cfg.hidden, 1.0, spread)?;
        }
        if qk_norm {
            vector(format!("blk.{l}.attn_q_norm.weight"), head_dim, 1.0, spread)?;
            vector(format!("blk.{l}.attn_k_norm.weight"), head_dim, 1.0, spread)?;
        }
        if post_norms {
            vector(
                format!("blk.{l}.post_attention_norm.weight"),
                cfg.hidden,
                1.0,
                spread,
            )?;
            vector(
                format!("blk.{l}.post_ffw_norm.weight"),
                cfg.hidden,
                1.0,
                spread,
            )?;
        }
        if bias {
            vector(format!("blk.{l}.attn_q.bias"), q_width, 0.0, 0.3)?;
            vector(format!("blk.{l}.attn_k.bias"), kv, 0.0, 0.3)?;
            vector(format!("blk.{l}.attn_v.bias"), kv, 0.0, 0.3)?;
        }
    }
    if cfg.llama3 {
        let (factor, low, high, old) = TINY_LLAMA3_ROPE;
        let factors = crate::model::arch::llama::llama3_rope_factors(
            head_dim, 10_000.0, factor, low, high, old,
        );
        let n = factors.len();
        named.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&Tensor::from_vec(factors, n, &dev)?, GgmlDType::F32)?,
        ));
    }
    let s = |x: &str| Value::String(x.to_string());
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        (format!("{arch}.block_count"), Value::U32(cfg.layers as u32)),
        (format!("{arch}.context_length"), Value::U32(512)),
        (
            format!("{arch}.embedding_length"),
            Value::U32(cfg.hidden as u32),
        ),
        (
            format!("{arch}.feed_forward_length"),
            Value::U32(cfg.ffn as u32),
        ),
        (
            format!("{arch}.attention.head_count"),
            Value::U32(cfg.heads as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(cfg.kv_heads as u32),
        ),
        (
            format!("{arch}.rope.freq_base"),
            Value::F32(if arch == "gemma3" {
                1_000_000.0
            } else {
                10_000.0
            }),
        ),
        (
            format!("{arch}.rope.dimension_count"),
            Value::U32(head_dim as u32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        (
            "tokenizer.ggml.pre".into(),
            s(if arch.starts_with("qwen") {
                "qwen2"
            } else if cfg.llama3 {
                "llama-bpe"
            } else {
                "smollm"
            }),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    let mut metadata = metadata;
    if cfg.head_dim.is_some() {
        metadata.push((
            format!("{arch}.attention.key_length"),
            Value::U32(head_dim as u32),
        ));
        metadata.push((
            format!("{arch}.attention.value_length"),
            Value::U32(head_dim as u32),
        ));
    }
    if let (Some(w), "gemma3") = (cfg.window, arch) {
        metadata.push((
            format!("{arch}.attention.sliding_window"),
            Value::U32(w as u32),
        ));
        metadata.push((
            format!("{arch}.attention.sliding_window_pattern"),
            Value::U32(2),
        ));
    }
    if let Some(t) = &cfg.chat_template {
        metadata.push(("tokenizer.chat_template".into(), s(t)));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).map_err(|e| Error::write(path, e))?;
    gguf_file::write(&mut file, &md, &ts)?;
    Ok(())
}

/// Writes the same weights as the tiny GGUF at `gguf` (made by [`write_tiny_llama`] with `cfg`)
/// as a Hugging Face model folder in `dir`: `model.safetensors` under the transformers names
/// (llama's q/k un-permuted back to the NEOX layout, Gemma's norm weights stored as `w` for
/// `1 + w`), `config.json`, `tokenizer.json` (the GGUF's own vocabulary) and
/// `tokenizer_config.json`. Both loads must give the same scores.
pub fn write_tiny_hf_folder(gguf: &Path, dir: &Path, cfg: &TinyConfig) -> Result<()> {
    use std::collections::HashMap;
    let dev = Device::Cpu;
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let mut file = std::fs::File::open(gguf).map_err(|e| Error::read(gguf, e))?;
    let content = gguf_file::Content::read(&mut file)?;
    let arch = cfg.architecture.as_str();
    let gemma = arch == "gemma3";
    let head_dim = cfg.head_dim.unwrap_or(cfg.hidden / cfg.heads);
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for name in content.tensor_infos.keys() {
        // Llama 3's RoPE factors are `rope_scaling` in config.json, not a tensor.
        if name == "rope_freqs.weight" {
            continue;
        }
        let t = content.tensor(&mut file, name, &dev)?.dequantize(&dev)?;
        let hf = match name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            "output.weight" => "lm_head.weight".to_string(),
            other => {
                let rest = other.strip_prefix("blk.").unwrap_or(other);
                let (i, rest) = rest.split_once('.').unwrap_or(("0", rest));
                let (what, kind) = rest.rsplit_once('.').unwrap_or((rest, "weight"));
                let hf = match what {
                    "attn_norm" => "input_layernorm",
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "attn_q_norm" => "self_attn.q_norm",
                    "attn_k_norm" => "self_attn.k_norm",
                    "ffn_norm" if gemma => "pre_feedforward_layernorm",
                    "ffn_norm" => "post_attention_layernorm",
                    "post_attention_norm" => "post_attention_layernorm",
                    "post_ffw_norm" => "post_feedforward_layernorm",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    _ => what,
                };
                format!("model.layers.{i}.{hf}.{kind}")
            }
        };
        let is_norm = hf.ends_with("norm.weight");
        let heads = if name.ends_with("attn_q.weight") {
            Some(cfg.heads)
        } else if name.ends_with("attn_k.weight") {
            Some(cfg.kv_heads)
        } else {
            None
        };
        let t = match heads {
            // llama.cpp's converter permutes llama's q/k rows for interleaved RoPE; undo it.
            Some(n) if arch == "llama" => {
                let (rows, cols) = t.dims2()?;
                t.reshape((n, head_dim / 2, 2, cols))?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((rows, cols))?
            }
            _ if is_norm && gemma => (t - 1.0)?,
            _ => t,
        };
        out.insert(hf, t);
    }
    let st = dir.join("model.safetensors");
    candle_core::safetensors::save(&out, &st)?;
    let model_type = match arch {
        "gemma3" => "gemma3_text",
        other => other,
    };
    let mut config = serde_json::json!({
        "model_type": model_type,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": head_dim,
        "intermediate_size": cfg.ffn,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": if gemma { 1_000_000.0 } else { 10_000.0 },
        "tie_word_embeddings": true,
        "bos_token_id": 0,
        "eos_token_id": 0,
    });
    if cfg.llama3 {
        let (factor, low, high, old) = TINY_LLAMA3_ROPE;
        config["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low,
            "high_freq_factor": high,
            "original_max_position_embeddings": old,
        });
    }
    if gemma && cfg.window.is_none() {
        // Gemma3TextConfig's default is a 4096 window: no window must be said.
        config["sliding_window"] = serde_json::Value::Null;
    }
    if let (true, Some(w)) = (gemma, cfg.window) {
        config["sliding_window"] = w.into();
        config["layer_types"] = (0..cfg.layers)
            .map(|l| {
                if l % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect::<Vec<_>>()
            .into();
    }
    if gemma {
        config["rope_local_base_freq"] = 10_000.0.into();
        config["query_pre_attn_scalar"] = head_dim.into();
    }
    let write = |name: &str, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::write(&p, e))
    };
    write("config.json", config.to_string())?;
    let tokenizer = super::tokenizer::from_gguf(&super::gguf::GgufFile::open(gguf)?)?;
    write(
        "tokenizer.json",
        tokenizer.to_string(false).map_err(Error::Tokenizer)?,
    )?;
    write(
        "tokenizer_config.json",
        serde_json::json!({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": false})
            .to_string(),
    )?;
    Ok(())
}
