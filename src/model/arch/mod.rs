//! The architectures promptevo runs, behind one trait ([`Architecture`]): what the scorer and
//! the generator call (a new KV cache, a forward pass over padded rows with explicit positions
//! and masks, log-probabilities at the rows asked for), with packed rows as a capability a model
//! may offer ([`Architecture::packed`] gives a [`PackedForward`]). One file per architecture
//! reads its hyper-parameters from the GGUF metadata or a Hugging Face `config.json`;
//! [`ARCHITECTURES`] is the one list of them, which `--model` dispatches on and error messages
//! quote.
//!
//! The architectures here are all pre-norm decoder-only transformers, so they differ only in a
//! `DecoderSpec` (`spec.rs`, a leaf both forward paths read): RoPE layout and bases, q/k norms,
//! post-norms, biases, activation, sliding windows, scales. `decoder.rs` loads a spec's weights
//! onto one of two implementations of the trait: `native/` (the CPU bf16 path, promptevo's own
//! kernels, whose results must not depend on the batch; the one that packs) or `candle.rs`
//! (candle's ops, any device and weight format). They share `ends.rs` (embedding and output
//! projection), and `metadata.rs` reads the hyper-parameters.

mod candle;
mod decoder;
mod ends;
mod forward;
mod metadata;
mod native;
mod spec;

pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;
use crate::model::safetensors::{HfConfig, SafetensorsFolder};
use crate::model::weights::WeightSource;

pub use forward::{Architecture, PackedForward, PackedRow};
pub use spec::{ModelConfig, WeightFormat};

/// Loads the architecture's weights from an opened GGUF file.
type Loader = fn(&mut GgufFile, WeightFormat, &Device) -> Result<Box<dyn Architecture>>;

/// Reads the architecture's spec from a Hugging Face `config.json`.
type HfSpec = fn(&HfConfig) -> Result<spec::DecoderSpec>;

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
    // The one place a file's architecture is checked against the registry.
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
    metadata::check_block_count(
        cfg.usize("num_hidden_layers")?,
        source.tensor_count(),
        &dir.join("config.json"),
        entry.name,
        "num_hidden_layers",
    )?;
    let spec = (entry.from_hf)(&cfg)?;
    decoder::load(&mut source, spec, format, device)
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
