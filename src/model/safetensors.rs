//! A Hugging Face model folder (`config.json`, `tokenizer.json`, `*.safetensors`) as a
//! [`WeightSource`]: the architectures ask for tensors by their GGUF role names and this maps
//! them onto the Hugging Face names, undoing what llama.cpp's converter does differently:
//! Gemma's RMS-norm weights are stored as `w` and used as `1 + w` (the GGUF stores `1 + w`).
//! Llama's q/k are not permuted here, so its RoPE pairs dimensions NEOX-style (the GGUF
//! converter permutes them for the interleaved layout); the architecture files read that from
//! [`HfConfig::from_safetensors`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::weights::WeightSource;
use crate::error::{Error, Result};

/// `config.json` of a Hugging Face model folder, with the text model's settings (a multimodal
/// Gemma 3's `text_config`).
#[derive(Clone, Debug)]
pub(crate) struct HfConfig {
    /// The folder.
    pub dir: PathBuf,
    /// `model_type` (`llama`, `mistral`, `qwen2`, `qwen3`, `gemma3_text`, ...).
    pub model_type: String,
    /// The parsed JSON of the text model.
    pub json: serde_json::Value,
}

impl HfConfig {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))?;
        let mut json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::model(&path, format!("invalid config.json: {e}")))?;
        if let Some(text_config) = json.get("text_config").cloned() {
            json = text_config;
        }
        let model_type = json["model_type"]
            .as_str()
            .ok_or_else(|| Error::model(&path, "config.json has no model_type; the folder is not a Hugging Face transformers model"))?
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            model_type,
            json,
        })
    }

    /// This config with `defaults` filled in where a key is absent (integers where the value is
    /// whole; an explicit `null` stays): for architectures whose config.json leaves out default
    /// values.
    pub(crate) fn with_defaults(&self, defaults: &[(&str, f64)]) -> Self {
        let mut out = self.clone();
        if let Some(map) = out.json.as_object_mut() {
            for (key, value) in defaults {
                if !map.contains_key(*key) {
                    let v = if value.fract() == 0.0 && *value >= 0.0 {
                        serde_json::json!(*value as u64)
                    } else {
                        serde_json::json!(*value)
                    };
                    map.insert((*key).to_string(), v);
                }
            }
        }
        out
    }

    /// The `rope_scaling` object and its type (`rope_type`, else the older `type`); None when the
    /// config has none.
    pub(crate) fn rope_scaling(&self) -> Option<(&serde_json::Value, Option<&str>)> {
        let scaling = &self.json["rope_scaling"];
        (!scaling.is_null()).then(|| {
            let kind = scaling["rope_type"].as_str().or(scaling["type"].as_str());
            (scaling, kind)
        })
    }

    /// A required unsigned integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.json[key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| self.missing(key, "an unsigned integer"))
    }

    /// An optional unsigned integer.
    pub(crate) fn usize_opt(&self, key: &str) -> Option<usize> {
        self.json[key].as_u64().map(|v| v as usize)
    }

    /// An optional number.
    pub(crate) fn f64_opt(&self, key: &str) -> Option<f64> {
        self.json[key].as_f64()
    }

    fn missing(&self, key: &str, what: &str) -> Error {
        Error::model(
            self.dir.join("config.json"),
            format!("'{key}' is missing or not {what}; the folder's config.json does not describe a supported model"),
        )
    }
}

/// Every tensor of a folder's `*.safetensors` files, by Hugging Face name.
pub(crate) struct SafetensorsFolder {
    dir: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// Gemma: RMS-norm weights are `1 + w`.
    norm_offset: bool,
    /// Where the text model's tensors live (`model.` or `language_model.model.`).
    prefix: String,
}

impl SafetensorsFolder {
    /// Reads every `*.safetensors` file of `dir` onto the CPU; `norm_offset` adds 1 to RMS-norm
    /// weights when they are read (Gemma).
    pub fn open(dir: &Path, norm_offset: bool) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::read(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::model(
                dir,
                "no *.safetensors file in the folder; give a Hugging Face model folder (config.json, tokenizer.json, *.safetensors) or a GGUF file",
            ));
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let loaded = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| {
                Error::model(
                    f,
                    format!(
                        "not a readable safetensors file ({}); download it again",
                        first_line(&e)
                    ),
                )
            })?;
            tensors.extend(loaded);
        }
        let prefix = if tensors
            .keys()
            .any(|k| k.starts_with("language_model.model."))
        {
            "language_model.model."
        } else {
            "model."
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            tensors,
            norm_offset,
            prefix: prefix.to_string(),
        })
    }

    /// The Hugging Face name of a GGUF role, and whether it is an RMS-norm weight.
    fn hf_name(&self, role: &str) -> Option<(String, bool)> {
        let p = &self.prefix;
        Some(match role {
            "token_embd.weight" => (format!("{p}embed_tokens.weight"), false),
            "output_norm.weight" => (format!("{p}norm.weight"), true),
            "output.weight" => ("lm_head.weight".to_string(), false),
            _ => {
                let rest = role.strip_prefix("blk.")?;
                let (i, rest) = rest.split_once('.')?;
                let (what, kind) = rest.rsplit_once('.')?;
                let gemma = self.norm_offset;
                let (hf, norm) = match what {
                    "attn_norm" => ("input_layernorm", true),
                    "attn_q" => ("self_attn.q_proj", false),
                    "attn_k" => ("self_attn.k_proj", false),
                    "attn_v" => ("self_attn.v_proj", false),
                    "attn_output" => ("self_attn.o_proj", false),
                    "attn_q_norm" => ("self_attn.q_norm", true),
                    "attn_k_norm" => ("self_attn.k_norm", true),
                    "ffn_norm" if gemma => ("pre_feedforward_layernorm", true),
                    "ffn_norm" => ("post_attention_layernorm", true),
                    "post_attention_norm" => ("post_attention_layernorm", true),
                    "post_ffw_norm" => ("post_feedforward_layernorm", true),
                    "ffn_gate" => ("mlp.gate_proj", false),
                    "ffn_up" => ("mlp.up_proj", false),
                    "ffn_down" => ("mlp.down_proj", false),
                    _ => return None,
                };
                (
                    format!("{p}layers.{i}.{hf}.{kind}"),
                    norm && kind == "weight",
                )
            }
        })
    }

    fn get(&self, role: &str) -> Option<(&Tensor, bool)> {
        let (name, norm) = self.hf_name(role)?;
        self.tensors.get(&name).map(|t| (t, norm))
    }
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

impl WeightSource for SafetensorsFolder {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|(t, _)| t.dims().to_vec())
    }

    fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let (t, norm) = self.get(name).ok_or_else(|| {
            Error::model(
                &self.dir,
                format!("tensor for '{name}' is missing; the folder is incomplete or not a model of its declared model_type"),
            )
        })?;
        let mut t = t.to_dtype(DType::F32)?;
        if norm && self.norm_offset {
            t = (t + 1.0)?;
        }
        Ok(QTensor::quantize(&t.to_device(device)?, GgmlDType::F32)?)
    }
}
